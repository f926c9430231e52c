// SPDX-License-Identifier: Apache-2.0
#include "coordinator/coordinator_server.h"

#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "coordinator/agent_hub.h"
#include "coordinator/grpc_status.h"
#include "coordinator/password_file.h"
#include "coordinator/restore_manager.h"
#include "coordinator/run_manager.h"
#include "proto/agent.grpc.pb.h"
#include "proto/coordinator.grpc.pb.h"

namespace vmb::coordinator {
namespace {

std::string NewInstanceId() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

// A few threads for the Control calls that block (XAPI, SQLite): callback
// reactions never do.
class Workers {
 public:
  explicit Workers(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~Workers() { Stop(); }
  void Post(std::function<void()> work) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(work));
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> work;
      {
        absl::MutexLock lock(&mu_);
        const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // stopping, nothing left
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      work();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Refused calls, logged: one line per peer and reason a minute (an agent
// that is refused retries every second).
class RefusalLog {
 public:
  void Log(const std::string& key, const std::string& line) {
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      if (last_.size() > 4096) last_.clear();
      absl::Time& last = last_[key];
      if (now - last < absl::Minutes(1)) return;
      last = now;
    }
    VMB_LOG(WARNING) << line;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, absl::Time> last_ ABSL_GUARDED_BY(mu_);
};

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(AgentHub* hub, bool mtls, RefusalLog* refusals)
      : hub_(hub), mtls_(mtls), refusals_(refusals) {}

  grpc::ServerUnaryReactor* Synchronize(grpc::CallbackServerContext* context,
                                        const v1::AgentState* request,
                                        v1::DesiredState* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (request->identity().agent_id().empty() ||
        request->identity().host_uuid().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "an agent must name itself and its host"));
      return reactor;
    }
    AgentHub::Peer peer;
    peer.address = context->peer();
    absl::Status admitted = Admit(*context, request->identity(), &peer);
    if (admitted.ok()) admitted = hub_->CheckAgentId(request->identity());
    if (!admitted.ok()) {
      refusals_->Log(
          absl::StrCat(peer.certificate, "|", request->identity().agent_id(),
                       "|", request->identity().host_uuid()),
          absl::StrCat("refused an agent's call from ", peer.address, ": ",
                       admitted.message()));
      reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   std::string(admitted.message())));
      return reactor;
    }
    hub_->Synchronize(*request, peer, response,
                      [reactor] { reactor->Finish(grpc::Status::OK); });
    return reactor;
  }

 private:
  // Under mutual TLS, the caller's certificate must be an agent's for the
  // host the call claims.
  absl::Status Admit(const grpc::CallbackServerContext& context,
                     const v1::AgentIdentity& identity,
                     AgentHub::Peer* peer) const {
    if (!mtls_) return absl::OkStatus();
    absl::StatusOr<CertificateInfo> cert = PeerOf(*context.auth_context());
    if (!cert.ok()) return cert.status();
    peer->certificate = cert->Describe();
    peer->certificate_not_after = cert->not_after;
    const std::string claimed = absl::AsciiStrToLower(identity.host_uuid());
    if (cert->host_uuid.empty()) {
      return absl::PermissionDeniedError(
          absl::StrCat("its certificate ", cert->Describe(),
                       " is not an agent's (no ", kHostUriPrefix,
                       "<uuid> name); it claims host ", EscapeForLog(claimed)));
    }
    if (cert->host_uuid != claimed) {
      return absl::PermissionDeniedError(
          absl::StrCat("its certificate is for host ", cert->host_uuid, " (",
                       cert->Describe(), ") but the call claims host ",
                       EscapeForLog(claimed)));
    }
    return absl::OkStatus();
  }

  AgentHub* const hub_;
  const bool mtls_;
  RefusalLog* const refusals_;
};

// The answer to a refused WatchRun.
class RefusedWatch final : public grpc::ServerWriteReactor<v1::RunUpdate> {
 public:
  explicit RefusedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// Streams a run's updates: a write whenever the run changed since the last
// one, the log lines written meanwhile with it.
// WatchRun sends an update when the run changed, and no more often than this.
constexpr absl::Duration kWatchUpdateInterval = absl::Milliseconds(500);

class WatchReactor final : public grpc::ServerWriteReactor<v1::RunUpdate> {
 public:
  WatchReactor(RunManager* runs, std::string run_id)
      : state_(std::make_shared<State>()) {
    state_->runs = runs;
    state_->run_id = std::move(run_id);
    state_->reactor = this;
    Next(state_);
  }

