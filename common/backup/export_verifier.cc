// SPDX-License-Identifier: Apache-2.0
#include "common/backup/export_verifier.h"

#include <string.h>

#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include <openssl/evp.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include "common/backup/sha256.h"
#include "common/xapi/xmlrpc_codec.h"

namespace vmb {
namespace {

constexpr uint64_t kChunk = 1024 * 1024;
constexpr size_t kMaxOvaXml = 64u << 20;

absl::Status Bad(uint64_t offset, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("export stream broken at byte ", offset, ": ", what));
}

uint64_t Octal(absl::string_view field, bool* ok) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  size_t digits = 0;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7';
       ++i, ++digits) {
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < field.size(); ++i) {
    if (field[i] != '\0' && field[i] != ' ') {
      *ok = false;
      return 0;
    }
  }
  *ok = digits > 0;
  return v;
}

// ---- XVA: the tar stream
// ------------------------------------------------------

// A SHA-256 of a disk's content fed in order, with runs of zeros for what a
// stream skipped.
class ContentDigest {
 public:
  void Add(absl::string_view data) {
    sha_.Update(data);
    at_ += data.size();
  }
  // Zeros up to disk offset `to`.
  void ZerosTo(uint64_t to) {
    static const std::string* const kZeros = new std::string(1 << 20, '\0');
    while (at_ < to) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(kZeros->size(), to - at_));
      Add(absl::string_view(kZeros->data(), n));
    }
  }
  std::string Hex() const { return sha_.Hex(); }

 private:
  Sha256 sha_;
  uint64_t at_ = 0;
};

class XvaTarVerifier final : public ExportVerifier {
 public:
  XvaTarVerifier(std::vector<ExpectedDisk> expected, bool content_digests)
      : expected_(std::move(expected)),
        content_digests_(content_digests),
        sha1_(EVP_MD_CTX_new()),
        xxh_(XXH64_createState()) {}
  ~XvaTarVerifier() override {
    EVP_MD_CTX_free(sha1_);
    XXH64_freeState(xxh_);
  }

  absl::Status Update(absl::string_view data) override {
    while (!data.empty()) {
      if (!status_.ok()) return status_;
      switch (state_) {
        case State::kHeader: {
          const size_t n = std::min(data.size(), 512 - header_.size());
          header_.append(data.data(), n);
          data.remove_prefix(n);
          offset_ += n;
          if (header_.size() == 512) status_ = OnHeader();
          break;
        }
        case State::kData: {
          const size_t n =
              static_cast<size_t>(std::min<uint64_t>(data.size(), remaining_));
          OnData(data.substr(0, n));
          data.remove_prefix(n);
          offset_ += n;
          remaining_ -= n;
          if (remaining_ == 0) status_ = OnMemberEnd();
          break;
        }
        case State::kPadding: {
          const size_t n =
              static_cast<size_t>(std::min<uint64_t>(data.size(), remaining_));
          for (size_t i = 0; i < n; ++i) {
            if (data[i] != '\0')
              return status_ = Bad(offset_ + i, "non-zero tar padding");
          }
          data.remove_prefix(n);
          offset_ += n;
          remaining_ -= n;
          if (remaining_ == 0) state_ = State::kHeader;
          break;
        }
        case State::kTrailer: {
          // After the two zero blocks only zeros may follow (some writers pad
          // to a 10 KiB record; XAPI does not).
          for (char c : data) {
            if (c != '\0')
              return status_ =
                         Bad(offset_, "data after the end of the archive");
            ++offset_;
          }
          data = {};
          break;
        }
      }
    }
    return status_;
  }

