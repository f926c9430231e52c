// SPDX-License-Identifier: Apache-2.0
#pragma once

// Which certificate each pool host may present. Every XenServer / XCP-ng host
// has its own self-signed certificate, so a pin is per host: a file of lines
//
//   # key                                  SHA-256 fingerprint
//   10.0.0.1                               AB:CD:...:EF
//   3f1c9d2e-6c1b-4b1e-9a53-2f5e1a7c0b11   0123...cdef
//
// where the key is a host's UUID, or the address (or name) vmbackup connects
// to, and the fingerprint is what `openssl x509 -noout -fingerprint -sha256`
// prints. With trust on first use (TOFU) a host that has no pin yet has the
// certificate it presents appended to the file, and is pinned from then on.
// docs/xenapi-client.md ("TLS") has the rules.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<HostPins> pins,
//                    HostPins::Load("/etc/vmbackup/pins", {.tofu = true}));
//   TlsOptions tls;
//   tls.pins = pins;                       // shared by every copy of tls
//   ...                                    // log in, read the pool's hosts
//   RETURN_IF_ERROR(pins->SetPoolHosts(identities));

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "common/xapi/xenapi_records.h"

namespace vmb {

// Who a connection is meant to reach. `address` is what is connected to (a
// host's host.address, or the host in a URL); `uuid` and `hostname` are what
// the pool says of the host at that address (host.uuid, host.hostname), empty
// when not known (the first login, before the pool's hosts are read).
struct HostIdentity {
  std::string address;
  std::string uuid;
  std::string hostname;
};

// The identity of a pool host from its record.
HostIdentity IdentityOfHost(const HostRecord& host);

// "10.0.0.2 (host 3f1c..., xen2)": for messages.
std::string DescribeHost(const HostIdentity& host);

// 64 lower-case hex digits as "AB:CD:...", the way openssl prints them.
std::string FormatSha256Fingerprint(absl::string_view hex);

// A host address, name or uuid as a pin key: lower case, IPv6 brackets
// removed.
std::string NormalisePinKey(absl::string_view key);

// One line of a pins file.
struct PinLine {
  std::string key;     // normalised (NormalisePinKey)
  std::string sha256;  // 64 lower-case hex digits
  int line = 0;
};

// Thread-safe: every method may be called from any thread; one store is
// shared by the XML-RPC transport and all data-plane transfers of a run
// (TlsOptions holds a shared_ptr). Recording a first-use certificate takes
// an exclusive flock on the file, so two processes sharing it do not both
// record a host.
class HostPins {
 public:
  struct Options {
    // Record the certificate of a host without a pin in the file (and pin
    // it from then on).
    bool tofu = false;
  };

  // Reads the pins file `path`. With `options.tofu` a missing file is
  // created (mode 0600) when the first certificate is recorded.
  // Errors: NOT_FOUND when the file is missing (and no TOFU);
  // INVALID_ARGUMENT for a malformed line ("FILE:LINE: ...") or a file over
  // 1 MiB; FAILED_PRECONDITION when it is not a regular file or is writable
  // by others (anyone could add a pin), or, with TOFU, when the file or its
  // folder cannot be written; others as ErrnoToStatus maps a read error.
  static absl::StatusOr<std::shared_ptr<HostPins>> Load(const std::string& path,
                                                        const Options& options);

  // A store without a file: pins come from AddPin only; no TOFU.
  HostPins();

  HostPins(const HostPins&) = delete;
  HostPins& operator=(const HostPins&) = delete;

  // Parses the text of a pins file (see the top of this header): one
  // "<key> <sha256>" a line, `#` starts a comment, blank lines are ignored;
  // a fingerprint may carry openssl's "sha256 Fingerprint=" prefix. A key may
  // appear on several lines: any of its fingerprints is accepted.
  // Errors: INVALID_ARGUMENT "<file_name>:<line>: <what is wrong>".
  static absl::StatusOr<std::vector<PinLine>> Parse(
      absl::string_view text, absl::string_view file_name);

  // Adds a pin in memory (not written to the file): what --tls-fingerprint
  // does for the host of --xapi-url. Errors: INVALID_ARGUMENT for a malformed
  // key or fingerprint.
  absl::Status AddPin(absl::string_view key, absl::string_view sha256)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Tells the store who the pool's hosts are, so that a connection to an
  // address finds the host's pins by its uuid and name too. Call it once the
  // hosts are read; later calls replace the list.
  // Errors: FAILED_PRECONDITION when a certificate accepted before (at the
  // login, when the hosts were not known) is not one the pins of that host,
  // now known by its uuid, accept; the message names host, key and both
  // fingerprints.
  absl::Status SetPoolHosts(const std::vector<HostIdentity>& hosts)
      ABSL_LOCKS_EXCLUDED(mu_);

  // `peer` with the uuid and hostname the pool gave for its address (or, for
  // a URL that names a host, for its host name), where `peer` has none.
  HostIdentity Resolve(const HostIdentity& peer) const ABSL_LOCKS_EXCLUDED(mu_);

  // The pins that apply to `peer`: those of the first key with any, in the
  // order uuid, address, hostname. `key` is empty when the host has none.
  struct Lookup {
    std::string key;
    std::vector<std::string> sha256;  // 64 lower-case hex digits each
  };
  Lookup Find(const HostIdentity& peer) const ABSL_LOCKS_EXCLUDED(mu_);

  // The decision on a certificate `peer` presented, on a connection whose
  // TLS handshake completed: OK when a pin of the host accepts it, or when
  // the host has no pin and TOFU recorded it (durably: appended to the file
  // and fsync'ed before OK is returned).
  // Errors: FAILED_PRECONDITION when the host's pins do not accept it (the
  // message names host, expected and presented fingerprints), or when it has
  // no pin and there is no TOFU; errors writing the file (as ErrnoToStatus
  // maps them), naming it. Nothing is recorded on error.
  absl::Status Check(const HostIdentity& peer, absl::string_view sha256_hex)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The FAILED_PRECONDITION a connection to `peer` gets when it has no pin
  // and there is neither TOFU nor a CA file; says how to add one.
  absl::Status NoPinError(const HostIdentity& peer) const;

  bool tofu() const { return options_.tofu; }
  const std::string& path() const { return path_; }

 private:
  HostPins(std::string path, Options options);

  Lookup FindLocked(const HostIdentity& peer) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HostIdentity ResolveLocked(const HostIdentity& peer) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MismatchError(const HostIdentity& peer, const Lookup& pins,
                             absl::string_view presented) const;
  // Appends the record for `peer` under the file's flock, unless another
  // process recorded the host meanwhile (then checks against that).
  absl::Status RecordFirstUse(const HostIdentity& peer,
                              absl::string_view presented)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddLocked(const std::string& key, const std::string& sha256)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;  // empty: no file
  const Options options_;
  mutable absl::Mutex mu_;
  // key -> accepted fingerprints (lower-case hex).
  std::map<std::string, std::set<std::string>> pins_ ABSL_GUARDED_BY(mu_);
  // normalised address -> the pool's identity of the host there.
  std::map<std::string, HostIdentity> hosts_ ABSL_GUARDED_BY(mu_);
  // {address, fingerprint} of certificates accepted for hosts whose uuid was
  // not known yet, for the check in SetPoolHosts.
  std::set<std::pair<std::string, std::string>> accepted_unidentified_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb
