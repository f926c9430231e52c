// SPDX-License-Identifier: Apache-2.0
// The XenAPI client against a real xapi-sim process on loopback.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/base/redact.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/xenapi_error.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "common/xapi/xmlrpc_codec.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::vmb::testing::SimProcess;
using ::vmb::testing::StatusIs;

class XenApiClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = SimProcess::Start();
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
  }

  // The ref of the (non-template) VM called `name`.
  std::string VmRef(const std::string& name) {
    auto ref = vmb::testing::VmRefByName(*client_, name);
    EXPECT_OK(ref.status());
    return ref.ok() ? *ref : "";
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
};

TEST_F(XenApiClientTest, LogsInAndOut) {
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
  EXPECT_THAT(session, ::testing::StartsWith("OpaqueRef:"));
  ASSERT_OK_AND_ASSIGN(auto state, sim_->State());
  EXPECT_EQ(state.sessions(), 1u);
  ASSERT_OK(client_->Logout());
  ASSERT_OK_AND_ASSIGN(state, sim_->State());
  EXPECT_EQ(state.sessions(), 0u);
}

TEST_F(XenApiClientTest, DestructionLogsOut) {
  ASSERT_OK(client_->Login());
  client_.reset();
  ASSERT_OK_AND_ASSIGN(auto state, sim_->State());
  EXPECT_EQ(state.sessions(), 0u);
}

TEST_F(XenApiClientTest, WrongPasswordIsUnauthenticatedAndNeverEchoed) {
  auto client = sim_->NewClient("", "not-the-password");
  absl::Status s = client->Login();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_TRUE(IsXenApiError(s, "SESSION_AUTHENTICATION_FAILED"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("not-the-password")));
}

TEST_F(XenApiClientTest, FollowsHostIsSlaveToTheMaster) {
  auto client = sim_->NewClient(sim_->host_url("xcp-host3"));
  ASSERT_OK(client->Login());
  EXPECT_EQ(client->master_url(), sim_->master_url());
  ASSERT_OK_AND_ASSIGN(auto hosts, client->GetAllHosts());
  EXPECT_EQ(hosts.size(), 3u);
}

TEST_F(XenApiClientTest, CallsOnAPoolMemberGetHostIsSlave) {
  // A raw call to a member, with a valid session, is refused as XAPI does.
  ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
  auto member = sim_->NewClient(sim_->host_url("xcp-host2"));
  CurlXmlRpcTransport transport({});
  ASSERT_OK_AND_ASSIGN(
      std::string body,
      transport.Post(
          sim_->host_url("xcp-host2"),
          EncodeMethodCall("VM.get_all", {XmlRpcValue::String(session)})));
  EXPECT_THAT(body, HasSubstr("HOST_IS_SLAVE"));
  EXPECT_THAT(body, HasSubstr("127.0.0.2"));
}

