// SPDX-License-Identifier: Apache-2.0
// The backup of one VM against xapi-sim, end to end: what lands on the share,
// what is left in the pool, and every failure path.
#include "agent/vm_backup_job.h"

#include <algorithm>
#include <atomic>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/backup/attempt_file.h"
#include "common/backup/backup_layout.h"
#include "common/backup/backup_manifest.h"
#include "common/backup/export_format.h"
#include "common/backup/snapshot_janitor.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/testing/backup_check.h"
#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;
using ::vmb::testing::SimProcess;

class VmBackupJobTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<SimProcess>> sim = SimProcess::Start();
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = sim->release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sim_, nullptr);
    ASSERT_OK(sim_->ClearFaults());
    client_ = sim_->NewClient();
    ASSERT_OK(client_->Login());
    share_ = testing::MakeTempDir("share");
    ASSERT_OK_AND_ASSIGN(hosts_, client_->GetAllHosts());
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    snapshots_before_ = state.snapshots();
    snapshot_vdis_before_ = state.snapshot_vdis();
  }

  JobContext ContextFor(const std::string& host_name) {
    JobContext c;
    c.xapi = client_.get();
    c.fs = &fs_;
    c.clock = SystemClock::Get();
    for (const auto& [ref, host] : hosts_) {
      if (host.name_label == host_name) c.host = host;
    }
    c.data_url = sim_->host_url(host_name);
    for (const auto& [ref, host] : hosts_)
      c.redirect_hosts.push_back(IdentityOfHost(host));
    c.destroy_backoff = absl::Milliseconds(20);
    c.destroy_retry = absl::Seconds(5);
    c.version = "test";
    return c;
  }

  v1::JobSpec Spec(const std::string& vm_name,
                   v1::ExportKind kind = v1::EXPORT_KIND_VM) {
    v1::JobSpec spec;
    absl::StatusOr<std::string> ref = testing::VmRefByName(*client_, vm_name);
    EXPECT_TRUE(ref.ok()) << ref.status();
    absl::StatusOr<VmRecord> vm = client_->GetVm(ref.value_or(""));
    EXPECT_TRUE(vm.ok());
    spec.set_job_id(absl::StrCat("run1-", vm.ok() ? vm->uuid : "none"));
    spec.set_run_id("run1");
    spec.set_vm_uuid(vm.ok() ? vm->uuid : "");
    spec.set_vm_name(vm_name);
    spec.set_kind(kind);
    spec.set_vdi_format(v1::VDI_FORMAT_RAW);
    spec.set_backup_dir(share_);
    spec.set_vm_folder(SanitizeVmName(vm_name));
    spec.set_max_backups(4);
    spec.set_stall_timeout_ms(30000);
    spec.set_share_id("share1");
    return spec;
  }

  // Expected SHA-256 of each disk of a VM, by its userdevice.
  std::map<std::string, std::string> ExpectedDisks(const std::string& vm_name) {
    std::map<std::string, std::string> out;
    absl::StatusOr<std::string> ref = testing::VmRefByName(*client_, vm_name);
    absl::StatusOr<VmRecord> vm = client_->GetVm(*ref);
    for (const std::string& vbd_ref : vm->vbds) {
      absl::StatusOr<VbdRecord> vbd = client_->GetVbd(vbd_ref);
      if (vbd->type != "Disk") continue;
      absl::StatusOr<VdiRecord> vdi = client_->GetVdi(vbd->vdi);
      absl::StatusOr<sim::VdiInfo> info = sim_->Vdi(vdi->uuid);
      EXPECT_TRUE(info.ok()) << info.status();
      out[vbd->userdevice] = info->sha256();
    }
    return out;
  }

  void ExpectNothingLeftInThePool() {
    ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
    EXPECT_EQ(state.snapshots(), snapshots_before_);
    EXPECT_EQ(state.snapshot_vdis(), snapshot_vdis_before_);
    EXPECT_EQ(state.pending_tasks(), 0u);
  }

  std::vector<BackupEntry> Backups(const v1::JobSpec& spec) {
    absl::StatusOr<std::vector<BackupEntry>> b =
        ListBackups(fs_, JoinPath(share_, spec.vm_folder()));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.value_or(std::vector<BackupEntry>{});
  }

  // A failed job: its step, token, no marker, no folder of its own, nothing
  // left in the pool, earlier backups untouched.
  void ExpectCleanFailure(const v1::JobStatus& st, const v1::JobSpec& spec,
                          const std::map<std::string, std::string>& before,
                          absl::string_view token) {
    EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED) << st.DebugString();
    EXPECT_EQ(st.status_token(), token);
    EXPECT_FALSE(st.error_message().empty());
    ExpectNothingLeftInThePool();
    absl::StatusOr<std::map<std::string, std::string>> after =
        testing::TreeDigest(share_);
    ASSERT_TRUE(after.ok()) << after.status();
    // The VM folder itself may have been created; nothing else changed.
    std::map<std::string, std::string> trimmed = *after;
    if (before.count(spec.vm_folder() + "/") == 0) {
      trimmed.erase(spec.vm_folder() + "/");
    }
    EXPECT_EQ(trimmed, before);
  }

  static SimProcess* sim_;
  PosixFilesystem fs_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  RecordMap<HostRecord> hosts_;
  std::string share_;
  uint32_t snapshots_before_ = 0;
  uint32_t snapshot_vdis_before_ = 0;
};

SimProcess* VmBackupJobTest::sim_ = nullptr;

