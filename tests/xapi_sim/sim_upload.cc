// SPDX-License-Identifier: Apache-2.0
// XAPI's upload handlers, as the simulator serves them: PUT /import (an XVA
// read as it arrives, the records made at the end) and PUT /import_raw_vdi
// (raw or VHD into an existing VDI), with the faults the downloads have.
// The body reaches them through UploadSink, from sim_http.cc's dispatch.
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

#include "tests/xapi_sim/sim_http_util.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {

// ---- uploads
// -------------------------------------------------------------------

// The part both upload handlers share: counts the body, applies the stream
// faults at their offsets, watches the task for cancellation, and hands the
// bytes on to Consume(). Runs without the pool's lock, taking it briefly for
// the task and the records.
class SimPool::UploadBase : public UploadSink {
 public:
  UploadBase(SimPool* pool, const std::string& task, const HttpRequest& r,
             StreamFaults faults, std::vector<std::string> client_gone_error)
      : pool_(pool),
        task_(task),
        fd_(r.socket_fd),
        log_index_(r.log_index),
        content_length_(r.content_length),
        faults_(std::move(faults)),
        client_gone_error_(std::move(client_gone_error)) {}

  bool Write(const char* data, size_t size) final {
    size_t pos = 0;
    while (pos < size) {
      if (!error_.empty()) {  // failed: the rest is read and dropped
        received_ += size - pos;
        return true;
      }
      if (pool_->shutting_down()) return false;
      if (faults_.stall && received_ == faults_.stall_at) {
        faults_.stall = false;
        pool_->UploadProgress(task_, log_index_, received_, content_length_);
        bool client_gone = false;
        if (!WaitOutStall(pool_, log_index_, fd_, faults_.stall_ms,
                          &client_gone)) {
          if (client_gone) outcome_ = "client closed during stall";
          return false;
        }
        continue;
      }
      if (faults_.cut && received_ == faults_.cut_at) {
        cut_ = true;
        return false;
      }
      if (faults_.embedded && received_ == faults_.embedded_at) {
        faults_.embedded = false;
        Fail(faults_.embedded_error, "embedded 500");
        continue;
      }
      if (received_ == 0 || received_ - last_check_ >= (4u << 20)) {
        last_check_ = received_;
        pool_->UploadProgress(task_, log_index_, received_, content_length_);
        if (pool_->TaskCancelling(task_)) {
          Fail({"TASK_CANCELLED", task_}, "cancelled");
          continue;
        }
      }
      size_t limit = size - pos;
      auto bound = [&](bool armed, uint64_t at) {
        if (armed && at > received_)
          limit = std::min<uint64_t>(limit, at - received_);
      };
      bound(faults_.stall, faults_.stall_at);
      bound(faults_.cut, faults_.cut_at);
      bound(faults_.embedded, faults_.embedded_at);
      absl::string_view piece(data + pos, limit);
      std::string flipped;
      if (faults_.corrupt && faults_.corrupt_at >= received_ &&
          faults_.corrupt_at < received_ + limit) {
        flipped.assign(piece.data(), piece.size());
        flipped[faults_.corrupt_at - received_] ^= 0x5a;
        piece = flipped;
        faults_.corrupt = false;
      }
      absl::Status consumed = Consume(piece);
      received_ += limit;
      pos += limit;
      if (!consumed.ok()) Fail(ErrorFor(consumed), "embedded 500");
    }
    return true;
  }

