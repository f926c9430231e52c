// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulated pool: the object database, sessions, tasks, faults and the
// logic of XAPI's XML-RPC/JSON-RPC calls and HTTP data handlers. The HTTP
// server (sim_server.h) only moves bytes; every decision is made here.
//
// Thread-safe: one mutex guards all state; download streams and uploads run
// without it and take it briefly to update their task, the request log and
// the records.

#include <stdint.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/fixture.pb.h"
#include "tests/xapi_sim/schema.h"
#include "tests/xapi_sim/sim_value.h"
#include "tests/xapi_sim/streams.h"
#include "tests/xapi_sim/xva_import.h"

namespace vmb::sim {

// One row of the database.
struct Object {
  const ClassSchema* schema = nullptr;
  std::string ref;
  std::vector<SimValue> fields;

  SimValue& at(absl::string_view field);
  const SimValue& at(absl::string_view field) const;
  const std::string& str(absl::string_view field) const { return at(field).s; }
};

// An HTTP request as the server hands it over.
struct HttpRequest {
  std::string host;  // name_label of the host whose address received it
  std::string method;
  std::string path;     // without the query
  std::string handler;  // set by SimPool: the data handler serving it
  std::string raw_query;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> cookies;
  std::string authorization;
  bool chunked = false;
  std::string scheme = "http";
  int port = 0;
  int socket_fd = -1;     // for stall faults: to see the client leave
  std::string body_path;  // PUT bodies are spooled to this file
  uint64_t body_size = 0;
  int64_t content_length = -1;  // the Content-Length header; -1 if none
  int log_index =
      -1;  // set by SimPool: this request's entry in the request log
};

class SimPool;

// A query string with any session_id value replaced by REDACTED (for logs).
std::string RedactSessionInQuery(absl::string_view raw_query);

// The body of a streaming response. Read() is called from the connection's
// thread; Finish() once, when the connection ends.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  // Returns bytes written, 0 at the end, or an error to cut the connection.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t max) = 0;
  // `completed` is true when every byte reached the client.
  virtual void Finish(bool completed) = 0;
};

struct HttpResponse {
  int status = 200;
  bool http10 = false;  // "HTTP/1.0" status line (as /export)
  bool close = true;    // Connection: close
  bool content_length = true;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Set: the body comes from here, close-delimited unless stream_length is
  // set (then a Content-Length of that many bytes is sent).
  std::unique_ptr<ResponseStream> stream;
  std::optional<uint64_t> stream_length;
  bool drop_connection = false;  // write nothing at all, just close
};

// The body of a PUT that a data handler reads as it arrives (/import,
// /import_raw_vdi), without the simulator's lock. Called from the
// connection's thread.
class UploadSink {
 public:
  virtual ~UploadSink() = default;
  // Takes the next bytes of the body. False: close the connection now,
  // without a reply (a CUT fault, the client leaving during a stall, the
  // simulator stopping); Abort() follows.
  virtual bool Write(const char* data, size_t size) = 0;
  // The whole body has arrived: the reply.
  virtual HttpResponse Finish() = 0;
  // The connection ended before Finish().
  virtual void Abort() = 0;
};

// What a data handler decides once a PUT's headers have arrived.
struct UploadStart {
  // Null: `response` is the reply, sent before any of the body is read (a
  // refusal, a redirect, an error page). Set: the body goes here.
  std::unique_ptr<UploadSink> sink;
  HttpResponse response;
};

// What the RPC front end of the modelled release does, from
// settings.product_version (docs/xapi-sim.md 5.1 has the evidence).
enum class RpcGeneration {
  // Before XenServer 6.5: no JSON-RPC. POST /jsonrpc reaches the XML-RPC
  // handler, and a body that is not XML gets a 200 text/xml <fault>.
  kXmlRpcOnly,
  // 6.5 to 7.2: JSON-RPC through ocaml-rpc's own JSON code. Every answer
  // is v1-shaped with "id": 0, errors are arrays. POST /json answers
  // XML-RPC whose successful Value is the result's JSON text.
  kJsonRpcLegacy,
  // 7.3 and 7.4: yojson; v2 requests get v2 answers with the request's id,
  // errors as {"code":0,"message":CODE,"data":[...]}.
  kJsonRpcV2Code0,
  // 7.5 and later: as above with "code":1.
  kJsonRpcV2,
};