TEST_F(VmBackupJobTest, VmExportCommitsAVerifiedBackupInTheSeedsLayout) {
  const v1::JobSpec spec = Spec("PROD-ubuntu14");
  std::vector<v1::JobPhase> phases;
  JobHooks hooks;
  hooks.progress = [&](const v1::JobStatus& s) {
    if (phases.empty() || phases.back() != s.phase())
      phases.push_back(s.phase());
  };
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host1"), spec, hooks);
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_THAT(phases,
              ElementsAre(v1::JOB_PHASE_PREFLIGHT, v1::JOB_PHASE_SNAPSHOT,
                          v1::JOB_PHASE_EXPORT, v1::JOB_PHASE_METADATA,
                          v1::JOB_PHASE_CLEANUP, v1::JOB_PHASE_COMMIT,
                          v1::JOB_PHASE_SUCCEEDED));
  EXPECT_THAT(st.warnings(), IsEmpty());
  EXPECT_EQ(st.bytes_total(), 33554432u + 16777216u);
  EXPECT_EQ(st.bytes_done(), st.bytes_total());
  ExpectNothingLeftInThePool();

  const std::vector<BackupEntry> backups = Backups(spec);
  ASSERT_EQ(backups.size(), 1u);
  EXPECT_TRUE(backups[0].committed);
  const std::string dir = JoinPath(share_, "PROD-ubuntu14", backups[0].name);
  EXPECT_EQ(st.backup_folder(), dir);
  ASSERT_OK_AND_ASSIGN(auto tree, testing::TreeDigest(dir));
  std::vector<std::string> names;
  for (const auto& [name, digest] : tree) names.push_back(name);
  EXPECT_THAT(
      names, ElementsAre(".vmbackup-attempt", "DISK-xvda/", "DISK-xvda/vbd.cfg",
                         "DISK-xvda/vdi.cfg", "DISK-xvdb/", "DISK-xvdb/vbd.cfg",
                         "DISK-xvdb/vdi.cfg", "PROD-ubuntu14.xva", "VIFs/",
                         "VIFs/vif-0.cfg", "manifest.json", "success",
                         "vm-metadata.xml"));

  // The data: the disks, reassembled independently, are the pool's bytes.
  ASSERT_OK_AND_ASSIGN(
      auto disks, testing::XvaDiskSha256s(JoinPath(dir, "PROD-ubuntu14.xva")));
  std::vector<std::string> got, want;
  for (const auto& [ref, sha] : disks) got.push_back(sha);
  for (const auto& [dev, sha] : ExpectedDisks("PROD-ubuntu14"))
    want.push_back(sha);
  EXPECT_THAT(got, UnorderedElementsAreArray(want));

  // The manifest: every data file with its size and SHA-256.
  ASSERT_OK_AND_ASSIGN(std::string text,
                       fs_.ReadFile(JoinPath(dir, "manifest.json"), 1 << 20));
  ASSERT_OK_AND_ASSIGN(v1::BackupManifest m, ParseManifest(text));
  EXPECT_EQ(m.vm_uuid(), spec.vm_uuid());
  EXPECT_EQ(m.vm_name(), "PROD-ubuntu14");
  EXPECT_EQ(m.source_host(), "xcp-host1");
  EXPECT_EQ(m.kind(), "vm-export");
  EXPECT_EQ(m.compression(), "none");
  EXPECT_EQ(m.run_id(), "run1");
  EXPECT_EQ(m.disks_size(), 2);
  ASSERT_EQ(m.files_size(), 1);
  EXPECT_EQ(m.files(0).name(), "PROD-ubuntu14.xva");
  EXPECT_EQ(m.files(0).sha256(), tree["PROD-ubuntu14.xva"]);
  ASSERT_OK_AND_ASSIGN(FileInfo info,
                       fs_.Stat(JoinPath(dir, "PROD-ubuntu14.xva")));
  EXPECT_EQ(m.files(0).size(), info.size);
  EXPECT_EQ(st.backup_bytes(), info.size);

  // The seed's metadata files, field for field.
  ASSERT_OK_AND_ASSIGN(std::string vbd,
                       fs_.ReadFile(JoinPath(dir, "DISK-xvda/vbd.cfg"), 4096));
  std::vector<std::string> keys;
  for (absl::string_view line : absl::StrSplit(vbd, '\n', absl::SkipEmpty())) {
    keys.push_back(std::string(line.substr(0, line.find('='))));
  }
  EXPECT_THAT(keys, ElementsAre("userdevice", "bootable", "mode", "type",
                                "unpluggable", "empty", "orig_uuid"));
  EXPECT_THAT(vbd,
              HasSubstr("userdevice=0\nbootable=True\nmode=RW\ntype=Disk\n"));
  ASSERT_OK_AND_ASSIGN(std::string vdi,
                       fs_.ReadFile(JoinPath(dir, "DISK-xvdb/vdi.cfg"), 4096));
  EXPECT_THAT(vdi, HasSubstr("virtual_size=16777216\n"));
  EXPECT_THAT(vdi, HasSubstr("\nsharable=False\nread_only=False\norig_uuid="));
  ASSERT_OK_AND_ASSIGN(std::string vif,
                       fs_.ReadFile(JoinPath(dir, "VIFs/vif-0.cfg"), 4096));
  EXPECT_THAT(vif, HasSubstr("device=0\nnetwork_name_label=Pool-wide network "
                             "associated with eth0\nMTU=1500\nMAC="));
  EXPECT_THAT(vif, HasSubstr("\nother_config={}\norig_uuid="));
  ASSERT_OK_AND_ASSIGN(std::string xml,
                       fs_.ReadFile(JoinPath(dir, "vm-metadata.xml"), 1 << 20));
  EXPECT_TRUE(
      absl::StartsWith(xml, "<?xml version=\"1.0\"?>\n<value>\n  <struct>\n"))
      << xml.substr(0, 200);
  EXPECT_THAT(xml, HasSubstr("PROD-ubuntu14"));
}

TEST_F(VmBackupJobTest, CompressedExportsAreVerifiedAndNamedByCompression) {
  for (auto [compression, ext] :
       {std::pair{v1::COMPRESSION_GZIP, ".xva.gz"},
        std::pair{v1::COMPRESSION_ZSTD, ".xva.zst"}}) {
    v1::JobSpec spec = Spec("DEV-RH6");
    spec.set_compression(compression);
    spec.set_job_id(absl::StrCat("run1-", ext));
    const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
    ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
    const std::string file =
        JoinPath(st.backup_folder(), std::string("DEV-RH6") + ext);
    ASSERT_OK_AND_ASSIGN(auto disks, testing::XvaDiskSha256s(file));
    ASSERT_EQ(disks.size(), 1u);
    EXPECT_EQ(disks.begin()->second, ExpectedDisks("DEV-RH6")["0"]);
  }
  ExpectNothingLeftInThePool();
}

TEST_F(VmBackupJobTest, VdiExportRawAndVhdEqualThePoolsBytes) {
  // PROD-win2012 is an HVM guest: its boot disk is hda, which the seed's
  // xvda rule missed.
  v1::JobSpec spec = Spec("PROD-win2012", v1::EXPORT_KIND_VDI);
  v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host2"), spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  const std::string expected = ExpectedDisks("PROD-win2012")["0"];
  ASSERT_OK_AND_ASSIGN(
      std::string raw_sha,
      testing::FileSha256(JoinPath(st.backup_folder(), "PROD-win2012.raw")));
  EXPECT_EQ(raw_sha, expected);
  // Metadata for every disk, as the seed wrote it even for vdi-export.
  EXPECT_OK(
      fs_.Stat(JoinPath(st.backup_folder(), "DISK-hdb", "vdi.cfg")).status());

  spec.set_vdi_format(v1::VDI_FORMAT_VHD);
  spec.set_job_id("run1-vhd");
  st = RunVmBackupJob(ContextFor("xcp-host2"), spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  const std::string vhd = JoinPath(st.backup_folder(), "PROD-win2012.vhd");
  // 63: qemu's vpc driver has no check, which is not an error of the image.
  testing::CommandResult check =
      testing::RunCommand({"qemu-img", "check", "-f", "vpc", vhd});
  EXPECT_TRUE(check.exit_code == 0 ||
              (check.exit_code == 63 &&
               absl::StrContains(check.output, "does not support checks")))
      << check.output;
  const std::string raw = JoinPath(testing::MakeTempDir("conv"), "disk.raw");
  // qemu sizes a VHD by its CHS geometry unless told to trust current_size.
  testing::CommandResult conv = testing::RunCommand(
      {"qemu-img", "convert", "--image-opts",
       "driver=vpc,force_size_calc=current_size,file.filename=" + vhd, "-O",
       "raw", raw});
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  ASSERT_OK_AND_ASSIGN(std::string converted, testing::FileSha256(raw));
  EXPECT_EQ(converted, expected);

  // Every disk, one file each.
  spec.set_vdi_format(v1::VDI_FORMAT_RAW);
  spec.set_vdi_export_all_disks(true);
  spec.set_job_id("run1-all");
  st = RunVmBackupJob(ContextFor("xcp-host2"), spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  ASSERT_OK_AND_ASSIGN(std::string hdb,
                       testing::FileSha256(JoinPath(st.backup_folder(),
                                                    "PROD-win2012-hdb.raw")));
  EXPECT_EQ(hdb, ExpectedDisks("PROD-win2012")["1"]);
  ExpectNothingLeftInThePool();
}

TEST_F(VmBackupJobTest, RetentionKeepsMaxBackupsAndUnfinishedFoldersGo) {
  v1::JobSpec spec = Spec("DEV-RH6");
  spec.set_max_backups(2);
  // What a crashed run left: a folder without a marker.
  const std::string vm_dir = JoinPath(share_, "DEV-RH6");
  ASSERT_OK(fs_.CreateDir(vm_dir));
  ASSERT_OK(fs_.CreateDir(JoinPath(vm_dir, "backup-2020-01-01-(00:00:00)")));
  for (int i = 0; i < 3; ++i) {
    spec.set_job_id(absl::StrCat("run1-", i));
    const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
    ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  }
  const std::vector<BackupEntry> backups = Backups(spec);
  ASSERT_EQ(backups.size(), 2u);
  EXPECT_TRUE(backups[0].committed);
  EXPECT_TRUE(backups[1].committed);
  EXPECT_NE(backups[0].name, "backup-2020-01-01-(00:00:00)");
}

TEST_F(VmBackupJobTest, PreCleanMakesRoomBeforeExporting) {
  v1::JobSpec spec = Spec("DEV-RH6");
  spec.set_max_backups(2);
  for (int i = 0; i < 2; ++i) {
    spec.set_job_id(absl::StrCat("run1-", i));
    ASSERT_EQ(RunVmBackupJob(ContextFor("xcp-host3"), spec, {}).phase(),
              v1::JOB_PHASE_SUCCEEDED);
  }
  const std::vector<BackupEntry> before = Backups(spec);
  ASSERT_EQ(before.size(), 2u);
  spec.set_pre_clean(true);
  std::vector<std::string> seen_at_snapshot;
  JobHooks hooks;
  hooks.progress = [&](const v1::JobStatus& s) {
    if (s.phase() == v1::JOB_PHASE_SNAPSHOT && seen_at_snapshot.empty()) {
      for (const BackupEntry& b : Backups(spec))
        seen_at_snapshot.push_back(b.name);
    }
  };
  spec.set_job_id("run1-pre");
  ASSERT_EQ(RunVmBackupJob(ContextFor("xcp-host3"), spec, hooks).phase(),
            v1::JOB_PHASE_SUCCEEDED);
  // Before the snapshot, the oldest had gone; the new folder was there.
  ASSERT_EQ(seen_at_snapshot.size(), 2u);
  EXPECT_EQ(seen_at_snapshot[0], before[1].name);
}

// A clock that moves a quarter of a second each time it is read, so that the
// job's once-a-second progress reports come many times per export.
class SteppingClock final : public Clock {
 public:
  absl::Time Now() override {
    return absl::FromUnixMillis(1700000000000 + 250 * ticks_++);
  }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }

 private:
  std::atomic<int64_t> ticks_{0};
};

TEST_F(VmBackupJobTest, ProgressRisesToTheVirtualSizeWhileStreaming) {
  const v1::JobSpec spec = Spec("PROD-ubuntu14");
  SteppingClock clock;
  JobContext c = ContextFor("xcp-host1");
  c.clock = &clock;
  std::vector<std::pair<uint64_t, uint64_t>> seen;  // done, written
  uint64_t total = 0;
  JobHooks hooks;
  hooks.progress = [&](const v1::JobStatus& s) {
    if (s.phase() != v1::JOB_PHASE_EXPORT) return;
    seen.emplace_back(s.bytes_done(), s.bytes_written());
    total = s.bytes_total();
  };
  const v1::JobStatus st = RunVmBackupJob(c, spec, hooks);
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_EQ(total, 33554432u + 16777216u);  // both disks' virtual sizes
  ASSERT_GE(seen.size(), 4u);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].first, seen[i - 1].first) << i;
    EXPECT_GE(seen[i].second, seen[i - 1].second) << i;
    EXPECT_LE(seen[i].first, total) << i;
  }
  // Reports came from inside the stream, not only at its ends.
  EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [&](const auto& p) {
    return p.first > 0 && p.first < total;
  }));
  EXPECT_EQ(st.bytes_done(), total);
  EXPECT_EQ(st.bytes_written(), st.backup_bytes());
}