  absl::Status Finish() override {
    if (!status_.ok()) return status_;
    // Disks that never received a chunk leave the check, unless the job
    // exports them: XAPI exports no data for VDIs on ISO SRs (CD images).
    for (const ExpectedDisk& e : expected_) {
      const auto it = std::find_if(
          disks_.begin(), disks_.end(),
          [&](const auto& d) { return d.second.uuid == e.vdi_uuid; });
      if (it != disks_.end() && !it->second.seen()) {
        return status_ = Bad(
                   offset_, absl::StrCat("the export carries no data for disk ",
                                         e.name, " (VDI ", e.vdi_uuid, ")"));
      }
    }
    std::erase_if(disks_,
                  [](const auto& entry) { return !entry.second.seen(); });
    if (state_ == State::kHeader && absl::StartsWith(header_, "HTTP/")) {
      return status_ = Bad(offset_ - header_.size(),
                           "XAPI wrote an HTTP response into the export");
    }
    if (state_ != State::kTrailer || zero_blocks_ < 2) {
      return status_ =
                 Bad(offset_,
                     saw_ova_ ? "the stream ended before the end of the archive"
                              : "the stream ended before ova.xml");
    }
    for (const auto& [id, disk] : disks_) {
      if (disk.next_offset != disk.size) {
        return status_ = Bad(offset_, absl::StrCat("disk ", id, " covers ",
                                                   disk.next_offset, " of its ",
                                                   disk.size, " bytes"));
      }
    }
    if (content_digests_) {
      for (auto& [id, disk] : disks_) {
        disk.content->ZerosTo(disk.size);
        auto dev = userdevice_of_.find(id);
        digests_[dev != userdevice_of_.end() ? dev->second : disk.uuid] =
            disk.content->Hex();
      }
    }
    return absl::OkStatus();
  }
  std::map<std::string, std::string> ContentSha256() const override {
    return digests_;
  }

  uint64_t covered() const override {
    uint64_t c = 0;
    for (const auto& [id, disk] : disks_) c += disk.next_offset;
    return c;
  }
  uint64_t total() const override {
    uint64_t t = 0;
    for (const auto& [id, disk] : disks_) t += disk.size;
    return t;
  }

 private:
  enum class State { kHeader, kData, kPadding, kTrailer };
  enum class Member { kOva, kChunk, kChecksum };
  struct Disk {
    std::string uuid;  // of the VDI in ova.xml
    uint64_t size = 0;
    int64_t last_number = -1;  // of the last chunk; chunk numbers are >= 0
    uint64_t next_offset = 0;  // end of the data covered so far
    std::shared_ptr<ContentDigest> content;  // with content_digests
    bool seen() const { return last_number >= 0; }
  };

  absl::Status OnHeader() {
    const uint64_t header_at = offset_ - 512;
    if (std::all_of(header_.begin(), header_.end(),
                    [](char c) { return c == '\0'; })) {
      header_.clear();
      if (!saw_ova_) return Bad(header_at, "an empty archive (no ova.xml)");
      if (expect_checksum_)
        return Bad(header_at, "the archive ended before a chunk's checksum");
      if (++zero_blocks_ == 2) state_ = State::kTrailer;
      return absl::OkStatus();
    }
    if (zero_blocks_ > 0)
      return Bad(header_at, "a member after an end-of-archive block");
    // Header checksum: the sum of the bytes with the checksum field as spaces.
    bool ok = false;
    const uint64_t stored =
        Octal(absl::string_view(header_).substr(148, 8), &ok);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; ++i) {
      sum +=
          (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header_[i]);
    }
    if (!ok || stored != sum) {
      return Bad(
          header_at,
          absl::StrCat("bad tar header checksum (not a tar member here",
                       absl::StartsWith(header_, "HTTP/")
                           ? ": XAPI wrote an HTTP response into the export"
                           : "",
                       ")"));
    }
    std::string name(header_.data(), strnlen(header_.data(), 100));
    if (header_.compare(257, 5, "ustar") == 0) {
      std::string prefix(header_.data() + 345,
                         strnlen(header_.data() + 345, 155));
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    const char type = header_[156];
    if (type != '\0' && type != '0') {
      return Bad(header_at, absl::StrCat("member ", absl::CHexEscape(name),
                                         " is not a regular file (type '",
                                         std::string(1, type), "')"));
    }
    if (static_cast<unsigned char>(header_[124]) & 0x80) {
      return Bad(header_at,
                 "a member size in base-256 (larger than a chunk can be)");
    }
    const uint64_t size =
        Octal(absl::string_view(header_).substr(124, 12), &ok);
    if (!ok)
      return Bad(header_at,
                 absl::StrCat("bad size field for ", absl::CHexEscape(name)));
    header_.clear();
    absl::Status s = OnMemberStart(name, size, header_at);
    if (!s.ok()) return s;
    remaining_ = size;
    padding_ = (512 - size % 512) % 512;
    state_ = size > 0 ? State::kData : State::kHeader;
    if (size == 0) return OnMemberEnd();
    return absl::OkStatus();
  }