// The generation of a product version ("7.2.0"). Errors: INVALID_ARGUMENT
// when it does not start with MAJOR.MINOR (decimal numbers).
absl::StatusOr<RpcGeneration> RpcGenerationOf(
    absl::string_view product_version);

// An XML-RPC or JSON-RPC answer, for the HTTP front end.
struct RpcReply {
  int status = 200;  // 200, or 500 for a body that is not a call
  std::string content_type;
  std::string body;
  bool cors = true;              // Access-Control-Allow-Origin and -Headers
  bool close = false;            // Connection: close
  bool drop_connection = false;  // a host that is down: write nothing
};

// A method the XML-RPC/JSON-RPC dispatcher serves: a row of the one table
// of served methods (Methods() in sim_pool.cc), from which the dispatcher
// takes method names and parameter counts, system.listMethods its list and
// SimPool::ValidateFault the calls a fault may name.
struct ServedMethod {
  std::string name;       // "VM.snapshot"
  size_t min_params = 0;  // the session included
  size_t max_params = 0;  // SIZE_MAX: any number, not looked at
  // The maximum with settings.old_host_snapshot_arity; 0: max_params.
  size_t old_host_max_params = 0;
  // Takes a session as its first parameter. The others
  // (session.login_with_password, system.listMethods) are not counted by
  // SESSION_INVALID faults and no CALL_ERROR fault applies to them.
  bool session = true;
  // In system.listMethods and ServedMethods(): every method but
  // system.listMethods itself, which XAPI does not list either.
  bool listed = true;
};

// A host's listening endpoint.
struct HostInfo {
  std::string name;
  std::string address;
  std::string uuid;
  bool master = false;
};

class SimPool {
 public:
  // Builds the pool from a fixture. Errors: INVALID_ARGUMENT naming the bad
  // fixture entry.
  static absl::StatusOr<std::unique_ptr<SimPool>> Create(
      const Fixture& fixture);
  ~SimPool();

  std::vector<HostInfo> hosts();
  const Credentials& credentials() const { return credentials_; }
  // The scheme and port every host's URL uses, for redirects.
  void SetEndpoint(const std::string& scheme, int port);

  // A POST outside /sim/ received by `host`: JSON-RPC when `path` starts
  // with /jsonrpc and the release has it, else XML-RPC (docs/xapi-sim.md
  // 5.1). Both go through one dispatcher.
  RpcReply HandleRpc(const std::string& host, absl::string_view path,
                     absl::string_view body);

  // An OPTIONS request outside /sim/: XAPI's CORS preflight answer (200,
  // no body, Access-Control-Allow-Origin *, -Allow-Headers
  // "<requested headers>, X-Requested-With" or "X-Requested-With",
  // -Allow-Methods PUT). A host that is down answers nothing.
  HttpResponse HandleOptions(const std::string& host,
                             const std::string& requested_headers);

  // XML-RPC on `/`: returns the body and sets *status (200; 500 for a body
  // that is not XML-RPC at all; -1 when the host is down and answers
  // nothing).
  std::string HandleXmlRpc(const std::string& host, absl::string_view body,
                           int* status);

  RpcGeneration rpc_generation() const { return rpc_generation_; }

  // GET/PUT data handlers and the /sim/ control endpoint, for requests whose
  // body (if any) has been read.
  HttpResponse HandleHttp(HttpRequest& request);
  // A PUT whose headers have arrived. Nullopt: its handler wants the whole
  // body first (HandleHttp). Otherwise the handler streams the body
  // (/import, /import_raw_vdi) or answers before reading it.
  std::optional<UploadStart> StartUpload(HttpRequest& request);

