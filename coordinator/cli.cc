// SPDX-License-Identifier: Apache-2.0
#include "coordinator/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include <google/protobuf/util/json_util.h>

#include "common/backup/backup_layout.h"
#include "common/backup/backup_verify.h"
#include "common/backup/restore.h"
#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/version.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "coordinator/backup_policy.h"
#include "coordinator/backup_run.h"
#include "coordinator/control_cli.h"
#include "coordinator/password_file.h"
#include "coordinator/pool_inventory.h"
#include "coordinator/preview.h"
#include "coordinator/run_report.h"
#include "coordinator/verify_cli.h"

namespace vmb::coordinator {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitWarnings = 1;
constexpr int kExitError = 2;
constexpr size_t kMaxConfigBytes = 1 << 20;

struct Flags {
  std::string xapi_url = "http://localhost";
  std::string user = "root";
  TlsOptions tls;  // complete once ParseFlags returned
  std::string tls_fingerprint;
  std::string tls_pins;
  bool tls_pins_tofu = false;
  bool json = false;
  bool allow_insecure_password_file = false;
  absl::Duration snapshot_destroy_timeout = absl::Minutes(2);
};

int Fail(const CliStreams& io, const std::string& message) {
  *io.err << "vmbackup: error: " << message << "\n";
  return kExitError;
}

std::string ShortUsage() {
  return "usage: vmbackup [FLAGS] <password|password-file|-> "
         "<config-file|vm-selector> "
         "[preview] [compress=True|False] [ignore_extra_keys=True|False] "
         "[pre_clean=True|False]\n       vmbackup help (more), vmbackup config "
         "(config keys), "
         "vmbackup example (a config file)\n";
}

// The pin store of --tls-pins, --tls-pins-tofu and --tls-fingerprint, once
// all flags are read. Errors (INVALID_ARGUMENT) name the flag at fault.
absl::Status FinishTlsFlags(Flags* flags) {
  std::vector<std::string> given;
  if (!flags->tls.ca_file.empty()) given.push_back("--tls-ca");
  if (!flags->tls_fingerprint.empty()) given.push_back("--tls-fingerprint");
  if (!flags->tls_pins.empty()) given.push_back("--tls-pins");
  if (flags->tls_pins_tofu) given.push_back("--tls-pins-tofu");
  if (given.empty()) return absl::OkStatus();
  if (flags->tls_pins_tofu && flags->tls_pins.empty()) {
    return absl::InvalidArgumentError(
        "--tls-pins-tofu needs --tls-pins FILE, the file it records the "
        "certificates in");
  }
  if (flags->tls.insecure) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-insecure accepts any certificate: it cannot be combined with ",
        given[0]));
  }
  std::optional<HttpUrl> url = ParseHttpUrl(flags->xapi_url);
  if (!url.has_value() || url->scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat(given[0], " applies to https:// only, and --xapi-url is ",
                     flags->xapi_url));
  }
  if (!flags->tls_pins.empty()) {
    absl::StatusOr<std::shared_ptr<HostPins>> pins =
        HostPins::Load(flags->tls_pins, {.tofu = flags->tls_pins_tofu});
    if (!pins.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-pins: ", pins.status().message()));
    }
    flags->tls.pins = *std::move(pins);
  }
  if (!flags->tls_fingerprint.empty()) {
    // Pins the host of --xapi-url only: every pool host has a certificate
    // of its own.
    if (flags->tls.pins == nullptr) {
      flags->tls.pins = std::make_shared<HostPins>();
    }
    if (absl::Status s =
            flags->tls.pins->AddPin(url->host, flags->tls_fingerprint);
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-fingerprint: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// Parses the flags before the positional arguments. Returns the index of
// the first positional argument, or an exit code (negative: none).
int ParseFlags(const std::vector<std::string>& args, Flags* flags, size_t* next,
               bool* literal, const CliStreams& io) {
  size_t i = 0;
  for (; i < args.size() && absl::StartsWith(args[i], "--"); ++i) {
    if (args[i] == "--") {
      *literal = true;
      ++i;
      break;
    }
    std::string name = args[i];
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    if (name == "--help") {
      *io.out << CliUsage();
      return kExitOk;
    }
    if (name == "--version") {
      *io.out << VersionString() << "\n";
      return kExitOk;
    }
    if (name == "--tls-insecure" || name == "--tls-pins-tofu" ||
        name == "--json" || name == "--allow-insecure-password-file") {
      if (has_value) return Fail(io, absl::StrCat(name, " takes no value"));
      if (name == "--tls-insecure") flags->tls.insecure = true;
      if (name == "--tls-pins-tofu") flags->tls_pins_tofu = true;
      if (name == "--json") flags->json = true;
      if (name == "--allow-insecure-password-file")
        flags->allow_insecure_password_file = true;
      continue;
    }
    if (name == "--coordinator" || name == "--plaintext" ||
        name == "--timeout" || name == "--limit") {
      return Fail(io, absl::StrCat(name,
                                   " is a flag of the coordinator commands; "
                                   "it comes after the command word "
                                   "(vmbackup status ",
                                   name, " ...)"));
    }
    if (name != "--xapi-url" && name != "--user" && name != "--tls-ca" &&
        name != "--tls-fingerprint" && name != "--tls-pins" &&
        name != "--snapshot-destroy-timeout") {
      return Fail(io,
                  absl::StrCat("unknown flag ", name, " (see vmbackup help)"));
    }
    if (!take_value() || value.empty())
      return Fail(io, absl::StrCat(name, " needs a value"));
    if (name == "--xapi-url") {
      if (!absl::StartsWith(value, "http://") &&
          !absl::StartsWith(value, "https://")) {
        return Fail(io,
                    absl::StrCat(
                        "--xapi-url must start with http:// or https://, not '",
                        value, "'"));
      }
      flags->xapi_url = value;
    } else if (name == "--user") {
      flags->user = value;
    } else if (name == "--tls-ca") {
      flags->tls.ca_file = value;
    } else if (name == "--tls-pins") {
      flags->tls_pins = value;
    } else if (name == "--snapshot-destroy-timeout") {
      absl::StatusOr<absl::Duration> d = ParseDurationValue(value);
      if (!d.ok()) {
        return Fail(io, absl::StrCat("--snapshot-destroy-timeout: ",
                                     d.status().message()));
      }
      flags->snapshot_destroy_timeout = *d;
    } else {
      std::string normalised;
      if (absl::Status s = NormaliseSha256Fingerprint(value, &normalised);
          !s.ok()) {
        return Fail(io, absl::StrCat("--tls-fingerprint: ", s.message()));
      }
      flags->tls_fingerprint = value;
    }
  }
  if (absl::Status s = FinishTlsFlags(flags); !s.ok()) {
    return Fail(io, std::string(s.message()));
  }
  *next = i;
  return -1;
}

std::string ReadAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

absl::StatusOr<PasswordSource> Password(const std::string& arg,
                                        const Flags& flags,
                                        const CliStreams& io) {
  const std::string stdin_text = arg == "-" ? ReadAll(*io.in) : "";
  absl::StatusOr<PasswordSource> password = ResolvePasswordArgument(
      arg, stdin_text, flags.allow_insecure_password_file);
  if (password.ok() && password->from_command_line) {
    *io.err << "vmbackup: warning: a password on the command line is visible "
               "in the process "
               "list; use a password file (vmbackup <password> "
               "create-password-file=FILE) or "
               "'-' to read it from standard input\n";
  }
  return password;
}

std::unique_ptr<XmlRpcXenApiClient> MakeClient(const Flags& flags,
                                               const std::string& password) {
  XmlRpcXenApiClient::Options options;
  options.url = flags.xapi_url;
  options.username = flags.user;
  options.password = password;
  CurlXmlRpcTransport::Options transport;
  transport.tls = flags.tls;
  return std::make_unique<XmlRpcXenApiClient>(
      options, std::make_unique<CurlXmlRpcTransport>(transport));
}

// A client logged in with the password named by `arg` (a password file,
// '-' or the password itself). Errors: one line each, naming where the
// password came from when the pool refused it.
absl::StatusOr<std::unique_ptr<XmlRpcXenApiClient>> LoggedInClient(
    const Flags& flags, const std::string& arg, const CliStreams& io) {
  absl::StatusOr<PasswordSource> password = Password(arg, flags, io);
  if (!password.ok()) return password.status();
  std::unique_ptr<XmlRpcXenApiClient> client =
      MakeClient(flags, password->password);
  if (absl::Status s = client->Login(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (password from ",
                                               password->origin, ")"));
  }
  return client;
}

int Inventory(const Flags& flags, const std::vector<std::string>& args,
              const CliStreams& io) {
  if (args.size() != 1) {
    return Fail(io,
                "usage: vmbackup [FLAGS] inventory <password|password-file|->");
  }
  absl::StatusOr<std::unique_ptr<XmlRpcXenApiClient>> client =
      LoggedInClient(flags, args[0], io);
  if (!client.ok()) return Fail(io, std::string(client.status().message()));
  absl::StatusOr<PoolInventory> inventory = LoadPoolInventory(**client);
  if (!inventory.ok())
    return Fail(io, std::string(inventory.status().message()));
  *io.out << FormatInventory(*inventory);
  return kExitOk;
}

constexpr absl::string_view kRestoreUsage =
    "usage: vmbackup [FLAGS] restore <password|password-file|-> "
    "(BACKUP_FOLDER | --vm NAME|UUID --backup-dir DIR [--at "
    "YYYY-MM-DD[-HH:MM:SS]]) [--sr NAME|UUID] [--host NAME|UUID] [--name "
    "NEW_NAME] [--preserve] [--force] [--start] [--stall-timeout DURATION] "
    "[--dry-run] [--test]";

int Restore(const Flags& flags, const std::vector<std::string>& args,
            const CliStreams& io) {
  if (args.empty()) return Fail(io, std::string(kRestoreUsage));
  RestoreRequest request;
  std::string vm, backup_dir, at_text;
  std::optional<absl::Duration> stall_timeout;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    bool ok = true;
    if (a == "--sr") {
      ok = value(&request.sr);
    } else if (a == "--host") {
      ok = value(&request.host);
    } else if (a == "--name") {
      ok = value(&request.name);
    } else if (a == "--vm") {
      ok = value(&vm);
    } else if (a == "--backup-dir") {
      ok = value(&backup_dir);
    } else if (a == "--at") {
      ok = value(&at_text);
    } else if (a == "--preserve") {
      request.preserve = true;
    } else if (a == "--force") {
      request.force = true;
    } else if (a == "--dry-run") {
      request.dry_run = true;
    } else if (a == "--test") {
      request.test = true;
    } else if (a == "--start") {
      request.start = true;
    } else if (a == "--stall-timeout") {
      std::string text;
      ok = value(&text);
      absl::StatusOr<absl::Duration> d =
          ok ? ParseDurationValue(text) : absl::InvalidArgumentError("");
      if (ok && (!d.ok() || *d <= absl::ZeroDuration())) {
        return Fail(
            io, absl::StrCat("restore: --stall-timeout ", EscapeForLog(text),
                             ": want a duration such as 30s or 5m"));
      }
      if (ok) stall_timeout = *d;
    } else if (!absl::StartsWith(a, "--") && request.backup_folder.empty()) {
      request.backup_folder = a;
    } else {
      return Fail(io, absl::StrCat("restore: unknown argument ",
                                   EscapeForLog(a), "\n", kRestoreUsage));
    }
    if (!ok) {
      return Fail(
          io, absl::StrCat("restore: ", a, " needs a value\n", kRestoreUsage));
    }
  }
  if (request.name.find_first_of("\n\r") != std::string::npos)
    return Fail(io, "restore: --name must be one line");
  PosixFilesystem fs;
  if (!vm.empty() || !backup_dir.empty() || !at_text.empty()) {
    if (!request.backup_folder.empty() || vm.empty() || backup_dir.empty()) {
      return Fail(io, absl::StrCat("restore: give a BACKUP_FOLDER, or --vm "
                                   "with --backup-dir (and maybe --at)\n",
                                   kRestoreUsage));
    }
    absl::StatusOr<std::string> picked =
        PickBackupToRestore(fs, backup_dir, vm, at_text);
    if (!picked.ok())
      return Fail(io, absl::StrCat("restore: ", picked.status().message()));
    request.backup_folder = *picked;
    *io.out << "restore: backup " << request.backup_folder << "\n";
  }
  if (request.backup_folder.empty())
    return Fail(io, std::string(kRestoreUsage));
  absl::StatusOr<std::unique_ptr<XmlRpcXenApiClient>> client =
      LoggedInClient(flags, args[0], io);
  if (!client.ok()) return Fail(io, std::string(client.status().message()));
  RestoreContext context;
  context.xapi = client->get();
  context.fs = &fs;
  context.clock = SystemClock::Get();
  context.tls = flags.tls;
  if (stall_timeout.has_value()) {
    context.timeouts.first_byte = *stall_timeout;
    context.timeouts.inactivity = *stall_timeout;
  }
  context.log = [&](const std::string& line) {
    *io.out << "restore: " << line << "\n";
    io.out->flush();
  };
  absl::StatusOr<RestoreResult> r = RestoreBackup(context, request);
  (void)(*client)->Logout();
  if (!r.ok()) return Fail(io, absl::StrCat("restore: ", r.status().message()));
  if (request.dry_run) {
    *io.out << "restore: dry run of " << r->kind << " backup of "
            << EscapeForLog(r->original_name) << ", nothing changed:\n";
    for (const std::string& p : r->plan) *io.out << "  " << p << "\n";
    return kExitOk;
  }
  *io.out << "restore: done: VM " << EscapeForLog(r->vm_name) << " ("
          << r->vm_uuid << ") on SR " << EscapeForLog(r->sr_name) << ", "
          << r->disks.size() << " disk(s), " << FormatBytes(r->bytes)
          << " uploaded through " << r->host_name << "\n";
  for (const std::string& d : r->disks) *io.out << "  disk " << d << "\n";
  for (const std::string& t : r->test) *io.out << "  test " << t << "\n";
  for (const std::string& w : r->warnings)
    *io.out << "restore: warning: " << w << "\n";
  return r->warnings.empty() ? kExitOk : kExitWarnings;
}

int CreatePasswordFile(const Flags& flags, const std::vector<std::string>& p,
                       const CliStreams& io) {
  const std::string& target = p[1];
  const size_t eq = target.find('=');
  const std::string path = eq == std::string::npos ? "" : target.substr(eq + 1);
  if (absl::AsciiStrToLower(target.substr(0, eq)) != "create-password-file" ||
      path.empty()) {
    return Fail(io, "usage: vmbackup <password|-> create-password-file=FILE");
  }
  if (p.size() > 2) {
    return Fail(
        io,
        absl::StrCat("create-password-file takes no further arguments, not '",
                     p[2], "'"));
  }
  absl::StatusOr<PasswordSource> password = Password(p[0], flags, io);
  if (!password.ok()) return Fail(io, std::string(password.status().message()));
  if (absl::Status s = WritePasswordFile(path, password->password); !s.ok()) {
    return Fail(io, std::string(s.message()));
  }
  *io.out << "password file saved to: " << path << "\n";
  return kExitOk;
}

// A config file (an existing path) or a vm-selector.
absl::StatusOr<BackupPolicy> LoadPolicy(const std::string& target,
                                        const PolicyOverrides& o,
                                        bool* from_file) {
  struct stat st;
  *from_file = false;
  if (stat(target.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", target, " is not a file"));
    }
    if (static_cast<size_t>(st.st_size) > kMaxConfigBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", target,
                       " is larger than 1 MiB; is it a config file?"));
    }
    std::ifstream in(target, std::ios::binary);
    if (!in)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read config file ", target));
    *from_file = true;
    return ParseBackupPolicy(ReadAll(in), target, o);
  }
  // A missing file would otherwise become a regex selector that matches
  // nothing.
  if (absl::StrContains(target, "/") || absl::EndsWith(target, ".cfg") ||
      absl::EndsWith(target, ".conf")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", target,
        " does not exist (to select VMs by a name like this, write "
        "vm-export=",
        target, ")"));
  }
  return PolicyForSelector(target, o);
}

