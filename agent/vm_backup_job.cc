// SPDX-License-Identifier: Apache-2.0
#include "agent/vm_backup_job.h"

#include <algorithm>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "agent/backup_metadata.h"
#include "common/backup/attempt_file.h"
#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "common/backup/export_format.h"
#include "common/backup/export_verifier.h"
#include "common/backup/exported_disks.h"
#include "common/backup/hashing_writer.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/xapi_task.h"
#include "common/xapi/xenapi_error.h"

namespace vmb::agent {
namespace {

using v1::JobPhase;

// SR types whose snapshots are allocated in full (LVM-based).
bool IsThickSr(const SrRecord& sr) {
  static const std::set<std::string> kThick = {"lvm", "lvmoiscsi", "lvmohba",
                                               "lvmofcoe"};
  auto it = sr.sm_config.find("allocation");
  if (it != sr.sm_config.end()) return it->second == "thick";
  return kThick.count(sr.type) > 0;
}

uint64_t ToUnixMs(absl::Time t) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(t)));
}

struct Disk {
  VbdRecord vbd;
  VdiRecord vdi;
  std::string vdi_ref;
  SrRecord sr;
};

// The disk's virtual size; XAPI's int64 is never negative in practice.
uint64_t VirtualSize(const Disk& d) {
  return static_cast<uint64_t>(std::max<int64_t>(0, d.vdi.virtual_size));
}

// The longest snapshot destroy retry a spec may ask for: an hour.
constexpr uint64_t kMaxDestroyRetryMs = 3600 * 1000;

// The longest job_id or run_id a spec may carry.
constexpr size_t kMaxIdBytes = 128;

// job_id, run_id: printable ASCII without whitespace, '/', '\\' or "..":
// they go into logs, XAPI tags, attempt files and, on an agent, file names.
absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", id.size(), " bytes long (max ", kMaxIdBytes, ")"));
  }
  for (char c : id) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '\\') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", EscapeForLog(id),
          "\" holds a character other than printable ASCII (whitespace, a "
          "control character, '/' or '\\')"));
    }
  }
  if (absl::StrContains(id, "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", EscapeForLog(id), "\" holds \"..\""));
  }
  return absl::OkStatus();
}

// master_url, data_url: "" or http(s)://host[:port] and nothing else. The
// value is never echoed: a URL may carry a password or a session.
absl::Status CheckBaseUrl(absl::string_view field, absl::string_view url) {
  if (url.empty()) return absl::OkStatus();
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", why));
  };
  for (char c : url) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return bad("holds whitespace, a control character or non-ASCII");
    }
  }
  if (absl::StrContains(url, "@")) {
    return bad("holds user info ('@'); credentials never go in a URL");
  }
  const std::optional<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.has_value()) {
    return bad("is not a URL of the form http(s)://host[:port]");
  }
  if (parsed->scheme != "http" && parsed->scheme != "https") {
    return bad(absl::StrCat("has the scheme \"", EscapeForLog(parsed->scheme),
                            "\" (http or https only)"));
  }
  if (!parsed->rest.empty()) {
    return bad("has a path, query or fragment (http(s)://host[:port] only)");
  }
  if (!parsed->port.empty()) {
    int port = 0;
    if (parsed->port.size() > 5 || !absl::SimpleAtoi(parsed->port, &port) ||
        port < 1 || port > 65535) {
      return bad("has a port outside 1-65535");
    }
  }
  return absl::OkStatus();
}

// A step failed: which one, the seed's status token, and why.
struct Failure {
  std::string step;
  std::string token;
  absl::Status status;
};

class Job {
 public:
  Job(const JobContext& context, const v1::JobSpec& spec, const JobHooks& hooks)
      : c_(context), spec_(spec), hooks_(hooks) {
    vdi_export_ = spec.kind() == v1::EXPORT_KIND_VDI;
    kind_name_ = std::string(
        ExportKindName(vdi_export_ ? v1::EXPORT_KIND_VDI : v1::EXPORT_KIND_VM));
    status_.set_job_id(spec.job_id());
    status_.set_attempt(spec.attempt());
    status_.set_fencing_token(spec.fencing_token());
    status_.set_host_uuid(context.host.uuid);
    status_.set_agent_id(context.agent_id);
    // The coordinator's bound wins: a snapshot XAPI holds on to must not keep
    // the export slot for minutes (the run retries it beside other exports).
    destroy_retry_ = context.destroy_retry;
    if (spec.destroy_retry_ms() != 0) {
      destroy_retry_ = absl::Milliseconds(static_cast<int64_t>(
          std::min<uint64_t>(spec.destroy_retry_ms(), kMaxDestroyRetryMs)));
    }
  }

  v1::JobStatus Run();

 private:
  void SetPhase(JobPhase phase) {
    status_.set_phase(phase);
    Report();
  }
  void Report() {
    if (hooks_.progress) hooks_.progress(status_);
  }
  void Warn(const std::string& warning) {
    VMB_LOG(WARNING) << "job " << spec_.job_id() << " VM " << spec_.vm_uuid()
                     << ": " << warning;
    status_.add_warnings(warning);
  }
  bool Cancelled() const {
    return hooks_.cancel != nullptr && hooks_.cancel->HasBeenNotified();
  }
  // CANCELLED or DEADLINE_EXCEEDED when the job must stop now.
  absl::Status CheckStop() const {
    if (Cancelled()) return absl::CancelledError("the job was cancelled");
    if (c_.clock->Now() >= deadline_) {
      return absl::DeadlineExceededError(absl::StrCat(
          "vm_timeout (", absl::FormatDuration(vm_timeout_), ") expired"));
    }
    return absl::OkStatus();
  }
  Failure Fail(std::string step, std::string token, absl::Status status) {
    return Failure{std::move(step), std::move(token), std::move(status)};
  }

  std::optional<Failure> CheckSpec();
  std::optional<Failure> LoadVm();
  std::optional<Failure> Preflight();
  std::optional<Failure> PrepareFolder();
  std::optional<Failure> TakeSnapshot();
  std::optional<Failure> Export();
  absl::Status StreamToFile(const std::string& path,
                            std::vector<std::pair<std::string, std::string>> q,
                            const std::string& file_name,
                            std::unique_ptr<ExportVerifier> verifier,
                            bool compressed);
  absl::StatusOr<TaskRecord> WaitForTask(const std::string& task,
                                         absl::Duration limit) {
    return vmb::WaitForTask(*c_.xapi, *c_.clock, task, limit);
  }
  absl::Status WriteMetadata();
  absl::Status Commit();
  // Waits for the data files' background fsync; its first error.
  absl::Status WaitForDataSync();
  void ApplyRetention();
  void CleanUpSnapshot();
  // The uuid of our snapshot VM (`ref` is snapshot_ref_) or snapshot disk.
  absl::StatusOr<std::string> SnapshotUuid(const std::string& ref);
  void FinishTask();
  void RemoveNewFolder();
  // This job's attempt file.
  v1::AttemptFile OwnAttempt() const;
  // Whether `attempt` is this job's: its job_id and fencing token.
  bool IsOwn(const v1::AttemptFile& attempt) const {
    return attempt.job_id() == spec_.job_id() &&
           attempt.fencing_token() == spec_.fencing_token();
  }
  absl::Status RetryInUse(const std::function<absl::Status()>& destroy,
                          const std::string& what);

