// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/xva_import.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <openssl/evp.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

namespace vmb::sim {
namespace {

constexpr uint64_t kChunk = uint64_t{1} << 20;
constexpr size_t kOutPiece = 256 * 1024;
// ova.xml of a VM with many snapshots is a few MiB; anything past this is
// not an XVA.
constexpr uint64_t kMaxOvaXml = uint64_t{64} << 20;
constexpr uint64_t kMaxChecksumMember = 4096;

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

absl::Status Error(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

}  // namespace

struct XvaImporter::Inflater {
  z_stream z{};
  bool done = false;
  Inflater() { inflateInit2(&z, 15 + 32); }
  ~Inflater() { inflateEnd(&z); }
};

struct XvaImporter::ZstdReader {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  ~ZstdReader() { ZSTD_freeDCtx(ctx); }
};

// XXH64 and SHA-1 of the data chunk being read: the checksum member after it
// may be either.
struct XvaImporter::Digests {
  XXH64_state_t* xxh = XXH64_createState();
  EVP_MD_CTX* sha1 = EVP_MD_CTX_new();
  Digests() { Reset(); }
  ~Digests() {
    XXH64_freeState(xxh);
    EVP_MD_CTX_free(sha1);
  }
  void Reset() {
    XXH64_reset(xxh, 0);
    EVP_DigestInit_ex(sha1, EVP_sha1(), nullptr);
  }
  void Update(absl::string_view d) {
    XXH64_update(xxh, d.data(), d.size());
    EVP_DigestUpdate(sha1, d.data(), d.size());
  }
  void Final(std::string* xxhash, std::string* sha1_hex) {
    *xxhash = absl::StrFormat("%016X", XXH64_digest(xxh));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha1, md, &len);
    *sha1_hex = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(md), len));
  }
};

XvaImporter::XvaImporter(std::string dir, bool force)
    : dir_(std::move(dir)), force_(force), digests_(new Digests) {}

XvaImporter::~XvaImporter() {
  for (auto& [id, file] : files_) {
    if (file.fd >= 0) close(file.fd);
    if (!file.path.empty()) unlink(file.path.c_str());
  }
}

absl::Status XvaImporter::Feed(absl::string_view data) {
  if (codec_ != Codec::kUnknown) return Decode(data);
  sniff_.append(data.data(), data.size());
  if (sniff_.size() < 4) return absl::OkStatus();
  const std::string first = std::move(sniff_);
  sniff_.clear();
  StartCodec(first);
  return Decode(first);
}

absl::Status XvaImporter::Finish() {
  if (codec_ == Codec::kUnknown) {
    const std::string first = std::move(sniff_);
    sniff_.clear();
    StartCodec(first);
    if (absl::Status s = Decode(first); !s.ok()) return s;
  }
  // A stream that ends between two members ends the archive, as when XAPI's
  // tar reader meets the end of its input.
  if (state_ == State::kHeader && !header_.empty())
    return absl::DataLossError("truncated tar header");
  if (state_ == State::kData)
    return absl::DataLossError("truncated tar member");
  if (state_ == State::kPadding)
    return absl::DataLossError("truncated tar padding");
  if (!seen_ova_) return Error("ova.xml is not the first member");
  return absl::OkStatus();
}

void XvaImporter::StartCodec(absl::string_view b) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.size() >= 4 && byte(0) == 0x28 && byte(1) == 0xb5 && byte(2) == 0x2f &&
      byte(3) == 0xfd) {
    codec_ = Codec::kZstd;
    zstd_ = std::make_unique<ZstdReader>();
  } else if (b.size() >= 2 && byte(0) == 0x1f && byte(1) == 0x8b) {
    codec_ = Codec::kGzip;
    gzip_ = std::make_unique<Inflater>();
  } else {
    codec_ = Codec::kPlain;
  }
  out_.resize(kOutPiece);
}

