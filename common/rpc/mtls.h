// SPDX-License-Identifier: Apache-2.0
#pragma once

// Mutual TLS between the coordinator, its agents and the CLI
// (docs/security.md). Every party shows a certificate from the site's CA
// (deploy/gen-certs.sh); what a peer may do follows from its certificate:
//
//   URI SAN urn:vmbackup:host:<uuid>   an agent, for that pool member only
//   URI SAN urn:vmbackup:operator:...  the Control API (the vmbackup CLI)
//   neither                            a server (the coordinator); a client
//                                      with neither is refused everywhere
//
//   ASSIGN_OR_RETURN(auto tls, MtlsCredentials::Create(
//       {.ca = ..., .cert = ..., .key = ...}, "/var/lib/vmbackup/mtls"));
//   builder.AddListeningPort(addr, tls->ServerCredentials(), &port);
//   ...
//   ASSIGN_OR_RETURN(PeerCertificate peer, PeerOf(*context->auth_context()));
//
// The files are checked before use (the key matches the certificate, which
// chains to the CA and is within its validity) and again on Reload()
// (SIGHUP, or every minute when a file changed): files that fail the check
// are not used, the ones in use stay, and the error is logged.

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace grpc {
class AuthContext;
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace vmb {

inline constexpr absl::string_view kHostUriPrefix = "urn:vmbackup:host:";
inline constexpr absl::string_view kOperatorUriPrefix =
    "urn:vmbackup:operator:";
// A certificate expiring within this is a warning (agents, the report).
inline constexpr absl::Duration kCertificateExpiryWarning =
    absl::Hours(24 * 30);

// --mtls-ca, --mtls-cert, --mtls-key.
struct MtlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
  bool empty() const { return ca.empty() && cert.empty() && key.empty(); }
};

// What the transport flags of a process ask for: mutual TLS with `files`,
// or plaintext. Errors (INVALID_ARGUMENT, naming the flags): neither or both;
// only some of the three --mtls-* flags; --plaintext with an address that
// is not loopback (`addresses` are the HOST:PORT ones the process listens on
// or dials, each with the flag that gave it: {"--listen", "0.0.0.0:7441"}).
struct AddressFlag {
  std::string flag;
  std::string address;
};
absl::Status CheckTransportFlags(const MtlsFiles& files, bool plaintext,
                                 const std::vector<AddressFlag>& addresses);

// Whether `host` (a name or an address, IPv6 with or without brackets) is
// this machine's loopback: 127.0.0.0/8, ::1 or "localhost".
bool IsLoopbackHost(absl::string_view host);
// The same for "HOST:PORT" ("[v6]:PORT", gRPC's "ipv4:"/"ipv6:" prefixes
// and "unix:PATH" allowed).
bool IsLoopbackAddress(absl::string_view address);

// The facts of one X.509 certificate the checks use.
struct CertificateInfo {
  std::string subject;  // RFC 2253
  std::vector<std::string> uris;
  std::vector<std::string> dns_names;
  absl::Time not_before;
  absl::Time not_after;
  // From the URI SANs: the host the certificate is an agent's for (empty
  // when none), and whether it is an operator's.
  std::string host_uuid;
  bool is_operator = false;
  // "CN=agent-x (urn:vmbackup:host:...)" for log lines.
  std::string Describe() const;
};

// Parses the first certificate of a PEM text. Errors: INVALID_ARGUMENT.
absl::StatusOr<CertificateInfo> ParseCertificatePem(absl::string_view pem);

// The three files, read and checked at `now`: the CA file holds at least
// one certificate; the certificate file's first certificate matches the key
// and chains to the CA (through any further certificates of its file) for
// TLS use; `now` is within its validity. Errors: INVALID_ARGUMENT, naming
// the flag and file and saying what is wrong.
struct MtlsMaterial {
  std::string ca_pem;
  std::string cert_pem;  // the whole chain as read
  std::string key_pem;
  CertificateInfo cert;
};
absl::StatusOr<MtlsMaterial> LoadMtlsMaterial(const MtlsFiles& files,
                                              absl::Time now);

// The peer of a call on an mTLS server (gRPC verified its chain to the CA).
// Errors: UNAUTHENTICATED when the call carries no certificate (a plaintext
// server has none).
absl::StatusOr<CertificateInfo> PeerOf(const grpc::AuthContext& context);

// Credentials for the daemons and the CLI that follow file changes.
class MtlsCredentials {
 public:
  // Checks the files (LoadMtlsMaterial). With `work_dir` (made 0700 when
  // missing), gRPC is given checked copies kept there, so a reload swaps a
  // whole good set in while connections keep the one they shook hands with;
  // without, the files are read once (for the short-lived CLI).
  static absl::StatusOr<std::unique_ptr<MtlsCredentials>> Create(
      const MtlsFiles& files, const std::string& work_dir);
  ~MtlsCredentials();

  // A server that requires a client certificate from the CA.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials();
  // A client that shows its certificate and accepts a server whose
  // certificate is from the CA, names the host dialled (gRPC's hostname
  // check) and is not an agent's or an operator's.
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials();

  // Checks the files again; when they changed and pass, the new set is in
  // use for new connections within a second. Returns the check's result
  // (and logs it); on error the set in use stays.
  absl::Status Reload();
  // Reload() only when a file's size or modification time changed.
  absl::Status ReloadIfChanged();

  // The certificate this process shows now.
  CertificateInfo current() const;

 private:
  MtlsCredentials(MtlsFiles files, std::string work_dir);
  absl::Status Install(const MtlsMaterial& material)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Stamp() const;

  const MtlsFiles files_;
  const std::string work_dir_;
  mutable absl::Mutex mu_;
  MtlsMaterial material_ ABSL_GUARDED_BY(mu_);
  std::string stamp_ ABSL_GUARDED_BY(mu_);  // the files' size and mtimes
};

// "the certificate of WHOSE expires in N days (CERT, DATE): renew it ..."
// (or "has expired") when `not_after` is within kCertificateExpiryWarning
// of `now`; "" otherwise.
std::string ExpiryWarning(absl::string_view whose, absl::string_view cert,
                          absl::Time not_after, absl::Time now);

// Logs `whose` certificate ("this coordinator's") and its end of
// validity: a warning when that is within kCertificateExpiryWarning.
void LogCertificateValidity(absl::string_view whose,
                            const CertificateInfo& cert);

// A daemon's main loop: returns when `stop` is notified. Meanwhile, with
// `mtls`, each increment of `*reloads` (SIGHUP; may be null) reloads the
// files at once, and every minute they are reloaded if they changed; a new
// certificate is logged with LogCertificateValidity.
void ServeUntilStopped(const absl::Notification& stop,
                       const std::atomic<int>* reloads, MtlsCredentials* mtls,
                       absl::string_view whose);

// Routes gRPC's own error lines (a refused TLS handshake, for one) into the
// process log, prefixed "grpc:". Idempotent.
void RouteGrpcLogsToVmbLog();

}  // namespace vmb
