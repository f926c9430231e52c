// SPDX-License-Identifier: Apache-2.0
// XAPI's upload handlers, as the simulator serves them: PUT /import (an XVA
// read as it arrives, the records made at the end), PUT /import_metadata
// (ova.xml alone: the records, with disks that are already in the pool) and
// PUT /import_raw_vdi (raw or VHD into an existing VDI), with the faults the
// downloads have.
// The body reaches them through UploadSink, from sim_http.cc's dispatch.
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#include "tests/xapi_sim/sim_http_util.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {

#define VMB_SIM_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    if (absl::Status _s = (expr); !_s.ok()) return _s; \
  } while (0)

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
  // `options.vdi_map` set (even empty): /import_metadata, the disks are
  // found rather than made.
  ImportSink(SimPool* pool, const std::string& task, const HttpRequest& r,
             StreamFaults faults, ImportOptions options, bool metadata)
      : UploadBase(pool, task, r, std::move(faults),
                   {"IMPORT_ERROR_PREMATURE_EOF"}),
        importer_(pool->state_dir_, options.force),
        options_(std::move(options)),
        metadata_(metadata) {}

 protected:
  absl::Status Consume(absl::string_view data) override {
    return importer_.Feed(data);
  }
  absl::Status Prepare() override { return importer_.Finish(); }
  absl::StatusOr<std::string> CommitLocked() override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_->mu_) {
    if (metadata_)
      return pool_->CreateImportedVmLocked(importer_, nullptr, options_);
    auto disks = importer_.TakeDisks();
    if (!disks.ok()) return disks.status();
    return pool_->CreateImportedVmLocked(importer_, &*disks, options_);
  }
  std::vector<std::string> ErrorFor(const absl::Status& s) override {
    // A XenAPI error of the records' creation, its parts joined by \x1f.
    if (s.code() == absl::StatusCode::kFailedPrecondition)
      return absl::StrSplit(s.message(), '\x1f');
    return {"IMPORT_ERROR", std::string(s.message())};
  }

 private:
  XvaImporter importer_;
  const ImportOptions options_;
  const bool metadata_;
};

// A dynamic VHD as it arrives (format=vhd): the footer's copy, the header,
// the BAT, then the blocks (each a sector bitmap and its data) in whatever
// order the file has them, and the footer. The data of every allocated
// block is handed on at its place on the disk; the bitmaps are not looked
// at (vhd-tool's writers fill whole blocks). Written for the simulator; it
// shares no code with the client's verifier.
class VhdUploadReader {
 public:
  using Write = std::function<absl::Status(uint64_t offset, absl::string_view)>;
  explicit VhdUploadReader(uint64_t disk_size) : disk_size_(disk_size) {}

