// SPDX-License-Identifier: Apache-2.0
// XAPI's HTTP data handlers, as the simulator serves them: /export,
// /export_raw_vdi, /export_metadata, /pool/xmldbdump, the dispatch of the
// uploads (their handlers: sim_upload.cc), and the simulator's own /sim/
// control endpoint.
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include <google/protobuf/util/json_util.h>
#include <openssl/sha.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include "tests/xapi_sim/sim_http_util.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {
namespace {

std::string ErrorPageBody(const std::vector<std::string>& error) {
  std::vector<std::string> params(error.begin() + (error.empty() ? 0 : 1),
                                  error.end());
  return absl::StrCat(
      "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
      "occurred; "
      "please wait a while and try again. If the problem persists, please "
      "contact your "
      "support representative.<h1> Additional information </h1>",
      error.empty() ? "INTERNAL_ERROR" : error[0], ": [ ",
      absl::StrJoin(params, "; "), " ]</body></html>");
}

std::string JsonOf(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

HttpResponse JsonResponse(const google::protobuf::Message& m) {
  HttpResponse r;
  r.close = false;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = JsonOf(m);
  return r;
}

HttpResponse TextResponse(int status, std::string text) {
  HttpResponse r;
  r.status = status;
  r.close = false;
  r.headers.emplace_back("Content-Type", "text/plain");
  r.body = std::move(text);
  return r;
}

bool ClientGone(int fd) {
  if (fd < 0) return false;
  struct pollfd p = {fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 &&
         (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

std::string Param(const HttpRequest& r, const std::string& name) {
  auto it = r.query.find(name);
  if (it != r.query.end()) return it->second;
  auto c = r.cookies.find(name);
  return c != r.cookies.end() ? c->second : "";
}

// The complete second response XAPI sometimes writes inside a 200 body
// (xen-api issue 4603).
std::string EmbeddedErrorResponse(const std::vector<std::string>& error) {
  std::string body = ErrorPageBody(error);
  return absl::StrCat(
      "HTTP/1.1 500 Internal Error\r\ncontent-length: ", body.size(),
      "\r\ncontent-type:text/"
      "html\r\nconnection:close\r\ncache-control:no-cache, "
      "no-store\r\n\r\n",
      body);
}

// ---- faults on a body -------------------------------------------------------

SimPool::StreamFaults SimPool::MatchStreamFaultsLocked(
    const HttpRequest& r, const std::vector<std::string>& vm_ids,
    const std::string& vdi_uuid, std::vector<std::string> cut_error) {
  StreamFaults f;
  const std::string& call = r.handler;
  if (const Fault* x = MatchFaultLocked(Fault::STALL, r.host, call, vm_ids)) {
    f.stall = true;
    f.stall_at = x->after_bytes();
    f.stall_ms = x->delay_ms();
  }
  if (const Fault* x = MatchFaultLocked(Fault::CUT, r.host, call, vm_ids)) {
    f.cut = true;
    f.cut_at = x->after_bytes();
    f.cut_error = x->error().empty() ? std::move(cut_error)
                                     : FaultErrorLocked(*x, vdi_uuid);
  }
  if (const Fault* x =
          MatchFaultLocked(Fault::EMBEDDED_500, r.host, call, vm_ids)) {
    f.embedded = true;
    f.embedded_at = x->after_bytes();
    Fault copy = *x;
    if (copy.error().empty()) copy.add_error("SR_BACKEND_FAILURE_46");
    f.embedded_error = FaultErrorLocked(copy, vdi_uuid);
  }
  if (const Fault* x = MatchFaultLocked(Fault::CORRUPT, r.host, call, vm_ids)) {
    f.corrupt = true;
    f.corrupt_at = x->after_bytes();
  }
  if (const Fault* x =
          MatchFaultLocked(Fault::TASK_FAIL, r.host, call, vm_ids)) {
    Fault copy = *x;
    if (copy.error().empty()) copy.add_error("VDI_IO_ERROR");
    f.task_error = FaultErrorLocked(copy, "");
  }
  return f;
}

void SimPool::UploadProgress(const std::string& task, int log_index,
                             uint64_t received, int64_t content_length) {
  absl::MutexLock lock(&mu_);
  Object* t = GetLocked("task", task);
  if (t != nullptr && content_length > 0) {
    t->at("progress") = SimValue::Float(std::min(
        0.99,
        static_cast<double>(received) / static_cast<double>(content_length)));
  }
  if (log_index >= 0 && static_cast<size_t>(log_index) < request_log_.size())
    request_log_[static_cast<size_t>(log_index)].set_bytes_received(received);
}

void SimPool::SetStalling(int log_index, bool stalling) {
  absl::MutexLock lock(&mu_);
  if (log_index >= 0 && static_cast<size_t>(log_index) < request_log_.size())
    request_log_[static_cast<size_t>(log_index)].set_stalling(stalling);
}

// Waits out a STALL of `ms` milliseconds (0: until the client leaves or the
// simulator stops), marking the request as stalling meanwhile. Returns false
// when the wait ended because the client left (*client_gone) or the
// simulator is stopping.
bool WaitOutStall(SimPool* pool, int log_index, int fd, uint32_t ms,
                  bool* client_gone) {
  pool->SetStalling(log_index, true);
  const absl::Time end = absl::Now() + absl::Milliseconds(ms);
  bool ok = true;
  while (ms == 0 || absl::Now() < end) {
    if (pool->shutting_down()) {
      ok = false;
      break;
    }
    if (ClientGone(fd)) {
      *client_gone = true;
      ok = false;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  pool->SetStalling(log_index, false);
  return ok;
}

// ---- the streaming body
// -------------------------------------------------------

class ExportStream final : public ResponseStream {
 public:
  using Faults = SimPool::StreamFaults;

  // `images` keeps the disks the source reads alive for the whole stream.
  // `length` is the body's Content-Length, if it has one.
  ExportStream(SimPool* pool, std::unique_ptr<ByteSource> source,
               std::string task, std::string host, int fd, int log_index,
               std::vector<std::string> vdis,
               std::vector<std::shared_ptr<DiskImage>> images, Faults faults,
               bool check_cancel, std::optional<uint64_t> length)
      : pool_(pool),
        images_(std::move(images)),
        source_(std::move(source)),
        task_(std::move(task)),
        host_(std::move(host)),
        fd_(fd),
        log_index_(log_index),
        vdis_(std::move(vdis)),
        faults_(std::move(faults)),
        check_cancel_(check_cancel),
        length_(length) {}

  absl::StatusOr<size_t> Read(char* buf, size_t max) override {
    if (pool_->shutting_down())
      return absl::CancelledError("simulator stopping");
    if (!tail_.empty() || tail_pos_ > 0) {
      const size_t n = std::min(max, tail_.size() - tail_pos_);
      memcpy(buf, tail_.data() + tail_pos_, n);
      tail_pos_ += n;
      sent_ += n;
      return n;
    }
    if (sent_ - last_check_ >= (4u << 20) || sent_ == 0) {
      last_check_ = sent_;
      pool_->StreamProgress(task_, source_->progress_done(),
                            source_->progress_total());
      if (check_cancel_ && pool_->TaskCancelling(task_)) {
        cancelled_ = true;
        return absl::CancelledError("task cancelled");
      }
    }
    size_t limit = max;
    auto bound = [&](bool armed, uint64_t at) {
      if (armed && at >= sent_) limit = std::min<uint64_t>(limit, at - sent_);
    };
    bound(faults_.stall, faults_.stall_at);
    bound(faults_.cut, faults_.cut_at);
    bound(faults_.embedded, faults_.embedded_at);
    if (faults_.stall && sent_ == faults_.stall_at) {
      faults_.stall = false;
      bool client_gone = false;
      if (!WaitOutStall(pool_, log_index_, fd_, faults_.stall_ms,
                        &client_gone)) {
        if (!client_gone) return absl::CancelledError("simulator stopping");
        outcome_ = "client closed during stall";
        return absl::AbortedError("client closed");
      }
      return Read(buf, max);
    }
    if (faults_.cut && sent_ == faults_.cut_at) {
      cut_ = true;
      return absl::AbortedError("cut");
    }
    if (faults_.embedded && sent_ == faults_.embedded_at) {
      faults_.embedded = false;
      embedded_ = true;
      tail_ = EmbeddedErrorResponse(faults_.embedded_error);
      tail_pos_ = 0;
      return Read(buf, max);
    }
    absl::StatusOr<size_t> n = source_->Read(buf, limit);
    if (!n.ok()) return n.status();
    if (faults_.corrupt && faults_.corrupt_at >= sent_ &&
        faults_.corrupt_at < sent_ + *n) {
      buf[faults_.corrupt_at - sent_] ^= 0x5a;
      faults_.corrupt = false;
    }
    pool_->Throttle(host_, *n);
    sent_ += *n;
    if (*n == 0 || (length_.has_value() && sent_ >= *length_)) ended_ = true;
    return *n;
  }

  void Finish(bool completed) override {
    std::vector<std::string> error;
    std::string outcome = "ok";
    if (cancelled_) {
      error = {"TASK_CANCELLED", task_};
      outcome = "cancelled";
    } else if (cut_) {
      error = faults_.cut_error;
      outcome = "cut";
    } else if (embedded_) {
      error = faults_.embedded_error;
      outcome = "embedded 500";
    } else if (!completed || !ended_) {
      error = {"INTERNAL_ERROR",
               "Unix.Unix_error(Unix.EPIPE, \"write\", \"\")"};
      outcome = outcome_.empty() ? "client closed" : outcome_;
    } else if (!faults_.task_error.empty()) {
      error = faults_.task_error;
      outcome = "task failed after body";
    }
    pool_->StreamFinished(task_, log_index_, sent_, error, outcome, vdis_);
  }

 private:
  SimPool* pool_;
  std::vector<std::shared_ptr<DiskImage>>
      images_;  // before source_: outlives it
  std::unique_ptr<ByteSource> source_;
  std::string task_;
  std::string host_;
  int fd_;
  int log_index_;
  std::vector<std::string> vdis_;
  Faults faults_;
  const bool check_cancel_;
  const std::optional<uint64_t> length_;
  uint64_t sent_ = 0;
  uint64_t last_check_ = 0;
  bool ended_ = false;
  bool cancelled_ = false;
  bool cut_ = false;
  bool embedded_ = false;
  std::string tail_;
  size_t tail_pos_ = 0;
  std::string outcome_;
};

std::unique_ptr<ResponseStream> SimPool::MakeStreamLocked(
    HttpRequest& r, std::unique_ptr<ByteSource> src, const std::string& task,
    const std::vector<std::string>& vdis, StreamFaults faults,
    bool check_cancel, std::optional<uint64_t> length) {
  task_streaming_[task] = true;
  std::vector<std::shared_ptr<DiskImage>> images;
  for (const std::string& ref : vdis) {
    auto it = vdi_data_.find(ref);
    if (it == vdi_data_.end()) continue;
    images.push_back(it->second.image);
    // Attached to dom0 while it is read: VDI.destroy says VDI_IN_USE.
    ++it->second.exporting;
  }
  return std::make_unique<ExportStream>(
      this, std::move(src), task, r.host, r.socket_fd, r.log_index, vdis,
      std::move(images), std::move(faults), check_cancel, length);
}

void SimPool::StreamProgress(const std::string& task, uint64_t done,
                             uint64_t total) {
  absl::MutexLock lock(&mu_);
  Object* t = GetLocked("task", task);
  if (t == nullptr || total == 0) return;
  t->at("progress") =
      SimValue::Float(std::min(0.99, static_cast<double>(done) / total));
}

bool SimPool::TaskCancelling(const std::string& task) {
  absl::MutexLock lock(&mu_);
  Object* t = GetLocked("task", task);
  return t != nullptr &&
         (t->str("status") == "cancelling" || t->str("status") == "cancelled");
}

void SimPool::StreamFinished(const std::string& task, int log_index,
                             uint64_t bytes,
                             const std::vector<std::string>& error,
                             const std::string& outcome,
                             const std::vector<std::string>& exported_vdis) {
  absl::MutexLock lock(&mu_);
  EndTransferTaskLocked(task, error, "");
  for (const std::string& vdi : exported_vdis) {
    auto it = vdi_data_.find(vdi);
    if (it == vdi_data_.end()) continue;
    if (it->second.exporting > 0) --it->second.exporting;
    it->second.in_use_after_export = settings_.vdi_in_use_after_export();
  }
  if (log_index >= 0 && static_cast<size_t>(log_index) < request_log_.size()) {
    RequestLogEntry& e = request_log_[static_cast<size_t>(log_index)];
    e.set_bytes_sent(bytes);
    e.set_outcome(outcome);
    e.set_finished(absl::ToDoubleSeconds(absl::Now() - started_));
  }
}

void SimPool::Throttle(const std::string& host, size_t bytes) {
  absl::Duration wait;
  {
    absl::MutexLock lock(&mu_);
    const Fault* limit = nullptr;
    for (const Fault& f : faults_) {
      if (f.kind() == Fault::BANDWIDTH && f.bytes_per_second() > 0 &&
          (f.host().empty() || f.host() == host)) {
        limit = &f;
        break;
      }
    }
    if (limit == nullptr) return;
    const absl::Time now = absl::Now();
    absl::Time& next = throttle_next_[host];
    if (next < now) next = now;
    next += absl::Seconds(static_cast<double>(bytes) /
                          static_cast<double>(limit->bytes_per_second()));
    wait = next - now;
  }
  const absl::Time end = absl::Now() + wait;
  while (absl::Now() < end && !shutting_down()) {
    absl::SleepFor(std::min(absl::Milliseconds(50), end - absl::Now()));
  }
}

// ---- handlers
// -------------------------------------------------------------------

HttpResponse SimPool::ErrorPageLocked(int status,
                                      const std::vector<std::string>& error) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", "text/html");
  r.headers.emplace_back("cache-control", "no-cache, no-store");
  r.body = ErrorPageBody(error);
  return r;
}

void SimPool::EndTransferTaskLocked(const std::string& task,
                                    const std::vector<std::string>& error,
                                    const std::string& result) {
  task_streaming_.erase(task);
  Object* t = GetLocked("task", task);
  if (t == nullptr) return;
  t->at("finished") = SimValue::Time(NowLocked());
  if (error.empty()) {
    t->at("status") = SimValue::Str("success");
    t->at("progress") = SimValue::Float(1);
    if (!result.empty()) t->at("result") = SimValue::Str(result);
  } else {
    t->at("status") =
        SimValue::Str(error[0] == "TASK_CANCELLED" ? "cancelled" : "failure");
    t->at("error_info") = SimValue::StrSet(error);
  }
}

void SimPool::FailTaskLocked(const std::string& task,
                             const std::vector<std::string>& error) {
  Object* t = GetLocked("task", task);
  if (t == nullptr || t->str("status") != "pending") return;
  t->at("status") = SimValue::Str("failure");
  t->at("finished") = SimValue::Time(NowLocked());
  t->at("error_info") = SimValue::StrSet(error);
}

std::string SimPool::TaskForRequestLocked(HttpRequest& r,
                                          const std::string& label) {
  const std::string given = Param(r, "task_id");
  if (!given.empty() && GetLocked("task", given) != nullptr) return given;
  Object* task = CreateLocked("task");
  task->at("name_label") = SimValue::Str(label);
  task->at("created") = SimValue::Time(NowLocked());
  task->at("status") = SimValue::Str("pending");
  task->at("resident_on") = SimValue::Str(master_ref_);
  return task->ref;
}

bool SimPool::AuthenticateHttpLocked(HttpRequest& r, const std::string& task,
                                     HttpResponse* denied) {
  // XAPI looks at the cookie before the query string.
  auto cookie = r.cookies.find("session_id");
  const std::string session =
      cookie != r.cookies.end() ? cookie->second : Param(r, "session_id");
  if (!session.empty() && sessions_.count(session) != 0) return true;
  std::string user;
  if (session.empty() && absl::StartsWith(r.authorization, "Basic ")) {
    std::string decoded;
    if (absl::Base64Unescape(r.authorization.substr(6), &decoded)) {
      const size_t colon = decoded.find(':');
      user = decoded.substr(0, colon);
      if (colon != std::string::npos && user == credentials_.username() &&
          decoded.substr(colon + 1) == credentials_.password()) {
        return true;
      }
    }
  }
  FailTaskLocked(
      task, {"SESSION_AUTHENTICATION_FAILED", user, "Authentication failure"});
  denied->status = 401;
  denied->headers.emplace_back("WWW-Authenticate", "Basic realm=\"xapi\"");
  denied->headers.emplace_back("content-type", "text/html");
  denied->body =
      "<html><body><h1>HTTP 401 unauthorised</h1>Authorisation "
      "failed</body></html>";
  return false;
}

bool SimPool::RedirectLocked(HttpRequest& r,
                             const std::vector<std::string>& srs,
                             const std::string& task, HttpResponse* out) {
  auto can_serve = [&](const Object& h) {
    mu_.AssertHeld();
    if (!HostLiveLocked(h)) return false;
    for (const std::string& sr : srs) {
      if (!HostSeesSrLocked(h, sr)) return false;
    }
    return true;
  };
  Object* here = HostByNameLocked(r.host);
  if (here != nullptr && can_serve(*here)) return false;
  std::vector<Object*> candidates;
  for (Object* h : AllLocked("host")) {
    if (h != here && can_serve(*h)) candidates.push_back(h);
  }
  if (candidates.empty()) {
    // XAPI fails the task and writes no HTTP response at all.
    FailTaskLocked(task, {"NO_HOSTS_AVAILABLE"});
    out->drop_connection = true;
    return true;
  }
  Object* pick = candidates[rng_() % candidates.size()];
  out->status = 302;
  const std::string location =
      absl::StrCat(scheme_, "://", pick->str("address"), ":", port_, r.path,
                   r.raw_query.empty() ? "" : "?", r.raw_query);
  out->headers.emplace_back("Location", location);
  if (r.log_index >= 0) {
    request_log_[static_cast<size_t>(r.log_index)].set_redirected_to(
        absl::StrCat(scheme_, "://", pick->str("address"), ":", port_, r.path,
                     r.raw_query.empty() ? "" : "?",
                     RedactSessionInQuery(r.raw_query)));
  }
  return true;
}

std::string SimPool::OvaXmlLocked(const Object& vm, bool metadata_only,
                                  std::vector<XvaDisk>* disks,
                                  std::vector<std::string>* vdi_refs) {
  // Ids are numbered as XAPI numbers them: from Ref:12, in traversal order
  // (VM, each VIF and its network, each VBD with its VDI and SR), so the
  // ids of one class are not contiguous; hosts the VM refers to get ids with
  // no object behind them.
  int next_id = 12;
  std::map<std::string, std::string> ids;
  auto number = [&](const std::string& ref) {
    if (ref.empty() || ref == "OpaqueRef:NULL") return;
    if (ids.count(ref) == 0) ids[ref] = absl::StrCat("Ref:", next_id++);
  };
  std::vector<Object*> vbds, vifs, networks, vdis, srs;
  number(vm.ref);
  for (const SimValue& vif_ref : vm.at("VIFs").items) {
    Object* vif = GetLocked("VIF", vif_ref.s);
    if (vif == nullptr) continue;
    number(vif->ref);
    vifs.push_back(vif);
    if (Object* n = GetLocked("network", vif->str("network"))) {
      if (ids.count(n->ref) == 0) networks.push_back(n);
      number(n->ref);
    }
  }
  for (const SimValue& vbd_ref : vm.at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr) continue;
    number(vbd->ref);
    vbds.push_back(vbd);
    Object* vdi = GetLocked("VDI", vbd->str("VDI"));
    if (vdi == nullptr) continue;
    Object* sr = GetLocked("SR", vdi->str("SR"));
    if (sr != nullptr && sr->str("content_type") == "iso") continue;
    if (ids.count(vdi->ref) == 0) vdis.push_back(vdi);
    number(vdi->ref);
    if (sr != nullptr) {
      if (ids.count(sr->ref) == 0) srs.push_back(sr);
      number(sr->ref);
    }
  }
  number(vm.str("resident_on"));
  number(vm.str("affinity"));

  auto rewrite = [&](const Object& o) {
    mu_.AssertHeld();
    SimValue rec = RecordLocked(o);
    for (size_t i = 0; i < o.fields.size(); ++i) {
      const FieldSchema& f = o.schema->fields[i];
      SimValue& v = rec.map[i].second;
      if (f.kind == FieldKind::kRef) {
        auto it = ids.find(v.s);
        v.s = it != ids.end() ? it->second : "OpaqueRef:NULL";
      } else if (f.kind == FieldKind::kSet && f.value_kind == FieldKind::kRef) {
        std::vector<SimValue> kept;
        for (const SimValue& item : v.items) {
          auto it = ids.find(item.s);
          if (it != ids.end()) kept.push_back(SimValue::Str(it->second));
        }
        v.items = std::move(kept);
      }
    }
    return rec;
  };
  SimValue objects = SimValue::Set();
  auto add = [&](const char* cls, const Object& o, SimValue rec) {
    SimValue entry = SimValue::Map();
    entry.Put("class", SimValue::Str(cls));
    entry.Put("id", SimValue::Str(ids[o.ref]));
    entry.Put("snapshot", std::move(rec));
    objects.items.push_back(std::move(entry));
  };
  SimValue vm_rec = rewrite(vm);
  // A plain export clears the snapshot fields but keeps is_a_template.
  vm_rec.Put("is_a_snapshot", SimValue::Bool(false));
  vm_rec.Put("snapshot_of", SimValue::Str("OpaqueRef:NULL"));
  vm_rec.Put("snapshot_time", SimValue::Time("19700101T00:00:00Z"));
  vm_rec.Put("snapshot_info", SimValue::Map());
  vm_rec.Put("power_state", SimValue::Str("Halted"));
  add("VM", vm, std::move(vm_rec));
  for (Object* o : vbds) add("VBD", *o, rewrite(*o));
  for (Object* o : vifs) add("VIF", *o, rewrite(*o));
  for (Object* o : networks) add("network", *o, rewrite(*o));
  for (Object* o : vdis) add("VDI", *o, rewrite(*o));
  for (Object* o : srs) add("SR", *o, rewrite(*o));
  if (!metadata_only) {
    for (Object* vdi : vdis) {
      auto it = vdi_data_.find(vdi->ref);
      if (it == vdi_data_.end() || it->second.image == nullptr) continue;
      disks->push_back(XvaDisk{ids[vdi->ref], it->second.image.get()});
      vdi_refs->push_back(vdi->ref);
    }
  }
  Object* master = GetLocked("host", master_ref_);
  SimValue version = SimValue::Map();
  version.Put("hostname", SimValue::Str(master->str("hostname")));
  version.Put("date", SimValue::Str("2017-05-11"));
  version.Put("product_version", SimValue::Str(settings_.product_version()));
  version.Put("product_brand", SimValue::Str(settings_.product_brand()));
  version.Put("build_number", SimValue::Str(settings_.build_number()));
  version.Put("xapi_major", SimValue::Str("1"));
  version.Put("xapi_minor", SimValue::Str("9"));
  version.Put("export_vsn", SimValue::Str("2"));
  SimValue top = SimValue::Map();
  top.Put("version", version);
  top.Put("objects", objects);
  return XapiValue(top);
}

HttpResponse SimPool::ExportLocked(HttpRequest& r) {
  HttpResponse out;
  const std::string ref = Param(r, "ref");
  const std::string uuid = Param(r, "uuid");
  Object* vm = !ref.empty() ? GetLocked("VM", ref) : ByUuidLocked("VM", uuid);
  const std::string task = TaskForRequestLocked(
      r,
      absl::StrCat("Export of VM: ", vm != nullptr ? vm->str("uuid") : uuid));
  if (!AuthenticateHttpLocked(r, task, &out)) return out;
  if (vm == nullptr) {
    std::vector<std::string> error = {"HANDLE_INVALID", "VM",
                                      ref.empty() ? uuid : ref};
    FailTaskLocked(task, error);
    HttpResponse page = ErrorPageLocked(500, error);
    return page;
  }
  std::vector<std::string> srs;
  for (const SimValue& vbd_ref : vm->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr || vbd->at("empty").b) continue;
    if (Object* vdi = GetLocked("VDI", vbd->str("VDI")))
      srs.push_back(vdi->str("SR"));
  }
  if (RedirectLocked(r, srs, task, &out)) return out;
  const std::vector<std::string> ids = VmIdentitiesLocked(*vm);
  std::vector<std::string> error;
  const std::string& state = vm->str("power_state");
  if (state == "Running" || state == "Paused") {
    error = {"VM_BAD_POWER_STATE", vm->ref, "halted",
             absl::AsciiStrToLower(state)};
  } else if (const Fault* f =
                 MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, ids)) {
    error = FaultErrorLocked(*f, vm->ref);
  }
  if (!error.empty()) {
    FailTaskLocked(task, error);
    HttpResponse page = ErrorPageLocked(500, error);
    return page;
  }
  std::vector<XvaDisk> disks;
  std::vector<std::string> vdi_refs;
  std::string ova = OvaXmlLocked(*vm, false, &disks, &vdi_refs);
  std::unique_ptr<ByteSource> source = std::make_unique<XvaSource>(
      std::move(ova), std::move(disks),
      settings_.sha1_checksums() ? XvaChecksum::kSha1 : XvaChecksum::kXxHash);
  const std::string compression = Param(r, "use_compression");
  if (compression == "true" || compression == "gzip") {
    source = GzipSource(std::move(source));
  } else if (compression == "zstd") {
    source = ZstdSource(std::move(source));
  }
  out.status = 200;
  out.http10 = true;
  out.content_length = false;
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"export.xva\"");
  out.headers.emplace_back("task-id", task);
  Object* first_vdi =
      vdi_refs.empty() ? nullptr : GetLocked("VDI", vdi_refs.front());
  StreamFaults faults = MatchStreamFaultsLocked(
      r, ids, first_vdi != nullptr ? first_vdi->str("uuid") : "",
      {"VDI_IO_ERROR", "Device I/O errors"});
  out.stream = MakeStreamLocked(r, std::move(source), task, vdi_refs,
                                std::move(faults), /*check_cancel=*/true);
  return out;
}

HttpResponse SimPool::ExportRawVdiLocked(HttpRequest& r) {
  HttpResponse out;
  const std::string which = Param(r, "vdi");
  Object* vdi = GetLocked("VDI", which);
  if (vdi == nullptr) vdi = ByUuidLocked("VDI", which);
  const std::string task =
      TaskForRequestLocked(r, absl::StrCat("export_raw_vdi ", which));
  if (!AuthenticateHttpLocked(r, task, &out)) return out;
  auto fail = [&](const std::vector<std::string>& error) {
    mu_.AssertHeld();
    FailTaskLocked(task, error);
    HttpResponse page = ErrorPageLocked(500, error);
    return page;
  };
  if (vdi == nullptr) return fail({"HANDLE_INVALID", "VDI", which});
  if (RedirectLocked(r, {vdi->str("SR")}, task, &out)) return out;
  std::string format = Param(r, "format");
  if (format.empty()) format = "raw";
  if (format != "raw" && format != "vhd") {
    return fail({"INTERNAL_ERROR",
                 absl::StrCat("format ", format, " is not simulated")});
  }
  if (!Param(r, "base").empty()) {
    return fail(
        {"INTERNAL_ERROR", "differential exports (base=) are not simulated"});
  }
  auto data = vdi_data_.find(vdi->ref);
  if (data == vdi_data_.end() || data->second.image == nullptr) {
    return fail({"VDI_MISSING", vdi->str("SR"), vdi->ref});
  }
  const std::vector<std::string> ids = VdiVmIdentitiesLocked(*vdi);
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, ids)) {
    return fail(FaultErrorLocked(*f, vdi->ref));
  }
  std::unique_ptr<ByteSource> source;
  if (format == "raw") {
    source = std::make_unique<RawSource>(data->second.image.get());
  } else {
    std::string uuid16;
    absl::string_view hex = vdi->str("uuid");
    std::string compact;
    for (char c : hex) {
      if (c != '-') compact.push_back(c);
    }
    uuid16 = absl::HexStringToBytes(compact);
    const uint32_t since_2000 =
        static_cast<uint32_t>(absl::ToUnixSeconds(absl::Now()) - 946684800);
    source = std::make_unique<VhdSource>(data->second.image.get(), uuid16,
                                         since_2000);
  }
  out.status = 200;
  out.content_length = false;
  out.headers.emplace_back("task-id", task);
  out.headers.emplace_back("content-type", format == "raw"
                                               ? "application/octet-stream"
                                               : "application/vhd");
  out.headers.emplace_back("content-disposition",
                           absl::StrCat("attachment; filename=\"",
                                        vdi->str("uuid"), ".", format, "\""));
  StreamFaults faults = MatchStreamFaultsLocked(
      r, ids, vdi->str("uuid"), {"VDI_IO_ERROR", "Device I/O errors"});
  out.stream = MakeStreamLocked(r, std::move(source), task, {vdi->ref},
                                std::move(faults), /*check_cancel=*/true);
  return out;
}