  void OnWriteDone(bool ok) override {
    bool final = false;
    {
      absl::MutexLock lock(&state_->mu);
      state_->writing = false;
      final = state_->final;
    }
    if (!ok) return End(grpc::Status(grpc::StatusCode::CANCELLED, "gone"));
    if (final) return End(grpc::Status::OK);
    Next(state_);
  }
  void OnCancel() override {
    End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;  // a late wake finds nobody
    }
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    RunManager* runs = nullptr;
    std::string run_id;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    WatchCursor cursor ABSL_GUARDED_BY(mu);
    v1::RunUpdate update ABSL_GUARDED_BY(mu);
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool final ABSL_GUARDED_BY(mu) = false;
    bool ended ABSL_GUARDED_BY(mu) = false;
    // Pacing: no update before this unless the run has ended; the alarm
    // that calls Next then is set.
    absl::Time not_before ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    bool paced ABSL_GUARDED_BY(mu) = false;
  };

  // Writes the next update if there is one; otherwise asks to be woken.
  static void Next(const std::shared_ptr<State>& state) {
    WatchReactor* reactor = nullptr;
    absl::StatusOr<bool> next = false;
    {
      absl::MutexLock lock(&state->mu);
      if (state->reactor == nullptr || state->writing || state->ended) return;
      std::weak_ptr<State> weak = state;
      // At most one update per interval: each carries the whole run (every
      // VM's latest progress), so a run of a thousand VMs costs the same to
      // watch as one of ten. The last one is never held back.
      const absl::Time now = absl::Now();
      if (now < state->not_before &&
          !state->runs->RunEnded(state->run_id, [weak] {
            if (auto s = weak.lock()) Next(s);
          })) {
        if (!state->paced) {
          state->paced = true;
          state->reactor->pace_.Set(absl::ToChronoTime(state->not_before),
                                    [weak](bool fired) {
                                      auto s = weak.lock();
                                      if (s == nullptr) return;
                                      {
                                        absl::MutexLock lock(&s->mu);
                                        s->paced = false;
                                      }
                                      if (fired)
                                        Next(s);  // not fired: the call is over
                                    });
        }
        return;
      }
      next = state->runs->NextUpdate(state->run_id, &state->cursor,
                                     &state->update, [weak] {
                                       if (auto s = weak.lock()) Next(s);
                                     });
      if (next.ok() && *next) {
        state->writing = true;
        state->final = state->update.final();
        state->not_before = now + kWatchUpdateInterval;
      }
      reactor = state->reactor;
    }
    if (!next.ok()) return reactor->End(ToGrpcStatus(next.status()));
    if (*next) reactor->StartWrite(&state->update);
  }

  void End(const grpc::Status& status) {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->ended) return;
      state_->ended = true;
    }
    Finish(status);
  }

  std::shared_ptr<State> state_;
  grpc::Alarm pace_;  // the next update, after the interval
};

// The callback service with GetRun raw: it answers with bytes the run
// manager keeps serialized (a run of a thousand VMs is asked for often while
// it runs). Spelled out as Control::CallbackService is, GetRun replaced.
using ControlService = v1::Control::WithCallbackMethod_StartRun<
    v1::Control::WithCallbackMethod_Preview<
        v1::Control::WithRawCallbackMethod_GetRun<
            v1::Control::WithCallbackMethod_ListRuns<
                v1::Control::WithCallbackMethod_ListAgents<
                    v1::Control::WithCallbackMethod_CancelRun<
                        v1::Control::WithCallbackMethod_WatchRun<
                            v1::Control::WithCallbackMethod_StartRestore<
                                v1::Control::WithCallbackMethod_GetRestore<
                                    v1::Control::Service>>>>>>>>>;

class ControlServiceImpl final : public ControlService {
 public:
  ControlServiceImpl(RunManager* runs, RestoreManager* restores, AgentHub* hub,
                     Workers* workers, bool mtls, RefusalLog* refusals)
      : runs_(runs),
        restores_(restores),
        hub_(hub),
        workers_(workers),
        mtls_(mtls),
        refusals_(refusals) {}

