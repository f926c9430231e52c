// SPDX-License-Identifier: Apache-2.0
#include "coordinator/run_journal.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/message_lite.h"
#include <sqlite3.h>

#include "common/base/redact.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"

namespace vmb::coordinator {
namespace {

constexpr char kFencingCounter[] = "fencing_token";

// Version 1. Key fields are columns (queried and indexed); messages are
// serialized protos. `runs.id` gives a stable creation order (a table's
// implicit rowid may change on VACUUM).
constexpr char kSchema[] = R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  started_unix_ms INTEGER NOT NULL,
  finished_unix_ms INTEGER NOT NULL,
  backup_dir TEXT NOT NULL,
  config_name TEXT NOT NULL,
  config_text TEXT NOT NULL,
  overrides BLOB NOT NULL,
  share_id TEXT NOT NULL,
  status_log_begun INTEGER NOT NULL,
  pool_dump_done INTEGER NOT NULL,
  planned INTEGER NOT NULL,
  summary BLOB NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_unix_ms, id);
CREATE INDEX runs_by_state ON runs (state, started_unix_ms, id);
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY NOT NULL,
  run_id TEXT NOT NULL REFERENCES runs (run_id),
  seq INTEGER NOT NULL,
  phase INTEGER NOT NULL,
  dispatched INTEGER NOT NULL,
  recorded INTEGER NOT NULL,
  plan BLOB NOT NULL,
  spec BLOB NOT NULL,
  status BLOB NOT NULL,
  warnings BLOB NOT NULL,
  UNIQUE (run_id, seq)
);
CREATE TABLE attempts (
  job_id TEXT NOT NULL REFERENCES jobs (job_id),
  attempt INTEGER NOT NULL,
  fencing_token INTEGER NOT NULL,
  host_uuid TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  started_unix_ms INTEGER NOT NULL,
  ended_unix_ms INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  reason TEXT NOT NULL,
  commit_granted INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;
CREATE TABLE counters (
  name TEXT PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('fencing_token', 0);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  time_unix_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);
CREATE TABLE agents (
  agent_id TEXT PRIMARY KEY NOT NULL,
  identity BLOB NOT NULL,
  peer TEXT NOT NULL,
  max_jobs INTEGER NOT NULL,
  first_seen_unix_ms INTEGER NOT NULL,
  last_seen_unix_ms INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql";

constexpr char kRunColumns[] =
    "SELECT run_id, state, backup_dir, config_name, config_text, overrides, "
    "started_unix_ms, finished_unix_ms, share_id, status_log_begun, "
    "pool_dump_done, planned, summary FROM runs ";

constexpr char kJobColumns[] =
    "SELECT job_id, run_id, seq, plan, spec, status, dispatched, recorded, "
    "warnings FROM jobs ";

constexpr int kBusyTimeoutMs = 10'000;

// A list of strings as the wire format of `repeated string values = 1;`.
constexpr uint32_t kStringListTag = (1 << 3) | 2;

std::string EncodeStrings(const std::vector<std::string>& values) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    for (const std::string& value : values) {
      coded.WriteTag(kStringListTag);
      coded.WriteVarint32(static_cast<uint32_t>(value.size()));
      coded.WriteString(value);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeStrings(absl::string_view data,
                                                       absl::string_view what) {
  std::vector<std::string> values;
  google::protobuf::io::CodedInputStream coded(
      reinterpret_cast<const uint8_t*>(data.data()),
      static_cast<int>(data.size()));
  while (!coded.ExpectAtEnd()) {
    uint32_t size = 0;
    std::string value;
    if (coded.ReadTag() != kStringListTag || !coded.ReadVarint32(&size) ||
        !coded.ReadString(&value, static_cast<int>(size))) {
      return absl::DataLossError(
          absl::StrCat("run journal: stored ", what, " do not parse"));
    }
    values.push_back(std::move(value));
  }
  return values;
}

absl::Status ParseMessage(absl::string_view data,
                          google::protobuf::MessageLite* message,
                          absl::string_view what) {
  if (!message->ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::DataLossError(
        absl::StrCat("run journal: stored ", what, " does not parse"));
  }
  return absl::OkStatus();
}

// "OpaqueRef:" followed by a value other than the redacted forms: a live
// XAPI reference, which may be a session. Messages name objects by uuid and
// name instead.
bool ContainsXapiRef(absl::string_view text) {
  static constexpr absl::string_view kPrefix = "OpaqueRef:";
  for (size_t at = text.find(kPrefix); at != absl::string_view::npos;
       at = text.find(kPrefix, at + 1)) {
    absl::string_view rest = text.substr(at + kPrefix.size());
    if (absl::StartsWith(rest, "NULL") || absl::StartsWith(rest, "(session)")) {
      continue;
    }
    if (!rest.empty() &&
        absl::ascii_isalnum(static_cast<unsigned char>(rest[0]))) {
      return true;
    }
  }
  return false;
}

// The messages for people in a job's status (its error, reason, warnings)
// with every registered secret redacted; the rest (names, uuids) as is, so
// that a resumed run finds its VMs.
v1::JobStatus Redacted(const v1::JobStatus& status) {
  v1::JobStatus out = status;
  out.set_error_message(Redact(out.error_message()));
  for (std::string& w : *out.mutable_warnings()) w = Redact(w);
  if (out.has_xenapi_error()) {
    for (std::string& p : *out.mutable_xenapi_error()->mutable_params())
      p = Redact(p);
  }
  return out;
}

v1::RunSummary Redacted(const v1::RunSummary& summary) {
  v1::RunSummary out = summary;
  out.set_fatal(Redact(out.fatal()));
  out.set_mail(Redact(out.mail()));
  out.set_pool_db_dump(Redact(out.pool_db_dump()));
  for (std::string& w : *out.mutable_run_warnings()) w = Redact(w);
  for (v1::VmOutcome& vm : *out.mutable_vms()) {
    if (vm.has_status()) *vm.mutable_status() = Redacted(vm.status());
  }
  return out;
}

}  // namespace

absl::Status SqliteToStatus(int code, absl::string_view what, sqlite3* db) {
  if (code == SQLITE_OK) return absl::OkStatus();
  const char* text = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  std::string message =
      absl::StrCat(what, ": ", text, " (SQLite error ", code, ")");
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(message);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_PRIMARYKEY ||
          code == SQLITE_CONSTRAINT_UNIQUE) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    case SQLITE_NOTADB:
      return absl::FailedPreconditionError(message);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(message);
    case SQLITE_CORRUPT:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

void RunJournal::DbCloser::operator()(sqlite3* db) const {
  // Statements are finalized first (statements_), so this closes at once.
  sqlite3_close_v2(db);
}

void RunJournal::StmtFinalizer::operator()(sqlite3_stmt* stmt) const {
  sqlite3_finalize(stmt);
}

// A borrowed cached statement: parameters are bound in order (the first
// failure is kept and returned by Step), and it is reset and unbound when
// this goes away so that the next user finds it clean and no read
// transaction stays open.
class RunJournal::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        next_(other.next_),
        bind_status_(std::move(other.bind_status_)) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  Statement& Text(absl::string_view value) {
    // An empty view may have a null data pointer, which SQLite binds as NULL.
    const char* data = value.empty() ? "" : value.data();
    return Check(sqlite3_bind_text64(stmt_, next_, data, value.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  // A message for people (a reason, an event): every registered secret
  // redacted (common/base/redact.h), as in the log.
  Statement& MessageText(absl::string_view value) {
    return Text(Redact(value));
  }
  Statement& Blob(absl::string_view value) {
    const char* data = value.empty() ? "" : value.data();
    return Check(sqlite3_bind_blob64(stmt_, next_, data, value.size(),
                                     SQLITE_TRANSIENT));
  }
  Statement& Message(const google::protobuf::MessageLite& message) {
    return Blob(message.SerializeAsString());
  }
  // The message, or NULL when `message` is null.
  Statement& MessageOrNull(const google::protobuf::MessageLite* message) {
    if (message != nullptr) return Message(*message);
    return Check(sqlite3_bind_null(stmt_, next_));
  }
  Statement& Int(int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, next_, value));
  }

  // True for a row, false when done.
  absl::StatusOr<bool> Step(absl::string_view what) {
    VMB_RETURN_IF_ERROR(Annotate(bind_status_, what));
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteToStatus(rc, what, db_);
  }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view what) {
    VMB_ASSIGN_OR_RETURN(bool row, Step(what));
    if (row) return absl::InternalError(absl::StrCat(what, ": unexpected row"));
    return absl::OkStatus();
  }

  int64_t ColumnInt(int column) const {
    return sqlite3_column_int64(stmt_, column);
  }
  bool ColumnBool(int column) const { return ColumnInt(column) != 0; }
  absl::string_view ColumnBytes(int column) const {
    // The pointer first, then the size (SQLite's documented order).
    const void* data = sqlite3_column_blob(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr) return absl::string_view();
    return absl::string_view(static_cast<const char*>(data),
                             static_cast<size_t>(size));
  }
  std::string ColumnText(int column) const {
    return std::string(ColumnBytes(column));
  }

 private:
  Statement& Check(int rc) {
    if (rc != SQLITE_OK && bind_status_.ok()) {
      bind_status_ =
          SqliteToStatus(rc, absl::StrCat("binding parameter ", next_), db_);
    }
    ++next_;
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int next_ = 1;
  absl::Status bind_status_;
};

// BEGIN IMMEDIATE (takes the write lock at once, so that a busy database
// fails here rather than half-way); rolled back unless committed.
class RunJournal::Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (open_) {
      // Best effort: a failed rollback leaves SQLite to roll back itself.
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  absl::Status Begin() {
    VMB_RETURN_IF_ERROR(SqliteToStatus(
        sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
        "beginning a transaction", db_));
    open_ = true;
    return absl::OkStatus();
  }
  absl::Status Commit() {
    VMB_RETURN_IF_ERROR(
        SqliteToStatus(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr),
                       "committing", db_));
    open_ = false;
    return absl::OkStatus();
  }

 private:
  sqlite3* const db_;
  bool open_ = false;
};

RunJournal::RunJournal(std::unique_ptr<sqlite3, DbCloser> db)
    : db_(std::move(db)) {}

RunJournal::~RunJournal() = default;

absl::StatusOr<std::unique_ptr<RunJournal>> RunJournal::Open(
    const std::string& path) {
  const std::string context = absl::StrCat("opening run journal ", path);
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  std::unique_ptr<sqlite3, DbCloser> db(raw);
  if (rc != SQLITE_OK) return SqliteToStatus(rc, context, db.get());
  std::unique_ptr<RunJournal> journal(new RunJournal(std::move(db)));
  {
    absl::MutexLock lock(&journal->mu_);
    VMB_RETURN_IF_ERROR(Annotate(journal->InitLocked(), context));
  }
  return journal;
}

absl::Status RunJournal::InitLocked() {
  sqlite3* db = db_.get();
  sqlite3_extended_result_codes(db, 1);
  VMB_RETURN_IF_ERROR(SqliteToStatus(sqlite3_busy_timeout(db, kBusyTimeoutMs),
                                     "setting the busy timeout", db));
  {
    // The first statement that reads the file: a file that is not a
    // database fails here.
    VMB_ASSIGN_OR_RETURN(Statement wal,
                         PrepareLocked("PRAGMA journal_mode=WAL"));
    VMB_ASSIGN_OR_RETURN(bool row, wal.Step("setting WAL mode"));
    std::string mode = row ? wal.ColumnText(0) : "";
    // An in-memory database stays "memory".
    if (mode != "wal" && mode != "memory") {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot use WAL mode (journal mode is \"", mode, "\")"));
    }
  }
  VMB_RETURN_IF_ERROR(SqliteToStatus(
      sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON",
                   nullptr, nullptr, nullptr),
      "setting pragmas", db));

  Transaction transaction(db);
  VMB_RETURN_IF_ERROR(transaction.Begin());
  int64_t version = 0;
  {
    VMB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked("PRAGMA user_version"));
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading the schema version"));
    if (row) version = stmt.ColumnInt(0);
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", version, " is newer than this coordinator knows (",
        kSchemaVersion, ")"));
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("unknown schema version ", version));
  }
  {
    VMB_ASSIGN_OR_RETURN(Statement stmt,
                         PrepareLocked("SELECT count(*) FROM sqlite_schema"));
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading the schema"));
    if (row && stmt.ColumnInt(0) != 0) {
      return absl::FailedPreconditionError(
          "a SQLite database without a run journal schema version: not a run "
          "journal");
    }
  }
  VMB_RETURN_IF_ERROR(
      SqliteToStatus(sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr),
                     "creating the schema", db));
  return transaction.Commit();
}