// The short host name of this machine, as the seed's status.log has it.
std::string ShortHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  std::string s = name;
  return s.substr(0, s.find('.'));
}

int Backup(const Flags& flags, const std::vector<std::string>& p,
           const CliStreams& io, const CliEnvironment& env) {
  absl::StatusOr<PolicyArguments> optional =
      ParsePolicyArguments(std::vector<std::string>(p.begin() + 2, p.end()));
  if (!optional.ok()) return Fail(io, std::string(optional.status().message()));
  bool from_file = false;
  absl::StatusOr<BackupPolicy> policy =
      LoadPolicy(p[1], optional->overrides, &from_file);
  if (!policy.ok()) return Fail(io, std::string(policy.status().message()));
  absl::StatusOr<PasswordSource> password = Password(p[0], flags, io);
  if (!password.ok()) return Fail(io, std::string(password.status().message()));
  std::unique_ptr<XmlRpcXenApiClient> client =
      MakeClient(flags, password->password);
  if (!optional->preview) {
    if (!env.make_executor) {
      return Fail(io, "this build of vmbackup cannot run backups");
    }
    BackupRunOptions o;
    o.xapi = client.get();
    o.fs = PosixFilesystem::Get();
    o.clock = SystemClock::Get();
    o.out = io.out;
    o.cancel = env.cancel;
    o.make_executor = env.make_executor;
    o.from_config_file = from_file;
    o.server_name = ShortHostName();
    o.tls = flags.tls;
    o.snapshot_destroy_timeout = flags.snapshot_destroy_timeout;
    const absl::Time started = o.clock->Now();
    const BackupRunResult result = RunBackup(*policy, o);
    v1::RunSummary summary =
        SummaryOfResult(result, *policy, started, o.clock->Now());
    if (policy->verify_after_run > 0 && result.fatal.empty()) {
      // Older backups read back; never changes the run's exit code.
      const VerifySummary verified = VerifyBackups(
          *PosixFilesystem::Get(),
          PlanVerifyAfterRun(*PosixFilesystem::Get(), policy->backup_dir,
                             policy->verify_after_run));
      *io.out << "verify_after_run=" << policy->verify_after_run
              << "%: " << verified.line << "\n";
      for (const std::string& f : verified.findings) {
        *io.out << "  " << EscapeForLog(f) << "\n";
      }
      summary.set_verify(verified.line);
      for (const std::string& f : verified.findings)
        summary.add_verify_findings(f);
    }
    if (from_file) {
      // The seed mails from its config-file form only; so does this.
      ReportContext context;
      context.pool_name = result.pool_name;
      context.default_from = absl::StrCat("root@", o.server_name);
      const std::string mail =
          MailRunReport(*policy, summary, context, o.clock);
      if (absl::StartsWith(mail, "FAILED")) {
        *io.err << "vmbackup: warning: e-mail report " << mail << "\n";
      }
    }
    if (!result.fatal.empty() &&
        absl::StrContains(result.fatal, "login_with_password")) {
      *io.err << "vmbackup: error: " << result.fatal << " (password from "
              << password->origin << ")\n";
    } else if (!result.fatal.empty()) {
      *io.err << "vmbackup: error: " << result.fatal << "\n";
    }
    return result.exit_code;
  }
  v1::PreviewReport report = BuildPreview(*policy, *client, {from_file});
  if (!report.valid() &&
      absl::StrContains(report.error(), "login_with_password")) {
    report.set_error(absl::StrCat(report.error(), " (password from ",
                                  password->origin, ")"));
  }
  if (flags.json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions o;
    o.add_whitespace = true;
    o.preserve_proto_field_names = true;
    o.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(report, &json, o);
    *io.out << json;
  } else {
    *io.out << FormatPreview(report);
  }
  return PreviewExitCode(report);
}

}  // namespace

