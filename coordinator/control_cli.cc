// SPDX-License-Identifier: Apache-2.0
#include "coordinator/control_cli.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include <google/protobuf/util/json_util.h>

#include "common/base/filesystem.h"
#include "common/base/human_format.h"
#include "coordinator/backup_policy.h"
#include "coordinator/control_client.h"
#include "coordinator/preview.h"
#include "coordinator/run_watch_view.h"

namespace vmb::coordinator {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 2;
constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr uint32_t kDefaultRunsLimit = 20;
// How often a wait for the next update looks at env.cancel.
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);
// A terminal's live lines are redrawn at least this often (rates, ETAs)
// while no update comes.
constexpr absl::Duration kIdleRedraw = absl::Seconds(1);
// Log lines remembered to find where a reopened watch's log continues.
constexpr size_t kRecentLines = 5;

int Fail(const CliStreams& io, absl::string_view message) {
  *io.err << "vmbackup: error: " << message << "\n";
  return kExitError;
}

struct CommandInfo {
  const char* name;
  const char* synopsis;  // after "vmbackup NAME"
  const char* text;
  bool json;             // takes --json
  bool limit;            // takes --limit
  bool restore = false;  // takes restore's options
};

constexpr CommandInfo kCommands[] = {
    {"run",
     "CONFIG [preview] [compress=..] [ignore_extra_keys=..] "
     "[pre_clean=..] [--json]",
     "Start a backup run of CONFIG on the coordinator and follow it to its\n"
     "end. CONFIG is read here and sent as text (the coordinator need not see\n"
     "the file). On a terminal: live lines per running VM; otherwise the\n"
     "run's log. Exits with the run's code: 0 success, 1 warnings, 2 errors.\n"
     "Ctrl-C stops watching; the run goes on (vmbackup cancel RUN_ID).\n"
     "With preview: the coordinator's plan, printed as the standalone\n"
     "preview does (--json: as JSON); exit 0 valid, 1 warnings, 2 invalid.\n",
     true, false},
    {"status", "[RUN_ID] [--json]",
     "Show a run (default: the newest): state, times, counts, summary line,\n"
     "and every VM with its host, kind, result, size, duration and reason.\n",
     true, false},
    {"runs", "[--limit N] [--json]",
     "List the recent runs, newest first (default limit 20).\n", true, true},
    {"agents", "[--json]",
     "List the agents: host, live or lost, running/max jobs, last seen,\n"
     "version.\n",
     true, false},
    {"cancel", "RUN_ID",
     "Ask the coordinator to cancel a run: running exports stop and their\n"
     "snapshots are destroyed.\n",
     false, false},
    {"restore",
     "(BACKUP_FOLDER | --vm NAME|UUID --backup-dir DIR [--at "
     "YYYY-MM-DD[-HH:MM:SS]]) [--sr NAME|UUID] [--host NAME|UUID] "
     "[--name NEW_NAME] [--preserve] [--force] [--start] [--stall-timeout "
     "DURATION] [--dry-run] [--test]",
     "Restore a backup through the agent of a host that sees the SR (the\n"
     "folder is a path on the share, mounted at the same place everywhere),\n"
     "and follow it to its end: a line per 10 % uploaded, then the new VM.\n"
     "Exit 0 restored, 1 restored with warnings, 2 not restored (what was\n"
     "made is removed). Without a password it goes to the coordinator;\n"
     "vmbackup [FLAGS] restore PASSWORD ... restores from this machine.\n"
     "--test (or vmbackup verify --restore-test ...): restore under a\n"
     "throwaway name, read each disk back, compare it with the backup's\n"
     "content, then destroy what was made.\n"
     "docs/restore.md has what it does and checks.\n",
     false, false, true},
};

