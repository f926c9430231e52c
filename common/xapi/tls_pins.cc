// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/tls_pins.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "common/base/status_util.h"
#include "common/xapi/curl_util.h"

namespace vmb {
namespace {

constexpr size_t kMaxPinsFileBytes = 1 << 20;
constexpr size_t kMaxKeyLength = 255;

// A key is a uuid, an IPv4 or IPv6 address or a DNS name: nothing that could
// break a line of the file.
bool ValidKey(absl::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
           c == '-' || c == '_' || c == ':' || c == '[' || c == ']' || c == '%';
  });
}

// For messages and the comment of a recorded line: printable, one line.
std::string Printable(absl::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxKeyLength)) {
    out.push_back(absl::ascii_isgraph(static_cast<unsigned char>(c)) && c != '#'
                      ? c
                      : '?');
  }
  return out;
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::StatusOr<std::string> ReadFd(int fd, const std::string& path) {
  std::string text;
  char buf[8192];
  off_t offset = 0;
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof(buf), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
    offset += n;
    if (text.size() > kMaxPinsFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pins file ", path, " is larger than 1 MiB; is it a pins file?"));
    }
  }
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

}  // namespace

HostIdentity IdentityOfHost(const HostRecord& host) {
  return {host.address, host.uuid, host.hostname};
}

std::string DescribeHost(const HostIdentity& host) {
  std::string out = Printable(host.address);
  std::vector<std::string> also;
  if (!host.uuid.empty())
    also.push_back(absl::StrCat("host ", Printable(host.uuid)));
  if (!host.hostname.empty() &&
      NormalisePinKey(host.hostname) != NormalisePinKey(host.address)) {
    also.push_back(Printable(host.hostname));
  }
  if (!also.empty())
    absl::StrAppend(&out, " (", absl::StrJoin(also, ", "), ")");
  return out;
}

std::string FormatSha256Fingerprint(absl::string_view hex) {
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    if (i > 0) out.push_back(':');
    out += absl::AsciiStrToUpper(hex.substr(i, 2));
  }
  return out;
}

std::string NormalisePinKey(absl::string_view key) {
  key = absl::StripAsciiWhitespace(key);
  if (absl::StartsWith(key, "[") && absl::EndsWith(key, "]")) {
    key = key.substr(1, key.size() - 2);
  }
  return absl::AsciiStrToLower(key);
}

HostPins::HostPins() : HostPins("", Options()) {}

HostPins::HostPins(std::string path, Options options)
    : path_(std::move(path)), options_(options) {}

absl::StatusOr<std::vector<PinLine>> HostPins::Parse(
    absl::string_view text, absl::string_view file_name) {
  std::vector<PinLine> out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    auto fail = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ":", number, ": ", what));
    };
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const size_t space = line.find_first_of(" \t");
    if (space == absl::string_view::npos) {
      return fail(
          "expected \"<host uuid or address> <SHA-256 fingerprint>\", found "
          "one word");
    }
    const absl::string_view key = line.substr(0, space);
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(space));
    // `openssl x509 -noout -fingerprint -sha256` prints
    // "sha256 Fingerprint=AB:CD:...".
    if (const size_t eq = value.rfind('='); eq != absl::string_view::npos) {
      if (!absl::StrContains(absl::AsciiStrToLower(value.substr(0, eq)),
                             "fingerprint")) {
        return fail(absl::StrCat("'", Printable(value),
                                 "' is not a SHA-256 fingerprint"));
      }
      value = value.substr(eq + 1);
    }
    if (!ValidKey(key)) {
      return fail(absl::StrCat("'", Printable(key),
                               "' is not a host uuid, address or name"));
    }
    PinLine pin;
    if (absl::Status s = NormaliseSha256Fingerprint(value, &pin.sha256);
        !s.ok()) {
      return fail(s.message());
    }
    pin.key = NormalisePinKey(key);
    pin.line = number;
    out.push_back(std::move(pin));
  }
  return out;
}

