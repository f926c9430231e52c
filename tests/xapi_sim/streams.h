// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulator's own writers for the byte streams XAPI's data handlers send:
// XVA (tar), raw disk images, dynamic VHD, and gzip / zstd wrappers. Each is a
// pull-model ByteSource, so a multi-GiB export never sits in memory.

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "tests/xapi_sim/disk_image.h"

namespace vmb::sim {

// A stream of bytes produced on demand. Not thread-safe.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Writes up to `max` bytes into buf. Returns 0 at the end of the stream.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t max) = 0;
  // Bytes of disk data consumed so far and in all (for task progress).
  virtual uint64_t progress_done() const { return 0; }
  virtual uint64_t progress_total() const { return 0; }
};

// A V7 tar header as XAPI (ocaml-tar) writes it: mode, uid, gid and mtime all
// zero, size as 11 octal digits + NUL, checksum as 7 octal digits + NUL, no
// ustar magic.
std::string TarHeader(absl::string_view name, uint64_t size);

// A source that produces its stream in pieces: Refill() fills pending_ with
// the next piece (leaving it empty at the end) and Read() drains it.
class BufferedSource : public ByteSource {
 public:
  absl::StatusOr<size_t> Read(char* buf, size_t max) final;

 protected:
  virtual void Refill() = 0;
  std::string pending_;
  size_t pending_pos_ = 0;
};

// Serves a fixed string.
class StringSource final : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t max) override;

 private:
  std::string data_;
  size_t pos_ = 0;
};

// One disk of an XVA: its `Ref:N` id and its bytes (must outlive the source).
struct XvaDisk {
  std::string ref_id;
  const DiskImage* image;
};

enum class XvaChecksum { kXxHash, kSha1 };

// An XVA as XAPI's /export writes it: `ova.xml` first, then for each disk in
// lexicographic order of its id the 1 MiB chunks `Ref:N/NNNNNNNN`, each
// followed by `.xxhash` (16 upper-case hex digits of XXH64) or `.checksum`
// (SHA-1 hex); zero chunks are skipped except the first and the last; the
// stream ends with two 512-byte zero blocks.
class XvaSource final : public BufferedSource {
 public:
  XvaSource(std::string ova_xml, std::vector<XvaDisk> disks,
            XvaChecksum checksum = XvaChecksum::kXxHash);
  uint64_t progress_done() const override { return done_; }
  uint64_t progress_total() const override { return total_; }

 private:
  void Refill() override;

  std::vector<XvaDisk> disks_;
  XvaChecksum checksum_;
  size_t disk_ = 0;
  uint64_t chunk_ = 0;
  bool finished_ = false;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

// The raw bytes of a disk (/export_raw_vdi?format=raw).
class RawSource final : public ByteSource {
 public:
  explicit RawSource(const DiskImage* image) : image_(image) {}
  absl::StatusOr<size_t> Read(char* buf, size_t max) override;
  uint64_t progress_done() const override { return pos_; }
  uint64_t progress_total() const override { return image_->size(); }

 private:
  const DiskImage* image_;
  uint64_t pos_ = 0;
};

// A dynamic VHD stream as /export_raw_vdi?format=vhd writes it: footer copy at
// 0, dynamic header at 512, BAT at 2048, then every allocated 2 MiB block in
// ascending order (a sector bitmap of 0xFF followed by the data), then the
// footer. A block is allocated when any of its bytes is non-zero.
class VhdSource final : public BufferedSource {
 public:
  static constexpr uint64_t kBlock = 2 * 1024 * 1024;
  // `uuid` is the 16 bytes of the disk's identity; `timestamp` is seconds
  // since 2000-01-01 UTC.
  VhdSource(const DiskImage* image, const std::string& uuid16,
            uint32_t timestamp);
  uint64_t progress_done() const override { return done_; }
  uint64_t progress_total() const override { return image_->size(); }

 private:
  void Refill() override;
  const DiskImage* image_;
  std::string footer_;
  std::vector<uint64_t> blocks_;  // allocated block numbers, ascending
  size_t next_block_ = 0;
  int stage_ = 0;  // 0 header, 1 blocks, 2 footer, 3 done
  uint64_t done_ = 0;
};

// Everything `source` gives until its end (or its first error), for tests.
std::string DrainSource(ByteSource& source);

// The smallest ova.xml an XVA verifier accepts: one VDI object per
// (Ref id, virtual size), its snapshot's uuid "uuid-<id>". For tests.
std::string MinimalOvaXml(
    const std::vector<std::pair<std::string, uint64_t>>& disks);

// Compresses another source as a whole: gzip (deflate in a gzip wrapper) or
// zstd frames, as XAPI's use_compression does.
std::unique_ptr<ByteSource> GzipSource(std::unique_ptr<ByteSource> inner);
std::unique_ptr<ByteSource> ZstdSource(std::unique_ptr<ByteSource> inner);

// VHD helpers shared with the simulator's tests.
uint32_t VhdChecksum(const char* data, size_t len);

}  // namespace vmb::sim
