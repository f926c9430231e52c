// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_runner.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

#include "agent/agent_daemon.h"
#include "agent/grpc_coordinator_connection.h"
#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/base/logging.h"
#include "common/base/signal_watcher.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/base/version.h"
#include "common/xapi/xenapi_records.h"

namespace vmb::agent {
namespace {

constexpr int kMaxJobsLimit = 64;

// An id the coordinator keys agents by: printable, no spaces, bounded.
bool IsAgentId(absl::string_view text) {
  if (text.empty() || text.size() > 128) return false;
  for (char c : text) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.' &&
        c != ':') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> HostUuidFromInventory(const std::string& path) {
  const std::string fix =
      "; give --host-uuid (the host's uuid, \"xe host-list\") or run the "
      "agent on a XenServer / XCP-ng host";
  absl::StatusOr<std::string> text =
      PosixFilesystem::Get()->ReadFile(path, uint64_t{1} << 20);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host-uuid is not given and ", path, " cannot be read (",
                     text.status().message(), ")", fix));
  }
  absl::StatusOr<std::map<std::string, std::string>> values =
      ParseXensourceInventory(*text);
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host-uuid is not given and ", path, " is malformed (",
                     values.status().message(), ")", fix));
  }
  auto it = values->find("INSTALLATION_UUID");
  if (it == values->end() || it->second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host-uuid is not given and ", path,
                     " has no INSTALLATION_UUID", fix));
  }
  if (!IsUuid(it->second)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host-uuid is not given and the INSTALLATION_UUID in ",
                     path, " is not a uuid", fix));
  }
  return absl::AsciiStrToLower(it->second);
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view target) {
  std::string host;
  absl::string_view port;
  if (absl::StartsWith(target, "[")) {
    const size_t close = target.find(']');
    if (close == absl::string_view::npos || close + 1 >= target.size() ||
        target[close + 1] != ':') {
      return absl::InvalidArgumentError("not [ADDRESS]:PORT");
    }
    host = std::string(target.substr(1, close - 1));
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == absl::string_view::npos)
      return absl::InvalidArgumentError("not HOST:PORT (no port)");
    host = std::string(target.substr(0, colon));
    port = target.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(
          "an IPv6 address goes in brackets: [ADDRESS]:PORT");
    }
  }
  int number = 0;
  if (host.empty()) return absl::InvalidArgumentError("no host");
  for (char c : host) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != ':' &&
        c != '_') {
      return absl::InvalidArgumentError("malformed host");
    }
  }
  if (!absl::SimpleAtoi(port, &number) || number < 1 || number > 65535 ||
      !absl::ascii_isdigit(port.empty() ? 'x' : port.front())) {
    return absl::InvalidArgumentError("the port is not a number 1..65535");
  }
  return std::make_pair(host, number);
}

absl::StatusOr<AgentOptions> ResolveAgentOptions(AgentOptions options) {
  if (options.coordinator.empty()) {
    return absl::InvalidArgumentError(
        "--coordinator is required: HOST:PORT of the vmbackup coordinator");
  }
  absl::StatusOr<std::pair<std::string, int>> target =
      SplitHostPort(options.coordinator);
  if (!target.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--coordinator \"", EscapeForLog(options.coordinator),
                     "\": ", target.status().message()));
  }
  VMB_RETURN_IF_ERROR(CheckTransportFlags(
      options.mtls, options.plaintext,
      {{"--coordinator", EscapeForLog(options.coordinator)}}));
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError(
        "--state-dir is required: the agent's own folder (the jobs it holds)");
  }
  if (options.state_dir.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--state-dir ", EscapeForLog(options.state_dir),
                     " must be an absolute path"));
  }
  if (options.max_jobs < 1 || options.max_jobs > kMaxJobsLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-jobs ", options.max_jobs, " is outside 1..", kMaxJobsLimit));
  }
  if (options.commit_wait <= absl::ZeroDuration() ||
      options.commit_wait == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--commit-wait ", absl::FormatDuration(options.commit_wait),
        " must be a positive, finite duration (e.g. 30m)"));
  }
  if (options.host_uuid.empty()) {
    VMB_ASSIGN_OR_RETURN(options.host_uuid,
                         HostUuidFromInventory(options.inventory_path));
  } else if (!IsUuid(options.host_uuid)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--host-uuid \"", EscapeForLog(options.host_uuid), "\" is not a uuid"));
  } else {
    options.host_uuid = absl::AsciiStrToLower(options.host_uuid);
  }
  if (options.agent_id.empty()) options.agent_id = options.host_uuid;
  if (!IsAgentId(options.agent_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--agent-id \"", EscapeForLog(options.agent_id),
        "\" must be 1 to 128 letters, digits and the characters - _ . :"));
  }
  if (options.host_name.empty()) {
    char name[HOST_NAME_MAX + 1] = {};
    if (gethostname(name, sizeof(name) - 1) != 0) {
      return absl::InvalidArgumentError(
          "--host-name is not given and the system's host name cannot be "
          "read");
    }
    options.host_name = name;
  }
  return options;
}

