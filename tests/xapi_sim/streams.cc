// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/streams.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <openssl/sha.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

namespace vmb::sim {
namespace {

constexpr uint64_t kChunk = 1024 * 1024;

void PutBe32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

void PutBe64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

void PadTo512(std::string* s) {
  const size_t rem = s->size() % 512;
  if (rem != 0) s->append(512 - rem, '\0');
}

size_t Drain(std::string* pending, size_t* pos, char* buf, size_t max) {
  const size_t n = std::min(max, pending->size() - *pos);
  memcpy(buf, pending->data() + *pos, n);
  *pos += n;
  return n;
}

}  // namespace

std::string TarHeader(absl::string_view name, uint64_t size) {
  std::string h(512, '\0');
  memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  memcpy(h.data() + 100, "0000000", 7);  // mode
  memcpy(h.data() + 108, "0000000", 7);  // uid
  memcpy(h.data() + 116, "0000000", 7);  // gid
  std::string sz = absl::StrFormat("%011o", size);
  memcpy(h.data() + 124, sz.data(), 11);
  memcpy(h.data() + 136, "00000000000", 11);  // mtime
  memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::string ck = absl::StrFormat("%07o", sum);
  memcpy(h.data() + 148, ck.data(), 7);
  h[155] = '\0';
  return h;
}

absl::StatusOr<size_t> BufferedSource::Read(char* buf, size_t max) {
  size_t written = 0;
  while (written < max) {
    if (pending_pos_ == pending_.size()) {
      pending_.clear();
      pending_pos_ = 0;
      Refill();
      if (pending_.empty()) break;
    }
    written += Drain(&pending_, &pending_pos_, buf + written, max - written);
  }
  return written;
}

absl::StatusOr<size_t> StringSource::Read(char* buf, size_t max) {
  return Drain(&data_, &pos_, buf, max);
}

XvaSource::XvaSource(std::string ova_xml, std::vector<XvaDisk> disks,
                     XvaChecksum checksum)
    : disks_(std::move(disks)), checksum_(checksum) {
  // XAPI writes disks in lexicographic order of their ids ("Ref:10" < "Ref:2").
  std::sort(
      disks_.begin(), disks_.end(),
      [](const XvaDisk& a, const XvaDisk& b) { return a.ref_id < b.ref_id; });
  for (const XvaDisk& d : disks_) total_ += d.image->size();
  pending_ = TarHeader("ova.xml", ova_xml.size());
  pending_ += ova_xml;
  PadTo512(&pending_);
}

void XvaSource::Refill() {
  while (disk_ < disks_.size()) {
    const XvaDisk& d = disks_[disk_];
    const uint64_t size = d.image->size();
    const uint64_t chunks = (size + kChunk - 1) / kChunk;
    if (chunk_ >= chunks) {
      ++disk_;
      chunk_ = 0;
      continue;
    }
    const uint64_t c = chunk_++;
    const uint64_t offset = c * kChunk;
    const uint64_t len = std::min(kChunk, size - offset);
    done_ += len;
    if (c != 0 && c != chunks - 1 && d.image->IsZero(offset, len)) continue;
    const std::string name = absl::StrFormat("%s/%08d", d.ref_id, c);
    pending_ = TarHeader(name, len);
    const size_t data_at = pending_.size();
    pending_.resize(data_at + len);
    d.image->Read(offset, pending_.data() + data_at, len);
    std::string sum;
    std::string suffix;
    if (checksum_ == XvaChecksum::kXxHash) {
      sum = absl::StrFormat("%016X", XXH64(pending_.data() + data_at, len, 0));
      suffix = ".xxhash";
    } else {
      unsigned char md[SHA_DIGEST_LENGTH];
      SHA1(reinterpret_cast<const unsigned char*>(pending_.data() + data_at),
           len, md);
      sum = absl::BytesToHexString(
          absl::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
      suffix = ".checksum";
    }
    PadTo512(&pending_);
    pending_ += TarHeader(name + suffix, sum.size());
    pending_ += sum;
    PadTo512(&pending_);
    return;
  }
  if (!finished_) {
    finished_ = true;
    pending_.assign(1024, '\0');
  }
}

absl::StatusOr<size_t> RawSource::Read(char* buf, size_t max) {
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(max, image_->size() - pos_));
  if (n > 0) image_->Read(pos_, buf, n);
  pos_ += n;
  return n;
}

uint32_t VhdChecksum(const char* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum += static_cast<unsigned char>(data[i]);
  return ~sum;
}

namespace {

// CHS geometry per the VHD specification's algorithm.
uint32_t VhdGeometry(uint64_t size) {
  uint64_t total = size / 512;
  if (total > 65535ULL * 16 * 255) total = 65535ULL * 16 * 255;
  uint64_t spt, heads, cyl_times_heads;
  if (total >= 65535ULL * 16 * 63) {
    spt = 255;
    heads = 16;
    cyl_times_heads = total / spt;
  } else {
    spt = 17;
    cyl_times_heads = total / spt;
    heads = (cyl_times_heads + 1023) / 1024;
    if (heads < 4) heads = 4;
    if (cyl_times_heads >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cyl_times_heads = total / spt;
    }
    if (cyl_times_heads >= heads * 1024) {
      spt = 63;
      heads = 16;
      cyl_times_heads = total / spt;
    }
  }
  const uint64_t cylinders = cyl_times_heads / heads;
  return static_cast<uint32_t>((cylinders << 16) | (heads << 8) | spt);
}

}  // namespace

VhdSource::VhdSource(const DiskImage* image, const std::string& uuid16,
                     uint32_t timestamp)
    : image_(image) {
  const uint64_t size = image->size();
  footer_.assign(512, '\0');
  char* f = footer_.data();
  memcpy(f, "conectix", 8);
  PutBe32(f + 8, 2);            // features: reserved bit set
  PutBe32(f + 12, 0x00010000);  // format version
  PutBe64(f + 16, 512);         // data offset: the dynamic header
  PutBe32(f + 24, timestamp);
  memcpy(f + 28, "caml", 4);    // creator application, as vhd-tool writes
  PutBe32(f + 32, 0x00000001);  // creator version
  memcpy(f + 36, "Wi2k", 4);    // creator host OS
  PutBe64(f + 40, size);
  PutBe64(f + 48, size);
  PutBe32(f + 56, VhdGeometry(size));
  PutBe32(f + 60, 3);  // dynamic
  memcpy(f + 68, uuid16.data(), std::min<size_t>(16, uuid16.size()));
  PutBe32(f + 64, VhdChecksum(f, 512));

  const uint64_t entries = (size + kBlock - 1) / kBlock;
  std::string header(1024, '\0');
  char* h = header.data();
  memcpy(h, "cxsparse", 8);
  PutBe64(h + 8, ~uint64_t{0});
  PutBe64(h + 16, 2048);  // BAT offset
  PutBe32(h + 24, 0x00010000);
  PutBe32(h + 28, static_cast<uint32_t>(entries));
  PutBe32(h + 32, static_cast<uint32_t>(kBlock));
  PutBe32(h + 36, VhdChecksum(h, 1024));

  std::string bat(entries * 4, '\xff');
  const uint64_t bat_bytes = ((entries * 4 + 511) / 512) * 512;
  uint64_t sector = (2048 + bat_bytes) / 512;
  for (uint64_t b = 0; b < entries; ++b) {
    const uint64_t len = std::min(kBlock, size - b * kBlock);
    if (image->IsZero(b * kBlock, len)) continue;
    blocks_.push_back(b);
    PutBe32(bat.data() + b * 4, static_cast<uint32_t>(sector));
    sector += (512 + kBlock) / 512;
  }
  pending_ = footer_ + header;
  pending_.append(512, '\0');  // up to the BAT at 2048
  pending_ += bat;
  pending_.resize(2048 + bat_bytes, '\xff');
}

void VhdSource::Refill() {
  if (stage_ == 0) stage_ = 1;
  if (stage_ == 1) {
    if (next_block_ < blocks_.size()) {
      const uint64_t b = blocks_[next_block_++];
      const uint64_t offset = b * kBlock;
      const uint64_t len = std::min(kBlock, image_->size() - offset);
      pending_.assign(512 + kBlock, '\0');
      memset(pending_.data(), 0xff, 512);  // every sector present
      image_->Read(offset, pending_.data() + 512, len);
      done_ = offset + len;
      return;
    }
    stage_ = 2;
  }
  if (stage_ == 2) {
    pending_ = footer_;
    done_ = image_->size();
    stage_ = 3;
  }
}

namespace {

class GzipStream final : public ByteSource {
 public:
  explicit GzipStream(std::unique_ptr<ByteSource> inner)
      : inner_(std::move(inner)) {
    memset(&z_, 0, sizeof(z_));
    deflateInit2(&z_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    in_.resize(256 * 1024);
  }
  ~GzipStream() override { deflateEnd(&z_); }
  uint64_t progress_done() const override { return inner_->progress_done(); }
  uint64_t progress_total() const override { return inner_->progress_total(); }

  absl::StatusOr<size_t> Read(char* buf, size_t max) override {
    if (done_) return 0;
    z_.next_out = reinterpret_cast<Bytef*>(buf);
    z_.avail_out = static_cast<uInt>(max);
    while (z_.avail_out > 0 && !done_) {
      if (z_.avail_in == 0 && !eof_) {
        auto n = inner_->Read(in_.data(), in_.size());
        if (!n.ok()) return n.status();
        if (*n == 0) eof_ = true;
        z_.next_in = reinterpret_cast<Bytef*>(in_.data());
        z_.avail_in = static_cast<uInt>(*n);
      }
      int rc = deflate(&z_, eof_ ? Z_FINISH : Z_NO_FLUSH);
      if (rc == Z_STREAM_END) done_ = true;
      if (rc == Z_STREAM_ERROR) return absl::InternalError("deflate failed");
    }
    return max - z_.avail_out;
  }

 private:
  std::unique_ptr<ByteSource> inner_;
  z_stream z_;
  std::string in_;
  bool eof_ = false;
  bool done_ = false;
};

class ZstdStream final : public ByteSource {
 public:
  explicit ZstdStream(std::unique_ptr<ByteSource> inner)
      : inner_(std::move(inner)), cctx_(ZSTD_createCCtx()) {
    ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, 1);
    in_.resize(ZSTD_CStreamInSize());
  }
  ~ZstdStream() override { ZSTD_freeCCtx(cctx_); }
  uint64_t progress_done() const override { return inner_->progress_done(); }
  uint64_t progress_total() const override { return inner_->progress_total(); }