  absl::Status OnMemberStart(const std::string& name, uint64_t size,
                             uint64_t at) {
    if (!saw_ova_) {
      if (name != "ova.xml") {
        return Bad(at, absl::StrCat("the first member is ",
                                    absl::CHexEscape(name), ", not ova.xml"));
      }
      if (size > kMaxOvaXml) return Bad(at, "ova.xml is larger than 64 MiB");
      member_ = Member::kOva;
      ova_.reserve(size);
      return absl::OkStatus();
    }
    const size_t slash = name.find('/');
    if (slash == std::string::npos) {
      return Bad(at,
                 absl::StrCat("unexpected member ", absl::CHexEscape(name)));
    }
    const std::string id = name.substr(0, slash);
    absl::string_view rest = absl::string_view(name).substr(slash + 1);
    const bool is_xxhash = absl::ConsumeSuffix(&rest, ".xxhash");
    const bool is_sha1 = !is_xxhash && absl::ConsumeSuffix(&rest, ".checksum");
    if (is_xxhash || is_sha1) {
      if (!expect_checksum_ || absl::StrCat(id, "/", rest) != chunk_name_) {
        return Bad(at, absl::StrCat("checksum member ", absl::CHexEscape(name),
                                    " does not follow its chunk"));
      }
      if (size != (is_xxhash ? 16u : 40u)) {
        return Bad(
            at, absl::StrCat(absl::CHexEscape(name), " has ", size, " bytes"));
      }
      member_ = Member::kChecksum;
      checksum_is_xxhash_ = is_xxhash;
      checksum_text_.clear();
      return absl::OkStatus();
    }
    if (expect_checksum_) {
      return Bad(
          at, absl::StrCat("chunk ", chunk_name_, " has no checksum member"));
    }
    int64_t number;
    if (rest.size() != 8 ||
        !std::all_of(rest.begin(), rest.end(),
                     [](char c) {
                       return absl::ascii_isdigit(
                           static_cast<unsigned char>(c));
                     }) ||
        !absl::SimpleAtoi(rest, &number)) {
      return Bad(at,
                 absl::StrCat("unexpected member ", absl::CHexEscape(name)));
    }
    auto it = disks_.find(id);
    if (it == disks_.end()) {
      return Bad(at, absl::StrCat("chunk ", absl::CHexEscape(name),
                                  " belongs to no disk of ova.xml"));
    }
    Disk& disk = it->second;
    if (size > kChunk)
      return Bad(at, absl::StrCat("chunk ", name, " is larger than 1 MiB"));
    // Offsets as XAPI's importer computes them: keep-alive chunks (0 bytes)
    // shift the numbering.
    uint64_t offset;
    if (!disk.seen()) {
      if (number != 0)
        return Bad(at,
                   absl::StrCat("disk ", id, " does not start with chunk 0"));
      offset = 0;
    } else {
      if (number <= disk.last_number) {
        return Bad(at, absl::StrCat("chunk ", name, " is out of order"));
      }
      offset = disk.next_offset +
               static_cast<uint64_t>(number - disk.last_number - 1) * kChunk;
    }
    if (offset + size > disk.size) {
      return Bad(at, absl::StrCat("chunk ", name, " lies beyond the disk's ",
                                  disk.size, " bytes"));
    }
    disk.last_number = number;
    disk.next_offset = offset + size;
    if (content_digests_) {
      if (disk.content == nullptr)
        disk.content = std::make_shared<ContentDigest>();
      disk.content->ZerosTo(offset);
      chunk_content_ = disk.content.get();
    }
    chunk_name_ = name;
    member_ = Member::kChunk;
    XXH64_reset(xxh_, 0);
    // SHA-1 is needed only by archives with .checksum members (XAPI before
    // 8.1): computed for the first chunk, and then only if that was the kind.
    hash_sha1_ = !saw_checksum_ || !checksum_is_xxhash_;
    if (hash_sha1_) EVP_DigestInit_ex(sha1_, EVP_sha1(), nullptr);
    return absl::OkStatus();
  }

