// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/xapi/curl_util.h"
#include "common/xapi/xml_rpc_transport.h"

namespace vmb {

// XmlRpcTransport over libcurl. Keeps a small pool of easy handles so that
// connections are reused (XAPI keeps RPC connections alive). Thread-safe:
// each call takes a handle from the pool. TLS follows Options::tls for the
// host of each call's URL (CurlTlsCheck): its pin by the URL's host, or by
// the host's uuid once the pin store knows the pool's hosts.
//
// Post's errors: those of CurlTlsCheck (FAILED_PRECONDITION for a refused
// certificate or a host without a pin, naming it), the transfer's
// (CurlCodeToStatus), RESOURCE_EXHAUSTED for a reply over
// max_response_bytes, the XenAPI error of an HTTP error page, UNAVAILABLE for
// another HTTP 5xx and INTERNAL for another status.
class CurlXmlRpcTransport final : public XmlRpcTransport {
 public:
  struct Options {
    TlsOptions tls;
    absl::Duration connect_timeout = absl::Seconds(30);
    absl::Duration call_timeout =
        absl::Minutes(10);  // a whole call, response included
    size_t max_response_bytes = size_t{256} << 20;
    std::string user_agent = "vmbackup";
  };

  explicit CurlXmlRpcTransport(Options options);
  ~CurlXmlRpcTransport() override;

  absl::StatusOr<std::string> Post(const std::string& url,
                                   absl::string_view request) override;

 private:
  struct Handle;
  std::unique_ptr<Handle> Acquire();
  void Release(std::unique_ptr<Handle> handle);

  const Options options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb
