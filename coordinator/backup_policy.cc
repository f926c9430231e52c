// SPDX-License-Identifier: Apache-2.0
#include "coordinator/backup_policy.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "common/base/status_macros.h"

namespace vmb::coordinator {
namespace {

constexpr int kMaxBackupsLimit = 100000;

absl::Status Bad(absl::string_view key, absl::string_view value,
                 absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(key, "=", value, ": ", want));
}

absl::StatusOr<bool> ParseBool(absl::string_view key, absl::string_view value) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  return Bad(key, value, "must be true or false");
}

absl::StatusOr<int> ParseInt(absl::string_view key, absl::string_view value,
                             int min, int max, absl::string_view what) {
  int n;
  if (!absl::SimpleAtoi(value, &n) || n < min || n > max) {
    return Bad(key, value, what);
  }
  return n;
}

bool LooksLikeAddress(absl::string_view a) {
  if (a.empty() || a.size() > 254) return false;
  size_t at = a.find('@');
  if (at == 0 || at == absl::string_view::npos || at + 1 >= a.size())
    return false;
  for (unsigned char c : a) {
    if (c <= ' ' || c == 0x7f || c == ',' || c == '<' || c == '>') return false;
  }
  return true;
}

bool IsAbsolutePath(absl::string_view p) { return !p.empty() && p[0] == '/'; }

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// Keys a file may give once.
const std::set<std::string>& ScalarKeys() {
  static const auto* keys =
      new std::set<std::string>{"pool_db_backup",    "max_backups",
                                "backup_dir",        "status_log",
                                "vdi_export_format", "compress",
                                "pre_clean",         "ignore_extra_keys",
                                "mail_from",         "mail_smtp_url",
                                "mail_smtp_user",    "mail_smtp_password_file",
                                "mail_when",         "mail_starttls",
                                "mail_smtp_ca",      "per_host_concurrency",
                                "max_concurrency",   "stall_timeout",
                                "vm_timeout",        "bandwidth_limit",
                                "require_mount",     "min_free_space",
                                "vdi_export_disks",  "backup_dir_format",
                                "verify_after_run"};
  return *keys;
}

absl::StatusOr<v1::Compression> ParseCompression(absl::string_view key,
                                                 absl::string_view value) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v == "none" || v == "false") return v1::COMPRESSION_NONE;
  if (v == "gzip" || v == "true") return v1::COMPRESSION_GZIP;
  if (v == "zstd") return v1::COMPRESSION_ZSTD;
  return Bad(key, value, "must be none, gzip or zstd");
}