TEST_F(VmBackupJobTest, TwoVmsWithOneNameGetTheirOwnFolders) {
  // The vm_folder comes from ChooseVmFolder; the job writes where it is told.
  v1::JobSpec a = Spec("DEV mySql");
  a.set_vm_folder("DEV mySql--" + a.vm_uuid());
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host1"), a, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_TRUE(absl::StrContains(st.backup_folder(), "DEV mySql--"));
  ASSERT_OK(fs_.Stat(JoinPath(st.backup_folder(), "DEV mySql.xva")).status());
}

// ------------------------------------------------------------ failure paths

class VmBackupJobFaultTest : public VmBackupJobTest {
 protected:
  // A committed earlier backup of the VM, and the share's digest after it.
  std::map<std::string, std::string> EarlierBackup(const v1::JobSpec& spec,
                                                   const std::string& host) {
    v1::JobSpec first = spec;
    first.set_job_id(spec.job_id() + "-earlier");
    first.set_stall_timeout_ms(30000);
    first.set_vm_timeout_ms(0);
    const v1::JobStatus st = RunVmBackupJob(ContextFor(host), first, {});
    EXPECT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
    absl::StatusOr<std::map<std::string, std::string>> d =
        testing::TreeDigest(share_);
    EXPECT_TRUE(d.ok());
    return d.value_or(std::map<std::string, std::string>{});
  }

  v1::JobStatus RunWithFault(const v1::JobSpec& spec, const std::string& host,
                             const std::string& fault_json) {
    EXPECT_OK(sim_->AddFault(fault_json));
    return RunVmBackupJob(ContextFor(host), spec, {});
  }

  // The job with the share's files failing as `faults` says.
  v1::JobStatus RunOnFaultyShare(
      const v1::JobSpec& spec, const std::string& host,
      const testing::FaultyFilesystem::Faults& faults) {
    testing::FaultyFilesystem fs(faults);
    JobContext c = ContextFor(host);
    c.fs = &fs;
    return RunVmBackupJob(c, spec, {});
  }
};

TEST_F(VmBackupJobFaultTest, StreamCutWithVdiIoError) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CUT","call":"/export","vm":"DEV-RH6","after_bytes":"3000000","times":1})");
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_EQ(st.error_step(), "export");
  EXPECT_EQ(st.xenapi_error().code(), "VDI_IO_ERROR");
  EXPECT_THAT(st.error_message(), HasSubstr("stream"));
}

TEST_F(VmBackupJobFaultTest, EmbeddedHttp500) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"EMBEDDED_500","call":"/export","vm":"DEV-RH6","after_bytes":"2097152","times":1})");
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_EQ(st.xenapi_error().code(), "SR_BACKEND_FAILURE_46");
}

TEST_F(VmBackupJobFaultTest, CorruptedChunk) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CORRUPT","call":"/export","vm":"DEV-RH6","after_bytes":"1600000","times":1})");
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("checksum"));
}

TEST_F(VmBackupJobFaultTest, AShareFullMidStreamIsTheVmsErrorNotThePools) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  testing::FaultyFilesystem::Faults faults;
  faults.suffix = ".xva";
  faults.space = 5 << 19;  // 2.5 MiB: the third 1 MiB block fails
  const v1::JobStatus st = RunOnFaultyShare(spec, "xcp-host3", faults);
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_EQ(st.error_step(), "export");
  EXPECT_THAT(st.error_message(), HasSubstr("No space left on device"));
  // The export task was cancelled, but its failure is not the cause.
  EXPECT_EQ(st.xenapi_error().code(), "");
}

TEST_F(VmBackupJobFaultTest, AFailedFsyncOfTheDataFileWritesNoMarker) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  testing::FaultyFilesystem::Faults faults;
  faults.suffix = ".xva";
  faults.fail_sync = true;
  const v1::JobStatus st = RunOnFaultyShare(spec, "xcp-host3", faults);
  ExpectCleanFailure(st, spec, before, "COMMIT-FAIL");
  EXPECT_EQ(st.error_step(), "commit");
  EXPECT_THAT(st.error_message(), HasSubstr("Input/output error"));
}