absl::StatusOr<RunJournal::Statement> RunJournal::PrepareLocked(
    absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* raw = nullptr;
    int rc =
        sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                           SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw);
    VMB_RETURN_IF_ERROR(SqliteToStatus(rc, "preparing a statement", db_.get()));
    it = statements_.emplace(std::string(sql), std::move(stmt)).first;
  }
  return Statement(db_.get(), it->second.get());
}

// ---- runs ----

namespace {

absl::Status CheckId(absl::string_view id, absl::string_view what) {
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty ", what));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunJournal::CreateRun(const RunRecord& run) {
  VMB_RETURN_IF_ERROR(CheckId(run.run_id, "run id"));
  const std::string what = absl::StrCat("creating run ", run.run_id);
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked(
          "INSERT INTO runs (run_id, state, started_unix_ms, "
          "finished_unix_ms, backup_dir, config_name, config_text, overrides, "
          "share_id, status_log_begun, pool_dump_done, planned, summary) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"));
  stmt.Text(run.run_id)
      .Int(run.state)
      .Int(run.started_unix_ms)
      .Int(run.finished_unix_ms)
      .Text(run.backup_dir)
      .Text(run.config_name)
      .Text(run.config_text)
      .Blob(EncodeStrings(run.overrides))
      .Text(run.share_id)
      .Int(run.status_log_begun)
      .Int(run.pool_dump_done)
      .Message(Redacted(run.summary));
  return stmt.Run(what);
}