// Applies one scalar key. The value is already stripped.
absl::Status ApplyScalar(const std::string& key, const std::string& value,
                         BackupPolicy* p) {
  if (key == "pool_db_backup") {
    if (value != "0" && value != "1") return Bad(key, value, "must be 0 or 1");
    p->pool_db_backup = value == "1";
  } else if (key == "max_backups") {
    VMB_ASSIGN_OR_RETURN(p->max_backups,
                         ParseInt(key, value, 1, kMaxBackupsLimit,
                                  "must be a whole number >= 1"));
  } else if (key == "backup_dir") {
    if (!IsAbsolutePath(value))
      return Bad(key, value, "must be an absolute path");
    p->backup_dir = value;
    while (p->backup_dir.size() > 1 && p->backup_dir.back() == '/')
      p->backup_dir.pop_back();
  } else if (key == "status_log") {
    if (!IsAbsolutePath(value) || value.back() == '/') {
      return Bad(key, value, "must be the absolute path of a file");
    }
    p->status_log = value;
  } else if (key == "vdi_export_format") {
    if (value == "raw") {
      p->vdi_export_format = v1::VDI_FORMAT_RAW;
    } else if (value == "vhd") {
      p->vdi_export_format = v1::VDI_FORMAT_VHD;
    } else {
      return Bad(key, value, "must be raw or vhd");
    }
  } else if (key == "compress") {
    VMB_ASSIGN_OR_RETURN(p->compress, ParseCompression(key, value));
  } else if (key == "pre_clean") {
    VMB_ASSIGN_OR_RETURN(p->pre_clean, ParseBool(key, value));
  } else if (key == "ignore_extra_keys") {
    VMB_ASSIGN_OR_RETURN(p->ignore_extra_keys, ParseBool(key, value));
  } else if (key == "require_mount") {
    VMB_ASSIGN_OR_RETURN(p->require_mount, ParseBool(key, value));
  } else if (key == "mail_from") {
    if (!LooksLikeAddress(value))
      return Bad(key, value, "must be one e-mail address");
    p->mail_from = value;
  } else if (key == "mail_smtp_url") {
    absl::string_view rest = value;
    if (!absl::ConsumePrefix(&rest, "smtp://") &&
        !absl::ConsumePrefix(&rest, "smtps://")) {
      return Bad(key, value, "must start with smtp:// or smtps://");
    }
    absl::string_view host = rest.substr(0, rest.find('/'));
    if (host.empty() || absl::StrContains(host, "@")) {
      return Bad(
          key, value,
          "must be smtp[s]://HOST[:PORT] (credentials go in mail_smtp_user "
          "and mail_smtp_password_file)");
    }
    if (size_t colon = host.rfind(':');
        colon != absl::string_view::npos &&
        host.find(']') == absl::string_view::npos) {
      int port;
      if (!absl::SimpleAtoi(host.substr(colon + 1), &port) || port < 1 ||
          port > 65535) {
        return Bad(key, value, "has a bad port");
      }
    }
    p->mail_smtp_url = value;
  } else if (key == "mail_smtp_user") {
    if (value.empty()) return Bad(key, value, "must not be empty");
    p->mail_smtp_user = value;
  } else if (key == "mail_smtp_password_file") {
    if (!IsAbsolutePath(value))
      return Bad(key, value, "must be an absolute path");
    p->mail_smtp_password_file = value;
  } else if (key == "mail_when") {
    if (value == "always") {
      p->mail_when = MailWhen::kAlways;
    } else if (value == "problems") {
      p->mail_when = MailWhen::kProblems;
    } else if (value == "failure") {
      p->mail_when = MailWhen::kFailure;
    } else if (value == "never") {
      p->mail_when = MailWhen::kNever;
    } else {
      return Bad(key, value, "must be always, problems, failure or never");
    }
  } else if (key == "mail_starttls") {
    VMB_ASSIGN_OR_RETURN(p->mail_starttls, ParseBool(key, value));
  } else if (key == "mail_smtp_ca") {
    if (!IsAbsolutePath(value))
      return Bad(key, value, "must be an absolute path");
    p->mail_smtp_ca = value;
  } else if (key == "per_host_concurrency") {
    VMB_ASSIGN_OR_RETURN(
        p->per_host_concurrency,
        ParseInt(key, value, 1, 64, "must be a whole number from 1 to 64"));
  } else if (key == "verify_after_run") {
    std::string v = value;
    if (absl::EndsWith(v, "%")) v.pop_back();
    VMB_ASSIGN_OR_RETURN(
        p->verify_after_run,
        ParseInt(key, v, 0, 100,
                 "must be a percentage from 0 (none) to 100, e.g. 25%"));
  } else if (key == "max_concurrency") {
    VMB_ASSIGN_OR_RETURN(
        p->max_concurrency,
        ParseInt(key, value, 0, 1024,
                 "must be a whole number from 0 (no limit) to 1024"));
  } else if (key == "stall_timeout" || key == "vm_timeout") {
    absl::StatusOr<absl::Duration> d = ParseDurationValue(value);
    if (!d.ok()) return Bad(key, value, d.status().message());
    if (key == "stall_timeout") {
      if (*d < absl::Seconds(1)) return Bad(key, value, "must be at least 1s");
      p->stall_timeout = *d;
    } else {
      if (*d != absl::ZeroDuration() && *d < absl::Minutes(1)) {
        return Bad(key, value, "must be 0 (no limit) or at least 1m");
      }
      p->vm_timeout = *d;
    }
  } else if (key == "bandwidth_limit" || key == "min_free_space") {
    absl::StatusOr<uint64_t> n = ParseByteSize(value);
    if (!n.ok()) return Bad(key, value, n.status().message());
    (key == "bandwidth_limit" ? p->bandwidth_limit : p->min_free_space) = *n;
  } else if (key == "vdi_export_disks") {
    if (value == "boot") {
      p->vdi_export_disks = VdiExportDisks::kBoot;
    } else if (value == "all") {
      p->vdi_export_disks = VdiExportDisks::kAll;
    } else {
      return Bad(key, value, "must be boot or all");
    }
  } else if (key == "backup_dir_format") {
    if (value != kBackupDirFormatSeed && value != kBackupDirFormatNoColons) {
      return Bad(key, value,
                 absl::StrCat("must be ", kBackupDirFormatSeed, " or ",
                              kBackupDirFormatNoColons));
    }
    p->backup_dir_format = value;
  }
  return absl::OkStatus();
}