TEST_F(VmBackupJobFaultTest, AFailedCommitRemovesTheMarkerBeforeTheFiles) {
  // The marker is written, then fsyncing the folder fails: the commit
  // failed, and the cleanup must take the marker away first, so that a crash
  // during it cannot leave a "committed" folder with half its files.
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  testing::FaultyFilesystem::Faults faults;
  faults.fail_sync_dir_after = "success";
  testing::FaultyFilesystem fs(faults);
  JobContext c = ContextFor("xcp-host3");
  c.fs = &fs;
  const v1::JobStatus st = RunVmBackupJob(c, spec, {});
  ExpectCleanFailure(st, spec, before, "COMMIT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("Input/output error"));
  const std::string folder = st.backup_folder();
  ASSERT_FALSE(folder.empty());
  const std::vector<std::string> ops = fs.ops();
  const auto at = [&](const std::string& op) {
    return std::find(ops.begin(), ops.end(), op) - ops.begin();
  };
  const auto marker_made = at("create " + JoinPath(folder, "success"));
  const auto marker_gone = at("rm " + JoinPath(folder, "success"));
  const auto tree_gone = at("rmtree " + folder);
  ASSERT_LT(marker_made, static_cast<long>(ops.size()));
  ASSERT_LT(marker_gone, static_cast<long>(ops.size()))
      << "the marker was never removed on its own";
  ASSERT_LT(tree_gone, static_cast<long>(ops.size()));
  EXPECT_LT(marker_made, marker_gone);
  EXPECT_LT(marker_gone, tree_gone);
}

TEST_F(VmBackupJobTest, ANewVmFolderIsMadeDurableBeforeTheBackupGoesIn) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  testing::FaultyFilesystem fs;
  JobContext c = ContextFor("xcp-host3");
  c.fs = &fs;
  const v1::JobStatus st = RunVmBackupJob(c, spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  const std::vector<std::string> ops = fs.ops();
  const std::string vm_dir = JoinPath(share_, spec.vm_folder());
  const auto at = [&](const std::string& op) {
    return std::find(ops.begin(), ops.end(), op) - ops.begin();
  };
  const auto made = at("mkdir " + vm_dir);
  const auto synced = at("syncdir " + share_);
  const auto backup = at("mkdir " + st.backup_folder());
  ASSERT_LT(made, static_cast<long>(ops.size()));
  ASSERT_LT(synced, static_cast<long>(ops.size()))
      << "the share was never fsynced after the VM folder was made";
  EXPECT_LT(made, synced);
  EXPECT_LT(synced, backup);
}

TEST_F(VmBackupJobFaultTest, TaskFailsAfterACompleteBody) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"TASK_FAIL","call":"/export","vm":"DEV-RH6","times":1})");
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_EQ(st.xenapi_error().code(), "VDI_IO_ERROR");
  EXPECT_THAT(st.error_message(), HasSubstr("complete, verified body"));
}

TEST_F(VmBackupJobFaultTest, StallBeyondStallTimeout) {
  v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  spec.set_stall_timeout_ms(1000);
  const absl::Time start = absl::Now();
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"1048576","delay_ms":0,"times":1})");
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("stalled: no data for 1s"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
}

TEST_F(VmBackupJobFaultTest, VmTimeout) {
  v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  // The stall timeout is far above the VM timeout: only vm_timeout can end
  // this job in time.
  spec.set_vm_timeout_ms(1500);
  spec.set_stall_timeout_ms(600000);
  const absl::Time start = absl::Now();
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"1048576","delay_ms":0,"times":1})");
  const absl::Duration elapsed = absl::Now() - start;
  ExpectCleanFailure(st, spec, before, "VM-EXPORT-FAIL");
  EXPECT_EQ(st.error_step(), "export");
  EXPECT_THAT(st.error_message(), HasSubstr("vm_timeout (1.5s) expired"));
  EXPECT_GE(elapsed, absl::Milliseconds(1500));
  EXPECT_LT(elapsed, absl::Seconds(120)) << "ended by something else";
}

TEST_F(VmBackupJobFaultTest, SnapshotErrorsTakeNothing) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  for (const char* code :
       {"SR_BACKEND_FAILURE_44", "SR_FULL", "OTHER_OPERATION_IN_PROGRESS"}) {
    const v1::JobStatus st = RunWithFault(
        spec, "xcp-host3",
        absl::StrCat(
            R"({"kind":"CALL_ERROR","call":"VM.snapshot","vm":"DEV-RH6","times":1,"error":[")",
            code, R"("]})"));
    ExpectCleanFailure(st, spec, before, "SNAPSHOT-FAIL");
    EXPECT_EQ(st.error_step(), "snapshot");
    EXPECT_EQ(st.xenapi_error().code(), code);
  }
}

TEST_F(VmBackupJobFaultTest, ALicenceRestrictionOnTheTemplateFlagIsTolerated) {
  // Some editions refuse VM.set_is_a_template; the seed carried on.
  const v1::JobSpec spec = Spec("DEV-RH6");
  EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CALL_ERROR","call":"VM.set_is_a_template","times":1,"error":["LICENCE_RESTRICTION","VM.set_is_a_template"]})");
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_EQ(Backups(spec).size(), 2u);
  ExpectNothingLeftInThePool();
}

// The same fault with another code fails the job: so the fault above fired.
TEST_F(VmBackupJobFaultTest, AnyOtherErrorOnTheTemplateFlagFailsCleanly) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CALL_ERROR","call":"VM.set_is_a_template","times":1,"error":["OPERATION_NOT_ALLOWED","busy"]})");
  ExpectCleanFailure(st, spec, before, "TEMPLATE-PARAM-SET-FAIL");
  EXPECT_EQ(st.xenapi_error().code(), "OPERATION_NOT_ALLOWED");
}

TEST_F(VmBackupJobFaultTest, VdiSnapshotErrors) {
  const v1::JobSpec spec = Spec("DEV-RH6", v1::EXPORT_KIND_VDI);
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CALL_ERROR","call":"VDI.snapshot","vm":"DEV-RH6","times":1,"error":["SR_BACKEND_FAILURE_44"]})");
  ExpectCleanFailure(st, spec, before, "VDI-SNAPSHOT-FAIL");
}

TEST_F(VmBackupJobFaultTest, VdiExportCutIsCaughtBySize) {
  const v1::JobSpec spec = Spec("DEV-RH6", v1::EXPORT_KIND_VDI);
  const auto before = EarlierBackup(spec, "xcp-host3");
  const v1::JobStatus st = RunWithFault(
      spec, "xcp-host3",
      R"({"kind":"CUT","call":"/export_raw_vdi","vm":"DEV-RH6","after_bytes":"5000000","times":1})");
  ExpectCleanFailure(st, spec, before, "VDI-EXPORT-FAIL");
}

TEST_F(VmBackupJobFaultTest, VdiInUseOnDestroyIsRetried) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VDI.destroy","vm":"DEV-RH6","times":3,"error":["VDI_IN_USE"]})"));
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_THAT(st.warnings(), IsEmpty());
  EXPECT_FALSE(st.snapshot_left());
  ExpectNothingLeftInThePool();
}

TEST_F(VmBackupJobFaultTest,
       ASnapshotThatWillNotGoIsAWarningAndTheJanitorsJob) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VDI.destroy","vm":"DEV-RH6","error":["VDI_IN_USE"]})"));
  JobContext context = ContextFor("xcp-host3");
  context.destroy_retry = absl::Milliseconds(300);
  const v1::JobStatus st = RunVmBackupJob(context, spec, {});
  // The backup itself is good.
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_TRUE(st.snapshot_left());
  ASSERT_EQ(st.warnings_size(), 1);
  EXPECT_THAT(st.warnings(0), HasSubstr("VDI_IN_USE"));
  ASSERT_OK(sim_->ClearFaults());
  // The next run's janitor removes it; another share's is not its business.
  JanitorOptions other;
  other.share_id = "another-share";
  ASSERT_OK_AND_ASSIGN(JanitorReport none,
                       CleanUpLeftoverSnapshots(*client_, other));
  EXPECT_THAT(none.removed, IsEmpty());
  JanitorOptions options;
  options.share_id = "share1";
  options.active_runs = {"run2"};
  ASSERT_OK_AND_ASSIGN(JanitorReport report,
                       CleanUpLeftoverSnapshots(*client_, options));
  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_FALSE(report.removed.empty());
  ExpectNothingLeftInThePool();
}

TEST_F(VmBackupJobFaultTest, NotAMountPointWithRequireMount) {
  v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  spec.set_require_mount(true);
  ASSERT_OK_AND_ASSIGN(sim::SimState state, sim_->State());
  const uint64_t calls_before = state.api_calls();
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
  ExpectCleanFailure(st, spec, before, "PREFLIGHT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("not a mount point"));
  // No snapshot was even attempted.
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests());
  ASSERT_OK_AND_ASSIGN(state, sim_->State());
  EXPECT_LT(state.api_calls() - calls_before, 20u);
  EXPECT_EQ(st.snapshot_uuid(), "");
}

