// SPDX-License-Identifier: Apache-2.0
#include "agent/restore_job.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#include "common/backup/restore.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"

namespace vmb::agent {
namespace {

uint64_t UnixMs(absl::Time t) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(t)));
}

absl::Status OneLine(absl::string_view field, absl::string_view value) {
  if (value.size() > 1024)
    return absl::InvalidArgumentError(absl::StrCat(field, " is too long"));
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " has a control character"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRestoreSpec(const v1::JobSpec& spec) {
  VMB_RETURN_IF_ERROR(CheckSpecId("job_id", spec.job_id()));
  const v1::RestoreSpec& r = spec.restore();
  const std::string& folder = r.backup_folder();
  VMB_RETURN_IF_ERROR(OneLine("backup_folder", folder));
  if (!absl::StartsWith(folder, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backup_folder \"", EscapeForLog(folder), "\" is not absolute"));
  }
  for (absl::string_view part : absl::StrSplit(folder, '/')) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("backup_folder \"", EscapeForLog(folder),
                       "\" has a \".\" or \"..\" component"));
    }
  }
  VMB_RETURN_IF_ERROR(OneLine("sr", r.sr()));
  VMB_RETURN_IF_ERROR(OneLine("name", r.name()));
  return OneLine("host_uuid", spec.host_uuid());
}

v1::JobStatus RunRestoreJob(const JobContext& context, const v1::JobSpec& spec,
                            const JobHooks& hooks) {
  v1::JobStatus status;
  status.set_job_id(spec.job_id());
  status.set_attempt(spec.attempt());
  status.set_fencing_token(spec.fencing_token());
  status.set_started_unix_ms(UnixMs(context.clock->Now()));
  auto fail = [&](absl::string_view message,
                  absl::string_view step = "restore") {
    status.set_phase(v1::JOB_PHASE_FAILED);
    status.set_error_step(std::string(step));
    status.set_status_token("RESTORE-FAIL");
    status.set_error_message(std::string(message));
    status.set_finished_unix_ms(UnixMs(context.clock->Now()));
    return status;
  };
  if (absl::Status s = CheckRestoreSpec(spec); !s.ok())
    return fail(s.message(), "check job");
  status.set_phase(v1::JOB_PHASE_EXPORT);
  if (hooks.progress) hooks.progress(status);

  RestoreRequest request;
  request.backup_folder = spec.restore().backup_folder();
  request.sr = spec.restore().sr();
  request.name = spec.restore().name();
  request.preserve = spec.restore().preserve();
  request.force = spec.restore().force();
  request.test = spec.restore().test();
  request.start = spec.restore().start();
  request.host = context.host.uuid;  // the data goes through this host
  RestoreContext rc;
  rc.xapi = context.xapi;
  rc.fs = context.fs;
  rc.clock = context.clock;
  rc.tls = context.tls;
  rc.timeouts.connect = context.connect_timeout;
  rc.timeouts.first_byte = context.first_byte_timeout;
  rc.timeouts.inactivity = context.first_byte_timeout;
  rc.cancel = hooks.cancel;
  rc.time_zone = context.time_zone;
  const std::string job = EscapeForLog(spec.job_id());
  rc.log = [&](const std::string& line) {
    VMB_LOG(INFO) << "restore " << job << ": " << line;
  };
  absl::Time last_report = absl::InfinitePast();
  rc.progress = [&](uint64_t done, uint64_t total) {
    status.set_bytes_done(done);
    status.set_bytes_total(total);
    status.set_bytes_written(done);
    const absl::Time now = context.clock->Now();
    if (hooks.progress && now - last_report >= absl::Seconds(1)) {
      last_report = now;
      hooks.progress(status);
    }
  };
  absl::StatusOr<RestoreResult> r = RestoreBackup(rc, request);
  if (!r.ok()) {
    VMB_LOG(WARNING) << "restore " << job << " failed: " << r.status();
    if (hooks.cancel != nullptr && hooks.cancel->HasBeenNotified()) {
      status.set_phase(v1::JOB_PHASE_CANCELLED);
      status.set_error_message(std::string(r.status().message()));
      status.set_finished_unix_ms(UnixMs(context.clock->Now()));
      return status;
    }
    return fail(r.status().message());
  }
  v1::RestoreOutcome* out = status.mutable_restore();
  out->set_vm_uuid(r->vm_uuid);
  out->set_vm_name(r->vm_name);
  out->set_sr_name(r->sr_name);
  out->set_host_name(r->host_name);
  out->set_original_name(r->original_name);
  out->set_kind(r->kind);
  for (const std::string& d : r->disks) out->add_disks(d);
  for (const std::string& t : r->test) out->add_test(t);
  for (const std::string& w : r->warnings) status.add_warnings(w);
  status.set_bytes_done(r->bytes);
  status.set_backup_bytes(r->bytes);
  status.set_phase(v1::JOB_PHASE_SUCCEEDED);
  status.set_finished_unix_ms(UnixMs(context.clock->Now()));
  VMB_LOG(INFO) << "restore " << job << ": VM " << EscapeForLog(r->vm_name)
                << " (" << r->vm_uuid << ") restored";
  return status;
}

}  // namespace vmb::agent
