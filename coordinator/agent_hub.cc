// SPDX-License-Identifier: Apache-2.0
#include "coordinator/agent_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

#include "common/base/logging.h"

namespace vmb::coordinator {
namespace {

uint64_t UnixMs(absl::Time t) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMillis(t)));
}

}  // namespace

bool AgentHub::Terminal(const v1::JobStatus& s) {
  return s.phase() == v1::JOB_PHASE_SUCCEEDED ||
         s.phase() == v1::JOB_PHASE_FAILED ||
         s.phase() == v1::JOB_PHASE_CANCELLED;
}

AgentHub::AgentHub(Options options)
    : options_(std::move(options)),
      started_(options_.clock->Now()),
      window_end_(started_ + (options_.return_window > absl::ZeroDuration()
                                  ? options_.return_window
                                  : 3 * options_.heartbeat_interval)) {}

AgentHub::~AgentHub() { Stop(); }

void AgentHub::Start() {
  absl::MutexLock lock(&mu_);
  if (ticker_.joinable() || stopping_) return;
  ticker_ = std::thread([this] { Tick(); });
}

void AgentHub::Stop() {
  std::vector<std::function<void()>> answers;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, agent] : agents_) {
      if (agent.done) {
        answers.push_back(std::move(agent.done));
        agent.done = nullptr;
        agent.response = nullptr;
      }
    }
    WakeAllLocked();
    SignalAllLocked();
  }
  for (auto& done : answers) done();
  if (ticker_.joinable()) ticker_.join();
}

void AgentHub::SetSession(std::string session) {
  absl::MutexLock lock(&mu_);
  if (session_ == session) return;
  session_ = std::move(session);
  WakeAllLocked();  // held answers carry the new one
}

void AgentHub::WakeLocked() {
  wake_ = true;
  tick_.Signal();
}

void AgentHub::WakeHostLocked(const std::string& host_uuid) {
  wake_hosts_.insert(host_uuid);
  WakeLocked();
}

void AgentHub::WakeAllLocked() {
  wake_all_ = true;
  WakeLocked();
}

void AgentHub::SignalAllLocked() {
  changed_.SignalAll();
  for (auto& [id, job] : jobs_) job.changed->SignalAll();
}

AgentHub::Agent* AgentHub::AgentOnHostLocked(const std::string& host_uuid) {
  Agent* best = nullptr;
  for (auto& [id, agent] : agents_) {
    if (!agent.live || agent.identity.host_uuid() != host_uuid) continue;
    if (best == nullptr || agent.last_seen > best->last_seen) best = &agent;
  }
  return best;
}