const CommandInfo* FindCommand(absl::string_view name) {
  for (const CommandInfo& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

constexpr char kCommonFlags[] =
    "  --coordinator HOST:PORT  the coordinator (default: "
    "$VMBACKUP_COORDINATOR,\n"
    "                           then 127.0.0.1:7441)\n"
    "  --mtls-ca FILE           the site's CA (ca.crt from "
    "deploy/gen-certs.sh)\n"
    "  --mtls-cert FILE         an operator's certificate (cli.crt)\n"
    "  --mtls-key FILE          its key (cli.key)\n"
    "  --plaintext              no TLS: a loopback --coordinator only\n"
    "  --flagfile FILE          more flags, one a line (default:\n"
    "                           $VMBACKUP_FLAGFILE when set)\n"
    "  --timeout DURATION       deadline of each call (default 10s; a preview\n"
    "                           or start gets at least 2m)\n"
    "  --help                   this text\n";

std::string CommandUsage(const CommandInfo& c) {
  std::string out = absl::StrCat("usage: vmbackup ", c.name, " ", c.synopsis,
                                 " [--coordinator HOST:PORT] [--mtls-ca FILE "
                                 "--mtls-cert FILE --mtls-key FILE]\n\n",
                                 c.text, "\nflags:\n", kCommonFlags);
  if (c.json) {
    absl::StrAppend(&out,
                    "  --json                   print the answer as JSON "
                    "(proto field names)\n");
  }
  if (c.limit) {
    absl::StrAppend(&out,
                    "  --limit N                at most N runs (default 20)\n");
  }
  return out;
}

struct ControlArgs {
  std::string coordinator;  // "" when not given
  bool plaintext = false;
  MtlsFiles mtls;
  std::string flagfile;  // the one read, if any
  std::optional<absl::Duration> timeout;
  bool json = false;
  std::optional<uint32_t> limit;
  bool help = false;
  std::vector<std::string> positional;
  v1::RestoreRequest restore;  // vmbackup restore's options
};

absl::StatusOr<ControlArgs> ParseControlArgs(
    const CommandInfo& command, const std::vector<std::string>& args) {
  ControlArgs out;
  bool literal = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (literal || !absl::StartsWith(arg, "-") || arg == "-") {
      if (!literal && (arg == "help")) {
        out.help = true;
        continue;
      }
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      literal = true;
      continue;
    }
    std::string name = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "--help" || name == "-h") {
      out.help = true;
      continue;
    }
    if (command.restore &&
        (name == "--preserve" || name == "--force" || name == "--dry-run" ||
         name == "--test" || name == "--start")) {
      if (has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " takes no value"));
      }
      if (name == "--preserve") out.restore.mutable_spec()->set_preserve(true);
      if (name == "--force") out.restore.mutable_spec()->set_force(true);
      if (name == "--dry-run") out.restore.set_dry_run(true);
      if (name == "--test") out.restore.mutable_spec()->set_test(true);
      if (name == "--start") out.restore.mutable_spec()->set_start(true);
      continue;
    }
    if (command.restore &&
        (name == "--sr" || name == "--host" || name == "--name" ||
         name == "--vm" || name == "--backup-dir" || name == "--at" ||
         name == "--stall-timeout")) {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat(name, " needs a value"));
        }
        value = args[++i];
      }
      if (value.empty() || value.find_first_of("\r\n") != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " needs a value of one line"));
      }
      if (name == "--sr") out.restore.mutable_spec()->set_sr(value);
      if (name == "--host") out.restore.set_host(value);
      if (name == "--name") out.restore.mutable_spec()->set_name(value);
      if (name == "--vm") out.restore.set_vm(value);
      if (name == "--backup-dir") out.restore.set_backup_dir(value);
      if (name == "--at") out.restore.set_at(value);
      if (name == "--stall-timeout") {
        absl::StatusOr<absl::Duration> d = ParseDurationValue(value);
        if (!d.ok() || *d <= absl::ZeroDuration()) {
          return absl::InvalidArgumentError(
              absl::StrCat("--stall-timeout ", value,
                           ": want a duration such as 30s or 5m"));
        }
        out.restore.mutable_spec()->set_stall_timeout_ms(
            static_cast<uint64_t>(absl::ToInt64Milliseconds(*d)));
      }
      continue;
    }
    if (name == "--plaintext" || name == "--json") {
      if (has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " takes no value"));
      }
      if (name == "--json" && !command.json) {
        return absl::InvalidArgumentError(
            absl::StrCat("vmbackup ", command.name, " has no --json"));
      }
      (name == "--json" ? out.json : out.plaintext) = true;
      continue;
    }
    if (name != "--coordinator" && name != "--timeout" && name != "--limit" &&
        name != "--mtls-ca" && name != "--mtls-cert" && name != "--mtls-key") {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag ", name, " (see vmbackup ", command.name, " --help)"));
    }
    if (name == "--limit" && !command.limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("--limit is a flag of vmbackup runs, not of vmbackup ",
                       command.name));
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = args[++i];
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
    }
    if (name == "--coordinator") {
      out.coordinator = value;
    } else if (name == "--mtls-ca") {
      out.mtls.ca = value;
    } else if (name == "--mtls-cert") {
      out.mtls.cert = value;
    } else if (name == "--mtls-key") {
      out.mtls.key = value;
    } else if (name == "--timeout") {
      absl::StatusOr<absl::Duration> d = ParseDurationValue(value);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--timeout ", value,
                         ": want a positive duration such as 30s, 2m or 600"));
      }
      out.timeout = *d;
    } else {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--limit ", value, ": want a whole number >= 1"));
      }
      out.limit = n;
    }
  }
  return out;
}