TEST_F(VmBackupJobFaultTest, NotEnoughFreeSpace) {
  v1::JobSpec spec = Spec("DEV-RH6");
  spec.set_min_free_space(uint64_t{1} << 60);
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(st.status_token(), "PREFLIGHT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("min_free_space"));
  ExpectNothingLeftInThePool();
}

TEST_F(VmBackupJobFaultTest, CancelledMidStream) {
  const v1::JobSpec spec = Spec("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  // The stream stops at 3 MiB and stays open, so the cancel lands while it
  // is under way; a clock that moves at every read reports progress often.
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"STALL","call":"/export","vm":"DEV-RH6","after_bytes":"3145728","delay_ms":0,"times":1})"));
  SteppingClock clock;
  JobContext c = ContextFor("xcp-host3");
  c.clock = &clock;
  absl::Notification cancel;
  uint64_t written_at_cancel = 0;
  std::string folder_at_cancel;
  JobHooks hooks;
  hooks.cancel = &cancel;
  hooks.progress = [&](const v1::JobStatus& s) {
    if (s.phase() == v1::JOB_PHASE_EXPORT && s.bytes_written() >= (1 << 20) &&
        !cancel.HasBeenNotified()) {
      written_at_cancel = s.bytes_written();
      folder_at_cancel = s.backup_folder();
      cancel.Notify();
    }
  };
  const v1::JobStatus st = RunVmBackupJob(c, spec, hooks);
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_CANCELLED) << st.DebugString();
  EXPECT_EQ(st.status_token(), "CANCELLED");
  EXPECT_GE(written_at_cancel, 1u << 20)
      << "cancelled before 1 MiB was written";
  ASSERT_FALSE(folder_at_cancel.empty());
  EXPECT_TRUE(absl::IsNotFound(fs_.Stat(folder_at_cancel).status()))
      << "the cancelled backup's folder is still there";
  ExpectNothingLeftInThePool();
  ASSERT_OK_AND_ASSIGN(auto after, testing::TreeDigest(share_));
  EXPECT_EQ(after, before);
}

TEST_F(VmBackupJobFaultTest, AVmThatIsGone) {
  v1::JobSpec spec = Spec("DEV-RH6");
  spec.set_vm_uuid("00000000-0000-0000-0000-000000000000");
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(st.status_token(), "ERROR vm-uuid not found");
  EXPECT_EQ(st.xenapi_error().code(), "UUID_INVALID");
}

// ------------------------------------------------- attempts and ownership

// The last component of a path.
std::string Base(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

class VmBackupJobAttemptTest : public VmBackupJobFaultTest {
 protected:
  // An attempt file as another attempt of the VM's job wrote it.
  static v1::AttemptFile Other(const std::string& job_id, uint64_t token) {
    v1::AttemptFile a;
    a.set_job_id(job_id);
    a.set_attempt(static_cast<uint32_t>(token));
    a.set_fencing_token(token);
    a.set_run_id("run0");
    a.set_agent_id("agent-elsewhere");
    return a;
  }

  // An uncommitted backup folder of `spec`'s VM, with `attempt` in it (none
  // when nullptr) and a partial data file.
  std::string Unfinished(const v1::JobSpec& spec, const std::string& name,
                         const v1::AttemptFile* attempt) {
    const std::string vm_dir = JoinPath(share_, spec.vm_folder());
    absl::Status s = fs_.CreateDir(vm_dir);
    EXPECT_TRUE(s.ok() || absl::IsAlreadyExists(s)) << s;
    const std::string dir = JoinPath(vm_dir, name);
    EXPECT_OK(fs_.CreateDir(dir));
    if (attempt != nullptr) {
      EXPECT_OK(WriteAttemptFile(fs_, dir, *attempt));
    }
    EXPECT_OK(WriteNewFile(fs_, JoinPath(dir, "DEV-RH6.xva"), "partial"));
    return dir;
  }

  bool Exists(const std::string& path) { return fs_.Stat(path).ok(); }

  // A distributed run's spec: attempt 2, fencing token 5.
  v1::JobSpec Fenced(const std::string& vm_name) {
    v1::JobSpec spec = Spec(vm_name);
    spec.set_attempt(2);
    spec.set_fencing_token(5);
    return spec;
  }
};

TEST_F(VmBackupJobAttemptTest, TheAttemptFileGoesInFirstDurablyAndStays) {
  const v1::JobSpec spec = Fenced("DEV-RH6");
  testing::FaultyFilesystem fs;
  JobContext c = ContextFor("xcp-host3");
  c.fs = &fs;
  c.agent_id = "agent-7";
  const v1::JobStatus st = RunVmBackupJob(c, spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_EQ(st.agent_id(), "agent-7");
  EXPECT_EQ(st.host_uuid(), c.host.uuid);
  const std::string folder = st.backup_folder();
  const std::string file = JoinPath(folder, kAttemptFileName);
  // mkdir, the attempt file made durable, then anything else in the folder.
  const std::vector<std::string> ops = fs.ops();
  const auto at = [&](const std::string& op) {
    return std::find(ops.begin(), ops.end(), op) - ops.begin();
  };
  const auto made = at("mkdir " + folder);
  ASSERT_LT(made + 3, static_cast<long>(ops.size()));
  EXPECT_EQ(ops[made + 1], "create " + file);
  EXPECT_EQ(ops[made + 2], "fsync " + file);
  EXPECT_EQ(ops[made + 3], "syncdir " + folder);
  for (long i = 0; i < made; ++i) {
    EXPECT_FALSE(absl::StartsWith(ops[i], "create " + folder)) << ops[i];
  }
  // The committed folder keeps it: who wrote this backup.
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile a, ReadAttemptFile(fs_, folder));
  EXPECT_EQ(a.job_id(), spec.job_id());
  EXPECT_EQ(a.attempt(), 2u);
  EXPECT_EQ(a.fencing_token(), 5u);
  EXPECT_EQ(a.run_id(), "run1");
  EXPECT_EQ(a.agent_id(), "agent-7");
  EXPECT_EQ(a.host_uuid(), c.host.uuid);
  EXPECT_TRUE(Exists(JoinPath(folder, "success")));
}

TEST_F(VmBackupJobAttemptTest,
       ANewerAttemptsFolderSurvivesCleanRetentionAndPreClean) {
  v1::JobSpec spec = Fenced("DEV-RH6");
  // Two committed backups of earlier runs.
  for (int i = 0; i < 2; ++i) {
    v1::JobSpec earlier = spec;
    earlier.set_job_id(absl::StrCat("run0-", i));
    earlier.set_fencing_token(static_cast<uint64_t>(1 + i));
    ASSERT_EQ(RunVmBackupJob(ContextFor("xcp-host3"), earlier, {}).phase(),
              v1::JOB_PHASE_SUCCEEDED);
  }
  const std::vector<BackupEntry> committed = Backups(spec);
  ASSERT_EQ(committed.size(), 2u);
  // What the share holds besides: a crashed seed run's folder, older
  // attempts' (of another job; and one with our own token), a newer
  // attempt's, and one whose attempt file is torn.
  const v1::AttemptFile older = Other("run0-x", 3);
  const v1::AttemptFile same = Other("run0-y", 5);
  const v1::AttemptFile newer = Other("run9-z", 9);
  const std::string seed =
      Unfinished(spec, "backup-2020-01-01-(00:00:00)", nullptr);
  const std::string old_one =
      Unfinished(spec, "backup-2020-01-02-(00:00:00)", &older);
  const std::string same_one =
      Unfinished(spec, "backup-2020-01-03-(00:00:00)", &same);
  const std::string newer_one =
      Unfinished(spec, "backup-2020-01-04-(00:00:00)", &newer);
  const std::string torn =
      Unfinished(spec, "backup-2020-01-05-(00:00:00)", nullptr);
  ASSERT_OK(WriteNewFile(fs_, JoinPath(torn, kAttemptFileName), ""));

  spec.set_pre_clean(true);
  spec.set_max_backups(1);
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  EXPECT_FALSE(Exists(seed));
  EXPECT_FALSE(Exists(old_one));
  EXPECT_FALSE(Exists(same_one));
  EXPECT_TRUE(Exists(JoinPath(newer_one, "DEV-RH6.xva")));
  ASSERT_OK_AND_ASSIGN(v1::AttemptFile kept, ReadAttemptFile(fs_, newer_one));
  EXPECT_EQ(kept.fencing_token(), 9u);
  EXPECT_TRUE(Exists(torn));
  // pre_clean and retention took the two committed ones (max_backups 1)
  // and counted neither the newer attempt's folder nor the torn one.
  std::vector<std::string> names;
  for (const BackupEntry& b : Backups(spec)) {
    names.push_back(absl::StrCat(b.name, b.committed ? " committed" : ""));
  }
  EXPECT_THAT(
      names, ElementsAre("backup-2020-01-04-(00:00:00)",
                         "backup-2020-01-05-(00:00:00)",
                         absl::StrCat(Base(st.backup_folder()), " committed")));

  // The standalone run (fencing token 0) removes every unfinished folder,
  // as before.
  v1::JobSpec standalone = Spec("DEV-RH6");
  standalone.set_max_backups(1);
  ASSERT_EQ(RunVmBackupJob(ContextFor("xcp-host3"), standalone, {}).phase(),
            v1::JOB_PHASE_SUCCEEDED);
  EXPECT_FALSE(Exists(newer_one));
  EXPECT_FALSE(Exists(torn));
}

TEST_F(VmBackupJobAttemptTest,
       ARefusedCommitGrantFencesOrFailsAndRemovesTheFolder) {
  const v1::JobSpec spec = Fenced("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  for (const absl::Status& refusal :
       {absl::AbortedError("attempt 2 was fenced by attempt 3 (token 6)"),
        absl::UnavailableError("the coordinator is not reachable")}) {
    SCOPED_TRACE(refusal.ToString());
    std::string folder_at_gate;
    JobHooks hooks;
    hooks.commit_gate = [&](const v1::JobStatus& s) {
      folder_at_gate = s.backup_folder();
      return refusal;
    };
    const v1::JobStatus st =
        RunVmBackupJob(ContextFor("xcp-host3"), spec, hooks);
    ExpectCleanFailure(st, spec, before,
                       absl::IsAborted(refusal) ? "FENCED" : "COMMIT-FAIL");
    EXPECT_EQ(st.error_step(), "commit");
    EXPECT_THAT(st.error_message(), HasSubstr(refusal.message()));
    ASSERT_FALSE(folder_at_gate.empty());
    EXPECT_FALSE(Exists(folder_at_gate));
  }
}

TEST_F(VmBackupJobAttemptTest,
       AZombieNeitherCommitsNorRemovesTheNextAttemptsFolder) {
  // While this attempt exports, a newer one (token 6) removes its folder,
  // as an older attempt's garbage, and makes its own under the same name.
  const v1::JobSpec spec = Fenced("DEV-RH6");
  for (bool gate : {true, false}) {
    SCOPED_TRACE(gate ? "the grant is refused" : "no grant is asked for");
    v1::JobSpec zombie = spec;
    zombie.set_job_id(absl::StrCat(spec.job_id(), gate ? "-g" : "-n"));
    std::string taken;
    JobHooks hooks;
    hooks.progress = [&](const v1::JobStatus& s) {
      if (s.phase() != v1::JOB_PHASE_EXPORT || !taken.empty()) return;
      taken = s.backup_folder();
      EXPECT_OK(RemoveBackup(fs_, Dirname(taken), Base(taken)));
      EXPECT_OK(fs_.CreateDir(taken));
      const v1::AttemptFile next = Other(zombie.job_id(), 6);
      EXPECT_OK(WriteAttemptFile(fs_, taken, next));
    };
    if (gate) {
      hooks.commit_gate = [](const v1::JobStatus&) {
        return absl::AbortedError("fenced: token 5 < 6");
      };
    }
    const v1::JobStatus st =
        RunVmBackupJob(ContextFor("xcp-host3"), zombie, hooks);
    EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED) << st.DebugString();
    EXPECT_EQ(st.status_token(), "FENCED");
    ASSERT_FALSE(taken.empty());
    // The newer attempt's folder is still there, uncommitted.
    ASSERT_OK_AND_ASSIGN(v1::AttemptFile a, ReadAttemptFile(fs_, taken));
    EXPECT_EQ(a.fencing_token(), 6u);
    for (const std::string& marker : SuccessMarkers()) {
      EXPECT_FALSE(Exists(JoinPath(taken, marker))) << marker;
    }
    ExpectNothingLeftInThePool();
    ASSERT_OK(RemoveBackup(fs_, Dirname(taken), Base(taken)));
  }
}