absl::Status XvaImporter::Decode(absl::string_view data) {
  if (codec_ == Codec::kPlain) return Tar(data);
  if (codec_ == Codec::kGzip) {
    z_stream& z = gzip_->z;
    z.next_in =
        reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));  // NOLINT
    z.avail_in = static_cast<uInt>(data.size());
    while (!gzip_->done) {
      z.next_out = reinterpret_cast<Bytef*>(out_.data());
      z.avail_out = static_cast<uInt>(out_.size());
      const int rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
        return absl::DataLossError("decompression failed");
      const size_t produced = out_.size() - z.avail_out;
      if (produced > 0) {
        if (absl::Status s = Tar(absl::string_view(out_.data(), produced));
            !s.ok()) {
          return s;
        }
      }
      if (rc == Z_STREAM_END) gzip_->done = true;
      if (z.avail_in == 0 && z.avail_out > 0) break;
    }
    return absl::OkStatus();
  }
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  while (true) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    const size_t rc = ZSTD_decompressStream(zstd_->ctx, &out, &in);
    if (ZSTD_isError(rc)) return absl::DataLossError("decompression failed");
    if (out.pos > 0) {
      if (absl::Status s = Tar(absl::string_view(out_.data(), out.pos));
          !s.ok()) {
        return s;
      }
    }
    if (in.pos == in.size && out.pos < out.size) break;
  }
  return absl::OkStatus();
}

