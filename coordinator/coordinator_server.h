// SPDX-License-Identifier: Apache-2.0
#pragma once

// The coordinator daemon (docs/operations.md): the agents' Synchronize
// (AgentService), the CLI's Control service and the standard gRPC health
// service on one listening address; the XAPI session it keeps alive and
// hands to agents; the runs and their journal.
//
//   ASSIGN_OR_RETURN(auto server, CoordinatorServer::Start(options));
//   ... server->port() ...
//   server->Stop();   // runs under way are resumed by the next start
//
// RunCoordinator() is the daemon's whole life, wired with the real
// implementations; tests build a CoordinatorServer with their own.

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/rpc/mtls.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xenapi_client.h"
#include "coordinator/mailer.h"
#include "coordinator/run_journal.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

class CoordinatorServer {
 public:
  struct Options {
    // Not owned; must outlive the server.
    XenApiClient* xapi = nullptr;  // the pool master; logged in by the server
    Filesystem* fs = nullptr;
    Clock* clock = nullptr;
    RunJournal* journal = nullptr;

    std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0: any free one
    // Mutual TLS (not owned): every caller shows a certificate from the CA;
    // an agent's binds it to its host, the Control API wants an operator's.
    // Null: plaintext, every caller trusted (loopback only: RunCoordinator
    // checks).
    MtlsCredentials* mtls = nullptr;
    absl::Duration heartbeat_interval = absl::Seconds(5);
    // How often the XAPI session is checked (and renewed when XAPI forgot
    // it).
    absl::Duration session_check = absl::Seconds(30);
    TlsOptions tls;           // toward XAPI
    std::string server_name;  // status.log's host column
    absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
    absl::TimeZone time_zone = absl::LocalTimeZone();
    RetryOptions mail_retry;  // the e-mail report's tries
  };

  // Resumes the journal's unfinished runs, then listens. Errors:
  // INVALID_ARGUMENT for a bad listen address, UNAVAILABLE when it cannot be
  // bound, the journal's.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const Options& options);

  virtual ~CoordinatorServer() = default;
  virtual int port() const = 0;
  // Stops listening (held agent calls are answered first), lets go of the
  // runs under way (left to resume) and joins every thread. Idempotent.
  virtual void Stop() = 0;
};

struct CoordinatorOptions {
  std::string listen = "127.0.0.1:7441";
  std::string xapi_url;
  std::string user = "root";
  std::string password_file;
  std::string state_dir;
  absl::Duration heartbeat_interval = absl::Seconds(5);
  bool plaintext = false;     // --plaintext (loopback only)
  MtlsFiles mtls;             // --mtls-ca, --mtls-cert, --mtls-key
  TlsOptions tls;             // toward XAPI
  std::string tls_pins_file;  // loaded (with TOFU when asked) at start
  bool tls_pins_tofu = false;
  std::string tls_fingerprint;  // the master's pin
  // Written with the bound port once listening (for --listen=HOST:0).
  std::string port_file;
  absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
  absl::Duration mail_retry_backoff = absl::Seconds(5);  // doubled each try
};

// Warnings for the certificates that end within kCertificateExpiryWarning
// of `now`: the agents' (as they showed them) and the coordinator's own.
std::vector<std::string> CertificateWarnings(
    const std::vector<v1::AgentInfo>& agents,
    const std::optional<CertificateInfo>& own, absl::Time now);

// The daemon: reads the password file, opens the journal under state_dir,
// starts the server and returns after `stop` is notified (SIGTERM). Each
// increment of `*reloads` (SIGHUP) re-reads the --mtls-* files; they are
// also looked at every minute and re-read when changed.
// Errors: what keeps it from starting, each naming the flag or file.
absl::Status RunCoordinator(const CoordinatorOptions& options,
                            const absl::Notification& stop,
                            const std::atomic<int>* reloads = nullptr);

}  // namespace vmb::coordinator
