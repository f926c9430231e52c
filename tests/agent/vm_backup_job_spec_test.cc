// SPDX-License-Identifier: Apache-2.0
// Hostile job specs: a spec arrives over the network, and one that is
// malformed or made to escape the share is refused before the job touches
// the share or the pool.
#include <functional>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "agent/vm_backup_job.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/fakes/fake_xml_rpc_transport.h"
#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::vmb::testing::FakeXmlRpcTransport;
using ::vmb::testing::FaultyFilesystem;
using ::vmb::testing::StatusIs;

constexpr char kVmUuid[] = "0b4e7f57-1c55-4a8b-9a3a-6a1f0e6e0f11";

class VmBackupJobSpecTest : public ::testing::Test {
 protected:
  VmBackupJobSpecTest() {
    auto transport = std::make_unique<FakeXmlRpcTransport>();
    transport_ = transport.get();
    XmlRpcXenApiClient::Options o;
    o.url = "https://10.0.0.1";
    o.session_source = []() -> absl::StatusOr<std::string> {
      return std::string("OpaqueRef:handed-over");
    };
    client_ = std::make_unique<XmlRpcXenApiClient>(o, std::move(transport));
  }

  // A good spec of a distributed run.
  v1::JobSpec Good() const {
    v1::JobSpec spec;
    spec.set_job_id("20261126-030001-4f2a-7");
    spec.set_run_id("20261126-030001-4f2a");
    spec.set_attempt(2);
    spec.set_fencing_token(9);
    spec.set_vm_uuid(kVmUuid);
    spec.set_kind(v1::EXPORT_KIND_VM);
    spec.set_backup_dir(share_);
    spec.set_vm_folder("PROD-ubuntu14");
    spec.set_max_backups(2);
    spec.set_master_url("https://10.0.0.1");
    spec.set_data_url("http://[fd00::2]:80");
    return spec;
  }

  // Runs the job on a share that records every call.
  v1::JobStatus Run(const v1::JobSpec& spec, FaultyFilesystem& fs) {
    JobContext c;
    c.xapi = client_.get();
    c.fs = &fs;
    c.clock = SystemClock::Get();
    c.data_url = "http://10.0.0.2";
    c.agent_id = "agent-1";
    return RunVmBackupJob(c, spec, {});
  }

  FakeXmlRpcTransport* transport_;  // owned by client_
  std::unique_ptr<XmlRpcXenApiClient> client_;
  const std::string share_ = testing::MakeTempDir("share");
};

TEST_F(VmBackupJobSpecTest, GoodSpecsPass) {
  EXPECT_OK(CheckJobSpec(Good()));
  // The standalone run's: job_id "<run_id>/<vm_uuid>", no token, no URLs.
  v1::JobSpec standalone = Good();
  standalone.set_job_id(absl::StrCat(standalone.run_id(), "/", kVmUuid));
  standalone.set_attempt(1);
  standalone.set_fencing_token(0);
  standalone.clear_master_url();
  standalone.clear_data_url();
  EXPECT_OK(CheckJobSpec(standalone));
  // Upper-case hex, a port, an IPv6 host, the other folder pattern.
  v1::JobSpec other = Good();
  other.set_vm_uuid("0B4E7F57-1C55-4A8B-9A3A-6A1F0E6E0F11");
  other.set_master_url("http://xcp-master.example.com:8080");
  other.set_backup_dir_format("backup-YYYY-MM-DD-(HH-MM-SS)");
  other.set_kind(v1::EXPORT_KIND_VDI);
  other.set_vdi_format(v1::VDI_FORMAT_VHD);
  EXPECT_OK(CheckJobSpec(other));
  // A job with a good spec does go on to the pool: what the test below
  // counts would have been seen.
  FaultyFilesystem fs;
  const v1::JobStatus st = Run(Good(), fs);
  EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(st.error_step(), "find VM");
  EXPECT_THAT(transport_->methods(), Not(IsEmpty()));
}

struct HostileCase {
  std::string name;
  std::function<void(v1::JobSpec&)> edit;
  std::string why;  // what the one-line reason must contain
};

