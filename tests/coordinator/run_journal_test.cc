// SPDX-License-Identifier: Apache-2.0
#include "coordinator/run_journal.h"

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include <sqlite3.h>

#include "common/base/redact.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb::coordinator {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::vmb::testing::IsOk;
using ::vmb::testing::StatusIs;
using JobRecord = RunJournal::JobRecord;
using RunRecord = RunJournal::RunRecord;

// Sets every field of `message` (repeated ones twice, nested messages
// recursively) to a value that depends on `salt`, none of them a default.
void FillEveryField(google::protobuf::Message* message, int salt,
                    int depth = 0) {
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  ASSERT_LT(depth, 4) << "recursive message " << descriptor->full_name();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    ASSERT_FALSE(field->is_map()) << field->full_name();
    const int count = field->is_repeated() ? 2 : 1;
    for (int n = 0; n < count; ++n) {
      const int64_t v = salt * 100 + field->number() * 3 + n + 1;
      const bool rep = field->is_repeated();
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          rep ? reflection->AddInt32(message, field, static_cast<int32_t>(-v))
              : reflection->SetInt32(message, field, static_cast<int32_t>(-v));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          rep ? reflection->AddInt64(message, field, -(int64_t{1} << 40) - v)
              : reflection->SetInt64(message, field, -(int64_t{1} << 40) - v);
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          rep ? reflection->AddUInt32(message, field, 4'000'000'000u + v)
              : reflection->SetUInt32(message, field, 4'000'000'000u + v);
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          rep ? reflection->AddUInt64(message, field, (uint64_t{1} << 62) + v)
              : reflection->SetUInt64(message, field, (uint64_t{1} << 62) + v);
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          rep ? reflection->AddDouble(message, field, 0.5 + v)
              : reflection->SetDouble(message, field, 0.5 + v);
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          rep ? reflection->AddFloat(message, field, 0.5f + v)
              : reflection->SetFloat(message, field, 0.5f + v);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          rep ? reflection->AddBool(message, field, true)
              : reflection->SetBool(message, field, true);
          break;
        case FieldDescriptor::CPPTYPE_ENUM: {
          const auto* type = field->enum_type();
          const auto* value = type->value(type->value_count() - 1);
          rep ? reflection->AddEnum(message, field, value)
              : reflection->SetEnum(message, field, value);
          break;
        }
        case FieldDescriptor::CPPTYPE_STRING: {
          std::string text = absl::StrCat(field->name(), "-", v, " ü,\n\t'\"");
          rep ? reflection->AddString(message, field, std::move(text))
              : reflection->SetString(message, field, std::move(text));
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          FillEveryField(rep ? reflection->AddMessage(message, field)
                             : reflection->MutableMessage(message, field),
                         salt + n + 1, depth + 1);
          break;
      }
    }
  }
}

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(arg, expected)) return true;
  *result_listener << diff;
  return false;
}

void ExpectSameRun(const RunRecord& got, const RunRecord& want) {
  EXPECT_EQ(got.run_id, want.run_id);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.backup_dir, want.backup_dir);
  EXPECT_EQ(got.config_name, want.config_name);
  EXPECT_EQ(got.config_text, want.config_text);
  EXPECT_EQ(got.overrides, want.overrides);
  EXPECT_EQ(got.started_unix_ms, want.started_unix_ms);
  EXPECT_EQ(got.finished_unix_ms, want.finished_unix_ms);
  EXPECT_EQ(got.share_id, want.share_id);
  EXPECT_EQ(got.status_log_begun, want.status_log_begun);
  EXPECT_EQ(got.planned, want.planned);
  EXPECT_EQ(got.pool_dump_done, want.pool_dump_done);
  EXPECT_THAT(got.summary, EqualsProto(want.summary));
}

void ExpectSameJob(const JobRecord& got, const JobRecord& want) {
  EXPECT_EQ(got.job_id, want.job_id);
  EXPECT_EQ(got.run_id, want.run_id);
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_THAT(got.plan, EqualsProto(want.plan));
  EXPECT_THAT(got.spec, EqualsProto(want.spec));
  EXPECT_THAT(got.status, EqualsProto(want.status));
  EXPECT_EQ(got.dispatched, want.dispatched);
  EXPECT_EQ(got.recorded, want.recorded);
  EXPECT_EQ(got.warnings, want.warnings);
}

std::vector<std::string> RunIds(const std::vector<RunRecord>& runs) {
  std::vector<std::string> ids;
  for (const RunRecord& run : runs) ids.push_back(run.run_id);
  return ids;
}

RunRecord MakeRun(const std::string& run_id, int64_t started_unix_ms) {
  RunRecord run;
  run.run_id = run_id;
  run.started_unix_ms = started_unix_ms;
  run.backup_dir = "/snapshots/" + run_id;
  run.config_name = "weekly.cfg";
  return run;
}

