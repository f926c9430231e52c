// SPDX-License-Identifier: Apache-2.0
#pragma once

// libcurl plumbing shared by the XML-RPC transport and the HTTP data plane:
// owning handles, the one translation of CURLcode into Status, and TLS set-up.

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include <curl/curl.h>

#include "common/xapi/tls_pins.h"

namespace vmb {

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// How to trust a pool's HTTPS certificates. Plain http:// URLs ignore all of
// it. For each https connection, in this order of precedence
// (docs/xenapi-client.md, "TLS"):
//   1. `insecure`: any certificate;
//   2. a pin of this host in `pins`: exactly a pinned certificate, whatever
//      names it carries;
//   3. no pin, and `pins` records on first use (HostPins::Options::tofu): the
//      certificate presented, which is recorded and pinned from then on;
//   4. `ca_file`, or with no `pins` the system CA store: the chain, and the
//      name of the host (its host.hostname when known, else the URL's host);
//   5. otherwise (a pin store, no pin for this host, no TOFU, no CA file):
//      refused before connecting, FAILED_PRECONDITION naming the host.
// Copies share the pin store.
struct TlsOptions {
  // A PEM file of CA certificates (a pool's own CA, or its hosts'
  // self-signed certificates).
  std::string ca_file;
  // Per-host SHA-256 pins, shared by every copy; null: none.
  std::shared_ptr<HostPins> pins;
  // Accept any certificate. Only for test set-ups with self-signed
  // certificates; never the default.
  bool insecure = false;
};

// The parts of an http(s) URL vmbackup uses: "scheme://host[:port][rest]".
struct HttpUrl {
  std::string scheme;  // lower case
  std::string host;    // without IPv6 brackets
  std::string port;    // empty: the scheme's
  std::string rest;    // "/path?query", may be empty
};
// Nothing for a URL without "://", with user info or an empty host.
std::optional<HttpUrl> ParseHttpUrl(absl::string_view url);

// Sets up the TLS of one curl handle's transfers, one at a time, for the
// host a transfer goes to, and checks the certificate that host presents by
// the precedence of TlsOptions. A pinned certificate is compared during the
// handshake, and again (with trust on first use: recorded) once the handshake
// has completed, before the request is sent: on every transfer, a reused
// connection too.
//
// Not thread-safe: one per curl handle, used by the thread running its
// transfer. It must outlive the handle (curl keeps connections across
// curl_easy_reset, and OpenSSL may call back into it on a renegotiation):
// declare it before the handle, or keep them together.
class CurlTlsCheck {
 public:
  enum class Mode { kPlain, kInsecure, kPinned, kTrustOnFirstUse, kCa };

  CurlTlsCheck() = default;
  CurlTlsCheck(const CurlTlsCheck&) = delete;
  CurlTlsCheck& operator=(const CurlTlsCheck&) = delete;

  // Sets CURLOPT_URL and the TLS options of `handle` (just reset) for a
  // request to `url`. `peer` is who the pool says is at the URL's host (its
  // address is the URL's host; may be empty, and is completed from
  // tls.pins). With a CA and a known host name other than the URL's host,
  // the URL given to curl names the host and CURLOPT_CONNECT_TO sends it to
  // the address, so that SNI and verification use the name.
  // Errors: INVALID_ARGUMENT for a malformed URL or an unreadable CA file;
  // FAILED_PRECONDITION (HostPins::NoPinError) for rule 5.
  absl::Status Apply(CURL* handle, const TlsOptions& tls,
                     const std::string& url, const HostIdentity& peer = {});

  // The error of a transfer that failed with `code`: this check's own
  // verdict when it refused the peer (a pin mismatch, a changed certificate
  // under TOFU, a failed record: see HostPins::Check), else
  // CurlCodeToStatus(code, context, error_buffer) (when the name check of
  // rule 4 failed, saying which name was checked).
  absl::Status TransferError(CURLcode code, absl::string_view context,
                             const char* error_buffer) const;

  Mode mode() const { return mode_; }
  // Who the last Apply was for, completed from the pin store.
  const HostIdentity& peer() const { return peer_; }
  // The name the certificate was checked against by CURLOPT_CONNECT_TO, or
  // empty.
  const std::string& verified_name() const { return verified_name_; }

 private:
  friend struct CurlTlsCallbacks;

  CURL* handle_ = nullptr;
  Mode mode_ = Mode::kPlain;
  std::shared_ptr<HostPins> pins_;
  HostIdentity peer_;
  std::string url_;  // what curl was given
  std::string verified_name_;
  std::string connect_to_entry_;
  CurlSlistPtr connect_to_;
  absl::Status refusal_;  // why a callback refused the peer
};

// Calls curl_global_init once. Mains call it before starting threads.
void InitCurlGlobal();

// The single translation of libcurl's error space. The message names
// `context` and curl's detail (`error_buffer` may be null). Connection
// failures and resets are UNAVAILABLE, timeouts DEADLINE_EXCEEDED, TLS
// verification failures FAILED_PRECONDITION, an abort from a callback
// CANCELLED, others INTERNAL.
absl::Status CurlCodeToStatus(CURLcode code, absl::string_view context,
                              const char* error_buffer = nullptr);

// Normalises a SHA-256 fingerprint to 64 lower-case hex digits.
// Errors: INVALID_ARGUMENT.
absl::Status NormaliseSha256Fingerprint(absl::string_view text,
                                        std::string* out);

}  // namespace vmb