  grpc::ServerUnaryReactor* StartRun(grpc::CallbackServerContext* context,
                                     const v1::StartRunRequest* request,
                                     v1::StartRunResponse* response) override {
    if (auto* refused = Refuse(context, "StartRun")) return refused;
    return Blocking(context, [=, this] {
      absl::StatusOr<std::string> id = runs_->StartRun(*request);
      if (id.ok()) response->set_run_id(*id);
      return id.status();
    });
  }
  grpc::ServerUnaryReactor* Preview(grpc::CallbackServerContext* context,
                                    const v1::StartRunRequest* request,
                                    v1::PreviewReport* response) override {
    if (auto* refused = Refuse(context, "Preview")) return refused;
    return Blocking(context, [=, this] {
      *response = runs_->Preview(*request);
      return absl::OkStatus();
    });
  }
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override {
    if (auto* refused = Refuse(context, "GetRun")) return refused;
    return Blocking(context, [=, this] {
      v1::GetRunRequest req;
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (request->Dump(&slices).ok()) {
        for (const grpc::Slice& slice : slices)
          bytes.append(reinterpret_cast<const char*>(slice.begin()),
                       slice.size());
      }
      if (!req.ParseFromString(bytes)) {
        return absl::InvalidArgumentError("GetRun: a malformed request");
      }
      absl::StatusOr<std::string> run = runs_->GetRunSerialized(req.run_id());
      if (!run.ok()) return run.status();
      grpc::Slice slice(*run);
      *response = grpc::ByteBuffer(&slice, 1);
      return absl::OkStatus();
    });
  }
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override {
    if (auto* refused = Refuse(context, "ListRuns")) return refused;
    return Blocking(context, [=, this] {
      absl::StatusOr<std::vector<v1::RunSummary>> runs =
          runs_->ListRuns(static_cast<int>(request->limit()));
      if (!runs.ok()) return runs.status();
      for (v1::RunSummary& r : *runs) *response->add_runs() = std::move(r);
      return absl::OkStatus();
    });
  }
  grpc::ServerUnaryReactor* ListAgents(
      grpc::CallbackServerContext* context, const v1::ListAgentsRequest*,
      v1::ListAgentsResponse* response) override {
    if (auto* refused = Refuse(context, "ListAgents")) return refused;
    for (v1::AgentInfo& a : hub_->Agents()) *response->add_agents() = a;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* context,
                                      const v1::CancelRunRequest* request,
                                      v1::CancelRunResponse*) override {
    if (auto* refused = Refuse(context, "CancelRun")) return refused;
    return Blocking(context,
                    [=, this] { return runs_->CancelRun(request->run_id()); });
  }
  grpc::ServerUnaryReactor* StartRestore(grpc::CallbackServerContext* context,
                                         const v1::RestoreRequest* request,
                                         v1::RestoreState* response) override {
    if (auto* refused = Refuse(context, "StartRestore")) return refused;
    return Blocking(context, [=, this] {
      absl::StatusOr<v1::RestoreState> state = restores_->Start(*request);
      if (state.ok()) *response = *std::move(state);
      return state.status();
    });
  }
  grpc::ServerUnaryReactor* GetRestore(grpc::CallbackServerContext* context,
                                       const v1::GetRestoreRequest* request,
                                       v1::RestoreState* response) override {
    if (auto* refused = Refuse(context, "GetRestore")) return refused;
    absl::StatusOr<v1::RestoreState> state =
        restores_->Get(request->restore_id());
    if (state.ok()) *response = *std::move(state);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(state.status()));
    return reactor;
  }
  grpc::ServerWriteReactor<v1::RunUpdate>* WatchRun(
      grpc::CallbackServerContext* context,
      const v1::GetRunRequest* request) override {
    absl::Status allowed = Authorize(*context, "WatchRun");
    if (!allowed.ok()) return new RefusedWatch(ToGrpcStatus(allowed));
    return new WatchReactor(runs_, request->run_id());
  }

 private:
  // Under mutual TLS the Control API takes an operator's certificate only.
  absl::Status Authorize(const grpc::CallbackServerContext& context,
                         absl::string_view method) {
    if (!mtls_) return absl::OkStatus();
    absl::StatusOr<CertificateInfo> cert = PeerOf(*context.auth_context());
    if (cert.ok() && cert->is_operator) return absl::OkStatus();
    const std::string who =
        cert.ok() ? cert->Describe() : std::string(cert.status().message());
    refusals_->Log(
        absl::StrCat("control|", who),
        absl::StrCat("refused a Control call (", method, ") from ",
                     context.peer(), ": its certificate ", who,
                     " is not an operator's (", kOperatorUriPrefix, "...)"));
    return absl::PermissionDeniedError(absl::StrCat(
        "the Control API takes an operator's certificate (cli.crt from "
        "deploy/gen-certs.sh, with a ",
        kOperatorUriPrefix, "... name); this one is ", who));
  }
  // The refused call's reactor, finished; null when the call may go on.
  grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context,
                                   absl::string_view method) {
    absl::Status allowed = Authorize(*context, method);
    if (allowed.ok()) return nullptr;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(allowed));
    return reactor;
  }

  grpc::ServerUnaryReactor* Blocking(grpc::CallbackServerContext* context,
                                     std::function<absl::Status()> work) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    workers_->Post([reactor, work = std::move(work)] {
      reactor->Finish(ToGrpcStatus(work()));
    });
    return reactor;
  }

  RunManager* const runs_;
  RestoreManager* const restores_;
  AgentHub* const hub_;
  Workers* const workers_;
  const bool mtls_;
  RefusalLog* const refusals_;
};

