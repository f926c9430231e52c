// SPDX-License-Identifier: Apache-2.0
#pragma once

// For the TLS tests: host certificates made with the openssl CLI, and a small
// HTTP(S) server on one loopback address that stands in for a pool host.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "tests/testing/sim_process.h"

namespace vmb::testing {

// A self-signed host certificate (EC P-256), as XenServer makes one per host:
// CN `common_name`, subjectAltName the DNS names and IP addresses given.
// Files <dir>/<stem>.pem and .key; sha256 as openssl prints it.
absl::StatusOr<TestCert> MakeHostCert(const std::string& dir,
                                      const std::string& stem,
                                      const std::string& common_name,
                                      const std::vector<std::string>& dns,
                                      const std::vector<std::string>& ips);

// Serves HTTP/1.1 (HTTPS when given a certificate) on `address`, on a port
// the OS picks, one connection at a time, each closed after one answer.
// Every path answers 200 "<name>:<path>" unless Redirect() says otherwise.
// Thread-safe; the destructor stops the server and joins its thread.
class TestHttpServer {
 public:
  struct Options {
    std::string name;       // in the bodies it sends
    std::string address;    // 127.0.0.x
    std::string cert_path;  // empty: plain http
    std::string key_path;
  };
  struct Request {
    std::string method;
    std::string target;  // path and query
    std::string cookie;  // the Cookie header
    std::string sni;     // the TLS server name the client sent
  };

  // Errors: INTERNAL when the socket or the TLS context cannot be set up.
  static absl::StatusOr<std::unique_ptr<TestHttpServer>> Start(
      const Options& options);
  ~TestHttpServer();

  // "https://127.0.0.x:port" (or http://).
  std::string url() const;
  const std::string& address() const { return options_.address; }

  // Answers `path` with a 302 to `location`.
  void Redirect(const std::string& path, const std::string& location)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The requests answered so far.
  std::vector<Request> requests() const ABSL_LOCKS_EXCLUDED(mu_);
  // TCP connections accepted so far (a refused TLS handshake counts).
  int connections() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit TestHttpServer(Options options) : options_(std::move(options)) {}
  void Serve();
  void HandleConnection(int fd);

  const Options options_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, owned
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> redirects_
      ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vmb::testing