std::string CliUsage() {
  return R"(usage:
  vmbackup [FLAGS] <password|password-file|-> <config-file|vm-selector>
           [compress=True|False] [ignore_extra_keys=True|False] [pre_clean=True|False]
      Back up the selected VMs (VmBackup.py's job): snapshot, verified export
      from the host each VM runs on, the seed's metadata files and folders,
      retention, status.log, and the summary line. Ctrl-C (SIGINT) or SIGTERM
      cancels: running exports stop and their snapshots are destroyed.
  vmbackup [FLAGS] <password|password-file|-> <config-file|vm-selector> preview
           [compress=True|False] [ignore_extra_keys=True|False] [pre_clean=True|False]
      Check a config file (or a vm-selector) against the pool and show the plan:
      settings, the VMs, the host that exports each one and why, sizes and
      warnings. Writes nothing.
  vmbackup [FLAGS] <password|-> create-password-file=FILE
      Write FILE (mode 0600) holding the password base64-encoded, the
      VmBackup.py format. Base64 obscures the password; it does not encrypt it.
  vmbackup [FLAGS] inventory <password|password-file|->
      Log in to the pool and list its hosts, storage and VMs.
  vmbackup [FLAGS] restore <password|password-file|-> BACKUP_FOLDER
           [--sr NAME|UUID] [--host NAME|UUID] [--name NEW_NAME]
           [--preserve] [--force] [--start] [--stall-timeout DURATION]
           [--dry-run] [--test]
  vmbackup [FLAGS] restore <password|password-file|-> --vm NAME|UUID
           --backup-dir DIR [--at YYYY-MM-DD[-HH:MM:SS]] [same options]
      Restore a backup into the pool as a new VM, named <name> (restored
      YYYY-MM-DD) unless --name, on --sr (default: the pool's default SR); files are
      checked against manifest.json as they stream, and a failed restore
      removes what it made. --preserve keeps MACs (XAPI restore=true).
  vmbackup help | config | example
      This text, the config keys, or an example config file.
)" + VerifyCommandUsage() +
         ControlCommandsUsage() +
         R"(
<password|password-file|->:
  the path of an existing password file (it must not be readable by group or
  others), '-' to read the password from standard input, or the password
  itself (visible in the process list: avoid).
<config-file|vm-selector>:
  an existing config file, or a selector: NAME, REGEX, vm-export=SEL or
  vdi-export=SEL, each with an optional :N (keep N backups). A NAME (letters,
  digits, space, '-', '_') matches exactly; anything else is a regular
  expression matched at the start of the VM name.

FLAGS (before the positional arguments):
  --xapi-url URL          pool master (or any member: vmbackup follows
                          HOST_IS_SLAVE to the master); default http://localhost
  --user NAME             XenAPI user name; default root
  --tls-ca FILE           for https: trust the CA certificate(s) in FILE; a
                          host's certificate must name its host.hostname
  --tls-fingerprint HEX   for https: the host of --xapi-url must present the
                          certificate whose SHA-256 fingerprint is HEX
  --tls-pins FILE         for https: each host must present the certificate
                          pinned for it in FILE (lines "<host uuid or
                          address> <SHA-256>"; see docs/xenapi-client.md)
  --tls-pins-tofu         with --tls-pins: record the certificate of a host
                          that has no pin in FILE on first use, pinned since
  --tls-insecure          for https: accept any certificate (tests only)
  --json                  preview: print the report as JSON
  --snapshot-destroy-timeout DURATION
                          how long destroying a snapshot is retried while XAPI
                          says VDI_IN_USE (default 2m); then it is left for
                          the next run's janitor, with a warning
  --allow-insecure-password-file
                          accept a password file readable by group or others
  --version               print the version
  --                      end of flags: what follows is positional, even a
                          password spelled like a command (run, status, runs,
                          agents, cancel, verify, inventory) or
                          help/config/example

Exit codes: 0 success, 1 warnings, 2 errors or could not run.
Preview: 0 valid, 1 valid with warnings, 2 invalid.
)";
}

int RunCli(const std::vector<std::string>& args, const CliStreams& io,
           const CliEnvironment& env) {
  if (!args.empty() && IsControlCommand(args[0])) {
    return RunControlCommand(args, io, env);
  }
  // verify --restore-test is a restore test through the coordinator.
  if (!args.empty() && args[0] == "verify" &&
      std::find(args.begin(), args.end(), "--restore-test") != args.end()) {
    std::vector<std::string> restore = {"restore", "--test"};
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] != "--restore-test") restore.push_back(args[i]);
    }
    return RunControlCommand(restore, io, env);
  }
  // restore's coordinator form has no password: what follows is a flag or
  // the backup folder (a directory). Anything else is the standalone form.
  if (!args.empty() && args[0] == "restore") {
    struct stat st;
    if (args.size() < 2 || absl::StartsWith(args[1], "--") ||
        (stat(args[1].c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
      return RunControlCommand(args, io, env);
    }
  }
  if (!args.empty() && args[0] == "verify") {
    return RunVerifyCommand(args, io, *PosixFilesystem::Get(), absl::Now(),
                            absl::LocalTimeZone(),
                            absl::ToUnixNanos(absl::Now()));
  }
  Flags flags;
  size_t first = 0;
  bool literal = false;
  if (int code = ParseFlags(args, &flags, &first, &literal, io); code >= 0)
    return code;
  const std::vector<std::string> p(args.begin() + static_cast<long>(first),
                                   args.end());
  if (!literal) {
    // VmBackup.py: any argument that is one of these words prints its text.
    for (const std::string& a : p) {
      if (a == "help") {
        *io.out << CliUsage();
        return kExitOk;
      }
      if (a == "config") {
        *io.out << ConfigKeysHelp();
        return kExitOk;
      }
      if (a == "example") {
        *io.out << ExampleConfig();
        return kExitOk;
      }
    }
    if (!p.empty() && p[0] == "restore") {
      return Restore(flags, std::vector<std::string>(p.begin() + 1, p.end()),
                     io);
    }
    if (!p.empty() && p[0] == "inventory") {
      return Inventory(flags, std::vector<std::string>(p.begin() + 1, p.end()),
                       io);
    }
    if (!p.empty() && IsControlCommand(p[0])) {
      // Flags before a coordinator command: the standalone flags do not
      // apply to it, and its own come after it.
      return Fail(
          io, absl::StrCat("'", p[0],
                           "' is a coordinator command: write it first, its "
                           "flags after it (vmbackup ",
                           p[0],
                           " --help); if it is your password, write: "
                           "vmbackup [FLAGS] -- ",
                           p[0], " ... (or use a password file)"));
    }
  }
  if (p.size() < 2) {
    *io.err << ShortUsage();
    return kExitError;
  }
  if (absl::StartsWith(absl::AsciiStrToLower(p[1]), "create-password-file")) {
    return CreatePasswordFile(flags, p, io);
  }
  return Backup(flags, p, io, env);
}

}  // namespace vmb::coordinator
