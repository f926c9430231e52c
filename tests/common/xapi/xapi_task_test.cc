// SPDX-License-Identifier: Apache-2.0
// WaitForTask on the injected clock: it pauses and times out on the clock it
// is given, so a fake clock runs a long limit out without sleeping.
#include "common/xapi/xapi_task.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_xml_rpc_transport.h"
#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::FakeClock;
using ::vmb::testing::FakeXmlRpcTransport;
using ::vmb::testing::StatusIs;

XmlRpcValue Task(const std::string& status) {
  XmlRpcValue v = XmlRpcValue::MakeStruct();
  v.AddMember("uuid",
              XmlRpcValue::String("8d0f3a4e-0000-4000-8000-000000000001"));
  v.AddMember("name_label", XmlRpcValue::String("vmbackup vm-export"));
  v.AddMember("status", XmlRpcValue::String(status));
  v.AddMember("error_info", XmlRpcValue::MakeArray());
  return v;
}

class WaitForTaskTest : public ::testing::Test {
 protected:
  WaitForTaskTest() {
    auto transport = std::make_unique<FakeXmlRpcTransport>();
    fake_ = transport.get();
    XmlRpcXenApiClient::Options o;
    o.url = "http://10.0.0.1";
    client_ = std::make_unique<XmlRpcXenApiClient>(o, std::move(transport));
    fake_->AddSuccess("session.login_with_password",
                      XmlRpcValue::String("OpaqueRef:s"));
    fake_->AddSuccess("session.logout", XmlRpcValue::String(""));
  }

  FakeXmlRpcTransport* fake_;  // owned by client_
  std::unique_ptr<XmlRpcXenApiClient> client_;
  FakeClock clock_;
};

TEST_F(WaitForTaskTest, APendingTaskTimesOutOnTheInjectedClockWithoutSleeping) {
  fake_->AddSuccess("task.get_record", Task("pending"));
  const absl::Time real_start = absl::Now();
  const absl::Time fake_start = clock_.Now();
  EXPECT_THAT(WaitForTask(*client_, clock_, "OpaqueRef:t", absl::Minutes(10)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("still pending after 10m")));
  // Ten minutes went by on the fake clock, in pauses of at most a second...
  EXPECT_GE(clock_.Now() - fake_start, absl::Minutes(10));
  EXPECT_GE(clock_.slept(), absl::Minutes(10) - absl::Seconds(1));
  for (absl::Duration d : clock_.sleeps()) EXPECT_LE(d, absl::Seconds(1));
  EXPECT_EQ(clock_.sleeps().front(), absl::Milliseconds(20));
  // ...and none of them on the real one.
  EXPECT_LT(absl::Now() - real_start, absl::Seconds(30));
}

TEST_F(WaitForTaskTest, ReturnsTheFinalRecordOnceTheTaskEnds) {
  fake_->AddSuccess("task.get_record", Task("pending"));
  fake_->AddSuccess("task.get_record", Task("pending"));
  fake_->AddSuccess("task.get_record", Task("success"));
  ASSERT_OK_AND_ASSIGN(
      TaskRecord t,
      WaitForTask(*client_, clock_, "OpaqueRef:t", absl::Hours(1)));
  EXPECT_EQ(t.status, TaskStatus::kSuccess);
  EXPECT_EQ(clock_.sleeps().size(), 2u);
}

}  // namespace
}  // namespace vmb
