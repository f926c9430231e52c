// SPDX-License-Identifier: Apache-2.0
#pragma once

// Removes the snapshots that crashed or killed runs left in the pool.
//
// A snapshot is ours only when it is a snapshot (is_a_snapshot) and either
// carries vmbackup:share=<share id> in other_config, or (a crash between
// VM.snapshot and the tagging call) is named SnapshotName(<share id>, ...).
// Of those, the ones whose run is still active are kept. Nothing else is
// ever destroyed: not another share's snapshots, not a user's snapshots,
// never a VM (VmBackup.py destroyed a real VM by name: its issue #96).

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/xapi/xenapi_client.h"

namespace vmb {

// Snapshot tags (other_config keys) that make a snapshot provably ours.
inline constexpr absl::string_view kTagRun = "vmbackup:run";
inline constexpr absl::string_view kTagJob = "vmbackup:job";
inline constexpr absl::string_view kTagVm = "vmbackup:vm";
inline constexpr absl::string_view kTagShare = "vmbackup:share";

// The name_label of a snapshot vmbackup takes: "vmbackup-<share>-<run>", so
// that one left untagged by a crash between VM.snapshot and the tagging
// call is still recognised as ours.
std::string SnapshotName(absl::string_view share_id, absl::string_view run_id);

struct JanitorReport {
  // "<snapshot name> of VM <uuid> (run <run>)" for each snapshot destroyed.
  std::vector<std::string> removed;
  // What could not be destroyed, and why.
  std::vector<std::string> problems;
};

struct JanitorOptions {
  std::string share_id;
  std::set<std::string> active_runs;  // runs whose snapshots must stay
  // When set, decides instead of active_runs: a snapshot of ours is
  // destroyed iff select(its run tag, its job tag) (the job tag is "" on a
  // snapshot recognised by name only). A run uses it for the snapshot of
  // one lost job, and for all of its own once every job ended.
  std::function<bool(const std::string& run, const std::string& job)> select;
  absl::Duration destroy_retry = absl::Seconds(30);  // VDI_IN_USE retries
  absl::Duration destroy_backoff = absl::Milliseconds(500);
  // Reads the time and pauses between retries. Not owned; never null.
  Clock* clock = SystemClock::Get();
};

// Calls `destroy` until the object is gone: success, or HANDLE_INVALID (it
// was already destroyed). VDI_IN_USE, OTHER_OPERATION_IN_PROGRESS and
// UNAVAILABLE (a tapdisk or an export still releasing the disk) are retried
// for up to `retry_for`, pausing `first_pause`, doubling up to 5 s, with the
// time read and the pauses taken on `clock`. Any other error, or the last
// transient one, is returned.
absl::Status DestroyRetryingWhileInUse(
    const std::function<absl::Status()>& destroy, absl::Duration retry_for,
    absl::Duration first_pause, Clock& clock);

// Errors: those of reading the pool (the records); a snapshot that cannot be
// destroyed is a problem in the report, not an error.
absl::StatusOr<JanitorReport> CleanUpLeftoverSnapshots(
    XenApiClient& xapi, const JanitorOptions& options);
// The same, from every VM, VBD and VDI record of the pool as the caller has
// just read them.
JanitorReport CleanUpLeftoverSnapshots(XenApiClient& xapi,
                                       const RecordMap<VmRecord>& vms,
                                       const RecordMap<VbdRecord>& vbds,
                                       const RecordMap<VdiRecord>& vdis,
                                       const JanitorOptions& options);

}  // namespace vmb