JobRecord MakeJob(const std::string& run_id, const std::string& job_id,
                  int seq) {
  JobRecord job;
  job.job_id = job_id;
  job.run_id = run_id;
  job.seq = seq;
  job.plan.set_uuid("uuid-" + job_id);
  job.spec.set_job_id(job_id);
  job.status.set_job_id(job_id);
  job.status.set_phase(v1::JOB_PHASE_QUEUED);
  return job;
}

// Runs `sql` on the database file directly, as another program could.
void ExecRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

class RunJournalTest : public ::testing::Test {
 protected:
  RunJournalTest()
      : path_(::vmb::testing::MakeTempDir("run-journal") + "/journal.db") {}

  void SetUp() override { Reopen(); }

  // Closes the journal (if open) and opens the same file again, as a
  // restarted coordinator does.
  void Reopen() {
    journal_.reset();
    auto journal = RunJournal::Open(path_);
    ASSERT_THAT(journal, IsOk());
    journal_ = *std::move(journal);
  }

  // A run with `jobs` planned jobs named "<run_id>-job<N>".
  void AddPlannedRun(const std::string& run_id, int jobs) {
    ASSERT_OK(journal_->CreateRun(MakeRun(run_id, 1000)));
    std::vector<JobRecord> records;
    for (int i = 0; i < jobs; ++i) {
      records.push_back(MakeJob(run_id, absl::StrCat(run_id, "-job", i), i));
    }
    ASSERT_OK(journal_->PutPlannedJobs(run_id, records));
  }

  const std::string path_;
  std::unique_ptr<RunJournal> journal_;
};

TEST_F(RunJournalTest, RecordJobChangeWritesAllOrNothing) {
  AddPlannedRun("run-1", 1);
  JobRecord job = MakeJob("run-1", "run-1-job0", 0);
  job.status.set_phase(v1::JOB_PHASE_SUCCEEDED);
  RunJournal::EventRecord event;
  event.run_id = "run-1";
  event.job_id = job.job_id;
  event.kind = "phase";
  event.message = "JOB_PHASE_SUCCEEDED";
  RunJournal::AttemptRecord attempt;
  attempt.job_id = job.job_id;
  attempt.attempt = 1;
  attempt.fencing_token = 9;
  attempt.outcome = "succeeded";
  ASSERT_OK(journal_->RecordJobChange(job, &event, &attempt));
  ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob(job.job_id));
  EXPECT_EQ(got.status.phase(), v1::JOB_PHASE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(auto events, journal_->Events("run-1", 0, 10));
  ASSERT_EQ(events.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto attempts, journal_->Attempts(job.job_id));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].fencing_token, 9u);

  // An event the journal refuses: neither the job nor the attempt changes.
  job.status.set_phase(v1::JOB_PHASE_FAILED);
  event.message = "see OpaqueRef:5bd3e4a2-0b7c-4c41-9a6e-1f9d3c2b7a10";
  attempt.attempt = 2;
  EXPECT_THAT(journal_->RecordJobChange(job, &event, &attempt),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(got, journal_->GetJob(job.job_id));
  EXPECT_EQ(got.status.phase(), v1::JOB_PHASE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(attempts, journal_->Attempts(job.job_id));
  EXPECT_EQ(attempts.size(), 1u);
  ASSERT_OK_AND_ASSIGN(events, journal_->Events("run-1", 0, 10));
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(RunJournalTest, SecretsInMessagesAreRedactedNamesAreNot) {
  const std::string secret = "s3cr3t-Jq7wPz";
  ScopedSecret registered(RegisterSecret(secret, "(password)"));
  AddPlannedRun("run-1", 1);
  JobRecord job = MakeJob("run-1", "run-1-job0", 0);
  job.status.set_phase(v1::JOB_PHASE_FAILED);
  job.status.set_error_message("login as root with " + secret + " refused");
  job.status.add_warnings("warned about " + secret);
  job.status.mutable_xenapi_error()->add_params(secret);
  RunJournal::EventRecord event;
  event.run_id = "run-1";
  event.job_id = job.job_id;
  event.kind = "phase";
  event.message = "failed: " + secret;
  RunJournal::AttemptRecord attempt;
  attempt.job_id = job.job_id;
  attempt.attempt = 1;
  attempt.fencing_token = 3;
  attempt.reason = "because " + secret;
  ASSERT_OK(journal_->RecordJobChange(job, &event, &attempt));
  RunRecord run = MakeRun("run-1", 1000);
  run.summary.set_fatal("stopped: " + secret);
  run.summary.add_run_warnings(secret);
  run.summary.set_mail("FAILED: " + secret);
  *run.summary.add_vms()->mutable_status() = job.status;
  ASSERT_OK(journal_->UpdateRun(run));
  // Read back: redacted where people read; the config (resume needs it)
  // as it was.
  ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob(job.job_id));
  EXPECT_EQ(got.status.error_message(),
            "login as root with (password) refused");
  EXPECT_EQ(got.status.warnings(0), "warned about (password)");
  EXPECT_EQ(got.status.xenapi_error().params(0), "(password)");
  ASSERT_OK_AND_ASSIGN(RunRecord got_run, journal_->GetRun("run-1"));
  EXPECT_EQ(got_run.summary.fatal(), "stopped: (password)");
  EXPECT_EQ(got_run.summary.mail(), "FAILED: (password)");
  EXPECT_EQ(got_run.summary.vms(0).status().error_message(),
            "login as root with (password) refused");
  EXPECT_EQ(got_run.config_text, run.config_text);
  ASSERT_OK_AND_ASSIGN(auto events, journal_->Events("run-1", 0, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message, "failed: (password)");
  ASSERT_OK_AND_ASSIGN(auto attempts, journal_->Attempts(job.job_id));
  EXPECT_EQ(attempts[0].reason, "because (password)");
  // And the file's bytes (the write-ahead log folded in) never held it.
  journal_.reset();
  std::string bytes;
  for (const char* suffix : {"", "-wal", "-journal"}) {
    absl::StatusOr<std::string> part =
        ::vmb::testing::ReadFileToString(path_ + suffix);
    if (part.ok()) bytes += *part;
  }
  EXPECT_GT(bytes.size(), 4096u);
  EXPECT_FALSE(absl::StrContains(bytes, secret));
}

TEST_F(RunJournalTest, CreatesAndGetsARunWithEveryField) {
  RunRecord run = MakeRun("run-1", 1'700'000'000'000);
  run.state = v1::RUN_STATE_WARNINGS;
  run.config_text = "pool_db_backup=1\nvm-export=PROD.*\n";
  run.overrides = {"max_backups=3", "", "vm-export=a\nb"};
  run.finished_unix_ms = 1'700'000'360'000;
  run.share_id = "share-abc";
  run.status_log_begun = true;
  run.pool_dump_done = true;
  FillEveryField(&run.summary, 7);
  ASSERT_OK(journal_->CreateRun(run));

  ASSERT_OK_AND_ASSIGN(RunRecord got, journal_->GetRun("run-1"));
  ExpectSameRun(got, run);
}

TEST_F(RunJournalTest, WorksInMemory) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<RunJournal> journal,
                       RunJournal::Open(":memory:"));
  ASSERT_OK(journal->CreateRun(MakeRun("run-1", 5)));
  ASSERT_OK_AND_ASSIGN(RunRecord got, journal->NewestRun());
  EXPECT_EQ(got.run_id, "run-1");
  ASSERT_OK_AND_ASSIGN(uint64_t token, journal->NextFencingToken());
  EXPECT_EQ(token, 1u);
}

