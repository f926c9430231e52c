// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/xapi/xml_rpc_transport.h"
#include "common/xapi/xmlrpc_codec.h"
#include "common/xapi/xmlrpc_value.h"

namespace vmb::testing {

// An XmlRpcTransport that answers from canned replies, by method name, in the
// order they were added (the last reply for a method repeats until another
// is added), and records
// every call it saw. Thread-safe.
class FakeXmlRpcTransport final : public XmlRpcTransport {
 public:
  struct Call {
    std::string url;
    std::string method;
    std::vector<XmlRpcValue> params;
  };

  // A raw reply body (for malformed-reply tests).
  void AddRawReply(const std::string& method, std::string body);
  // XAPI's success envelope around `value`.
  void AddSuccess(const std::string& method, const XmlRpcValue& value);
  // XAPI's failure envelope: code then parameters.
  void AddFailure(const std::string& method,
                  std::vector<std::string> error_description);
  // The transport itself fails.
  void AddTransportError(const std::string& method, absl::Status status);

  // Calls of `method` wait (without answering) until Release(method): a
  // slow host, for tests of what goes on meanwhile.
  void Hold(const std::string& method);
  void Release(const std::string& method);
  // Whether a call of `method` is waiting in Hold, after waiting up to
  // `timeout` for one to arrive.
  bool WaitForHeldCall(const std::string& method, absl::Duration timeout);

  std::vector<Call> calls() const;
  std::vector<std::string> methods() const;

  // A method with no canned reply fails the call with NOT_FOUND.
  absl::StatusOr<std::string> Post(const std::string& url,
                                   absl::string_view request) override;

 private:
  struct Reply {
    absl::Status status;
    std::string body;
    bool used = false;
  };
  void AddReplyLocked(const std::string& method, Reply reply)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<Reply>> replies_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> held_ ABSL_GUARDED_BY(mu_);  // waiting calls
  std::set<std::string> holding_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb::testing