  std::string VmDir() const {
    return JoinPath(spec_.backup_dir(), spec_.vm_folder());
  }
  std::string BackupPath() const { return JoinPath(VmDir(), folder_); }
  std::string FileBase() const { return SanitizeVmName(vm_.name_label); }

  const JobContext& c_;
  const v1::JobSpec& spec_;
  const JobHooks& hooks_;
  bool vdi_export_ = false;
  std::string kind_name_;
  v1::JobStatus status_;
  absl::Time started_;
  absl::Time deadline_ = absl::InfiniteFuture();
  absl::Duration vm_timeout_ = absl::InfiniteDuration();
  absl::Duration destroy_retry_;

  std::string vm_ref_;
  VmRecord vm_;
  std::vector<Disk> disks_;      // every Disk VBD with a VDI, in VBD order
  std::vector<Disk*> exported_;  // the disks this job exports
  uint64_t estimate_ = 0;

  std::string folder_;  // the new backup-… folder, once created
  bool folder_created_ = false;
  bool attempt_written_ = false;  // its attempt file is durable

  std::string snapshot_ref_;                // vm-export
  std::vector<std::string> snapshot_vdis_;  // every VDI of our snapshot(s)
  std::vector<ExpectedDisk> expected_;      // vm-export: what the XVA carries
  std::string task_ref_;
  bool task_finished_ = false;

  std::vector<std::future<absl::Status>> syncing_;  // data files' fsync
  v1::BackupManifest manifest_;
  std::vector<std::string> data_files_;
  absl::Time last_report_ = absl::InfinitePast();
};

std::optional<Failure> Job::CheckSpec() {
  // The spec comes from the coordinator, over the network for an agent: it
  // is checked before anything is touched.
  absl::Status s = CheckJobSpec(spec_);
  if (!s.ok()) return Fail("check job", "BAD-JOB", s);
  return std::nullopt;
}

std::optional<Failure> Job::LoadVm() {
  absl::StatusOr<std::string> ref = c_.xapi->GetVmByUuid(spec_.vm_uuid());
  if (!ref.ok()) {
    return Fail("find VM", "ERROR vm-uuid not found",
                Annotate(ref.status(), "VM ", spec_.vm_uuid()));
  }
  vm_ref_ = *ref;
  absl::StatusOr<VmRecord> vm = c_.xapi->GetVm(vm_ref_);
  if (!vm.ok()) return Fail("find VM", "ERROR vm-uuid not found", vm.status());
  vm_ = *std::move(vm);
  if (vm_.is_a_template || vm_.is_a_snapshot || vm_.is_control_domain) {
    return Fail("find VM", "ERROR vm-uuid not found",
                absl::FailedPreconditionError(absl::StrCat(
                    "VM ", spec_.vm_uuid(),
                    " is a template, a snapshot or a control domain")));
  }
  for (const std::string& vbd_ref : vm_.vbds) {
    absl::StatusOr<VbdRecord> vbd = c_.xapi->GetVbd(vbd_ref);
    if (!vbd.ok())
      return Fail("find VM", "ERROR vm-uuid not found", vbd.status());
    if (absl::AsciiStrToLower(vbd->type) != "disk" || vbd->vdi == kNullRef ||
        vbd->vdi.empty()) {
      continue;
    }
    Disk disk;
    disk.vbd = *std::move(vbd);
    disk.vdi_ref = disk.vbd.vdi;
    absl::StatusOr<VdiRecord> vdi = c_.xapi->GetVdi(disk.vdi_ref);
    if (!vdi.ok())
      return Fail("find VM", "ERROR vm-uuid not found", vdi.status());
    disk.vdi = *std::move(vdi);
    absl::StatusOr<SrRecord> sr = c_.xapi->GetSr(disk.vdi.sr);
    if (!sr.ok())
      return Fail("find VM", "ERROR vm-uuid not found", sr.status());
    disk.sr = *std::move(sr);
    disks_.push_back(std::move(disk));
  }
  std::vector<Disk*> all;
  for (Disk& d : disks_) all.push_back(&d);
  exported_ = ExportedDisks(all, vdi_export_, spec_.vdi_export_all_disks());
  if (vdi_export_ && exported_.empty()) {
    return Fail("find VM", "ERROR xvda-uuid not found",
                absl::FailedPreconditionError(kNoBootDiskMessage));
  }
  const bool raw = vdi_export_ && spec_.vdi_format() != v1::VDI_FORMAT_VHD;
  uint64_t total = 0;
  for (const Disk* d : exported_) {
    const uint64_t size = VirtualSize(*d);
    total += size;
    // A thin SR's physical utilisation is closer to what the export holds;
    // XVA skips empty chunks, raw does not.
    const uint64_t used = static_cast<uint64_t>(
        std::max<int64_t>(0, d->vdi.physical_utilisation));
    estimate_ += raw || used == 0 ? size : std::min(size, used);
  }
  status_.set_bytes_total(total);
  return std::nullopt;
}

