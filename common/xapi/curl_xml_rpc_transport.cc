// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/curl_xml_rpc_transport.h"

#include "absl/strings/str_cat.h"

#include "common/base/status_util.h"
#include "common/xapi/xenapi_error.h"

namespace vmb {

struct CurlXmlRpcTransport::Handle {
  CurlTlsCheck tls;  // first: it must outlive the handle's connections
  CurlEasyPtr easy;
};

namespace {

constexpr size_t kMaxIdleHandles = 8;

struct Sink {
  std::string* body;
  size_t limit;
  bool too_big = false;
};

size_t Write(char* data, size_t size, size_t n, void* userp) {
  auto* sink = static_cast<Sink*>(userp);
  const size_t len = size * n;
  if (sink->body->size() + len > sink->limit) {
    sink->too_big = true;
    return 0;
  }
  sink->body->append(data, len);
  return len;
}

}  // namespace

CurlXmlRpcTransport::CurlXmlRpcTransport(Options options)
    : options_(std::move(options)) {
  InitCurlGlobal();
}

CurlXmlRpcTransport::~CurlXmlRpcTransport() = default;

std::unique_ptr<CurlXmlRpcTransport::Handle> CurlXmlRpcTransport::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Handle> h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  h->easy.reset(curl_easy_init());
  return h;
}

void CurlXmlRpcTransport::Release(std::unique_ptr<Handle> handle) {
  absl::MutexLock lock(&mu_);
  if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(handle));
}

absl::StatusOr<std::string> CurlXmlRpcTransport::Post(
    const std::string& url, absl::string_view request) {
  std::unique_ptr<Handle> h = Acquire();
  if (h->easy == nullptr)
    return absl::ResourceExhaustedError("curl_easy_init failed");
  CURL* c = h->easy.get();
  curl_easy_reset(c);
  const std::string endpoint = url + "/";
  // The host is known by the URL's host (and, once the pool's hosts are
  // known, by the identity the pin store has for that address).
  if (absl::Status s = h->tls.Apply(c, options_.tls, endpoint); !s.ok()) {
    return Annotate(s, "XML-RPC call to ", url);
  }
  std::string body;
  Sink sink{&body, options_.max_response_bytes};
  char error[CURL_ERROR_SIZE] = {0};
  CurlSlistPtr headers(curl_slist_append(nullptr, "Content-Type: text/xml"));
  // Disable "Expect: 100-continue": XAPI answers directly.
  headers.reset(curl_slist_append(headers.release(), "Expect:"));
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(request.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(
      c, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.call_timeout)));
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  CURLcode rc = curl_easy_perform(c);
  long http_status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http_status);
  const absl::Status failed =
      rc == CURLE_OK ? absl::OkStatus()
                     : h->tls.TransferError(
                           rc, absl::StrCat("XML-RPC call to ", url), error);
  // The handle is safe to reuse whatever happened; curl drops broken
  // connections itself.
  Release(std::move(h));
  if (sink.too_big) {
    return absl::ResourceExhaustedError(
        absl::StrCat("XML-RPC response from ", url, " exceeds ",
                     options_.max_response_bytes, " bytes"));
  }
  if (!failed.ok()) return failed;
  if (http_status == 200) return body;
  if (std::optional<XenApiError> e = ParseXapiErrorPage(body)) {
    std::vector<std::string> description = {e->code};
    description.insert(description.end(), e->params.begin(), e->params.end());
    return AnnotateStatus(XenApiFailureToStatus(description),
                          absl::StrCat("HTTP ", http_status, " from ", url));
  }
  return absl::Status(
      http_status >= 500 ? absl::StatusCode::kUnavailable
                         : absl::StatusCode::kInternal,
      absl::StrCat("XML-RPC call to ", url, " answered HTTP ", http_status));
}

}  // namespace vmb
