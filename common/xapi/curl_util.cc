// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/curl_util.h"

#include <unistd.h>

#include <mutex>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/base/status_util.h"

namespace vmb {

// The callbacks libcurl and OpenSSL call with a CurlTlsCheck.
struct CurlTlsCallbacks {
  // SHA-256 of a certificate as lower-case hex; empty on failure.
  static std::string Fingerprint(X509* cert) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &len) != 1 ||
        len != 32) {
      return "";
    }
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(md), len));
  }

  // Replaces OpenSSL's chain verification. Pinned: the leaf certificate must
  // be a pin of the host. Trust on first use: anything, for now; it is
  // checked, and recorded, once the handshake has completed (OnPrerequest),
  // so that nothing is recorded for a handshake that fails later.
  static int Verify(X509_STORE_CTX* ctx, void* arg) {
    auto* check = static_cast<CurlTlsCheck*>(arg);
    const std::string presented = Fingerprint(X509_STORE_CTX_get0_cert(ctx));
    absl::Status s = presented.empty()
                         ? absl::FailedPreconditionError(
                               "TLS: cannot compute the certificate's SHA-256")
                     : check->mode_ == CurlTlsCheck::Mode::kPinned
                         ? check->pins_->Check(check->peer_, presented)
                         : absl::OkStatus();
    if (!s.ok()) {
      check->refusal_ = s;
      X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
      return 0;
    }
    return 1;
  }

  static CURLcode InstallVerify(CURL* /*handle*/, void* ssl_ctx,
                                void* userptr) {
    SSL_CTX_set_cert_verify_callback(static_cast<SSL_CTX*>(ssl_ctx), &Verify,
                                     userptr);
    return CURLE_OK;
  }

  // Called once the connection is established (or reused) and before the
  // request goes out: the certificate of the session, whichever way it was
  // made, must satisfy the pins (with TOFU: is recorded).
  static int OnPrerequest(void* userptr, char* /*primary_ip*/,
                          char* /*local_ip*/, int /*primary_port*/,
                          int /*local_port*/) {
    auto* check = static_cast<CurlTlsCheck*>(userptr);
    const curl_tlssessioninfo* info = nullptr;
    SSL* ssl = nullptr;
    if (curl_easy_getinfo(check->handle_, CURLINFO_TLS_SSL_PTR, &info) ==
            CURLE_OK &&
        info != nullptr && info->backend == CURLSSLBACKEND_OPENSSL) {
      ssl = static_cast<SSL*>(info->internals);
    }
    if (ssl == nullptr || SSL_is_init_finished(ssl) != 1) {
      check->refusal_ = absl::FailedPreconditionError(
          "TLS: the connection's certificate cannot be checked (no completed "
          "OpenSSL session)");
      return CURL_PREREQFUNC_ABORT;
    }
    const std::string presented = Fingerprint(SSL_get0_peer_certificate(ssl));
    absl::Status s =
        presented.empty()
            ? absl::FailedPreconditionError("TLS: the host sent no certificate")
            : check->pins_->Check(check->peer_, presented);
    if (!s.ok()) {
      check->refusal_ = s;
      return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
  }
};

namespace {

// A name curl can verify a certificate against: a DNS name, not an address.
bool UsableHostName(absl::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  bool letter = false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalpha(u)) letter = true;
    if (!absl::ascii_isalnum(u) && c != '-' && c != '.') return false;
  }
  return letter;
}

std::string Bracketed(const std::string& host) {
  return absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
}

}  // namespace

std::optional<HttpUrl> ParseHttpUrl(absl::string_view url) {
  const size_t sep = url.find("://");
  if (sep == absl::string_view::npos || sep == 0) return std::nullopt;
  HttpUrl out;
  out.scheme = absl::AsciiStrToLower(url.substr(0, sep));
  const size_t end = url.find_first_of("/?#", sep + 3);
  const absl::string_view authority = url.substr(
      sep + 3,
      end == absl::string_view::npos ? absl::string_view::npos : end - sep - 3);
  out.rest = end == absl::string_view::npos ? "" : std::string(url.substr(end));
  if (authority.empty() || absl::StrContains(authority, "@")) {
    return std::nullopt;
  }
  absl::string_view port;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return std::nullopt;
    }
    port = after;
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return std::nullopt;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  out.port = std::string(port);
  return out;
}