bool AgentHub::FillLocked(Agent& agent, v1::DesiredState* r, bool refill) {
  // What the answer carries, first as keys (cheap to compare): an answer
  // already filled with the same is left as it is.
  struct Item {
    char kind;  // x forget, f fence, c cancel, g grant, s start
    const std::string* job_id;
    uint64_t token;
    const v1::JobSpec* spec;  // s
    const char* reason;       // f
  };
  std::vector<Item> items;
  const absl::Time now = options_.clock->Now();
  const bool grace = now - started_ < 3 * options_.heartbeat_interval;
  int running = 0;
  for (const auto& [id, st] : agent.reported) {
    if (!Terminal(st)) ++running;
  }
  for (const auto& [id, st] : agent.reported) {
    auto job = jobs_.find(id);
    auto fenced = fenced_.find(id);
    const bool stale =
        (fenced != fenced_.end() && fenced->second.count(st.fencing_token())) ||
        (job != jobs_.end() &&
         job->second.spec.fencing_token() != st.fencing_token());
    const bool expected = expected_.count(id) > 0;
    if (stale || (job == jobs_.end() && !expected && !grace)) {
      // An attempt nobody runs any more: it must not commit, and goes.
      if (Terminal(st)) {
        items.push_back({'x', &id, 0, nullptr, nullptr});
      } else {
        items.push_back({'f', &id, st.fencing_token(), nullptr,
                         stale ? "the coordinator gave this attempt up"
                               : "the coordinator knows no such job"});
      }
      continue;
    }
    if (job == jobs_.end()) continue;  // expected: its run claims it soon
    const Job& j = job->second;
    if (Terminal(st)) {
      if (j.forget) items.push_back({'x', &id, 0, nullptr, nullptr});
      continue;
    }
    if (j.cancel) {
      items.push_back({'c', &id, 0, nullptr, nullptr});
    } else if (j.granted) {
      items.push_back({'g', &id, j.spec.fencing_token(), nullptr, nullptr});
    }
  }
  // Jobs for this agent's host it does not hold yet, within its capacity.
  const int capacity =
      static_cast<int>(std::max<uint32_t>(1, agent.max_jobs)) - running;
  int started = 0;
  std::set<std::string>& on_host = jobs_by_host_[agent.identity.host_uuid()];
  for (auto it = on_host.begin(); it != on_host.end() && started < capacity;) {
    const std::string& id = *it;
    auto found = jobs_.find(id);
    if (found == jobs_.end() ||
        found->second.spec.host_uuid() != agent.identity.host_uuid()) {
      it = on_host.erase(it);  // gone, or retried on another host
      continue;
    }
    ++it;
    const Job& j = found->second;
    if (j.cancel || j.forget || Terminal(j.status) ||
        agent.reported.count(id) > 0) {
      continue;
    }
    if (AgentOnHostLocked(j.spec.host_uuid()) != &agent) continue;
    items.push_back(
        {'s', &found->first, j.spec.fencing_token(), &j.spec, nullptr});
    ++started;
  }
  std::set<std::string> sent;
  for (const Item& item : items) {
    sent.insert(item.kind == 'x' || item.kind == 'c'
                    ? absl::StrCat(std::string(1, item.kind), ":", *item.job_id)
                    : absl::StrCat(std::string(1, item.kind), ":", *item.job_id,
                                   ":", item.token));
  }
  sent.insert(absl::StrCat("session:", session_));
  bool news = false;
  for (const std::string& s : sent) news = news || !agent.last_sent.count(s);
  if (!refill && sent == agent.last_sent) return false;
  agent.last_sent = std::move(sent);

  r->Clear();
  for (const Item& item : items) {
    switch (item.kind) {
      case 'x':
        r->add_forget_job_ids(*item.job_id);
        break;
      case 'f': {
        v1::Fence* f = r->add_fences();
        f->set_job_id(*item.job_id);
        f->set_fencing_token(item.token);
        f->set_reason(item.reason);
        break;
      }
      case 'c':
        r->add_cancel_job_ids(*item.job_id);
        break;
      case 'g': {
        v1::CommitGrant* g = r->add_commit_grants();
        g->set_job_id(*item.job_id);
        g->set_fencing_token(item.token);
        break;
      }
      case 's':
        *r->add_start() = *item.spec;
        break;
    }
  }
  r->set_session_ref(session_);
  r->set_heartbeat_interval_ms(static_cast<uint64_t>(
      absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  r->set_coordinator_instance_id(options_.instance_id);
  return news;
}

absl::Status AgentHub::CheckAgentId(const v1::AgentIdentity& identity) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(identity.agent_id());
  if (it == agents_.end() || !it->second.live ||
      it->second.identity.host_uuid() == identity.host_uuid()) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "agent id ", EscapeForLog(identity.agent_id()),
      " belongs to the live agent of host ", it->second.identity.host_uuid(),
      ", not to host ", EscapeForLog(identity.host_uuid())));
}