  void OnData(absl::string_view data) {
    switch (member_) {
      case Member::kOva:
        ova_.append(data.data(), data.size());
        break;
      case Member::kChunk:
        if (chunk_content_ != nullptr) chunk_content_->Add(data);
        XXH64_update(xxh_, data.data(), data.size());
        if (hash_sha1_) EVP_DigestUpdate(sha1_, data.data(), data.size());
        break;
      case Member::kChecksum:
        checksum_text_.append(data.data(), data.size());
        break;
    }
  }

  absl::Status OnMemberEnd() {
    state_ = padding_ > 0 ? State::kPadding : State::kHeader;
    remaining_ = padding_;
    switch (member_) {
      case Member::kOva:
        saw_ova_ = true;
        return ParseOva();
      case Member::kChunk: {
        chunk_content_ = nullptr;
        expect_checksum_ = true;
        chunk_xxh_ = absl::StrFormat("%016X", XXH64_digest(xxh_));
        if (hash_sha1_) {
          unsigned char md[EVP_MAX_MD_SIZE];
          unsigned int n = 0;
          EVP_DigestFinal_ex(sha1_, md, &n);
          chunk_sha1_ = absl::BytesToHexString(
              absl::string_view(reinterpret_cast<char*>(md), n));
        }
        return absl::OkStatus();
      }
      case Member::kChecksum: {
        expect_checksum_ = false;
        saw_checksum_ = true;
        const std::string& expected =
            checksum_is_xxhash_ ? chunk_xxh_ : chunk_sha1_;
        if (!checksum_is_xxhash_ && !hash_sha1_) {
          return Bad(offset_,
                     "the archive mixes .xxhash and .checksum members");
        }
        if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(checksum_text_),
                                    expected)) {
          return Bad(offset_,
                     absl::StrCat("chunk ", chunk_name_, " has checksum ",
                                  expected, " but the archive says ",
                                  absl::CHexEscape(checksum_text_)));
        }
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseOva() {
    absl::StatusOr<XmlRpcValue> ova = DecodeXmlRpcValue(ova_);
    ova_.clear();
    ova_.shrink_to_fit();
    if (!ova.ok())
      return Bad(offset_, absl::StrCat("ova.xml: ", ova.status().message()));
    const XmlRpcValue* objects = ova->Find("objects");
    if (ova->Find("version") == nullptr || objects == nullptr ||
        !objects->is_array()) {
      return Bad(offset_, "ova.xml has no version or objects");
    }
    for (const XmlRpcValue& o : objects->items()) {
      const XmlRpcValue* cls = o.Find("class");
      const XmlRpcValue* id = o.Find("id");
      const XmlRpcValue* snap = o.Find("snapshot");
      if (cls == nullptr || id == nullptr || snap == nullptr ||
          !cls->is_string() || !id->is_string()) {
        return Bad(offset_,
                   "ova.xml has an object without class, id or snapshot");
      }
      if (cls->text() == "VBD") {
        const XmlRpcValue* vdi = snap->Find("VDI");
        const XmlRpcValue* dev = snap->Find("userdevice");
        if (vdi != nullptr && vdi->is_string() && dev != nullptr &&
            dev->is_string()) {
          userdevice_of_[vdi->text()] = dev->text();
        }
        continue;
      }
      if (cls->text() != "VDI") continue;
      int64_t size = -1;
      if (const XmlRpcValue* v = snap->Find("virtual_size")) {
        if (v->is_int()) size = v->int_value();
        if (v->is_string()) (void)absl::SimpleAtoi(v->text(), &size);
      }
      if (size < 0)
        return Bad(offset_,
                   absl::StrCat("ova.xml: VDI ", id->text(), " has no size"));
      Disk& disk = disks_[id->text()];
      disk.size = static_cast<uint64_t>(size);
      if (const XmlRpcValue* uuid = snap->Find("uuid");
          uuid != nullptr && uuid->is_string()) {
        disk.uuid = uuid->text();
      }
    }
    // Every disk the job exports must be there, with its size.
    for (const ExpectedDisk& e : expected_) {
      const auto it = std::find_if(
          disks_.begin(), disks_.end(),
          [&](const auto& d) { return d.second.uuid == e.vdi_uuid; });
      if (it == disks_.end()) {
        return Bad(offset_, absl::StrCat("ova.xml has no disk ", e.name,
                                         " (VDI ", e.vdi_uuid, ")"));
      }
      if (it->second.size != e.virtual_size) {
        return Bad(offset_,
                   absl::StrCat("ova.xml gives disk ", e.name, " (VDI ",
                                e.vdi_uuid, ") ", it->second.size,
                                " bytes, not its ", e.virtual_size));
      }
    }
    return absl::OkStatus();
  }

  const std::vector<ExpectedDisk> expected_;
  const bool content_digests_;
  ContentDigest* chunk_content_ = nullptr;  // the chunk being read's disk
  std::map<std::string, std::string> digests_;
  std::map<std::string, std::string> userdevice_of_;  // VDI id -> its VBD's
  EVP_MD_CTX* sha1_;
  XXH64_state_t* xxh_;
  State state_ = State::kHeader;
  Member member_ = Member::kOva;
  std::string header_;
  uint64_t offset_ = 0;
  uint64_t remaining_ = 0;
  uint64_t padding_ = 0;
  int zero_blocks_ = 0;
  bool saw_ova_ = false;
  std::string ova_;
  std::map<std::string, Disk> disks_;
  bool expect_checksum_ = false;
  bool saw_checksum_ = false;
  bool checksum_is_xxhash_ = true;
  bool hash_sha1_ = true;
  std::string chunk_name_;
  std::string chunk_xxh_;
  std::string chunk_sha1_;
  std::string checksum_text_;
  absl::Status status_;
};

// ---- decompression in front of a verifier
// --------------------------------------

// Decompresses a stream in front of another verifier (the tar stream's).
class DecompressingVerifier : public ExportVerifier {
 public:
  absl::Status Finish() final {
    if (!status_.ok()) return status_;
    if (!Ended()) return status_ = Bad(in_, ended_early_);
    return inner_->Finish();
  }
  uint64_t covered() const final { return inner_->covered(); }
  uint64_t total() const final { return inner_->total(); }
  std::map<std::string, std::string> ContentSha256() const final {
    return inner_->ContentSha256();
  }