TEST_F(VmBackupJobAttemptTest,
       AnAttemptFileThatCannotBeWrittenFailsTheFolderStep) {
  const v1::JobSpec spec = Fenced("DEV-RH6");
  const auto before = EarlierBackup(spec, "xcp-host3");
  testing::FaultyFilesystem::Faults faults;
  faults.suffix = std::string(kAttemptFileName);
  faults.fail_sync = true;
  const v1::JobStatus st = RunOnFaultyShare(spec, "xcp-host3", faults);
  // Its own folder, with a file it could not make durable, is removed.
  ExpectCleanFailure(st, spec, before, "BACKUP-DIR-FAIL");
  EXPECT_EQ(st.error_step(), "backup folder");
  EXPECT_THAT(st.error_message(), HasSubstr("Input/output error"));
}

TEST_F(VmBackupJobAttemptTest, TheSpecsDestroyRetryBoundsALeftSnapshot) {
  // The process's default would retry for ten minutes; the spec says 300 ms.
  for (v1::ExportKind kind : {v1::EXPORT_KIND_VM, v1::EXPORT_KIND_VDI}) {
    SCOPED_TRACE(ExportKindName(kind));
    ASSERT_OK(sim_->ClearFaults());
    v1::JobSpec spec = Fenced("DEV-RH6");
    spec.set_kind(kind);
    spec.set_job_id(absl::StrCat("run2-", ExportKindName(kind)));
    spec.set_run_id("run2");
    spec.set_destroy_retry_ms(300);
    // vm-export: the snapshot VM record will not go (so it is there to be
    // named); vdi-export: the disk snapshot will not.
    ASSERT_OK(sim_->AddFault(
        kind == v1::EXPORT_KIND_VM
            ? R"({"kind":"CALL_ERROR","call":"VM.destroy","error":["OTHER_OPERATION_IN_PROGRESS","VM"]})"
            : R"({"kind":"CALL_ERROR","call":"VDI.destroy","error":["VDI_IN_USE"]})"));
    JobContext c = ContextFor("xcp-host3");
    c.destroy_retry = absl::Minutes(10);
    const absl::Time start = absl::Now();
    const v1::JobStatus st = RunVmBackupJob(c, spec, {});
    EXPECT_LT(absl::Now() - start, absl::Seconds(60));
    ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
    EXPECT_TRUE(st.snapshot_left());
    ASSERT_FALSE(st.snapshot_uuid().empty());
    if (kind == v1::EXPORT_KIND_VM) {
      ASSERT_OK_AND_ASSIGN(std::string ref,
                           client_->GetVmByUuid(st.snapshot_uuid()));
      ASSERT_OK_AND_ASSIGN(VmRecord vm, client_->GetVm(ref));
      EXPECT_TRUE(vm.is_a_snapshot);
    } else {
      ASSERT_OK_AND_ASSIGN(std::string ref,
                           client_->GetVdiByUuid(st.snapshot_uuid()));
      ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi(ref));
      EXPECT_TRUE(vdi.is_a_snapshot);
    }
    // The manifest names the same snapshot.
    ASSERT_OK_AND_ASSIGN(
        std::string text,
        fs_.ReadFile(JoinPath(st.backup_folder(), "manifest.json"), 1 << 20));
    ASSERT_OK_AND_ASSIGN(v1::BackupManifest m, ParseManifest(text));
    EXPECT_EQ(m.snapshot_uuid(), st.snapshot_uuid());
    // The run's janitor takes it later.
    ASSERT_OK(sim_->ClearFaults());
    JanitorOptions options;
    options.share_id = "share1";
    options.active_runs = {"run3"};
    ASSERT_OK_AND_ASSIGN(JanitorReport report,
                         CleanUpLeftoverSnapshots(*client_, options));
    EXPECT_THAT(report.problems, IsEmpty());
    ExpectNothingLeftInThePool();
  }
}