absl::Status RunJournal::UpdateRun(const RunRecord& run) {
  VMB_RETURN_IF_ERROR(CheckId(run.run_id, "run id"));
  const std::string what = absl::StrCat("updating run ", run.run_id);
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("UPDATE runs SET state = ?, started_unix_ms = ?, "
                    "finished_unix_ms = ?, backup_dir = ?, config_name = ?, "
                    "config_text = ?, overrides = ?, share_id = ?, "
                    "status_log_begun = status_log_begun OR ?, "
                    "pool_dump_done = pool_dump_done OR ?, summary = ? "
                    "WHERE run_id = ?"));
  stmt.Int(run.state)
      .Int(run.started_unix_ms)
      .Int(run.finished_unix_ms)
      .Text(run.backup_dir)
      .Text(run.config_name)
      .Text(run.config_text)
      .Blob(EncodeStrings(run.overrides))
      .Text(run.share_id)
      .Int(run.status_log_begun)
      .Int(run.pool_dump_done)
      .Message(Redacted(run.summary))
      .Text(run.run_id);
  VMB_RETURN_IF_ERROR(stmt.Run(what));
  if (sqlite3_changes(db_.get()) == 0) {
    return absl::NotFoundError(absl::StrCat(what, ": no such run"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RunJournal::RunRecord>> RunJournal::QueryRunsLocked(
    absl::string_view where_and_order, const std::string* key, int limit) {
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked(absl::StrCat(kRunColumns, where_and_order, " LIMIT ?")));
  if (key != nullptr) stmt.Text(*key);
  stmt.Int(limit > 0 ? limit : -1);
  std::vector<RunRecord> runs;
  while (true) {
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading runs"));
    if (!row) break;
    RunRecord& run = runs.emplace_back();
    run.run_id = stmt.ColumnText(0);
    run.state = static_cast<v1::RunState>(stmt.ColumnInt(1));
    run.backup_dir = stmt.ColumnText(2);
    run.config_name = stmt.ColumnText(3);
    run.config_text = stmt.ColumnText(4);
    VMB_ASSIGN_OR_RETURN(
        run.overrides,
        DecodeStrings(stmt.ColumnBytes(5),
                      absl::StrCat("overrides of run ", run.run_id)));
    run.started_unix_ms = stmt.ColumnInt(6);
    run.finished_unix_ms = stmt.ColumnInt(7);
    run.share_id = stmt.ColumnText(8);
    run.status_log_begun = stmt.ColumnBool(9);
    run.pool_dump_done = stmt.ColumnBool(10);
    run.planned = stmt.ColumnBool(11);
    VMB_RETURN_IF_ERROR(
        ParseMessage(stmt.ColumnBytes(12), &run.summary,
                     absl::StrCat("summary of run ", run.run_id)));
  }
  return runs;
}

absl::StatusOr<RunJournal::RunRecord> RunJournal::GetRun(
    absl::string_view run_id) {
  const std::string key(run_id);
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(std::vector<RunRecord> runs,
                       QueryRunsLocked("WHERE run_id = ?", &key, 1));
  if (runs.empty()) {
    return absl::NotFoundError(absl::StrCat("no run ", run_id));
  }
  return std::move(runs.front());
}

absl::StatusOr<RunJournal::RunRecord> RunJournal::NewestRun() {
  VMB_ASSIGN_OR_RETURN(std::vector<RunRecord> runs, ListRuns(1));
  if (runs.empty()) return absl::NotFoundError("no run yet");
  return std::move(runs.front());
}

absl::StatusOr<std::vector<RunJournal::RunRecord>> RunJournal::ListRuns(
    int limit) {
  absl::MutexLock lock(&mu_);
  return QueryRunsLocked("ORDER BY started_unix_ms DESC, id DESC", nullptr,
                         limit);
}

absl::StatusOr<std::vector<RunJournal::RunRecord>>
RunJournal::UnfinishedRuns() {
  // A constant of the program in the SQL text, not a value from outside.
  const std::string where =
      absl::StrCat("WHERE state = ", static_cast<int>(v1::RUN_STATE_RUNNING),
                   " ORDER BY started_unix_ms, id");
  absl::MutexLock lock(&mu_);
  return QueryRunsLocked(where, nullptr, 0);
}

// ---- jobs ----

absl::Status RunJournal::PutPlannedJobs(absl::string_view run_id,
                                        const std::vector<JobRecord>& jobs) {
  VMB_RETURN_IF_ERROR(CheckId(run_id, "run id"));
  const std::string what = absl::StrCat("planning the jobs of run ", run_id);
  for (const JobRecord& job : jobs) {
    VMB_RETURN_IF_ERROR(Annotate(CheckId(job.job_id, "job id"), what));
    if (!job.run_id.empty() && job.run_id != run_id) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": job ", job.job_id, " belongs to run ", job.run_id));
    }
  }
  absl::MutexLock lock(&mu_);
  Transaction transaction(db_.get());
  VMB_RETURN_IF_ERROR(Annotate(transaction.Begin(), what));
  {
    VMB_ASSIGN_OR_RETURN(
        Statement stmt,
        PrepareLocked("SELECT planned FROM runs WHERE run_id = ?"));
    stmt.Text(run_id);
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step(what));
    if (!row) return absl::NotFoundError(absl::StrCat(what, ": no such run"));
    if (stmt.ColumnBool(0)) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": the run is already planned"));
    }
  }
  for (const JobRecord& job : jobs) {
    VMB_ASSIGN_OR_RETURN(
        Statement stmt,
        PrepareLocked("INSERT INTO jobs (job_id, run_id, seq, phase, "
                      "dispatched, recorded, plan, spec, status, warnings) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    stmt.Text(job.job_id)
        .Text(run_id)
        .Int(job.seq)
        .Int(job.status.phase())
        .Int(job.dispatched)
        .Int(job.recorded)
        .Message(job.plan)
        .Message(job.spec)
        .Message(Redacted(job.status))
        .Blob(EncodeStrings(job.warnings));
    VMB_RETURN_IF_ERROR(stmt.Run(
        absl::StrCat(what, ": job ", job.job_id, " (seq ", job.seq, ")")));
  }
  {
    VMB_ASSIGN_OR_RETURN(
        Statement stmt,
        PrepareLocked("UPDATE runs SET planned = 1 WHERE run_id = ?"));
    stmt.Text(run_id);
    VMB_RETURN_IF_ERROR(stmt.Run(what));
  }
  return Annotate(transaction.Commit(), what);
}

absl::Status RunJournal::UpdateJobLocked(const JobRecord& job) {
  VMB_RETURN_IF_ERROR(CheckId(job.job_id, "job id"));
  const std::string what = absl::StrCat("updating job ", job.job_id);
  // A NULL plan or spec keeps the one stored.
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("UPDATE jobs SET phase = ?, "
                    "dispatched = dispatched OR ?, recorded = recorded OR ?, "
                    "plan = coalesce(?, plan), spec = coalesce(?, spec), "
                    "status = ?, warnings = ? WHERE job_id = ?"));
  stmt.Int(job.status.phase())
      .Int(job.dispatched)
      .Int(job.recorded)
      .MessageOrNull(job.same_spec ? nullptr : &job.plan)
      .MessageOrNull(job.same_spec ? nullptr : &job.spec)
      .Message(Redacted(job.status))
      .Blob(EncodeStrings(job.warnings))
      .Text(job.job_id);
  VMB_RETURN_IF_ERROR(stmt.Run(what));
  if (sqlite3_changes(db_.get()) == 0) {
    return absl::NotFoundError(absl::StrCat(what, ": no such job"));
  }
  return absl::OkStatus();
}