HttpResponse SimPool::ExportMetadataLocked(HttpRequest& r) {
  HttpResponse out;
  const std::string ref = Param(r, "ref");
  Object* vm = !ref.empty() ? GetLocked("VM", ref)
                            : ByUuidLocked("VM", Param(r, "uuid"));
  const std::string task = TaskForRequestLocked(r, "export_metadata");
  if (!AuthenticateHttpLocked(r, task, &out)) return out;
  if (vm == nullptr) {
    std::vector<std::string> error = {"HANDLE_INVALID", "VM",
                                      ref.empty() ? Param(r, "uuid") : ref};
    FailTaskLocked(task, error);
    return ErrorPageLocked(500, error);
  }
  const std::vector<std::string> ids = VmIdentitiesLocked(*vm);
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, ids)) {
    std::vector<std::string> error = FaultErrorLocked(*f, vm->ref);
    FailTaskLocked(task, error);
    return ErrorPageLocked(500, error);
  }
  std::vector<XvaDisk> none;
  std::vector<std::string> none_refs;
  const std::string ova = OvaXmlLocked(*vm, true, &none, &none_refs);
  std::string tar = TarHeader("ova.xml", ova.size()) + ova;
  tar.resize((tar.size() + 511) / 512 * 512, '\0');
  tar.append(1024, '\0');
  // XAPI builds the whole tar first and sends it with its length; the body
  // still goes through the stream faults.
  out.status = 200;
  out.http10 = true;
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"export.xva\"");
  out.headers.emplace_back("task-id", task);
  out.stream_length = tar.size();
  StreamFaults faults = MatchStreamFaultsLocked(
      r, ids, "", {"INTERNAL_ERROR", "simulated failure"});
  out.stream = MakeStreamLocked(
      r, std::make_unique<StringSource>(std::move(tar)), task, {},
      std::move(faults), /*check_cancel=*/false, out.stream_length);
  return out;
}

