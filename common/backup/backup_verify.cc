// SPDX-License-Identifier: Apache-2.0
#include "common/backup/backup_verify.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include <openssl/evp.h>

#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "common/backup/export_verifier.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"

namespace vmb {
namespace {

constexpr size_t kReadBytes = 1 << 20;
constexpr uint64_t kMaxManifestBytes = 16 << 20;

bool IsDataFileName(absl::string_view name) {
  for (absl::string_view ext :
       {".xva", ".xva.gz", ".xva.zst", ".raw", ".vhd"}) {
    if (absl::EndsWith(name, ext) && name.size() > ext.size()) return true;
  }
  return false;
}

std::optional<v1::Compression> XvaCompression(absl::string_view name) {
  if (absl::EndsWith(name, ".xva")) return v1::COMPRESSION_NONE;
  if (absl::EndsWith(name, ".xva.gz")) return v1::COMPRESSION_GZIP;
  if (absl::EndsWith(name, ".xva.zst")) return v1::COMPRESSION_ZSTD;
  return std::nullopt;
}

struct FileDigest {
  uint64_t size = 0;
  std::string sha256;      // lower-case hex
  absl::Status structure;  // the verifier's first DATA_LOSS, naming the offset
};

// Reads `path` once, feeding the SHA-256 and `verifier` (may be null).
// Errors: those of reading.
absl::StatusOr<FileDigest> ReadAndCheck(Filesystem& fs, const std::string& path,
                                        ExportVerifier* verifier,
                                        const std::function<bool()>& stop) {
  absl::StatusOr<std::unique_ptr<ReadableFile>> file = fs.OpenForRead(path);
  if (!file.ok()) return file.status();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                             &EVP_MD_CTX_free);
  if (md == nullptr ||
      EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("cannot start a SHA-256");
  }
  auto buf = std::make_unique<char[]>(kReadBytes);
  FileDigest out;
  absl::Status structure;  // the first structural error; reading goes on
  while (true) {
    if (stop && stop()) return absl::CancelledError("stopped");
    absl::StatusOr<size_t> n = (*file)->Read(buf.get(), kReadBytes);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    EVP_DigestUpdate(md.get(), buf.get(), *n);
    if (verifier != nullptr && structure.ok()) {
      structure = verifier->Update(absl::string_view(buf.get(), *n));
    }
    out.size += *n;
  }
  if (verifier != nullptr && structure.ok()) structure = verifier->Finish();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md.get(), digest, &len);
  out.sha256 = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
  out.structure = structure;
  return out;
}

// virtual_size= of a seed-era DISK-<device>/vdi.cfg: the boot disk's
// (xvda, hda) or the only disk's.
std::optional<uint64_t> SeedDiskSize(Filesystem& fs, const std::string& folder,
                                     const std::vector<DirEntry>& entries) {
  std::vector<std::string> disks;
  for (const DirEntry& e : entries) {
    if (e.is_dir && absl::StartsWith(e.name, "DISK-")) disks.push_back(e.name);
  }
  std::string chosen;
  for (const char* boot : {"DISK-xvda", "DISK-hda", "DISK-sda"}) {
    if (std::find(disks.begin(), disks.end(), boot) != disks.end()) {
      chosen = boot;
      break;
    }
  }
  if (chosen.empty() && disks.size() == 1) chosen = disks[0];
  if (chosen.empty()) return std::nullopt;
  absl::StatusOr<std::string> cfg =
      fs.ReadFile(JoinPath(folder, chosen, "vdi.cfg"), 1 << 20);
  if (!cfg.ok()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*cfg, '\n')) {
    uint64_t size = 0;
    if (absl::ConsumePrefix(&line, "virtual_size=") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &size)) {
      return size;
    }
  }
  return std::nullopt;
}

class FolderChecker {
 public:
  FolderChecker(Filesystem& fs, const std::string& folder,
                const std::function<bool()>& stop)
      : fs_(fs), folder_(folder), stop_(stop) {
    check_.path = folder;
  }