TEST_F(RunJournalTest, RefusesDuplicateAndEmptyRunIds) {
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  EXPECT_THAT(journal_->CreateRun(MakeRun("run-1", 2)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("run-1")));
  EXPECT_THAT(journal_->CreateRun(MakeRun("", 2)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(RunRecord got, journal_->GetRun("run-1"));
  EXPECT_EQ(got.started_unix_ms, 1);
}

TEST_F(RunJournalTest, UnknownRunIsNotFound) {
  EXPECT_THAT(journal_->GetRun("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(journal_->UpdateRun(MakeRun("nope", 1)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(journal_->NewestRun(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RunJournalTest, UpdateRunReplacesFieldsButNotPlannedAndKeepsMarkers) {
  AddPlannedRun("run-1", 1);
  RunRecord run = MakeRun("run-1", 1000);
  run.status_log_begun = true;
  ASSERT_OK(journal_->UpdateRun(run));

  // A stale record: planned and status_log_begun false.
  RunRecord stale = MakeRun("run-1", 1000);
  stale.state = v1::RUN_STATE_SUCCEEDED;
  stale.finished_unix_ms = 2000;
  stale.overrides = {"a=b"};
  stale.summary.set_summary_line("VmBackup ended - Success - S:1 W:0 E:0");
  stale.summary.set_exit_code(0);
  ASSERT_OK(journal_->UpdateRun(stale));

  ASSERT_OK_AND_ASSIGN(RunRecord got, journal_->GetRun("run-1"));
  RunRecord want = stale;
  want.planned = true;
  want.status_log_begun = true;
  ExpectSameRun(got, want);
}

TEST_F(RunJournalTest, ListsRunsNewestFirstWithLimit) {
  ASSERT_OK(journal_->CreateRun(MakeRun("b", 2000)));
  ASSERT_OK(journal_->CreateRun(MakeRun("a", 1000)));
  ASSERT_OK(journal_->CreateRun(MakeRun("d", 3000)));
  ASSERT_OK(journal_->CreateRun(MakeRun("c", 3000)));  // same time, later

  ASSERT_OK_AND_ASSIGN(std::vector<RunRecord> all, journal_->ListRuns(0));
  EXPECT_THAT(RunIds(all), ElementsAre("c", "d", "b", "a"));
  ASSERT_OK_AND_ASSIGN(std::vector<RunRecord> two, journal_->ListRuns(2));
  EXPECT_THAT(RunIds(two), ElementsAre("c", "d"));
  ASSERT_OK_AND_ASSIGN(std::vector<RunRecord> many, journal_->ListRuns(100));
  EXPECT_EQ(many.size(), 4u);
  ASSERT_OK_AND_ASSIGN(RunRecord newest, journal_->NewestRun());
  EXPECT_EQ(newest.run_id, "c");
}

TEST_F(RunJournalTest, UnfinishedRunsAreTheRunningOnesOldestFirst) {
  ASSERT_OK(journal_->CreateRun(MakeRun("new", 3000)));
  ASSERT_OK(journal_->CreateRun(MakeRun("old", 1000)));
  RunRecord done = MakeRun("done", 2000);
  done.state = v1::RUN_STATE_FAILED;
  ASSERT_OK(journal_->CreateRun(done));
  RunRecord cancelled = MakeRun("cancelled", 2500);
  ASSERT_OK(journal_->CreateRun(cancelled));
  cancelled.state = v1::RUN_STATE_CANCELLED;
  ASSERT_OK(journal_->UpdateRun(cancelled));

  ASSERT_OK_AND_ASSIGN(std::vector<RunRecord> runs, journal_->UnfinishedRuns());
  EXPECT_THAT(RunIds(runs), ElementsAre("old", "new"));
}

TEST_F(RunJournalTest, JobsRoundTripEveryFieldInSeqOrder) {
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  std::vector<JobRecord> jobs;
  for (int seq : {3, 1, 2}) {
    JobRecord job;
    job.job_id = absl::StrCat("job-", seq);
    job.seq = seq;  // run_id left empty: the run's
    FillEveryField(&job.plan, seq);
    FillEveryField(&job.spec, seq + 10);
    FillEveryField(&job.status, seq + 20);
    job.dispatched = seq == 1;
    job.recorded = seq == 2;
    job.warnings = {"", "disk xvdb skipped\nsecond line"};
    jobs.push_back(job);
  }
  ASSERT_OK(journal_->PutPlannedJobs("run-1", jobs));

  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> got, journal_->Jobs("run-1"));
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    JobRecord want = jobs[(i + 1) % 3];  // seq 1, 2, 3
    want.run_id = "run-1";
    ExpectSameJob(got[i], want);
  }
  ASSERT_OK_AND_ASSIGN(JobRecord one, journal_->GetJob("job-3"));
  JobRecord want = jobs[0];
  want.run_id = "run-1";
  ExpectSameJob(one, want);
  ASSERT_OK_AND_ASSIGN(RunRecord run, journal_->GetRun("run-1"));
  EXPECT_TRUE(run.planned);
}

TEST_F(RunJournalTest, PutPlannedJobsIsAllOrNothing) {
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  std::vector<JobRecord> jobs = {MakeJob("run-1", "job-a", 0),
                                 MakeJob("run-1", "job-b", 1),
                                 MakeJob("run-1", "job-a", 2)};
  EXPECT_THAT(journal_->PutPlannedJobs("run-1", jobs),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("job-a")));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> none, journal_->Jobs("run-1"));
  EXPECT_TRUE(none.empty());
  EXPECT_THAT(journal_->GetJob("job-b"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(RunRecord run, journal_->GetRun("run-1"));
  EXPECT_FALSE(run.planned);

  jobs[2] = MakeJob("run-1", "job-c", 1);  // seq used twice
  EXPECT_THAT(journal_->PutPlannedJobs("run-1", jobs),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(none, journal_->Jobs("run-1"));
  EXPECT_TRUE(none.empty());

  jobs[2] = MakeJob("run-1", "job-c", 2);
  ASSERT_OK(journal_->PutPlannedJobs("run-1", jobs));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> three, journal_->Jobs("run-1"));
  EXPECT_EQ(three.size(), 3u);
  ASSERT_OK_AND_ASSIGN(run, journal_->GetRun("run-1"));
  EXPECT_TRUE(run.planned);

  // Planned once only: a resumed run never plans again.
  EXPECT_THAT(journal_->PutPlannedJobs("run-1", {MakeJob("run-1", "job-d", 3)}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RunJournalTest, PutPlannedJobsChecksItsArguments) {
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  ASSERT_OK(journal_->CreateRun(MakeRun("run-2", 1)));
  EXPECT_THAT(journal_->PutPlannedJobs("nope", {MakeJob("nope", "j", 0)}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(journal_->PutPlannedJobs("run-1", {MakeJob("run-2", "j", 0)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(journal_->PutPlannedJobs("run-1", {MakeJob("run-1", "", 0)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A job id is unique across runs.
  ASSERT_OK(journal_->PutPlannedJobs("run-1", {MakeJob("run-1", "j", 0)}));
  EXPECT_THAT(journal_->PutPlannedJobs("run-2", {MakeJob("run-2", "j", 0)}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(RunRecord run2, journal_->GetRun("run-2"));
  EXPECT_FALSE(run2.planned);
}

TEST_F(RunJournalTest, UpdateJobKeepsRunSeqAndFlags) {
  AddPlannedRun("run-1", 2);
  ASSERT_OK_AND_ASSIGN(JobRecord job, journal_->GetJob("run-1-job1"));
  job.dispatched = true;
  job.recorded = true;
  job.spec.set_attempt(2);
  job.spec.set_fencing_token(17);
  job.status.set_phase(v1::JOB_PHASE_EXPORT);
  job.status.set_bytes_done(12345);
  job.warnings = {"w"};
  ASSERT_OK(journal_->UpdateJob(job));

  JobRecord stale = job;
  stale.dispatched = false;
  stale.recorded = false;
  stale.run_id = "other";
  stale.seq = 99;
  stale.status.set_bytes_done(99999);
  ASSERT_OK(journal_->UpdateJob(stale));

  ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob("run-1-job1"));
  JobRecord want = stale;
  want.run_id = "run-1";
  want.seq = 1;
  want.dispatched = true;
  want.recorded = true;
  ExpectSameJob(got, want);

  EXPECT_THAT(journal_->UpdateJob(MakeJob("run-1", "nope", 5)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(journal_->UpdateJob(MakeJob("run-1", "", 5)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(journal_->GetJob("nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RunJournalTest, AnUpdateWithinAnAttemptLeavesPlanAndSpecAsStored) {
  AddPlannedRun("run-1", 1);
  ASSERT_OK_AND_ASSIGN(JobRecord job, journal_->GetJob("run-1-job0"));
  job.spec.set_attempt(1);
  job.spec.set_fencing_token(5);
  ASSERT_OK(journal_->UpdateJob(job));

  JobRecord report = job;
  report.same_spec = true;
  report.spec.set_fencing_token(6);  // not written
  report.plan.set_name("not written");
  report.status.set_phase(v1::JOB_PHASE_EXPORT);
  report.dispatched = true;
  report.warnings = {"w"};
  ASSERT_OK(journal_->RecordJobChange(report, nullptr, nullptr));

  ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob("run-1-job0"));
  JobRecord want = job;
  want.status = report.status;
  want.dispatched = true;
  want.warnings = {"w"};
  ExpectSameJob(got, want);
}

TEST_F(RunJournalTest, AnUnsyncedChangeIsWrittenAndTheNextOneSynced) {
  AddPlannedRun("run-1", 2);
  ASSERT_OK_AND_ASSIGN(JobRecord a, journal_->GetJob("run-1-job0"));
  ASSERT_OK_AND_ASSIGN(JobRecord b, journal_->GetJob("run-1-job1"));
  a.status.set_phase(v1::JOB_PHASE_EXPORT);
  ASSERT_OK(journal_->RecordJobChange(a, nullptr, nullptr, /*sync=*/false));
  b.status.set_phase(v1::JOB_PHASE_AWAITING_COMMIT);
  ASSERT_OK(journal_->RecordJobChange(b, nullptr, nullptr));
  // A process that ends (here: the journal closed) loses neither.
  Reopen();
  ASSERT_OK_AND_ASSIGN(JobRecord got_a, journal_->GetJob("run-1-job0"));
  ASSERT_OK_AND_ASSIGN(JobRecord got_b, journal_->GetJob("run-1-job1"));
  EXPECT_EQ(got_a.status.phase(), v1::JOB_PHASE_EXPORT);
  EXPECT_EQ(got_b.status.phase(), v1::JOB_PHASE_AWAITING_COMMIT);
}

TEST_F(RunJournalTest, UpdateJobsIsAllOrNothing) {
  AddPlannedRun("run-1", 2);
  JobRecord first = MakeJob("run-1", "run-1-job0", 0);
  first.status.set_phase(v1::JOB_PHASE_SUCCEEDED);
  EXPECT_THAT(journal_->UpdateJobs({first, MakeJob("run-1", "nope", 1)}),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob("run-1-job0"));
  EXPECT_EQ(got.status.phase(), v1::JOB_PHASE_QUEUED);

  JobRecord second = MakeJob("run-1", "run-1-job1", 1);
  second.status.set_phase(v1::JOB_PHASE_FAILED);
  ASSERT_OK(journal_->UpdateJobs({first, second}));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, journal_->Jobs("run-1"));
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].status.phase(), v1::JOB_PHASE_SUCCEEDED);
  EXPECT_EQ(jobs[1].status.phase(), v1::JOB_PHASE_FAILED);
}

TEST_F(RunJournalTest, StoresAttemptsByNumber) {
  AddPlannedRun("run-1", 1);
  RunJournal::AttemptRecord second;
  second.job_id = "run-1-job0";
  second.attempt = 2;
  second.fencing_token = std::numeric_limits<uint64_t>::max();
  second.host_uuid = "host-b";
  second.agent_id = "agent-b";
  second.started_unix_ms = 3000;
  ASSERT_OK(journal_->PutAttempt(second));

  RunJournal::AttemptRecord first;
  first.job_id = "run-1-job0";
  first.attempt = 1;
  first.fencing_token = 5;
  first.host_uuid = "host-a";
  first.agent_id = "agent-a";
  first.started_unix_ms = 1000;
  ASSERT_OK(journal_->PutAttempt(first));
  first.ended_unix_ms = 2000;
  first.outcome = "fenced";
  first.reason = "agent lost";
  first.commit_granted = true;
  ASSERT_OK(journal_->PutAttempt(first));  // replaces

  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::AttemptRecord> attempts,
                       journal_->Attempts("run-1-job0"));
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].job_id, "run-1-job0");
  EXPECT_EQ(attempts[0].attempt, 1u);
  EXPECT_EQ(attempts[0].fencing_token, 5u);
  EXPECT_EQ(attempts[0].host_uuid, "host-a");
  EXPECT_EQ(attempts[0].agent_id, "agent-a");
  EXPECT_EQ(attempts[0].started_unix_ms, 1000);
  EXPECT_EQ(attempts[0].ended_unix_ms, 2000);
  EXPECT_EQ(attempts[0].outcome, "fenced");
  EXPECT_EQ(attempts[0].reason, "agent lost");
  EXPECT_TRUE(attempts[0].commit_granted);
  EXPECT_EQ(attempts[1].attempt, 2u);
  EXPECT_EQ(attempts[1].fencing_token, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(attempts[1].outcome, "");
  EXPECT_FALSE(attempts[1].commit_granted);

  RunJournal::AttemptRecord orphan = first;
  orphan.job_id = "nope";
  EXPECT_THAT(
      journal_->PutAttempt(orphan),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("nope")));
  ASSERT_OK_AND_ASSIGN(attempts, journal_->Attempts("nope"));
  EXPECT_TRUE(attempts.empty());
}

TEST_F(RunJournalTest, FencingTokensIncreaseAcrossRestarts) {
  uint64_t last = 0;
  for (int restart = 0; restart < 3; ++restart) {
    for (int i = 0; i < 5; ++i) {
      ASSERT_OK_AND_ASSIGN(uint64_t token, journal_->NextFencingToken());
      EXPECT_GT(token, last);
      last = token;
    }
    Reopen();
  }
  EXPECT_EQ(last, 15u);
}

TEST_F(RunJournalTest, FencingTokenCounterAtMaximumIsExhausted) {
  journal_.reset();
  ExecRaw(path_,
          "UPDATE counters SET value = 9223372036854775806 "
          "WHERE name = 'fencing_token'");
  Reopen();
  ASSERT_OK_AND_ASSIGN(uint64_t token, journal_->NextFencingToken());
  EXPECT_EQ(token, uint64_t{9223372036854775807u});
  EXPECT_THAT(journal_->NextFencingToken(),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(RunJournalTest, PagesEventsByAfterId) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    RunJournal::EventRecord event;
    event.run_id = "run-1";
    event.job_id = i % 2 == 0 ? "" : "job-1";
    event.time_unix_ms = 1000 + i;
    event.kind = "job";
    event.message = absl::StrCat("message ", i);
    ASSERT_OK_AND_ASSIGN(int64_t id, journal_->AddEvent(event));
    if (!ids.empty()) {
      EXPECT_GT(id, ids.back());
    }
    ids.push_back(id);
    RunJournal::EventRecord other = event;
    other.run_id = "run-2";
    ASSERT_OK(journal_->AddEvent(other).status());
  }

  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::EventRecord> page,
                       journal_->Events("run-1", 0, 2));
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, ids[0]);
  EXPECT_EQ(page[0].run_id, "run-1");
  EXPECT_EQ(page[0].job_id, "");
  EXPECT_EQ(page[0].time_unix_ms, 1000);
  EXPECT_EQ(page[0].kind, "job");
  EXPECT_EQ(page[0].message, "message 0");
  EXPECT_EQ(page[1].id, ids[1]);
  EXPECT_EQ(page[1].job_id, "job-1");

  ASSERT_OK_AND_ASSIGN(page, journal_->Events("run-1", page.back().id, 2));
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].message, "message 2");
  EXPECT_EQ(page[1].message, "message 3");
  ASSERT_OK_AND_ASSIGN(page, journal_->Events("run-1", page.back().id, 2));
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].message, "message 4");
  ASSERT_OK_AND_ASSIGN(page, journal_->Events("run-1", page.back().id, 2));
  EXPECT_TRUE(page.empty());
  ASSERT_OK_AND_ASSIGN(page, journal_->Events("run-1", ids[1], 0));
  EXPECT_EQ(page.size(), 3u);
}

TEST_F(RunJournalTest, RefusesEventsCarryingXapiReferences) {
  RunJournal::EventRecord event;
  event.run_id = "run-1";
  event.kind = "job-failed";
  event.message =
      "SESSION_INVALID OpaqueRef:6f1c1e9a-28f6-4c2b-9a41-1b4c2f9e0d11";
  absl::StatusOr<int64_t> refused = journal_->AddEvent(event);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kInvalidArgument,
                                Not(HasSubstr("6f1c1e9a"))));
  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::EventRecord> events,
                       journal_->Events("run-1", 0, 0));
  EXPECT_TRUE(events.empty());

  // The redacted forms are fine.
  event.message = "SESSION_INVALID OpaqueRef:(session); vm OpaqueRef:NULL";
  ASSERT_OK(journal_->AddEvent(event).status());
}

TEST_F(RunJournalTest, UpsertsAgentsKeepingFirstSeen) {
  RunJournal::AgentRecord b;
  b.identity.set_agent_id("agent-b");
  b.identity.set_host_uuid("host-b");
  b.identity.set_instance_id("i1");
  b.peer = "ipv4:10.0.0.2:50000";
  b.max_jobs = 2;
  b.first_seen_unix_ms = 1000;
  b.last_seen_unix_ms = 1000;
  ASSERT_OK(journal_->PutAgent(b));
  RunJournal::AgentRecord a = b;
  a.identity.set_agent_id("agent-a");
  ASSERT_OK(journal_->PutAgent(a));

  b.identity.set_instance_id("i2");
  b.peer = "ipv4:10.0.0.2:50001";
  b.max_jobs = 4;
  b.first_seen_unix_ms = 5000;
  b.last_seen_unix_ms = 6000;
  ASSERT_OK(journal_->PutAgent(b));

  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::AgentRecord> agents,
                       journal_->ListAgents());
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].identity.agent_id(), "agent-a");
  EXPECT_THAT(agents[1].identity, EqualsProto(b.identity));
  EXPECT_EQ(agents[1].peer, "ipv4:10.0.0.2:50001");
  EXPECT_EQ(agents[1].max_jobs, 4u);
  EXPECT_EQ(agents[1].first_seen_unix_ms, 1000);
  EXPECT_EQ(agents[1].last_seen_unix_ms, 6000);

  RunJournal::AgentRecord nameless;
  EXPECT_THAT(journal_->PutAgent(nameless),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RunJournalTest, EverythingSurvivesARestart) {
  RunRecord run = MakeRun("run-1", 1000);
  run.share_id = "share";
  run.overrides = {"x=y"};
  FillEveryField(&run.summary, 3);
  ASSERT_OK(journal_->CreateRun(run));
  JobRecord job = MakeJob("run-1", "job-1", 0);
  FillEveryField(&job.spec, 4);
  job.spec.set_job_id("job-1");
  ASSERT_OK(journal_->PutPlannedJobs("run-1", {job}));
  job.dispatched = true;
  job.status.set_phase(v1::JOB_PHASE_AWAITING_COMMIT);
  ASSERT_OK(journal_->UpdateJob(job));
  RunJournal::AttemptRecord attempt;
  attempt.job_id = "job-1";
  attempt.attempt = 1;
  ASSERT_OK_AND_ASSIGN(attempt.fencing_token, journal_->NextFencingToken());
  attempt.commit_granted = true;
  ASSERT_OK(journal_->PutAttempt(attempt));
  RunJournal::EventRecord event;
  event.run_id = "run-1";
  event.message = "dispatched";
  ASSERT_OK(journal_->AddEvent(event).status());
  RunJournal::AgentRecord agent;
  agent.identity.set_agent_id("agent-1");
  ASSERT_OK(journal_->PutAgent(agent));

  Reopen();

  ASSERT_OK_AND_ASSIGN(std::vector<RunRecord> unfinished,
                       journal_->UnfinishedRuns());
  ASSERT_EQ(unfinished.size(), 1u);
  run.planned = true;
  ExpectSameRun(unfinished[0], run);
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, journal_->Jobs("run-1"));
  ASSERT_EQ(jobs.size(), 1u);
  ExpectSameJob(jobs[0], job);
  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::AttemptRecord> attempts,
                       journal_->Attempts("job-1"));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].fencing_token, 1u);
  EXPECT_TRUE(attempts[0].commit_granted);
  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::EventRecord> events,
                       journal_->Events("run-1", 0, 0));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message, "dispatched");
  ASSERT_OK_AND_ASSIGN(std::vector<RunJournal::AgentRecord> agents,
                       journal_->ListAgents());
  ASSERT_EQ(agents.size(), 1u);
  ASSERT_OK_AND_ASSIGN(uint64_t token, journal_->NextFencingToken());
  EXPECT_EQ(token, 2u);
}

