// SPDX-License-Identifier: Apache-2.0
#include "common/backup/backup_layout.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

#include "common/backup/backup_manifest.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/base/utf8.h"

namespace vmb {
namespace {

// Whether the character (of `n` bytes) at the start of `s` may stand in a
// folder name: not '/', not a C0 or C1 control character, not DEL.
bool IsSafeChar(absl::string_view s, size_t n) {
  const unsigned char c = static_cast<unsigned char>(s[0]);
  if (n == 1) return c >= 0x20 && c != 0x7f && c != '/';
  return !(n == 2 && c == 0xC2 && static_cast<unsigned char>(s[1]) < 0xA0);
}

// Parses exactly `width` decimal digits at `s[*pos]`.
bool Digits(absl::string_view s, size_t* pos, size_t width, int* out) {
  if (*pos + width > s.size()) return false;
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    const char c = s[*pos + i];
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *pos += width;
  *out = value;
  return true;
}

bool Literal(absl::string_view s, size_t* pos, absl::string_view lit) {
  if (s.substr(*pos, lit.size()) != lit) return false;
  *pos += lit.size();
  return true;
}

std::optional<absl::CivilSecond> MakeCivil(int y, int mo, int d, int h, int mi,
                                           int se) {
  const absl::CivilSecond t(y, mo, d, h, mi, se);
  // CivilSecond normalises out-of-range fields; a real name never has them.
  if (t.year() != y || t.month() != mo || t.day() != d || t.hour() != h ||
      t.minute() != mi || t.second() != se) {
    return std::nullopt;
  }
  return t;
}

bool ByTime(const BackupEntry& a, const BackupEntry& b) {
  if (a.time != b.time) return a.time < b.time;
  return a.name < b.name;
}

// The newest committed backup of `sorted` (sorted by ByTime), or nullptr.
const BackupEntry* NewestCommitted(const std::vector<BackupEntry>& sorted) {
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) {
    if (it->committed) return &*it;
  }
  return nullptr;
}

// The committed backups beyond the newest `keep` (plus any in `protect`),
// oldest first.
std::vector<std::string> CommittedBeyond(std::vector<BackupEntry> backups,
                                         int keep,
                                         const std::set<std::string>& protect) {
  std::sort(backups.begin(), backups.end(), ByTime);
  std::set<std::string> kept = protect;
  if (const BackupEntry* newest = NewestCommitted(backups)) {
    kept.insert(newest->name);
  }
  int counted = 0;
  for (auto it = backups.rbegin(); it != backups.rend(); ++it) {
    if (!it->committed) continue;
    if (counted < keep) kept.insert(it->name);
    ++counted;
  }
  std::vector<std::string> remove;
  for (const BackupEntry& b : backups) {
    if (b.committed && kept.count(b.name) == 0) remove.push_back(b.name);
  }
  return remove;
}

// The backup folders of `vm_dir`, oldest first, without looking for their
// markers (`committed` is false).
absl::StatusOr<std::vector<BackupEntry>> ListBackupFolders(
    Filesystem& fs, const std::string& vm_dir) {
  absl::StatusOr<std::vector<DirEntry>> entries = fs.ListDir(vm_dir);
  if (absl::IsNotFound(entries.status())) return std::vector<BackupEntry>{};
  if (!entries.ok()) return entries.status();
  std::vector<BackupEntry> backups;
  for (const DirEntry& e : *entries) {
    if (!e.is_dir) continue;
    const std::optional<absl::CivilSecond> time = ParseBackupFolderName(e.name);
    if (!time) continue;
    BackupEntry b;
    b.name = e.name;
    b.time = *time;
    backups.push_back(std::move(b));
  }
  std::sort(backups.begin(), backups.end(), ByTime);
  return backups;
}

// The uuid recorded by the newest manifest in `vm_dir`, or "".
std::string RecordedVmUuid(Filesystem& fs, const std::string& vm_dir) {
  absl::StatusOr<std::vector<BackupEntry>> backups =
      ListBackupFolders(fs, vm_dir);
  if (!backups.ok()) return "";
  for (auto it = backups->rbegin(); it != backups->rend(); ++it) {
    absl::StatusOr<std::string> text =
        fs.ReadFile(JoinPath(vm_dir, it->name, kManifestFileName), 1 << 20);
    if (!text.ok()) continue;
    absl::StatusOr<v1::BackupManifest> manifest = ParseManifest(*text);
    if (manifest.ok() && !manifest->vm_uuid().empty()) {
      return manifest->vm_uuid();
    }
  }
  return "";
}

}  // namespace