std::optional<Failure> Job::Preflight() {
  const std::string& dir = spec_.backup_dir();
  absl::StatusOr<FileInfo> info = c_.fs->Stat(dir);
  if (!info.ok() || !info->is_dir) {
    return Fail(
        "pre-flight", "PREFLIGHT-FAIL",
        absl::FailedPreconditionError(absl::StrCat(
            "backup_dir ", dir, " is not a folder",
            info.ok() ? ""
                      : absl::StrCat(" (", info.status().message(), ")"))));
  }
  if (spec_.require_mount()) {
    absl::StatusOr<MountInfo> mount = c_.fs->Mount(dir);
    if (!mount.ok())
      return Fail("pre-flight", "PREFLIGHT-FAIL", mount.status());
    if (!mount->is_mount_point || mount->mount_point == "/") {
      return Fail("pre-flight", "PREFLIGHT-FAIL",
                  absl::FailedPreconditionError(absl::StrCat(
                      "require_mount: backup_dir ", dir,
                      " is not a mount point (it is on ", mount->mount_point,
                      ", ", mount->fs_type, "); is the share mounted?")));
    }
  }
  absl::StatusOr<SpaceInfo> space = c_.fs->Space(dir);
  if (!space.ok()) return Fail("pre-flight", "PREFLIGHT-FAIL", space.status());
  if (space->free_bytes < spec_.min_free_space() ||
      space->free_bytes - spec_.min_free_space() < estimate_) {
    return Fail("pre-flight", "PREFLIGHT-FAIL",
                absl::ResourceExhaustedError(absl::StrCat(
                    "backup_dir ", dir, " has ", FormatBytes(space->free_bytes),
                    " free; the export needs up to ", FormatBytes(estimate_),
                    spec_.min_free_space() > 0
                        ? absl::StrCat(" and min_free_space keeps ",
                                       FormatBytes(spec_.min_free_space()))
                        : "")));
  }
  // Thick (LVM) SRs allocate a snapshot's full size at once.
  std::map<std::string, std::pair<SrRecord, uint64_t>> need;
  for (const Disk* d : exported_) {
    if (!IsThickSr(d->sr)) continue;
    auto& entry = need[d->sr.uuid];
    entry.first = d->sr;
    entry.second += VirtualSize(*d);
  }
  for (const auto& [uuid, entry] : need) {
    const SrRecord& sr = entry.first;
    const int64_t free = sr.physical_size - sr.physical_utilisation;
    if (free < 0 || static_cast<uint64_t>(free) < entry.second) {
      return Fail(
          "pre-flight", "PREFLIGHT-FAIL",
          absl::ResourceExhaustedError(absl::StrCat(
              "SR \"", sr.name_label, "\" (", sr.type, ", thick) has ",
              FormatBytes(static_cast<uint64_t>(std::max<int64_t>(0, free))),
              " free; the snapshot needs ", FormatBytes(entry.second))));
    }
  }
  return std::nullopt;
}

std::optional<Failure> Job::PrepareFolder() {
  const std::string vm_dir = VmDir();
  // A new VM folder is made durable before anything goes into it.
  absl::Status s = CreateDirDurably(*c_.fs, vm_dir);
  if (!s.ok() && !absl::IsAlreadyExists(s)) {
    return Fail("backup folder", "BACKUP-DIR-FAIL", s);
  }
  absl::StatusOr<FileInfo> info = c_.fs->Stat(vm_dir);
  if (!info.ok() || !info->is_dir || info->is_symlink) {
    return Fail("backup folder", "BACKUP-DIR-FAIL",
                absl::FailedPreconditionError(
                    absl::StrCat(vm_dir, " is not a folder")));
  }
  absl::StatusOr<std::vector<BackupEntry>> backups =
      ListBackups(*c_.fs, vm_dir);
  if (!backups.ok())
    return Fail("backup folder", "BACKUP-DIR-FAIL", backups.status());
  std::set<std::string> removed;
  // Folders without a marker are what failed or interrupted runs left, or,
  // in a distributed run, what a newer attempt of this VM's job is writing.
  for (const std::string& name : UncommittedBackups(*backups)) {
    const std::string path = JoinPath(vm_dir, name);
    if (spec_.fencing_token() != 0) {
      absl::StatusOr<v1::AttemptFile> owner = ReadAttemptFile(*c_.fs, path);
      if (owner.ok() && owner->fencing_token() > spec_.fencing_token()) {
        VMB_LOG(INFO) << "job " << spec_.job_id() << ": leaving unfinished "
                      << EscapeForLog(path) << ": it is job "
                      << EscapeForLog(owner->job_id()) << "'s, fencing token "
                      << owner->fencing_token() << " (newer than ours, "
                      << spec_.fencing_token() << ")";
        continue;
      }
      if (absl::IsInvalidArgument(owner.status())) {
        // Its owner cannot be proved: an attempt may be writing it now.
        VMB_LOG(WARNING) << "job " << spec_.job_id() << ": leaving unfinished "
                         << EscapeForLog(path) << ": " << owner.status();
        continue;
      }
      if (!owner.ok() && !absl::IsNotFound(owner.status())) {
        return Fail("backup folder", "BACKUP-DIR-FAIL", owner.status());
      }
    }
    VMB_LOG(INFO) << "job " << spec_.job_id() << ": removing unfinished backup "
                  << EscapeForLog(path);
    s = RemoveBackup(*c_.fs, vm_dir, name);
    if (!s.ok()) return Fail("backup folder", "BACKUP-DIR-FAIL", s);
    removed.insert(name);
  }
  if (spec_.pre_clean()) {
    for (const std::string& name :
         PlanPreClean(*backups, static_cast<int>(spec_.max_backups()))) {
      VMB_LOG(INFO) << "job " << spec_.job_id() << ": pre_clean removes "
                    << EscapeForLog(JoinPath(vm_dir, name));
      s = RemoveBackup(*c_.fs, vm_dir, name);
      if (!s.ok()) return Fail("backup folder", "BACKUP-DIR-FAIL", s);
      removed.insert(name);
    }
  }
  // The folder is named after the local start time, but always sorts after
  // the VM's other backups (a clock set back, two backups in one second), so
  // that "newest" means the same by name and by time.
  absl::CivilSecond t = absl::ToCivilSecond(c_.clock->Now(), c_.time_zone);
  for (const BackupEntry& b : *backups) {  // oldest first
    if (removed.count(b.name) == 0 && b.time >= t) t = b.time + 1;
  }
  const std::string format = spec_.backup_dir_format().empty()
                                 ? std::string(kBackupDirFormatSeed)
                                 : spec_.backup_dir_format();
  for (int attempt = 0; attempt < 120; ++attempt, t += 1) {
    folder_ = FormatBackupFolderName(format, t);
    s = c_.fs->CreateDir(BackupPath());
    if (s.ok()) {
      folder_created_ = true;
      status_.set_backup_folder(BackupPath());
      // First, and durable before anything else goes in: whose folder this
      // is, so that no older attempt removes it and we remove only ours.
      s = WriteAttemptFile(*c_.fs, BackupPath(), OwnAttempt());
      if (!s.ok()) return Fail("backup folder", "BACKUP-DIR-FAIL", s);
      attempt_written_ = true;
      return std::nullopt;
    }
    if (!absl::IsAlreadyExists(s))
      return Fail("backup folder", "BACKUP-DIR-FAIL", s);
  }
  return Fail("backup folder", "BACKUP-DIR-FAIL",
              absl::AlreadyExistsError(
                  absl::StrCat("no free backup folder name in ", vm_dir)));
}

