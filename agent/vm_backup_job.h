// SPDX-License-Identifier: Apache-2.0
#pragma once

// The work done for one VM: pre-flight, backup folder, snapshot, verified
// streaming export, metadata, snapshot cleanup, commit and retention. The
// agent daemon runs it for the coordinator's jobs; the standalone run calls
// it in-process.
//
//   JobContext context;            // the process's XenAPI client, share, host
//   context.xapi = &client; ...
//   JobHooks hooks;                // progress, cancellation, commit grant
//   v1::JobStatus result = RunVmBackupJob(context, spec, hooks);
//
// A job either commits (the success marker is written last, after every file
// is verified and durable) or fails leaving no marker, no folder of its own,
// no snapshot of its own in the pool, and the earlier backups untouched.
//
// Folder ownership (common/backup/attempt_file.h): the job writes its attempt
// file (job_id, attempt, fencing token, run, agent, host) into its new backup
// folder first, durably, and then
//   - commits only into (else it fails "FENCED"), and on failure removes
//     only, a folder whose attempt file still names its job_id and fencing
//     token (a newer attempt may have removed an older one's folder and made
//     its own under the same name); when its own attempt file could not be
//     written, the folder it has just made (none there, or a torn one) goes
//     all the same;
//   - with a fencing token other than 0 (a distributed run; the standalone
//     run's 0 removes them all, as before), removes the VM's folders without
//     a success marker, before its backup, only when they have no attempt
//     file or one with a fencing token not above its own: a newer attempt's
//     folder, and one whose attempt file is unreadable (it may be being
//     written), are left and logged.
// Retention and pre_clean count and remove committed folders only.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/backup/snapshot_janitor.h"
#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/base/version.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/xapi_http_stream.h"
#include "common/xapi/xenapi_client.h"
#include "proto/common.pb.h"

namespace vmb::agent {

// What jobs share in a process. Pointers are not owned and must outlive every
// job that uses the context.
struct JobContext {
  XenApiClient* xapi = nullptr;  // logged in on the pool master
  Filesystem* fs = nullptr;
  Clock* clock = nullptr;
  absl::TimeZone time_zone = absl::LocalTimeZone();  // backup folder names
  // The host the HTTP data handlers are asked on (this agent's own host),
  // "scheme://address[:port]", and its record.
  std::string data_url;
  HostRecord host;
  // The pool's hosts: a 302 may lead only there, and each is verified as
  // itself (its pin, or its name with a CA).
  std::vector<HostIdentity> redirect_hosts;
  TlsOptions tls;
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration first_byte_timeout = absl::Minutes(5);
  // With compression XAPI compresses long runs of zeros before the first
  // byte leaves; XO users saw minutes.
  absl::Duration first_byte_timeout_compressed = absl::Minutes(20);
  // After the body ended, how long the export task may take to finish.
  absl::Duration task_wait = absl::Minutes(2);
  // How long VDI_IN_USE on destroy is retried (a spec's destroy_retry_ms
  // overrides it), and the first backoff.
  absl::Duration destroy_retry = absl::Minutes(2);
  absl::Duration destroy_backoff = absl::Milliseconds(200);
  std::string version = std::string(VersionString());
  // Who runs the job: the agent's id (attempt files, reports); "" in-process.
  std::string agent_id;
};

struct JobHooks {
  // Called on every phase change and about once a second while exporting,
  // with the job's whole state. Runs on the job's thread; must not block.
  std::function<void(const v1::JobStatus&)> progress;
  // Called with the verified, durable job just before the success marker is
  // written; an error fails the job (the coordinator's commit grant): with
  // status token "FENCED" when it is ABORTED (this attempt was fenced off),
  // else "COMMIT-FAIL". None: commit at once.
  std::function<absl::Status(const v1::JobStatus&)> commit_gate;
  // Notified from another thread to cancel the job. Not owned.
  const absl::Notification* cancel = nullptr;
};

// Checks a job spec as it arrives over the network, touching nothing:
//   - job_id, run_id: 1 to 128 bytes of printable ASCII without whitespace,
//     '/', '\' or ".." (job_id may also be "<run_id>/<vm_uuid>", the
//     standalone run's);
//   - vm_uuid a UUID; attempt not 0 when fencing_token is not 0; kind VM or
//     VDI; compression and vdi_format known values;
//   - backup_dir (CheckBackupDir), vm_folder (CheckVmFolderName),
//     backup_dir_format (one of the two patterns or "");
//   - master_url, data_url: "" or http(s)://host[:port], nothing more.
// Errors: INVALID_ARGUMENT with a one-line reason naming the field (a URL's
// value is never echoed: it could carry a credential).
absl::Status CheckJobSpec(const v1::JobSpec& spec);
// The rule CheckJobSpec applies to job_id and run_id (`field` names it in
// the error).
absl::Status CheckSpecId(absl::string_view field, absl::string_view id);

// Runs the job to a terminal phase (SUCCEEDED, FAILED or CANCELLED) and
// returns its final state. On FAILED: error_step, error_message, the XenAPI
// error if there was one, and the seed's status token ("VM-EXPORT-FAIL"; a
// spec CheckJobSpec refuses: "BAD-JOB" at step "check job", before any
// filesystem operation or XenAPI call); on SUCCEEDED with problems that did
// not spoil the backup (a snapshot that could not be destroyed, retention
// that failed): warnings. A snapshot left in the pool (the job retries its
// destruction for spec.destroy_retry_ms, at most an hour, or
// context.destroy_retry when that is 0) sets snapshot_left, and snapshot_uuid
// names it: the snapshot VM of a vm-export, the first disk snapshot of a
// vdi-export.
v1::JobStatus RunVmBackupJob(const JobContext& context, const v1::JobSpec& spec,
                             const JobHooks& hooks);

}  // namespace vmb::agent