TEST_F(VmBackupJobAttemptTest, AFailedJobsLeftSnapshotIsNamedToo) {
  // The job fails (the grant is refused) and its snapshot will not go.
  v1::JobSpec spec = Fenced("DEV-RH6");
  spec.set_destroy_retry_ms(200);
  ASSERT_OK(sim_->AddFault(
      R"({"kind":"CALL_ERROR","call":"VM.destroy","error":["OTHER_OPERATION_IN_PROGRESS","VM"]})"));
  JobHooks hooks;
  hooks.commit_gate = [](const v1::JobStatus&) {
    return absl::AbortedError("fenced");
  };
  const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, hooks);
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(st.status_token(), "FENCED");
  EXPECT_TRUE(st.snapshot_left());
  ASSERT_OK(client_->GetVmByUuid(st.snapshot_uuid()).status());
  ASSERT_OK(sim_->ClearFaults());
  JanitorOptions options;
  options.share_id = "share1";
  ASSERT_OK_AND_ASSIGN(JanitorReport report,
                       CleanUpLeftoverSnapshots(*client_, options));
  EXPECT_THAT(report.problems, IsEmpty());
  ExpectNothingLeftInThePool();
}

// A pool of its own for one test, from `fixture_json`: the simulator, a
// logged-in client, a job context on the pool's first host, and a spec for
// one of its VMs (vm-export, one backup kept).
class OwnPool {
 public:
  static std::unique_ptr<OwnPool> Start(const std::string& fixture_json) {
    SimProcess::Options options;
    options.fixture_json = fixture_json;
    absl::StatusOr<std::unique_ptr<SimProcess>> sim =
        SimProcess::Start(options);
    EXPECT_TRUE(sim.ok()) << sim.status();
    if (!sim.ok()) return nullptr;
    auto pool = std::unique_ptr<OwnPool>(new OwnPool());
    pool->sim = *std::move(sim);
    pool->client = pool->sim->NewClient();
    absl::StatusOr<RecordMap<HostRecord>> hosts = pool->client->GetAllHosts();
    EXPECT_TRUE(hosts.ok()) << hosts.status();
    if (!hosts.ok() || hosts->empty()) return nullptr;
    JobContext& c = pool->context;
    c.xapi = pool->client.get();
    c.fs = &pool->fs;
    c.clock = SystemClock::Get();
    c.host = hosts->begin()->second;
    c.data_url = pool->sim->host_url(c.host.name_label);
    return pool;
  }

  VmRecord Vm(const std::string& name) {
    absl::StatusOr<std::string> ref = testing::VmRefByName(*client, name);
    EXPECT_TRUE(ref.ok()) << ref.status();
    absl::StatusOr<VmRecord> vm = client->GetVm(ref.value_or(""));
    EXPECT_TRUE(vm.ok()) << vm.status();
    return vm.value_or(VmRecord());
  }

  v1::JobSpec Spec(const std::string& vm_name, const std::string& share) {
    v1::JobSpec spec;
    spec.set_job_id("r-1");
    spec.set_run_id("r");
    spec.set_vm_uuid(Vm(vm_name).uuid);
    spec.set_kind(v1::EXPORT_KIND_VM);
    spec.set_backup_dir(share);
    spec.set_vm_folder(vm_name);
    spec.set_max_backups(1);
    spec.set_share_id("s");
    return spec;
  }

  std::unique_ptr<SimProcess> sim;
  std::unique_ptr<XmlRpcXenApiClient> client;
  PosixFilesystem fs;
  JobContext context;

 private:
  OwnPool() = default;
};

// A thick (LVM) SR allocates a snapshot's whole size at once: without room
// for it, no snapshot is taken.
TEST(VmBackupJobThickSrTest, NoRoomForTheSnapshotTakesNone) {
  std::unique_ptr<OwnPool> pool = OwnPool::Start(R"({
      "credentials": {"username": "root", "password": "pw"},
      "hosts": [{"name_label": "h1", "master": true}],
      "srs": [{"name_label": "lvm", "type": "lvm", "host": "h1",
               "physical_size": "20971520"}],
      "vms": [{"name_label": "thick", "resident_on": "h1",
               "disks": [{"size": "16777216", "sr": "lvm"}]}]})");
  ASSERT_NE(pool, nullptr);
  const v1::JobSpec spec = pool->Spec("thick", testing::MakeTempDir("share"));
  const v1::JobStatus st = RunVmBackupJob(pool->context, spec, {});
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(st.status_token(), "PREFLIGHT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("thick"));
  EXPECT_THAT(st.error_message(), HasSubstr("the snapshot needs 16 MiB"));
  ASSERT_OK_AND_ASSIGN(sim::SimState state, pool->sim->State());
  EXPECT_EQ(state.snapshots(), 0u);
}

TEST_F(VmBackupJobFaultTest, ASpecWithUnsafePathsTouchesNothing) {
  // A job spec arrives over the network: its paths are checked before the
  // job touches the share or the pool.
  const std::string outside = testing::MakeTempDir("outside");
  struct Case {
    std::string backup_dir;
    std::string vm_folder;
    std::string format;
    std::string why;
  };
  const std::vector<Case> cases = {
      {share_, "../escape", "", "vm_folder"},
      {share_, "a/b", "", "vm_folder"},
      {share_, "..", "", "vm_folder"},
      {share_, "", "", "vm_folder is empty"},
      {share_, std::string("x\0y", 3), "", "vm_folder"},
      {share_, std::string(256, 'v'), "", "256 bytes"},
      {"relative/share", "DEV-RH6", "", "not an absolute path"},
      {JoinPath(share_, "..", "outside"), "DEV-RH6", "", "\"..\""},
      {JoinPath(share_, "."), "DEV-RH6", "", "\".\""},
      {share_, "DEV-RH6", "backup-%s", "backup_dir_format"},
  };
  ASSERT_OK_AND_ASSIGN(auto share_before, testing::TreeDigest(share_));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.backup_dir + " | " + c.vm_folder);
    v1::JobSpec spec = Spec("DEV-RH6");
    spec.set_backup_dir(c.backup_dir);
    spec.set_vm_folder(c.vm_folder);
    spec.set_backup_dir_format(c.format);
    const v1::JobStatus st = RunVmBackupJob(ContextFor("xcp-host3"), spec, {});
    EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
    EXPECT_EQ(st.status_token(), "BAD-JOB");
    EXPECT_EQ(st.error_step(), "check job");
    EXPECT_THAT(st.error_message(), HasSubstr(c.why));
    ExpectNothingLeftInThePool();
  }
  ASSERT_OK_AND_ASSIGN(auto share_after, testing::TreeDigest(share_));
  EXPECT_EQ(share_after, share_before);
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> stray, fs_.ListDir(outside));
  EXPECT_THAT(stray, IsEmpty());
}