absl::Status RunJournal::UpdateJob(const JobRecord& job) {
  absl::MutexLock lock(&mu_);
  return UpdateJobLocked(job);
}

absl::Status RunJournal::UpdateJobs(const std::vector<JobRecord>& jobs) {
  absl::MutexLock lock(&mu_);
  Transaction transaction(db_.get());
  VMB_RETURN_IF_ERROR(Annotate(transaction.Begin(), "updating jobs"));
  for (const JobRecord& job : jobs) {
    VMB_RETURN_IF_ERROR(UpdateJobLocked(job));
  }
  return Annotate(transaction.Commit(), "updating jobs");
}

absl::StatusOr<std::vector<RunJournal::JobRecord>> RunJournal::QueryJobsLocked(
    absl::string_view where_and_order, const std::string& key) {
  VMB_ASSIGN_OR_RETURN(Statement stmt, PrepareLocked(absl::StrCat(
                                           kJobColumns, where_and_order)));
  stmt.Text(key);
  std::vector<JobRecord> jobs;
  while (true) {
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading jobs"));
    if (!row) break;
    JobRecord& job = jobs.emplace_back();
    job.job_id = stmt.ColumnText(0);
    job.run_id = stmt.ColumnText(1);
    job.seq = static_cast<int>(stmt.ColumnInt(2));
    const std::string of = absl::StrCat(" of job ", job.job_id);
    VMB_RETURN_IF_ERROR(
        ParseMessage(stmt.ColumnBytes(3), &job.plan, absl::StrCat("plan", of)));
    VMB_RETURN_IF_ERROR(
        ParseMessage(stmt.ColumnBytes(4), &job.spec, absl::StrCat("spec", of)));
    VMB_RETURN_IF_ERROR(ParseMessage(stmt.ColumnBytes(5), &job.status,
                                     absl::StrCat("status", of)));
    job.dispatched = stmt.ColumnBool(6);
    job.recorded = stmt.ColumnBool(7);
    VMB_ASSIGN_OR_RETURN(
        job.warnings,
        DecodeStrings(stmt.ColumnBytes(8), absl::StrCat("warnings", of)));
  }
  return jobs;
}

