// SPDX-License-Identifier: Apache-2.0
#include "coordinator/verify_cli.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <ostream>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/backup/backup_manifest.h"
#include "common/backup/backup_verify.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "coordinator/backup_policy.h"

namespace vmb::coordinator {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitWarnings = 1;
constexpr int kExitError = 2;
constexpr uint64_t kMaxConfigBytes = 1 << 20;

int Fail(const CliStreams& io, absl::string_view message) {
  *io.err << "vmbackup: error: " << message << "\n";
  return kExitError;
}

struct VerifyArgs {
  std::vector<std::string> paths;
  std::string config;
  std::optional<absl::Duration> since;
  std::optional<double> sample;  // percent, (0, 100]
  bool json = false;
  bool help = false;
};

absl::StatusOr<VerifyArgs> ParseVerifyArgs(
    const std::vector<std::string>& args) {
  VerifyArgs out;
  bool literal = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (literal || a.empty() || a[0] != '-' || a == "-") {
      out.paths.push_back(a);
      continue;
    }
    if (a == "--") {
      literal = true;
      continue;
    }
    std::string name = a;
    std::optional<std::string> value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    std::replace(name.begin() + 2, name.end(), '_', '-');
    if (name == "--json" || name == "--help") {
      if (value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " takes no value"));
      }
      (name == "--json" ? out.json : out.help) = true;
      continue;
    }
    if (name != "--config" && name != "--since" && name != "--sample") {
      return absl::InvalidArgumentError(
          absl::StrCat("vmbackup verify has no flag ", EscapeForLog(name),
                       " (vmbackup verify --help)"));
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = args[++i];
    }
    if (name == "--config") {
      out.config = *value;
    } else if (name == "--since") {
      absl::StatusOr<absl::Duration> d = ParseDurationValue(*value);
      if (!d.ok() || *d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--since ", EscapeForLog(*value),
                         ": a duration such as 7d, 36h or 90m"));
      }
      out.since = *d;
    } else {
      std::string v = *value;
      if (absl::EndsWith(v, "%")) v.pop_back();
      double p = 0;
      if (!absl::SimpleAtod(v, &p) || !(p > 0) || p > 100) {
        return absl::InvalidArgumentError(
            absl::StrCat("--sample ", EscapeForLog(*value),
                         ": a percentage above 0, at most 100"));
      }
      out.sample = p;
    }
  }
  return out;
}

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

void PrintJson(const std::vector<BackupFolderCheck>& checks, size_t skipped,
               std::ostream& out) {
  out << "{\n  \"backups\": [";
  for (size_t i = 0; i < checks.size(); ++i) {
    const BackupFolderCheck& c = checks[i];
    out << (i == 0 ? "\n" : ",\n") << "    {\"path\": " << JsonQuote(c.path)
        << ", \"result\": " << JsonQuote(VerifyResultName(c.result))
        << ", \"vm_name\": " << JsonQuote(c.vm_name)
        << ", \"kind\": " << JsonQuote(c.kind) << ", \"files\": " << c.files
        << ", \"bytes\": " << c.bytes << ", \"errors\": [";
    for (size_t j = 0; j < c.errors.size(); ++j) {
      out << (j == 0 ? "" : ", ") << JsonQuote(c.errors[j]);
    }
    out << "], \"warnings\": [";
    for (size_t j = 0; j < c.warnings.size(); ++j) {
      out << (j == 0 ? "" : ", ") << JsonQuote(c.warnings[j]);
    }
    out << "]}";
  }
  out << (checks.empty() ? "" : "\n  ")
      << "],\n  \"uncommitted_skipped\": " << skipped << "\n}\n";
}

}  // namespace

std::string VerifyCommandUsage() {
  return R"(  vmbackup verify [PATH...] [--config FILE] [--since DURATION]
                  [--sample PERCENT] [--json]
      Check committed backups on the share: every data file read again and
      compared with manifest.json (size, SHA-256) while its structure is
      checked (XVA checksums and trailer, VHD footer/header/BAT, raw size).
      PATH: a backup folder, a VM folder or a backup_dir; --config adds the
      config's backup_dir. --since: backups made within DURATION; --sample:
      that share of them, chosen at random. Exit 0 all good, 1 warnings (no
      manifest: a VmBackup.py backup), 2 a corrupt or incomplete backup.
)";
}