absl::Status AddRule(SelectionRule::Kind kind, absl::string_view key,
                     absl::string_view value, int line, BackupPolicy* p) {
  SelectionRule rule;
  rule.kind = kind;
  rule.line = line;
  rule.text = absl::StrCat(key, "=", value);
  if (kind == SelectionRule::Kind::kExclude) {
    rule.pattern = std::string(value);
  } else {
    absl::Status s = SplitMaxBackups(value, &rule.pattern, &rule.max_backups);
    if (!s.ok()) return Bad(key, value, s.message());
  }
  if (rule.pattern.empty() && kind != SelectionRule::Kind::kVmExport) {
    // VmBackup.py ignores these silently; say so.
    p->warnings.push_back(
        {line, absl::StrCat(rule.text, " is empty and ignored")});
    return absl::OkStatus();
  }
  p->rules.push_back(std::move(rule));
  return absl::OkStatus();
}

void ApplyOverrides(const PolicyOverrides& o, BackupPolicy* p) {
  if (o.compress.has_value()) p->compress = *o.compress;
  if (o.ignore_extra_keys.has_value())
    p->ignore_extra_keys = *o.ignore_extra_keys;
  if (o.pre_clean.has_value()) p->pre_clean = *o.pre_clean;
}

}  // namespace

absl::Status SplitMaxBackups(absl::string_view value, std::string* pattern,
                             std::optional<int>* max_backups) {
  *pattern = std::string(value);
  max_backups->reset();
  const size_t colon = value.rfind(':');
  if (colon == absl::string_view::npos) return absl::OkStatus();
  absl::string_view suffix = value.substr(colon + 1);
  // Only a suffix that looks like a number is an override; anything else is
  // part of the name (VM names may contain ':').
  const bool numeric_looking =
      !suffix.empty() &&
      std::all_of(suffix.begin(), suffix.end(),
                  [](char c) {
                    return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
                           c == '-' || c == '+' || c == '.';
                  }) &&
      std::any_of(suffix.begin(), suffix.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      });
  if (!numeric_looking) return absl::OkStatus();
  int n;
  if (!absl::SimpleAtoi(suffix, &n) || absl::StartsWith(suffix, "+")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the :N after the name must be a whole number of backups, not '",
        suffix, "'"));
  }
  if (n < 1 || n > kMaxBackupsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("the :N after the name must be at least 1, not ", n));
  }
  *pattern = std::string(value.substr(0, colon));
  *max_backups = n;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  uint64_t multiplier = 1;
  absl::string_view v = t;
  absl::ConsumeSuffix(&v, "IB") || absl::ConsumeSuffix(&v, "B");
  if (!v.empty()) {
    switch (v.back()) {
      case 'K':
        multiplier = uint64_t{1} << 10;
        break;
      case 'M':
        multiplier = uint64_t{1} << 20;
        break;
      case 'G':
        multiplier = uint64_t{1} << 30;
        break;
      case 'T':
        multiplier = uint64_t{1} << 40;
        break;
      default:
        break;
    }
    if (multiplier != 1) v.remove_suffix(1);
  }
  uint64_t n;
  if (!AllDigits(v) || !absl::SimpleAtoi(v, &n)) {
    return absl::InvalidArgumentError(
        "must be a whole number of bytes, optionally with K, M, G or T (powers "
        "of 1024)");
  }
  if (n > UINT64_MAX / multiplier)
    return absl::InvalidArgumentError("is too large");
  return n * multiplier;
}