absl::Status XvaImporter::Tar(absl::string_view data) {
  while (!data.empty()) {
    switch (state_) {
      case State::kEnd:
        return absl::OkStatus();  // whatever follows the end blocks
      case State::kHeader: {
        const size_t take = std::min<size_t>(512 - header_.size(), data.size());
        header_.append(data.data(), take);
        data.remove_prefix(take);
        if (header_.size() < 512) break;
        absl::Status s = StartMember();
        header_.clear();
        if (!s.ok()) return s;
        break;
      }
      case State::kData: {
        const size_t take = static_cast<size_t>(
            std::min<uint64_t>(left_, static_cast<uint64_t>(data.size())));
        if (absl::Status s = MemberData(data.substr(0, take)); !s.ok())
          return s;
        data.remove_prefix(take);
        left_ -= take;
        if (left_ > 0) break;
        if (absl::Status s = EndMember(); !s.ok()) return s;
        left_ = padding_;
        state_ = padding_ > 0 ? State::kPadding : State::kHeader;
        break;
      }
      case State::kPadding: {
        const size_t take = static_cast<size_t>(
            std::min<uint64_t>(left_, static_cast<uint64_t>(data.size())));
        data.remove_prefix(take);
        left_ -= take;
        if (left_ == 0) state_ = State::kHeader;
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status XvaImporter::StartMember() {
  const char* h = header_.data();
  if (std::all_of(h, h + 512, [](char c) { return c == 0; })) {
    if (!seen_ova_) return Error("ova.xml is not the first member");
    state_ = State::kEnd;
    return absl::OkStatus();
  }
  name_ = std::string(h, strnlen(h, 100));
  const uint64_t size = Octal(h + 124, 12);
  left_ = size;
  padding_ = (512 - size % 512) % 512;
  text_.clear();
  member_ = Member::kSkip;
  if (!seen_ova_) {
    if (name_ != "ova.xml") return Error("ova.xml is not the first member");
    if (size > kMaxOvaXml) return Error("ova.xml is too large");
    member_ = Member::kOva;
  } else if (const size_t slash = name_.find('/'); slash != std::string::npos) {
    const std::string id = name_.substr(0, slash);
    const std::string rest = name_.substr(slash + 1);
    int64_t number = 0;
    if (absl::EndsWith(rest, ".xxhash") || absl::EndsWith(rest, ".checksum")) {
      member_ = Member::kChecksum;
    } else if (absl::SimpleAtoi(rest, &number)) {
      member_ = Member::kChunk;
      // Offsets as XAPI's importer computes them: the first chunk of a disk
      // at its number's MiB, each later one right after the previous plus
      // 1 MiB per number skipped.
      if (id != prev_id_) {
        chunk_offset_ = static_cast<uint64_t>(number) * kChunk;
      } else {
        chunk_offset_ =
            prev_offset_ + prev_len_ +
            static_cast<uint64_t>(number - prev_number_ - 1) * kChunk;
      }
      prev_id_ = id;
      prev_offset_ = chunk_offset_;
      prev_len_ = size;
      prev_number_ = number;
      chunk_pos_ = 0;
      absl::StatusOr<DiskFile*> file = FileFor(id);
      if (!file.ok()) return file.status();
      chunk_file_ = *file;
      digests_->Reset();
    }
  }
  state_ = State::kData;
  if (size > 0) return absl::OkStatus();
  // An empty member ends at once.
  if (absl::Status s = EndMember(); !s.ok()) return s;
  state_ = State::kHeader;
  return absl::OkStatus();
}

absl::Status XvaImporter::MemberData(absl::string_view data) {
  switch (member_) {
    case Member::kOva:
      text_.append(data.data(), data.size());
      break;
    case Member::kChecksum:
      if (text_.size() < kMaxChecksumMember)
        text_.append(data.data(), data.size());
      break;
    case Member::kChunk: {
      digests_->Update(data);
      size_t done = 0;
      while (done < data.size()) {
        const ssize_t n =
            pwrite(chunk_file_->fd, data.data() + done, data.size() - done,
                   static_cast<off_t>(chunk_offset_ + chunk_pos_));
        if (n <= 0) return absl::InternalError("cannot write import file");
        done += static_cast<size_t>(n);
        chunk_pos_ += static_cast<uint64_t>(n);
      }
      break;
    }
    case Member::kSkip:
      break;
  }
  return absl::OkStatus();
}

absl::Status XvaImporter::EndMember() {
  switch (member_) {
    case Member::kOva: {
      seen_ova_ = true;
      auto ova = ParseOva(text_);
      text_.clear();
      if (!ova.ok()) return Error("cannot parse ova.xml");
      ova_ = *std::move(ova);
      const SimValue* objects = ova_.Get("objects");
      if (objects == nullptr) return Error("ova.xml has no objects");
      for (const SimValue& o : objects->items) {
        const SimValue* cls = o.Get("class");
        const SimValue* id = o.Get("id");
        const SimValue* snap = o.Get("snapshot");
        if (cls == nullptr || id == nullptr || snap == nullptr) continue;
        objects_[id->s] = {cls->s, snap};
      }
      break;
    }
    case Member::kChunk:
      digests_->Final(&last_xxhash_, &last_sha1_);
      break;
    case Member::kChecksum: {
      // Compared with the data chunk just before, whatever its name.
      const std::string& expected =
          absl::EndsWith(name_, ".xxhash") ? last_xxhash_ : last_sha1_;
      if (!force_ && !absl::EqualsIgnoreCase(expected, text_))
        return Error(absl::StrCat("checksum mismatch in ", name_));
      break;
    }
    case Member::kSkip:
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<XvaImporter::DiskFile*> XvaImporter::FileFor(
    const std::string& id) {
  DiskFile& file = files_[id];
  if (file.fd >= 0) return &file;
  std::string path = absl::StrCat(dir_, "/import-XXXXXX");
  const int fd = mkstemp(path.data());
  if (fd < 0) return absl::InternalError("cannot create import file");
  file.path = path;
  file.fd = fd;
  return &file;
}

absl::StatusOr<std::map<std::string, std::shared_ptr<DiskImage>>>
XvaImporter::TakeDisks() {
  std::map<std::string, std::shared_ptr<DiskImage>> disks;
  for (const auto& [id, entry] : objects_) {
    if (entry.first != "VDI") continue;
    int64_t size = 0;
    if (const SimValue* s = entry.second->Get("virtual_size")) {
      if (s->kind == SimValue::Kind::kInt)
        size = s->i;
      else
        (void)absl::SimpleAtoi(s->s, &size);
    }
    absl::StatusOr<DiskFile*> file = FileFor(id);
    if (!file.ok()) return file.status();
    if (ftruncate((*file)->fd, std::max<int64_t>(size, 0)) != 0)
      return absl::InternalError("cannot size import file");
    auto image = FileDisk::Open((*file)->path);
    if (!image.ok()) return image.status();
    disks[id] = std::shared_ptr<DiskImage>(*std::move(image));
  }
  // Their files now belong to the disks, and stay in `dir`.
  for (auto& [id, file] : files_) {
    if (disks.count(id) == 0) continue;
    close(file.fd);
    file.fd = -1;
    file.path.clear();
  }
  return disks;
}

}  // namespace vmb::sim
