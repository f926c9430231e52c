// SPDX-License-Identifier: Apache-2.0
#pragma once

// A restore job on an agent: the JobSpec's RestoreSpec run by RestoreBackup
// (common/backup/restore.h) through this agent's own host, reported like a
// backup job: JOB_PHASE_EXPORT with the bytes uploaded while it runs, then
// SUCCEEDED with the RestoreOutcome, or FAILED (error_step "restore",
// status token "RESTORE-FAIL", the message saying what was removed).

#include "agent/vm_backup_job.h"
#include "proto/common.pb.h"

namespace vmb::agent {

// Checks a restore job as it arrives: job_id as CheckJobSpec's; the folder
// an absolute path without "." or ".." components or control characters;
// sr, name and host_uuid one line each. INVALID_ARGUMENT saying what.
absl::Status CheckRestoreSpec(const v1::JobSpec& spec);

// Runs it; never an error: a restore that cannot run is FAILED. Uses the
// context's XenAPI client, share, clock, TLS, host and timeouts; the
// hooks' progress and cancel (no commit gate: a restore commits nothing).
v1::JobStatus RunRestoreJob(const JobContext& context, const v1::JobSpec& spec,
                            const JobHooks& hooks);

}  // namespace vmb::agent