absl::StatusOr<absl::Duration> ParseDurationValue(absl::string_view text) {
  absl::string_view v = absl::StripAsciiWhitespace(text);
  int64_t unit_seconds = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 's':
        unit_seconds = 1;
        v.remove_suffix(1);
        break;
      case 'm':
        unit_seconds = 60;
        v.remove_suffix(1);
        break;
      case 'h':
        unit_seconds = 3600;
        v.remove_suffix(1);
        break;
      case 'd':
        unit_seconds = 86400;
        v.remove_suffix(1);
        break;
      default:
        break;
    }
  }
  int64_t n;
  if (!AllDigits(v) || !absl::SimpleAtoi(v, &n) ||
      n > (int64_t{1} << 40) / unit_seconds) {
    return absl::InvalidArgumentError(
        "must be a whole number of seconds, or of minutes, hours or days with "
        "m, h or d "
        "(30s, 10m, 2h, 1d)");
  }
  return absl::Seconds(n * unit_seconds);
}

absl::StatusOr<BackupPolicy> ParseBackupPolicy(
    absl::string_view text, absl::string_view source,
    const PolicyOverrides& overrides) {
  BackupPolicy p;
  p.source = std::string(source);
  std::map<std::string, int> seen;  // scalar key -> line
  std::vector<std::pair<int, std::string>> unknown;
  auto fail = [&](int line, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", line, ": ", what));
  };
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    for (unsigned char c : line) {
      if (c < 0x20 && c != '\t') {
        return fail(line_no, "control character in the line (a binary file?)");
      }
    }
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return fail(line_no, absl::StrCat("expected key=value, got '",
                                        line.substr(0, 80), "'"));
    }
    const std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    const std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (key.empty())
      return fail(line_no, "a line starting with '=' has no key");
    absl::Status s;
    if (key == "exclude") {
      s = AddRule(SelectionRule::Kind::kExclude, key, value, line_no, &p);
    } else if (key == "vm-export") {
      s = AddRule(SelectionRule::Kind::kVmExport, key, value, line_no, &p);
    } else if (key == "vdi-export") {
      s = AddRule(SelectionRule::Kind::kVdiExport, key, value, line_no, &p);
    } else if (key == "mail_to") {
      for (absl::string_view a :
           absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        a = absl::StripAsciiWhitespace(a);
        if (!LooksLikeAddress(a)) {
          s = Bad(key, value,
                  absl::StrCat("'", a, "' is not an e-mail address"));
          break;
        }
        p.mail_to.emplace_back(a);
      }
      if (s.ok() && value.empty())
        s = Bad(key, value, "needs at least one address");
    } else if (ScalarKeys().count(key) != 0) {
      auto [it, inserted] = seen.emplace(key, line_no);
      if (!inserted) {
        return fail(line_no, absl::StrCat(key, " is set twice (lines ",
                                          it->second, " and ", line_no, ")"));
      }
      s = ApplyScalar(key, value, &p);
    } else {
      unknown.emplace_back(line_no, key);
      continue;
    }
    if (!s.ok()) return fail(line_no, s.message());
  }
  ApplyOverrides(overrides, &p);
  for (const auto& [line, key] : unknown) {
    if (!p.ignore_extra_keys) {
      return fail(
          line, absl::StrCat(
                    "unknown key '", key,
                    "' (ignore_extra_keys=true makes unknown keys warnings)"));
    }
    p.warnings.push_back(
        {line, absl::StrCat("ignoring unknown key '", key, "'")});
  }
  if (!p.mail_smtp_user.empty() && p.mail_smtp_password_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", seen["mail_smtp_user"],
                     ": mail_smtp_user needs mail_smtp_password_file (the "
                     "password is never written in the "
                     "config)"));
  }
  return p;
}