// The arguments with the flags of a flag file put first (so that the
// command line wins): the file of --flagfile FILE (taken out of `args`), or
// else `env_file` when not empty. Returns them and the file read ("" none).
// A file's lines are flags ("--name=value", "--name"); empty lines and
// lines starting with '#' are skipped. Errors: INVALID_ARGUMENT naming the
// file (and line).
absl::StatusOr<std::pair<std::vector<std::string>, std::string>> ExpandFlagfile(
    std::vector<std::string> args, const std::string& env_file) {
  std::string file;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") break;
    if (args[i] == "--flagfile" || absl::StartsWith(args[i], "--flagfile=")) {
      if (args[i] == "--flagfile") {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError("--flagfile needs a value");
        }
        file = args[i + 1];
        args.erase(args.begin() + i, args.begin() + i + 2);
      } else {
        file = args[i].substr(strlen("--flagfile="));
        args.erase(args.begin() + i);
      }
      if (file.empty()) {
        return absl::InvalidArgumentError("--flagfile needs a value");
      }
      break;
    }
  }
  const std::string source = file.empty() ? "$VMBACKUP_FLAGFILE" : "--flagfile";
  if (file.empty()) file = env_file;
  if (file.empty()) return std::make_pair(std::move(args), std::string());
  absl::StatusOr<std::string> text =
      PosixFilesystem::Get()->ReadFile(file, 1 << 20);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " ", file, ": ", text.status().message()));
  }
  std::vector<std::string> flags;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (!absl::StartsWith(line, "--") || absl::StartsWith(line, "--flagfile")) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ":", line_number, ": '", TerminalSafe(line),
                       "' is not a flag (--name=value)"));
    }
    flags.emplace_back(line);
  }
  flags.insert(flags.end(), args.begin(), args.end());
  return std::make_pair(std::move(flags), file);
}

// "HOST:PORT", "[V6]:PORT", or a gRPC target with a scheme ("unix:/path",
// "dns:///host:port").
absl::Status CheckAddress(absl::string_view address) {
  for (absl::string_view scheme :
       {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, scheme)) return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port == 0 ||
      port > 65535 ||
      (address.substr(0, colon).find(':') != absl::string_view::npos &&
       !absl::StartsWith(address, "["))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "coordinator address '", address,
        "': want HOST:PORT (e.g. 127.0.0.1:7441, [::1]:7441) or unix:PATH"));
  }
  return absl::OkStatus();
}

std::string Hint(absl::string_view command, absl::string_view run_id,
                 const ControlClient& client) {
  return absl::StrCat("vmbackup ", command, run_id.empty() ? "" : " ", run_id,
                      " --coordinator ", client.address(),
                      client.transport_flags());
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, o).ok()) {
    return "{}\n";
  }
  if (json.empty() || json.back() != '\n') json += "\n";
  return json;
}

