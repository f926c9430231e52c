// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulator's HTTP front end (libmicrohttpd): one listener per simulated
// host, each on its own loopback address and one shared port. POST requests
// outside /sim/ are XML-RPC or JSON-RPC (SimPool::HandleRpc), OPTIONS
// requests outside /sim/ CORS preflights (SimPool::HandleOptions),
// everything else goes to SimPool::HandleHttp. Thread per connection, so
// streams may block.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {

class SimServer {
 public:
  // A certificate and its private key, both PEM.
  struct TlsIdentity {
    std::string cert_pem;
    std::string key_pem;
  };
  struct Options {
    int port = 0;              // 0: pick a free port shared by every host
    std::string tls_cert_pem;  // both set: serve HTTPS instead of HTTP,
    std::string tls_key_pem;   // every host with this certificate
    // By host name_label: that host's own certificate. Non-empty: serve
    // HTTPS, and every host must have an entry (tls_cert_pem is not used).
    std::map<std::string, TlsIdentity> host_tls;
  };

  // Starts listening on every host's address. `pool` must outlive the server.
  // Errors: UNAVAILABLE when no common free port was found or an address
  // cannot be bound; INVALID_ARGUMENT when host_tls lacks a host.
  static absl::StatusOr<std::unique_ptr<SimServer>> Start(
      SimPool* pool, const Options& options);
  ~SimServer();  // stops

  int port() const { return port_; }
  const std::string& scheme() const { return scheme_; }
  // "http://127.0.0.2:PORT" for a host.
  std::string UrlOf(const HostInfo& host) const;

  struct Listener;

 private:
  SimServer() = default;
  void Stop();
  void StopListeners();

  SimPool* pool_ = nullptr;
  Options options_;
  int port_ = 0;
  std::string scheme_ = "http";
  std::vector<std::unique_ptr<Listener>> listeners_;
};

}  // namespace vmb::sim