class ServerImpl final : public CoordinatorServer {
 public:
  explicit ServerImpl(const Options& options)
      : options_(options),
        hub_(HubOptions(options)),
        runs_(RunOptions(options, &hub_)),
        restores_(RestoreOptions(options, &hub_)),
        workers_(2),
        agent_service_(&hub_, options.mtls != nullptr, &refusals_),
        control_(&runs_, &restores_, &hub_, &workers_, options.mtls != nullptr,
                 &refusals_) {}

  ~ServerImpl() override { Stop(); }

  absl::Status Start() {
    hub_.Start();
    session_thread_ = std::thread([this] { KeepSession(); });
    VMB_RETURN_IF_ERROR(runs_.ResumeUnfinished());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options_.listen,
                             options_.mtls != nullptr
                                 ? options_.mtls->ServerCredentials()
                                 : grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&agent_service_);
    builder.RegisterService(&control_);
    // Agents call at least every half heartbeat; dead peers are found by
    // keepalive pings.
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(
        GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", options_.listen));
    }
    VMB_LOG(INFO) << "coordinator listening on port " << port_
                  << (options_.mtls != nullptr
                          ? absl::StrCat(" (mutual TLS as ",
                                         options_.mtls->current().Describe(),
                                         ")")
                          : std::string(" (plaintext)"));
    return absl::OkStatus();
  }

  int port() const override { return port_; }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    runs_.Stop();      // abandons runs under way; stops the hub
    restores_.Stop();  // their agents go on; the coordinator forgets them
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    }
    workers_.Stop();
    if (session_thread_.joinable()) session_thread_.join();
  }

 private:
  static AgentHub::Options HubOptions(const Options& o) {
    AgentHub::Options h;
    h.clock = o.clock;
    h.heartbeat_interval = o.heartbeat_interval;
    h.busy_hold = std::min(absl::Seconds(1), o.heartbeat_interval / 2);
    h.instance_id = NewInstanceId();
    RunJournal* journal = o.journal;
    h.journal_grant = [journal](const v1::JobSpec& spec) {
      RunJournal::AttemptRecord a;
      a.job_id = spec.job_id();
      a.attempt = spec.attempt();
      a.fencing_token = spec.fencing_token();
      a.host_uuid = spec.host_uuid();
      a.commit_granted = true;
      return journal->PutAttempt(a);
    };
    h.agent_changed = [journal](const v1::AgentInfo& info) {
      RunJournal::AgentRecord a;
      a.identity = info.identity();
      a.peer = info.peer();
      a.max_jobs = info.max_jobs();
      a.first_seen_unix_ms = static_cast<int64_t>(info.connected_unix_ms());
      a.last_seen_unix_ms = static_cast<int64_t>(info.last_seen_unix_ms());
      absl::Status s = journal->PutAgent(a);
      if (!s.ok()) VMB_LOG(WARNING) << "journal (agent): " << s;
    };
    return h;
  }
  static RunManagerOptions RunOptions(const Options& o, AgentHub* hub) {
    RunManagerOptions r;
    r.xapi = o.xapi;
    r.fs = o.fs;
    r.clock = o.clock;
    r.journal = o.journal;
    r.hub = hub;
    r.tls = o.tls;
    r.server_name = o.server_name;
    r.snapshot_destroy_timeout = o.snapshot_destroy_timeout;
    r.time_zone = o.time_zone;
    r.mail_retry = o.mail_retry;
    MtlsCredentials* mtls = o.mtls;
    r.report_warnings = [hub, mtls] {
      return CertificateWarnings(
          hub->Agents(),
          mtls != nullptr ? std::optional<CertificateInfo>(mtls->current())
                          : std::nullopt,
          absl::Now());
    };
    return r;
  }

  // Logs in, and checks the session every session_check: XAPI forgets
  // sessions (a toolstack restart, a master change); the client logs in
  // again, and the agents get the new one with their next answer.
  void KeepSession() {
    bool reported = false;
    absl::MutexLock lock(&mu_);
    while (!stopped_) {
      mu_.Unlock();
      absl::Status s = options_.xapi->GetAllPools().status();
      absl::StatusOr<std::string> session = options_.xapi->SessionRef();
      mu_.Lock();
      if (s.ok() && session.ok()) {
        hub_.SetSession(*session);
        if (reported) VMB_LOG(INFO) << "logged in to XAPI again";
        reported = false;
      } else if (!reported) {
        VMB_LOG(ERROR) << "cannot log in to XAPI at "
                       << options_.xapi->master_url() << ": "
                       << (s.ok() ? session.status() : s);
        reported = true;
      }
      const auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopped_;
      };
      mu_.AwaitWithTimeout(
          absl::Condition(&stopped),
          reported ? absl::Seconds(5) : options_.session_check);
    }
  }

  static RestoreManager::Options RestoreOptions(const Options& o,
                                                AgentHub* hub) {
    RestoreManager::Options r;
    r.xapi = o.xapi;
    r.fs = o.fs;
    r.clock = o.clock;
    r.hub = hub;
    r.tls = o.tls;
    r.time_zone = o.time_zone;
    return r;
  }

  const Options options_;
  AgentHub hub_;
  RunManager runs_;
  RestoreManager restores_;
  Workers workers_;
  RefusalLog refusals_;
  AgentServiceImpl agent_service_;
  ControlServiceImpl control_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread session_thread_;
};

}  // namespace