  absl::StatusOr<size_t> Read(char* buf, size_t max) override {
    ZSTD_outBuffer out{buf, max, 0};
    while (out.pos < out.size && !done_) {
      if (input_.pos == input_.size && !eof_) {
        auto n = inner_->Read(in_.data(), in_.size());
        if (!n.ok()) return n.status();
        if (*n == 0) eof_ = true;
        input_ = ZSTD_inBuffer{in_.data(), *n, 0};
      }
      size_t rc = ZSTD_compressStream2(cctx_, &out, &input_,
                                       eof_ ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(rc)) return absl::InternalError(ZSTD_getErrorName(rc));
      if (eof_ && rc == 0) done_ = true;
    }
    return out.pos;
  }

 private:
  std::unique_ptr<ByteSource> inner_;
  ZSTD_CCtx* cctx_;
  std::string in_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  bool eof_ = false;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<ByteSource> GzipSource(std::unique_ptr<ByteSource> inner) {
  return std::make_unique<GzipStream>(std::move(inner));
}

std::unique_ptr<ByteSource> ZstdSource(std::unique_ptr<ByteSource> inner) {
  return std::make_unique<ZstdStream>(std::move(inner));
}

std::string DrainSource(ByteSource& source) {
  std::string out;
  std::string buf(64 * 1024, '\0');
  while (true) {
    absl::StatusOr<size_t> n = source.Read(buf.data(), buf.size());
    if (!n.ok() || *n == 0) return out;
    out.append(buf.data(), *n);
  }
}

std::string MinimalOvaXml(
    const std::vector<std::pair<std::string, uint64_t>>& disks) {
  std::string objects;
  for (const auto& [id, size] : disks) {
    absl::StrAppend(
        &objects,
        "<value><struct><member><name>class</name><value>VDI</value>"
        "</member><member><name>id</name><value>",
        id,
        "</value></member><member><name>snapshot</name><value><struct><member>"
        "<name>uuid</name><value>uuid-",
        id, "</value></member><member><name>virtual_size</name><value>", size,
        "</value></member></struct></value></member></struct></value>");
  }
  return absl::StrCat(
      "<value><struct><member><name>version</name><value><struct><member><name>"
      "export_vsn</name><value>2</value></member></struct></value></member>"
      "<member><name>objects</name><value><array><data>",
      objects, "</data></array></value></member></struct></value>");
}

}  // namespace vmb::sim