TEST_F(RunJournalTest, ConcurrentUpdatesLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kJobsPerThread = 25;
  constexpr int kRounds = 5;
  AddPlannedRun("run-1", kThreads * kJobsPerThread);

  std::vector<std::thread> threads;
  std::vector<absl::Status> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &errors] {
      for (int round = 1; round <= kRounds; ++round) {
        for (int j = t; j < kThreads * kJobsPerThread; j += kThreads) {
          JobRecord job = MakeJob("run-1", absl::StrCat("run-1-job", j), j);
          job.status.set_bytes_done(round * 1000 + j);
          job.status.set_phase(v1::JOB_PHASE_EXPORT);
          absl::Status status = journal_->UpdateJob(job);
          if (status.ok()) {
            // Readers interleave with the writers.
            status = journal_->GetJob(job.job_id).status();
          }
          if (!status.ok() && errors[t].ok()) errors[t] = status;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& error : errors) EXPECT_OK(error);

  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, journal_->Jobs("run-1"));
  ASSERT_EQ(jobs.size(), static_cast<size_t>(kThreads * kJobsPerThread));
  for (int j = 0; j < kThreads * kJobsPerThread; ++j) {
    EXPECT_EQ(jobs[j].seq, j);
    EXPECT_EQ(jobs[j].status.bytes_done(), uint64_t(kRounds * 1000 + j));
    EXPECT_EQ(jobs[j].status.phase(), v1::JOB_PHASE_EXPORT);
  }
}