  absl::Status Feed(absl::string_view data, const Write& write) {
    while (!data.empty()) {
      if (!parsed_) {
        const size_t want = static_cast<size_t>(HeadBytes() - head_.size());
        const size_t n = std::min(want, data.size());
        head_.append(data.data(), n);
        data.remove_prefix(n);
        pos_ += n;
        if (head_.size() == HeadBytes()) {
          if (absl::Status s = ParseHead(); !s.ok()) return s;
        }
        continue;
      }
      // Skip to the next block's data, or through it.
      while (next_ < blocks_.size() &&
             pos_ >= blocks_[next_].data_start + block_size_) {
        ++next_;
      }
      if (next_ == blocks_.size()) {  // the footer, and nothing after it
        pos_ += data.size();
        return absl::OkStatus();
      }
      const Block& b = blocks_[next_];
      if (pos_ < b.data_start) {
        if (pos_ < b.data_start - bitmap_bytes_ && pos_ < max_seen_) {
          return absl::InvalidArgumentError("VHD blocks overlap");
        }
        const size_t n = static_cast<size_t>(
            std::min<uint64_t>(data.size(), b.data_start - pos_));
        data.remove_prefix(n);
        pos_ += n;
        continue;
      }
      const uint64_t in_block = pos_ - b.data_start;
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(data.size(), block_size_ - in_block));
      const uint64_t at = b.index * block_size_ + in_block;
      if (at < disk_size_) {
        const size_t keep =
            static_cast<size_t>(std::min<uint64_t>(n, disk_size_ - at));
        if (absl::Status s = write(at, data.substr(0, keep)); !s.ok()) return s;
      }
      data.remove_prefix(n);
      pos_ += n;
      max_seen_ = std::max(max_seen_, pos_);
    }
    return absl::OkStatus();
  }

  // The body ended: every block and the footer must have come.
  absl::Status Finish() const {
    if (!parsed_) return absl::InvalidArgumentError("VHD too short");
    const uint64_t end = blocks_.empty()
                             ? head_.size()
                             : blocks_.back().data_start + block_size_;
    if (pos_ < end + 512) {
      return absl::InvalidArgumentError(absl::StrCat(
          "VHD truncated at ", pos_, " bytes (", end + 512, " expected)"));
    }
    return absl::OkStatus();
  }

 private:
  struct Block {
    uint64_t data_start;  // file offset of the block's data
    uint64_t index;
  };
  static uint64_t Be(absl::string_view s, size_t at, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
      v = (v << 8) | static_cast<unsigned char>(s[at + i]);
    return v;
  }
  // Footer and header first; then up to the BAT's end.
  uint64_t HeadBytes() const { return bat_end_ == 0 ? 1536 : bat_end_; }

  absl::Status ParseHead() {
    if (bat_end_ == 0) {
      if (head_.compare(0, 8, "conectix") != 0)
        return absl::InvalidArgumentError("not a VHD: no footer cookie");
      if (Be(head_, 60, 4) != 3)
        return absl::InvalidArgumentError("not a dynamic VHD");
      if (head_.compare(512, 8, "cxsparse") != 0)
        return absl::InvalidArgumentError("VHD: no dynamic header");
      const uint64_t size = Be(head_, 48, 8);
      if (size > disk_size_) {
        return absl::InvalidArgumentError(
            absl::StrCat("VHD of ", size, " bytes is larger than the disk (",
                         disk_size_, ")"));
      }
      bat_offset_ = Be(head_, 512 + 16, 8);
      entries_ = Be(head_, 512 + 28, 4);
      block_size_ = Be(head_, 512 + 32, 4);
      if (block_size_ == 0 || block_size_ % 512 != 0 || bat_offset_ < 1536 ||
          entries_ > (uint64_t{1} << 24)) {
        return absl::InvalidArgumentError("VHD header out of range");
      }
      bitmap_bytes_ = ((block_size_ / 512 / 8) + 511) / 512 * 512;
      bat_end_ = bat_offset_ + entries_ * 4;
      if (head_.size() < bat_end_) return absl::OkStatus();  // more to read
    }
    for (uint64_t i = 0; i < entries_; ++i) {
      const uint64_t sector = Be(head_, bat_offset_ + i * 4, 4);
      if (sector == 0xffffffffu) continue;
      blocks_.push_back(Block{sector * 512 + bitmap_bytes_, i});
    }
    std::sort(blocks_.begin(), blocks_.end(),
              [](const Block& a, const Block& b) {
                return a.data_start < b.data_start;
              });
    for (const Block& b : blocks_) {
      if (b.data_start - bitmap_bytes_ < bat_end_)
        return absl::InvalidArgumentError("VHD block inside the BAT");
    }
    parsed_ = true;
    return absl::OkStatus();
  }

  const uint64_t disk_size_;
  std::string head_;
  bool parsed_ = false;
  uint64_t pos_ = 0;
  uint64_t max_seen_ = 0;
  uint64_t bat_offset_ = 0, bat_end_ = 0, entries_ = 0, block_size_ = 0;
  uint64_t bitmap_bytes_ = 0;
  std::vector<Block> blocks_;
  size_t next_ = 0;
};

// PUT /import_raw_vdi: the bytes go to a file of their own, which becomes the
// start of the VDI's content when the upload succeeds.
class SimPool::RawVdiSink final : public SimPool::UploadBase {
 public:
  // `vhd`: the body is a dynamic VHD, whose blocks land at their places
  // (the rest of the disk reads as zeros: XAPI keeps what was there, which
  // for a new VDI is the same); else raw bytes from the disk's start.
  RawVdiSink(SimPool* pool, const std::string& task, const HttpRequest& r,
             StreamFaults faults, std::string vdi, uint64_t size,
             std::string path, int fd, bool vhd)
      : UploadBase(pool, task, r, std::move(faults),
                   {"VDI_IO_ERROR", "Device I/O errors"}),
        vdi_(std::move(vdi)),
        size_(size),
        path_(std::move(path)),
        fd_(fd) {
    if (vhd) vhd_ = std::make_unique<VhdUploadReader>(size);
  }
  ~RawVdiSink() override {
    close(fd_);
    if (!kept_) unlink(path_.c_str());
  }