std::vector<HostileCase> HostileCases(const std::string& share) {
  const std::string long_id(129, 'a');
  return {
      {"empty job_id", [](v1::JobSpec& s) { s.clear_job_id(); },
       "job_id is empty"},
      {"long job_id", [long_id](v1::JobSpec& s) { s.set_job_id(long_id); },
       "job_id is 129 bytes"},
      {"job_id with /", [](v1::JobSpec& s) { s.set_job_id("run/../../x"); },
       "job_id"},
      {"job_id naming another VM",
       [](v1::JobSpec& s) {
         s.set_job_id(
             absl::StrCat(s.run_id(), "/1b4e7f57-1c55-4a8b-9a3a-6a1f0e6e0f11"));
       },
       "job_id"},
      {"job_id with \\", [](v1::JobSpec& s) { s.set_job_id("a\\b"); },
       "job_id"},
      {"job_id with a control character",
       [](v1::JobSpec& s) { s.set_job_id("a\x1b[2Jb"); }, "job_id"},
      {"job_id with NUL",
       [](v1::JobSpec& s) { s.set_job_id(std::string("a\0b", 3)); }, "job_id"},
      {"job_id with a space", [](v1::JobSpec& s) { s.set_job_id("a b"); },
       "job_id"},
      {"job_id with a newline", [](v1::JobSpec& s) { s.set_job_id("a\nb"); },
       "job_id"},
      {"job_id with a no-break space",
       [](v1::JobSpec& s) { s.set_job_id("a\xc2\xa0z"); }, "job_id"},
      {"job_id ..", [](v1::JobSpec& s) { s.set_job_id(".."); },
       "job_id \"..\" holds \"..\""},
      {"job_id with ..", [](v1::JobSpec& s) { s.set_job_id("a..b"); },
       "job_id"},
      {"empty run_id", [](v1::JobSpec& s) { s.clear_run_id(); },
       "run_id is empty"},
      {"long run_id", [long_id](v1::JobSpec& s) { s.set_run_id(long_id); },
       "run_id is 129 bytes"},
      {"run_id with /", [](v1::JobSpec& s) { s.set_run_id("r/1"); }, "run_id"},
      {"run_id with a tab", [](v1::JobSpec& s) { s.set_run_id("r\t1"); },
       "run_id"},
      {"run_id ..", [](v1::JobSpec& s) { s.set_run_id(".."); }, "run_id"},
      {"empty vm_uuid", [](v1::JobSpec& s) { s.clear_vm_uuid(); },
       "vm_uuid \"\" is not a UUID"},
      {"vm_uuid a name", [](v1::JobSpec& s) { s.set_vm_uuid("PROD-ubuntu14"); },
       "vm_uuid"},
      {"vm_uuid a path",
       [](v1::JobSpec& s) { s.set_vm_uuid("../../../../../etc/passwd/x"); },
       "vm_uuid"},
      {"vm_uuid not hex",
       [](v1::JobSpec& s) {
         s.set_vm_uuid("0b4e7f57-1c55-4a8b-9a3a-6a1f0e6e0f1g");
       },
       "vm_uuid"},
      {"vm_uuid without dashes",
       [](v1::JobSpec& s) {
         s.set_vm_uuid("0b4e7f571c554a8b9a3a6a1f0e6e0f11abcd");
       },
       "vm_uuid"},
      {"attempt 0 with a token", [](v1::JobSpec& s) { s.set_attempt(0); },
       "attempt is 0 with fencing_token 9"},
      {"kind unspecified",
       [](v1::JobSpec& s) { s.set_kind(v1::EXPORT_KIND_UNSPECIFIED); },
       "kind is unspecified"},
      {"kind unknown",
       [](v1::JobSpec& s) { s.set_kind(static_cast<v1::ExportKind>(7)); },
       "kind 7 is unknown"},
      {"compression unknown",
       [](v1::JobSpec& s) {
         s.set_compression(static_cast<v1::Compression>(9));
       },
       "compression 9"},
      {"vdi_format unknown",
       [](v1::JobSpec& s) { s.set_vdi_format(static_cast<v1::VdiFormat>(5)); },
       "vdi_format 5"},
      {"backup_dir relative",
       [](v1::JobSpec& s) { s.set_backup_dir("snapshots/BACKUPS"); },
       "backup_dir"},
      {"backup_dir empty", [](v1::JobSpec& s) { s.clear_backup_dir(); },
       "backup_dir"},
      {"backup_dir with ..",
       [share](v1::JobSpec& s) { s.set_backup_dir(share + "/../outside"); },
       "backup_dir"},
      {"backup_dir with .",
       [share](v1::JobSpec& s) { s.set_backup_dir(share + "/./x"); },
       "backup_dir"},
      {"backup_dir with //",
       [share](v1::JobSpec& s) { s.set_backup_dir(share + "//x"); },
       "backup_dir"},
      {"backup_dir with a trailing /",
       [share](v1::JobSpec& s) { s.set_backup_dir(share + "/"); },
       "backup_dir"},
      {"vm_folder absolute", [](v1::JobSpec& s) { s.set_vm_folder("/etc"); },
       "vm_folder"},
      {"vm_folder .", [](v1::JobSpec& s) { s.set_vm_folder("."); },
       "vm_folder"},
      {"vm_folder ..", [](v1::JobSpec& s) { s.set_vm_folder(".."); },
       "vm_folder"},
      {"vm_folder with /", [](v1::JobSpec& s) { s.set_vm_folder("a/b"); },
       "vm_folder"},
      {"vm_folder empty", [](v1::JobSpec& s) { s.clear_vm_folder(); },
       "vm_folder is empty"},
      {"backup_dir_format unknown",
       [](v1::JobSpec& s) { s.set_backup_dir_format("../%Y"); },
       "backup_dir_format"},
      {"master_url not http",
       [](v1::JobSpec& s) { s.set_master_url("ftp://10.0.0.1"); },
       "master_url has the scheme \"ftp\""},
      {"master_url without a scheme",
       [](v1::JobSpec& s) { s.set_master_url("10.0.0.1:443"); }, "master_url"},
      {"master_url without a host",
       [](v1::JobSpec& s) { s.set_master_url("https://"); }, "master_url"},
      {"master_url with a path",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1/x"); },
       "master_url has a path"},
      {"master_url with a lone /",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1/"); },
       "master_url has a path"},
      {"master_url with a query",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1?a=b"); },
       "master_url"},
      {"master_url with a fragment",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1#top"); },
       "master_url"},
      {"master_url with user info",
       [](v1::JobSpec& s) { s.set_master_url("https://root:s3cret@10.0.0.1"); },
       "master_url holds user info"},
      {"master_url with a bad port",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1:99999"); },
       "master_url has a port"},
      {"master_url with port 0",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1:0"); },
       "master_url has a port"},
      {"master_url with a space",
       [](v1::JobSpec& s) { s.set_master_url("https://10.0.0.1 x"); },
       "master_url"},
      {"data_url not http",
       [](v1::JobSpec& s) { s.set_data_url("file:///etc/passwd"); },
       "data_url"},
      {"data_url with a query",
       [](v1::JobSpec& s) {
         s.set_data_url("http://10.0.0.2?session_id=OpaqueRef:abc");
       },
       "data_url has a path, query or fragment"},
      {"data_url with user info",
       [](v1::JobSpec& s) { s.set_data_url("http://u:s3cret@10.0.0.2"); },
       "data_url"},
  };
}

