// SPDX-License-Identifier: Apache-2.0
#pragma once

// The coordinator's run journal: every state change of a backup run, written
// to SQLite *before* the coordinator acts on it, so that `status`, `runs` and
// `agents` can be answered after a restart and a restarted coordinator can
// resume a run without exporting any VM twice.
//
// Resuming relies on the write-before-act order of the caller:
//   1. CreateRun, then PutPlannedJobs (sets `planned`): dispatch may start.
//   2. Before a job is handed to an agent: NextFencingToken, PutAttempt (the
//      new attempt, outcome ""), UpdateJob (spec naming that attempt and
//      token, `dispatched` = true). Only then is the spec sent.
//   3. Every reported JobStatus: UpdateJob; the end of an attempt: PutAttempt
//      with its outcome; a commit grant: PutAttempt with commit_granted
//      before the grant is sent.
//   4. After a restart: UnfinishedRuns, and for each its Jobs. A job that is
//      `dispatched` and not terminal may still run on its agent under the
//      token of its newest attempt; it is re-adopted (waited for, or fenced
//      and then retried with a new token), never simply started again.
//
// Secrets: callers must never put an XAPI session, a password or any other
// credential into any record (JobSpec has no session field by design; the
// session travels only in DesiredState). As a cheap guard, AddEvent refuses a
// message that contains an XAPI reference value ("OpaqueRef:<value>"; the
// redacted forms "OpaqueRef:NULL" and "OpaqueRef:(session)" are allowed).
//
// Stored format: the key fields (ids, states, times, seq) are columns with
// indexes for the queries below; proto messages are stored as serialized
// blobs. The schema version is PRAGMA user_version (kSchemaVersion).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "proto/agent.pb.h"
#include "proto/common.pb.h"
#include "proto/coordinator.pb.h"

struct sqlite3;
struct sqlite3_stmt;

namespace vmb::coordinator {

// The one translation of SQLite result codes (primary or extended) into
// Status, by retry meaning (SQLITE_ prefixes left out):
//   UNAVAILABLE          BUSY, LOCKED, IOERR (all extended), CANTOPEN
//   RESOURCE_EXHAUSTED   FULL, NOMEM
//   ALREADY_EXISTS       CONSTRAINT_PRIMARYKEY, CONSTRAINT_UNIQUE
//   FAILED_PRECONDITION  other CONSTRAINT (foreign key, ...), NOTADB
//   PERMISSION_DENIED    READONLY, PERM, AUTH
//   DATA_LOSS            CORRUPT
//   INTERNAL             anything else
// The message is "<what>: <sqlite3_errmsg(db)> (SQLite error <code>)"; with
// a null `db`, SQLite's text for `code` stands in for the errmsg. SQLITE_OK
// gives OK.
absl::Status SqliteToStatus(int code, absl::string_view what, sqlite3* db);

// The journal on one SQLite database file. Thread-safe: one SQLite
// connection behind one mutex; every method is one transaction, durable
// (synchronous=FULL) when it returns OK. Calls block on disk I/O: never call
// them from a gRPC reactor.
//
// Errors common to every method: what SqliteToStatus makes of a SQLite
// failure (UNAVAILABLE for a busy database or an I/O error, RESOURCE_EXHAUSTED
// for a full disk, ...), and DATA_LOSS when a stored message does not parse.
class RunJournal {
 public:
  static constexpr int kSchemaVersion = 1;

  // Opens or creates the database file `path` (WAL mode, synchronous=FULL,
  // foreign keys on, a busy timeout) and creates the schema of a new file.
  // ":memory:" gives a private in-memory journal (tests).
  // Errors, each naming `path`: FAILED_PRECONDITION if the file is not a
  // SQLite database, is a SQLite database of something else (tables but no
  // schema version), or has a newer schema version than kSchemaVersion;
  // UNAVAILABLE if it cannot be opened (missing directory, no file
  // descriptors, I/O error); PERMISSION_DENIED if it is read-only.
  static absl::StatusOr<std::unique_ptr<RunJournal>> Open(
      const std::string& path);

  ~RunJournal();
  RunJournal(const RunJournal&) = delete;
  RunJournal& operator=(const RunJournal&) = delete;