  HttpResponse Finish() final {
    if (error_.empty() && pool_->TaskCancelling(task_))
      Fail({"TASK_CANCELLED", task_}, "cancelled");
    if (error_.empty()) {
      if (absl::Status s = Prepare(); !s.ok())
        Fail(ErrorFor(s), "embedded 500");
    }
    // XAPI sends these headers before it reads the body, and writes an error
    // met on the way as its 500 response after them (7.6).
    HttpResponse reply;
    reply.status = 200;
    reply.content_length = false;
    reply.headers.emplace_back("task-id", task_);
    reply.headers.emplace_back("content-type", "application/octet-stream");
    absl::MutexLock lock(&pool_->mu_);
    std::vector<std::string> error = error_;
    std::string outcome = outcome_.empty() ? "ok" : outcome_;
    std::string result;
    if (error.empty() && !faults_.task_error.empty()) {
      error = faults_.task_error;
      outcome = "task failed after body";
    } else if (error.empty()) {
      absl::StatusOr<std::string> committed = CommitLocked();
      if (committed.ok()) {
        result = *std::move(committed);
      } else {
        error = ErrorFor(committed.status());
        outcome = "embedded 500";
      }
    }
    if (!error.empty() && outcome != "task failed after body")
      reply.body = EmbeddedErrorResponse(error);
    pool_->FinishUploadLocked(task_, log_index_, received_, reply.status,
                              reply.body.size(), error, outcome, result);
    finished_ = true;
    return reply;
  }

  void Abort() final {
    if (finished_) return;
    finished_ = true;
    std::vector<std::string> error = client_gone_error_;
    std::string outcome = outcome_.empty() ? "client closed" : outcome_;
    if (cut_) {
      error = faults_.cut_error;
      outcome = "cut";
    } else if (!error_.empty()) {
      error = error_;
    }
    absl::MutexLock lock(&pool_->mu_);
    pool_->FinishUploadLocked(task_, log_index_, received_, 0, 0, error,
                              outcome, "");
  }

 protected:
  // Takes the next body bytes (after CORRUPT). An error fails the upload
  // (ErrorFor() says with what); the rest of the body is read and dropped.
  virtual absl::Status Consume(absl::string_view data) = 0;
  // The body has ended, without error so far: the last checks.
  virtual absl::Status Prepare() = 0;
  // Makes the upload's effect visible; returns the task's result.
  virtual absl::StatusOr<std::string> CommitLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_->mu_) = 0;
  // The XAPI error for a failure of Consume(), Prepare() or CommitLocked().
  virtual std::vector<std::string> ErrorFor(const absl::Status& s) = 0;

  SimPool* const pool_;

 private:
  void Fail(std::vector<std::string> error, const std::string& outcome) {
    error_ = std::move(error);
    outcome_ = outcome;
  }

  const std::string task_;
  const int fd_;
  const int log_index_;
  const int64_t content_length_;
  StreamFaults faults_;
  const std::vector<std::string> client_gone_error_;
  uint64_t received_ = 0;
  uint64_t last_check_ = 0;
  bool cut_ = false;
  bool finished_ = false;
  std::vector<std::string> error_;
  std::string outcome_;
};

// PUT /import: the XVA is read as it arrives; the records are made at the
// end.
class SimPool::ImportSink final : public SimPool::UploadBase {
 public:
  ImportSink(SimPool* pool, const std::string& task, const HttpRequest& r,
             StreamFaults faults, std::string sr, bool force)
      : UploadBase(pool, task, r, std::move(faults),
                   {"IMPORT_ERROR_PREMATURE_EOF"}),
        importer_(pool->state_dir_, force),
        sr_(std::move(sr)) {}

 protected:
  absl::Status Consume(absl::string_view data) override {
    return importer_.Feed(data);
  }
  absl::Status Prepare() override { return importer_.Finish(); }
  absl::StatusOr<std::string> CommitLocked() override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_->mu_) {
    auto disks = importer_.TakeDisks();
    if (!disks.ok()) return disks.status();
    auto vm = pool_->CreateImportedVmLocked(importer_, *std::move(disks), sr_);
    if (!vm.ok()) return vm.status();
    return XapiValue(SimValue::StrSet({*vm}));
  }
  std::vector<std::string> ErrorFor(const absl::Status& s) override {
    return {"IMPORT_ERROR", std::string(s.message())};
  }

 private:
  XvaImporter importer_;
  const std::string sr_;
};