 protected:
  absl::Status Consume(absl::string_view data) override {
    if (vhd_ != nullptr) {
      return vhd_->Feed(data, [this](uint64_t at, absl::string_view piece) {
        return WriteAt(at, piece);
      });
    }
    // Past the end of the disk vhd-tool's write fails.
    if (data.size() > size_ - written_)
      return absl::OutOfRangeError("write past the end of the disk");
    VMB_SIM_RETURN_IF_ERROR(WriteAt(written_, data));
    written_ += data.size();
    return absl::OkStatus();
  }
  absl::Status Prepare() override {
    if (vhd_ == nullptr) return absl::OkStatus();
    VMB_SIM_RETURN_IF_ERROR(vhd_->Finish());
    // The whole disk, zeros where no block came.
    if (ftruncate(fd_, static_cast<off_t>(size_)) != 0)
      return absl::InternalError("cannot size upload file");
    written_ = size_;
    return absl::OkStatus();
  }
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
  std::unique_ptr<VhdUploadReader> vhd_;
  uint64_t written_ = 0;
  bool kept_ = false;

  absl::Status WriteAt(uint64_t at, absl::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = pwrite(fd_, data.data() + done, data.size() - done,
                               static_cast<off_t>(at + done));
      if (n <= 0) return absl::InternalError("cannot write upload file");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }
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
    std::map<std::string, std::shared_ptr<DiskImage>>* disks,
    const ImportOptions& options) {
  const auto& objects = xva.objects();
  auto import_error = [](std::vector<std::string> e) {
    return absl::FailedPreconditionError(absl::StrJoin(e, "\x1f"));
  };
  std::vector<std::string> vm_ids;
  for (const auto& [id, entry] : objects) {
    if (entry.first == "VM") vm_ids.push_back(id);
  }
  if (vm_ids.empty()) return absl::InvalidArgumentError("no VM in ova.xml");
  // Full restore keeps the VMs' uuids: an existing VM of that uuid must be
  // halted and older, and XAPI would then replace it.
  if (options.restore) {
    for (const std::string& id : vm_ids) {
      const SimValue* uuid = objects.at(id).second->Get("uuid");
      Object* existing =
          uuid != nullptr ? ByUuidLocked("VM", uuid->s) : nullptr;
      if (existing == nullptr) continue;
      if (existing->str("power_state") != "Halted") {
        return import_error(
            {"VM_BAD_POWER_STATE", existing->ref, "halted",
             absl::AsciiStrToLower(existing->str("power_state"))});
      }
      if (!options.force) {
        return import_error(
            {"VM_TO_IMPORT_IS_NOT_NEWER_VERSION", existing->ref, "0", "0"});
      }
      return import_error(
          {"INTERNAL_ERROR", "replacing an existing VM is not simulated"});
    }
  }
  // SRs by uuid (metadata import looks its disks up there).
  std::map<std::string, std::string> sr_uuid_of;  // export id -> SR uuid
  for (const auto& [id, entry] : objects) {
    if (entry.first != "SR") continue;
    if (const SimValue* u = entry.second->Get("uuid")) sr_uuid_of[id] = u->s;
  }
  // Disks: made from the upload (full import), or found (metadata import):
  // by the vdi:<uuid>=<uuid> map, then by SR and location.
  std::map<std::string, Object*> vdis;
  for (const auto& [id, entry] : objects) {
    if (entry.first != "VDI") continue;
    const SimValue& rec = *entry.second;
    if (disks == nullptr) {
      const SimValue* uuid = rec.Get("uuid");
      Object* found = nullptr;
      if (uuid != nullptr) {
        auto mapped = options.vdi_map.find(uuid->s);
        if (mapped != options.vdi_map.end())
          found = ByUuidLocked("VDI", mapped->second);
      }
      const SimValue* location = rec.Get("location");
      const SimValue* sr_id = rec.Get("SR");
      auto sr_uuid =
          sr_id != nullptr ? sr_uuid_of.find(sr_id->s) : sr_uuid_of.end();
      Object* sr = sr_uuid != sr_uuid_of.end()
                       ? ByUuidLocked("SR", sr_uuid->second)
                       : nullptr;
      if (found == nullptr && sr != nullptr && location != nullptr) {
        for (Object* v : AllLocked("VDI")) {
          if (v->str("SR") == sr->ref && v->str("location") == location->s) {
            found = v;
            break;
          }
        }
      }
      if (found == nullptr) {
        if (options.force) continue;
        if (sr != nullptr) {
          return import_error({"VDI_LOCATION_MISSING", sr->ref,
                               location != nullptr ? location->s : ""});
        }
        return import_error({"VDI_CONTENT_ID_MISSING"});
      }
      vdis[id] = found;
      continue;
    }
    Object* vdi = CreateLocked("VDI");
    if (const SimValue* n = rec.Get("name_label")) vdi->at("name_label") = *n;
    if (const SimValue* n = rec.Get("name_description"))
      vdi->at("name_description") = *n;
    const std::shared_ptr<DiskImage>& image = (*disks)[id];
    vdi->at("virtual_size") = SimValue::Int(
        static_cast<int64_t>(image != nullptr ? image->size() : 0));
    vdi->at("SR") = SimValue::Str(options.sr_ref);
    vdi->at("location") = SimValue::Str(vdi->str("uuid"));
    if (Object* sr = GetLocked("SR", options.sr_ref))
      sr->at("VDIs").items.push_back(SimValue::Str(vdi->ref));
    VdiData d;
    d.image = image;
    vdi_data_[vdi->ref] = std::move(d);
    vdis[id] = vdi;
  }
  // Networks: by name, then by bridge; else a new one of that name.
  std::map<std::string, Object*> networks;
  for (const auto& [id, entry] : objects) {
    if (entry.first != "network") continue;
    const SimValue& rec = *entry.second;
    const SimValue* name = rec.Get("name_label");
    const SimValue* bridge = rec.Get("bridge");
    Object* found = nullptr;
    for (Object* n : AllLocked("network")) {
      if (name != nullptr && n->str("name_label") == name->s) {
        found = n;
        break;
      }
    }
    for (Object* n : AllLocked("network")) {
      if (found == nullptr && bridge != nullptr && !bridge->s.empty() &&
          n->str("bridge") == bridge->s) {
        found = n;
      }
    }
    if (found == nullptr) {
      found = CreateLocked("network");
      if (name != nullptr) found->at("name_label") = *name;
      found->at("bridge") =
          SimValue::Str(absl::StrCat("xapi", AllLocked("network").size()));
      found->at("MTU") = SimValue::Int(1500);
    }
    networks[id] = found;
  }
  std::vector<std::string> made;
  std::vector<std::string> made_snapshots;
  for (const std::string& id : vm_ids) {
    const SimValue& rec = *objects.at(id).second;
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
      if (v.kind == f.default_value.kind)
        vm->fields[static_cast<size_t>(i)] = v;
    }
    if (!options.restore || vm->str("uuid").empty())
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
      const SimValue* vdi_id = vrec.Get("VDI");
      auto it = vdi_id != nullptr ? vdis.find(vdi_id->s) : vdis.end();
      const SimValue* type = vrec.Get("type");
      const bool cd = type != nullptr && type->s != "Disk";
      // A disk whose VDI is not there is left out; a CD is ejected.
      if (it == vdis.end() && !cd) continue;
      Object* vbd = CreateLocked("VBD");
      for (const char* f : {"device", "userdevice", "bootable", "mode", "type",
                            "empty", "unpluggable", "other_config"}) {
        if (const SimValue* v = vrec.Get(f)) {
          if (v->kind == vbd->at(f).kind) vbd->at(f) = *v;
        }
      }
      vbd->at("VM") = SimValue::Str(vm->ref);
      if (it != vdis.end()) {
        vbd->at("VDI") = SimValue::Str(it->second->ref);
        it->second->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
      } else {
        vbd->at("VDI") = SimValue::Str("OpaqueRef:NULL");
        vbd->at("empty") = SimValue::Bool(true);
      }
      vm->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
    }
    for (const auto& [vif_id, vif_entry] : objects) {
      if (vif_entry.first != "VIF") continue;
      const SimValue& frec = *vif_entry.second;
      const SimValue* owner = frec.Get("VM");
      if (owner == nullptr || owner->s != id) continue;
      const SimValue* net_id = frec.Get("network");
      auto net = net_id != nullptr ? networks.find(net_id->s) : networks.end();
      Object* network =
          net != networks.end() ? net->second : AllLocked("network").front();
      Object* vif = CreateLocked("VIF");
      for (const char* f : {"device", "MTU", "other_config"}) {
        if (const SimValue* v = frec.Get(f)) {
          if (v->kind == vif->at(f).kind) vif->at(f) = *v;
        }
      }
      // Not a full restore: the MAC is made anew (XAPI derives it from a
      // fresh mac_seed).
      const SimValue* mac = frec.Get("MAC");
      if (options.restore && mac != nullptr) {
        vif->at("MAC") = *mac;
      } else {
        const uint64_t r = rng_();
        vif->at("MAC") = SimValue::Str(absl::StrFormat(
            "ce:%02x:%02x:%02x:%02x:%02x", r & 0xff, (r >> 8) & 0xff,
            (r >> 16) & 0xff, (r >> 24) & 0xff, (r >> 32) & 0xff));
      }
      vif->at("VM") = SimValue::Str(vm->ref);
      vif->at("network") = SimValue::Str(network->ref);
      network->at("VIFs").items.push_back(SimValue::Str(vif->ref));
      vm->at("VIFs").items.push_back(SimValue::Str(vif->ref));
    }
    (vm->at("is_a_snapshot").b ? made_snapshots : made).push_back(vm->ref);
  }
  // The task's result: the VMs made, snapshots only when nothing else was.
  if (made.empty()) made = made_snapshots;
  return XapiValue(SimValue::StrSet(made));
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
  ImportOptions options;
  options.sr_ref = sr;
  StartImportLocked(r, task, std::move(options), false,
                    {"VDI_IO_ERROR", "Device I/O errors"}, &start);
  return start;
}