TEST_F(XenApiClientTest, ParsesEveryRecordClass) {
  ASSERT_OK_AND_ASSIGN(auto pools, client_->GetAllPools());
  ASSERT_EQ(pools.size(), 1u);
  const PoolRecord& pool = pools.begin()->second;
  ASSERT_OK_AND_ASSIGN(auto hosts, client_->GetAllHosts());
  ASSERT_EQ(hosts.count(pool.master), 1u);
  EXPECT_EQ(hosts[pool.master].name_label, "xcp-host1");
  EXPECT_EQ(hosts[pool.master].address, "127.0.0.2");
  EXPECT_EQ(hosts[pool.master].software_version.at("product_version"), "7.2.0");
  ASSERT_OK_AND_ASSIGN(auto metrics, client_->GetAllHostMetrics());
  EXPECT_EQ(metrics.size(), 3u);
  for (const auto& [ref, m] : metrics) EXPECT_TRUE(m.live) << ref;

  ASSERT_OK_AND_ASSIGN(auto vms, client_->GetAllVms());
  int dom0 = 0, templates = 0, snapshots = 0, normal = 0;
  for (const auto& [ref, vm] : vms) {
    if (vm.is_control_domain) {
      ++dom0;
    } else if (vm.is_a_snapshot) {
      ++snapshots;
      EXPECT_TRUE(vm.is_a_template) << "snapshots are templates in XAPI";
      EXPECT_NE(vm.snapshot_of, std::string(kNullRef));
      EXPECT_GT(vm.snapshot_time, absl::UnixEpoch());
    } else if (vm.is_a_template) {
      ++templates;
    } else {
      ++normal;
    }
  }
  EXPECT_EQ(dom0, 3);
  EXPECT_EQ(snapshots, 1);
  EXPECT_EQ(templates, 1);
  EXPECT_EQ(normal, 14);

  ASSERT_OK_AND_ASSIGN(auto vbds, client_->GetAllVbds());
  ASSERT_OK_AND_ASSIGN(auto vdis, client_->GetAllVdis());
  ASSERT_OK_AND_ASSIGN(auto srs, client_->GetAllSrs());
  ASSERT_OK_AND_ASSIGN(auto pbds, client_->GetAllPbds());
  ASSERT_OK_AND_ASSIGN(auto vifs, client_->GetAllVifs());
  ASSERT_OK_AND_ASSIGN(auto networks, client_->GetAllNetworks());
  EXPECT_GE(networks.size(), 2u);
  EXPECT_FALSE(vifs.empty());
  // Every disk VBD of PROD-ubuntu14 resolves to a VDI on an SR the resident
  // host has attached; its CD drive is empty.
  const VmRecord& ubuntu = vms.at(VmRef("PROD-ubuntu14"));
  int disks = 0, cds = 0;
  for (const std::string& vbd_ref : ubuntu.vbds) {
    const VbdRecord& vbd = vbds.at(vbd_ref);
    if (vbd.type == "CD") {
      ++cds;
      EXPECT_TRUE(vbd.empty);
      EXPECT_EQ(vbd.vdi, std::string(kNullRef));
      continue;
    }
    ++disks;
    const VdiRecord& vdi = vdis.at(vbd.vdi);
    EXPECT_GE(vdi.virtual_size, 16 << 20);
    const SrRecord& sr = srs.at(vdi.sr);
    EXPECT_EQ(sr.type, "nfs");
    bool attached = false;
    for (const std::string& pbd : sr.pbds) {
      attached = attached || (pbds.at(pbd).host == ubuntu.resident_on &&
                              pbds.at(pbd).currently_attached);
    }
    EXPECT_TRUE(attached);
  }
  EXPECT_EQ(disks, 2);
  EXPECT_EQ(cds, 1);
  // A VM on a host-local SR.
  const VmRecord& local = vms.at(VmRef("DEV-local-build"));
  const VdiRecord& local_vdi = vdis.at(vbds.at(local.vbds[0]).vdi);
  EXPECT_FALSE(srs.at(local_vdi.sr).shared);
}

TEST_F(XenApiClientTest, GetByNameLabelReturnsTemplatesToo) {
  ASSERT_OK_AND_ASSIGN(auto refs, client_->GetVmsByNameLabel("PROD-ubuntu14"));
  EXPECT_EQ(refs.size(), 2u);
}

TEST_F(XenApiClientTest, SnapshotThenDestroyLeavesNothing) {
  const std::string vm = VmRef("DEV-RH6");
  ASSERT_OK_AND_ASSIGN(auto before, sim_->State());
  ASSERT_OK_AND_ASSIGN(std::string snap,
                       client_->SnapshotVm(vm, "vmbackup-test", {}));
  ASSERT_OK_AND_ASSIGN(VmRecord s, client_->GetVm(snap));
  EXPECT_TRUE(s.is_a_snapshot);
  EXPECT_TRUE(s.is_a_template);
  EXPECT_EQ(s.snapshot_of, vm);
  EXPECT_EQ(s.power_state, "Halted");
  EXPECT_EQ(s.resident_on, std::string(kNullRef));
  ASSERT_OK(client_->AddToOtherConfig("VM", snap, "vmbackup:run", "r1"));
  ASSERT_OK_AND_ASSIGN(s, client_->GetVm(snap));
  EXPECT_EQ(s.other_config.at("vmbackup:run"), "r1");
  EXPECT_TRUE(
      IsXenApiError(client_->AddToOtherConfig("VM", snap, "vmbackup:run", "r2"),
                    "MAP_DUPLICATE_KEY"));
  ASSERT_OK(client_->SetVmIsATemplate(snap, false));
  ASSERT_OK_AND_ASSIGN(s, client_->GetVm(snap));
  EXPECT_FALSE(s.is_a_template);
  ASSERT_OK_AND_ASSIGN(VmRecord source, client_->GetVm(vm));
  EXPECT_THAT(source.snapshots, ::testing::Contains(snap));

  // The snapshot's disks: collect them, destroy the VM, then the VDIs.
  std::vector<std::string> vdis;
  for (const std::string& vbd_ref : s.vbds) {
    ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(vbd_ref));
    if (vbd.vdi == kNullRef) continue;
    ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi(vbd.vdi));
    EXPECT_TRUE(vdi.is_a_snapshot);
    vdis.push_back(vbd.vdi);
  }
  ASSERT_FALSE(vdis.empty());
  ASSERT_OK(client_->DestroyVm(snap));
  // VM.destroy leaves the VDIs.
  for (const std::string& vdi : vdis) ASSERT_OK(client_->GetVdi(vdi).status());
  for (const std::string& vdi : vdis) ASSERT_OK(client_->DestroyVdi(vdi));
  EXPECT_THAT(client_->GetVm(snap).status(),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(auto after, sim_->State());
  EXPECT_EQ(after.snapshots(), before.snapshots());
  EXPECT_EQ(after.snapshot_vdis(), before.snapshot_vdis());
}