absl::StatusOr<std::shared_ptr<HostPins>> HostPins::Load(
    const std::string& path, const Options& options) {
  if (path.empty()) return absl::InvalidArgumentError("no pins file given");
  std::shared_ptr<HostPins> pins(new HostPins(path, options));
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && options.tofu) {
    // Created on the first record: its folder must be writable now, or the
    // first new host would fail in the middle of a run.
    const std::string dir = ParentDir(path);
    if (access(dir.c_str(), W_OK | X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pins file ", path, " does not exist and cannot be created in ", dir,
          " (", strerror(errno), ")"));
    }
    return pins;
  }
  if (fd < 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot open pins file ", path));
  }
  FdCloser closer(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot stat pins file ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("pins file ", path, " is not a regular file"));
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "pins file %s is writable by others (mode %04o): anyone could pin a "
        "certificate of their own; run chmod o-w %s",
        path, st.st_mode & 07777, path));
  }
  if (options.tofu && access(path.c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("pins file ", path,
                     " is not writable, so first-use certificates cannot be "
                     "recorded in it (",
                     strerror(errno), ")"));
  }
  absl::StatusOr<std::string> text = ReadFd(fd, path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<PinLine>> lines = Parse(*text, path);
  if (!lines.ok()) return lines.status();
  absl::MutexLock lock(&pins->mu_);
  for (const PinLine& l : *lines) pins->AddLocked(l.key, l.sha256);
  return pins;
}

void HostPins::AddLocked(const std::string& key, const std::string& sha256) {
  pins_[key].insert(sha256);
}

absl::Status HostPins::AddPin(absl::string_view key, absl::string_view sha256) {
  if (!ValidKey(NormalisePinKey(key))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", Printable(key), "' is not a host uuid, address or name"));
  }
  std::string hex;
  if (absl::Status s = NormaliseSha256Fingerprint(sha256, &hex); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  AddLocked(NormalisePinKey(key), hex);
  return absl::OkStatus();
}

HostIdentity HostPins::ResolveLocked(const HostIdentity& peer) const {
  HostIdentity out = peer;
  const std::string key = NormalisePinKey(peer.address);
  const HostIdentity* host = nullptr;
  if (auto it = hosts_.find(key); it != hosts_.end()) {
    host = &it->second;
  } else {  // a URL may name the host (--xapi-url https://xen1)
    for (const auto& [address, h] : hosts_) {
      if (!h.hostname.empty() && NormalisePinKey(h.hostname) == key) host = &h;
    }
  }
  if (host == nullptr) return out;
  if (out.uuid.empty()) out.uuid = host->uuid;
  if (out.hostname.empty()) out.hostname = host->hostname;
  return out;
}

HostIdentity HostPins::Resolve(const HostIdentity& peer) const {
  absl::MutexLock lock(&mu_);
  return ResolveLocked(peer);
}

HostPins::Lookup HostPins::FindLocked(const HostIdentity& peer) const {
  for (const std::string* key : {&peer.uuid, &peer.address, &peer.hostname}) {
    if (key->empty()) continue;
    auto it = pins_.find(NormalisePinKey(*key));
    if (it == pins_.end() || it->second.empty()) continue;
    return {it->first,
            std::vector<std::string>(it->second.begin(), it->second.end())};
  }
  return {};
}

HostPins::Lookup HostPins::Find(const HostIdentity& peer) const {
  absl::MutexLock lock(&mu_);
  return FindLocked(ResolveLocked(peer));
}

absl::Status HostPins::MismatchError(const HostIdentity& peer,
                                     const Lookup& pins,
                                     absl::string_view presented) const {
  std::vector<std::string> expected;
  for (const std::string& p : pins.sha256) {
    expected.push_back(FormatSha256Fingerprint(p));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "TLS: host ", DescribeHost(peer), " presented the certificate ",
      FormatSha256Fingerprint(presented), ", but its pin (", pins.key, " in ",
      path_.empty() ? std::string("the pins given") : path_, ") is ",
      absl::StrJoin(expected, " or "),
      "; if the host's certificate was replaced, put its new fingerprint "
      "there"));
}

absl::Status HostPins::NoPinError(const HostIdentity& peer) const {
  const std::string key = !peer.uuid.empty() ? peer.uuid : peer.address;
  return absl::FailedPreconditionError(absl::StrCat(
      "TLS: no certificate pin for host ", DescribeHost(peer),
      ": add the line \"", Printable(key), " <SHA-256 fingerprint>\" to ",
      path_.empty() ? std::string("a pins file (--tls-pins)") : path_,
      " (the fingerprint of the host's /etc/xensource/xapi-ssl.pem, as "
      "`openssl x509 -noout -fingerprint -sha256` prints it), or record it "
      "on first use (--tls-pins-tofu), or trust a CA file (--tls-ca)"));
}