// PUT /import_raw_vdi: the bytes go to a file of their own, which becomes the
// start of the VDI's content when the upload succeeds.
class SimPool::RawVdiSink final : public SimPool::UploadBase {
 public:
  RawVdiSink(SimPool* pool, const std::string& task, const HttpRequest& r,
             StreamFaults faults, std::string vdi, uint64_t size,
             std::string path, int fd)
      : UploadBase(pool, task, r, std::move(faults),
                   {"VDI_IO_ERROR", "Device I/O errors"}),
        vdi_(std::move(vdi)),
        size_(size),
        path_(std::move(path)),
        fd_(fd) {}
  ~RawVdiSink() override {
    close(fd_);
    if (!kept_) unlink(path_.c_str());
  }

 protected:
  absl::Status Consume(absl::string_view data) override {
    // Past the end of the disk vhd-tool's write fails.
    if (data.size() > size_ - written_)
      return absl::OutOfRangeError("write past the end of the disk");
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = pwrite(fd_, data.data() + done, data.size() - done,
                               static_cast<off_t>(written_));
      if (n <= 0) return absl::InternalError("cannot write upload file");
      done += static_cast<size_t>(n);
      written_ += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }
  absl::Status Prepare() override { return absl::OkStatus(); }
  absl::StatusOr<std::string> CommitLocked() override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_->mu_) {
    auto it = pool_->vdi_data_.find(vdi_);
    if (it == pool_->vdi_data_.end() || it->second.image == nullptr)
      return absl::NotFoundError("the VDI is gone");
    if (written_ > 0) {
      auto top = FileDisk::Open(path_);
      if (!top.ok()) return top.status();
      VdiData& data = it->second;
      // Snapshots and running streams keep the bytes they had.
      data.image = written_ == size_
                       ? std::shared_ptr<DiskImage>(*std::move(top))
                       : std::make_shared<PrefixOverlayDisk>(data.image,
                                                             *std::move(top));
      data.seed = 0;
      kept_ = true;
    }
    return XapiValue(SimValue::Str(vdi_));
  }
  std::vector<std::string> ErrorFor(const absl::Status&) override {
    return {"VDI_IO_ERROR", "Device I/O errors"};
  }

 private:
  const std::string vdi_;
  const uint64_t size_;
  const std::string path_;
  const int fd_;
  uint64_t written_ = 0;
  bool kept_ = false;
};

void SimPool::FinishUploadLocked(const std::string& task, int log_index,
                                 uint64_t received, int status,
                                 uint64_t bytes_sent,
                                 const std::vector<std::string>& error,
                                 const std::string& outcome,
                                 const std::string& result) {
  EndTransferTaskLocked(task, error, result);
  if (log_index >= 0 && static_cast<size_t>(log_index) < request_log_.size()) {
    RequestLogEntry& e = request_log_[static_cast<size_t>(log_index)];
    e.set_status(status);
    e.set_bytes_sent(bytes_sent);
    e.set_bytes_received(received);
    e.set_outcome(outcome);
    e.set_finished(absl::ToDoubleSeconds(absl::Now() - started_));
  }
}

