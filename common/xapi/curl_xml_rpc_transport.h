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
// each call takes a handle from the pool.
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