  BackupFolderCheck Run() {
    absl::StatusOr<std::vector<DirEntry>> entries = fs_.ListDir(folder_);
    if (!entries.ok()) {
      Error(std::string(entries.status().message()));
      return Done();
    }
    entries_ = *std::move(entries);
    std::set<std::string> names;
    for (const DirEntry& e : entries_) names.insert(e.name);
    const bool committed =
        std::any_of(SuccessMarkers().begin(), SuccessMarkers().end(),
                    [&](const std::string& m) { return names.count(m) != 0; });
    if (!committed) {
      Error(
          "not committed: no success marker (a failed or interrupted "
          "backup, not a backup)");
      return Done();
    }
    const std::string manifest_path =
        JoinPath(folder_, std::string(kManifestFileName));
    if (names.count(std::string(kManifestFileName)) == 0) {
      CheckWithoutManifest();
    } else {
      absl::StatusOr<std::string> text =
          fs_.ReadFile(manifest_path, kMaxManifestBytes);
      absl::StatusOr<v1::BackupManifest> manifest =
          text.ok() ? ParseManifest(*text) : text.status();
      if (!manifest.ok()) {
        Error(
            absl::StrCat(kManifestFileName, ": ", manifest.status().message()));
      } else {
        CheckWithManifest(*manifest);
      }
    }
    return Done();
  }

 private:
  void Error(std::string what) { check_.errors.push_back(std::move(what)); }

  BackupFolderCheck Done() {
    check_.result = !check_.errors.empty()     ? VerifyResult::kError
                    : !check_.warnings.empty() ? VerifyResult::kWarning
                                               : VerifyResult::kOk;
    return std::move(check_);
  }

  // Reads one data file; `verifier` may be null. Returns the digest, or
  // nullopt after recording the error.
  std::optional<FileDigest> Read(const std::string& name,
                                 ExportVerifier* verifier) {
    if (check_.stopped) return std::nullopt;
    absl::StatusOr<FileDigest> d =
        ReadAndCheck(fs_, JoinPath(folder_, name), verifier, stop_);
    if (absl::IsCancelled(d.status())) {
      check_.stopped = true;
      return std::nullopt;
    }
    ++check_.files;
    if (!d.ok()) {
      if (absl::IsNotFound(d.status())) {
        Error(absl::StrCat(EscapeForLog(name), ": missing"));
      } else {
        Error(absl::StrCat(EscapeForLog(name), ": ", d.status().message()));
      }
      return std::nullopt;
    }
    check_.bytes += d->size;
    if (!d->structure.ok()) {
      Error(absl::StrCat(EscapeForLog(name), ": ", d->structure.message()));
      return std::nullopt;
    }
    return *d;
  }

  void CheckWithManifest(const v1::BackupManifest& m) {
    check_.vm_name = m.vm_name();
    check_.kind = m.kind();
    const bool vdi_export = m.kind() == "vdi-export";
    if (!vdi_export && m.kind() != "vm-export") {
      Error(absl::StrCat("manifest.json: unknown kind \"",
                         EscapeForLog(m.kind()), "\""));
      return;
    }
    std::map<std::string, const v1::ManifestDisk*> disk_of_file;
    uint64_t disks_bytes = 0;
    for (const v1::ManifestDisk& d : m.disks()) {
      disks_bytes += d.virtual_size();
      if (!vdi_export) continue;
      if (d.file().empty() && m.disks_size() == 1 && m.files_size() == 1) {
        disk_of_file[m.files(0).name()] = &d;  // before disks named files
      } else if (d.file().empty()) {
        Error(absl::StrCat("manifest.json names no file for disk ",
                           EscapeForLog(d.device())));
      } else {
        disk_of_file[d.file()] = &d;
      }
    }
    std::set<std::string> listed;
    for (const v1::ManifestFile& f : m.files()) {
      // A manifest is data from the share: its names stay in the folder.
      if (absl::Status s = CheckVmFolderName(f.name()); !s.ok()) {
        Error(absl::StrCat("manifest.json lists \"", EscapeForLog(f.name()),
                           "\", not a file of this folder"));
        continue;
      }
      listed.insert(f.name());
      std::unique_ptr<ExportVerifier> verifier;
      const v1::ManifestDisk* disk = nullptr;
      if (!vdi_export) {
        std::optional<v1::Compression> c = XvaCompression(f.name());
        if (!c.has_value()) {
          Error(absl::StrCat(EscapeForLog(f.name()),
                             ": not an .xva, .xva.gz or .xva.zst"));
          continue;
        }
        verifier = NewXvaVerifier(*c, {});
      } else {
        auto it = disk_of_file.find(f.name());
        if (it == disk_of_file.end()) {
          Error(absl::StrCat(EscapeForLog(f.name()),
                             ": manifest.json gives it to no disk"));
          continue;
        }
        disk = it->second;
        verifier = m.vdi_format() == "vhd"
                       ? NewVhdVerifier(disk->virtual_size())
                       : NewRawVerifier(disk->virtual_size());
      }
      std::optional<FileDigest> d = Read(f.name(), verifier.get());
      if (!d.has_value()) continue;
      if (d->size != f.size()) {
        Error(absl::StrCat(EscapeForLog(f.name()), ": ", d->size,
                           " bytes, manifest.json says ", f.size()));
      } else if (d->sha256 != absl::AsciiStrToLower(f.sha256())) {
        Error(absl::StrCat(EscapeForLog(f.name()), ": SHA-256 ", d->sha256,
                           ", manifest.json says ", EscapeForLog(f.sha256())));
      }
      if (!vdi_export && verifier->total() != disks_bytes) {
        Error(absl::StrCat(EscapeForLog(f.name()), ": its disks hold ",
                           verifier->total(), " bytes, manifest.json's ",
                           m.disks_size(), " disk(s) ", disks_bytes));
      }
    }
    for (const auto& [file, disk] : disk_of_file) {
      if (listed.count(file) == 0) {
        Error(absl::StrCat("disk ", EscapeForLog(disk->device()), ": ",
                           EscapeForLog(file),
                           " is not in manifest.json's "
                           "files"));
      }
    }
    if (m.files_size() == 0) Error("manifest.json lists no data file");
    for (const DirEntry& e : entries_) {
      if (!e.is_dir && IsDataFileName(e.name) && listed.count(e.name) == 0) {
        Error(absl::StrCat(EscapeForLog(e.name),
                           ": a data file manifest.json does not list"));
      }
    }
  }