ViewContext MakeViewContext(const CliEnvironment& env, Clock* clock) {
  ViewContext ctx;
  const int width = env.terminal_width ? env.terminal_width() : 0;
  ctx.width = width > 0 ? width : 80;
  ctx.now = clock->Now();
  ctx.time_zone = env.time_zone;
  return ctx;
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "config file ", path,
        " does not exist (vmbackup run reads it here and sends it to the "
        "coordinator)"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, " is not a file"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, " is larger than 1 MiB; is it a config file?"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read config file ", path));
  }
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The message for a failed call about `run_id` ("" : the newest run).
std::string CallError(const absl::Status& s, absl::string_view run_id,
                      const ControlClient& client) {
  const std::string& address = client.address();
  if (s.code() != absl::StatusCode::kNotFound) return std::string(s.message());
  if (run_id.empty()) {
    return absl::StrCat("the coordinator at ", address, " has no runs yet");
  }
  return absl::StrCat("no run ", TerminalSafe(run_id),
                      " on the coordinator at ", address, " (",
                      Hint("runs", "", client), " lists the recent runs)");
}

// The watch stream's reading thread: it waits on the stream (and the
// connection), and queues what arrives for the thread that draws.
class UpdatePump {
 public:
  enum class Event { kUpdate, kEnded, kNothing };

  explicit UpdatePump(RunWatchStream* stream)
      : stream_(stream), thread_([this] { Loop(); }) {}
  ~UpdatePump() {
    stream_->Cancel();
    thread_.join();
  }
  UpdatePump(const UpdatePump&) = delete;
  UpdatePump& operator=(const UpdatePump&) = delete;

  // Waits up to `timeout` for the next update (kUpdate, in *update) or the
  // end of the stream (kEnded, its status in *end).
  Event Wait(absl::Duration timeout, v1::RunUpdate* update, absl::Status* end) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &UpdatePump::HasEventLocked),
                         timeout);
    if (!queue_.empty()) {
      *update = std::move(queue_.front());
      queue_.pop_front();
      return Event::kUpdate;
    }
    if (ended_) {
      *end = status_;
      return Event::kEnded;
    }
    return Event::kNothing;
  }

 private:
  bool HasEventLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || ended_;
  }

  void Loop() {
    v1::RunUpdate update;
    while (stream_->Next(&update)) {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(update));
      update.Clear();
    }
    absl::Status status = stream_->Finish();
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
    ended_ = true;
  }

  RunWatchStream* const stream_;
  absl::Mutex mu_;
  std::deque<v1::RunUpdate> queue_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the members above exist
};

bool Retryable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:  // closed without the final update
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:  // the coordinator shutting down
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kInternal:  // a reset stream
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

bool Cancelled(const CliEnvironment& env) {
  return env.cancel != nullptr && env.cancel->HasBeenNotified();
}

// Pauses for `d` of the clock's time unless env.cancel comes first (false).
bool PauseUnlessCancelled(Clock* clock, absl::Duration d,
                          const CliEnvironment& env) {
  const absl::Time end = clock->Now() + d;
  while (!Cancelled(env)) {
    const absl::Duration left = end - clock->Now();
    if (left <= absl::ZeroDuration()) return true;
    clock->SleepFor(std::min(left, kPollInterval));
  }
  return false;
}

// Follows run `run_id` to its final update; returns the exit code.
class RunFollower {
 public:
  RunFollower(ControlClient* client, std::string run_id, const CliStreams& io,
              const CliEnvironment& env)
      : client_(client),
        run_id_(std::move(run_id)),
        io_(io),
        env_(env),
        clock_(env.clock != nullptr ? env.clock : SystemClock::Get()),
        view_(client->address()) {}