namespace {

void AppendSexprString(absl::string_view s, std::string* out) {
  out->push_back('\'');
  for (char c : s) {
    if (c == '\'' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('\'');
}

std::string DbValue(const SimValue& v) {
  switch (v.kind) {
    case SimValue::Kind::kString:
    case SimValue::Kind::kDateTime:
      return v.s;
    case SimValue::Kind::kInt:
      return absl::StrCat(v.i);
    case SimValue::Kind::kBool:
      return v.b ? "true" : "false";
    case SimValue::Kind::kFloat:
      return absl::StrFormat("%.16g", v.f);
    case SimValue::Kind::kSet: {
      std::string out = "(";
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i > 0) out += " ";
        AppendSexprString(DbValue(v.items[i]), &out);
      }
      return out + ")";
    }
    case SimValue::Kind::kMap: {
      std::string out = "(";
      for (size_t i = 0; i < v.map.size(); ++i) {
        if (i > 0) out += " ";
        out += "(";
        AppendSexprString(v.map[i].first, &out);
        out += " ";
        AppendSexprString(DbValue(v.map[i].second), &out);
        out += ")";
      }
      return out + ")";
    }
  }
  return "";
}

void AppendAttr(absl::string_view name, absl::string_view value,
                std::string* out) {
  absl::StrAppend(out, " ", name, "=\"");
  AppendXapiEscaped(value, out);
  *out += "\"";
}

}  // namespace