absl::Status HostPins::Check(const HostIdentity& peer_in,
                             absl::string_view sha256_hex) {
  absl::MutexLock lock(&mu_);
  const HostIdentity peer = ResolveLocked(peer_in);
  const std::string presented = absl::AsciiStrToLower(sha256_hex);
  Lookup pins = FindLocked(peer);
  if (pins.sha256.empty()) {
    if (!options_.tofu || path_.empty()) return NoPinError(peer);
    if (absl::Status s = RecordFirstUse(peer, presented); !s.ok()) return s;
    pins = FindLocked(peer);
  }
  if (std::find(pins.sha256.begin(), pins.sha256.end(), presented) ==
      pins.sha256.end()) {
    return MismatchError(peer, pins, presented);
  }
  if (peer.uuid.empty()) {
    accepted_unidentified_.emplace(NormalisePinKey(peer.address), presented);
  }
  return absl::OkStatus();
}

absl::Status HostPins::RecordFirstUse(const HostIdentity& peer,
                                      absl::string_view presented) {
  // The uuid when known (it survives an address change), else the address.
  std::string key = NormalisePinKey(peer.uuid);
  if (!ValidKey(key)) key = NormalisePinKey(peer.address);
  if (!ValidKey(key)) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS: cannot record a certificate for host '",
                     Printable(peer.address), "': not a usable pin key"));
  }
  const std::string what =
      absl::StrCat("recording the certificate of host ", DescribeHost(peer),
                   " in pins file ", path_);
  bool created = false;
  int fd = open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // O_EXCL: never through a symbolic link someone put there.
    fd = open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
              0600);
    created = fd >= 0;
    if (fd < 0 && errno == EEXIST) {
      fd = open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    }
  }
  if (fd < 0) return ErrnoToStatus(errno, what);
  FdCloser closer(fd);
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoToStatus(errno, what);
  }
  // Another process may have recorded hosts since we read the file.
  absl::StatusOr<std::string> text = ReadFd(fd, path_);
  if (!text.ok()) return Annotate(text.status(), what);
  absl::StatusOr<std::vector<PinLine>> lines = Parse(*text, path_);
  if (!lines.ok()) return Annotate(lines.status(), what);
  for (const PinLine& l : *lines) AddLocked(l.key, l.sha256);
  if (!FindLocked(peer).sha256.empty())
    return absl::OkStatus();  // caller checks

  std::string record;
  if (!text->empty() && text->back() != '\n') record.push_back('\n');
  absl::StrAppend(
      &record, "# ", DescribeHost(peer), ": trusted on first use ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()),
      "\n", key, " ", FormatSha256Fingerprint(presented), "\n");
  if (absl::Status s = WriteAll(fd, record, path_); !s.ok()) {
    return Annotate(s, what);
  }
  if (fsync(fd) != 0) return ErrnoToStatus(errno, what);
  if (created) {
    const std::string dir = ParentDir(path_);
    const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return ErrnoToStatus(errno, what);
    FdCloser dir_closer(dfd);
    if (fsync(dfd) != 0) return ErrnoToStatus(errno, what);
  }
  AddLocked(key, std::string(presented));
  return absl::OkStatus();
}

absl::Status HostPins::SetPoolHosts(const std::vector<HostIdentity>& hosts) {
  absl::MutexLock lock(&mu_);
  hosts_.clear();
  for (const HostIdentity& h : hosts) {
    if (!h.address.empty()) hosts_[NormalisePinKey(h.address)] = h;
  }
  std::set<std::pair<std::string, std::string>> earlier;
  earlier.swap(accepted_unidentified_);
  for (const auto& [address, presented] : earlier) {
    const HostIdentity peer = ResolveLocked({address, "", ""});
    const Lookup pins = FindLocked(peer);
    if (pins.sha256.empty() || std::find(pins.sha256.begin(), pins.sha256.end(),
                                         presented) != pins.sha256.end()) {
      continue;
    }
    return Annotate(MismatchError(peer, pins, presented),
                    "the certificate accepted at ", Printable(address),
                    " before the pool's hosts were known does not match");
  }
  return absl::OkStatus();
}

}  // namespace vmb