absl::StatusOr<BackupPolicy> PolicyForSelector(
    absl::string_view selector, const PolicyOverrides& overrides) {
  BackupPolicy p;
  p.source = "command line";
  SelectionRule::Kind kind = SelectionRule::Kind::kVmExport;
  absl::string_view key = "vm-export";
  absl::string_view value = selector;
  if (absl::ConsumePrefix(&value, "vm-export=")) {
    key = "vm-export";
  } else if (absl::ConsumePrefix(&value, "vdi-export=")) {
    kind = SelectionRule::Kind::kVdiExport;
    key = "vdi-export";
  } else if (size_t eq = selector.find('='); eq != absl::string_view::npos) {
    absl::string_view prefix = selector.substr(0, eq);
    const bool looks_like_key =
        !prefix.empty() &&
        std::all_of(prefix.begin(), prefix.end(), [](char c) {
          return absl::ascii_isalpha(static_cast<unsigned char>(c)) ||
                 c == '_' || c == '-';
        });
    if (looks_like_key) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", selector,
                       "' is neither an existing config file nor a vm-selector "
                       "(NAME, REGEX, "
                       "vm-export=SEL or vdi-export=SEL)"));
    }
  }
  absl::Status s = AddRule(kind, key, value, 0, &p);
  if (!s.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("vm-selector ", s.message()));
  ApplyOverrides(overrides, &p);
  return p;
}

absl::string_view MailWhenName(MailWhen w) {
  switch (w) {
    case MailWhen::kAlways:
      return "always";
    case MailWhen::kProblems:
      return "problems";
    case MailWhen::kFailure:
      return "failure";
    case MailWhen::kNever:
      return "never";
  }
  return "?";
}

std::vector<std::string> ConfigKeyNames() {
  std::vector<std::string> names = {"exclude", "vm-export", "vdi-export",
                                    "mail_to"};
  names.insert(names.end(), ScalarKeys().begin(), ScalarKeys().end());
  return names;
}

