// SPDX-License-Identifier: Apache-2.0
#pragma once

// Checking backups after the fact (`vmbackup verify`): what a job checked
// while the export streamed, checked again from the share, so that a backup
// damaged since (a flipped bit on the NFS server, a truncated copy, an edited
// manifest) is found before it is needed.
//
// A committed backup folder with a manifest.json: every file the manifest
// lists is read once, front to back, its size and SHA-256 compared with the
// manifest's while its structure is checked by the export verifiers (XVA:
// tar framing, every chunk's checksum, each disk covered whole, the trailer;
// VHD: footer, header, BAT, blocks; raw: the disk's size). The disks the XVA
// carries must add up to the manifest's, each vdi-export disk must have its
// file, and no data file may be in the folder without being in the manifest.
// A folder without manifest.json (one VmBackup.py made) is checked for
// structure only, which is a warning, not an error.

#include <stdint.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"

#include "common/base/filesystem.h"

namespace vmb {

enum class VerifyResult { kOk, kWarning, kError };

// "ok", "WARNING", "ERROR".
const char* VerifyResultName(VerifyResult result);

struct BackupFolderCheck {
  std::string path;  // the backup folder
  VerifyResult result = VerifyResult::kOk;
  std::vector<std::string> errors;    // each names the file and what is wrong
  std::vector<std::string> warnings;  // e.g. no manifest.json
  std::string vm_name;                // from the manifest, else the folder's
  std::string kind;                   // "vm-export", "vdi-export" or ""
  int files = 0;                      // data files checked
  uint64_t bytes = 0;                 // bytes read
  bool stopped = false;  // `stop` said so part-way: the result means nothing
};

// Checks one backup folder as above. A folder without a success marker is
// an error (it is not a backup). Never writes. `stop`, when given, is asked
// between reads: once it says true, the check ends, marked `stopped`.
BackupFolderCheck VerifyBackupFolder(
    Filesystem& fs, const std::string& folder,
    const std::function<bool()>& stop = nullptr);

// One backup folder found under the paths given to `vmbackup verify`.
struct FoundBackup {
  std::string path;
  absl::CivilSecond time;  // from its name (local time)
  bool committed = false;
};

// The backup folders under `path`: `path` itself when it is a backup folder
// (backup-YYYY-MM-DD-(HH:MM:SS), or the CIFS form), those of a VM folder,
// or those of every VM folder of a backup_dir (METADATA_* and dot folders
// left out): VM folder by VM folder (by name), each one's oldest first.
// Errors: NOT_FOUND, or that of listing `path`;
// INVALID_ARGUMENT when `path` holds no backup folder at any of the three
// levels.
absl::StatusOr<std::vector<FoundBackup>> FindBackups(Filesystem& fs,
                                                     const std::string& path);

// verify_after_run=PERCENT: the backups a run reads back after it ended.
// In each VM folder under `backup_dir`, the committed backups are counted
// newest first: the newest (place 0) was checked as it streamed; the one at
// place j >= 1 is chosen when (h + j) % K == 0, where K = ceil(100 /
// PERCENT) and h a stable hash of its folder's name. Each run adds one
// backup to a VM's folder, moving the others one place on, so a backup is
// read back once every K runs of its life, the first time within K runs
// after the one that made it (if retention keeps it that long: max_backups
// > K), and each run reads about PERCENT % of the older backups (100: all
// of them). No state is kept. Folders that cannot be listed are left out.
// Paths, VM folder by VM folder.
std::vector<std::string> PlanVerifyAfterRun(Filesystem& fs,
                                            const std::string& backup_dir,
                                            int percent);

// What checking several backup folders found, for a run's summary.
struct VerifySummary {
  VerifyResult worst = VerifyResult::kOk;
  // "3 backups read back: 2 ok, 1 WARNING, 0 ERROR; 40 MiB in 0.3 s"
  std::string line;
  // One line per finding: "ERROR <folder>: <what>", "WARNING <folder>: ...".
  std::vector<std::string> findings;
};
// `stop`: as for VerifyBackupFolder; folders not checked to the end are left
// out of the counts, and the line says how many.
VerifySummary VerifyBackups(Filesystem& fs,
                            const std::vector<std::string>& folders,
                            const std::function<bool()>& stop = nullptr);

}  // namespace vmb