std::string SimPool::SexprRecordLocked(const Object& o) {
  // As XAPI writes snapshot_metadata: (('field' 'value') ...), fields in
  // descending order of their database names.
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t i = 0; i < o.fields.size(); ++i) {
    pairs.emplace_back(o.schema->fields[i].db_name, DbValue(o.fields[i]));
  }
  pairs.emplace_back("_ref", o.ref);
  std::sort(pairs.rbegin(), pairs.rend());
  std::string out = "(";
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (i > 0) out += " ";
    out += "(";
    AppendSexprString(pairs[i].first, &out);
    out += " ";
    AppendSexprString(pairs[i].second, &out);
    out += ")";
  }
  return out + ")";
}

std::string SimPool::DbDumpXmlLocked() {
  std::string out =
      "<database><manifest><pair key=\"schema_major_vsn\" value=\"5\"/><pair "
      "key=\"schema_minor_vsn\" value=\"120\"/>";
  absl::StrAppend(&out, "<pair key=\"generation_count\" value=\"",
                  api_calls_ + 1, "\"/></manifest>");
  std::vector<std::string> classes;
  for (const ClassSchema& c : AllClasses()) classes.push_back(c.name);
  std::sort(classes.begin(), classes.end());
  for (const std::string& cls : classes) {
    std::vector<Object*> rows = AllLocked(cls);
    // Tasks and sessions are not persisted in the pool database.
    if (cls == "task" || cls == "session") rows.clear();
    if (rows.empty()) {
      absl::StrAppend(&out, "<table name=\"", cls, "\"/>");
      continue;
    }
    absl::StrAppend(&out, "<table name=\"", cls, "\">");
    for (Object* o : rows) {
      std::vector<std::pair<std::string, std::string>> attrs;
      for (size_t i = 0; i < o->fields.size(); ++i) {
        attrs.emplace_back(o->schema->fields[i].db_name, DbValue(o->fields[i]));
      }
      attrs.emplace_back("_ref", o->ref);
      std::sort(attrs.begin(), attrs.end());
      out += "<row";
      AppendAttr("ref", o->ref, &out);
      AppendAttr("__ctime", "1", &out);
      AppendAttr("__mtime", absl::StrCat(api_calls_ + 1), &out);
      for (const auto& [k, v] : attrs) AppendAttr(k, v, &out);
      out += "/>";
    }
    out += "</table>";
  }
  out += "</database>";
  return out;
}