const std::vector<std::string>& SuccessMarkers() {
  static const auto* const markers = new std::vector<std::string>{
      "success", "success_restore", "success_compress", "success_compressing"};
  return *markers;
}

std::string FormatBackupFolderName(absl::string_view format,
                                   absl::CivilSecond t) {
  const char sep = format == kBackupDirFormatNoColons ? '-' : ':';
  return absl::StrFormat("backup-%04d-%02d-%02d-(%02d%c%02d%c%02d)", t.year(),
                         t.month(), t.day(), t.hour(), sep, t.minute(), sep,
                         t.second());
}

std::optional<absl::CivilSecond> ParseBackupFolderName(absl::string_view name) {
  size_t pos = 0;
  int y, mo, d, h, mi, se;
  if (!Literal(name, &pos, "backup-") || !Digits(name, &pos, 4, &y) ||
      !Literal(name, &pos, "-") || !Digits(name, &pos, 2, &mo) ||
      !Literal(name, &pos, "-") || !Digits(name, &pos, 2, &d) ||
      !Literal(name, &pos, "-(") || !Digits(name, &pos, 2, &h)) {
    return std::nullopt;
  }
  if (pos >= name.size() || (name[pos] != ':' && name[pos] != '-')) {
    return std::nullopt;
  }
  const char sep = name[pos++];
  if (!Digits(name, &pos, 2, &mi) || pos >= name.size() || name[pos] != sep) {
    return std::nullopt;
  }
  ++pos;
  if (!Digits(name, &pos, 2, &se) || !Literal(name, &pos, ")") ||
      pos != name.size()) {
    return std::nullopt;
  }
  return MakeCivil(y, mo, d, h, mi, se);
}

std::string SanitizeVmName(absl::string_view name) {
  std::string out;
  bool leading = true;
  while (!name.empty() && out.size() < kMaxVmFolderNameBytes) {
    const size_t n = Utf8SequenceLength(name);
    if (n == 0 || !IsSafeChar(name, n)) {
      out.push_back('_');
      name.remove_prefix(n == 0 ? 1 : n);
    } else if (leading && name[0] == '.') {
      out.push_back('_');
      name.remove_prefix(1);
      continue;
    } else {
      if (out.size() + n > kMaxVmFolderNameBytes) break;
      out.append(name.data(), n);
      name.remove_prefix(n);
    }
    leading = false;
  }
  if (out.empty()) out.push_back('_');
  return out;
}

absl::Status CheckVmFolderName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("vm_folder is empty");
  if (name.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("vm_folder is ", name.size(), " bytes long (max 255)"));
  }
  if (name[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("vm_folder \"", EscapeForLog(name), "\" starts with '.'"));
  }
  for (absl::string_view rest = name; !rest.empty();) {
    const size_t n = Utf8SequenceLength(rest);
    if (n == 0 || !IsSafeChar(rest, n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vm_folder \"", EscapeForLog(name),
          "\" is not one safe path component (a '/', a control character or "
          "invalid UTF-8)"));
    }
    rest.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status CheckBackupDir(absl::string_view path) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("backup_dir \"", EscapeForLog(path), "\" ", why));
  };
  if (path.empty() || path[0] != '/') return bad("is not an absolute path");
  if (path.size() > 4095) return bad("is longer than 4095 bytes");
  for (absl::string_view rest = path; !rest.empty();) {
    const size_t n = Utf8SequenceLength(rest);
    if (n == 0 || (n == 1 && (static_cast<unsigned char>(rest[0]) < 0x20 ||
                              rest[0] == 0x7f))) {
      return bad("holds a control character or invalid UTF-8");
    }
    rest.remove_prefix(n);
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") {
      return bad("has a \".\" or \"..\" component");
    }
  }
  if (path != "/" &&
      (absl::StrContains(path, "//") || absl::EndsWith(path, "/"))) {
    return bad("is not normalised (\"//\" or a trailing '/')");
  }
  return absl::OkStatus();
}

