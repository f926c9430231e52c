// SPDX-License-Identifier: Apache-2.0
// The agent's jobs on disk: round trips, names that never come from the
// network, leftovers of interrupted writes, and failing disks.
#include "agent/job_store.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/faulty_filesystem.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::agent {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::vmb::testing::StatusIs;

v1::JobSpec Spec(const std::string& job_id) {
  v1::JobSpec spec;
  spec.set_job_id(job_id);
  spec.set_vm_uuid("vm-1");
  spec.set_fencing_token(9);
  return spec;
}

v1::JobStatus Status(const std::string& job_id, v1::JobPhase phase) {
  v1::JobStatus status;
  status.set_job_id(job_id);
  status.set_phase(phase);
  status.set_fencing_token(9);
  return status;
}

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = JoinPath(testing::MakeTempDir("jobs"), "jobs");
    JobStore store(&fs_, dir_);
    ASSERT_OK(store.Init());
    ASSERT_OK(store.Init());  // again: the folder is there
  }
  std::vector<std::string> Files() {
    absl::StatusOr<std::vector<DirEntry>> entries = fs_.ListDir(dir_);
    EXPECT_TRUE(entries.ok()) << entries.status();
    std::vector<std::string> names;
    for (const DirEntry& e : entries.value_or(std::vector<DirEntry>{}))
      names.push_back(e.name);
    return names;
  }

  PosixFilesystem fs_;
  std::string dir_;
};

TEST_F(JobStoreTest, KeepsSpecAndLatestStatusUntilRemoved) {
  JobStore store(&fs_, dir_);
  ASSERT_OK(store.Add(Spec("run1/a"), Status("run1/a", v1::JOB_PHASE_QUEUED)));
  ASSERT_OK(store.Update(Status("run1/a", v1::JOB_PHASE_EXPORT)));
  ASSERT_OK(store.Add(Spec("run1/b"), Status("run1/b", v1::JOB_PHASE_QUEUED)));
  ASSERT_OK_AND_ASSIGN(std::vector<JobStore::StoredJob> jobs, store.Load());
  ASSERT_THAT(jobs, SizeIs(2));
  for (const JobStore::StoredJob& job : jobs) {
    EXPECT_EQ(job.spec.vm_uuid(), "vm-1");
    EXPECT_EQ(job.status.phase(), job.spec.job_id() == "run1/a"
                                      ? v1::JOB_PHASE_EXPORT
                                      : v1::JOB_PHASE_QUEUED);
  }
  ASSERT_OK(store.Remove("run1/a"));
  ASSERT_OK(store.Remove("run1/a"));  // gone already: fine
  ASSERT_OK_AND_ASSIGN(jobs, store.Load());
  ASSERT_THAT(jobs, SizeIs(1));
  EXPECT_EQ(jobs[0].spec.job_id(), "run1/b");
  EXPECT_THAT(Files(), SizeIs(2));
}

TEST_F(JobStoreTest, NamesFilesByTheHashOfTheJobId) {
  JobStore store(&fs_, dir_);
  const std::string hostile = "../../etc/passwd\n" + std::string(300, 'x');
  ASSERT_OK(store.Add(Spec(hostile), Status(hostile, v1::JOB_PHASE_QUEUED)));
  const std::string stem = JobStore::FileStem(hostile);
  EXPECT_THAT(stem, SizeIs(64));
  EXPECT_EQ(stem.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_THAT(Files(), ::testing::UnorderedElementsAre(stem + ".spec",
                                                       stem + ".status"));
  ASSERT_OK_AND_ASSIGN(std::vector<JobStore::StoredJob> jobs, store.Load());
  ASSERT_THAT(jobs, SizeIs(1));
  EXPECT_EQ(jobs[0].spec.job_id(), hostile);
}

TEST_F(JobStoreTest, DropsLeftoversOfInterruptedWrites) {
  JobStore store(&fs_, dir_);
  ASSERT_OK(store.Add(Spec("run1/a"), Status("run1/a", v1::JOB_PHASE_EXPORT)));
  const std::string a = JobStore::FileStem("run1/a");
  const std::string b = JobStore::FileStem("run1/b");
  const std::string c = JobStore::FileStem("run1/c");
  // A temporary file, a status whose spec is gone, a spec without a status,
  // a spec under another job's name, and garbage.
  std::ofstream(JoinPath(dir_, a + ".status.tmp")) << "half";
  std::ofstream(JoinPath(dir_, b + ".status")) << "job_id: \"run1/b\"";
  std::ofstream(JoinPath(dir_, c + ".spec")) << "job_id: \"run1/c\"";
  std::ofstream(JoinPath(dir_, b + ".spec")) << "job_id: \"run1/z\"";
  std::ofstream(JoinPath(dir_, JobStore::FileStem("x") + ".spec"))
      << "not { text format";
  ASSERT_OK_AND_ASSIGN(std::vector<JobStore::StoredJob> jobs, store.Load());
  ASSERT_THAT(jobs, SizeIs(2));
  EXPECT_EQ(jobs[0].spec.job_id() == "run1/a" ? jobs[1].status.phase()
                                              : jobs[0].status.phase(),
            v1::JOB_PHASE_QUEUED);  // run1/c: never started
  EXPECT_THAT(Files(), ::testing::UnorderedElementsAre(
                           a + ".spec", a + ".status", c + ".spec"));
}

TEST_F(JobStoreTest, ReportsAFailingDisk) {
  testing::FaultyFilesystem::Faults faults;
  faults.suffix = ".tmp";
  faults.fail_sync = true;
  testing::FaultyFilesystem faulty(faults);
  JobStore store(&faulty, dir_);
  EXPECT_THAT(store.Add(Spec("run1/a"), Status("run1/a", v1::JOB_PHASE_QUEUED)),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(std::vector<JobStore::StoredJob> jobs, store.Load());
  EXPECT_THAT(jobs, IsEmpty());
  EXPECT_THAT(store.Add(Spec(""), Status("", v1::JOB_PHASE_QUEUED)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.Add(Spec("a"), Status("b", v1::JOB_PHASE_QUEUED)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace vmb::agent