  int Follow() {
    absl::Time last_contact = clock_->Now();
    absl::Duration backoff = env_.watch.retry_initial;
    while (true) {
      absl::Status end;
      {
        std::unique_ptr<RunWatchStream> stream = client_->WatchRun(run_id_);
        resync_ = streams_++ > 0;
        UpdatePump pump(stream.get());
        bool dirty = false;
        while (true) {
          absl::Duration wait = kPollInterval;
          if (Terminal() && dirty) {
            wait = std::clamp(
                last_draw_ + env_.watch.redraw_interval - clock_->Now(),
                absl::ZeroDuration(), kPollInterval);
          }
          v1::RunUpdate update;
          const UpdatePump::Event event = pump.Wait(wait, &update, &end);
          if (Cancelled(env_)) return Interrupted();
          if (event == UpdatePump::Event::kEnded) break;
          if (event == UpdatePump::Event::kUpdate) {
            last_contact = clock_->Now();
            backoff = env_.watch.retry_initial;
            if (lost_) {
              Message(absl::StrCat("reconnected to the coordinator at ",
                                   client_->address(), "; watching run ",
                                   run_id_, " again"));
              lost_ = false;
            }
            if (update.final()) return Finished(update);
            Take(update);
            dirty = true;
          }
          MaybeDraw(&dirty);
        }
      }
      if (!Retryable(end)) {
        ClearLive();
        return Fail(io_, CallError(end, run_id_, *client_));
      }
      const std::string why =
          end.ok() ? absl::StrCat("the coordinator at ", client_->address(),
                                  " closed the watch")
                   : std::string(end.message());
      if (clock_->Now() - last_contact >= env_.watch.give_up_after) {
        ClearLive();
        return Fail(
            io_,
            absl::StrCat(
                "nothing heard from the coordinator at ", client_->address(),
                " for ", FormatShortDuration(env_.watch.give_up_after), " (",
                why, "); run ", run_id_,
                " may still be going: ", Hint("status", run_id_, *client_)));
      }
      if (!lost_) {
        Message(absl::StrCat(why, "; reconnecting (the run goes on)"));
        lost_ = true;
      }
      if (!PauseUnlessCancelled(clock_, backoff, env_)) return Interrupted();
      backoff = std::min(backoff * 2, env_.watch.retry_max);
    }
  }

 private:
  bool Terminal() const { return env_.stdout_is_terminal; }

  void Take(const v1::RunUpdate& update) {
    if (Terminal()) {
      view_.Apply(update, clock_->Now());
      return;
    }
    int first = 0;
    if (resync_) {
      resync_ = false;
      first = ResumeIndex(update.log_lines());
    }
    for (int i = first; i < update.log_lines_size(); ++i) {
      const std::string& line = update.log_lines(i);
      *io_.out << TerminalSafe(line) << "\n";
      recent_.push_back(line);
      if (recent_.size() > kRecentLines) recent_.pop_front();
    }
    io_.out->flush();
  }

  // A reopened watch starts again from the beginning of the log the
  // coordinator holds (its first lines may have been dropped, and after a
  // restart it may hold none): the index after the lines printed already,
  // found by the last few of them; 0 when they are not there.
  int ResumeIndex(
      const google::protobuf::RepeatedPtrField<std::string>& lines) const {
    if (recent_.empty()) return 0;
    for (int k = lines.size() - 1; k >= 0; --k) {
      const size_t match = std::min(recent_.size(), static_cast<size_t>(k) + 1);
      bool same = true;
      for (size_t j = 0; j < match && same; ++j) {
        same =
            lines[k - static_cast<int>(j)] == recent_[recent_.size() - 1 - j];
      }
      if (same) return k + 1;
    }
    return 0;
  }

  void MaybeDraw(bool* dirty) {
    if (!Terminal()) return;
    if (*dirty) has_update_ = true;
    if (!has_update_) return;
    const absl::Time now = clock_->Now();
    const absl::Duration since = now - last_draw_;
    if (*dirty ? since < env_.watch.redraw_interval : since < kIdleRedraw) {
      return;
    }
    *io_.out << view_.Draw(MakeViewContext(env_, clock_));
    io_.out->flush();
    last_draw_ = now;
    *dirty = false;
  }

  void ClearLive() {
    if (!Terminal()) return;
    *io_.out << view_.ClearLive();
    io_.out->flush();
  }

  // A line on standard error; on a terminal the live lines are erased first
  // (the next draw puts them back below it).
  void Message(absl::string_view text) {
    ClearLive();
    *io_.err << "vmbackup: " << text << "\n";
    io_.err->flush();
  }

  int Interrupted() {
    ClearLive();
    *io_.err << "vmbackup: stopped watching; run " << run_id_
             << " goes on on the coordinator at " << client_->address()
             << ".\n  to follow it: " << Hint("status", run_id_, *client_)
             << "\n  to cancel it: " << Hint("cancel", run_id_, *client_)
             << "\n";
    return kExitError;
  }

