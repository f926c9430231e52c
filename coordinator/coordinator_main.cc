// SPDX-License-Identifier: Apache-2.0
// vmbackup-coordinator: the coordinator daemon (docs/operations.md).
#include <signal.h>

#include <atomic>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

#include "common/base/daemon_flags.h"
#include "common/base/signal_watcher.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xmlrpc_codec.h"
#include "coordinator/coordinator_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7441",
          "HOST:PORT the agents and the CLI connect to");
ABSL_FLAG(std::string, xapi_url, "", "the pool master, https://HOST");
ABSL_FLAG(std::string, user, "root", "XenAPI user");
ABSL_FLAG(
    std::string, password_file, "",
    "VmBackup password file (base64, mode 0600) with the user's password");
ABSL_FLAG(std::string, state_dir, "",
          "folder of the run journal (journal.db, SQLite)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "agents call at least this often; 3 missed: the agent is lost");
ABSL_FLAG(bool, plaintext, false,
          "no TLS toward agents and CLI: --listen must be loopback");
ABSL_FLAG(std::string, mtls_ca, "",
          "PEM file of the site's CA (ca.crt from deploy/gen-certs.sh): "
          "agents and operators must show a certificate it issued");
ABSL_FLAG(std::string, mtls_cert, "",
          "this coordinator's certificate (coordinator.crt)");
ABSL_FLAG(std::string, mtls_key, "",
          "this coordinator's private key (coordinator.key, mode 0600)");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of CAs trusted for XAPI");
ABSL_FLAG(std::string, tls_fingerprint, "",
          "SHA-256 pin of the --xapi-url host's certificate");
ABSL_FLAG(std::string, tls_pins, "", "per-host pins file for XAPI");
ABSL_FLAG(bool, tls_pins_tofu, false,
          "record a host's certificate in --tls-pins on first use");
ABSL_FLAG(bool, tls_insecure, false, "accept any XAPI certificate (tests)");
ABSL_FLAG(absl::Duration, mail_retry_backoff, absl::Seconds(5),
          "the wait before the e-mail report's second try (doubled before "
          "the third)");
ABSL_FLAG(std::string, port_file, "",
          "write the port listened on here (useful with --listen=HOST:0)");
ABSL_FLAG(absl::Duration, snapshot_destroy_timeout, absl::Minutes(2),
          "how long a snapshot XAPI holds is retried before it is left");

int main(int argc, char** argv) {
  // The daemon's locks are checked by the tests (absl's deadlock detection,
  // on in the tests' builds); in service it would cost every lock a graph
  // lookup.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::vector<std::string> rest = vmb::ParseDaemonFlags(
      argc, argv, "vmbackup-coordinator",
      "vmbackup-coordinator --xapi-url URL --password-file FILE --state-dir "
      "DIR --mtls-ca FILE --mtls-cert FILE --mtls-key FILE [--listen "
      "HOST:PORT] ...\nThe vmbackup coordinator daemon (docs/operations.md). "
      "--flagfile=FILE reads flags from a file, one a line.",
      "coordinator_main.cc");
  if (!rest.empty()) {
    std::cerr << "vmbackup-coordinator: unexpected argument: " << rest.front()
              << "\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  vmb::InitCurlGlobal();
  vmb::InitXmlRpcCodec();
  absl::Notification stop;
  std::atomic<int> reloads{0};
  int stops = 0;  // the watcher's thread only
  absl::StatusOr<std::unique_ptr<vmb::SignalWatcher>> watcher =
      vmb::SignalWatcher::Start({SIGINT, SIGTERM, SIGHUP},
                                [&stop, &reloads, &stops](int signo, int) {
                                  if (signo == SIGHUP) {
                                    reloads.fetch_add(1);
                                  } else if (++stops == 1) {
                                    stop.Notify();
                                  }
                                });
  if (!watcher.ok()) {
    std::cerr << "vmbackup-coordinator: " << watcher.status().message() << "\n";
    return 2;
  }
  vmb::coordinator::CoordinatorOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.xapi_url = absl::GetFlag(FLAGS_xapi_url);
  o.user = absl::GetFlag(FLAGS_user);
  o.password_file = absl::GetFlag(FLAGS_password_file);
  o.state_dir = absl::GetFlag(FLAGS_state_dir);
  o.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  o.plaintext = absl::GetFlag(FLAGS_plaintext);
  o.mtls.ca = absl::GetFlag(FLAGS_mtls_ca);
  o.mtls.cert = absl::GetFlag(FLAGS_mtls_cert);
  o.mtls.key = absl::GetFlag(FLAGS_mtls_key);
  o.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.tls.insecure = absl::GetFlag(FLAGS_tls_insecure);
  o.tls_fingerprint = absl::GetFlag(FLAGS_tls_fingerprint);
  o.tls_pins_file = absl::GetFlag(FLAGS_tls_pins);
  o.tls_pins_tofu = absl::GetFlag(FLAGS_tls_pins_tofu);
  o.snapshot_destroy_timeout = absl::GetFlag(FLAGS_snapshot_destroy_timeout);
  o.port_file = absl::GetFlag(FLAGS_port_file);
  o.mail_retry_backoff = absl::GetFlag(FLAGS_mail_retry_backoff);
  const absl::Status s = vmb::coordinator::RunCoordinator(o, stop, &reloads);
  watcher->reset();
  if (!s.ok()) {
    std::cerr << "vmbackup-coordinator: " << s.message() << "\n";
    return 2;
  }
  return 0;
}