  void CheckWithoutManifest() {
    check_.warnings.push_back(
        "no manifest.json (a VmBackup.py backup?): structure checked, no "
        "checksums to compare");
    int data_files = 0;
    for (const DirEntry& e : entries_) {
      if (e.is_dir || !IsDataFileName(e.name)) continue;
      ++data_files;
      std::unique_ptr<ExportVerifier> verifier;
      if (std::optional<v1::Compression> c = XvaCompression(e.name)) {
        check_.kind = "vm-export";
        verifier = NewXvaVerifier(*c, {});
      } else {
        check_.kind = "vdi-export";
        std::optional<uint64_t> size = SeedDiskSize(fs_, folder_, entries_);
        if (!size.has_value()) {
          check_.warnings.push_back(
              absl::StrCat(EscapeForLog(e.name),
                           ": no DISK-*/vdi.cfg gives its size; only read"));
        } else if (absl::EndsWith(e.name, ".vhd")) {
          verifier = NewVhdVerifier(*size);
        } else {
          verifier = NewRawVerifier(*size);
        }
      }
      (void)Read(e.name, verifier.get());
    }
    if (data_files == 0) Error("no data file (.xva, .raw or .vhd)");
  }

  Filesystem& fs_;
  const std::string folder_;
  const std::function<bool()>& stop_;
  std::vector<DirEntry> entries_;
  BackupFolderCheck check_;
};

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The backup folders directly in `dir`, committed or not.
absl::StatusOr<std::vector<FoundBackup>> BackupsIn(Filesystem& fs,
                                                   const std::string& dir) {
  absl::StatusOr<std::vector<BackupEntry>> backups = ListBackups(fs, dir);
  if (!backups.ok()) return backups.status();
  std::vector<FoundBackup> out;
  for (const BackupEntry& b : *backups) {
    out.push_back({JoinPath(dir, b.name), b.time, b.committed});
  }
  return out;
}

}  // namespace

const char* VerifyResultName(VerifyResult result) {
  switch (result) {
    case VerifyResult::kOk:
      return "ok";
    case VerifyResult::kWarning:
      return "WARNING";
    case VerifyResult::kError:
      return "ERROR";
  }
  return "?";
}

BackupFolderCheck VerifyBackupFolder(Filesystem& fs, const std::string& folder,
                                     const std::function<bool()>& stop) {
  return FolderChecker(fs, folder, stop).Run();
}