  // ---- runs ----

  struct RunRecord {
    std::string run_id;
    v1::RunState state = v1::RUN_STATE_RUNNING;
    std::string backup_dir, config_name, config_text;
    std::vector<std::string> overrides;
    int64_t started_unix_ms = 0, finished_unix_ms = 0;
    std::string share_id;
    // Progress markers; once stored as true they stay true (UpdateRun with a
    // stale record cannot undo them).
    bool status_log_begun = false;  // status.log "begin" written
    bool pool_dump_done = false;
    // The jobs are persisted and dispatch may start. Set only by
    // PutPlannedJobs: CreateRun and UpdateRun ignore it.
    bool planned = false;
    // Counts, summary_line, exit_code, fatal, run_warnings. Stored as given;
    // `vms` may be empty (the jobs hold them). The fields above, not the
    // summary's copies of them, are what the journal queries.
    v1::RunSummary summary;
  };

  // Stores a new run. INVALID_ARGUMENT if run_id is empty; ALREADY_EXISTS if
  // a run with that id exists.
  absl::Status CreateRun(const RunRecord& run);
  // Replaces the stored run `run.run_id` (except `planned`, and the markers
  // stay true once true). INVALID_ARGUMENT if run_id is empty; NOT_FOUND if
  // there is no such run.
  absl::Status UpdateRun(const RunRecord& run);
  // NOT_FOUND if there is no such run.
  absl::StatusOr<RunRecord> GetRun(absl::string_view run_id);
  // The run started last (ties: created last). NOT_FOUND when there is none.
  absl::StatusOr<RunRecord> NewestRun();
  // At most `limit` runs (every run if limit <= 0), newest first as NewestRun.
  absl::StatusOr<std::vector<RunRecord>> ListRuns(int limit);
  // The runs in state RUNNING (the ones to resume after a restart), oldest
  // first.
  absl::StatusOr<std::vector<RunRecord>> UnfinishedRuns();

  // ---- jobs: one VM of a run ----

  struct JobRecord {
    std::string job_id, run_id;
    int seq = 0;  // run order; unique within the run
    v1::PlannedVm plan;
    v1::JobSpec spec;      // the current attempt's spec
    v1::JobStatus status;  // the latest reported state
    // Once stored as true these stay true.
    bool dispatched = false;  // handed to an agent at least once
    bool recorded = false;    // its status.log line / outcome was written
    std::vector<std::string> warnings;
    // The plan and the spec are as last stored (a report within an
    // attempt): they are not written again.
    bool same_spec = false;
  };

  // Stores all of a run's jobs in one transaction and sets the run's
  // `planned`; on any error nothing is written. A job with an empty run_id
  // belongs to `run_id`. Errors: INVALID_ARGUMENT for an empty job_id or a
  // job naming another run; NOT_FOUND if the run does not exist;
  // FAILED_PRECONDITION if the run is already planned; ALREADY_EXISTS for a
  // job_id that exists (in this batch or any run) or a seq used twice.
  absl::Status PutPlannedJobs(absl::string_view run_id,
                              const std::vector<JobRecord>& jobs);
  // Replaces the stored job `job.job_id`: plan, spec, status, warnings and
  // the sticky flags; its run_id and seq stay as planned. INVALID_ARGUMENT
  // if job_id is empty; NOT_FOUND if there is no such job.
  absl::Status UpdateJob(const JobRecord& job);
  // UpdateJob for several jobs in one transaction (one disk sync instead of
  // one per job); on any error none is changed. Errors as UpdateJob.
  absl::Status UpdateJobs(const std::vector<JobRecord>& jobs);
  // NOT_FOUND if there is no such job.
  absl::StatusOr<JobRecord> GetJob(absl::string_view job_id);
  // The run's jobs by seq; empty for an unknown or unplanned run.
  absl::StatusOr<std::vector<JobRecord>> Jobs(absl::string_view run_id);

  // ---- attempts: one try of a job on one agent ----

  struct AttemptRecord {
    std::string job_id;
    uint32_t attempt = 0;
    uint64_t fencing_token = 0;
    std::string host_uuid, agent_id;
    int64_t started_unix_ms = 0, ended_unix_ms = 0;
    // "" while running, "succeeded", "failed", "cancelled" or "fenced".
    std::string outcome;
    std::string reason;
    bool commit_granted = false;
  };