absl::StatusOr<RunJournal::JobRecord> RunJournal::GetJob(
    absl::string_view job_id) {
  const std::string key(job_id);
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs,
                       QueryJobsLocked("WHERE job_id = ?", key));
  if (jobs.empty()) {
    return absl::NotFoundError(absl::StrCat("no job ", job_id));
  }
  return std::move(jobs.front());
}

absl::StatusOr<std::vector<RunJournal::JobRecord>> RunJournal::Jobs(
    absl::string_view run_id) {
  const std::string key(run_id);
  absl::MutexLock lock(&mu_);
  return QueryJobsLocked("WHERE run_id = ? ORDER BY seq", key);
}

// ---- attempts ----

absl::Status RunJournal::PutAttemptLocked(const AttemptRecord& attempt) {
  VMB_RETURN_IF_ERROR(CheckId(attempt.job_id, "job id"));
  const std::string what = absl::StrCat("storing attempt ", attempt.attempt,
                                        " of job ", attempt.job_id);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("INSERT OR REPLACE INTO attempts (job_id, attempt, "
                    "fencing_token, host_uuid, agent_id, started_unix_ms, "
                    "ended_unix_ms, outcome, reason, commit_granted) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  // A token is at most 2^63 - 1 (NextFencingToken); the cast round-trips.
  stmt.Text(attempt.job_id)
      .Int(attempt.attempt)
      .Int(static_cast<int64_t>(attempt.fencing_token))
      .Text(attempt.host_uuid)
      .Text(attempt.agent_id)
      .Int(attempt.started_unix_ms)
      .Int(attempt.ended_unix_ms)
      .Text(attempt.outcome)
      .MessageText(attempt.reason)
      .Int(attempt.commit_granted);
  absl::Status status = stmt.Run(what);
  if (absl::IsFailedPrecondition(status)) {
    // The only constraint left to fail is the job's foreign key.
    return absl::FailedPreconditionError(absl::StrCat(what, ": no such job"));
  }
  return status;
}

absl::Status RunJournal::PutAttempt(const AttemptRecord& attempt) {
  absl::MutexLock lock(&mu_);
  return PutAttemptLocked(attempt);
}

absl::Status RunJournal::RecordJobChange(const JobRecord& job,
                                         const EventRecord* event,
                                         const AttemptRecord* attempt,
                                         bool sync) {
  absl::MutexLock lock(&mu_);
  const std::string what = absl::StrCat("recording job ", job.job_id);
  // In WAL mode, synchronous=NORMAL commits without fsync; the WAL is
  // appended in order, so the next FULL commit's fsync covers this one.
  if (!sync) {
    VMB_RETURN_IF_ERROR(
        SqliteToStatus(sqlite3_exec(db_.get(), "PRAGMA synchronous=NORMAL",
                                    nullptr, nullptr, nullptr),
                       what, db_.get()));
  }
  absl::Status s;
  {
    Transaction transaction(db_.get());  // rolled back unless committed
    s = Annotate(transaction.Begin(), what);
    if (s.ok() && attempt != nullptr) s = PutAttemptLocked(*attempt);
    if (s.ok()) s = UpdateJobLocked(job);
    if (s.ok() && event != nullptr) s = AddEventLocked(*event).status();
    if (s.ok()) s = Annotate(transaction.Commit(), what);
  }
  if (!sync) {
    absl::Status full =
        SqliteToStatus(sqlite3_exec(db_.get(), "PRAGMA synchronous=FULL",
                                    nullptr, nullptr, nullptr),
                       what, db_.get());
    if (s.ok()) s = full;
  }
  return s;
}

absl::StatusOr<std::vector<RunJournal::AttemptRecord>> RunJournal::Attempts(
    absl::string_view job_id) {
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("SELECT job_id, attempt, fencing_token, host_uuid, "
                    "agent_id, started_unix_ms, ended_unix_ms, outcome, "
                    "reason, commit_granted FROM attempts WHERE job_id = ? "
                    "ORDER BY attempt"));
  stmt.Text(job_id);
  std::vector<AttemptRecord> attempts;
  while (true) {
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading attempts"));
    if (!row) break;
    AttemptRecord& attempt = attempts.emplace_back();
    attempt.job_id = stmt.ColumnText(0);
    attempt.attempt = static_cast<uint32_t>(stmt.ColumnInt(1));
    attempt.fencing_token = static_cast<uint64_t>(stmt.ColumnInt(2));
    attempt.host_uuid = stmt.ColumnText(3);
    attempt.agent_id = stmt.ColumnText(4);
    attempt.started_unix_ms = stmt.ColumnInt(5);
    attempt.ended_unix_ms = stmt.ColumnInt(6);
    attempt.outcome = stmt.ColumnText(7);
    attempt.reason = stmt.ColumnText(8);
    attempt.commit_granted = stmt.ColumnBool(9);
  }
  return attempts;
}