void AgentHub::Synchronize(const v1::AgentState& state, const Peer& peer,
                           v1::DesiredState* response,
                           std::function<void()> done) {
  std::function<void()> superseded;
  bool answer_now = false;
  std::string lost_or_new;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      answer_now = true;
    } else {
      const absl::Time now = options_.clock->Now();
      Agent& agent = agents_[state.identity().agent_id()];
      if (agent.done) {  // the agent gave an earlier call up
        superseded = std::move(agent.done);
        agent.done = nullptr;
        agent.last_sent.clear();  // its answer never arrived
      }
      if (!agent.live ||
          agent.identity.instance_id() != state.identity().instance_id()) {
        agent.connected_since = now;
        lost_or_new = agent.live ? "restarted" : "connected";
        agent.last_sent.clear();
      }
      agent.identity = state.identity();
      agent.peer = peer.address;
      agent.certificate = peer.certificate;
      agent.certificate_not_after = peer.certificate_not_after;
      agent.max_jobs = state.max_concurrent_jobs();
      agent.last_seen = now;
      agent.live = true;
      agent.reported.clear();
      for (const v1::JobStatus& st : state.jobs()) {
        agent.reported[st.job_id()] = st;
        auto job = jobs_.find(st.job_id());
        if (job == jobs_.end() ||
            job->second.spec.fencing_token() != st.fencing_token() ||
            AgentOnHostLocked(job->second.spec.host_uuid()) != &agent) {
          continue;
        }
        if (job->second.status.SerializeAsString() != st.SerializeAsString()) {
          job->second.status = st;
          ++job->second.version;
          job->second.changed->Signal();
        }
      }
      if (!lost_or_new.empty()) SignalAllLocked();
      const bool news = FillLocked(agent, response, /*refill=*/true);
      bool busy = false;
      for (const auto& [id, st] : agent.reported) busy = busy || !Terminal(st);
      if (news) {
        answer_now = true;
      } else {
        agent.response = response;
        agent.done = std::move(done);
        agent.hold_until = now + (busy ? options_.busy_hold
                                  : options_.idle_hold > absl::ZeroDuration()
                                      ? options_.idle_hold
                                      : options_.heartbeat_interval / 2);
        WakeLocked();
      }
    }
  }
  if (!lost_or_new.empty()) {
    VMB_LOG(INFO) << "agent " << state.identity().agent_id() << " on host "
                  << state.identity().host_name() << " ("
                  << state.identity().host_uuid() << ") " << lost_or_new
                  << " from " << peer.address
                  << (peer.certificate.empty() ? "" : " as ")
                  << peer.certificate;
  }
  if (superseded) superseded();
  if (answer_now) done();
}

void AgentHub::Tick() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    tick_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
    // Answers are recomputed only when something changed; otherwise held
    // calls are answered as they were when their hold ends.
    const bool woken = wake_;
    const bool all = wake_all_;
    std::set<std::string> hosts;
    hosts.swap(wake_hosts_);
    wake_ = false;
    wake_all_ = false;
    const absl::Time now = options_.clock->Now();
    std::vector<std::function<void()>> answers;
    std::vector<v1::AgentInfo> changes;
    for (auto& [id, agent] : agents_) {
      if (agent.live &&
          now - agent.last_seen > 3 * options_.heartbeat_interval) {
        agent.live = false;
        VMB_LOG(WARNING) << "agent " << id << " on host "
                         << agent.identity.host_name()
                         << " is lost: no call for "
                         << absl::FormatDuration(now - agent.last_seen);
        changes.push_back(InfoLocked(agent));
        SignalAllLocked();
      }
      if (!agent.done) continue;
      v1::DesiredState* response = agent.response;
      // Only the agents of hosts whose jobs changed need a new answer.
      const bool news = (all || hosts.count(agent.identity.host_uuid()) > 0) &&
                        FillLocked(agent, response, /*refill=*/false);
      if (news || absl::Now() >= agent.hold_until) {
        answers.push_back(std::move(agent.done));
        agent.done = nullptr;
        agent.response = nullptr;
      }
    }
    // Recorded jobs no agent holds any more.
    for (auto it = jobs_.begin(); woken && it != jobs_.end();) {
      bool held = false;
      if (it->second.forget) {
        for (const auto& [id, agent] : agents_)
          held = held || agent.reported.count(it->first) > 0;
      }
      it = it->second.forget && !held ? jobs_.erase(it) : std::next(it);
    }
    if (answers.empty() && changes.empty()) continue;
    mu_.Unlock();
    for (auto& done : answers) done();
    if (options_.agent_changed) {
      for (const v1::AgentInfo& info : changes) options_.agent_changed(info);
    }
    mu_.Lock();
  }
}

