// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/curl_util.h"

#include <unistd.h>

#include <mutex>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace vmb {
namespace {

// Replaces OpenSSL's chain verification with a comparison of the leaf
// certificate's SHA-256 against the pin. `arg` is the 32-byte pin, owned by
// the handle's private data and alive for the whole transfer.
int VerifyPinned(X509_STORE_CTX* ctx, void* arg) {
  const auto* pin = static_cast<const std::string*>(arg);
  X509* cert = X509_STORE_CTX_get0_cert(ctx);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &len) != 1 ||
      len != 32 ||
      std::string(reinterpret_cast<const char*>(md), len) != *pin) {
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  return 1;
}

CURLcode InstallPin(CURL* /*handle*/, void* ssl_ctx, void* userptr) {
  SSL_CTX_set_cert_verify_callback(static_cast<SSL_CTX*>(ssl_ctx),
                                   &VerifyPinned, userptr);
  return CURLE_OK;
}

}  // namespace

void InitCurlGlobal() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_ALL); });
}

absl::Status CurlCodeToStatus(CURLcode code, absl::string_view context,
                              const char* error_buffer) {
  if (code == CURLE_OK) return absl::OkStatus();
  std::string detail = error_buffer != nullptr && error_buffer[0] != '\0'
                           ? std::string(error_buffer)
                           : std::string(curl_easy_strerror(code));
  std::string message = absl::StrCat(context, ": ", detail);
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return absl::UnavailableError(message);
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return absl::FailedPreconditionError(message);
    case CURLE_ABORTED_BY_CALLBACK:
      return absl::CancelledError(message);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::InvalidArgumentError(message);
    case CURLE_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status NormaliseSha256Fingerprint(absl::string_view text,
                                        std::string* out) {
  std::string hex;
  for (char c : text) {
    if (c == ':' || absl::ascii_isspace(static_cast<unsigned char>(c)))
      continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          "a SHA-256 certificate fingerprint holds only hex digits and colons");
    }
    hex.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a SHA-256 certificate fingerprint has 64 hex digits, not ",
        hex.size()));
  }
  *out = std::move(hex);
  return absl::OkStatus();
}

absl::Status ApplyTlsOptions(CURL* handle, const TlsOptions& tls,
                             std::string* pin_storage) {
  if (tls.insecure) {
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
    return absl::OkStatus();
  }
  if (!tls.pinned_sha256.empty()) {
    std::string hex;
    absl::Status s = NormaliseSha256Fingerprint(tls.pinned_sha256, &hex);
    if (!s.ok()) return s;
    *pin_storage = absl::HexStringToBytes(hex);
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(handle, CURLOPT_SSL_CTX_FUNCTION, &InstallPin);
    curl_easy_setopt(handle, CURLOPT_SSL_CTX_DATA, pin_storage);
    return absl::OkStatus();
  }
  if (!tls.ca_file.empty()) {
    if (access(tls.ca_file.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read CA file ", tls.ca_file));
    }
    curl_easy_setopt(handle, CURLOPT_CAINFO, tls.ca_file.c_str());
  }
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
  return absl::OkStatus();
}

}  // namespace vmb