absl::StatusOr<VmFolderChoice> ChooseVmFolder(Filesystem& fs,
                                              const std::string& backup_dir,
                                              const std::string& uuid,
                                              const std::string& name,
                                              bool name_shared) {
  const std::string sanitised = SanitizeVmName(name);
  const std::string with_uuid = absl::StrCat(sanitised, "--", uuid);
  VmFolderChoice choice;
  if (sanitised != name) {
    choice.folder = with_uuid;
    choice.warning = absl::StrCat(
        "the VM's name is not a safe folder name; its backups go in \"",
        with_uuid, "\"");
    return choice;
  }
  if (name_shared) {
    choice.folder = with_uuid;
    choice.warning = absl::StrCat(
        "another VM has the same name; each is backed up by UUID into its "
        "own folder, this one into \"",
        with_uuid, "\"");
    return choice;
  }
  const std::string plain = JoinPath(backup_dir, sanitised);
  absl::StatusOr<FileInfo> info = fs.Stat(plain);
  if (!info.ok() && !absl::IsNotFound(info.status())) return info.status();
  if (info.ok() && !info->is_dir) {
    choice.folder = with_uuid;
    choice.warning = absl::StrCat("\"", sanitised,
                                  "\" in the backup folder is not a folder; "
                                  "this VM's backups go in \"",
                                  with_uuid, "\"");
    return choice;
  }
  if (info.ok()) {
    const std::string owner = RecordedVmUuid(fs, plain);
    if (!owner.empty() && owner != uuid) {
      choice.folder = with_uuid;
      choice.warning = absl::StrCat(
          "folder \"", sanitised, "\" holds the backups of another VM (", owner,
          "); this one's go in \"", with_uuid, "\"");
      return choice;
    }
  }
  choice.folder = sanitised;
  return choice;
}

absl::StatusOr<std::vector<BackupEntry>> ListBackups(
    Filesystem& fs, const std::string& vm_dir) {
  VMB_ASSIGN_OR_RETURN(std::vector<BackupEntry> backups,
                       ListBackupFolders(fs, vm_dir));
  for (BackupEntry& b : backups) {
    for (const std::string& marker : SuccessMarkers()) {
      absl::StatusOr<FileInfo> m = fs.Stat(JoinPath(vm_dir, b.name, marker));
      if (m.ok() && !m->is_dir && !m->is_symlink) {
        b.committed = true;
        break;
      }
      if (!m.ok() && !absl::IsNotFound(m.status())) return m.status();
    }
  }
  return backups;
}

std::vector<std::string> PlanRetention(const std::vector<BackupEntry>& backups,
                                       int max_backups,
                                       absl::string_view new_backup) {
  return CommittedBeyond(backups, std::max(1, max_backups),
                         {std::string(new_backup)});
}

std::vector<std::string> PlanPreClean(const std::vector<BackupEntry>& backups,
                                      int max_backups) {
  return CommittedBeyond(backups, std::max(1, max_backups - 1), {});
}

std::vector<std::string> UncommittedBackups(
    const std::vector<BackupEntry>& backups) {
  std::vector<std::string> out;
  for (const BackupEntry& b : backups) {
    if (!b.committed) out.push_back(b.name);
  }
  return out;
}

absl::Status RemoveBackup(Filesystem& fs, const std::string& vm_dir,
                          const std::string& name) {
  const std::string dir = JoinPath(vm_dir, name);
  for (const std::string& marker : SuccessMarkers()) {
    absl::Status s = fs.RemoveFile(JoinPath(dir, marker));
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  VMB_RETURN_IF_ERROR(fs.SyncDir(dir));
  return fs.RemoveTree(dir);
}

std::string PoolDbFolderName(absl::string_view host_name) {
  const absl::string_view short_name = host_name.substr(0, host_name.find('.'));
  return absl::StrCat("METADATA_", SanitizeVmName(short_name));
}

std::string PoolDbFileName(absl::CivilSecond t) {
  return absl::StrFormat("pool_db_%04d%02d%02d-%02d%02d%02d.dump", t.year(),
                         t.month(), t.day(), t.hour(), t.minute(), t.second());
}

std::optional<absl::CivilSecond> ParsePoolDbFileName(absl::string_view name) {
  size_t pos = 0;
  int y, mo, d, h, mi, se;
  if (!Literal(name, &pos, "pool_db_") || !Digits(name, &pos, 4, &y) ||
      !Digits(name, &pos, 2, &mo) || !Digits(name, &pos, 2, &d) ||
      !Literal(name, &pos, "-") || !Digits(name, &pos, 2, &h) ||
      !Digits(name, &pos, 2, &mi) || !Digits(name, &pos, 2, &se) ||
      !Literal(name, &pos, ".dump") || pos != name.size()) {
    return std::nullopt;
  }
  return MakeCivil(y, mo, d, h, mi, se);
}

}  // namespace vmb
