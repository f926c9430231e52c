// SPDX-License-Identifier: Apache-2.0
#pragma once

// libcurl plumbing shared by the XML-RPC transport and the HTTP data plane:
// owning handles, the one translation of CURLcode into Status, and TLS set-up.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include <curl/curl.h>

namespace vmb {

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// How to trust a pool's HTTPS certificate. At most one of the three is used,
// in this order: insecure, pinned_sha256, ca_file; with none set the system
// CA store is used. Plain http:// URLs ignore all of them.
struct TlsOptions {
  // A PEM file of CA certificates (a pool's own CA, or its hosts'
  // self-signed certificates). Host names are verified.
  std::string ca_file;
  // The SHA-256 fingerprint of the exact certificate the host must present:
  // 64 hex digits, colons allowed ("AB:CD:..."), as `openssl x509
  // -fingerprint -sha256` prints it. Host names are not checked.
  std::string pinned_sha256;
  // Accept any certificate. Only for test set-ups with self-signed
  // certificates; never the default.
  bool insecure = false;
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

// Applies `tls` to a handle. `pin_storage` receives the binary pin and must
// outlive the handle's transfers. Errors: INVALID_ARGUMENT for a malformed
// fingerprint or an unreadable CA file.
absl::Status ApplyTlsOptions(CURL* handle, const TlsOptions& tls,
                             std::string* pin_storage);

// Normalises a SHA-256 fingerprint to 64 lower-case hex digits.
// Errors: INVALID_ARGUMENT.
absl::Status NormaliseSha256Fingerprint(absl::string_view text,
                                        std::string* out);

}  // namespace vmb