 protected:
  // `ended_early`: the error when the stream stops before its end.
  DecompressingVerifier(std::unique_ptr<ExportVerifier> inner,
                        const char* ended_early, size_t buffer)
      : inner_(std::move(inner)),
        out_(buffer, '\0'),
        ended_early_(ended_early) {}
  // The compressed stream has ended where it may end.
  virtual bool Ended() const = 0;

  std::unique_ptr<ExportVerifier> inner_;
  std::string out_;  // decompressed bytes, handed to inner_
  uint64_t in_ = 0;  // compressed bytes before the current Update()
  absl::Status status_;

 private:
  const char* const ended_early_;
};

class GzipVerifier final : public DecompressingVerifier {
 public:
  explicit GzipVerifier(std::unique_ptr<ExportVerifier> inner)
      : DecompressingVerifier(std::move(inner), "the gzip stream ended early",
                              256 * 1024) {
    memset(&z_, 0, sizeof(z_));
    inflateInit2(&z_, 15 + 16);
  }
  ~GzipVerifier() override { inflateEnd(&z_); }

  absl::Status Update(absl::string_view data) override {
    if (!status_.ok()) return status_;
    if (ended_) {
      if (!data.empty())
        status_ = Bad(in_, "data after the end of the gzip stream");
      return status_;
    }
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z_.avail_in = static_cast<uInt>(data.size());
    while (z_.avail_in > 0 && !ended_) {
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = inflate(&z_, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        return status_ = Bad(
                   in_ + (data.size() - z_.avail_in),
                   absl::StrCat("gzip: ",
                                z_.msg != nullptr ? z_.msg : "corrupt data"));
      }
      status_ = inner_->Update(
          absl::string_view(out_.data(), out_.size() - z_.avail_out));
      if (!status_.ok()) return status_;
      if (rc == Z_STREAM_END) ended_ = true;
    }
    if (ended_ && z_.avail_in > 0)
      status_ = Bad(in_, "data after the end of the gzip stream");
    in_ += data.size();
    return status_;
  }

 private:
  bool Ended() const override { return ended_; }

