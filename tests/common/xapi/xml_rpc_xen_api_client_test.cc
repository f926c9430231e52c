// SPDX-License-Identifier: Apache-2.0
// XmlRpcXenApiClient against canned replies: the exact calls it makes, and
// how it parses replies recorded from real XenServer hosts.
#include "common/xapi/xml_rpc_xen_api_client.h"

#include <future>
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/xenapi_error.h"
#include "tests/fakes/fake_xml_rpc_transport.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::vmb::testing::FakeXmlRpcTransport;
using ::vmb::testing::StatusIs;

constexpr char kSession[] = "OpaqueRef:11111111-2222-3333-4444-555555555555";

class XmlRpcXenApiClientTest : public ::testing::Test {
 protected:
  XmlRpcXenApiClientTest() {
    auto transport = std::make_unique<FakeXmlRpcTransport>();
    fake_ = transport.get();
    XmlRpcXenApiClient::Options o;
    o.url = "http://10.0.0.3:8080/";
    o.password = "s3cret";
    o.originator = "vmbackup-test";
    client_ = std::make_unique<XmlRpcXenApiClient>(o, std::move(transport));
    fake_->AddSuccess("session.logout", XmlRpcValue::String(""));
  }

  void LoginOk(const std::string& session = kSession) {
    fake_->AddSuccess("session.login_with_password",
                      XmlRpcValue::String(session));
  }

  FakeXmlRpcTransport* fake_;  // owned by client_
  std::unique_ptr<XmlRpcXenApiClient> client_;
};

TEST_F(XmlRpcXenApiClientTest, LoginSendsUserPasswordVersionOriginator) {
  LoginOk();
  ASSERT_OK(client_->Login());
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].url, "http://10.0.0.3:8080");
  EXPECT_EQ(calls[0].method, "session.login_with_password");
  ASSERT_EQ(calls[0].params.size(), 4u);
  EXPECT_EQ(calls[0].params[0].text(), "root");
  EXPECT_EQ(calls[0].params[1].text(), "s3cret");
  EXPECT_EQ(calls[0].params[3].text(), "vmbackup-test");
}

TEST_F(XmlRpcXenApiClientTest, FollowsHostIsSlaveOnceKeepingSchemeAndPort) {
  fake_->AddFailure("session.login_with_password",
                    {"HOST_IS_SLAVE", "10.0.0.1"});
  LoginOk();
  ASSERT_OK(client_->Login());
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].url, "http://10.0.0.1:8080");
  EXPECT_EQ(client_->master_url(), "http://10.0.0.1:8080");
}

TEST_F(XmlRpcXenApiClientTest, HostIsSlaveTwiceIsAnError) {
  fake_->AddFailure("session.login_with_password",
                    {"HOST_IS_SLAVE", "10.0.0.1"});
  EXPECT_THAT(client_->Login(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("HOST_IS_SLAVE")));
  EXPECT_EQ(fake_->calls().size(), 2u);
}

TEST(ReplaceUrlHostTest, KeepsSchemeAndPortAndBracketsIpv6) {
  EXPECT_EQ(ReplaceUrlHost("http://localhost", "10.0.0.1"), "http://10.0.0.1");
  EXPECT_EQ(ReplaceUrlHost("https://10.0.0.3:8443", "10.0.0.1"),
            "https://10.0.0.1:8443");
  EXPECT_EQ(ReplaceUrlHost("https://[fe80::1]:443", "fd00::2"),
            "https://[fd00::2]:443");
  EXPECT_EQ(ReplaceUrlHost("https://[fe80::1]", "10.0.0.1"),
            "https://10.0.0.1");
}