HttpResponse SimPool::DbDumpLocked(HttpRequest& r) {
  HttpResponse out;
  const std::string task = TaskForRequestLocked(r, "pool database dump");
  if (!AuthenticateHttpLocked(r, task, &out)) return out;
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, {})) {
    std::vector<std::string> error = FaultErrorLocked(*f, "");
    FailTaskLocked(task, error);
    return ErrorPageLocked(500, error);
  }
  std::string dump = DbDumpXmlLocked();
  out.status = 200;
  out.content_length = false;
  out.headers.emplace_back("task-id", task);
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  StreamFaults faults = MatchStreamFaultsLocked(
      r, {}, "", {"INTERNAL_ERROR", "simulated failure"});
  out.stream =
      MakeStreamLocked(r, std::make_unique<StringSource>(std::move(dump)), task,
                       {}, std::move(faults), /*check_cancel=*/true);
  return out;
}

namespace {

// Serves an upload whose body was spooled to a file.
HttpResponse FeedSpooledBody(UploadStart start, const HttpRequest& r) {
  if (start.sink == nullptr) return std::move(start.response);
  std::ifstream in(r.body_path, std::ios::binary);
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const size_t n = static_cast<size_t>(in.gcount());
    if (n == 0) break;
    if (!start.sink->Write(buf.data(), n)) {
      start.sink->Abort();
      HttpResponse dropped;
      dropped.drop_connection = true;
      return dropped;
    }
  }
  return start.sink->Finish();
}

}  // namespace