  // Every XML-RPC/JSON-RPC method the simulator serves but
  // system.listMethods itself, which is what system.listMethods answers:
  // class by class in schema order, the class's specific messages, its
  // generic ones, then its field getters (docs/xapi-sim.md 5.5). The listed
  // rows of the one table the dispatcher takes method names and parameter
  // counts from and ValidateFault checks a fault's `call` against.
  static std::vector<std::string> ServedMethods();
  // Every data handler it serves, by path ("/export", ...), in the order of
  // docs/xapi-sim.md section 7.
  static std::vector<std::string> ServedHandlers();
  // OK if `fault` can fire as written: a kind, a `call` that names a served
  // method or handler to which the kind applies, and no field the kind
  // ignores. Errors: INVALID_ARGUMENT saying what is wrong.
  static absl::Status ValidateFault(const Fault& fault);

  // Test support: SHA-256 and size of a VDI's bytes.
  absl::StatusOr<VdiInfo> DescribeVdi(const std::string& uuid);
  SimState State();
  RequestLog Requests(const std::string& host);
  absl::Status AddFault(const Fault& fault);
  void ClearFaults();
  FaultList Faults();

  // Stops streams that wait (stalls, throttles) so the server can shut down.
  void Shutdown();
  bool shutting_down() const { return shutdown_.load(); }

  // Internal, for streams.
  void StreamProgress(const std::string& task, uint64_t done, uint64_t total);
  void StreamFinished(const std::string& task, int log_index, uint64_t bytes,
                      const std::vector<std::string>& error,
                      const std::string& outcome,
                      const std::vector<std::string>& exported_vdis);
  bool TaskCancelling(const std::string& task);
  // An upload's progress: its task's, and the body bytes read so far.
  void UploadProgress(const std::string& task, int log_index, uint64_t received,
                      int64_t content_length);
  // Marks whether a STALL fault holds request `log_index` now.
  void SetStalling(int log_index, bool stalling);
  // Blocks to keep `host`'s outgoing rate under its BANDWIDTH fault.
  void Throttle(const std::string& host, size_t bytes);

 private:
  SimPool() = default;
  struct Session {
    std::string user;
    std::string originator;
    absl::Time created;
    uint64_t seq;
  };
  struct VdiData {
    uint64_t seed = 0;
    std::shared_ptr<DiskImage> image;
    uint32_t chain_length = 1;
    uint32_t in_use_after_export = 0;  // pending VDI_IN_USE refusals
    uint32_t exporting = 0;            // streams reading it now
  };
  struct RpcResult {
    SimValue value;
    std::vector<std::string> error;  // non-empty: a failure
    // The failure comes from XAPI's parameter check, which runs before the
    // dispatcher proper: it is answered without the CORS headers and, over
    // JSON-RPC, always as an error array.
    bool before_dispatch = false;
  };
  // A call that went through the dispatcher, or was dropped by a host that
  // is down.
  struct CallOutcome {
    RpcResult result;
    bool dropped = false;
  };
  struct Arity {
    size_t min;
    size_t max;
  };
  struct Table {
    std::vector<std::string> order;
    absl::flat_hash_map<std::string, std::unique_ptr<Object>> rows;
  };
  struct StreamPlan;
  struct StreamFaults;
  friend class ExportStream;
  class UploadBase;
  class ImportSink;
  class RawVdiSink;