  // Inserts or replaces the attempt (job_id, attempt). INVALID_ARGUMENT for
  // an empty job_id; FAILED_PRECONDITION if the job does not exist.
  absl::Status PutAttempt(const AttemptRecord& attempt);
  // The job's attempts by attempt number; empty for an unknown job.
  absl::StatusOr<std::vector<AttemptRecord>> Attempts(absl::string_view job_id);

  // The next fencing token: strictly greater than every token this journal
  // ever returned, also across restarts, and durable before it is returned.
  // The first is 1. RESOURCE_EXHAUSTED if the counter is at its maximum
  // (2^63 - 1).
  absl::StatusOr<uint64_t> NextFencingToken();

  // ---- events: the run's history for `status` ----

  struct EventRecord {
    int64_t id = 0;      // assigned by AddEvent, increasing
    std::string run_id;  // "" for the coordinator as a whole
    std::string job_id;  // "" for the run as a whole
    int64_t time_unix_ms = 0;
    std::string kind, message;
  };

  // Appends `event` (its id is ignored) and returns the id assigned, greater
  // than every id assigned before. INVALID_ARGUMENT (without echoing the
  // text) if the message contains an XAPI reference value (see above).
  absl::StatusOr<int64_t> AddEvent(const EventRecord& event);

  // UpdateJob, with AddEvent and PutAttempt when given, in one transaction
  // (one fsync): a job's new phase, its event and its ended attempt are
  // written together or not at all. With `sync` false the transaction is
  // written but not fsynced: the next synced one (whichever) makes it
  // durable with itself; a crash of the process loses nothing, a crash of
  // the machine may lose it (never what was synced after it).
  absl::Status RecordJobChange(const JobRecord& job, const EventRecord* event,
                               const AttemptRecord* attempt, bool sync = true);
  // The events of `run_id` with id > after_id, by id, at most `limit` (all
  // if limit <= 0). Page on with the last id returned.
  absl::StatusOr<std::vector<EventRecord>> Events(absl::string_view run_id,
                                                  int64_t after_id, int limit);

  // ---- agents ----

  struct AgentRecord {
    v1::AgentIdentity identity;
    std::string peer;
    uint32_t max_jobs = 0;
    int64_t first_seen_unix_ms = 0, last_seen_unix_ms = 0;
  };

  // Inserts or replaces the agent identity.agent_id; an existing agent keeps
  // its stored first_seen_unix_ms. INVALID_ARGUMENT if agent_id is empty.
  absl::Status PutAgent(const AgentRecord& agent);
  // Every agent ever seen, by agent_id.
  absl::StatusOr<std::vector<AgentRecord>> ListAgents();

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* stmt) const;
  };
  class Statement;
  class Transaction;

  explicit RunJournal(std::unique_ptr<sqlite3, DbCloser> db);

  // Settings of the connection, and the schema of a new file.
  absl::Status InitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The cached prepared statement for `sql` (fixed text, values are bound),
  // reset and unbound when the returned Statement goes away.
  absl::StatusOr<Statement> PrepareLocked(absl::string_view sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutAttemptLocked(const AttemptRecord& attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> AddEventLocked(const EventRecord& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpdateJobLocked(const JobRecord& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The runs `where_and_order` (a clause after "FROM runs") selects, with
  // `key` bound to its first parameter if not null and `limit` to its last.
  absl::StatusOr<std::vector<RunRecord>> QueryRunsLocked(
      absl::string_view where_and_order, const std::string* key, int limit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The jobs `where_and_order` (after "FROM jobs") selects, with `key` bound
  // to its one parameter.
  absl::StatusOr<std::vector<JobRecord>> QueryJobsLocked(
      absl::string_view where_and_order, const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite3, DbCloser> db_ ABSL_GUARDED_BY(mu_);
  // Prepared statements by SQL text; finalized before db_ is closed.
  std::map<std::string, std::unique_ptr<sqlite3_stmt, StmtFinalizer>,
           std::less<>>
      statements_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb::coordinator
