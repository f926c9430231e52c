// SPDX-License-Identifier: Apache-2.0
#include "coordinator/restore_manager.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

#include "common/backup/executor.h"
#include "common/backup/restore.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "coordinator/remote_agent_executor.h"

namespace vmb::coordinator {
namespace {

constexpr size_t kKeptRestores = 100;

bool Terminal(v1::JobPhase p) {
  return p == v1::JOB_PHASE_SUCCEEDED || p == v1::JOB_PHASE_FAILED ||
         p == v1::JOB_PHASE_CANCELLED;
}

}  // namespace

RestoreManager::RestoreManager(Options options) : o_(std::move(options)) {}

RestoreManager::~RestoreManager() { Stop(); }

absl::StatusOr<v1::RestoreState> RestoreManager::Start(
    const v1::RestoreRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the coordinator is stopping");
  }
  std::string folder = request.backup_folder();
  const bool by_vm = !request.vm().empty() || !request.backup_dir().empty() ||
                     !request.at().empty();
  if (by_vm == !folder.empty()) {
    return absl::InvalidArgumentError(
        "name a backup folder, or a VM with its backup_dir (and maybe at)");
  }
  if (by_vm) {
    if (request.vm().empty() || request.backup_dir().empty()) {
      return absl::InvalidArgumentError("--vm needs --backup-dir");
    }
    VMB_ASSIGN_OR_RETURN(
        folder, PickBackupToRestore(*o_.fs, request.backup_dir(), request.vm(),
                                    request.at()));
  }
  // A dry run here checks the folder and the pool, and picks the host.
  const std::set<std::string> live = o_.hub->LiveHosts();
  RestoreRequest dry;
  dry.backup_folder = folder;
  dry.sr = request.spec().sr();
  dry.host = request.host();
  dry.name = request.spec().name();
  dry.preserve = request.spec().preserve();
  dry.force = request.spec().force();
  dry.test = request.spec().test();
  dry.start = request.spec().start();
  dry.dry_run = true;
  dry.usable_host = [&live](const HostRecord& h) {
    return live.count(h.uuid) != 0;
  };
  dry.why_not = "no live agent";
  RestoreContext context;
  context.xapi = o_.xapi;
  context.fs = o_.fs;
  context.clock = o_.clock;
  context.tls = o_.tls;
  context.time_zone = o_.time_zone;
  VMB_ASSIGN_OR_RETURN(RestoreResult plan, RestoreBackup(context, dry));

  auto restore = std::make_unique<Restore>();
  v1::RestoreState& state = restore->state;
  absl::BitGen gen;
  state.set_restore_id(absl::StrFormat(
      "restore-%s-%04x",
      absl::FormatTime("%Y%m%d-%H%M%S", o_.clock->Now(), absl::UTCTimeZone()),
      absl::Uniform<uint32_t>(gen, 0, 0x10000)));
  state.set_backup_folder(folder);
  state.set_host_name(plan.host_name);
  for (const std::string& p : plan.plan) state.add_plan(p);
  for (const std::string& w : plan.warnings) state.add_warnings(w);
  v1::JobStatus* status = state.mutable_status();
  status->set_job_id(state.restore_id());
  status->set_host_uuid(plan.host_uuid);
  if (request.dry_run()) {
    status->set_phase(v1::JOB_PHASE_SUCCEEDED);
    state.set_done(true);
    return state;
  }
  status->set_phase(v1::JOB_PHASE_QUEUED);

  v1::JobSpec spec;
  spec.set_job_id(state.restore_id());
  spec.set_attempt(1);
  spec.set_fencing_token(absl::Uniform<uint64_t>(gen, 1, uint64_t{1} << 62));
  spec.set_host_uuid(plan.host_uuid);
  spec.set_host_name(plan.host_name);
  v1::RestoreSpec* r = spec.mutable_restore();
  *r = request.spec();
  r->set_backup_folder(folder);
  r->set_sr(plan.sr_uuid);  // as the dry run resolved it
  if (r->stall_timeout_ms() > 0)
    spec.set_first_byte_timeout_ms(r->stall_timeout_ms());
  if (r->name().empty()) r->set_name(plan.vm_name);
  VMB_ASSIGN_OR_RETURN(RecordMap<HostRecord> hosts, o_.xapi->GetAllHosts());
  ExecutorSetup setup;
  setup.xapi = o_.xapi;
  setup.fs = o_.fs;
  setup.clock = o_.clock;
  setup.master_url = o_.xapi->master_url();
  for (const auto& [ref, h] : hosts) setup.hosts[ref] = h;
  setup.tls = o_.tls;
  setup.time_zone = o_.time_zone;

  const v1::RestoreState first = state;
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::UnavailableError("the coordinator is stopping");
  Restore* raw = restore.get();
  const std::string id = state.restore_id();
  VMB_LOG(INFO) << "restore " << id << ": " << EscapeForLog(folder)
                << " through the agent of " << EscapeForLog(plan.host_name)
                << " onto SR " << EscapeForLog(plan.sr_name);
  raw->thread = std::thread([this, raw, spec, setup, id] {
    RemoteAgentExecutor executor(o_.hub, setup);
    v1::JobStatus final = executor.RunJob(
        spec,
        [this, raw](const v1::JobStatus& s) {
          absl::MutexLock lock(&mu_);
          *raw->state.mutable_status() = s;
        },
        &raw->cancel);
    if (final.phase() == v1::JOB_PHASE_SUCCEEDED) {
      VMB_LOG(INFO) << "restore " << id << ": VM "
                    << EscapeForLog(final.restore().vm_name()) << " ("
                    << final.restore().vm_uuid() << ") restored";
    } else {
      VMB_LOG(WARNING) << "restore " << id
                       << " failed: " << EscapeForLog(final.error_message());
    }
    absl::MutexLock lock(&mu_);
    *raw->state.mutable_status() = final;
    raw->state.set_done(true);
  });
  restores_[id] = std::move(restore);
  order_.push_back(id);
  // The oldest finished ones go.
  while (order_.size() > kKeptRestores) {
    auto it = restores_.find(order_.front());
    if (it == restores_.end() || !it->second->state.done()) break;
    it->second->thread.join();
    restores_.erase(it);
    order_.erase(order_.begin());
  }
  return first;
}

absl::StatusOr<v1::RestoreState> RestoreManager::Get(
    const std::string& restore_id) const {
  absl::MutexLock lock(&mu_);
  auto it = restores_.find(restore_id);
  if (it == restores_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no restore ", EscapeForLog(restore_id),
                     " (the coordinator keeps the last ", kKeptRestores,
                     " since it started)"));
  }
  v1::RestoreState state = it->second->state;
  state.set_done(state.done() && Terminal(state.status().phase()));
  return state;
}

void RestoreManager::Stop() {
  std::vector<Restore*> running;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (auto& [id, r] : restores_) {
      if (!r->cancel.HasBeenNotified()) r->cancel.Notify();
      running.push_back(r.get());
    }
  }
  for (Restore* r : running) {
    if (r->thread.joinable()) r->thread.join();
  }
}

}  // namespace vmb::coordinator