absl::StatusOr<std::string> SimPool::CreateImportedVmLocked(
    const XvaImporter& xva,
    std::map<std::string, std::shared_ptr<DiskImage>> disks,
    const std::string& sr_ref) {
  const auto& objects = xva.objects();
  // The first VM object (by id, compared as strings) is imported.
  auto first_vm = std::find_if(objects.begin(), objects.end(),
                               [](auto& o) { return o.second.first == "VM"; });
  if (first_vm == objects.end())
    return absl::InvalidArgumentError("no VM in ova.xml");
  std::map<std::string, Object*> vdis;
  for (const auto& [id, entry] : objects) {
    if (entry.first != "VDI") continue;
    const SimValue& rec = *entry.second;
    Object* vdi = CreateLocked("VDI");
    if (const SimValue* n = rec.Get("name_label")) vdi->at("name_label") = *n;
    if (const SimValue* n = rec.Get("name_description"))
      vdi->at("name_description") = *n;
    const std::shared_ptr<DiskImage>& image = disks[id];
    vdi->at("virtual_size") = SimValue::Int(
        static_cast<int64_t>(image != nullptr ? image->size() : 0));
    vdi->at("SR") = SimValue::Str(sr_ref);
    vdi->at("location") = SimValue::Str(vdi->str("uuid"));
    if (Object* sr = GetLocked("SR", sr_ref))
      sr->at("VDIs").items.push_back(SimValue::Str(vdi->ref));
    VdiData d;
    d.image = image;
    vdi_data_[vdi->ref] = std::move(d);
    vdis[id] = vdi;
  }
  const std::string& id = first_vm->first;
  const SimValue& rec = *first_vm->second.second;
  Object* vm = CreateLocked("VM");
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
    if (v.kind == f.default_value.kind) vm->fields[static_cast<size_t>(i)] = v;
  }
  vm->at("uuid") = SimValue::Str(uuid);
  vm->at("power_state") = SimValue::Str("Halted");
  vm->at("resident_on") = SimValue::Str("OpaqueRef:NULL");
  vm->at("domid") = SimValue::Int(-1);
  Object* metrics = CreateLocked("VM_metrics");
  vm->at("metrics") = SimValue::Str(metrics->ref);
  for (const auto& [vbd_id, vbd_entry] : objects) {
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
  for (const auto& [vif_id, vif_entry] : objects) {
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
  return vm->ref;
}

UploadStart SimPool::ImportStartLocked(HttpRequest& r) {
  UploadStart start;
  HttpResponse& out = start.response;
  const std::string task = TaskForRequestLocked(r, "VM import");
  if (r.chunked) {
    // XAPI answers with 403 headers and then its 500 page.
    std::vector<std::string> error = {"IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"};
    FailTaskLocked(task, error);
    out = ErrorPageLocked(403, error);
    return start;
  }
  if (!AuthenticateHttpLocked(r, task, &out)) return start;
  std::string sr = Param(r, "sr_id");
  if (sr.empty() && !Param(r, "sr_uuid").empty()) {
    if (Object* o = ByUuidLocked("SR", Param(r, "sr_uuid"))) sr = o->ref;
  }
  if (sr.empty()) sr = GetLocked("pool", pool_ref_)->str("default_SR");
  if (GetLocked("SR", sr) == nullptr) {
    std::vector<std::string> error = {"DEFAULT_SR_NOT_FOUND", sr};
    FailTaskLocked(task, error);
    out = ErrorPageLocked(500, error);
    return start;
  }
  if (RedirectLocked(r, {sr}, task, &out)) return start;
  // The VM being imported is in the body: faults with a `vm` never match.
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, {})) {
    std::vector<std::string> error = FaultErrorLocked(*f, "");
    FailTaskLocked(task, error);
    out = ErrorPageLocked(500, error);
    return start;
  }
  StreamFaults faults =
      MatchStreamFaultsLocked(r, {}, "", {"VDI_IO_ERROR", "Device I/O errors"});
  task_streaming_[task] = true;
  start.sink = std::make_unique<ImportSink>(this, task, r, std::move(faults),
                                            sr, Param(r, "force") == "true");
  return start;
}