// Strings from the pool that become path components (device, userdevice,
// VIF uuid) are sanitised: a hostile userdevice cannot leave the folder.
TEST(VmBackupJobPoolStringsTest, AHostileUserdeviceStaysInsideTheBackup) {
  std::unique_ptr<OwnPool> pool = OwnPool::Start(R"({
      "credentials": {"username": "root", "password": "pw"},
      "hosts": [{"name_label": "h1", "master": true}],
      "srs": [{"name_label": "nfs", "type": "nfs", "shared": true}],
      "networks": [{"name_label": "net0"}],
      "vms": [{"name_label": "twins", "resident_on": "h1",
               "vifs": [{"device": "0", "network": "net0"},
                        {"device": "0", "network": "net0"}],
               "disks": [{"userdevice": "0", "device": "xvda", "size": "1048576", "sr": "nfs"},
                         {"userdevice": "../../../escape", "device": "xvda",
                          "size": "1048576", "sr": "nfs"}]}]})");
  ASSERT_NE(pool, nullptr);
  PosixFilesystem& fs = pool->fs;
  const std::string top = testing::MakeTempDir("hostile");
  const std::string share = JoinPath(top, "a", "b", "share");
  ASSERT_OK(fs.CreateDir(JoinPath(top, "a")));
  ASSERT_OK(fs.CreateDir(JoinPath(top, "a", "b")));
  ASSERT_OK(fs.CreateDir(share));
  const v1::JobSpec spec = pool->Spec("twins", share);
  const v1::JobStatus st = RunVmBackupJob(pool->context, spec, {});
  ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
  // Everything the job wrote is inside the share.
  ASSERT_OK_AND_ASSIGN(auto tree, testing::TreeDigest(top));
  for (const auto& [path, digest] : tree) {
    EXPECT_TRUE(absl::StartsWith(path, "a/b/share/") || path == "a/" ||
                path == "a/b/" || path == "a/b/share/")
        << path;
  }
  // Two disk folders and two VIF files, each one path component.
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries,
                       fs.ListDir(st.backup_folder()));
  int disks = 0;
  for (const DirEntry& e : entries) {
    if (absl::StartsWith(e.name, "DISK-")) {
      ++disks;
      EXPECT_OK(
          fs.Stat(JoinPath(st.backup_folder(), e.name, "vbd.cfg")).status());
    }
  }
  EXPECT_EQ(disks, 2);
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> vifs,
                       fs.ListDir(JoinPath(st.backup_folder(), "VIFs")));
  EXPECT_EQ(vifs.size(), 2u);
}

// An XVA that lacks one of the VM's disks is never committed: the simulator,
// like XAPI, exports no data for a VDI on an ISO SR, so a data disk placed
// on one is missing from the export.
TEST(VmBackupJobMissingDiskTest, AnExportWithoutOneOfTheDisksFails) {
  std::unique_ptr<OwnPool> pool = OwnPool::Start(R"({
      "credentials": {"username": "root", "password": "pw"},
      "hosts": [{"name_label": "h1", "master": true}],
      "srs": [{"name_label": "nfs", "type": "nfs", "shared": true},
              {"name_label": "isos", "type": "iso", "shared": true}],
      "vms": [{"name_label": "two-disks", "resident_on": "h1",
               "disks": [{"size": "1048576", "sr": "nfs"},
                         {"size": "2097152", "sr": "isos"}]}]})");
  ASSERT_NE(pool, nullptr);
  ASSERT_OK_AND_ASSIGN(sim::SimState before, pool->sim->State());
  const v1::JobSpec spec =
      pool->Spec("two-disks", testing::MakeTempDir("share"));
  const v1::JobStatus st = RunVmBackupJob(pool->context, spec, {});
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED) << st.DebugString();
  EXPECT_EQ(st.status_token(), "VM-EXPORT-FAIL");
  EXPECT_THAT(st.error_message(), HasSubstr("ova.xml has no disk xvdb"));
  ASSERT_OK_AND_ASSIGN(
      std::vector<BackupEntry> backups,
      ListBackups(pool->fs, JoinPath(spec.backup_dir(), spec.vm_folder())));
  EXPECT_THAT(backups, IsEmpty());
  ASSERT_OK_AND_ASSIGN(sim::SimState after, pool->sim->State());
  EXPECT_EQ(after.snapshots(), before.snapshots());
  EXPECT_EQ(after.snapshot_vdis(), before.snapshot_vdis());
}

// A disk whose first bytes are an HTTP error response, as XAPI writes one
// into a 200 body (xen-api #4603), is still a disk: backed up by vdi-export
// raw and by vm-export, byte for byte. The bytes are put on the disk through
// XAPI's own upload handler, /import_raw_vdi.
TEST(VmBackupJobLookalikeTest, ADiskThatStartsLikeAnErrorPageIsBackedUp) {
  std::unique_ptr<OwnPool> pool = OwnPool::Start(R"({
      "credentials": {"username": "root", "password": "pw"},
      "hosts": [{"name_label": "h1", "master": true}],
      "srs": [{"name_label": "nfs", "type": "nfs", "shared": true}],
      "vms": [{"name_label": "lookalike", "resident_on": "h1",
               "disks": [{"size": "4194304", "sr": "nfs"}]}]})");
  ASSERT_NE(pool, nullptr);
  XmlRpcXenApiClient* client = pool->client.get();
  PosixFilesystem& fs = pool->fs;
  const VmRecord vm = pool->Vm("lookalike");
  ASSERT_EQ(vm.vbds.size(), 1u);
  ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client->GetVbd(vm.vbds[0]));
  ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client->GetVdi(vbd.vdi));
  // XAPI's error response of xen-api #4603, then more of the disk.
  const std::string page =
      "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
      "occurred; please wait a while and try again. If the problem persists, "
      "please contact your support representative.<h1> Additional "
      "information </h1>SR_BACKEND_FAILURE_46: [ ; The VDI is not available "
      "[opterr=VDI 929df5ec-a9b5-4f40-8fbe-636509070c03 not detached "
      "cleanly];  ]</body></html>";
  const std::string head = absl::StrCat(
      "HTTP/1.1 500 Internal Error\r\ncontent-length: ", page.size(),
      "\r\ncontent-type:text/html\r\nconnection:close\r\n"
      "cache-control:no-cache, no-store\r\n\r\n",
      page);
  const std::string dir = testing::MakeTempDir("lookalike");
  const std::string upload = JoinPath(dir, "head.bin");
  ASSERT_OK(WriteNewFile(fs, upload, head));
  ASSERT_OK_AND_ASSIGN(std::string session, client->SessionRef());
  const testing::CommandResult put = testing::RunCommand(
      {"curl", "-sS", "-f", "-T", upload, "-b",
       absl::StrCat("session_id=", session),
       absl::StrCat(pool->sim->host_url("h1"),
                    "/import_raw_vdi?format=raw&vdi=", vdi.uuid)});
  ASSERT_EQ(put.exit_code, 0) << put.output;
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo info, pool->sim->Vdi(vdi.uuid));

  for (v1::ExportKind kind : {v1::EXPORT_KIND_VDI, v1::EXPORT_KIND_VM}) {
    SCOPED_TRACE(ExportKindName(kind));
    v1::JobSpec spec = pool->Spec("lookalike", dir);
    spec.set_job_id(absl::StrCat("r-", ExportKindName(kind)));
    spec.set_kind(kind);
    spec.set_vdi_format(v1::VDI_FORMAT_RAW);
    spec.set_vm_folder(std::string(ExportKindName(kind)));
    const v1::JobStatus st = RunVmBackupJob(pool->context, spec, {});
    ASSERT_EQ(st.phase(), v1::JOB_PHASE_SUCCEEDED) << st.DebugString();
    if (kind == v1::EXPORT_KIND_VDI) {
      const std::string raw = JoinPath(st.backup_folder(), "lookalike.raw");
      ASSERT_OK_AND_ASSIGN(std::string sha, testing::FileSha256(raw));
      EXPECT_EQ(sha, info.sha256());
      ASSERT_OK_AND_ASSIGN(std::string start, fs.ReadFile(raw, 8 << 20));
      EXPECT_TRUE(absl::StartsWith(start, "HTTP/1.1 500 Internal Error"));
    } else {
      ASSERT_OK_AND_ASSIGN(auto disks,
                           testing::XvaDiskSha256s(
                               JoinPath(st.backup_folder(), "lookalike.xva")));
      ASSERT_EQ(disks.size(), 1u);
      EXPECT_EQ(disks.begin()->second, info.sha256());
    }
  }
}

}  // namespace
}  // namespace vmb::agent
