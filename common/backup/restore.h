// SPDX-License-Identifier: Apache-2.0
#pragma once

// Restoring a backup folder into a pool: the seed left this to `xe
// vm-import` and, for a vdi-export, to a four-step manual procedure.
//
//   vm-export:  PUT /import of the XVA (gzip and zstd as they are: XAPI
//               tells them apart by their first bytes), then the new VM is
//               renamed and loses the snapshot's vmbackup:* keys.
//   vdi-export: for each disk VDI.create on the target SR and PUT
//               /import_raw_vdi (raw or vhd, as backed up); then the VM's
//               shell from vm-metadata.xml by PUT /import_metadata, with
//               the original's VBDs (userdevice, bootable, mode) mapped to
//               the new disks (vdi:<uuid>=<uuid>) and its VIFs on the
//               networks of the same name.
//
// Every data file is checked against manifest.json as it streams
// (CheckedFileReader); a mismatch stops the upload before its end. On any
// failure what this restore made is destroyed, and the result says what.
// The original VM is never touched: only objects made here are changed.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xapi_http_stream.h"
#include "common/xapi/xenapi_client.h"

namespace vmb {

struct RestoreRequest {
  std::string backup_folder;  // a backup-... folder
  std::string sr;             // SR name_label or uuid; "": the pool's default
  std::string host;       // host name_label or uuid to upload through; "": one
                          // that sees the SR (the master first)
  std::string name;       // "": "<original name> (restored YYYY-MM-DD)"
  bool preserve = false;  // restore=true: MACs (and uuids) as backed up
  bool force = false;     // restore an uncommitted or mismatching backup
  bool start = false;     // VM.start the new VM once restored
  bool dry_run = false;   // say what would be done; change nothing
  // A restore test: restore (under a throwaway name unless `name`), read
  // each restored disk back through /export_raw_vdi and compare its SHA-256
  // with the content of the backup's, then destroy what was made, whatever
  // the outcome. A difference is DATA_LOSS.
  bool test = false;
  // When choosing a host (no `host`): only those for which this is true
  // (unset: all). With `host` set, that host must pass it. `why_not` says
  // what the rejected hosts lack ("no live agent").
  std::function<bool(const HostRecord&)> usable_host;
  std::string why_not = "not usable";
};

struct RestoreContext {
  XenApiClient* xapi = nullptr;
  Filesystem* fs = nullptr;
  Clock* clock = nullptr;
  TlsOptions tls;
  XapiStreamTimeouts timeouts;
  const absl::Notification* cancel = nullptr;
  absl::TimeZone time_zone = absl::LocalTimeZone();
  // One line per step and progress ("restore: 40% of 2.0 GiB").
  std::function<void(const std::string&)> log;
  // Data bytes uploaded so far, of all the backup's data files.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct RestoreResult {
  std::string kind;  // "vm-export" or "vdi-export"
  std::string original_name;
  std::string vm_ref;
  std::string vm_uuid;
  std::string vm_name;
  std::string sr_name;
  std::string host_name;  // the host the data went through
  std::string host_uuid;
  std::string sr_uuid;
  uint64_t bytes = 0;                 // data bytes uploaded
  std::vector<std::string> disks;     // "xvda: <vdi uuid>, 8.0 GiB"
  std::vector<std::string> warnings;  // e.g. a network made anew
  std::vector<std::string> plan;      // dry run: what would be done
  // A restore test: a line per disk ("0: 8.0 GiB, SHA-256 ab12..., equal")
  // and what was destroyed after it.
  std::vector<std::string> test;
};

// The backup folder `vmbackup restore --vm VM --backup-dir DIR [--at AT]`
// means: the newest committed backup in VM's folder of `backup_dir` (the
// folder named after the VM, or ending in "--<uuid>") taken at or before
// `at` ("YYYY-MM-DD", meaning the end of that day, or
// "YYYY-MM-DD-HH:MM:SS"; "" no limit). Errors: INVALID_ARGUMENT for a bad
// `at`; NOT_FOUND (no such VM folder, or no such backup);
// FAILED_PRECONDITION when several VM folders match; each one line.
absl::StatusOr<std::string> PickBackupToRestore(Filesystem& fs,
                                                const std::string& backup_dir,
                                                const std::string& vm,
                                                const std::string& at);

// Errors: FAILED_PRECONDITION for a folder that is not a committed backup
// (without force), an SR or host that is not there or ambiguous, a
// --preserve restore whose VM still exists; DATA_LOSS for a file that does
// not match its manifest; the XenAPI and transfer errors of each step, with
// the step named and, after a clean-up, what was removed.
absl::StatusOr<RestoreResult> RestoreBackup(const RestoreContext& context,
                                            const RestoreRequest& request);

}  // namespace vmb
