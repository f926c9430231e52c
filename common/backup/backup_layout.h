// SPDX-License-Identifier: Apache-2.0
#pragma once

// The backup share's layout, as VmBackup.py made it and vmbackup keeps it:
//
//   <backup_dir>/<vm folder>/backup-YYYY-MM-DD-(HH:MM:SS)/
//       <vm>.xva | <vm>.xva.gz | <vm>.xva.zst | <vm>.raw | <vm>.vhd
//       vm-metadata.xml, DISK-<dev>/{vbd.cfg,vdi.cfg}, VIFs/vif-<n>.cfg,
//       manifest.json, success
//   <backup_dir>/METADATA_<host>/pool_db_YYYYMMDD-HHMMSS.dump
//
// and the rules over it: VM folder names, backup folder names, which folders
// are committed (carry a success marker), and retention.

#include <stdint.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"

#include "common/base/filesystem.h"

namespace vmb {

// The marker vmbackup writes last, after data and metadata are verified and
// durable.
inline constexpr absl::string_view kSuccessMarker = "success";
// Every marker name that makes a folder committed: VmBackup.py's four
// (success, success_restore, success_compress, success_compressing).
const std::vector<std::string>& SuccessMarkers();

// The two backup folder-name patterns (config key backup_dir_format): the
// seed's, and one without ':' for CIFS/SMB shares that refuse it.
inline constexpr absl::string_view kBackupDirFormatSeed =
    "backup-YYYY-MM-DD-(HH:MM:SS)";
inline constexpr absl::string_view kBackupDirFormatNoColons =
    "backup-YYYY-MM-DD-(HH-MM-SS)";

// The longest VM folder name vmbackup makes, in bytes (NAME_MAX is 255; the
// rest is room for "--<uuid>").
inline constexpr size_t kMaxVmFolderNameBytes = 200;

// A backup folder's name for a backup started at `local` (local time), in
// `format` (kBackupDirFormatSeed or kBackupDirFormatNoColons).
std::string FormatBackupFolderName(absl::string_view format,
                                   absl::CivilSecond local);
// The time in a backup folder's name, in either format; nullopt for any
// other name (such entries are never counted, removed or touched).
std::optional<absl::CivilSecond> ParseBackupFolderName(absl::string_view name);

// A VM name as one safe path component: '/', NUL, control characters (C0,
// DEL, C1) and bytes that are not valid UTF-8 become '_'; leading '.'
// become '_'; an empty name becomes "_"; the result is cut to
// kMaxVmFolderNameBytes on a character boundary. Names that need none of
// this come back unchanged. The same rule makes every other string from the
// pool that ends up in a path (a device, a userdevice, a uuid) safe.
std::string SanitizeVmName(absl::string_view name);

// Checks a job's vm_folder (it comes over the network): one path component,
// not empty, at most 255 bytes (NAME_MAX), valid UTF-8, no '/', no NUL or
// other control character, no leading '.' (so never "." or ".."). Errors:
// INVALID_ARGUMENT saying what is wrong.
absl::Status CheckVmFolderName(absl::string_view name);

// Checks a job's backup_dir: an absolute, normalised path of at most 4095
// bytes, valid UTF-8, no control characters, no "." or ".." component, no
// "//" and no trailing '/' (but "/" itself), so that nothing a job writes
// can land outside it and one share has one spelling. Errors:
// INVALID_ARGUMENT.
absl::Status CheckBackupDir(absl::string_view path);

// The folder a VM's backups go in, and why.
struct VmFolderChoice {
  std::string folder;   // one path component under backup_dir
  std::string warning;  // why it is not simply the VM's name, or ""
};

// Chooses the folder for the VM `uuid` named `name`. The seed's folder is the
// VM's name verbatim; vmbackup keeps it whenever that is safe and unique:
//   - a name that SanitizeVmName changes gets "<sanitised>--<uuid>";
//   - a name another VM also has (`name_shared`) gets "<name>--<uuid>", so two
//     VMs never share a folder and retention;
//   - a folder "<name>" whose newest manifest.json records another VM's uuid
//     belongs to that VM, so this one gets "<name>--<uuid>";
//   - otherwise "<name>" (a folder made by VmBackup.py, without manifests,
//     is taken over).
// Reads the share; creates nothing. Errors: those of listing `backup_dir`.
absl::StatusOr<VmFolderChoice> ChooseVmFolder(Filesystem& fs,
                                              const std::string& backup_dir,
                                              const std::string& uuid,
                                              const std::string& name,
                                              bool name_shared);

// One backup folder of a VM.
struct BackupEntry {
  std::string name;  // "backup-2026-11-26-(03:00:01)"
  absl::CivilSecond time;
  bool committed = false;  // holds a success marker
};

// The VM folder's backup folders, oldest first (by the time in their names,
// then by name). Entries that are not backup folders are left out. A
// missing VM folder has none.
absl::StatusOr<std::vector<BackupEntry>> ListBackups(Filesystem& fs,
                                                     const std::string& vm_dir);

// Retention after `new_backup` committed: the committed folders to delete so
// that at most `max_backups` committed ones remain, oldest first. Never
// `new_backup`, never the newest committed folder, and folders without a
// marker neither count nor are chosen. `max_backups` < 1 counts as 1.
std::vector<std::string> PlanRetention(const std::vector<BackupEntry>& backups,
                                       int max_backups,
                                       absl::string_view new_backup);

// pre_clean, before a new backup is taken: the committed folders to delete
// so that `max_backups` - 1 remain, leaving room for the new one, but never
// the newest committed folder (so max_backups=1 deletes nothing).
std::vector<std::string> PlanPreClean(const std::vector<BackupEntry>& backups,
                                      int max_backups);

// The folders left by failed or interrupted backups (no marker), which the
// next backup of the VM removes.
std::vector<std::string> UncommittedBackups(
    const std::vector<BackupEntry>& backups);

// Removes one backup folder: its markers first, so that a crash part-way
// leaves an uncommitted folder (garbage) and never a committed half; then
// the rest. Never follows symbolic links.
absl::Status RemoveBackup(Filesystem& fs, const std::string& vm_dir,
                          const std::string& name);

// "<backup_dir>/METADATA_<host>" and "pool_db_YYYYMMDD-HHMMSS.dump".
std::string PoolDbFolderName(absl::string_view host_name);
std::string PoolDbFileName(absl::CivilSecond local);
std::optional<absl::CivilSecond> ParsePoolDbFileName(absl::string_view name);

}  // namespace vmb