void SimPool::StartImportLocked(HttpRequest& r, const std::string& task,
                                ImportOptions options, bool metadata,
                                std::vector<std::string> cut_error,
                                UploadStart* start) {
  // The VM being imported is in the body: faults with a `vm` never match.
  if (const Fault* f =
          MatchFaultLocked(Fault::CALL_ERROR, r.host, r.handler, {})) {
    std::vector<std::string> error = FaultErrorLocked(*f, "");
    FailTaskLocked(task, error);
    start->response = ErrorPageLocked(500, error);
    return;
  }
  StreamFaults faults =
      MatchStreamFaultsLocked(r, {}, "", std::move(cut_error));
  task_streaming_[task] = true;
  options.force = Param(r, "force") == "true";
  options.restore = Param(r, "restore") == "true";
  start->sink = std::make_unique<ImportSink>(this, task, r, std::move(faults),
                                             std::move(options), metadata);
}

UploadStart SimPool::ImportMetadataStartLocked(HttpRequest& r) {
  UploadStart start;
  HttpResponse& out = start.response;
  const std::string task = TaskForRequestLocked(r, "VM.metadata_import");
  if (!AuthenticateHttpLocked(r, task, &out)) return start;
  if (Param(r, "dry_run") == "true" || Param(r, "live") == "true") {
    std::vector<std::string> error = {
        "INTERNAL_ERROR", "dry_run and live imports are not simulated"};
    FailTaskLocked(task, error);
    out = ErrorPageLocked(500, error);
    return start;
  }
  ImportOptions options;
  // vdi:<exported VDI uuid>=<VDI uuid in this pool>
  for (const auto& [key, value] : r.query) {
    if (absl::StartsWith(key, "vdi:")) options.vdi_map[key.substr(4)] = value;
  }
  StartImportLocked(r, task, std::move(options), true,
                    {"IMPORT_ERROR_PREMATURE_EOF"}, &start);
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
  if (format != "raw" && format != "vhd") {
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
  start.sink = std::make_unique<RawVdiSink>(
      this, task, r, std::move(faults), vdi->ref, data->second.image->size(),
      path, fd, format == "vhd");
  return start;
}

std::optional<UploadStart> SimPool::StartUpload(HttpRequest& r) {
  auto is = [&](absl::string_view handler) {
    return r.path == handler || r.path == absl::StrCat(handler, "/");
  };
  if (r.method != "PUT") return std::nullopt;
  if (is("/import")) {
    r.handler = "/import";
  } else if (is("/import_metadata")) {
    r.handler = "/import_metadata";
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
  if (r.handler == "/import") {
    start = ImportStartLocked(r);
  } else if (r.handler == "/import_metadata") {
    start = ImportMetadataStartLocked(r);
  } else {
    start = ImportRawVdiStartLocked(r);
  }
  if (start.sink == nullptr) LogReplyLocked(start.response, r.log_index);
  return start;
}

}  // namespace vmb::sim