  int Finished(const v1::RunUpdate& update) {
    const v1::RunSummary& run = update.summary();
    if (Terminal()) {
      view_.Apply(update, clock_->Now());
      *io_.out << view_.Finish();
      for (const std::string& w : run.run_warnings()) {
        *io_.out << "warning: " << TerminalSafe(w) << "\n";
      }
    } else {
      Take(update);
    }
    if (!run.fatal().empty()) {
      *io_.err << "vmbackup: error: " << TerminalSafe(run.fatal()) << "\n";
    }
    const std::string summary = TerminalSafe(run.summary_line());
    if (summary.empty()) {
      *io_.out << "run " << run_id_ << " ended: " << RunStateName(run.state())
               << "\n";
    } else if (Terminal() || recent_.empty() ||
               !absl::EndsWith(TerminalSafe(recent_.back()), summary)) {
      *io_.out << summary << "\n";
    }
    io_.out->flush();
    if (run.exit_code() < 0 || run.exit_code() > 2) return kExitError;
    return run.exit_code();
  }

  ControlClient* const client_;
  const std::string run_id_;
  const CliStreams& io_;
  const CliEnvironment& env_;
  Clock* const clock_;
  RunWatchView view_;
  absl::Time last_draw_ = absl::InfinitePast();
  std::deque<std::string> recent_;  // the last log lines printed
  bool resync_ = false;             // the next update opens a reopened watch
  int streams_ = 0;                 // watches opened
  bool lost_ = false;               // the watch broke; "reconnecting" was said
  bool has_update_ = false;         // the view has something to draw
};

int Run(ControlClient& client, const ControlArgs& args, const CliStreams& io,
        const CliEnvironment& env) {
  const std::string& path = args.positional[0];
  std::vector<std::string> optional(args.positional.begin() + 1,
                                    args.positional.end());
  absl::StatusOr<PolicyArguments> parsed = ParsePolicyArguments(optional);
  if (!parsed.ok()) return Fail(io, parsed.status().message());
  if (args.json && !parsed->preview) {
    return Fail(io, "--json applies to vmbackup run CONFIG preview only");
  }
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) return Fail(io, text.status().message());

  v1::StartRunRequest request;
  request.set_config_text(*std::move(text));
  request.set_config_name(BaseName(path));
  for (const std::string& arg : optional) {
    if (absl::AsciiStrToLower(arg.substr(0, arg.find('='))) == "preview") {
      continue;  // the mode, not an override
    }
    request.add_overrides(arg);
  }
  if (parsed->preview) {
    absl::StatusOr<v1::PreviewReport> report = client.Preview(request);
    if (!report.ok()) return Fail(io, report.status().message());
    *io.out << (args.json ? ToJson(*report) : FormatPreview(*report));
    return PreviewExitCode(*report);
  }
  absl::StatusOr<std::string> run_id = client.StartRun(request);
  if (!run_id.ok()) return Fail(io, run_id.status().message());
  return RunFollower(&client, *run_id, io, env).Follow();
}

int Status(ControlClient& client, const ControlArgs& args, const CliStreams& io,
           const CliEnvironment& env) {
  const std::string run_id = args.positional.empty() ? "" : args.positional[0];
  absl::StatusOr<v1::RunSummary> run = client.GetRun(run_id);
  if (!run.ok()) {
    return Fail(io, CallError(run.status(), run_id, client));
  }
  if (args.json) {
    *io.out << ToJson(*run);
    return kExitOk;
  }
  Clock* clock = env.clock != nullptr ? env.clock : SystemClock::Get();
  for (const std::string& line :
       RunStatusLines(*run, MakeViewContext(env, clock))) {
    *io.out << line << "\n";
  }
  return kExitOk;
}

int Runs(ControlClient& client, const ControlArgs& args, const CliStreams& io,
         const CliEnvironment& env) {
  absl::StatusOr<v1::ListRunsResponse> runs =
      client.ListRuns(args.limit.value_or(kDefaultRunsLimit));
  if (!runs.ok()) return Fail(io, runs.status().message());
  if (args.json) {
    *io.out << ToJson(*runs);
    return kExitOk;
  }
  Clock* clock = env.clock != nullptr ? env.clock : SystemClock::Get();
  for (const std::string& line :
       RunListLines(*runs, MakeViewContext(env, clock))) {
    *io.out << line << "\n";
  }
  return kExitOk;
}