TEST_F(XmlRpcXenApiClientTest, RetriesIdempotentCallsOnceAfterSessionInvalid) {
  LoginOk();
  fake_->AddFailure("host.get_all_records", {"SESSION_INVALID", kSession});
  fake_->AddSuccess("host.get_all_records", XmlRpcValue::MakeStruct());
  ASSERT_OK(client_->GetAllHosts().status());
  EXPECT_THAT(
      fake_->methods(),
      ElementsAre("session.login_with_password", "host.get_all_records",
                  "session.login_with_password", "host.get_all_records"));
}

TEST_F(XmlRpcXenApiClientTest, DoesNotRepeatASnapshotAfterSessionInvalid) {
  LoginOk();
  fake_->AddFailure("VM.snapshot", {"SESSION_INVALID", kSession});
  absl::Status s = client_->SnapshotVm("OpaqueRef:vm", "snap", {}).status();
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not idempotent")));
  EXPECT_THAT(fake_->methods(),
              ElementsAre("session.login_with_password", "VM.snapshot"));
}

// An agent's client: the coordinator's session, never a login of its own.
class HandedOverSessionTest : public ::testing::Test {
 protected:
  HandedOverSessionTest() {
    auto transport = std::make_unique<FakeXmlRpcTransport>();
    fake_ = transport.get();
    XmlRpcXenApiClient::Options o;
    o.url = "http://10.0.0.1";
    o.session_source = [this]() -> absl::StatusOr<std::string> {
      absl::MutexLock lock(&mu_);
      return session_;
    };
    client_ = std::make_unique<XmlRpcXenApiClient>(o, std::move(transport));
  }
  void SetSession(const std::string& s) {
    absl::MutexLock lock(&mu_);
    session_ = s;
  }

  absl::Mutex mu_;
  std::string session_ ABSL_GUARDED_BY(mu_) = kSession;
  FakeXmlRpcTransport* fake_;  // owned by client_
  std::unique_ptr<XmlRpcXenApiClient> client_;
};

TEST_F(HandedOverSessionTest, UsesTheSessionAndNeverLogsInOrOut) {
  fake_->AddSuccess("host.get_all_records", XmlRpcValue::MakeStruct());
  ASSERT_OK(client_->Login());
  ASSERT_OK(client_->GetAllHosts().status());
  ASSERT_OK(client_->Logout());
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "host.get_all_records");
  EXPECT_EQ(calls[0].params[0].text(), kSession);
}

TEST_F(HandedOverSessionTest, SessionInvalidRepeatsOnlyWithANewSession) {
  fake_->AddFailure("host.get_all_records", {"SESSION_INVALID", kSession});
  EXPECT_THAT(client_->GetAllHosts().status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       ::testing::AllOf(HasSubstr("handed over"),
                                        Not(HasSubstr(kSession)))));
  EXPECT_EQ(fake_->calls().size(), 1u);

  // The coordinator logged in again; the handed-over session changed.
  fake_->AddFailure("host.get_all_records", {"SESSION_INVALID", kSession});
  fake_->AddSuccess("host.get_all_records", XmlRpcValue::MakeStruct());
  fake_->Hold("host.get_all_records");
  std::thread renew([this] {
    ASSERT_TRUE(
        fake_->WaitForHeldCall("host.get_all_records", absl::Seconds(60)));
    SetSession("OpaqueRef:new");
    fake_->Release("host.get_all_records");
  });
  ASSERT_OK(client_->GetAllHosts().status());
  renew.join();
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[2].params[0].text(), "OpaqueRef:new");
}

TEST_F(HandedOverSessionTest, NoSessionYetIsUnavailable) {
  SetSession("");
  EXPECT_THAT(client_->GetAllHosts().status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(XmlRpcXenApiClientTest, SnapshotSendsIgnoreVdisOnlyWhenGiven) {
  LoginOk();
  fake_->AddSuccess("VM.snapshot", XmlRpcValue::String("OpaqueRef:snap"));
  ASSERT_OK(client_->SnapshotVm("OpaqueRef:vm", "n", {}).status());
  ASSERT_OK(
      client_->SnapshotVm("OpaqueRef:vm", "n", {"OpaqueRef:vdi"}).status());
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[1].params.size(), 3u);
  ASSERT_EQ(calls[2].params.size(), 4u);
  EXPECT_EQ(calls[2].params[3].items()[0].text(), "OpaqueRef:vdi");
}

TEST_F(XmlRpcXenApiClientTest, SessionRefIsRedactedFromErrors) {
  LoginOk();
  fake_->AddFailure("VM.get_record", {"SESSION_INVALID", kSession});
  absl::Status s = client_->GetVm("OpaqueRef:vm").status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("11111111")));
}

