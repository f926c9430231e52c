// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace vmb::sim {

// The bytes of one virtual disk, readable at any offset. Thread-safe for
// concurrent reads.
class DiskImage {
 public:
  virtual ~DiskImage() = default;
  virtual uint64_t size() const = 0;
  // Fills buf with bytes [offset, offset + len); the range must lie within
  // the disk.
  virtual void Read(uint64_t offset, char* buf, size_t len) const = 0;
  // True if every byte of [offset, offset + len) is zero. May say false for a
  // range that happens to be zero (like an allocated but zeroed block).
  virtual bool IsZero(uint64_t offset, uint64_t len) const = 0;
};

// A disk whose content is a pure function of (seed, offset): cheap to make
// (several GB/s) and to check. The disk is cut into 64 KiB extents; whole
// 1 MiB chunks are zero with probability 3/8, some chunks have every other
// extent zero, and the rest is pseudo-random data (splitmix64 of the seed and
// the 8-byte word index). So zero-chunk skipping in XVA and unallocated
// blocks in VHD are both exercised.
class GeneratedDisk final : public DiskImage {
 public:
  static constexpr uint64_t kExtent = 64 * 1024;
  static constexpr uint64_t kChunk = 1024 * 1024;

  GeneratedDisk(uint64_t seed, uint64_t size) : seed_(seed), size_(size) {}
  uint64_t size() const override { return size_; }
  void Read(uint64_t offset, char* buf, size_t len) const override;
  bool IsZero(uint64_t offset, uint64_t len) const override;

  // The seed the simulator derives for a disk of a VM: a hash of the VM's
  // uuid and the disk's userdevice.
  static uint64_t SeedFor(const std::string& vm_uuid,
                          const std::string& userdevice);

 private:
  bool ExtentIsZero(uint64_t extent) const;
  const uint64_t seed_;
  const uint64_t size_;
};

// A disk of zeros, as VDI.create makes one.
class ZeroDisk final : public DiskImage {
 public:
  explicit ZeroDisk(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  void Read(uint64_t, char* buf, size_t len) const override;
  bool IsZero(uint64_t, uint64_t) const override { return true; }

 private:
  const uint64_t size_;
};

// A disk stored in a (sparse) file, as the simulator keeps imported disks.
class FileDisk final : public DiskImage {
 public:
  // Opens `path` read-only. The file's size is the disk's size.
  static absl::StatusOr<std::unique_ptr<FileDisk>> Open(
      const std::string& path);
  ~FileDisk() override;
  uint64_t size() const override { return size_; }
  void Read(uint64_t offset, char* buf, size_t len) const override;
  bool IsZero(uint64_t offset, uint64_t len) const override;

 private:
  FileDisk(int fd, uint64_t size) : fd_(fd), size_(size) {}
  const int fd_;
  const uint64_t size_;
};

// A disk whose start was overwritten: the first top->size() bytes come from
// `top`, the rest from `base` (as a PUT /import_raw_vdi shorter than the disk
// leaves it). `top` must not be larger than `base`.
class PrefixOverlayDisk final : public DiskImage {
 public:
  PrefixOverlayDisk(std::shared_ptr<const DiskImage> base,
                    std::unique_ptr<const DiskImage> top)
      : base_(std::move(base)), top_(std::move(top)) {}
  uint64_t size() const override { return base_->size(); }
  void Read(uint64_t offset, char* buf, size_t len) const override;
  bool IsZero(uint64_t offset, uint64_t len) const override;

 private:
  const std::shared_ptr<const DiskImage> base_;
  const std::unique_ptr<const DiskImage> top_;
};

// SHA-256 (lower-case hex) of a disk's bytes, for tests and /sim/vdi.
std::string DiskSha256(const DiskImage& disk);

}  // namespace vmb::sim
