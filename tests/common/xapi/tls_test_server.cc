// SPDX-License-Identifier: Apache-2.0
#include "tests/common/xapi/tls_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace vmb::testing {
namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;

// Reads and writes one connection, over TLS or not.
class Conn {
 public:
  Conn(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ssize_t Read(char* buf, size_t n) {
    if (ssl_ == nullptr) return read(fd_, buf, n);
    const int r = SSL_read(ssl_, buf, static_cast<int>(n));
    return r > 0 ? r : (r == 0 ? 0 : -1);
  }
  bool WriteAll(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n =
          ssl_ == nullptr
              ? write(fd_, data.data(), data.size())
              : SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

 private:
  int fd_;
  SSL* ssl_;
};

}  // namespace

absl::StatusOr<TestCert> MakeHostCert(const std::string& dir,
                                      const std::string& stem,
                                      const std::string& common_name,
                                      const std::vector<std::string>& dns,
                                      const std::vector<std::string>& ips) {
  TestCert cert;
  cert.cert_path = absl::StrCat(dir, "/", stem, ".pem");
  cert.key_path = absl::StrCat(dir, "/", stem, ".key");
  std::vector<std::string> san;
  for (const std::string& d : dns) san.push_back("DNS:" + d);
  for (const std::string& i : ips) san.push_back("IP:" + i);
  std::vector<std::string> argv = {"openssl",
                                   "req",
                                   "-x509",
                                   "-newkey",
                                   "ec",
                                   "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1",
                                   "-nodes",
                                   "-days",
                                   "2",
                                   "-subj",
                                   "/CN=" + common_name};
  if (!san.empty()) {
    argv.push_back("-addext");
    argv.push_back("subjectAltName=" + absl::StrJoin(san, ","));
  }
  for (const std::string& a : {std::string("-keyout"), cert.key_path,
                               std::string("-out"), cert.cert_path}) {
    argv.push_back(a);
  }
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) {
    return absl::InternalError("openssl req failed: " + r.output);
  }
  r = RunCommand({"openssl", "x509", "-in", cert.cert_path, "-noout",
                  "-fingerprint", "-sha256"});
  const size_t eq = r.output.find('=');
  if (r.exit_code != 0 || eq == std::string::npos) {
    return absl::InternalError("openssl x509 failed: " + r.output);
  }
  cert.sha256 =
      std::string(absl::StripAsciiWhitespace(r.output.substr(eq + 1)));
  return cert;
}

absl::StatusOr<std::unique_ptr<TestHttpServer>> TestHttpServer::Start(
    const Options& options) {
  // A client that hangs up must not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<TestHttpServer> s(new TestHttpServer(options));
  if (!options.cert_path.empty()) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    s->ssl_ctx_ = ctx;
    if (ctx == nullptr ||
        SSL_CTX_use_certificate_chain_file(ctx, options.cert_path.c_str()) !=
            1 ||
        SSL_CTX_use_PrivateKey_file(ctx, options.key_path.c_str(),
                                    SSL_FILETYPE_PEM) != 1) {
      return absl::InternalError("cannot set up the server's TLS context");
    }
  }
  s->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (s->listen_fd_ < 0 ||
      inet_pton(AF_INET, options.address.c_str(), &addr.sin_addr) != 1 ||
      bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      listen(s->listen_fd_, 16) != 0 ||
      getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
          0 ||
      pipe2(s->wake_, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot listen on ", options.address));
  }
  s->port_ = ntohs(addr.sin_port);
  s->thread_ = std::thread([p = s.get()] { p->Serve(); });
  return s;
}

TestHttpServer::~TestHttpServer() {
  if (thread_.joinable()) {
    const char stop = 'x';
    (void)!write(wake_[1], &stop, 1);
    thread_.join();
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
  SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

std::string TestHttpServer::url() const {
  return absl::StrCat(options_.cert_path.empty() ? "http" : "https", "://",
                      options_.address, ":", port_);
}

void TestHttpServer::Redirect(const std::string& path,
                              const std::string& location) {
  absl::MutexLock lock(&mu_);
  redirects_.emplace_back(path, location);
}

std::vector<TestHttpServer::Request> TestHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

int TestHttpServer::connections() const {
  absl::MutexLock lock(&mu_);
  return connections_;
}

void TestHttpServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    {
      absl::MutexLock lock(&mu_);
      ++connections_;
    }
    // A client that stops talking cannot hold the server for long.
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    HandleConnection(fd);
    close(fd);
  }
}

void TestHttpServer::HandleConnection(int fd) {
  SSL* ssl = nullptr;
  Request request;
  if (ssl_ctx_ != nullptr) {
    ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) {  // e.g. the client refused our certificate
      ERR_clear_error();
      SSL_free(ssl);
      return;
    }
    if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
      request.sni = sni;
    }
  }
  Conn conn(fd, ssl);
  std::string head;
  char buf[4096];
  while (!absl::StrContains(head, "\r\n\r\n") &&
         head.size() < kMaxRequestBytes) {
    const ssize_t n = conn.Read(buf, sizeof(buf));
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  const size_t end = head.find("\r\n\r\n");
  if (end != std::string::npos) {
    std::vector<std::string> lines =
        absl::StrSplit(head.substr(0, end), "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    if (first.size() >= 2) {
      request.method = first[0];
      request.target = first[1];
    }
    size_t content_length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      const std::string value(
          absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      if (name == "cookie") request.cookie = value;
      if (name == "content-length" &&
          !absl::SimpleAtoi(value, &content_length)) {
        content_length = 0;
      }
    }
    // Drain a request body (XML-RPC posts one).
    size_t have = head.size() - end - 4;
    while (have < content_length) {
      const ssize_t n = conn.Read(buf, sizeof(buf));
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
    const std::string path = request.target.substr(0, request.target.find('?'));
    std::string location;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(request);
      for (const auto& [p, l] : redirects_) {
        if (p == path) location = l;
      }
    }
    const std::string body = absl::StrCat(options_.name, ":", path);
    const std::string reply =
        location.empty()
            ? absl::StrCat(
                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                  "Content-Length: ",
                  body.size(), "\r\nConnection: close\r\n\r\n", body)
            : absl::StrCat(
                  "HTTP/1.1 302 Found\r\nLocation: ", location,
                  "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    conn.WriteAll(reply);
  }
  if (ssl != nullptr) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
}

}  // namespace vmb::testing