TEST_F(XenApiClientTest, DestroyingARunningVmIsRefused) {
  absl::Status s = client_->DestroyVm(VmRef("DEV-RH6"));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_TRUE(GetXenApiError(s).has_value());
  EXPECT_EQ(GetXenApiError(s)->code, "VM_BAD_POWER_STATE");
  ASSERT_EQ(GetXenApiError(s)->params.size(), 3u);
  EXPECT_EQ(GetXenApiError(s)->params[1], "halted");
  EXPECT_EQ(GetXenApiError(s)->params[2], "running");
}

TEST_F(XenApiClientTest, TasksCreateCancelDestroy) {
  ASSERT_OK_AND_ASSIGN(std::string task,
                       client_->CreateTask("vmbackup export", "test"));
  ASSERT_OK_AND_ASSIGN(TaskRecord t, client_->GetTask(task));
  EXPECT_EQ(t.status, TaskStatus::kPending);
  EXPECT_EQ(t.name_label, "vmbackup export");
  EXPECT_GT(t.created, absl::UnixEpoch());
  ASSERT_OK(client_->CancelTask(task));
  ASSERT_OK_AND_ASSIGN(t, client_->GetTask(task));
  EXPECT_EQ(t.status, TaskStatus::kCancelled);
  ASSERT_OK(client_->DestroyTask(task));
  EXPECT_TRUE(IsXenApiError(client_->GetTask(task).status(), "HANDLE_INVALID"));
}

TEST_F(XenApiClientTest, ErrorsKeepCodeAndParameters) {
  absl::Status s =
      client_->GetVm("OpaqueRef:00000000-0000-0000-0000-000000000000").status();
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kNotFound, HasSubstr("HANDLE_INVALID")));
  ASSERT_TRUE(GetXenApiError(s).has_value());
  EXPECT_EQ(GetXenApiError(s)->params,
            (std::vector<std::string>{
                "VM", "OpaqueRef:00000000-0000-0000-0000-000000000000"}));
  s = client_->GetVmByUuid("no-such-uuid").status();
  EXPECT_TRUE(IsXenApiError(s, "UUID_INVALID"));
}

TEST_F(XenApiClientTest, BadCallsGetXapisOwnErrors) {
  absl::Status s =
      client_->Call("VM.no_such_message", {}, CallKind::kIdempotent).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_EQ(GetXenApiError(s)->params,
            std::vector<std::string>{"VM.no_such_message"});
  s = client_->Call("VM.get_record", {}, CallKind::kIdempotent).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(GetXenApiError(s)->code, "MESSAGE_PARAMETER_COUNT_MISMATCH");
  EXPECT_EQ(GetXenApiError(s)->params,
            (std::vector<std::string>{"VM.get_record", "2", "1"}));
}