UploadStart SimPool::ImportRawVdiStartLocked(HttpRequest& r) {
  UploadStart start;
  HttpResponse& out = start.response;
  const std::string which = Param(r, "vdi");
  Object* vdi = GetLocked("VDI", which);
  if (vdi == nullptr) vdi = ByUuidLocked("VDI", which);
  const std::string task = TaskForRequestLocked(r, "Importing raw VDI");
  if (!AuthenticateHttpLocked(r, task, &out)) return start;
  auto fail = [&](int status, const std::vector<std::string>& error) {
    mu_.AssertHeld();
    FailTaskLocked(task, error);
    out = ErrorPageLocked(status, error);
    return std::move(start);
  };
  // XAPI's refusals of the request's form: headers only, no page.
  auto refuse = [&](int status, const std::vector<std::string>& error) {
    mu_.AssertHeld();
    FailTaskLocked(task, error);
    out.status = status;
    out.http10 = status == 404;
    out.content_length = false;
    out.headers.emplace_back("Cache-Control", "no-cache, no-store");
    return std::move(start);
  };
  if (vdi == nullptr && which.empty()) {
    if (!Param(r, "sr_id").empty() || !Param(r, "sr_uuid").empty()) {
      return refuse(400, {"INTERNAL_ERROR",
                          "importing into a new VDI (sr_id without vdi) is "
                          "not simulated"});
    }
    return refuse(400, {"VDI_MISSING"});
  }
  if (vdi == nullptr) return fail(500, {"HANDLE_INVALID", "VDI", which});
  if (RedirectLocked(r, {vdi->str("SR")}, task, &out)) return start;
  const std::string format_param = Param(r, "format");
  std::string format = absl::AsciiStrToLower(format_param);
  if (format.empty()) format = "raw";
  if (format != "raw" && format != "vhd" && format != "tar" &&
      format != "qcow2") {
    return refuse(
        404, {"INTERNAL_ERROR", absl::StrCat("Unknown format ", format_param)});
  }
  // XAPI's own chunk framing: a `chunked` flag in the query or a cookie.
  const bool chunked_flag =
      r.query.count("chunked") != 0 || r.cookies.count("chunked") != 0;
  if (format != "raw" && chunked_flag)
    return refuse(404, {"INTERNAL_ERROR", "Cannot handle chunked VHD"});
  if (r.chunked)
    return refuse(404, {"INTERNAL_ERROR", "Cannot handle encoding: chunked"});
  if (format != "raw") {
    return fail(500, {"INTERNAL_ERROR",
                      absl::StrCat("format ", format, " is not simulated")});
  }
  if (chunked_flag) {
    return fail(500, {"INTERNAL_ERROR",
                      "the chunked protocol (chunked=) is not simulated"});
  }
  auto data = vdi_data_.find(vdi->ref);
  if (data == vdi_data_.end() || data->second.image == nullptr)
    return fail(500, {"VDI_MISSING", vdi->str("SR"), vdi->ref});
  const std::vector<std::string> ids = VdiVmIdentitiesLocked(*vdi);
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, ids)) {
    return fail(500, FaultErrorLocked(*f, vdi->ref));
  }
  std::string path = absl::StrCat(state_dir_, "/upload-XXXXXX");
  const int fd = mkstemp(path.data());
  if (fd < 0) return fail(500, {"INTERNAL_ERROR", "cannot create a file"});
  StreamFaults faults = MatchStreamFaultsLocked(
      r, ids, vdi->str("uuid"), {"VDI_IO_ERROR", "Device I/O errors"});
  task_streaming_[task] = true;
  start.sink =
      std::make_unique<RawVdiSink>(this, task, r, std::move(faults), vdi->ref,
                                   data->second.image->size(), path, fd);
  return start;
}

std::optional<UploadStart> SimPool::StartUpload(HttpRequest& r) {
  auto is = [&](absl::string_view handler) {
    return r.path == handler || r.path == absl::StrCat(handler, "/");
  };
  if (r.method != "PUT") return std::nullopt;
  if (is("/import")) {
    r.handler = "/import";
  } else if (is("/import_raw_vdi")) {
    r.handler = "/import_raw_vdi";
  } else {
    return std::nullopt;
  }
  absl::MutexLock lock(&mu_);
  UploadStart start;
  Object* here = HostByNameLocked(r.host);
  if (here != nullptr && !HostLiveLocked(*here)) {
    start.response.drop_connection = true;  // a dead host answers nothing
    return start;
  }
  r.log_index = LogRequestLocked(r);
  start = r.handler == "/import" ? ImportStartLocked(r)
                                 : ImportRawVdiStartLocked(r);
  if (start.sink == nullptr) LogReplyLocked(start.response, r.log_index);
  return start;
}

}  // namespace vmb::sim