int RunVerifyCommand(const std::vector<std::string>& args, const CliStreams& io,
                     Filesystem& fs, absl::Time now, absl::TimeZone zone,
                     uint64_t seed) {
  absl::StatusOr<VerifyArgs> parsed = ParseVerifyArgs(args);
  if (!parsed.ok()) return Fail(io, parsed.status().message());
  if (parsed->help) {
    *io.out << "usage:\n" << VerifyCommandUsage();
    return kExitOk;
  }
  std::vector<std::string> roots = parsed->paths;
  if (!parsed->config.empty()) {
    absl::StatusOr<std::string> text =
        fs.ReadFile(parsed->config, kMaxConfigBytes);
    if (!text.ok()) {
      return Fail(io, absl::StrCat("--config: ", text.status().message()));
    }
    absl::StatusOr<BackupPolicy> policy =
        ParseBackupPolicy(*text, parsed->config, {});
    if (!policy.ok()) return Fail(io, policy.status().message());
    roots.push_back(policy->backup_dir);
  }
  if (roots.empty()) {
    return Fail(io,
                "give the backups to check: a backup folder, a VM folder or a "
                "backup_dir, or --config FILE (vmbackup verify --help)");
  }

  std::vector<FoundBackup> found;
  std::set<std::string> seen;
  size_t skipped = 0;
  for (const std::string& root : roots) {
    absl::StatusOr<std::vector<FoundBackup>> f = FindBackups(fs, root);
    if (!f.ok()) return Fail(io, f.status().message());
    for (FoundBackup& b : *f) {
      if (!seen.insert(b.path).second) continue;
      if (parsed->since.has_value() &&
          absl::FromCivil(b.time, zone) < now - *parsed->since) {
        continue;
      }
      if (!b.committed) {
        ++skipped;
        continue;
      }
      found.push_back(std::move(b));
    }
  }
  if (parsed->sample.has_value() && !found.empty()) {
    const size_t keep = std::max<size_t>(
        1, static_cast<size_t>(std::ceil(static_cast<double>(found.size()) *
                                         *parsed->sample / 100.0)));
    std::mt19937_64 random(seed);
    std::shuffle(found.begin(), found.end(), random);
    found.resize(std::min(keep, found.size()));
    std::sort(found.begin(), found.end(),
              [](const FoundBackup& a, const FoundBackup& b) {
                return a.path < b.path;
              });
  }

  const absl::Time started = absl::Now();
  std::vector<BackupFolderCheck> checks;
  size_t counts[3] = {0, 0, 0};
  uint64_t bytes = 0;
  for (const FoundBackup& b : found) {
    BackupFolderCheck c = VerifyBackupFolder(fs, b.path);
    ++counts[static_cast<int>(c.result)];
    bytes += c.bytes;
    if (!parsed->json) {
      *io.out << absl::StrFormat("%-8s", VerifyResultName(c.result))
              << EscapeForLog(c.path) << "  "
              << (c.kind.empty() ? "" : absl::StrCat(c.kind, ", "))
              << Plural(static_cast<size_t>(c.files), "file", "files") << ", "
              << FormatBytes(c.bytes) << "\n";
      for (const std::string& e : c.errors) {
        *io.out << "        error: " << e << "\n";
      }
      for (const std::string& w : c.warnings) {
        *io.out << "        warning: " << w << "\n";
      }
    }
    checks.push_back(std::move(c));
  }
  if (parsed->json) {
    PrintJson(checks, skipped, *io.out);
  } else {
    *io.out << "verify: " << Plural(checks.size(), "backup", "backups")
            << " checked";
    if (skipped > 0) {
      *io.out << " ("
              << Plural(skipped, "uncommitted folder", "uncommitted folders")
              << " skipped)";
    }
    *io.out << ": " << counts[0] << " ok, " << counts[1] << " WARNING, "
            << counts[2] << " ERROR; " << FormatBytes(bytes) << " read in "
            << absl::StrFormat("%.1f s",
                               absl::ToDoubleSeconds(absl::Now() - started))
            << "\n";
  }
  if (checks.empty()) {
    *io.err << "vmbackup: warning: no committed backup to check\n";
    return kExitWarnings;
  }
  return counts[2] > 0 ? kExitError : counts[1] > 0 ? kExitWarnings : kExitOk;
}

}  // namespace vmb::coordinator