TEST_F(XmlRpcXenApiClientTest, PasswordNeverAppearsInALoginError) {
  fake_->AddFailure(
      "session.login_with_password",
      {"SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"});
  absl::Status s = client_->Login();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("s3cret")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("as root"));
}

TEST_F(XmlRpcXenApiClientTest, MalformedRepliesNameTheMethod) {
  LoginOk();
  fake_->AddRawReply("VM.get_all_records", "<methodResponse><params>");
  EXPECT_THAT(client_->GetAllVms().status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("VM.get_all_records")));
  fake_->AddRawReply("VM.get_record",
                     EncodeMethodResponse(XmlRpcValue::String("no envelope")));
  EXPECT_THAT(client_->GetVm("OpaqueRef:x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no Status member")));
  XmlRpcValue bad_record = XmlRpcValue::MakeStruct();
  bad_record.AddMember("uuid", XmlRpcValue::String("u"));
  bad_record.AddMember("power_state", XmlRpcValue::MakeArray());
  fake_->AddSuccess("VM.get_by_uuid", XmlRpcValue::MakeStruct());
  EXPECT_THAT(client_->GetVmByUuid("u").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected a string")));
  fake_->AddSuccess("VM.get_record", bad_record);
  EXPECT_THAT(
      client_->GetVm("OpaqueRef:bad").status(),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("bad XenAPI VM record OpaqueRef:bad: field power_state")));
}

TEST_F(XmlRpcXenApiClientTest, TransportErrorsPassThroughWithTheMethod) {
  fake_->AddTransportError("session.login_with_password",
                           absl::UnavailableError("connection refused"));
  EXPECT_THAT(client_->Login(), StatusIs(absl::StatusCode::kUnavailable,
                                         HasSubstr("connection refused")));
}

TEST_F(XmlRpcXenApiClientTest, LogoutSendsTheSession) {
  LoginOk();
  ASSERT_OK(client_->Login());
  ASSERT_OK(client_->Logout());
  auto calls = fake_->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].method, "session.logout");
  EXPECT_EQ(calls[1].params[0].text(), kSession);
  ASSERT_OK(client_->Logout());  // a no-op without a session
  EXPECT_EQ(fake_->calls().size(), 2u);
}

// Replies recorded from a real XenServer 6.2 host parse into records.
class RecordedRepliesTest : public XmlRpcXenApiClientTest {
 protected:
  void Replay(const std::string& method, const std::string& file) {
    auto body = vmb::testing::ReadTestData("real-xapi/xs620-rpc/" + file);
    ASSERT_OK(body.status());
    fake_->AddRawReply(method, *body);
  }
};

TEST_F(RecordedRepliesTest, VmGetAllRecordsFromXenServer62) {
  LoginOk();
  Replay("VM.get_all_records", "VM.get_all_records.0.xml");
  ASSERT_OK_AND_ASSIGN(auto vms, client_->GetAllVms());
  EXPECT_EQ(vms.size(), 74u);
  int templates = 0, snapshots = 0, dom0 = 0, normal = 0;
  for (const auto& [ref, vm] : vms) {
    EXPECT_FALSE(vm.uuid.empty());
    if (vm.is_control_domain) {
      ++dom0;
    } else if (vm.is_a_snapshot) {
      ++snapshots;
      EXPECT_TRUE(vm.is_a_template);
      EXPECT_NE(vm.snapshot_of, kNullRef);
    } else if (vm.is_a_template) {
      ++templates;
    } else {
      ++normal;
    }
  }
  EXPECT_EQ(templates, 65);
  EXPECT_EQ(snapshots, 2);
  EXPECT_EQ(dom0, 2);
  EXPECT_EQ(normal, 5);
}

