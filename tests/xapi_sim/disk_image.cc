// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/disk_image.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include <openssl/evp.h>

namespace vmb::sim {
namespace {

inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t Word(uint64_t seed, uint64_t index) {
  return Mix(seed + (index + 1) * 0x9e3779b97f4a7c15ULL);
}

// Disk bytes are the words in little-endian order on every machine.
inline void StoreLe64(char* out, uint64_t w) {
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>(w >> (8 * b));
}

}  // namespace

uint64_t GeneratedDisk::SeedFor(const std::string& vm_uuid,
                                const std::string& userdevice) {
  // FNV-1a over "uuid/userdevice", then mixed.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : absl::StrCat(vm_uuid, "/", userdevice)) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return Mix(h);
}

bool GeneratedDisk::ExtentIsZero(uint64_t extent) const {
  const uint64_t chunk = extent * kExtent / kChunk;
  const uint64_t kind = Mix(seed_ ^ (chunk * 0x632be59bd9b4e019ULL)) % 8;
  if (kind < 3) return true;                // whole chunk zero
  if (kind == 3) return (extent % 2) == 1;  // every other extent zero
  return false;
}

void GeneratedDisk::Read(uint64_t offset, char* buf, size_t len) const {
  while (len > 0) {
    const uint64_t extent = offset / kExtent;
    const uint64_t extent_end = std::min((extent + 1) * kExtent, size_);
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(len, extent_end - offset));
    if (ExtentIsZero(extent)) {
      memset(buf, 0, n);
    } else {
      uint64_t pos = offset;
      char* out = buf;
      size_t left = n;
      // Unaligned head.
      if (pos % 8 != 0) {
        char w[8];
        StoreLe64(w, Word(seed_, pos / 8));
        const size_t skip = pos % 8;
        const size_t take = std::min<size_t>(8 - skip, left);
        memcpy(out, w + skip, take);
        pos += take;
        out += take;
        left -= take;
      }
      // Aligned body: one splitmix64 per 8 bytes.
      uint64_t index = pos / 8;
      while (left >= 8) {
        StoreLe64(out, Word(seed_, index++));
        out += 8;
        left -= 8;
      }
      if (left > 0) {
        char w[8];
        StoreLe64(w, Word(seed_, index));
        memcpy(out, w, left);
      }
    }
    offset += n;
    buf += n;
    len -= n;
  }
}

bool GeneratedDisk::IsZero(uint64_t offset, uint64_t len) const {
  if (len == 0) return true;
  const uint64_t end = std::min(offset + len, size_);
  for (uint64_t e = offset / kExtent; e * kExtent < end; ++e) {
    if (!ExtentIsZero(e)) return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<FileDisk>> FileDisk::Open(
    const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path));
  }
  return std::unique_ptr<FileDisk>(
      new FileDisk(fd, static_cast<uint64_t>(st.st_size)));
}

FileDisk::~FileDisk() { close(fd_); }

void ZeroDisk::Read(uint64_t, char* buf, size_t len) const {
  memset(buf, 0, len);
}

void PrefixOverlayDisk::Read(uint64_t offset, char* buf, size_t len) const {
  const uint64_t split = top_->size();
  if (offset < split) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(len, split - offset));
    top_->Read(offset, buf, n);
    offset += n;
    buf += n;
    len -= n;
  }
  if (len > 0) base_->Read(offset, buf, len);
}

bool PrefixOverlayDisk::IsZero(uint64_t offset, uint64_t len) const {
  const uint64_t split = top_->size();
  const uint64_t end = offset + len;
  if (offset < split && !top_->IsZero(offset, std::min(end, split) - offset)) {
    return false;
  }
  return end <= split ||
         base_->IsZero(std::max(offset, split), end - std::max(offset, split));
}

void FileDisk::Read(uint64_t offset, char* buf, size_t len) const {
  while (len > 0) {
    ssize_t n = pread(fd_, buf, len, static_cast<off_t>(offset));
    if (n <= 0) {
      memset(buf, 0, len);  // a short file reads as zeros, like a sparse tail
      return;
    }
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

bool FileDisk::IsZero(uint64_t offset, uint64_t len) const {
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(len, 1 << 20)));
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
    Read(offset, buf.data(), n);
    for (size_t i = 0; i < n; ++i) {
      if (buf[i] != 0) return false;
    }
    offset += n;
    len -= n;
  }
  return true;
}

std::string DiskSha256(const DiskImage& disk) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(4 << 20);
  for (uint64_t off = 0; off < disk.size();) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(buf.size(), disk.size() - off));
    disk.Read(off, buf.data(), n);
    EVP_DigestUpdate(ctx, buf.data(), n);
    off += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(ctx, md, &md_len);
  EVP_MD_CTX_free(ctx);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), md_len));
}

}  // namespace vmb::sim