// ---- dispatch
// -------------------------------------------------------------------

HttpResponse SimPool::HandleHttp(HttpRequest& r) {
  if (r.path == "/sim/vdi" && r.method == "GET") {
    auto info = DescribeVdi(Param(r, "uuid"));
    if (!info.ok())
      return TextResponse(404, absl::StrCat(info.status().message(), "\n"));
    return JsonResponse(*info);
  }
  if (absl::StartsWith(r.path, "/sim/")) {
    absl::MutexLock lock(&mu_);
    return ControlLocked(r);
  }
  if (std::optional<UploadStart> upload = StartUpload(r))
    return FeedSpooledBody(*std::move(upload), r);
  absl::MutexLock lock(&mu_);
  Object* here = HostByNameLocked(r.host);
  if (here != nullptr && !HostLiveLocked(*here)) {
    HttpResponse dead;
    dead.drop_connection = true;  // a dead host answers nothing
    return dead;
  }
  auto is = [&](absl::string_view handler) {
    if (r.path != handler && r.path != absl::StrCat(handler, "/")) return false;
    r.handler = std::string(handler);
    return true;
  };
  r.log_index = LogRequestLocked(r);
  HttpResponse out;
  if (r.method == "GET" && is("/export_raw_vdi")) {
    out = ExportRawVdiLocked(r);
  } else if (r.method == "GET" && is("/export_metadata")) {
    out = ExportMetadataLocked(r);
  } else if (r.method == "GET" && is("/export")) {
    out = ExportLocked(r);
  } else if (r.method == "GET" && is("/pool/xmldbdump")) {
    out = DbDumpLocked(r);
  } else {
    out.status = 404;
    out.headers.emplace_back("content-type", "text/html");
    out.body =
        "<html><body><h1>HTTP 404 not found</h1>The requested URL was not "
        "found</body></html>";
  }
  LogReplyLocked(out, r.log_index);
  return out;
}