  z_stream z_;
  bool ended_ = false;
};

class ZstdVerifier final : public DecompressingVerifier {
 public:
  explicit ZstdVerifier(std::unique_ptr<ExportVerifier> inner)
      : DecompressingVerifier(std::move(inner),
                              "the zstd stream ended inside a frame",
                              ZSTD_DStreamOutSize()),
        dctx_(ZSTD_createDCtx()) {}
  ~ZstdVerifier() override { ZSTD_freeDCtx(dctx_); }

  absl::Status Update(absl::string_view data) override {
    if (!status_.ok()) return status_;
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer out{out_.data(), out_.size(), 0};
      const size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
      if (ZSTD_isError(rc)) {
        return status_ = Bad(in_ + in.pos,
                             absl::StrCat("zstd: ", ZSTD_getErrorName(rc)));
      }
      status_ = inner_->Update(absl::string_view(out_.data(), out.pos));
      if (!status_.ok()) return status_;
      frame_done_ = rc == 0;
    }
    in_ += data.size();
    return status_;
  }

 private:
  bool Ended() const override { return frame_done_; }

  ZSTD_DCtx* dctx_;
  bool frame_done_ = false;
};

// ---- raw
// ----------------------------------------------------------------------

class RawVerifier final : public ExportVerifier {
 public:
  RawVerifier(uint64_t size, bool content_digests) : size_(size) {
    if (content_digests) content_ = std::make_unique<ContentDigest>();
  }
  absl::Status Update(absl::string_view data) override {
    // Any bytes may be a disk's, "HTTP/1.1 500" at its start included: an
    // error response in place of the disk (xen-api #4603) is told apart by
    // the data plane and the task, and the size check catches the rest.
    seen_ += data.size();
    if (seen_ > size_) {
      return Bad(size_, absl::StrCat("more bytes than the disk's ", size_));
    }
    if (content_ != nullptr) content_->Add(data);
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    if (seen_ != size_) {
      return Bad(seen_, absl::StrCat("the disk has ", size_,
                                     " bytes, the stream ", seen_));
    }
    if (content_ != nullptr) digests_[""] = content_->Hex();
    return absl::OkStatus();
  }
  std::map<std::string, std::string> ContentSha256() const override {
    return digests_;
  }
  uint64_t covered() const override { return seen_; }
  uint64_t total() const override { return size_; }

 private:
  uint64_t size_;
  uint64_t seen_ = 0;
  std::unique_ptr<ContentDigest> content_;
  std::map<std::string, std::string> digests_;
};

// ---- VHD
// ------------------------------------------------------------------------

uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<unsigned char>(s[at])} << 24) |
         (uint32_t{static_cast<unsigned char>(s[at + 1])} << 16) |
         (uint32_t{static_cast<unsigned char>(s[at + 2])} << 8) |
         uint32_t{static_cast<unsigned char>(s[at + 3])};
}

uint64_t Be64(const std::string& s, size_t at) {
  return (uint64_t{Be32(s, at)} << 32) | Be32(s, at + 4);
}

bool ChecksumOk(const std::string& s, size_t checksum_at) {
  uint32_t sum = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i >= checksum_at && i < checksum_at + 4) continue;
    sum += static_cast<unsigned char>(s[i]);
  }
  return ~sum == Be32(s, checksum_at);
}

class VhdVerifier final : public ExportVerifier {
 public:
  VhdVerifier(uint64_t size, bool content_digests) : size_(size) {
    if (content_digests) content_ = std::make_unique<ContentDigest>();
  }