absl::Status CurlTlsCheck::Apply(CURL* handle, const TlsOptions& tls,
                                 const std::string& url,
                                 const HostIdentity& peer) {
  handle_ = handle;
  pins_ = tls.pins;
  refusal_ = absl::OkStatus();
  verified_name_.clear();
  connect_to_.reset();
  url_ = url;
  std::optional<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed URL '", url.substr(0, url.find('?')), "'"));
  }
  peer_ = peer;
  peer_.address = parsed->host;
  if (pins_ != nullptr) peer_ = pins_->Resolve(peer_);
  mode_ = Mode::kPlain;
  if (parsed->scheme == "https") {
    const bool pinned = pins_ != nullptr && !pins_->Find(peer_).sha256.empty();
    mode_ = tls.insecure                               ? Mode::kInsecure
            : pinned                                   ? Mode::kPinned
            : pins_ != nullptr && pins_->tofu()        ? Mode::kTrustOnFirstUse
            : pins_ == nullptr || !tls.ca_file.empty() ? Mode::kCa
                                                       : Mode::kPlain;
    if (mode_ == Mode::kPlain) return pins_->NoPinError(peer_);
  }
  switch (mode_) {
    case Mode::kPlain:
      break;
    case Mode::kInsecure:
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
      break;
    case Mode::kPinned:
    case Mode::kTrustOnFirstUse:
      // The certificate is the identity: names are not checked.
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
      curl_easy_setopt(handle, CURLOPT_SSL_CTX_FUNCTION,
                       &CurlTlsCallbacks::InstallVerify);
      curl_easy_setopt(handle, CURLOPT_SSL_CTX_DATA, this);
      curl_easy_setopt(handle, CURLOPT_PREREQFUNCTION,
                       &CurlTlsCallbacks::OnPrerequest);
      curl_easy_setopt(handle, CURLOPT_PREREQDATA, this);
      break;
    case Mode::kCa: {
      if (!tls.ca_file.empty()) {
        if (access(tls.ca_file.c_str(), R_OK) != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("cannot read CA file ", tls.ca_file));
        }
        curl_easy_setopt(handle, CURLOPT_CAINFO, tls.ca_file.c_str());
      }
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
      // Connect to the address, verify the name the host's certificate
      // carries.
      const std::string name = absl::AsciiStrToLower(peer_.hostname);
      if (UsableHostName(name) && name != absl::AsciiStrToLower(parsed->host)) {
        const std::string port = parsed->port.empty() ? "443" : parsed->port;
        url_ = absl::StrCat(parsed->scheme, "://", name,
                            parsed->port.empty() ? "" : ":", parsed->port,
                            parsed->rest);
        connect_to_entry_ = absl::StrCat(name, ":", port, ":",
                                         Bracketed(parsed->host), ":", port);
        connect_to_.reset(
            curl_slist_append(nullptr, connect_to_entry_.c_str()));
        if (connect_to_ == nullptr) {
          return absl::ResourceExhaustedError("curl_slist_append failed");
        }
        curl_easy_setopt(handle, CURLOPT_CONNECT_TO, connect_to_.get());
        verified_name_ = name;
      }
      break;
    }
  }
  curl_easy_setopt(handle, CURLOPT_URL, url_.c_str());
  return absl::OkStatus();
}

absl::Status CurlTlsCheck::TransferError(CURLcode code,
                                         absl::string_view context,
                                         const char* error_buffer) const {
  if (!refusal_.ok()) return AnnotateStatus(refusal_, context);
  absl::Status s = CurlCodeToStatus(code, context, error_buffer);
  if (!verified_name_.empty() && absl::IsFailedPrecondition(s)) {
    return absl::FailedPreconditionError(
        absl::StrCat(s.message(), " (the certificate of ", peer_.address,
                     " was checked for the name ", verified_name_,
                     ", the host's host.hostname)"));
  }
  return s;
}

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

}  // namespace vmb