v1::JobStatus AgentHub::RunJob(
    const v1::JobSpec& spec,
    const std::function<void(const v1::JobStatus&)>& progress,
    const absl::Notification* cancel) {
  const std::string& job_id = spec.job_id();
  const auto failed = [&](absl::string_view token, absl::string_view step,
                          std::string message) {
    v1::JobStatus st;
    st.set_job_id(job_id);
    st.set_attempt(spec.attempt());
    st.set_fencing_token(spec.fencing_token());
    st.set_phase(token == "CANCELLED" ? v1::JOB_PHASE_CANCELLED
                                      : v1::JOB_PHASE_FAILED);
    st.set_status_token(std::string(token));
    st.set_error_step(std::string(step));
    st.set_error_message(std::move(message));
    st.set_host_uuid(spec.host_uuid());
    const uint64_t now = UnixMs(options_.clock->Now());
    st.set_started_unix_ms(now);
    st.set_finished_unix_ms(now);
    return st;
  };
  const absl::Duration limit = 3 * options_.heartbeat_interval;

  absl::MutexLock lock(&mu_);
  Job& job = jobs_[job_id];
  if (job.spec.fencing_token() != spec.fencing_token() ||
      job.spec.job_id().empty()) {
    // A retry on another host: the old attempt's agent hears of it too.
    if (!job.spec.host_uuid().empty()) WakeHostLocked(job.spec.host_uuid());
    job = Job();
    job.spec = spec;
  }
  jobs_by_host_[spec.host_uuid()].insert(job_id);
  if (job.version == 0) {
    // Adopted after a restart: what the agent last reported of this attempt
    // counts now, not only from its next call.
    if (const Agent* holder = AgentOnHostLocked(spec.host_uuid())) {
      auto reported = holder->reported.find(job_id);
      if (reported != holder->reported.end() &&
          reported->second.fencing_token() == spec.fencing_token()) {
        job.status = reported->second;
        ++job.version;
      }
    }
  }
  expected_.erase(job_id);
  WakeHostLocked(spec.host_uuid());
  uint64_t seen = 0;
  // The job came then: its host's agent has 3 heartbeat intervals from
  // then, or from its last call, to take it.
  const absl::Time came = options_.clock->Now();
  std::string agent_id;
  v1::JobStatus result;
  while (true) {
    if (stopping_) {
      result = failed("COORDINATOR-STOP", "dispatch",
                      "the coordinator is stopping; the job is left to its "
                      "agent and taken over when it starts again");
      jobs_.erase(job_id);
      return result;
    }
    const absl::Time now = options_.clock->Now();
    Agent* agent = AgentOnHostLocked(spec.host_uuid());
    const bool held = agent != nullptr && agent->reported.count(job_id) > 0;
    if (held) agent_id = agent->identity.agent_id();
    // The host's last contact; a host whose agent has not called since the
    // coordinator started is waited for until the return window ends.
    absl::Time agent_seen = absl::InfinitePast();
    for (const auto& [id, a] : agents_) {
      if (a.identity.host_uuid() == spec.host_uuid())
        agent_seen = std::max(agent_seen, a.last_seen);
    }
    agent_seen = std::max(
        came, agent_seen == absl::InfinitePast() ? window_end_ : agent_seen);
    if (job.version != seen) {
      seen = job.version;
      v1::JobStatus st = job.status;
      st.set_agent_id(agent_id);
      if (st.host_uuid().empty()) st.set_host_uuid(spec.host_uuid());
      if (Terminal(st)) {
        mu_.Unlock();
        if (progress) progress(st);  // journalled before the agent forgets
        mu_.Lock();
        Job& j = jobs_[job_id];
        j.forget = true;
        WakeHostLocked(spec.host_uuid());
        return st;
      }
      mu_.Unlock();
      if (progress) progress(st);
      mu_.Lock();
      continue;  // the state may have moved meanwhile
    }
    if (cancel != nullptr && cancel->HasBeenNotified() && !job.cancel) {
      job.cancel = true;
      WakeHostLocked(spec.host_uuid());
      if (job.status.phase() == v1::JOB_PHASE_UNSPECIFIED && !held) {
        // Never taken: a copy that reaches the agent late is fenced.
        fenced_[job_id].insert(spec.fencing_token());
        jobs_.erase(job_id);
        result = failed("CANCELLED", "dispatch",
                        "the run was cancelled before the agent took the job");
        mu_.Unlock();
        if (progress) progress(result);
        mu_.Lock();
        return result;
      }
    }
    if (job.status.phase() == v1::JOB_PHASE_AWAITING_COMMIT && !job.granted &&
        !job.cancel) {
      // Written before it is acted on: the grant is journalled first.
      mu_.Unlock();
      absl::Status s = options_.journal_grant ? options_.journal_grant(spec)
                                              : absl::OkStatus();
      mu_.Lock();
      Job& j = jobs_[job_id];
      if (s.ok()) {
        j.granted = true;
      } else {
        VMB_LOG(ERROR) << "job " << job_id
                       << ": cannot journal the commit grant: " << s;
        j.cancel = true;
      }
      WakeHostLocked(spec.host_uuid());
      continue;
    }
    if (agent == nullptr && now - agent_seen > limit) {
      fenced_[job_id].insert(spec.fencing_token());
      const bool was_taken = job.status.phase() != v1::JOB_PHASE_UNSPECIFIED;
      jobs_.erase(job_id);
      result = failed(
          was_taken ? "AGENT-LOST" : "NO-AGENT", "agent",
          absl::StrCat(
              was_taken ? "the agent on host " : "no agent on host ",
              spec.host_name().empty() ? spec.host_uuid() : spec.host_name(),
              was_taken ? " stopped answering (no call for "
                        : " connected within ",
              absl::FormatDuration(limit), was_taken ? ")" : ""));
      mu_.Unlock();
      if (progress) progress(result);
      mu_.Lock();
      return result;
    }
    // A report of this job, a lost agent or a stop signals; the timeout
    // catches a cancel and the clock.
    const std::shared_ptr<absl::CondVar> cv = job.changed;
    cv->WaitWithTimeout(&mu_, absl::Milliseconds(200));
  }
}