absl::StatusOr<std::vector<FoundBackup>> FindBackups(Filesystem& fs,
                                                     const std::string& path) {
  absl::StatusOr<FileInfo> info = fs.Stat(path);
  if (!info.ok()) return info.status();
  if (!info->is_dir) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a folder"));
  }
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  if (std::optional<absl::CivilSecond> t =
          ParseBackupFolderName(BaseName(trimmed))) {
    absl::StatusOr<std::vector<DirEntry>> entries = fs.ListDir(trimmed);
    if (!entries.ok()) return entries.status();
    bool committed = false;
    for (const DirEntry& e : *entries) {
      for (const std::string& m : SuccessMarkers()) committed |= e.name == m;
    }
    return std::vector<FoundBackup>{{trimmed, *t, committed}};
  }
  absl::StatusOr<std::vector<FoundBackup>> here = BackupsIn(fs, trimmed);
  if (!here.ok()) return here.status();
  if (!here->empty()) return here;
  // A backup_dir: its VM folders.
  absl::StatusOr<std::vector<DirEntry>> entries = fs.ListDir(trimmed);
  if (!entries.ok()) return entries.status();
  std::vector<FoundBackup> out;
  for (const DirEntry& e : *entries) {
    if (!e.is_dir || absl::StartsWith(e.name, ".") ||
        absl::StartsWith(e.name, "METADATA_")) {
      continue;
    }
    absl::StatusOr<std::vector<FoundBackup>> vm =
        BackupsIn(fs, JoinPath(trimmed, e.name));
    if (!vm.ok()) return vm.status();
    out.insert(out.end(), vm->begin(), vm->end());
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     " holds no backup folder (backup-YYYY-MM-DD-(HH:MM:SS)), "
                     "neither as a VM folder nor as a backup_dir"));
  }
  return out;
}

std::vector<std::string> PlanVerifyAfterRun(Filesystem& fs,
                                            const std::string& backup_dir,
                                            int percent) {
  std::vector<std::string> out;
  if (percent <= 0) return out;
  const uint64_t k = (100 + static_cast<uint64_t>(percent) - 1) /
                     static_cast<uint64_t>(std::min(percent, 100));
  absl::StatusOr<std::vector<DirEntry>> vms = fs.ListDir(backup_dir);
  if (!vms.ok()) return out;
  for (const DirEntry& vm : *vms) {
    if (!vm.is_dir || absl::StartsWith(vm.name, ".") ||
        absl::StartsWith(vm.name, "METADATA_")) {
      continue;
    }
    const std::string vm_dir = JoinPath(backup_dir, vm.name);
    absl::StatusOr<std::vector<BackupEntry>> backups = ListBackups(fs, vm_dir);
    if (!backups.ok()) continue;
    uint64_t place = 0;  // newest committed first
    for (auto it = backups->rbegin(); it != backups->rend(); ++it) {
      if (!it->committed) continue;
      // FNV-1a: stable across builds and versions.
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : it->name) h = (h ^ c) * 1099511628211ull;
      if (place >= 1 && (h + place) % k == 0) {
        out.push_back(JoinPath(vm_dir, it->name));
      }
      ++place;
    }
  }
  return out;
}

VerifySummary VerifyBackups(Filesystem& fs,
                            const std::vector<std::string>& folders,
                            const std::function<bool()>& stop) {
  VerifySummary out;
  const absl::Time started = absl::Now();
  size_t counts[3] = {0, 0, 0};
  uint64_t bytes = 0;
  size_t checked = 0;
  for (const std::string& folder : folders) {
    BackupFolderCheck c = VerifyBackupFolder(fs, folder, stop);
    bytes += c.bytes;
    if (c.stopped) break;
    ++checked;
    ++counts[static_cast<int>(c.result)];
    out.worst = std::max(out.worst, c.result);
    for (const std::string& e : c.errors) {
      out.findings.push_back(absl::StrCat("ERROR ", folder, ": ", e));
    }
    for (const std::string& w : c.warnings) {
      out.findings.push_back(absl::StrCat("WARNING ", folder, ": ", w));
    }
  }
  out.line = absl::StrCat(
      checked, checked == 1 ? " backup" : " backups", " read back: ", counts[0],
      " ok, ", counts[1], " WARNING, ", counts[2], " ERROR; ",
      FormatBytes(bytes), " in ",
      absl::StrFormat("%.1f s", absl::ToDoubleSeconds(absl::Now() - started)));
  if (checked < folders.size()) {
    absl::StrAppend(&out.line, " (stopped: ", folders.size() - checked,
                    " not read)");
  }
  return out;
}

}  // namespace vmb