std::optional<Failure> Job::TakeSnapshot() {
  const std::string name = SnapshotName(spec_.share_id(), spec_.run_id());
  // Our tags in the other_config of a snapshot VM or VDI, so that the
  // janitor can prove it is ours.
  const auto tag = [&](absl::string_view cls, const std::string& ref) {
    for (const auto& [key, value] : {std::pair{kTagRun, spec_.run_id()},
                                     std::pair{kTagJob, spec_.job_id()},
                                     std::pair{kTagVm, spec_.vm_uuid()},
                                     std::pair{kTagShare, spec_.share_id()}}) {
      VMB_RETURN_IF_ERROR(
          c_.xapi->AddToOtherConfig(cls, ref, std::string(key), value));
    }
    return absl::OkStatus();
  };
  if (!vdi_export_) {
    absl::StatusOr<std::string> snap = c_.xapi->SnapshotVm(vm_ref_, name, {});
    if (!snap.ok()) return Fail("snapshot", "SNAPSHOT-FAIL", snap.status());
    snapshot_ref_ = *snap;
    if (absl::Status s = tag("VM", snapshot_ref_); !s.ok()) {
      return Fail("tag snapshot", "TEMPLATE-PARAM-SET-FAIL", s);
    }
    absl::StatusOr<VmRecord> record = c_.xapi->GetVm(snapshot_ref_);
    if (!record.ok()) return Fail("snapshot", "SNAPSHOT-FAIL", record.status());
    status_.set_snapshot_uuid(record->uuid);
    // The snapshot's disks: what the export must carry, and what is ours to
    // destroy. A VDI that is not a snapshot (a disk the snapshot shares) is
    // neither.
    std::set<std::string> copied;  // live VDIs the snapshot has a copy of
    for (const std::string& vbd_ref : record->vbds) {
      absl::StatusOr<VbdRecord> vbd = c_.xapi->GetVbd(vbd_ref);
      if (!vbd.ok()) return Fail("snapshot", "SNAPSHOT-FAIL", vbd.status());
      if (vbd->vdi == kNullRef || vbd->vdi.empty() ||
          absl::AsciiStrToLower(vbd->type) != "disk") {
        continue;
      }
      absl::StatusOr<VdiRecord> vdi = c_.xapi->GetVdi(vbd->vdi);
      if (!vdi.ok()) return Fail("snapshot", "SNAPSHOT-FAIL", vdi.status());
      if (!vdi->is_a_snapshot) continue;
      snapshot_vdis_.push_back(vbd->vdi);
      copied.insert(vdi->snapshot_of);
      expected_.push_back(
          {vdi->uuid,
           static_cast<uint64_t>(std::max<int64_t>(0, vdi->virtual_size)),
           vbd->device.empty() ? vbd->userdevice : vbd->device});
    }
    for (const Disk* d : exported_) {
      if (copied.count(d->vdi_ref) == 0) {
        return Fail(
            "snapshot", "SNAPSHOT-FAIL",
            absl::DataLossError(absl::StrCat(
                "the snapshot has no copy of disk ",
                d->vbd.device.empty() ? d->vbd.userdevice : d->vbd.device,
                " (VDI ", d->vdi.uuid, ")")));
      }
    }
    // The disks too: if the VM record goes and a disk stays (VDI_IN_USE),
    // the janitor must still know it is ours.
    for (const std::string& vdi : snapshot_vdis_) {
      if (absl::Status s = tag("VDI", vdi); !s.ok()) {
        return Fail("tag snapshot", "TEMPLATE-PARAM-SET-FAIL", s);
      }
    }
    // As the seed's template-param-set: export the snapshot as a VM.
    absl::Status s = c_.xapi->SetVmIsATemplate(snapshot_ref_, false);
    if (!s.ok() && !IsXenApiError(s, "LICENCE_RESTRICTION") &&
        !IsXenApiError(s, "LICENSE_RESTRICTION")) {
      return Fail("snapshot", "TEMPLATE-PARAM-SET-FAIL", s);
    }
    return std::nullopt;
  }
  for (Disk* d : exported_) {
    absl::StatusOr<std::string> snap = c_.xapi->SnapshotVdi(d->vdi_ref);
    if (!snap.ok()) return Fail("snapshot", "VDI-SNAPSHOT-FAIL", snap.status());
    snapshot_vdis_.push_back(*snap);
    if (absl::Status s = tag("VDI", *snap); !s.ok()) {
      return Fail("tag snapshot", "VDI-PARAM-SET-FAIL", s);
    }
    absl::StatusOr<XmlRpcValue> renamed =
        c_.xapi->Call("VDI.set_name_label",
                      {XmlRpcValue::String(*snap), XmlRpcValue::String(name)},
                      CallKind::kIdempotent);
    if (!renamed.ok())
      return Fail("tag snapshot", "VDI-PARAM-SET-FAIL", renamed.status());
    // JobStatus has one snapshot_uuid: the first disk's snapshot.
    if (status_.snapshot_uuid().empty()) {
      absl::StatusOr<VdiRecord> record = c_.xapi->GetVdi(*snap);
      if (!record.ok())
        return Fail("snapshot", "VDI-SNAPSHOT-FAIL", record.status());
      status_.set_snapshot_uuid(record->uuid);
    }
  }
  return std::nullopt;
}