TEST_F(RecordedRepliesTest, HostAndStorageRecordsFromXenServer62) {
  LoginOk();
  Replay("host.get_all_records", "host.get_all_records.1.xml");
  ASSERT_OK_AND_ASSIGN(auto hosts, client_->GetAllHosts());
  ASSERT_FALSE(hosts.empty());
  for (const auto& [ref, h] : hosts) {
    EXPECT_FALSE(h.address.empty());
    EXPECT_EQ(h.software_version.at("product_version"), "6.2.0");
    EXPECT_EQ(h.api_version_major, 2);
  }
  Replay("VDI.get_record", "VDI.get_record.0.xml");
  ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi("OpaqueRef:any"));
  EXPECT_GT(vdi.virtual_size, 0);
  EXPECT_TRUE(vdi.managed);
  Replay("SR.get_record", "SR.get_record.0.xml");
  ASSERT_OK_AND_ASSIGN(SrRecord sr, client_->GetSr("OpaqueRef:any"));
  EXPECT_FALSE(sr.type.empty());
  EXPECT_GT(sr.physical_size, 0);
  Replay("VBD.get_record", "VBD.get_record.0.xml");
  ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd("OpaqueRef:any"));
  EXPECT_FALSE(vbd.userdevice.empty());
}

TEST_F(XmlRpcXenApiClientTest, ALoginInProgressHoldsNoLockOthersNeed) {
  // A slow login (XAPI delays a failed one by seconds; a busy master is
  // slow) must not stall what does not need its session.
  LoginOk();
  fake_->AddSuccess("VM.get_all_records", XmlRpcValue::MakeStruct());
  fake_->Hold("session.login_with_password");
  std::thread first([&] { EXPECT_OK(client_->Login()); });
  ASSERT_TRUE(
      fake_->WaitForHeldCall("session.login_with_password", absl::Seconds(60)));
  // The client's state is readable while the login is on the wire...
  auto url =
      std::async(std::launch::async, [&] { return client_->master_url(); });
  const bool answered =
      url.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  // ...and a call that needs a session waits for that login, not another.
  auto call = std::async(std::launch::async, [&] {
    return client_->Call("VM.get_all_records", {}, CallKind::kIdempotent);
  });
  fake_->Release("session.login_with_password");
  first.join();
  EXPECT_TRUE(answered) << "master_url() waited for the login";
  EXPECT_EQ(url.get(), "http://10.0.0.3:8080");
  EXPECT_OK(call.get().status());
  int logins = 0;
  for (const std::string& m : fake_->methods())
    logins += m == "session.login_with_password";
  EXPECT_EQ(logins, 1);
}

TEST_F(XmlRpcXenApiClientTest, CallersWaitingForAFailedLoginShareItsError) {
  fake_->AddFailure("session.login_with_password",
                    {"SESSION_AUTHENTICATION_FAILED", "root", "bad"});
  fake_->Hold("session.login_with_password");
  std::thread first([&] {
    EXPECT_THAT(client_->Login(), StatusIs(absl::StatusCode::kUnauthenticated));
  });
  ASSERT_TRUE(
      fake_->WaitForHeldCall("session.login_with_password", absl::Seconds(60)));
  auto second =
      std::async(std::launch::async, [&] { return client_->Login(); });
  // The second caller is waiting for the first login (or has not started);
  // either way one failed attempt is enough for both.
  fake_->Release("session.login_with_password");
  first.join();
  const absl::Status s = second.get();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("SESSION_AUTHENTICATION_FAILED"));
}

}  // namespace
}  // namespace vmb