TEST_F(VmBackupJobSpecTest, HostileSpecsAreRefusedBeforeAnythingIsTouched) {
  for (const HostileCase& c : HostileCases(share_)) {
    SCOPED_TRACE(c.name);
    v1::JobSpec spec = Good();
    c.edit(spec);
    EXPECT_THAT(CheckJobSpec(spec),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)));
    FaultyFilesystem fs;
    const size_t xapi_calls_before = transport_->calls().size();
    const v1::JobStatus st = Run(spec, fs);
    EXPECT_EQ(st.phase(), v1::JOB_PHASE_FAILED);
    EXPECT_EQ(st.status_token(), "BAD-JOB");
    EXPECT_EQ(st.error_step(), "check job");
    EXPECT_THAT(st.error_message(), HasSubstr(c.why));
    EXPECT_FALSE(absl::StrContains(st.error_message(), "\n"))
        << st.error_message();
    EXPECT_FALSE(absl::StrContains(st.error_message(), "s3cret"));
    EXPECT_FALSE(absl::StrContains(st.error_message(), "OpaqueRef"));
    EXPECT_EQ(st.backup_folder(), "");
    EXPECT_THAT(fs.calls(), IsEmpty());
    EXPECT_EQ(transport_->calls().size(), xapi_calls_before);
  }
  ASSERT_OK_AND_ASSIGN(std::vector<DirEntry> entries,
                       PosixFilesystem::Get()->ListDir(share_));
  EXPECT_THAT(entries, IsEmpty());
}

}  // namespace
}  // namespace vmb::agent