absl::Status Job::StreamToFile(
    const std::string& path, std::vector<std::pair<std::string, std::string>> q,
    const std::string& file_name, std::unique_ptr<ExportVerifier> verifier,
    bool compressed) {
  VMB_RETURN_IF_ERROR(CheckStop());
  VMB_ASSIGN_OR_RETURN(std::string session, c_.xapi->SessionRef());
  VMB_ASSIGN_OR_RETURN(
      task_ref_, c_.xapi->CreateTask(absl::StrCat("vmbackup ", kind_name_),
                                     absl::StrCat("job ", spec_.job_id())));
  task_finished_ = false;

  const std::string file_path = JoinPath(BackupPath(), file_name);
  VMB_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                       c_.fs->NewWritableFile(file_path));
  file->SetWriteBehind(32 << 20);
  data_files_.push_back(file_name);

  XapiStreamRequest req;
  req.base_url = c_.data_url;
  req.path = path;
  req.query = std::move(q);
  req.session_id = session;
  req.task_id = task_ref_;
  req.allowed_redirect_hosts = c_.redirect_hosts;
  req.timeouts.connect = c_.connect_timeout;
  req.timeouts.first_byte =
      compressed ? c_.first_byte_timeout_compressed : c_.first_byte_timeout;
  if (spec_.stall_timeout_ms() > 0) {
    req.timeouts.inactivity = absl::Milliseconds(spec_.stall_timeout_ms());
  }
  req.timeouts.total = deadline_ - c_.clock->Now();
  req.bandwidth_limit = spec_.bandwidth_limit_bytes_per_sec();
  req.cancel = hooks_.cancel;
  req.tls = c_.tls;

  // Hashes and writes on a thread of its own, overlapping the transfer.
  auto writer = std::make_unique<HashingWriter>(file.get());
  absl::Status write_error;  // ours, not the pool's: the task cannot know
  uint64_t written = 0;
  const uint64_t done_before = status_.bytes_done();
  const uint64_t written_before = status_.bytes_written();
  absl::StatusOr<XapiStreamResult> result =
      XapiStreamGet(req, [&](absl::string_view data) -> absl::Status {
        VMB_RETURN_IF_ERROR(verifier->Update(data));
        if (absl::Status s = writer->Append(data); !s.ok()) {
          write_error = s;
          return s;
        }
        written += data.size();
        const absl::Time now = c_.clock->Now();
        if (now - last_report_ >= absl::Seconds(1)) {
          last_report_ = now;
          status_.set_bytes_done(done_before + verifier->covered());
          status_.set_bytes_written(written_before + written);
          Report();
        }
        return absl::OkStatus();
      });
  absl::Status stream_status = result.status();
  if (IsEmbeddedErrorResponse(stream_status)) {
    // The whole body has the shape of XAPI's error response. The task says
    // whether it was one, or a disk whose bytes merely look like one (the
    // verifier and the file have had them).
    absl::StatusOr<TaskRecord> task = WaitForTask(task_ref_, c_.task_wait);
    if (task.ok() && task->status == TaskStatus::kSuccess) {
      stream_status = absl::OkStatus();
    }
  }
  // (curl's total limit ends the transfer at the deadline to the ms.)
  if (absl::IsDeadlineExceeded(stream_status) &&
      c_.clock->Now() + absl::Milliseconds(10) >= deadline_) {
    // The transfer's total limit is what is left of vm_timeout: say so.
    stream_status = absl::DeadlineExceededError(absl::StrCat(
        "vm_timeout (", absl::FormatDuration(vm_timeout_),
        ") expired during the export (", stream_status.message(), ")"));
  }
  if (stream_status.ok()) stream_status = verifier->Finish();
  absl::StatusOr<std::string> sha256;
  if (stream_status.ok()) {
    sha256 = writer->Finish();  // the last block written, or a write error
    if (!sha256.ok()) write_error = sha256.status();
  }
  writer.reset();  // the file is ours again
  if (!write_error.ok()) return write_error;
  if (!stream_status.ok()) {
    // When we stopped the stream (a cancel, one of our timeouts), that is the
    // cause; the task then fails only because we hung up.
    if (absl::IsCancelled(stream_status) ||
        absl::IsDeadlineExceeded(stream_status)) {
      return stream_status;
    }
    // Otherwise the task often knows better why it broke (VDI_IO_ERROR).
    absl::StatusOr<TaskRecord> task = WaitForTask(task_ref_, absl::Seconds(3));
    if (task.ok()) {
      task_finished_ = true;
      if (task->status == TaskStatus::kFailure && !task->error_info.empty() &&
          !GetXenApiError(stream_status).has_value()) {
        absl::Status xapi = XenApiFailureToStatus(task->error_info);
        return Annotate(xapi, stream_status.message(),
                        "; the export task failed");
      }
    }
    return stream_status;
  }
  // All three: the body ended, it verified, and the task succeeded.
  absl::StatusOr<TaskRecord> task = WaitForTask(task_ref_, c_.task_wait);
  if (!task.ok()) return task.status();
  task_finished_ = true;
  if (task->status != TaskStatus::kSuccess) {
    absl::Status xapi = task->error_info.empty()
                            ? absl::AbortedError("no error given")
                            : XenApiFailureToStatus(task->error_info);
    return Annotate(xapi, "the export task ended ",
                    TaskStatusName(task->status),
                    " after a complete, verified body");
  }
  // fsync in the background while metadata and cleanup go on; Commit()
  // waits for it (and fails the job if it failed) before the marker.
  std::shared_ptr<WritableFile> shared(std::move(file));
  syncing_.push_back(std::async(std::launch::async, [shared]() {
    absl::Status s = shared->Sync();
    absl::Status c = shared->Close();
    return s.ok() ? c : s;
  }));
  status_.set_bytes_done(done_before + verifier->covered());
  status_.set_bytes_written(written_before + written);
  status_.set_backup_bytes(status_.backup_bytes() + written);
  v1::ManifestFile* mf = manifest_.add_files();
  mf->set_name(file_name);
  mf->set_size(written);
  mf->set_sha256(*sha256);
  VMB_LOG(INFO) << "job " << spec_.job_id() << " VM " << spec_.vm_uuid()
                << ": exported " << written << " bytes into "
                << EscapeForLog(file_path);
  return absl::OkStatus();
}

std::optional<Failure> Job::Export() {
  const std::string token = vdi_export_ ? "VDI-EXPORT-FAIL" : "VM-EXPORT-FAIL";
  if (!vdi_export_) {
    const v1::Compression compression = spec_.compression();
    std::vector<std::pair<std::string, std::string>> q = {
        {"ref", snapshot_ref_}};
    if (compression != v1::COMPRESSION_NONE) {
      q.emplace_back("use_compression",
                     std::string(UseCompressionParam(compression)));
    }
    absl::Status s =
        StreamToFile("/export", std::move(q),
                     absl::StrCat(FileBase(), XvaExtension(compression)),
                     NewXvaVerifier(compression, expected_),
                     compression != v1::COMPRESSION_NONE);
    if (!s.ok()) return Fail("export", token, s);
    return std::nullopt;
  }
  const bool vhd = spec_.vdi_format() == v1::VDI_FORMAT_VHD;
  const std::string fmt(VdiFormatName(spec_.vdi_format()));
  for (size_t i = 0; i < exported_.size(); ++i) {
    const Disk& d = *exported_[i];
    const uint64_t size = VirtualSize(d);
    std::string name = FileBase();
    if (spec_.vdi_export_all_disks()) {
      absl::StrAppend(&name, "-",
                      SanitizeVmName(d.vbd.device.empty() ? d.vbd.userdevice
                                                          : d.vbd.device));
    }
    absl::StrAppend(&name, ".", fmt);
    absl::Status s = StreamToFile(
        "/export_raw_vdi", {{"vdi", snapshot_vdis_[i]}, {"format", fmt}}, name,
        vhd ? NewVhdVerifier(size) : NewRawVerifier(size), false);
    if (!s.ok())
      return Fail("export", token, Annotate(s, "disk ", d.vbd.device));
    FinishTask();
  }
  return std::nullopt;
}