void AgentHub::Expect(const std::string& job_id, uint64_t fencing_token) {
  absl::MutexLock lock(&mu_);
  expected_[job_id] = fencing_token;
}

void AgentHub::Unexpect(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  expected_.erase(job_id);
}

std::set<std::string> AgentHub::LiveHosts() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> hosts;
  for (const auto& [id, agent] : agents_) {
    if (agent.live) hosts.insert(agent.identity.host_uuid());
  }
  return hosts;
}

void AgentHub::WaitForReturningAgents() {
  absl::MutexLock lock(&mu_);
  while (!stopping_ && options_.clock->Now() < window_end_) {
    // Wakes on every report; polls for a clock that moves on its own.
    changed_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
  }
}

v1::AgentInfo AgentHub::InfoLocked(const Agent& agent) const {
  v1::AgentInfo info;
  *info.mutable_identity() = agent.identity;
  info.set_last_seen_unix_ms(UnixMs(agent.last_seen));
  info.set_live(agent.live);
  info.set_max_jobs(agent.max_jobs);
  info.set_peer(agent.peer);
  if (!agent.certificate.empty()) {
    info.set_certificate(agent.certificate);
    info.set_certificate_not_after_unix_ms(UnixMs(agent.certificate_not_after));
  }
  info.set_connected_unix_ms(UnixMs(agent.connected_since));
  uint32_t running = 0;
  for (const auto& [id, st] : agent.reported) {
    info.add_job_ids(id);
    if (!Terminal(st)) ++running;
  }
  info.set_running_jobs(running);
  return info;
}

std::vector<v1::AgentInfo> AgentHub::Agents() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::AgentInfo> out;
  for (const auto& [id, agent] : agents_) out.push_back(InfoLocked(agent));
  return out;
}

}  // namespace vmb::coordinator