  absl::Status Update(absl::string_view data) override {
    while (!data.empty() && status_.ok()) {
      size_t n = 0;
      switch (stage_) {
        case Stage::kFooter:
          n = Fill(data, 512);
          if (buf_.size() == 512) status_ = OnFooter();
          break;
        case Stage::kHeader:
          n = SkipThenFill(data, header_at_, 1024);
          if (buf_.size() == 1024) status_ = OnHeader();
          break;
        case Stage::kBat:
          n = SkipThenFill(data, bat_at_, bat_bytes_);
          if (buf_.size() == bat_bytes_) status_ = OnBat();
          break;
        case Stage::kBlocks: {
          if (next_ == blocks_.size()) {
            stage_ = Stage::kClosingFooter;
            break;
          }
          // Bytes before a block's start are padding; then bitmap and data.
          const uint64_t end = blocks_[next_] + bitmap_ + block_;
          n = static_cast<size_t>(std::min<uint64_t>(data.size(), end - pos_));
          if (content_ != nullptr) HashBlockData(data.substr(0, n));
          pos_ += n;
          if (pos_ == end) {
            ++next_;
            covered_ = std::min<uint64_t>(size_, covered_ + block_);
          }
          break;
        }
        case Stage::kClosingFooter:
          n = Fill(data, 512);
          if (buf_.size() == 512) {
            if (buf_ != footer_)
              status_ = Bad(pos_ - 512,
                            "the closing VHD footer differs from the first");
            stage_ = Stage::kDone;
            covered_ = size_;
            if (content_ != nullptr && in_order_) {
              content_->ZerosTo(size_);
              digests_[""] = content_->Hex();
            }
          }
          break;
        case Stage::kDone:
          status_ = Bad(pos_, "data after the closing VHD footer");
          break;
      }
      data.remove_prefix(n);
    }
    return status_;
  }

  absl::Status Finish() override {
    if (!status_.ok()) return status_;
    if (stage_ != Stage::kDone) {
      return status_ =
                 Bad(pos_, "the VHD stream ended before its closing footer");
    }
    return absl::OkStatus();
  }
  uint64_t covered() const override { return covered_; }
  uint64_t total() const override { return size_; }
  std::map<std::string, std::string> ContentSha256() const override {
    return digests_;
  }

 private:
  enum class Stage { kFooter, kHeader, kBat, kBlocks, kClosingFooter, kDone };

  // The part of `data` (at stream position pos_) that is block data goes
  // into the content digest at its disk offset.
  void HashBlockData(absl::string_view data) {
    if (!in_order_) return;
    const uint64_t start = blocks_[next_] + bitmap_;
    uint64_t at = pos_;
    if (at + data.size() <= start) return;
    if (at < start) {
      data.remove_prefix(static_cast<size_t>(start - at));
      at = start;
    }
    const uint64_t disk_at = index_[next_] * block_ + (at - start);
    if (disk_at >= size_) return;
    content_->ZerosTo(disk_at);
    content_->Add(data.substr(0, static_cast<size_t>(std::min<uint64_t>(
                                     data.size(), size_ - disk_at))));
  }

  // Appends to buf_ until it holds `want` bytes; returns bytes consumed.
  size_t Fill(absl::string_view data, size_t want) {
    const size_t n = std::min(data.size(), want - buf_.size());
    buf_.append(data.data(), n);
    pos_ += n;
    return n;
  }

