// SPDX-License-Identifier: Apache-2.0
// A restore job's spec as it arrives from the coordinator, and a job that
// cannot run.
#include "agent/restore_job.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/base/filesystem.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace vmb::agent {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

v1::JobSpec Spec(const std::string& folder) {
  v1::JobSpec spec;
  spec.set_job_id("restore-20261130-101010-abcd");
  spec.set_host_uuid("6a3f0c3e-1b2d-4c5e-8f90-0123456789ab");
  spec.mutable_restore()->set_backup_folder(folder);
  return spec;
}

TEST(RestoreJobTest, ASpecIsCheckedBeforeAnythingIsTouched) {
  EXPECT_OK(CheckRestoreSpec(Spec("/snapshots/BACKUPS/web/backup-2026")));
  EXPECT_THAT(CheckRestoreSpec(Spec("snapshots/web")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not absolute")));
  EXPECT_THAT(CheckRestoreSpec(Spec("/snapshots/../etc")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"..\" component")));
  EXPECT_THAT(CheckRestoreSpec(Spec("/snapshots/./x")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckRestoreSpec(Spec("/snap\nshots")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control character")));
  v1::JobSpec bad_id = Spec("/snapshots/x");
  bad_id.set_job_id("../job");
  EXPECT_THAT(CheckRestoreSpec(bad_id),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::JobSpec bad_name = Spec("/snapshots/x");
  bad_name.mutable_restore()->set_name("two\nlines");
  EXPECT_THAT(CheckRestoreSpec(bad_name),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("name has a control character")));
}

TEST(RestoreJobTest, ABadSpecFailsTheJobWithoutTouchingThePool) {
  testing::FakeClock clock;
  JobContext context;
  context.clock = &clock;  // no XenAPI client: nothing may be called
  context.fs = PosixFilesystem::Get();
  v1::JobStatus s = RunRestoreJob(context, Spec("relative/path"), JobHooks());
  EXPECT_EQ(s.phase(), v1::JOB_PHASE_FAILED);
  EXPECT_EQ(s.error_step(), "check job");
  EXPECT_EQ(s.status_token(), "RESTORE-FAIL");
  EXPECT_THAT(s.error_message(), HasSubstr("is not absolute"));
}

}  // namespace
}  // namespace vmb::agent