std::vector<std::string> CertificateWarnings(
    const std::vector<v1::AgentInfo>& agents,
    const std::optional<CertificateInfo>& own, absl::Time now) {
  std::vector<std::string> out;
  const auto warn = [&](const std::string& whose, const std::string& cert,
                        absl::Time until) {
    std::string w = ExpiryWarning(whose, cert, until, now);
    if (!w.empty()) out.push_back(std::move(w));
  };
  if (own.has_value()) warn("the coordinator", own->Describe(), own->not_after);
  for (const v1::AgentInfo& a : agents) {
    if (a.certificate_not_after_unix_ms() == 0) continue;
    warn(absl::StrCat("agent ", a.identity().agent_id(), " (",
                      a.identity().host_name(), ")"),
         a.certificate(),
         absl::FromUnixMillis(
             static_cast<int64_t>(a.certificate_not_after_unix_ms())));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const Options& options) {
  auto server = std::make_unique<ServerImpl>(options);
  VMB_RETURN_IF_ERROR(server->Start());
  return server;
}

absl::Status RunCoordinator(const CoordinatorOptions& o,
                            const absl::Notification& stop,
                            const std::atomic<int>* reloads) {
  VMB_RETURN_IF_ERROR(
      CheckTransportFlags(o.mtls, o.plaintext, {{"--listen", o.listen}}));
  if (o.xapi_url.empty()) {
    return absl::InvalidArgumentError("--xapi-url is required");
  }
  if (o.state_dir.empty()) {
    return absl::InvalidArgumentError("--state-dir is required");
  }
  if (o.password_file.empty()) {
    return absl::InvalidArgumentError("--password-file is required");
  }
  Filesystem* fs = PosixFilesystem::Get();
  absl::StatusOr<FileInfo> pw = fs->Stat(o.password_file);
  if (!pw.ok() || pw->is_dir) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--password-file ", o.password_file, ": not a readable file"));
  }
  absl::StatusOr<PasswordSource> password =
      ResolvePasswordArgument(o.password_file, "");
  if (!password.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--password-file: ", password.status().message()));
  }
  absl::Status s = CreateDirDurably(*fs, o.state_dir);
  if (!s.ok() && !absl::IsAlreadyExists(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state-dir ", o.state_dir, ": ", s.message()));
  }
  std::unique_ptr<MtlsCredentials> mtls;
  if (!o.plaintext) {
    // gRPC reads checked copies of the files, kept in the state folder.
    VMB_ASSIGN_OR_RETURN(
        mtls, MtlsCredentials::Create(o.mtls, JoinPath(o.state_dir, "mtls")));
    LogCertificateValidity("this coordinator's", mtls->current());
    RouteGrpcLogsToVmbLog();  // refused handshakes, in the log
  }
  absl::StatusOr<std::unique_ptr<RunJournal>> journal =
      RunJournal::Open(JoinPath(o.state_dir, "journal.db"));
  if (!journal.ok()) return journal.status();

  TlsOptions tls = o.tls;
  if (!o.tls_pins_file.empty()) {
    absl::StatusOr<std::shared_ptr<HostPins>> pins =
        HostPins::Load(o.tls_pins_file, {.tofu = o.tls_pins_tofu});
    if (!pins.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-pins: ", pins.status().message()));
    }
    tls.pins = *std::move(pins);
  }
  if (!o.tls_fingerprint.empty()) {
    std::optional<HttpUrl> url = ParseHttpUrl(o.xapi_url);
    if (!url.has_value() || url->scheme != "https") {
      return absl::InvalidArgumentError(
          "--tls-fingerprint applies to an https:// --xapi-url only");
    }
    if (tls.pins == nullptr) tls.pins = std::make_shared<HostPins>();
    VMB_RETURN_IF_ERROR(tls.pins->AddPin(url->host, o.tls_fingerprint));
  }
  XmlRpcXenApiClient::Options client;
  client.url = o.xapi_url;
  client.username = o.user;
  client.password = password->password;
  CurlXmlRpcTransport::Options transport;
  transport.tls = tls;
  XmlRpcXenApiClient xapi(client,
                          std::make_unique<CurlXmlRpcTransport>(transport));

  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) strcpy(host, "localhost");
  std::string server_name = host;
  server_name = server_name.substr(0, server_name.find('.'));

  CoordinatorServer::Options options;
  options.xapi = &xapi;
  options.fs = fs;
  options.clock = SystemClock::Get();
  options.journal = journal->get();
  options.listen = o.listen;
  options.mtls = mtls.get();
  options.heartbeat_interval = o.heartbeat_interval;
  options.tls = tls;
  options.server_name = server_name;
  options.snapshot_destroy_timeout = o.snapshot_destroy_timeout;
  options.mail_retry.first_backoff = o.mail_retry_backoff;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(options);
  if (!server.ok()) return server.status();
  if (!o.port_file.empty()) {
    const std::string tmp = o.port_file + ".tmp";
    (void)fs->RemoveFile(tmp);  // a crashed start's
    absl::Status s =
        WriteNewFile(*fs, tmp, absl::StrCat((*server)->port(), "\n"));
    if (s.ok()) s = fs->Rename(tmp, o.port_file);
    if (!s.ok()) {
      (*server)->Stop();
      return absl::InvalidArgumentError(
          absl::StrCat("--port-file ", o.port_file, ": ", s.message()));
    }
  }
  ServeUntilStopped(stop, reloads, mtls.get(), "this coordinator's");
  VMB_LOG(INFO) << "coordinator stopping";
  (*server)->Stop();
  return absl::OkStatus();
}

}  // namespace vmb::coordinator