  // Skips up to stream position `at`, then fills `want` bytes.
  size_t SkipThenFill(absl::string_view data, uint64_t at, size_t want) {
    if (pos_ < at) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(data.size(), at - pos_));
      pos_ += n;
      return n;
    }
    return Fill(data, want);
  }

  absl::Status OnFooter() {
    footer_ = buf_;
    buf_.clear();
    if (footer_.compare(0, 8, "conectix") != 0) {
      return Bad(0, absl::StartsWith(footer_, "HTTP/")
                        ? "XAPI wrote an HTTP response instead of the VHD"
                        : "no VHD footer (cookie conectix) at the start");
    }
    if (!ChecksumOk(footer_, 64)) return Bad(0, "bad VHD footer checksum");
    if (Be32(footer_, 60) != 3) {
      return Bad(60, absl::StrCat("VHD disk type ", Be32(footer_, 60),
                                  ", not dynamic (3)"));
    }
    if (Be64(footer_, 48) != size_) {
      return Bad(48, absl::StrCat("the VHD's size is ", Be64(footer_, 48),
                                  ", the disk has ", size_));
    }
    header_at_ = Be64(footer_, 16);
    if (header_at_ < 512 || header_at_ % 512 != 0 || header_at_ > (1u << 20)) {
      return Bad(16, "bad VHD header offset");
    }
    stage_ = Stage::kHeader;
    return absl::OkStatus();
  }

  absl::Status OnHeader() {
    const std::string header = std::move(buf_);
    buf_.clear();
    if (header.compare(0, 8, "cxsparse") != 0)
      return Bad(header_at_, "no VHD dynamic header");
    if (!ChecksumOk(header, 36))
      return Bad(header_at_, "bad VHD header checksum");
    bat_at_ = Be64(header, 16);
    entries_ = Be32(header, 28);
    block_ = Be32(header, 32);
    if (block_ < 4096 || (block_ & (block_ - 1)) != 0 ||
        block_ > (256u << 20)) {
      return Bad(header_at_ + 32, absl::StrCat("bad VHD block size ", block_));
    }
    if (entries_ != (size_ + block_ - 1) / block_) {
      return Bad(header_at_ + 28,
                 absl::StrCat("the VHD has ", entries_, " blocks, ",
                              (size_ + block_ - 1) / block_, " expected"));
    }
    if (bat_at_ < header_at_ + 1024 || bat_at_ % 512 != 0 ||
        bat_at_ > (16u << 20)) {
      return Bad(header_at_ + 16, "bad VHD BAT offset");
    }
    bitmap_ = ((block_ / 512 / 8) + 511) / 512 * 512;
    bat_bytes_ =
        static_cast<size_t>((uint64_t{entries_} * 4 + 511) / 512 * 512);
    if (bat_bytes_ > (64u << 20))
      return Bad(header_at_ + 28, "VHD BAT larger than 64 MiB");
    stage_ = Stage::kBat;
    return absl::OkStatus();
  }

  absl::Status OnBat() {
    std::vector<std::pair<uint64_t, uint64_t>> placed;  // file offset, index
    for (uint32_t b = 0; b < entries_; ++b) {
      const uint32_t sector = Be32(buf_, b * 4);
      if (sector != 0xffffffffu) placed.emplace_back(uint64_t{sector} * 512, b);
    }
    buf_.clear();
    std::sort(placed.begin(), placed.end());
    for (size_t i = 0; i < placed.size(); ++i) {
      blocks_.push_back(placed[i].first);
      index_.push_back(placed[i].second);
      if (i > 0 && placed[i].second < placed[i - 1].second) in_order_ = false;
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (blocks_[i] < pos_ ||
          (i > 0 && blocks_[i] < blocks_[i - 1] + bitmap_ + block_)) {
        return Bad(bat_at_, "the VHD BAT has overlapping or misplaced blocks");
      }
    }
    stage_ = Stage::kBlocks;
    return absl::OkStatus();
  }

  const uint64_t size_;
  Stage stage_ = Stage::kFooter;
  std::string buf_;
  uint64_t pos_ = 0;
  std::string footer_;
  uint64_t header_at_ = 0;
  uint64_t bat_at_ = 0;
  size_t bat_bytes_ = 0;
  uint32_t entries_ = 0;
  uint32_t block_ = 0;
  uint64_t bitmap_ = 0;
  std::vector<uint64_t> blocks_;  // file offsets, ascending
  std::vector<uint64_t> index_;   // each one's block number on the disk
  bool in_order_ = true;          // file order is disk order
  size_t next_ = 0;
  uint64_t covered_ = 0;
  std::unique_ptr<ContentDigest> content_;
  std::map<std::string, std::string> digests_;
  absl::Status status_;
};

}  // namespace

std::unique_ptr<ExportVerifier> NewXvaVerifier(v1::Compression compression,
                                               std::vector<ExpectedDisk> disks,
                                               bool content_digests) {
  std::unique_ptr<ExportVerifier> tar =
      std::make_unique<XvaTarVerifier>(std::move(disks), content_digests);
  switch (compression) {
    case v1::COMPRESSION_GZIP:
      return std::make_unique<GzipVerifier>(std::move(tar));
    case v1::COMPRESSION_ZSTD:
      return std::make_unique<ZstdVerifier>(std::move(tar));
    default:
      return tar;
  }
}

std::unique_ptr<ExportVerifier> NewRawVerifier(uint64_t virtual_size,
                                               bool content_digests) {
  return std::make_unique<RawVerifier>(virtual_size, content_digests);
}

std::unique_ptr<ExportVerifier> NewVhdVerifier(uint64_t virtual_size,
                                               bool content_digests) {
  return std::make_unique<VhdVerifier>(virtual_size, content_digests);
}

}  // namespace vmb
