// SPDX-License-Identifier: Apache-2.0
// XAPI's HTTP data handlers, as the simulator serves them: /export,
// /export_raw_vdi, /export_metadata, /pool/xmldbdump, PUT /import, and the
// simulator's own /sim/ control endpoint.
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

#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {
namespace {

std::string Param(const HttpRequest& r, const std::string& name) {
  auto it = r.query.find(name);
  if (it != r.query.end()) return it->second;
  auto c = r.cookies.find(name);
  return c != r.cookies.end() ? c->second : "";
}

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

// ---- the streaming body
// -------------------------------------------------------

class ExportStream final : public ResponseStream {
 public:
  struct Faults {
    bool stall = false;
    uint64_t stall_at = 0;
    uint32_t stall_ms = 0;
    bool cut = false;
    uint64_t cut_at = 0;
    bool embedded = false;
    uint64_t embedded_at = 0;
    std::vector<std::string> embedded_error;
    bool corrupt = false;
    uint64_t corrupt_at = 0;
    std::vector<std::string> task_error;  // TASK_FAIL
  };

  // `images` keeps the disks the source reads alive for the whole stream.
  ExportStream(SimPool* pool, std::unique_ptr<ByteSource> source,
               std::string task, std::string host, int fd, int log_index,
               std::vector<std::string> vdis,
               std::vector<std::shared_ptr<DiskImage>> images, Faults faults)
      : pool_(pool),
        images_(std::move(images)),
        source_(std::move(source)),
        task_(std::move(task)),
        host_(std::move(host)),
        fd_(fd),
        log_index_(log_index),
        vdis_(std::move(vdis)),
        faults_(std::move(faults)) {}

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
      if (pool_->TaskCancelling(task_)) {
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
      const absl::Time end = absl::Now() + absl::Milliseconds(faults_.stall_ms);
      while (faults_.stall_ms == 0 || absl::Now() < end) {
        if (pool_->shutting_down())
          return absl::CancelledError("simulator stopping");
        if (ClientGone(fd_)) {
          outcome_ = "client closed during stall";
          return absl::AbortedError("client closed");
        }
        absl::SleepFor(absl::Milliseconds(20));
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
    if (*n == 0) ended_ = true;
    return *n;
  }

  void Finish(bool completed) override {
    std::vector<std::string> error;
    std::string outcome = "ok";
    if (cancelled_) {
      error = {"TASK_CANCELLED", task_};
      outcome = "cancelled";
    } else if (cut_) {
      error = {"VDI_IO_ERROR", "Device I/O errors"};
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
    const std::vector<std::string>& vm_ids,
    const std::vector<std::string>& vdis, int log_index) {
  ExportStream::Faults f;
  if (const Fault* x = MatchFaultLocked(Fault::STALL, r.host, r.path, vm_ids)) {
    f.stall = true;
    f.stall_at = x->after_bytes();
    f.stall_ms = x->delay_ms();
  }
  if (const Fault* x = MatchFaultLocked(Fault::CUT, r.host, r.path, vm_ids)) {
    f.cut = true;
    f.cut_at = x->after_bytes();
  }
  if (const Fault* x =
          MatchFaultLocked(Fault::EMBEDDED_500, r.host, r.path, vm_ids)) {
    f.embedded = true;
    f.embedded_at = x->after_bytes();
    Fault copy = *x;
    if (copy.error().empty()) copy.add_error("SR_BACKEND_FAILURE_46");
    Object* vdi = vdis.empty() ? nullptr : GetLocked("VDI", vdis[0]);
    f.embedded_error =
        FaultErrorLocked(copy, vdi != nullptr ? vdi->str("uuid") : "");
  }
  if (const Fault* x =
          MatchFaultLocked(Fault::CORRUPT, r.host, r.path, vm_ids)) {
    f.corrupt = true;
    f.corrupt_at = x->after_bytes();
  }
  if (const Fault* x =
          MatchFaultLocked(Fault::TASK_FAIL, r.host, r.path, vm_ids)) {
    Fault copy = *x;
    if (copy.error().empty()) copy.add_error("VDI_IO_ERROR");
    f.task_error = FaultErrorLocked(copy, "");
  }
  task_streaming_[task] = true;
  std::vector<std::shared_ptr<DiskImage>> images;
  for (const std::string& ref : vdis) {
    auto it = vdi_data_.find(ref);
    if (it == vdi_data_.end()) continue;
    images.push_back(it->second.image);
    // Attached to dom0 while it is read: VDI.destroy says VDI_IN_USE.
    ++it->second.exporting;
  }
  return std::make_unique<ExportStream>(this, std::move(src), task, r.host,
                                        r.socket_fd, log_index, vdis,
                                        std::move(images), std::move(f));
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
  task_streaming_.erase(task);
  if (Object* t = GetLocked("task", task)) {
    t->at("finished") = SimValue::Time(NowLocked());
    if (error.empty()) {
      t->at("status") = SimValue::Str("success");
      t->at("progress") = SimValue::Float(1);
    } else {
      t->at("status") =
          SimValue::Str(error[0] == "TASK_CANCELLED" ? "cancelled" : "failure");
      t->at("error_info") = SimValue::StrSet(error);
    }
  }
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
                 MatchFaultLocked(Fault::CALL_ERROR, r.host, r.path, ids)) {
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
  out.stream =
      MakeStreamLocked(r, std::move(source), task, ids, vdi_refs, r.log_index);
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
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.path, ids)) {
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
  out.stream = MakeStreamLocked(r, std::move(source), task, ids, {vdi->ref},
                                r.log_index);
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
  std::vector<XvaDisk> none;
  std::vector<std::string> none_refs;
  const std::string ova = OvaXmlLocked(*vm, true, &none, &none_refs);
  std::string tar = TarHeader("ova.xml", ova.size()) + ova;
  tar.resize((tar.size() + 511) / 512 * 512, '\0');
  tar.append(1024, '\0');
  if (Object* t = GetLocked("task", task)) {
    t->at("status") = SimValue::Str("success");
    t->at("progress") = SimValue::Float(1);
    t->at("finished") = SimValue::Time(NowLocked());
  }
  out.status = 200;
  out.http10 = true;
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.headers.emplace_back("task-id", task);
  out.body = std::move(tar);
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
  std::string dump = DbDumpXmlLocked();
  out.status = 200;
  out.content_length = false;
  out.headers.emplace_back("task-id", task);
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.stream =
      MakeStreamLocked(r, std::make_unique<StringSource>(std::move(dump)), task,
                       {}, {}, r.log_index);
  return out;
}

// ---- import
// -------------------------------------------------------------------

namespace {

// Reads a plain, gzip or zstd file as one byte stream (the simulator's own
// decoder; XAPI sniffs the same magic numbers).
class Decompressor {
 public:
  explicit Decompressor(const std::string& path) : in_(path, std::ios::binary) {
    unsigned char magic[4] = {0, 0, 0, 0};
    in_.read(reinterpret_cast<char*>(magic), 4);
    const std::streamsize got = in_.gcount();
    in_.clear();
    in_.seekg(0);
    if (got == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
        magic[3] == 0xfd) {
      kind_ = kZstd;
      dctx_ = ZSTD_createDCtx();
    } else if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      kind_ = kGzip;
      memset(&z_, 0, sizeof(z_));
      inflateInit2(&z_, 15 + 32);
    }
    buf_.resize(1 << 20);
  }
  ~Decompressor() {
    if (dctx_ != nullptr) ZSTD_freeDCtx(dctx_);
    if (kind_ == kGzip) inflateEnd(&z_);
  }
  bool ok() const { return in_.good() || in_.eof(); }

  // Reads exactly n bytes unless the stream ends; returns bytes read, -1 on a
  // decoding error.
  int64_t ReadFully(char* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      int64_t r = ReadSome(out + got, n - got);
      if (r < 0) return -1;
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return static_cast<int64_t>(got);
  }

 private:
  int64_t Fill() {
    if (pos_ < len_) return 1;
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    len_ = static_cast<size_t>(in_.gcount());
    pos_ = 0;
    return len_ > 0 ? 1 : 0;
  }

  int64_t ReadSome(char* out, size_t n) {
    if (kind_ == kPlain) {
      if (Fill() == 0) return 0;
      size_t k = std::min(n, len_ - pos_);
      memcpy(out, buf_.data() + pos_, k);
      pos_ += k;
      return static_cast<int64_t>(k);
    }
    if (kind_ == kGzip) {
      while (true) {
        if (gz_done_) return 0;
        if (z_.avail_in == 0) {
          if (Fill() == 0) return 0;
          z_.next_in = reinterpret_cast<Bytef*>(buf_.data() + pos_);
          z_.avail_in = static_cast<uInt>(len_ - pos_);
          pos_ = len_;
        }
        z_.next_out = reinterpret_cast<Bytef*>(out);
        z_.avail_out = static_cast<uInt>(n);
        int rc = inflate(&z_, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
          gz_done_ = true;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
          return -1;
        size_t produced = n - z_.avail_out;
        if (produced > 0 || gz_done_) return static_cast<int64_t>(produced);
      }
    }
    while (true) {
      if (zin_.pos == zin_.size) {
        if (Fill() == 0) return 0;
        zin_ = ZSTD_inBuffer{buf_.data() + pos_, len_ - pos_, 0};
        pos_ = len_;
      }
      ZSTD_outBuffer zout{out, n, 0};
      size_t rc = ZSTD_decompressStream(dctx_, &zout, &zin_);
      if (ZSTD_isError(rc)) return -1;
      if (zout.pos > 0) return static_cast<int64_t>(zout.pos);
    }
  }

  enum { kPlain, kGzip, kZstd } kind_ = kPlain;
  std::ifstream in_;
  std::string buf_;
  size_t pos_ = 0;
  size_t len_ = 0;
  z_stream z_;
  bool gz_done_ = false;
  ZSTD_DCtx* dctx_ = nullptr;
  ZSTD_inBuffer zin_{nullptr, 0, 0};
};

uint64_t Octal(const char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; ++i)
    v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  return v;
}

// Parses a bare `<value>` document with the simulator's own reader.
absl::StatusOr<SimValue> ParseOva(const std::string& xml) {
  std::string call =
      absl::StrCat("<methodCall><methodName>ova</methodName><params><param>",
                   xml, "</param></params></methodCall>");
  auto parsed = ParseSimCall(call);
  if (!parsed.ok()) return parsed.status();
  if (parsed->params.size() != 1)
    return absl::InvalidArgumentError("bad ova.xml");
  return parsed->params[0];
}

}  // namespace

absl::StatusOr<std::string> SimPool::ImportXvaLocked(const std::string& path,
                                                     const std::string& sr_ref,
                                                     bool force) {
  Decompressor in(path);
  char header[512];
  auto read_member = [&](std::string* name,
                         uint64_t* size) -> absl::StatusOr<bool> {
    int64_t n = in.ReadFully(header, 512);
    if (n < 0) return absl::DataLossError("decompression failed");
    if (n == 0) return false;
    if (n != 512) return absl::DataLossError("truncated tar header");
    bool zero =
        std::all_of(header, header + 512, [](char c) { return c == 0; });
    if (zero) return false;
    *name = std::string(header, strnlen(header, 100));
    *size = Octal(header + 124, 12);
    return true;
  };
  auto read_body = [&](uint64_t size, std::string* out) -> absl::Status {
    out->resize(size);
    if (in.ReadFully(out->data(), size) != static_cast<int64_t>(size)) {
      return absl::DataLossError("truncated tar member");
    }
    uint64_t pad = (512 - size % 512) % 512;
    char skip[512];
    if (pad > 0 && in.ReadFully(skip, pad) != static_cast<int64_t>(pad)) {
      return absl::DataLossError("truncated tar padding");
    }
    return absl::OkStatus();
  };
  std::string name;
  uint64_t size = 0;
  auto first = read_member(&name, &size);
  if (!first.ok()) return first.status();
  if (!*first || name != "ova.xml")
    return absl::InvalidArgumentError(
        "IMPORT_ERROR: ova.xml is not the first member");
  std::string ova_text;
  if (absl::Status s = read_body(size, &ova_text); !s.ok()) return s;
  auto ova = ParseOva(ova_text);
  if (!ova.ok())
    return absl::InvalidArgumentError("IMPORT_ERROR: cannot parse ova.xml");
  const SimValue* objects = ova->Get("objects");
  if (objects == nullptr)
    return absl::InvalidArgumentError("IMPORT_ERROR: ova.xml has no objects");
  // id -> (class, record)
  std::map<std::string, std::pair<std::string, const SimValue*>> by_id;
  for (const SimValue& o : objects->items) {
    const SimValue* cls = o.Get("class");
    const SimValue* id = o.Get("id");
    const SimValue* snap = o.Get("snapshot");
    if (cls == nullptr || id == nullptr || snap == nullptr) continue;
    by_id[id->s] = {cls->s, snap};
  }
  // Disk data: write each VDI's chunks into a sparse file.
  std::map<std::string, std::string> vdi_files;  // id -> path
  std::map<std::string, int> fds;
  std::string data;
  std::string last_chunk;
  uint64_t prev_offset = 0, prev_len = 0;
  int64_t prev_number = -1;
  std::string prev_id;
  while (true) {
    auto more = read_member(&name, &size);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (absl::Status s = read_body(size, &data); !s.ok()) return s;
    const size_t slash = name.find('/');
    if (slash == std::string::npos) continue;
    const std::string id = name.substr(0, slash);
    const std::string rest = name.substr(slash + 1);
    if (absl::EndsWith(rest, ".xxhash") || absl::EndsWith(rest, ".checksum")) {
      const bool xx = absl::EndsWith(rest, ".xxhash");
      std::string expected =
          xx ? absl::StrFormat("%016X",
                               XXH64(last_chunk.data(), last_chunk.size(), 0))
             : [&] {
                 unsigned char md[SHA_DIGEST_LENGTH];
                 SHA1(reinterpret_cast<const unsigned char*>(last_chunk.data()),
                      last_chunk.size(), md);
                 return absl::BytesToHexString(absl::string_view(
                     reinterpret_cast<const char*>(md), sizeof(md)));
               }();
      if (!force && !absl::EqualsIgnoreCase(expected, data)) {
        return absl::DataLossError(
            absl::StrCat("IMPORT_ERROR: checksum mismatch in ", name));
      }
      continue;
    }
    int64_t number = 0;
    if (!absl::SimpleAtoi(rest, &number)) continue;
    // Offsets as XAPI's importer computes them (tolerating keep-alive chunks).
    uint64_t offset;
    if (id != prev_id) {
      offset = static_cast<uint64_t>(number) * (1 << 20);
    } else {
      offset = prev_offset + prev_len +
               static_cast<uint64_t>(number - prev_number - 1) * (1 << 20);
    }
    prev_id = id;
    prev_offset = offset;
    prev_len = size;
    prev_number = number;
    if (fds.count(id) == 0) {
      std::string file =
          absl::StrCat(state_dir_, "/import-", NewUuidLocked(), ".img");
      int fd = open(file.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return absl::InternalError("cannot create import file");
      fds[id] = fd;
      vdi_files[id] = file;
    }
    if (pwrite(fds[id], data.data(), data.size(), static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(data.size())) {
      return absl::InternalError("cannot write import file");
    }
    last_chunk = data;
  }
  // Records.
  Object* vm = nullptr;
  std::map<std::string, Object*> vdis;
  for (const auto& [id, entry] : by_id) {
    if (entry.first != "VDI") continue;
    const SimValue& rec = *entry.second;
    Object* vdi = CreateLocked("VDI");
    if (const SimValue* n = rec.Get("name_label")) vdi->at("name_label") = *n;
    if (const SimValue* n = rec.Get("name_description"))
      vdi->at("name_description") = *n;
    int64_t vsize = 0;
    if (const SimValue* s = rec.Get("virtual_size")) {
      if (s->kind == SimValue::Kind::kInt)
        vsize = s->i;
      else
        (void)absl::SimpleAtoi(s->s, &vsize);
    }
    vdi->at("virtual_size") = SimValue::Int(vsize);
    vdi->at("SR") = SimValue::Str(sr_ref);
    vdi->at("location") = SimValue::Str(vdi->str("uuid"));
    if (Object* sr = GetLocked("SR", sr_ref))
      sr->at("VDIs").items.push_back(SimValue::Str(vdi->ref));
    VdiData d;
    auto file = vdi_files.find(id);
    std::string path_for_disk;
    if (file != vdi_files.end()) {
      path_for_disk = file->second;
    } else {
      path_for_disk =
          absl::StrCat(state_dir_, "/import-", NewUuidLocked(), ".img");
      int fd = open(path_for_disk.c_str(),
                    O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) fds[id + "#empty"] = fd;
    }
    int fd = file != vdi_files.end() ? fds[id] : fds[id + "#empty"];
    if (fd >= 0 && ftruncate(fd, vsize) != 0)
      return absl::InternalError("cannot size import file");
    auto image = FileDisk::Open(path_for_disk);
    if (!image.ok()) return image.status();
    d.image = std::shared_ptr<DiskImage>(std::move(*image));
    vdi_data_[vdi->ref] = std::move(d);
    vdis[id] = vdi;
  }
  for (auto& [unused, fd] : fds) close(fd);
  for (const auto& [id, entry] : by_id) {
    if (entry.first != "VM") continue;
    const SimValue& rec = *entry.second;
    vm = CreateLocked("VM");
    const std::string uuid = vm->str("uuid");
    for (const auto& [field, value] : rec.map) {
      int i = vm->schema->Find(field);
      if (i < 0) continue;
      const FieldSchema& f = vm->schema->fields[static_cast<size_t>(i)];
      if (f.kind == FieldKind::kRef ||
          (f.kind == FieldKind::kSet && f.value_kind == FieldKind::kRef)) {
        continue;
      }
      SimValue v = value;
      if (f.kind == FieldKind::kInt && v.kind == SimValue::Kind::kString) {
        int64_t n = 0;
        (void)absl::SimpleAtoi(v.s, &n);
        v = SimValue::Int(n);
      }
      if (v.kind == f.default_value.kind)
        vm->fields[static_cast<size_t>(i)] = v;
    }
    vm->at("uuid") = SimValue::Str(uuid);
    vm->at("power_state") = SimValue::Str("Halted");
    vm->at("resident_on") = SimValue::Str("OpaqueRef:NULL");
    vm->at("domid") = SimValue::Int(-1);
    Object* metrics = CreateLocked("VM_metrics");
    vm->at("metrics") = SimValue::Str(metrics->ref);
    for (const auto& [vbd_id, vbd_entry] : by_id) {
      if (vbd_entry.first != "VBD") continue;
      const SimValue& vrec = *vbd_entry.second;
      const SimValue* owner = vrec.Get("VM");
      if (owner == nullptr || owner->s != id) continue;
      Object* vbd = CreateLocked("VBD");
      for (const char* f :
           {"device", "userdevice", "bootable", "mode", "type", "empty"}) {
        if (const SimValue* v = vrec.Get(f)) {
          if (v->kind == vbd->at(f).kind) vbd->at(f) = *v;
        }
      }
      vbd->at("VM") = SimValue::Str(vm->ref);
      const SimValue* vdi_id = vrec.Get("VDI");
      auto it = vdi_id != nullptr ? vdis.find(vdi_id->s) : vdis.end();
      if (it != vdis.end()) {
        vbd->at("VDI") = SimValue::Str(it->second->ref);
        it->second->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
      } else {
        vbd->at("VDI") = SimValue::Str("OpaqueRef:NULL");
      }
      vm->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
    }
    Object* network = AllLocked("network").front();
    for (const auto& [vif_id, vif_entry] : by_id) {
      if (vif_entry.first != "VIF") continue;
      const SimValue& frec = *vif_entry.second;
      const SimValue* owner = frec.Get("VM");
      if (owner == nullptr || owner->s != id) continue;
      Object* vif = CreateLocked("VIF");
      if (const SimValue* v = frec.Get("device")) vif->at("device") = *v;
      if (const SimValue* v = frec.Get("MAC")) vif->at("MAC") = *v;
      vif->at("VM") = SimValue::Str(vm->ref);
      vif->at("network") = SimValue::Str(network->ref);
      network->at("VIFs").items.push_back(SimValue::Str(vif->ref));
      vm->at("VIFs").items.push_back(SimValue::Str(vif->ref));
    }
    break;
  }
  if (vm == nullptr)
    return absl::InvalidArgumentError("IMPORT_ERROR: no VM in ova.xml");
  return vm->ref;
}

HttpResponse SimPool::ImportLocked(HttpRequest& r) {
  HttpResponse out;
  const std::string task = TaskForRequestLocked(r, "VM import");
  if (r.chunked) {
    // XAPI answers with 403 headers and then its 500 page.
    std::vector<std::string> error = {"IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"};
    FailTaskLocked(task, error);
    HttpResponse page = ErrorPageLocked(403, error);
    return page;
  }
  if (!AuthenticateHttpLocked(r, task, &out)) return out;
  std::string sr = Param(r, "sr_id");
  if (sr.empty() && !Param(r, "sr_uuid").empty()) {
    if (Object* o = ByUuidLocked("SR", Param(r, "sr_uuid"))) sr = o->ref;
  }
  if (sr.empty()) sr = GetLocked("pool", pool_ref_)->str("default_SR");
  if (GetLocked("SR", sr) == nullptr) {
    std::vector<std::string> error = {"DEFAULT_SR_NOT_FOUND", sr};
    FailTaskLocked(task, error);
    return ErrorPageLocked(500, error);
  }
  if (RedirectLocked(r, {sr}, task, &out)) return out;
  auto vm = ImportXvaLocked(r.body_path, sr, Param(r, "force") == "true");
  if (!vm.ok()) {
    absl::string_view message = vm.status().message();
    absl::ConsumePrefix(&message, "IMPORT_ERROR: ");
    std::vector<std::string> error = {"IMPORT_ERROR", std::string(message)};
    FailTaskLocked(task, error);
    HttpResponse page = ErrorPageLocked(500, error);
    return page;
  }
  if (Object* t = GetLocked("task", task)) {
    t->at("status") = SimValue::Str("success");
    t->at("progress") = SimValue::Float(1);
    t->at("finished") = SimValue::Time(NowLocked());
    t->at("result") = SimValue::Str(XapiValue(SimValue::StrSet({*vm})));
  }
  out.status = 200;
  out.headers.emplace_back("task-id", task);
  return out;
}

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
  absl::MutexLock lock(&mu_);
  Object* here = HostByNameLocked(r.host);
  if (here != nullptr && !HostLiveLocked(*here)) {
    HttpResponse dead;
    dead.drop_connection = true;  // a dead host answers nothing
    return dead;
  }
  auto is = [&](absl::string_view handler) {
    return r.path == handler || r.path == absl::StrCat(handler, "/");
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
  } else if (r.method == "PUT" && is("/import")) {
    out = ImportLocked(r);
  } else {
    out.status = 404;
    out.headers.emplace_back("content-type", "text/html");
    out.body =
        "<html><body><h1>HTTP 404 not found</h1>The requested URL was not "
        "found</body></html>";
  }
  out.log_index = r.log_index;
  RequestLogEntry& e = request_log_[static_cast<size_t>(r.log_index)];
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
  return out;
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
      if (f.kind() == Fault::KIND_UNSPECIFIED)
        return TextResponse(400, "bad fault: kind is required\n");
      faults_.push_back(f);
      fault_fired_.push_back(0);
      RefreshLivenessLocked();
      return TextResponse(200, "added\n");
    }
  }
  return TextResponse(404, "unknown control path\n");
}

}  // namespace vmb::sim