absl::Status RunAgent(const AgentOptions& options) {
  // Both outlive the watcher, which references them.
  absl::Notification stop;
  std::atomic<int> reloads{0};
  int stops = 0;  // the watcher's thread only
  VMB_ASSIGN_OR_RETURN(
      std::unique_ptr<SignalWatcher> watcher,
      SignalWatcher::Start(
          {SIGINT, SIGTERM, SIGHUP}, [&stop, &reloads, &stops](int signo, int) {
            if (signo == SIGHUP) {
              reloads.fetch_add(1);
              return;
            }
            if (++stops > 1) {
              VMB_LOG(WARNING) << "second signal " << signo << ": exiting now";
              _exit(1);
            }
            VMB_LOG(INFO) << "signal " << signo << ": stopping";
            stop.Notify();
          }));

  Filesystem* fs = PosixFilesystem::Get();
  if (::mkdir(options.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno,
                         absl::StrCat("--state-dir ", options.state_dir));
  }
  absl::StatusOr<FileInfo> info = fs->Stat(options.state_dir);
  if (!info.ok()) return Annotate(info.status(), "--state-dir");
  if (!info->is_dir) {
    return absl::FailedPreconditionError(
        absl::StrCat("--state-dir ", options.state_dir, " is not a folder"));
  }
  absl::StatusOr<std::unique_ptr<FileLock>> lock =
      fs->LockFile(JoinPath(options.state_dir, "lock"));
  if (absl::IsUnavailable(lock.status())) {
    return absl::UnavailableError(absl::StrCat(
        "another vmbackup-agent uses --state-dir ", options.state_dir));
  }
  if (!lock.ok()) return Annotate(lock.status(), "--state-dir");

  std::unique_ptr<MtlsCredentials> mtls;
  if (!options.plaintext) {
    // gRPC reads checked copies of the files, kept in the state folder.
    VMB_ASSIGN_OR_RETURN(
        mtls, MtlsCredentials::Create(options.mtls,
                                      JoinPath(options.state_dir, "mtls")));
    if (mtls->current().host_uuid != options.host_uuid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--mtls-cert ", options.mtls.cert, " is ", mtls->current().Describe(),
          ", not a certificate for this host (", kHostUriPrefix,
          options.host_uuid, "): deploy/gen-certs.sh DIR COORDINATOR NAME:",
          options.host_uuid, " makes one"));
    }
    LogCertificateValidity("this agent's", mtls->current());
    RouteGrpcLogsToVmbLog();
  }
  GrpcCoordinatorConnection connection(GrpcCoordinatorConnection::MakeChannel(
      options.coordinator, mtls != nullptr
                               ? mtls->ChannelCredentials()
                               : grpc::InsecureChannelCredentials()));
  AgentDaemon::Options daemon_options;
  daemon_options.connection = &connection;
  daemon_options.fs = fs;
  daemon_options.clock = SystemClock::Get();
  daemon_options.identity.set_agent_id(options.agent_id);
  daemon_options.identity.set_host_uuid(options.host_uuid);
  daemon_options.identity.set_host_name(options.host_name);
  daemon_options.identity.set_version(std::string(VersionString()));
  daemon_options.max_jobs = options.max_jobs;
  daemon_options.state_dir = options.state_dir;
  daemon_options.commit_wait = options.commit_wait;
  AgentDaemon daemon(std::move(daemon_options));
  VMB_RETURN_IF_ERROR(daemon.Start());
  VMB_LOG(INFO) << VersionString() << " agent "
                << EscapeForLog(options.agent_id) << " on host "
                << options.host_uuid << " (" << EscapeForLog(options.host_name)
                << "), coordinator " << EscapeForLog(options.coordinator)
                << (mtls != nullptr ? " (mutual TLS)" : " (plaintext)");
  ServeUntilStopped(stop, &reloads, mtls.get(), "this agent's");
  daemon.Stop();
  return absl::OkStatus();
}

}  // namespace vmb::agent