TEST_F(RunJournalTest, StoredMessageThatDoesNotParseIsDataLoss) {
  AddPlannedRun("run-1", 1);
  journal_.reset();
  ExecRaw(path_,
          "UPDATE jobs SET status = x'ffff'; UPDATE runs SET summary = x'ff'");
  Reopen();
  EXPECT_THAT(journal_->GetJob("run-1-job0"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("run-1-job0")));
  EXPECT_THAT(journal_->GetRun("run-1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("run-1")));
}

TEST_F(RunJournalTest, FileThatIsNotADatabaseIsRefusedByPath) {
  journal_.reset();
  const std::string path =
      ::vmb::testing::MakeTempDir("run-journal") + "/garbage.db";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 200; ++i) out << "this is not a database\n";
  }
  EXPECT_THAT(RunJournal::Open(path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(path)));
}

TEST_F(RunJournalTest, ForeignSqliteDatabaseIsRefused) {
  journal_.reset();
  const std::string path =
      ::vmb::testing::MakeTempDir("run-journal") + "/other.db";
  ExecRaw(path, "CREATE TABLE photos (id INTEGER)");
  EXPECT_THAT(RunJournal::Open(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a run journal")));
}

TEST_F(RunJournalTest, MissingDirectoryIsUnavailableNamingThePath) {
  const std::string path =
      ::vmb::testing::MakeTempDir("run-journal") + "/missing/journal.db";
  EXPECT_THAT(RunJournal::Open(path),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(path)));
}

TEST_F(RunJournalTest, NewerSchemaVersionIsRefused) {
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  journal_.reset();
  ExecRaw(path_, "PRAGMA user_version = 99");
  EXPECT_THAT(RunJournal::Open(path_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AllOf(HasSubstr("99"), HasSubstr(path_))));
}

TEST(SqliteToStatusTest, MapsCodesByRetryMeaning) {
  struct Case {
    int code;
    absl::StatusCode want;
  };
  for (const Case& c : std::vector<Case>{
           {SQLITE_BUSY, absl::StatusCode::kUnavailable},
           {SQLITE_LOCKED, absl::StatusCode::kUnavailable},
           {SQLITE_IOERR_FSYNC, absl::StatusCode::kUnavailable},
           {SQLITE_CANTOPEN, absl::StatusCode::kUnavailable},
           {SQLITE_FULL, absl::StatusCode::kResourceExhausted},
           {SQLITE_CONSTRAINT_PRIMARYKEY, absl::StatusCode::kAlreadyExists},
           {SQLITE_CONSTRAINT_UNIQUE, absl::StatusCode::kAlreadyExists},
           {SQLITE_CONSTRAINT_FOREIGNKEY,
            absl::StatusCode::kFailedPrecondition},
           {SQLITE_NOTADB, absl::StatusCode::kFailedPrecondition},
           {SQLITE_READONLY, absl::StatusCode::kPermissionDenied},
           {SQLITE_CORRUPT, absl::StatusCode::kDataLoss},
           {SQLITE_ERROR, absl::StatusCode::kInternal},
           {SQLITE_MISMATCH, absl::StatusCode::kInternal},
       }) {
    absl::Status status = SqliteToStatus(c.code, "doing it", nullptr);
    EXPECT_EQ(status.code(), c.want) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("doing it: "));
  }
  EXPECT_OK(SqliteToStatus(SQLITE_OK, "doing it", nullptr));
}

// Not a regular test: how long the writes of a 1000-VM run take (about five
// job updates per VM) with synchronous=FULL on a real file. Run with
// --gtest_also_run_disabled_tests; it prints the time.
TEST_F(RunJournalTest, DISABLED_FiveThousandJobUpdates) {
  constexpr int kVms = 1000;
  ASSERT_OK(journal_->CreateRun(MakeRun("run-1", 1)));
  std::vector<JobRecord> jobs;
  for (int i = 0; i < kVms; ++i) {
    JobRecord job = MakeJob("run-1", absl::StrCat("job-", i), i);
    FillEveryField(&job.plan, i);
    FillEveryField(&job.spec, i);
    job.spec.set_job_id(job.job_id);
    jobs.push_back(std::move(job));
  }
  ASSERT_OK(journal_->PutPlannedJobs("run-1", jobs));
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 5; ++round) {
    for (JobRecord& job : jobs) {
      job.status.set_bytes_done(round);
      ASSERT_OK(journal_->UpdateJob(job));
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  std::cout
      << "5000 UpdateJob calls: "
      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
      << " ms" << std::endl;
}

}  // namespace
}  // namespace vmb::coordinator