int Agents(ControlClient& client, const ControlArgs& args, const CliStreams& io,
           const CliEnvironment& env) {
  absl::StatusOr<v1::ListAgentsResponse> agents = client.ListAgents();
  if (!agents.ok()) return Fail(io, agents.status().message());
  if (args.json) {
    *io.out << ToJson(*agents);
    return kExitOk;
  }
  Clock* clock = env.clock != nullptr ? env.clock : SystemClock::Get();
  for (const std::string& line :
       AgentListLines(*agents, MakeViewContext(env, clock))) {
    *io.out << line << "\n";
  }
  return kExitOk;
}

int Cancel(ControlClient& client, const ControlArgs& args,
           const CliStreams& io) {
  const std::string& run_id = args.positional[0];
  if (absl::Status s = client.CancelRun(run_id); !s.ok()) {
    return Fail(io, CallError(s, run_id, client));
  }
  *io.out << "cancellation of run " << TerminalSafe(run_id)
          << " requested: its running exports stop and their snapshots are "
             "destroyed; "
          << Hint("status", run_id, client) << " shows when it has ended\n";
  return kExitOk;
}

// Follows a restore to its end (polling: a restore changes slowly).
int Restore(ControlClient& client, ControlArgs& args, const CliStreams& io) {
  if (!args.positional.empty())
    args.restore.set_backup_folder(args.positional[0]);
  absl::StatusOr<v1::RestoreState> state = client.StartRestore(args.restore);
  if (!state.ok()) return Fail(io, state.status().message());
  const std::string id = state->restore_id();
  if (args.restore.dry_run()) {
    *io.out << "restore: dry run of " << TerminalSafe(state->backup_folder())
            << " through the agent of " << TerminalSafe(state->host_name())
            << ", nothing changed:\n";
    for (const std::string& p : state->plan())
      *io.out << "  " << TerminalSafe(p) << "\n";
    for (const std::string& w : state->warnings())
      *io.out << "restore: warning: " << TerminalSafe(w) << "\n";
    return kExitOk;
  }
  *io.out << "restore " << TerminalSafe(id) << ": "
          << TerminalSafe(state->backup_folder()) << " through the agent of "
          << TerminalSafe(state->host_name()) << "\n";
  io.out->flush();
  uint64_t next_percent = 0;
  int failures = 0;
  while (!state->done()) {
    absl::SleepFor(absl::Milliseconds(500));
    absl::StatusOr<v1::RestoreState> now = client.GetRestore(id);
    if (!now.ok()) {
      // A passing failure to reach the coordinator is not the restore's.
      if (++failures >= 20) return Fail(io, now.status().message());
      continue;
    }
    failures = 0;
    state = std::move(now);
    const v1::JobStatus& s = state->status();
    if (s.bytes_total() > 0) {
      const uint64_t percent = s.bytes_done() * 100 / s.bytes_total();
      if (percent >= next_percent && !state->done()) {
        *io.out << "restore " << TerminalSafe(id) << ": " << percent << "% of "
                << FormatBytes(s.bytes_total()) << "\n";
        io.out->flush();
        next_percent = percent / 10 * 10 + 10;
      }
    }
  }
  const v1::JobStatus& s = state->status();
  if (s.phase() != v1::JOB_PHASE_SUCCEEDED) {
    return Fail(io, absl::StrCat("restore ", TerminalSafe(id), ": ",
                                 TerminalSafe(s.error_message().empty()
                                                  ? JobPhase_Name(s.phase())
                                                  : s.error_message())));
  }
  const v1::RestoreOutcome& r = s.restore();
  *io.out << "restore: done: VM " << TerminalSafe(r.vm_name()) << " ("
          << r.vm_uuid() << ") on SR " << TerminalSafe(r.sr_name()) << ", "
          << r.disks_size() << " disk(s), " << FormatBytes(s.bytes_done())
          << " uploaded through " << TerminalSafe(r.host_name()) << "\n";
  for (const std::string& d : r.disks())
    *io.out << "  disk " << TerminalSafe(d) << "\n";
  for (const std::string& t : r.test())
    *io.out << "  test " << TerminalSafe(t) << "\n";
  for (const std::string& w : s.warnings())
    *io.out << "restore: warning: " << TerminalSafe(w) << "\n";
  return s.warnings().empty() ? kExitOk : 1;
}

}  // namespace

