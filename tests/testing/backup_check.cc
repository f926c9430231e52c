// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/backup_check.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

namespace vmb::testing {
namespace {

class Hash {
 public:
  Hash() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~Hash() { EVP_MD_CTX_free(ctx_); }
  void Update(const char* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(md), n));
  }

 private:
  EVP_MD_CTX* ctx_;
};

// Reads a file, decompressing by extension, in pieces.
absl::Status ReadDecompressed(
    const std::string& path,
    const std::function<void(const char*, size_t)>& out) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(path.c_str(), "rb"), fclose);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<char> in(1 << 16), buf(1 << 20);
  if (absl::EndsWith(path, ".gz")) {
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
      return absl::InternalError("zlib");
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      const size_t n = fread(in.data(), 1, in.size(), f.get());
      if (n == 0) break;
      z.next_in = reinterpret_cast<Bytef*>(in.data());
      z.avail_in = static_cast<uInt>(n);
      while (z.avail_in > 0 && rc != Z_STREAM_END) {
        z.next_out = reinterpret_cast<Bytef*>(buf.data());
        z.avail_out = static_cast<uInt>(buf.size());
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
          inflateEnd(&z);
          return absl::DataLossError(absl::StrCat("gzip error in ", path));
        }
        out(buf.data(), buf.size() - z.avail_out);
      }
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) return absl::DataLossError("truncated gzip");
    return absl::OkStatus();
  }
  if (absl::EndsWith(path, ".zst")) {
    std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> z(
        ZSTD_createDStream(), ZSTD_freeDStream);
    ZSTD_initDStream(z.get());
    size_t last = 1;
    while (true) {
      const size_t n = fread(in.data(), 1, in.size(), f.get());
      if (n == 0) break;
      ZSTD_inBuffer zin{in.data(), n, 0};
      while (zin.pos < zin.size) {
        ZSTD_outBuffer zout{buf.data(), buf.size(), 0};
        last = ZSTD_decompressStream(z.get(), &zout, &zin);
        if (ZSTD_isError(last)) return absl::DataLossError("zstd error");
        out(buf.data(), zout.pos);
      }
    }
    if (last != 0) return absl::DataLossError("truncated zstd");
    return absl::OkStatus();
  }
  while (true) {
    const size_t n = fread(buf.data(), 1, buf.size(), f.get());
    if (n == 0) break;
    out(buf.data(), n);
  }
  return absl::OkStatus();
}

uint64_t Octal(const std::string& header, size_t at, size_t len) {
  uint64_t v = 0;
  for (size_t i = at; i < at + len; ++i) {
    const char c = header[i];
    if (c < '0' || c > '7') break;
    v = v * 8 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// A tiny push tar parser that hashes disks as their chunks go by.
class XvaHasher {
 public:
  void Feed(const char* p, size_t n) {
    while (n > 0) {
      if (state_ == kHeader) {
        const size_t take = std::min(n, 512 - header_.size());
        header_.append(p, take);
        p += take;
        n -= take;
        if (header_.size() == 512) OnHeader();
        continue;
      }
      const size_t take =
          static_cast<size_t>(std::min<uint64_t>(n, remaining_));
      if (state_ == kChunk) hashes_[disk_]->Update(p, take);
      p += take;
      n -= take;
      remaining_ -= take;
      if (remaining_ > 0) continue;
      if (state_ == kChunk && pad_ > 0) {
        state_ = kSkip;
        remaining_ = pad_;
      } else {
        state_ = kHeader;
      }
    }
  }
  std::map<std::string, std::string> Finish() {
    std::map<std::string, std::string> out;
    for (auto& [disk, hash] : hashes_) out[disk] = hash->Hex();
    return out;
  }

 private:
  enum State { kHeader, kChunk, kSkip };
  void OnHeader() {
    const std::string name = header_.substr(0, header_.find('\0'));
    const uint64_t size = Octal(header_, 124, 11);
    header_.clear();
    const uint64_t padded = (size + 511) / 512 * 512;
    state_ = padded == 0 ? kHeader : kSkip;
    remaining_ = padded;
    pad_ = 0;
    const size_t slash = name.find('/');
    if (slash == std::string::npos || absl::StrContains(name, ".")) return;
    const std::string disk = name.substr(0, slash);
    int64_t number = 0;
    if (!absl::SimpleAtoi(name.substr(slash + 1), &number)) return;
    auto& hash = hashes_[disk];
    if (!hash) hash = std::make_unique<Hash>();
    int64_t& next = next_[disk];
    static const std::string zeros(1 << 20, '\0');
    for (; next < number; ++next) hash->Update(zeros.data(), zeros.size());
    next = number + 1;
    disk_ = disk;
    if (size > 0) {
      state_ = kChunk;
      remaining_ = size;
      pad_ = padded - size;
    }
  }

  State state_ = kHeader;
  std::string header_;
  uint64_t remaining_ = 0;
  uint64_t pad_ = 0;
  std::string disk_;
  std::map<std::string, std::unique_ptr<Hash>> hashes_;
  std::map<std::string, int64_t> next_;
};

absl::Status Walk(const std::string& root, const std::string& rel,
                  std::map<std::string, std::string>& out) {
  const std::string dir = rel.empty() ? root : absl::StrCat(root, "/", rel);
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) return absl::NotFoundError(absl::StrCat("cannot list ", dir));
  while (dirent* e = readdir(d.get())) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string child_rel =
        rel.empty() ? name : absl::StrCat(rel, "/", name);
    const std::string path = absl::StrCat(root, "/", child_rel);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return absl::InternalError("lstat");
    if (S_ISDIR(st.st_mode)) {
      out[child_rel + "/"] = "dir";
      absl::Status s = Walk(root, child_rel, out);
      if (!s.ok()) return s;
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      const ssize_t n = readlink(path.c_str(), target, sizeof(target));
      out[child_rel] = absl::StrCat("-> ", std::string(target, n > 0 ? n : 0));
    } else {
      absl::StatusOr<std::string> sha = FileSha256(path);
      if (!sha.ok()) return sha.status();
      out[child_rel] = *sha;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> XvaDiskSha256s(
    const std::string& path) {
  XvaHasher hasher;
  absl::Status s = ReadDecompressed(
      path, [&](const char* p, size_t n) { hasher.Feed(p, n); });
  if (!s.ok()) return s;
  return hasher.Finish();
}

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  Hash hash;
  std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(path.c_str(), "rb"), fclose);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<char> buf(1 << 20);
  while (true) {
    const size_t n = fread(buf.data(), 1, buf.size(), f.get());
    if (n == 0) break;
    hash.Update(buf.data(), n);
  }
  return hash.Hex();
}

absl::StatusOr<std::map<std::string, std::string>> TreeDigest(
    const std::string& dir) {
  std::map<std::string, std::string> out;
  absl::Status s = Walk(dir, "", out);
  if (!s.ok()) return s;
  return out;
}

const std::vector<std::string>& HostileVmNames() {
  static const auto* names =
      new std::vector<std::string>{"../../etc",
                                   "/abs",
                                   "a/b",
                                   ".",
                                   "..",
                                   "",
                                   std::string(300, 'n'),
                                   "$(reboot)",
                                   "`id`",
                                   ";rm -rf /",
                                   "line\r\nBcc: evil@example.com",
                                   "\xe2\x80\xae"
                                   "gpj.exe",  // RIGHT-TO-LEFT OVERRIDE
                                   "\xf0\x9f\x99\x82 emoji",
                                   "name:with,colon",
                                   "a_b",
                                   "_",
                                   "__"};
  return *names;
}

}  // namespace vmb::testing