std::string ConfigKeysHelp() {
  return R"(Config file: one key=value per line; '#' starts a comment line; blank lines
are skipped; values may contain '='. Keys are case-sensitive.

VmBackup.py's keys (same meaning and defaults):
  pool_db_backup=0|1          dump the pool database each run (default 0)
  max_backups=N               backups kept per VM, N >= 1 (default 4)
  backup_dir=PATH             where backups go (default /snapshots/BACKUPS)
  status_log=PATH             one line per VM and per run (default
                              /snapshots/NAUbackup/status.log)
  vdi_export_format=raw|vhd   format of vdi-export files (default raw)
  exclude=NAME|REGEX          never back up these VMs (wherever the line stands)
  vm-export=NAME|REGEX[:N]    full VM export (.xva); :N keeps N backups of it
  vdi-export=NAME|REGEX[:N]   export of the boot disk only; wins over vm-export
  A NAME (letters, digits, space, '-', '_') matches exactly; anything else is
  a regular expression matched at the start of the VM name (add '$' to match
  the end). ":N" counts only when N is a whole number.

vmbackup's keys:
  compress=none|gzip|zstd     host-side compression of vm-export (default none)
  pre_clean=true|false        trim old backups before exporting (default false)
  ignore_extra_keys=true|false  unknown keys are warnings, not errors (default false)
  mail_to=ADDR[,ADDR...]      send the report to these addresses (repeatable)
  mail_from=ADDR              sender (default root@<host name>)
  mail_smtp_url=smtp[s]://HOST[:PORT]   mail server (default smtp://localhost:25)
  mail_starttls=true|false    smtp:// must switch to TLS (default true)
  mail_smtp_ca=PATH           CAs for the mail server (default: the system's)
  mail_smtp_user=NAME         SMTP login; needs mail_smtp_password_file
  mail_smtp_password_file=PATH  file holding the SMTP password (mode 0600)
  mail_when=always|problems|failure|never  when to send (default always)
  per_host_concurrency=N      exports at once per host, 1-64 (default 1)
  max_concurrency=N           exports at once in the pool, 0 = no limit (default 0)
  stall_timeout=DURATION      give up on an export silent this long (default 10m)
  vm_timeout=DURATION         give up on one VM after this long, 0 = never (default 24h)
  bandwidth_limit=SIZE        bytes per second per export, 0 = no limit (default 0)
  require_mount=true|false    backup_dir must be a mount point (default false)
  min_free_space=SIZE         refuse to start below this free space (default 0)
  vdi_export_disks=boot|all   vdi-export the boot disk or every disk (default boot)
  backup_dir_format=backup-YYYY-MM-DD-(HH:MM:SS)|backup-YYYY-MM-DD-(HH-MM-SS)
                              folder names; the second has no ':' for CIFS shares
  verify_after_run=PERCENT    after each run, read back this share of the
                              older backups (vmbackup verify), each one
                              every 100/PERCENT runs; 0 = none (default 0)
  DURATION: 30s, 10m, 2h, 1d or plain seconds. SIZE: bytes, or K, M, G, T
  (powers of 1024), e.g. 100M.
)";
}

absl::StatusOr<PolicyArguments> ParsePolicyArguments(
    const std::vector<std::string>& args) {
  PolicyArguments out;
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    const std::string key = absl::AsciiStrToLower(arg.substr(0, eq));
    const std::string value = eq == std::string::npos
                                  ? ""
                                  : absl::AsciiStrToLower(arg.substr(eq + 1));
    auto boolean = [&]() -> absl::StatusOr<bool> {
      if (value == "true") return true;
      if (value == "false") return false;
      return absl::InvalidArgumentError(absl::StrCat(
          "argument '", arg, "': the value must be True or False"));
    };
    if (key == "preview") {
      if (eq == std::string::npos) {
        out.preview = true;
        continue;
      }
      absl::StatusOr<bool> b = boolean();
      if (!b.ok()) return b.status();
      out.preview = *b;
    } else if (key == "compress") {
      if (value == "gzip" || value == "zstd" || value == "none") {
        out.overrides.compress = value == "gzip"   ? v1::COMPRESSION_GZIP
                                 : value == "zstd" ? v1::COMPRESSION_ZSTD
                                                   : v1::COMPRESSION_NONE;
        continue;
      }
      absl::StatusOr<bool> b = boolean();
      if (!b.ok()) return b.status();
      out.overrides.compress = *b ? v1::COMPRESSION_GZIP : v1::COMPRESSION_NONE;
    } else if (key == "ignore_extra_keys" || key == "pre_clean") {
      absl::StatusOr<bool> b = boolean();
      if (!b.ok()) return b.status();
      (key == "pre_clean" ? out.overrides.pre_clean
                          : out.overrides.ignore_extra_keys) = *b;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument '", arg,
                       "' (optional arguments: preview, compress=, "
                       "ignore_extra_keys=, pre_clean=)"));
    }
  }
  return out;
}

}  // namespace vmb::coordinator
