// SPDX-License-Identifier: Apache-2.0
#pragma once

// `vmbackup verify` (docs/cli.md): checks committed backups on the share
// after the fact, reading every data file against manifest.json
// (common/backup/backup_verify.h).
//
//   vmbackup verify [PATH...] [--config FILE] [--since DURATION]
//                   [--sample PERCENT] [--json]
//
// PATH: a backup folder, a VM folder or a backup_dir; --config FILE adds the
// config's backup_dir. Exit 0 every backup checked is good, 1 warnings (a
// backup without manifest.json), 2 a backup is corrupt or incomplete, or the
// arguments are wrong.

#include <string>
#include <vector>

#include "absl/time/time.h"

#include "common/base/filesystem.h"
#include "coordinator/cli.h"

namespace vmb::coordinator {

// Runs `vmbackup verify` with args[0] == "verify". `now` and `zone` place
// --since (folder names are in local time); `seed` chooses --sample's
// backups.
int RunVerifyCommand(const std::vector<std::string>& args, const CliStreams& io,
                     Filesystem& fs, absl::Time now, absl::TimeZone zone,
                     uint64_t seed);

// Its part of `vmbackup help`.
std::string VerifyCommandUsage();

}  // namespace vmb::coordinator
