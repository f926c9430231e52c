// SPDX-License-Identifier: Apache-2.0
// The destroy-while-in-use retry and the janitor on an injected clock: the
// backoff and the retry window are the clock's, so a fake clock runs a
// two-minute window out in microseconds.
#include "common/backup/snapshot_janitor.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/xenapi_error.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_xml_rpc_transport.h"
#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::vmb::testing::FakeClock;
using ::vmb::testing::FakeXmlRpcTransport;
using ::vmb::testing::StatusIs;

absl::Status InUse() {
  return XenApiFailureToStatus({"VDI_IN_USE", "OpaqueRef:v", "destroy"});
}

TEST(DestroyRetryTest, RetriesInUseWithBackoffOnTheInjectedClock) {
  FakeClock clock;
  int calls = 0;
  const absl::Time real_start = absl::Now();
  absl::Status s = DestroyRetryingWhileInUse(
      [&] {
        ++calls;
        return InUse();
      },
      absl::Minutes(2), absl::Milliseconds(200), clock);
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("VDI_IN_USE")));
  EXPECT_LT(absl::Now() - real_start, absl::Seconds(30));
  // 200 ms, doubling, capped at 5 s, until the next pause would pass 2 min.
  const std::vector<absl::Duration> sleeps = clock.sleeps();
  ASSERT_GE(sleeps.size(), 5u);
  EXPECT_EQ(sleeps[0], absl::Milliseconds(200));
  EXPECT_EQ(sleeps[1], absl::Milliseconds(400));
  EXPECT_EQ(sleeps.back(), absl::Seconds(5));
  EXPECT_LE(clock.slept(), absl::Minutes(2));
  EXPECT_GT(clock.slept(), absl::Minutes(2) - absl::Seconds(5));
  EXPECT_EQ(calls, static_cast<int>(sleeps.size()) + 1);
}

TEST(DestroyRetryTest, StopsAtOnceOnSuccessOrAGoneObject) {
  FakeClock clock;
  int calls = 0;
  EXPECT_OK(DestroyRetryingWhileInUse(
      [&] {
        return ++calls < 3 ? InUse()
                           : XenApiFailureToStatus(
                                 {"HANDLE_INVALID", "VDI", "OpaqueRef:v"});
      },
      absl::Minutes(2), absl::Milliseconds(200), clock));
  EXPECT_EQ(calls, 3);
  EXPECT_THAT(clock.sleeps(),
              ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400)));
}

TEST(DestroyRetryTest, AnotherErrorIsNotRetried) {
  FakeClock clock;
  EXPECT_THAT(DestroyRetryingWhileInUse(
                  [] { return XenApiFailureToStatus({"VM_BAD_POWER_STATE"}); },
                  absl::Minutes(2), absl::Milliseconds(200), clock),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(clock.sleeps(), IsEmpty());
}

TEST(SnapshotJanitorTest, RetriesOnTheClockOfItsOptions) {
  auto transport = std::make_unique<FakeXmlRpcTransport>();
  FakeXmlRpcTransport* fake = transport.get();
  XmlRpcXenApiClient::Options o;
  o.url = "http://10.0.0.1";
  XmlRpcXenApiClient client(o, std::move(transport));
  fake->AddSuccess("session.login_with_password",
                   XmlRpcValue::String("OpaqueRef:s"));
  fake->AddSuccess("session.logout", XmlRpcValue::String(""));
  fake->AddFailure("VM.destroy", {"VDI_IN_USE", "OpaqueRef:v", "destroy"});

  RecordMap<VmRecord> vms;
  VmRecord& snap = vms["OpaqueRef:snap"];
  snap.uuid = "0b5c3c63-0000-4000-8000-000000000001";
  snap.name_label = "vmbackup-share-run1";
  snap.is_a_snapshot = true;
  snap.other_config = {{std::string(kTagShare), "share"},
                       {std::string(kTagRun), "run1"}};
  FakeClock clock;
  JanitorOptions options;
  options.share_id = "share";
  options.destroy_retry = absl::Minutes(1);
  options.clock = &clock;
  const absl::Time real_start = absl::Now();
  const JanitorReport report =
      CleanUpLeftoverSnapshots(client, vms, {}, {}, options);
  EXPECT_THAT(report.removed, IsEmpty());
  ASSERT_THAT(report.problems, SizeIs(1));
  EXPECT_THAT(report.problems[0], HasSubstr("VDI_IN_USE"));
  EXPECT_GT(clock.slept(), absl::Seconds(50));
  EXPECT_LT(absl::Now() - real_start, absl::Seconds(30));
}

TEST(SnapshotJanitorTest, SelectPicksSnapshotsByRunAndJobTag) {
  auto transport = std::make_unique<FakeXmlRpcTransport>();
  FakeXmlRpcTransport* fake = transport.get();
  XmlRpcXenApiClient::Options o;
  o.url = "http://10.0.0.1";
  XmlRpcXenApiClient client(o, std::move(transport));
  fake->AddSuccess("session.login_with_password",
                   XmlRpcValue::String("OpaqueRef:s"));
  fake->AddSuccess("session.logout", XmlRpcValue::String(""));
  fake->AddSuccess("VM.destroy", XmlRpcValue::String(""));

  RecordMap<VmRecord> vms;
  for (const char* job : {"job-a", "job-b"}) {
    VmRecord& snap = vms[absl::StrCat("OpaqueRef:", job)];
    snap.uuid = absl::StrCat("uuid-", job);
    snap.name_label = "vmbackup-share-run1";
    snap.is_a_snapshot = true;
    snap.other_config = {{std::string(kTagShare), "share"},
                         {std::string(kTagRun), "run1"},
                         {std::string(kTagJob), job}};
  }
  JanitorOptions options;
  options.share_id = "share";
  options.active_runs = {"run1"};  // ignored: select decides
  options.select = [](const std::string& run, const std::string& job) {
    return run == "run1" && job == "job-b";
  };
  const JanitorReport report =
      CleanUpLeftoverSnapshots(client, vms, {}, {}, options);
  ASSERT_THAT(report.removed, SizeIs(1));
  EXPECT_THAT(report.removed[0], HasSubstr("uuid-job-b"));
  std::vector<std::string> destroyed;
  for (const auto& call : fake->calls()) {
    if (call.method == "VM.destroy") destroyed.push_back(call.params[1].text());
  }
  EXPECT_THAT(destroyed, ::testing::ElementsAre("OpaqueRef:job-b"));
}

}  // namespace
}  // namespace vmb