absl::Status Job::WriteMetadata() {
  const std::string dir = BackupPath();
  // vm-metadata.xml: the live VM's metadata, as the seed took it.
  {
    VMB_ASSIGN_OR_RETURN(std::string session, c_.xapi->SessionRef());
    VMB_ASSIGN_OR_RETURN(
        std::string task,
        c_.xapi->CreateTask("vmbackup export_metadata",
                            absl::StrCat("job ", spec_.job_id())));
    XapiStreamRequest req;
    req.base_url = c_.data_url;
    req.path = "/export_metadata";
    req.query = {{"uuid", vm_.uuid}};
    req.session_id = session;
    req.task_id = task;
    req.allowed_redirect_hosts = c_.redirect_hosts;
    req.timeouts.connect = c_.connect_timeout;
    req.timeouts.first_byte = c_.first_byte_timeout;
    req.timeouts.inactivity = c_.first_byte_timeout;
    req.cancel = hooks_.cancel;
    req.tls = c_.tls;
    std::string tar;
    absl::StatusOr<XapiStreamResult> r =
        XapiStreamGet(req, [&](absl::string_view data) -> absl::Status {
          if (tar.size() + data.size() > (64u << 20)) {
            return absl::DataLossError("the metadata export is over 64 MiB");
          }
          tar.append(data.data(), data.size());
          return absl::OkStatus();
        });
    const absl::Status destroyed = c_.xapi->DestroyTask(task);
    if (!destroyed.ok()) {
      VMB_LOG(WARNING) << "cannot destroy task: " << destroyed;  // best effort
    }
    VMB_RETURN_IF_ERROR(Annotate(r.status(), "metadata export"));
    VMB_ASSIGN_OR_RETURN(absl::string_view ova, ExtractOvaXml(tar));
    VMB_ASSIGN_OR_RETURN(std::string pretty, PrettyPrintXml(ova));
    VMB_RETURN_IF_ERROR(
        WriteNewFile(*c_.fs, JoinPath(dir, "vm-metadata.xml"), pretty));
  }
  // DISK-<dev>/vbd.cfg and vdi.cfg for every disk, as the seed wrote them.
  int blank = 0;
  std::set<std::string> made;
  for (const Disk& d : disks_) {
    std::string sub = DiskFolderName(d.vbd, &blank);
    if (!made.insert(sub).second)
      sub = absl::StrCat(sub, "-", SanitizeVmName(d.vbd.userdevice));
    if (d.vbd.device.empty()) {
      Warn(absl::StrCat("disk ", d.vbd.userdevice,
                        " has no device name (XAPI sets it when the VM "
                        "starts); its metadata is in ",
                        sub));
    }
    const std::string disk_dir = JoinPath(dir, sub);
    VMB_RETURN_IF_ERROR(c_.fs->CreateDir(disk_dir));
    VMB_RETURN_IF_ERROR(WriteNewFile(*c_.fs, JoinPath(disk_dir, "vbd.cfg"),
                                     FormatVbdCfg(d.vbd)));
    VMB_RETURN_IF_ERROR(WriteNewFile(*c_.fs, JoinPath(disk_dir, "vdi.cfg"),
                                     FormatVdiCfg(d.vdi, d.sr.uuid)));
    VMB_RETURN_IF_ERROR(c_.fs->SyncDir(disk_dir));
  }
  // VIFs/vif-<device>.cfg, the folder only when the VM has VIFs.
  if (!vm_.vifs.empty()) {
    const std::string vif_dir = JoinPath(dir, "VIFs");
    VMB_RETURN_IF_ERROR(c_.fs->CreateDir(vif_dir));
    std::set<std::string> names;
    for (const std::string& vif_ref : vm_.vifs) {
      absl::StatusOr<XmlRpcValue> raw =
          c_.xapi->Call("VIF.get_record", {XmlRpcValue::String(vif_ref)},
                        CallKind::kIdempotent);
      if (!raw.ok()) return raw.status();
      VMB_ASSIGN_OR_RETURN(VifRecord vif, ParseVifRecord(*raw, vif_ref));
      std::string network_name;
      absl::StatusOr<XmlRpcValue> net = c_.xapi->Call(
          "network.get_name_label", {XmlRpcValue::String(vif.network)},
          CallKind::kIdempotent);
      if (net.ok()) {
        VMB_ASSIGN_OR_RETURN(network_name, ValueAsString(*net, "network name"));
      } else {
        return net.status();
      }
      std::string name =
          absl::StrCat("vif-", SanitizeVmName(vif.device), ".cfg");
      if (!names.insert(name).second)
        name = absl::StrCat("vif-", SanitizeVmName(vif.uuid), ".cfg");
      VMB_RETURN_IF_ERROR(WriteNewFile(*c_.fs, JoinPath(vif_dir, name),
                                       FormatVifCfg(vif, network_name)));
    }
    VMB_RETURN_IF_ERROR(c_.fs->SyncDir(vif_dir));
  }
  // manifest.json.
  manifest_.set_format(std::string(kManifestFormat));
  manifest_.set_vmbackup_version(c_.version);
  manifest_.set_run_id(spec_.run_id());
  manifest_.set_job_id(spec_.job_id());
  manifest_.set_vm_uuid(vm_.uuid);
  manifest_.set_vm_name(vm_.name_label);
  manifest_.set_kind(kind_name_);
  manifest_.set_source_host(c_.host.name_label);
  manifest_.set_source_host_uuid(c_.host.uuid);
  manifest_.set_xapi_version(
      absl::StrCat(c_.host.api_version_major, ".", c_.host.api_version_minor));
  manifest_.set_started(
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", started_, absl::UTCTimeZone()));
  manifest_.set_finished(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", c_.clock->Now(),
                                          absl::UTCTimeZone()));
  manifest_.set_compression(std::string(CompressionName(
      vdi_export_ ? v1::COMPRESSION_NONE : spec_.compression())));
  if (vdi_export_) {
    manifest_.set_vdi_format(std::string(VdiFormatName(spec_.vdi_format())));
  }
  manifest_.set_snapshot_uuid(status_.snapshot_uuid());
  for (size_t i = 0; i < exported_.size(); ++i) {
    const Disk& d = *exported_[i];
    v1::ManifestDisk* md = manifest_.add_disks();
    md->set_device(d.vbd.device);
    md->set_userdevice(d.vbd.userdevice);
    md->set_vdi_uuid(d.vdi.uuid);
    md->set_name_label(d.vdi.name_label);
    md->set_virtual_size(VirtualSize(d));
    if (vdi_export_ && i < data_files_.size()) md->set_file(data_files_[i]);
  }
  VMB_RETURN_IF_ERROR(
      WriteNewFile(*c_.fs, JoinPath(dir, std::string(kManifestFileName)),
                   FormatManifest(manifest_)));
  return c_.fs->SyncDir(dir);
}

absl::Status Job::RetryInUse(const std::function<absl::Status()>& destroy,
                             const std::string& what) {
  absl::Status s = DestroyRetryingWhileInUse(destroy, destroy_retry_,
                                             c_.destroy_backoff, *c_.clock);
  if (!s.ok()) return Annotate(s, "cannot destroy ", what);
  return s;
}

void Job::FinishTask() {
  if (task_ref_.empty()) return;
  if (!task_finished_) {
    // Cancel first: XAPI's VM.destroy waits for a running export.
    absl::Status s = c_.xapi->CancelTask(task_ref_);
    if (!s.ok() && !IsXenApiError(s, "HANDLE_INVALID")) {
      VMB_LOG(WARNING) << "job " << spec_.job_id()
                       << ": cannot cancel the export task: " << s;
    }
    absl::StatusOr<TaskRecord> t = WaitForTask(task_ref_, absl::Seconds(30));
    if (!t.ok()) {
      VMB_LOG(WARNING) << "job " << spec_.job_id() << ": " << t.status();
    }
  }
  absl::Status s = c_.xapi->DestroyTask(task_ref_);
  if (!s.ok() && !IsXenApiError(s, "HANDLE_INVALID")) {
    VMB_LOG(WARNING) << "job " << spec_.job_id()
                     << ": cannot destroy the export task: " << s;
  }
  task_ref_.clear();
  task_finished_ = false;
}