TEST_F(XenApiClientTest, SnapshotErrorsFromFaults) {
  const std::string vm = VmRef("PROD-ubuntu14");
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CALL_ERROR", "call": "VM.snapshot", "vm": "PROD-ubuntu14",
          "error": ["SR_BACKEND_FAILURE_44"], "times": 1})"));
  absl::Status s = client_->SnapshotVm(vm, "x", {}).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(GetXenApiError(s)->params,
            (std::vector<std::string>{"", "There is insufficient space", ""}));
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CALL_ERROR", "call": "VM.snapshot", "error": ["SR_FULL"], "times": 1})"));
  EXPECT_TRUE(
      IsXenApiError(client_->SnapshotVm(vm, "x", {}).status(), "SR_FULL"));
  ASSERT_OK(sim_->AddFault(R"({"kind": "CALL_ERROR", "call": "VM.snapshot",
                               "error": ["OTHER_OPERATION_IN_PROGRESS"], "times": 1})"));
  s = client_->SnapshotVm(vm, "x", {}).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(GetXenApiError(s)->params[0], "VM");
  // The faults were one-shot: the next snapshot works.
  ASSERT_OK(client_->SnapshotVm(vm, "x", {}).status());
}

TEST_F(XenApiClientTest, ReLogsInAfterSessionInvalidForIdempotentCalls) {
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string first, client_->SessionRef());
  // The next call finds every session gone, as after a toolstack restart.
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "SESSION_INVALID", "after_calls": 0, "times": 1})"));
  ASSERT_OK_AND_ASSIGN(auto hosts, client_->GetAllHosts());
  EXPECT_EQ(hosts.size(), 3u);
  ASSERT_OK_AND_ASSIGN(std::string second, client_->SessionRef());
  EXPECT_NE(first, second);
}

TEST_F(XenApiClientTest, DoesNotRepeatASnapshotAfterSessionInvalid) {
  const std::string vm = VmRef("DEV-RH6");
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "SESSION_INVALID", "after_calls": 0, "times": 1})"));
  absl::Status s = client_->SnapshotVm(vm, "once", {}).status();
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not repeated")));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(session)));
  ASSERT_OK_AND_ASSIGN(auto state, sim_->State());
  EXPECT_EQ(state.snapshots(), 1u) << "only the fixture's own snapshot";
  // The next call logs in again by itself.
  ASSERT_OK(client_->SnapshotVm(vm, "twice", {}).status());
}

TEST_F(XenApiClientTest, SessionInvalidAfterKCalls) {
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string first, client_->SessionRef());
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "SESSION_INVALID", "after_calls": 3, "times": 1})"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(client_->GetAllPools().status());
    ASSERT_OK_AND_ASSIGN(std::string now, client_->SessionRef());
    EXPECT_EQ(now, first) << "call " << i;
  }
  ASSERT_OK(client_->GetAllPools().status());  // the 4th finds its session gone
  ASSERT_OK_AND_ASSIGN(std::string after, client_->SessionRef());
  EXPECT_NE(after, first);
}

TEST_F(XenApiClientTest, SlowCallsHitTheCallTimeout) {
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "SLOW_CALL", "call": "host.get_all_records", "delay_ms": 3000})"));
  XmlRpcXenApiClient::Options o;
  o.url = sim_->master_url();
  o.password = sim_->password();
  CurlXmlRpcTransport::Options t;
  t.call_timeout = absl::Milliseconds(500);
  XmlRpcXenApiClient impatient(o, std::make_unique<CurlXmlRpcTransport>(t));
  EXPECT_THAT(impatient.GetAllHosts().status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_OK(impatient.GetAllPools().status());  // other calls are not slowed
  // Without the short timeout the slow call completes.
  EXPECT_OK(client_->GetAllHosts().status());
}

TEST_F(XenApiClientTest, SessionRefNeverAppearsInErrors) {
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "SESSION_INVALID", "after_calls": 0, "times": 2})"));
  absl::Status s = client_->GetAllHosts().status();
  // Two invalidations in a row: the retry fails too.
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("OpaqueRef:")));
}

// Whatever path a session ref or the password takes into a log line, it is
// redacted there while the client holds it.
TEST_F(XenApiClientTest, TheSessionAndThePasswordAreRedactedFromLogLines) {
  ASSERT_OK(client_->Login());
  ASSERT_OK_AND_ASSIGN(std::string session, client_->SessionRef());
  ASSERT_FALSE(sim_->password().empty());
  EXPECT_EQ(
      Redact(absl::StrCat("session ", session, " password ", sim_->password())),
      "session OpaqueRef:(session) password (password)");
  const std::string password = sim_->password();
  client_.reset();
  // Gone with the client (and its session with it).
  EXPECT_EQ(Redact(password), password);
}

}  // namespace
}  // namespace vmb