bool IsControlCommand(absl::string_view word) {
  // `restore` is both: RunCli tells its two forms apart.
  return word != "restore" && FindCommand(word) != nullptr;
}

std::string ControlCommandsUsage() {
  std::string out;
  for (const CommandInfo& c : kCommands) {
    absl::StrAppend(&out, "  vmbackup ", c.name, " ", c.synopsis, "\n");
  }
  absl::StrAppend(&out,
                  "      Clients of the coordinator daemon (vmbackup COMMAND "
                  "--help for each).\n      Their flags come after the "
                  "command:\n");
  for (absl::string_view line : absl::StrSplit(kCommonFlags, '\n')) {
    if (!line.empty()) absl::StrAppend(&out, "    ", line, "\n");
  }
  return out;
}

int RunControlCommand(const std::vector<std::string>& args,
                      const CliStreams& io, const CliEnvironment& env) {
  const CommandInfo* command = args.empty() ? nullptr : FindCommand(args[0]);
  if (command == nullptr) {
    return Fail(io, "not a coordinator command");
  }
  const std::string usage_hint = absl::StrCat(
      "usage: vmbackup ", command->name, " ", command->synopsis, " (vmbackup ",
      command->name, " --help); if '", command->name,
      "' is your password, write: vmbackup -- ", command->name, " ...");
  absl::StatusOr<std::pair<std::vector<std::string>, std::string>> expanded =
      ExpandFlagfile(std::vector<std::string>(args.begin() + 1, args.end()),
                     env.getenv ? env.getenv(kFlagfileEnvVar) : "");
  if (!expanded.ok()) return Fail(io, expanded.status().message());
  absl::StatusOr<ControlArgs> parsed =
      ParseControlArgs(*command, expanded->first);
  if (!parsed.ok()) return Fail(io, parsed.status().message());
  parsed->flagfile = expanded->second;
  if (parsed->help) {
    *io.out << CommandUsage(*command);
    return kExitOk;
  }
  const std::string name = command->name;
  const size_t n = parsed->positional.size();
  if ((name == "run" && n < 1) || (name == "status" && n > 1) ||
      ((name == "runs" || name == "agents") && n > 0) ||
      (name == "cancel" && n != 1) || (name == "restore" && n > 1)) {
    return Fail(io, usage_hint);
  }

  std::string address = parsed->coordinator;
  if (address.empty() && env.getenv) address = env.getenv(kCoordinatorEnvVar);
  if (address.empty()) address = kDefaultCoordinatorAddress;
  if (absl::Status s = CheckAddress(address); !s.ok()) {
    return Fail(io, s.message());
  }
  if (absl::Status s = CheckTransportFlags(parsed->mtls, parsed->plaintext,
                                           {{"--coordinator", address}});
      !s.ok()) {
    return Fail(io, absl::StrCat("to connect to ", address, ": ", s.message()));
  }
  ControlClientOptions options;
  options.address = address;
  options.plaintext = parsed->plaintext;
  options.mtls = parsed->mtls;
  options.transport_flags =
      parsed->plaintext ? std::string(" --plaintext")
      : !parsed->flagfile.empty()
          ? absl::StrCat(" --flagfile ", parsed->flagfile)
          : absl::StrCat(" --mtls-ca ", parsed->mtls.ca, " --mtls-cert ",
                         parsed->mtls.cert, " --mtls-key ", parsed->mtls.key);
  if (parsed->timeout.has_value()) {
    options.timeout = *parsed->timeout;
    options.planning_timeout = std::max(*parsed->timeout, absl::Minutes(2));
  }
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Create(options);
  if (!client.ok()) return Fail(io, client.status().message());

  if (name == "run") return Run(**client, *parsed, io, env);
  if (name == "status") return Status(**client, *parsed, io, env);
  if (name == "runs") return Runs(**client, *parsed, io, env);
  if (name == "agents") return Agents(**client, *parsed, io, env);
  if (name == "restore") return Restore(**client, *parsed, io);
  return Cancel(**client, *parsed, io);
}

}  // namespace vmb::coordinator