absl::StatusOr<uint64_t> RunJournal::NextFencingToken() {
  constexpr absl::string_view kWhat = "issuing a fencing token";
  absl::MutexLock lock(&mu_);
  Transaction transaction(db_.get());
  VMB_RETURN_IF_ERROR(Annotate(transaction.Begin(), kWhat));
  {
    VMB_ASSIGN_OR_RETURN(
        Statement stmt,
        PrepareLocked("UPDATE counters SET value = value + 1 "
                      "WHERE name = ? AND value < 9223372036854775807"));
    stmt.Text(kFencingCounter);
    VMB_RETURN_IF_ERROR(stmt.Run(kWhat));
  }
  if (sqlite3_changes(db_.get()) == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat(kWhat, ": the counter is at its maximum"));
  }
  int64_t token = 0;
  {
    VMB_ASSIGN_OR_RETURN(
        Statement stmt,
        PrepareLocked("SELECT value FROM counters WHERE name = ?"));
    stmt.Text(kFencingCounter);
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step(kWhat));
    if (!row) return absl::DataLossError(absl::StrCat(kWhat, ": no counter"));
    token = stmt.ColumnInt(0);
  }
  // Durable (synchronous=FULL) once the commit returns.
  VMB_RETURN_IF_ERROR(Annotate(transaction.Commit(), kWhat));
  return static_cast<uint64_t>(token);
}