absl::StatusOr<std::string> Job::SnapshotUuid(const std::string& ref) {
  if (ref == snapshot_ref_) {
    VMB_ASSIGN_OR_RETURN(VmRecord vm, c_.xapi->GetVm(ref));
    return vm.uuid;
  }
  VMB_ASSIGN_OR_RETURN(VdiRecord vdi, c_.xapi->GetVdi(ref));
  return vdi.uuid;
}

void Job::CleanUpSnapshot() {
  FinishTask();
  std::vector<std::string> problems;
  std::string left;  // a ref of what is left, to name it by uuid
  if (!snapshot_ref_.empty()) {
    absl::Status s =
        RetryInUse([&] { return c_.xapi->DestroyVm(snapshot_ref_); },
                   "the snapshot VM record");
    if (!s.ok()) {
      problems.push_back(std::string(s.message()));
      left = snapshot_ref_;
    }
  }
  for (const std::string& vdi : snapshot_vdis_) {
    absl::Status s =
        RetryInUse([&] { return c_.xapi->DestroyVdi(vdi); }, "a snapshot disk");
    if (!s.ok()) {
      problems.push_back(std::string(s.message()));
      if (left.empty()) left = vdi;
    }
  }
  if (!problems.empty()) {
    status_.set_snapshot_left(true);
    if (status_.snapshot_uuid().empty()) {
      // A step between the snapshot and reading its uuid failed; the
      // janitor goes by tags, the coordinator's report by this uuid.
      absl::StatusOr<std::string> uuid = SnapshotUuid(left);
      if (uuid.ok()) {
        status_.set_snapshot_uuid(*uuid);
      } else {
        VMB_LOG(WARNING) << "job " << spec_.job_id()
                         << ": cannot read the uuid of the snapshot left: "
                         << uuid.status();  // best effort
      }
    }
    Warn(
        absl::StrCat("the snapshot is left in the pool (the next run's "
                     "janitor removes it): ",
                     absl::StrJoin(problems, "; ")));
  }
  snapshot_ref_.clear();
  snapshot_vdis_.clear();
}

v1::AttemptFile Job::OwnAttempt() const {
  v1::AttemptFile attempt;
  attempt.set_job_id(spec_.job_id());
  attempt.set_attempt(spec_.attempt());
  attempt.set_fencing_token(spec_.fencing_token());
  attempt.set_run_id(spec_.run_id());
  attempt.set_agent_id(c_.agent_id);
  attempt.set_host_uuid(c_.host.uuid);
  return attempt;
}

void Job::RemoveNewFolder() {
  if (!folder_created_) return;
  folder_created_ = false;
  const std::string path = BackupPath();
  // Only a folder that provably is ours goes: a newer attempt may have
  // removed ours and made its own under the same name.
  absl::StatusOr<v1::AttemptFile> owner = ReadAttemptFile(*c_.fs, path);
  if (owner.ok() && !IsOwn(*owner)) {
    VMB_LOG(WARNING) << "job " << spec_.job_id() << ": leaving "
                     << EscapeForLog(path) << ": it is job "
                     << EscapeForLog(owner->job_id()) << "'s, fencing token "
                     << owner->fencing_token() << ", no longer ours";
    return;
  }
  if (!owner.ok()) {
    if (absl::IsNotFound(owner.status()) &&
        absl::IsNotFound(c_.fs->Stat(path).status())) {
      VMB_LOG(WARNING) << "job " << spec_.job_id() << ": " << EscapeForLog(path)
                       << " is gone already (a newer attempt removes an "
                          "older one's folder)";
      return;
    }
    // Before our attempt file was durable, the folder we made a moment ago
    // holds none, or a torn one, and is ours; after, it must name us.
    const bool torn = absl::IsNotFound(owner.status()) ||
                      absl::IsInvalidArgument(owner.status());
    if (attempt_written_ || !torn) {
      VMB_LOG(WARNING) << "job " << spec_.job_id() << ": leaving "
                       << EscapeForLog(path)
                       << ": it cannot be proved ours: " << owner.status();
      return;
    }
  }
  // Markers first (a failed commit may have written one): a crash while the
  // folder goes can never leave it looking committed with half its files.
  absl::Status s = RemoveBackup(*c_.fs, VmDir(), folder_);
  if (!s.ok()) {
    // The next backup of this VM removes a folder without a marker.
    VMB_LOG(WARNING) << "job " << spec_.job_id() << ": cannot remove "
                     << EscapeForLog(path) << ": " << s;
  }
}

absl::Status Job::WaitForDataSync() {
  absl::Status status;
  for (std::future<absl::Status>& f : syncing_) {
    absl::Status s = f.get();
    if (status.ok() && !s.ok()) status = s;
  }
  syncing_.clear();
  return status;
}

absl::Status Job::Commit() {
  VMB_RETURN_IF_ERROR(WaitForDataSync());
  VMB_RETURN_IF_ERROR(CheckStop());
  const std::string dir = BackupPath();
  // The grant says the coordinator still wants this attempt; the attempt
  // file says the folder is still this attempt's.
  VMB_ASSIGN_OR_RETURN(v1::AttemptFile owner, ReadAttemptFile(*c_.fs, dir));
  if (!IsOwn(owner)) {
    return absl::AbortedError(absl::StrCat(
        "the backup folder is now job ", EscapeForLog(owner.job_id()),
        "'s, fencing token ", owner.fencing_token()));
  }
  VMB_RETURN_IF_ERROR(c_.fs->SyncDir(dir));
  VMB_RETURN_IF_ERROR(
      WriteNewFile(*c_.fs, JoinPath(dir, std::string(kSuccessMarker)), ""));
  VMB_RETURN_IF_ERROR(c_.fs->SyncDir(dir));
  return c_.fs->SyncDir(VmDir());
}

void Job::ApplyRetention() {
  absl::StatusOr<std::vector<BackupEntry>> backups =
      ListBackups(*c_.fs, VmDir());
  if (!backups.ok()) {
    Warn(absl::StrCat("retention skipped: ", backups.status().message()));
    return;
  }
  for (const std::string& name : PlanRetention(
           *backups, static_cast<int>(spec_.max_backups()), folder_)) {
    VMB_LOG(INFO) << "job " << spec_.job_id() << ": deleting oldest backup "
                  << EscapeForLog(JoinPath(VmDir(), name));
    absl::Status s = RemoveBackup(*c_.fs, VmDir(), name);
    if (!s.ok()) {
      Warn(absl::StrCat("retention: ", s.message()));
      return;
    }
  }
}

