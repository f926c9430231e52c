// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb {

// Carries one XML-RPC request to a XAPI endpoint and returns the response
// body: the process edge below XenApiClient. Implementations are thread-safe.
class XmlRpcTransport {
 public:
  virtual ~XmlRpcTransport() = default;

  // POSTs `request` (a methodCall document) to `url` ("http://host[:port]";
  // the path is always "/") and returns the body of a 200 answer.
  // Errors: UNAVAILABLE when the host cannot be reached; DEADLINE_EXCEEDED on
  // timeout; FAILED_PRECONDITION when TLS verification fails; for an HTTP 500
  // page, the XenAPI error it names (see xenapi_error.h); INTERNAL for other
  // HTTP errors. Messages never contain the request body.
  virtual absl::StatusOr<std::string> Post(const std::string& url,
                                           absl::string_view request) = 0;
};

}  // namespace vmb