  // Database.
  // A new row with the class's defaults and a new uuid; `ref` defaults to a
  // new one from the fixture-seeded generator.
  Object* CreateLocked(absl::string_view cls, std::string ref = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Object* GetLocked(absl::string_view cls, absl::string_view ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Object* ByUuidLocked(absl::string_view cls, absl::string_view uuid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Object*> AllLocked(absl::string_view cls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DestroyLocked(absl::string_view cls, absl::string_view ref_view)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewUuidLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewRefLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NowLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status LoadFixtureLocked(const Fixture& fixture)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // XML-RPC and JSON-RPC.
  // The faults, host liveness, counting and dispatch every call goes
  // through, whichever protocol carried it.
  CallOutcome RunCall(const std::string& host, const SimCall& call)
      ABSL_LOCKS_EXCLUDED(mu_);
  RpcReply XmlRpcReply(const std::string& host, bool json_path,
                       absl::string_view body) ABSL_LOCKS_EXCLUDED(mu_);
  RpcReply JsonRpcReply(const std::string& host, absl::string_view body)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The row of the served-method table for `method`, or null for a method
  // that is not served.
  static const ServedMethod* FindServedMethod(absl::string_view method);
  // The parameter counts `served` accepts on this pool (the session
  // included): its row's, but VM.snapshot's old maximum with
  // settings.old_host_snapshot_arity.
  Arity ArityOf(const ServedMethod& served) const;
  RpcResult DispatchLocked(const std::string& host, const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult GenericLocked(const std::string& cls, const std::string& message,
                          const SimCall& call, bool* handled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SimValue RecordLocked(const Object& o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult LoginLocked(const std::string& host, const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult SnapshotVmLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult DestroyVmLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult CreateVdiLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult StartVmLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult SnapshotVdiLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RpcResult DestroyVdiLocked(const SimCall& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Object* CopyVdiAsSnapshotLocked(Object* vdi, std::string* error_code)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string MasterAddressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Object* HostByNameLocked(absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HostLiveLocked(const Object& host) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets every host_metrics.live from the fixture and the HOST_DOWN faults.
  void RefreshLivenessLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HostSeesSrLocked(const Object& host, const std::string& sr_ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> VmIdentitiesLocked(const Object& vm)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> VdiVmIdentitiesLocked(const Object& vdi)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Faults: the first matching armed fault of `kind`, consumed if limited.
  const Fault* MatchFaultLocked(Fault::Kind kind, const std::string& host,
                                const std::string& call,
                                const std::vector<std::string>& vm_ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> FaultErrorLocked(const Fault& f,
                                            const std::string& subject)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // HTTP.
  HttpResponse ExportLocked(HttpRequest& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse ExportRawVdiLocked(HttpRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse ExportMetadataLocked(HttpRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse DbDumpLocked(HttpRequest& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  UploadStart ImportStartLocked(HttpRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  UploadStart ImportMetadataStartLocked(HttpRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct ImportOptions;
  // The part /import and /import_metadata share once the request is known
  // good: its CALL_ERROR fault (then start->response), or the sink, with
  // force= and restore= read into `options`.
  void StartImportLocked(HttpRequest& r, const std::string& task,
                         ImportOptions options, bool metadata,
                         std::vector<std::string> cut_error, UploadStart* start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  UploadStart ImportRawVdiStartLocked(HttpRequest& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the reply of a request that did not stream in its log entry.
  void LogReplyLocked(const HttpResponse& out, int log_index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse ControlLocked(HttpRequest& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Authenticates a data-handler request. On failure fills *denied.
  bool AuthenticateHttpLocked(HttpRequest& r, const std::string& task,
                              HttpResponse* denied)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string TaskForRequestLocked(HttpRequest& r, const std::string& label)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the task of a transfer: success (with `result`, if any) when
  // `error` is empty, else failure (cancelled for TASK_CANCELLED).
  void EndTransferTaskLocked(const std::string& task,
                             const std::vector<std::string>& error,
                             const std::string& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailTaskLocked(const std::string& task,
                      const std::vector<std::string>& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse ErrorPageLocked(int status,
                               const std::vector<std::string>& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Redirect rule of XAPI: if this host cannot see every SR in `srs` (or is
  // not live), a 302 to a random live host that can; if none can, the task
  // fails NO_HOSTS_AVAILABLE and nothing is written. Returns true when the
  // request must not be served here (and fills *out).
  bool RedirectLocked(HttpRequest& r, const std::vector<std::string>& srs,
                      const std::string& task, HttpResponse* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string OvaXmlLocked(const Object& vm, bool metadata_only,
                           std::vector<XvaDisk>* disks,
                           std::vector<std::string>* vdi_refs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DbDumpXmlLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string SexprRecordLocked(const Object& o)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stream faults (STALL, CUT, EMBEDDED_500, CORRUPT, TASK_FAIL) that
  // match a request of r.handler, each consumed. `vdi_uuid` names the disk in
  // the default EMBEDDED_500 error; `cut_error` is the task's error after a
  // CUT without an `error`.
  StreamFaults MatchStreamFaultsLocked(const HttpRequest& r,
                                       const std::vector<std::string>& vm_ids,
                                       const std::string& vdi_uuid,
                                       std::vector<std::string> cut_error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A streamed response body reading `src`, with `faults` applied. `vdis`
  // count as being read until it ends. With `check_cancel`, a cancelled task
  // stops it. `length`: the body's Content-Length, if it has one.
  std::unique_ptr<ResponseStream> MakeStreamLocked(
      HttpRequest& r, std::unique_ptr<ByteSource> src, const std::string& task,
      const std::vector<std::string>& vdis, StreamFaults faults,
      bool check_cancel, std::optional<uint64_t> length = std::nullopt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LogRequestLocked(const HttpRequest& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SimState StateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RequestLog RequestsLocked(const std::string& host)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  FaultList FaultsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct ImportOptions {
    std::string sr_ref;    // where a full import makes its disks
    bool restore = false;  // restore=true: uuids and MACs kept
    bool force = false;
    // /import_metadata: exported VDI uuid to the uuid of a VDI in the pool.
    std::map<std::string, std::string> vdi_map;
  };
  // The records of an imported ova.xml: every VM with its VBDs and VIFs,
  // networks found by name (then bridge) or made, and disks made from
  // `disks` (a full import: the files already written) or, when it is null
  // (/import_metadata), found by vdi_map, then by SR and location. Returns
  // the task's result (the VMs made, as an XML-RPC value). Errors: a XenAPI
  // error as FAILED_PRECONDITION, its parts joined by \x1f; else IMPORT_ERROR.
  absl::StatusOr<std::string> CreateImportedVmLocked(
      const XvaImporter& xva,
      std::map<std::string, std::shared_ptr<DiskImage>>* disks,
      const ImportOptions& options) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends an upload's task (success with `result`, or `error`) and its log
  // entry (`status` 0: no reply was sent).
  void FinishUploadLocked(const std::string& task, int log_index,
                          uint64_t received, int status, uint64_t bytes_sent,
                          const std::vector<std::string>& error,
                          const std::string& outcome, const std::string& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Table, std::less<>> tables_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  uint64_t session_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> issued_sessions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, VdiData> vdi_data_
      ABSL_GUARDED_BY(mu_);  // by VDI ref
  absl::flat_hash_map<std::string, bool> task_streaming_ ABSL_GUARDED_BY(mu_);
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> fault_fired_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<size_t, uint32_t> session_invalid_seen_
      ABSL_GUARDED_BY(mu_);
  std::vector<RequestLogEntry> request_log_ ABSL_GUARDED_BY(mu_);
  uint64_t api_calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, absl::Time> throttle_next_
      ABSL_GUARDED_BY(mu_);
  // By host_metrics ref: whether the fixture says the host is live.
  absl::flat_hash_map<std::string, bool> fixture_live_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 secret_rng_
      ABSL_GUARDED_BY(mu_);  // session refs: unpredictable
  std::string scheme_ ABSL_GUARDED_BY(mu_) = "http";
  int port_ ABSL_GUARDED_BY(mu_) = 80;
  RpcGeneration rpc_generation_ = RpcGeneration::kJsonRpcLegacy;
  std::string pool_ref_;
  std::string master_ref_;
  Credentials credentials_;
  Settings settings_;
  std::string state_dir_;
  bool own_state_dir_ = false;
  absl::Time started_ = absl::Now();
  std::atomic<bool> shutdown_{false};
};

}  // namespace vmb::sim