// ---- events ----

absl::StatusOr<int64_t> RunJournal::AddEvent(const EventRecord& event) {
  absl::MutexLock lock(&mu_);
  return AddEventLocked(event);
}

absl::StatusOr<int64_t> RunJournal::AddEventLocked(const EventRecord& event) {
  if (ContainsXapiRef(event.message)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing an event of kind \"", event.kind,
        "\": its message contains an XAPI reference (may be a session)"));
  }
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("INSERT INTO events (run_id, job_id, time_unix_ms, kind, "
                    "message) VALUES (?, ?, ?, ?, ?)"));
  stmt.Text(event.run_id)
      .Text(event.job_id)
      .Int(event.time_unix_ms)
      .Text(event.kind)
      .MessageText(event.message);
  VMB_RETURN_IF_ERROR(stmt.Run("adding an event"));
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_.get()));
}

absl::StatusOr<std::vector<RunJournal::EventRecord>> RunJournal::Events(
    absl::string_view run_id, int64_t after_id, int limit) {
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("SELECT id, run_id, job_id, time_unix_ms, kind, message "
                    "FROM events WHERE run_id = ? AND id > ? ORDER BY id "
                    "LIMIT ?"));
  stmt.Text(run_id).Int(after_id).Int(limit > 0 ? limit : -1);
  std::vector<EventRecord> events;
  while (true) {
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading events"));
    if (!row) break;
    EventRecord& event = events.emplace_back();
    event.id = stmt.ColumnInt(0);
    event.run_id = stmt.ColumnText(1);
    event.job_id = stmt.ColumnText(2);
    event.time_unix_ms = stmt.ColumnInt(3);
    event.kind = stmt.ColumnText(4);
    event.message = stmt.ColumnText(5);
  }
  return events;
}

