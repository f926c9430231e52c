// SPDX-License-Identifier: Apache-2.0
#pragma once

// The backup policy: VmBackup.py's `key=value` config file, with its keys and
// defaults, plus vmbackup's own keys (docs/config.md). Parsing is a pure
// function with line-numbered errors; reading the file is the caller's job.

#include <stdint.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "common/backup/backup_layout.h"
#include "proto/common.pb.h"

namespace vmb::coordinator {

// When the report is mailed: always; on warnings or errors; on errors only;
// never.
enum class MailWhen { kAlways, kProblems, kFailure, kNever };
enum class VdiExportDisks { kBoot, kAll };

// One exclude / vm-export / vdi-export line (or the command-line selector).
struct SelectionRule {
  enum class Kind { kExclude, kVmExport, kVdiExport };
  Kind kind = Kind::kVmExport;
  std::string pattern;             // the name or regex, without ":N"
  std::optional<int> max_backups;  // the ":N" override
  int line = 0;      // 1-based line; 0 for a command-line selector
  std::string text;  // as written, e.g. "vm-export=DEV.*:2"
};

// A warning found while parsing or selecting; `line` is 0 when it concerns
// no particular line.
struct PolicyWarning {
  int line = 0;
  std::string message;
  // A selection rule that matched no VM (a renamed or deleted VM, perhaps):
  // a backup run ends with WARNING(s) for it.
  bool unmatched_rule = false;
};

struct BackupPolicy {
  std::string source = "command line";  // the config file's path, for messages

  // VmBackup.py's keys.
  bool pool_db_backup = false;
  int max_backups = 4;
  std::string backup_dir = "/snapshots/BACKUPS";
  std::string status_log = "/snapshots/NAUbackup/status.log";
  v1::VdiFormat vdi_export_format = v1::VDI_FORMAT_RAW;
  std::vector<SelectionRule>
      rules;  // exclude, vm-export, vdi-export in file order

  // vmbackup's keys.
  v1::Compression compress = v1::COMPRESSION_NONE;
  bool pre_clean = false;
  bool ignore_extra_keys = false;
  std::vector<std::string> mail_to;
  std::string mail_from;  // "" = root@<host name> when sending
  std::string mail_smtp_url = "smtp://localhost:25";
  std::string mail_smtp_user;
  std::string mail_smtp_password_file;
  MailWhen mail_when = MailWhen::kAlways;
  // smtp:// requires STARTTLS unless this is false (a relay on this
  // machine, say); smtps:// is TLS from the start either way.
  bool mail_starttls = true;
  std::string mail_smtp_ca;  // PEM CAs for the server; "": the system's
  int per_host_concurrency = 1;
  int max_concurrency = 0;  // 0 = no pool-wide limit
  absl::Duration stall_timeout = absl::Minutes(10);
  absl::Duration vm_timeout = absl::Hours(24);  // ZeroDuration() = none
  uint64_t bandwidth_limit = 0;  // bytes per second per export; 0 = none
  bool require_mount = false;
  uint64_t min_free_space = 0;  // bytes
  VdiExportDisks vdi_export_disks = VdiExportDisks::kBoot;
  std::string backup_dir_format = std::string(kBackupDirFormatSeed);
  // After each run, read back about this many percent of the older backups
  // (PlanVerifyAfterRun); 0 = none.
  int verify_after_run = 0;

  // Warnings from parsing (unknown keys with ignore_extra_keys, empty values).
  std::vector<PolicyWarning> warnings;
};

// Settings from the command line, which win over the file's.
struct PolicyOverrides {
  std::optional<v1::Compression> compress;  // compress=True|False
  std::optional<bool> ignore_extra_keys;
  std::optional<bool> pre_clean;
};

// The seed's optional command-line arguments after the config:
// "preview" (or preview=True|False), compress=True|False|gzip|zstd|none,
// ignore_extra_keys=True|False, pre_clean=True|False; keys and values
// case-insensitive. Errors: INVALID_ARGUMENT naming the argument.
struct PolicyArguments {
  bool preview = false;
  PolicyOverrides overrides;
};
absl::StatusOr<PolicyArguments> ParsePolicyArguments(
    const std::vector<std::string>& args);

// Parses a config file's text. `source` names it in messages. Errors:
// INVALID_ARGUMENT "<source>:<line>: <what>" for the first bad line: no '=',
// an unknown key (a warning instead with ignore_extra_keys), a bad value, a
// scalar key set twice (naming both lines), a bad ":N".
absl::StatusOr<BackupPolicy> ParseBackupPolicy(
    absl::string_view text, absl::string_view source,
    const PolicyOverrides& overrides = {});

// The policy for a command-line vm-selector (`NAME`, `REGEX`,
// `vm-export=SEL`, `vdi-export=SEL`, each with an optional ":N"): defaults,
// no excludes. Errors: INVALID_ARGUMENT for another key or a bad ":N".
absl::StatusOr<BackupPolicy> PolicyForSelector(
    absl::string_view selector, const PolicyOverrides& overrides = {});

// Splits "SEL[:N]": the suffix after the last ':' is an override only when it
// is a whole number. Errors: INVALID_ARGUMENT when that number is not >= 1
// (or does not fit), or the suffix looks numeric but is not a whole number.
absl::Status SplitMaxBackups(absl::string_view value, std::string* pattern,
                             std::optional<int>* max_backups);

// "10G", "512MiB", "100M", "0" -> bytes (K/M/G/T are powers of 1024).
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);
// "30s", "10m", "2h", "1d", "600" (seconds) -> duration.
absl::StatusOr<absl::Duration> ParseDurationValue(absl::string_view text);

absl::string_view MailWhenName(MailWhen w);

// Every key a config file may hold.
std::vector<std::string> ConfigKeyNames();
// The usage text of the config keys (`vmbackup config`).
std::string ConfigKeysHelp();
// An example config file (`vmbackup example`): deploy/etc/example.cfg,
// which the packages install as /etc/vmbackup/example.cfg.
std::string ExampleConfig();

}  // namespace vmb::coordinator