void SimPool::LogReplyLocked(const HttpResponse& out, int log_index) {
  if (log_index < 0 || static_cast<size_t>(log_index) >= request_log_.size())
    return;
  RequestLogEntry& e = request_log_[static_cast<size_t>(log_index)];
  if (out.drop_connection) {
    e.set_outcome("connection closed without a response");
    e.set_finished(absl::ToDoubleSeconds(absl::Now() - started_));
  } else {
    e.set_status(out.status);
    if (out.stream == nullptr) {
      e.set_bytes_sent(out.body.size());
      e.set_outcome(out.status < 300 ? "ok"
                                     : absl::StrCat("HTTP ", out.status));
      e.set_finished(absl::ToDoubleSeconds(absl::Now() - started_));
    }
  }
}

HttpResponse SimPool::ControlLocked(HttpRequest& r) {
  if (r.path == "/sim/state" && r.method == "GET")
    return JsonResponse(StateLocked());
  if (r.path == "/sim/requests" && r.method == "GET") {
    return JsonResponse(RequestsLocked(Param(r, "host")));
  }
  if (r.path == "/sim/faults") {
    if (r.method == "GET") return JsonResponse(FaultsLocked());
    if (r.method == "DELETE") {
      faults_.clear();
      fault_fired_.clear();
      session_invalid_seen_.clear();
      RefreshLivenessLocked();
      return TextResponse(200, "cleared\n");
    }
    if (r.method == "POST" || r.method == "PUT") {
      std::ifstream in(r.body_path, std::ios::binary);
      std::string json((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
      Fault f;
      auto status = google::protobuf::util::JsonStringToMessage(json, &f);
      if (!status.ok())
        return TextResponse(
            400, absl::StrCat("bad fault: ", status.ToString(), "\n"));
      if (absl::Status valid = ValidateFault(f); !valid.ok()) {
        return TextResponse(400,
                            absl::StrCat("bad fault: ", valid.message(), "\n"));
      }
      faults_.push_back(f);
      fault_fired_.push_back(0);
      RefreshLivenessLocked();
      return TextResponse(200, "added\n");
    }
  }
  return TextResponse(404, "unknown control path\n");
}

}  // namespace vmb::sim