// ---- agents ----

absl::Status RunJournal::PutAgent(const AgentRecord& agent) {
  VMB_RETURN_IF_ERROR(CheckId(agent.identity.agent_id(), "agent id"));
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked(
          "INSERT INTO agents (agent_id, identity, peer, max_jobs, "
          "first_seen_unix_ms, last_seen_unix_ms) VALUES (?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (agent_id) DO UPDATE SET identity = excluded.identity, "
          "peer = excluded.peer, max_jobs = excluded.max_jobs, "
          "last_seen_unix_ms = excluded.last_seen_unix_ms"));
  stmt.Text(agent.identity.agent_id())
      .Message(agent.identity)
      .Text(agent.peer)
      .Int(agent.max_jobs)
      .Int(agent.first_seen_unix_ms)
      .Int(agent.last_seen_unix_ms);
  return stmt.Run(absl::StrCat("storing agent ", agent.identity.agent_id()));
}

absl::StatusOr<std::vector<RunJournal::AgentRecord>> RunJournal::ListAgents() {
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(
      Statement stmt,
      PrepareLocked("SELECT agent_id, identity, peer, max_jobs, "
                    "first_seen_unix_ms, last_seen_unix_ms FROM agents "
                    "ORDER BY agent_id"));
  std::vector<AgentRecord> agents;
  while (true) {
    VMB_ASSIGN_OR_RETURN(bool row, stmt.Step("reading agents"));
    if (!row) break;
    AgentRecord& agent = agents.emplace_back();
    VMB_RETURN_IF_ERROR(
        ParseMessage(stmt.ColumnBytes(1), &agent.identity,
                     absl::StrCat("identity of agent ", stmt.ColumnText(0))));
    agent.peer = stmt.ColumnText(2);
    agent.max_jobs = static_cast<uint32_t>(stmt.ColumnInt(3));
    agent.first_seen_unix_ms = stmt.ColumnInt(4);
    agent.last_seen_unix_ms = stmt.ColumnInt(5);
  }
  return agents;
}

}  // namespace vmb::coordinator