v1::JobStatus Job::Run() {
  started_ = c_.clock->Now();
  status_.set_started_unix_ms(ToUnixMs(started_));
  if (spec_.vm_timeout_ms() > 0) {
    vm_timeout_ = absl::Milliseconds(spec_.vm_timeout_ms());
    deadline_ = started_ + vm_timeout_;
  }
  VMB_LOG(INFO) << "job " << spec_.job_id() << " VM " << spec_.vm_uuid() << ": "
                << kind_name_ << " begins";
  SetPhase(v1::JOB_PHASE_PREFLIGHT);

  std::optional<Failure> failure = CheckSpec();
  if (!failure) failure = LoadVm();
  if (!failure) failure = Preflight();
  if (!failure) {
    if (absl::Status s = CheckStop(); !s.ok())
      failure = Fail("pre-flight", "CANCELLED", s);
  }
  if (!failure) failure = PrepareFolder();
  if (!failure) {
    SetPhase(v1::JOB_PHASE_SNAPSHOT);
    failure = TakeSnapshot();
  }
  if (!failure) {
    SetPhase(v1::JOB_PHASE_EXPORT);
    failure = Export();
  }
  if (!failure) {
    FinishTask();
    SetPhase(v1::JOB_PHASE_METADATA);
    absl::Status s = WriteMetadata();
    if (!s.ok()) failure = Fail("metadata", "METADATA-FAIL", s);
  }
  if (!failure) {
    SetPhase(v1::JOB_PHASE_CLEANUP);
    CleanUpSnapshot();
    if (hooks_.commit_gate) {
      SetPhase(v1::JOB_PHASE_AWAITING_COMMIT);
      absl::Status s = hooks_.commit_gate(status_);
      // ABORTED: the coordinator fenced this attempt off (a newer one runs).
      if (!s.ok()) {
        failure = Fail("commit", absl::IsAborted(s) ? "FENCED" : "COMMIT-FAIL",
                       Annotate(s, "commit refused"));
      }
    }
  }
  if (!failure) {
    SetPhase(v1::JOB_PHASE_COMMIT);
    absl::Status s = Commit();
    if (!s.ok()) {
      failure =
          Fail("commit", absl::IsAborted(s) ? "FENCED" : "COMMIT-FAIL", s);
    }
  }
  if (!failure) {
    folder_created_ = false;  // committed: never removed by this job again
    ApplyRetention();
    status_.set_finished_unix_ms(ToUnixMs(c_.clock->Now()));
    status_.set_phase(v1::JOB_PHASE_SUCCEEDED);
    VMB_LOG(INFO) << "job " << spec_.job_id() << " VM " << spec_.vm_uuid()
                  << ": committed " << EscapeForLog(BackupPath());
    Report();
    return status_;
  }

  // Every failure path: cancel the task, destroy our snapshot, drop the new
  // folder; the earlier backups are untouched.
  CleanUpSnapshot();
  (void)WaitForDataSync();  // the folder goes anyway
  RemoveNewFolder();
  const bool cancelled = absl::IsCancelled(failure->status) && Cancelled();
  status_.set_phase(cancelled ? v1::JOB_PHASE_CANCELLED : v1::JOB_PHASE_FAILED);
  status_.set_error_step(failure->step);
  status_.set_status_token(cancelled ? "CANCELLED" : failure->token);
  status_.set_error_message(std::string(failure->status.message()));
  if (std::optional<XenApiError> e = GetXenApiError(failure->status)) {
    status_.mutable_xenapi_error()->set_code(e->code);
    for (const std::string& p : e->params)
      status_.mutable_xenapi_error()->add_params(p);
  }
  status_.set_finished_unix_ms(ToUnixMs(c_.clock->Now()));
  VMB_LOG(WARNING) << "job " << spec_.job_id() << " VM " << spec_.vm_uuid()
                   << " failed at " << failure->step << ": "
                   << EscapeForLog(failure->status.message());
  Report();
  return status_;
}

}  // namespace

absl::Status CheckSpecId(absl::string_view field, absl::string_view id) {
  return CheckId(field, id);
}

absl::Status CheckJobSpec(const v1::JobSpec& spec) {
  VMB_RETURN_IF_ERROR(CheckId("run_id", spec.run_id()));
  if (!IsUuid(spec.vm_uuid())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vm_uuid \"", EscapeForLog(spec.vm_uuid()), "\" is not a UUID"));
  }
  // The standalone run's ids are "<run_id>/<vm_uuid>": two checked parts.
  if (spec.job_id() != absl::StrCat(spec.run_id(), "/", spec.vm_uuid())) {
    VMB_RETURN_IF_ERROR(CheckId("job_id", spec.job_id()));
  }
  if (spec.fencing_token() != 0 && spec.attempt() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attempt is 0 with fencing_token ", spec.fencing_token(),
                     " (attempts count from 1)"));
  }
  if (spec.kind() != v1::EXPORT_KIND_VM && spec.kind() != v1::EXPORT_KIND_VDI) {
    return absl::InvalidArgumentError(
        spec.kind() == v1::EXPORT_KIND_UNSPECIFIED
            ? std::string("kind is unspecified")
            : absl::StrCat("kind ", static_cast<int>(spec.kind()),
                           " is unknown"));
  }
  if (!v1::Compression_IsValid(spec.compression())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compression ", static_cast<int>(spec.compression()), " is unknown"));
  }
  if (!v1::VdiFormat_IsValid(spec.vdi_format())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vdi_format ", static_cast<int>(spec.vdi_format()), " is unknown"));
  }
  VMB_RETURN_IF_ERROR(CheckBackupDir(spec.backup_dir()));
  VMB_RETURN_IF_ERROR(CheckVmFolderName(spec.vm_folder()));
  if (!spec.backup_dir_format().empty() &&
      spec.backup_dir_format() != kBackupDirFormatSeed &&
      spec.backup_dir_format() != kBackupDirFormatNoColons) {
    return absl::InvalidArgumentError(
        absl::StrCat("backup_dir_format \"",
                     EscapeForLog(spec.backup_dir_format()), "\" is neither ",
                     kBackupDirFormatSeed, " nor ", kBackupDirFormatNoColons));
  }
  VMB_RETURN_IF_ERROR(CheckBaseUrl("master_url", spec.master_url()));
  VMB_RETURN_IF_ERROR(CheckBaseUrl("data_url", spec.data_url()));
  return absl::OkStatus();
}

v1::JobStatus RunVmBackupJob(const JobContext& context, const v1::JobSpec& spec,
                             const JobHooks& hooks) {
  Job job(context, spec, hooks);
  return job.Run();
}

}  // namespace vmb::agent
