// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xapi_http_stream.h"

#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/xenapi_error.h"

namespace vmb {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxErrorBody = 64 * 1024;
// Marks the status of a body that was, whole, XAPI's error response.
constexpr absl::string_view kEmbeddedErrorPayload =
    "type.vmbackup/embedded-error-response";

// State of one request (one URL); a redirect starts a new one.
struct Transfer {
  const XapiStreamRequest* request = nullptr;
  const XapiStreamSink* sink = nullptr;    // GET: where the body goes
  const XapiUploadBody* upload = nullptr;  // PUT: where the body comes from
  uint64_t sent = 0;                       // PUT: body bytes handed to curl
  Clock::time_point start;
  Clock::time_point last_data;
  bool got_data = false;
  long status = 0;
  std::string status_line;
  std::string location;
  std::string task_id;
  std::string content_type;
  // The first bytes of a 200 body, copied as they pass: if the whole body
  // turns out to be XAPI's error response (xen-api #4603), it is an error.
  std::string head;
  std::string error_body;  // body of a non-200 answer
  uint64_t delivered = 0;
  absl::Status abort;  // why a callback stopped the transfer
};

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

size_t OnHeader(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  absl::string_view line(data, size * n);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (curl reports every one): reset per-response state.
    t->status_line = std::string(line);
    t->location.clear();
    t->task_id.clear();
    t->content_type.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return size * n;
  std::string name = Lower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  if (name == "location") t->location = value;
  if (name == "task-id") t->task_id = value;
  if (name == "content-type") t->content_type = value;
  return size * n;
}

// Holds the transfer back (by not reading from the socket, so TCP pushes
// back on the host) until `delivered` bytes are due at the configured rate.
// curl's own CURLOPT_MAX_RECV_SPEED_LARGE is not used: with large receive
// buffers libcurl 7.88 overshoots it badly.
bool Throttle(Transfer* t) {
  const XapiStreamRequest& r = *t->request;
  if (r.bandwidth_limit == 0) return true;
  const auto due = t->start + std::chrono::microseconds(static_cast<int64_t>(
                                  static_cast<double>(t->delivered) * 1e6 /
                                  static_cast<double>(r.bandwidth_limit)));
  while (Clock::now() < due) {
    if (r.cancel != nullptr && r.cancel->HasBeenNotified()) {
      t->abort = absl::CancelledError("transfer cancelled");
      return false;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(
        due - Clock::now(), std::chrono::milliseconds(100)));
  }
  t->last_data = Clock::now();
  return true;
}

size_t Deliver(Transfer* t, absl::string_view data) {
  absl::Status s = (*t->sink)(data);
  if (!s.ok()) {
    t->abort = s;
    return 0;
  }
  t->delivered += data.size();
  return Throttle(t) ? data.size() : 0;
}

size_t OnBody(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t len = size * n;
  if (t->upload != nullptr) {  // PUT: the answer is only ever an error
    if (t->error_body.size() < kMaxErrorBody) {
      t->error_body.append(data,
                           std::min(len, kMaxErrorBody - t->error_body.size()));
    }
    return len;
  }
  t->last_data = Clock::now();
  t->got_data = true;
  if (!absl::StartsWith(t->status_line, "HTTP/") ||
      !absl::StrContains(t->status_line, " 200")) {
    if (t->error_body.size() < kMaxErrorBody) {
      t->error_body.append(data,
                           std::min(len, kMaxErrorBody - t->error_body.size()));
    }
    return len;
  }
  absl::string_view chunk(data, len);
  if (t->head.size() < kMaxErrorBody) {
    t->head.append(data, std::min(len, kMaxErrorBody - t->head.size()));
  }
  return Deliver(t, chunk) == len ? len : 0;
}

// PUT: the next body bytes from the caller's source, held back like a
// download by the bandwidth limit.
size_t OnRead(char* buffer, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const XapiUploadBody& body = *t->upload;
  const uint64_t left = body.size - t->sent;
  if (left == 0) return 0;
  absl::StatusOr<size_t> got = body.read(
      buffer, static_cast<size_t>(std::min<uint64_t>(size * n, left)));
  if (!got.ok()) {
    t->abort = got.status();
    return CURL_READFUNC_ABORT;
  }
  if (*got == 0) {
    t->abort =
        absl::DataLossError(absl::StrCat("the upload's source ended after ",
                                         t->sent, " of ", body.size, " bytes"));
    return CURL_READFUNC_ABORT;
  }
  t->sent += *got;
  t->delivered = t->sent;
  t->last_data = Clock::now();
  t->got_data = true;
  return Throttle(t) ? *got : CURL_READFUNC_ABORT;
}

int OnProgress(void* userp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userp);
  const XapiStreamRequest& r = *t->request;
  if (r.cancel != nullptr && r.cancel->HasBeenNotified()) {
    t->abort = absl::CancelledError("transfer cancelled");
    return 1;
  }
  const auto now = Clock::now();
  const auto since = [&](Clock::time_point from) {
    return absl::FromChrono(now - from);
  };
  if (!t->got_data && since(t->start) > r.timeouts.first_byte) {
    t->abort = absl::DeadlineExceededError(absl::StrCat(
        "no data within ", absl::FormatDuration(r.timeouts.first_byte),
        " of the request"));
    return 1;
  }
  if (t->upload != nullptr && t->sent == t->upload->size) {
    // The whole body is sent: XAPI answers when it has dealt with it.
    if (since(t->last_data) > r.timeouts.first_byte) {
      t->abort = absl::DeadlineExceededError(absl::StrCat(
          "no answer within ", absl::FormatDuration(r.timeouts.first_byte),
          " of the end of the body"));
      return 1;
    }
    return 0;
  }
  if (t->got_data && since(t->last_data) > r.timeouts.inactivity) {
    t->abort = absl::DeadlineExceededError(absl::StrCat(
        "stalled: no data for ", absl::FormatDuration(r.timeouts.inactivity),
        " after ", t->delivered, " bytes"));
    return 1;
  }
  return 0;
}

// The pool host at `host` (an address; for the first request, whose URL the
// caller chose, a host name too), or null.
const HostIdentity* FindPoolHost(const std::vector<HostIdentity>& hosts,
                                 const std::string& host, bool by_name) {
  const std::string key = NormalisePinKey(host);
  for (const HostIdentity& h : hosts) {
    if (NormalisePinKey(h.address) == key) return &h;
  }
  if (!by_name) return nullptr;
  for (const HostIdentity& h : hosts) {
    if (!h.hostname.empty() && NormalisePinKey(h.hostname) == key) return &h;
  }
  return nullptr;
}

absl::Status ErrorPageStatus(const std::string& body, long status,
                             absl::string_view context) {
  if (std::optional<XenApiError> e = ParseXapiErrorPage(body)) {
    std::vector<std::string> description = {e->code};
    description.insert(description.end(), e->params.begin(), e->params.end());
    return AnnotateStatus(XenApiFailureToStatus(description), context);
  }
  return absl::Status(
      status >= 500 ? absl::StatusCode::kUnavailable
                    : absl::StatusCode::kFailedPrecondition,
      absl::StrCat(context, " (no XAPI error page in the body)"));
}

}  // namespace

std::optional<XenApiError> ParseEmbeddedErrorResponse(absl::string_view body) {
  // "HTTP/1.x NNN reason\r\n", header lines, a blank line, the error page.
  if (!absl::StartsWith(body, "HTTP/1.") || body.size() < 13 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(body[7])) ||
      body[8] != ' ') {
    return std::nullopt;
  }
  int code = 0;
  if (!absl::SimpleAtoi(body.substr(9, 3), &code) || code < 400 || code > 599) {
    return std::nullopt;
  }
  const size_t end = body.find("\r\n\r\n");
  if (end == absl::string_view::npos) return std::nullopt;
  absl::string_view page = body.substr(end + 4);
  // A Content-Length, when given, is the page's length exactly.
  for (absl::string_view line : absl::StrSplit(body.substr(0, end), "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(
            absl::StripAsciiWhitespace(line.substr(0, colon)),
            "content-length")) {
      continue;
    }
    uint64_t length = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)),
                          &length) ||
        length != page.size()) {
      return std::nullopt;
    }
  }
  if (!absl::EndsWith(absl::StripTrailingAsciiWhitespace(page), "</html>")) {
    return std::nullopt;
  }
  return ParseXapiErrorPage(page);
}

bool IsEmbeddedErrorResponse(const absl::Status& status) {
  return status.GetPayload(kEmbeddedErrorPayload).has_value();
}

std::string EncodeQuery(
    const std::vector<std::pair<std::string, std::string>>& query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto encode = [](absl::string_view s, std::string* out) {
    for (unsigned char c : s) {
      if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
          c == '~') {
        out->push_back(static_cast<char>(c));
      } else {
        out->push_back('%');
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
      }
    }
  };
  std::string out;
  for (const auto& [k, v] : query) {
    if (!out.empty()) out.push_back('&');
    encode(k, &out);
    out.push_back('=');
    encode(v, &out);
  }
  return out;
}

namespace {

// One GET (`sink`) or PUT (`upload`) with its redirects.
absl::StatusOr<XapiStreamResult> Perform(const XapiStreamRequest& request,
                                         const XapiStreamSink* sink,
                                         const XapiUploadBody* upload) {
  const char* const method = upload != nullptr ? "PUT " : "GET ";
  const char* const direction = upload != nullptr ? " to " : " from ";
  InitCurlGlobal();
  auto query = request.query;
  if (!request.task_id.empty()) query.emplace_back("task_id", request.task_id);
  std::string url = request.base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += request.path;
  if (!query.empty()) absl::StrAppend(&url, "?", EncodeQuery(query));

  // Declared before the handle it serves, so that it outlives it.
  CurlTlsCheck tls;
  CurlEasyPtr easy(curl_easy_init());
  if (easy == nullptr)
    return absl::ResourceExhaustedError("curl_easy_init failed");
  XapiStreamResult result;
  const auto deadline =
      request.timeouts.total == absl::InfiniteDuration()
          ? Clock::time_point::max()
          : Clock::now() + absl::ToChronoMilliseconds(request.timeouts.total);
  for (int hop = 0;; ++hop) {
    CURL* c = easy.get();
    curl_easy_reset(c);
    const std::optional<HttpUrl> target = ParseHttpUrl(url);
    if (!target.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          method, request.path, ": malformed URL '", request.base_url, "'"));
    }
    HostIdentity peer;
    peer.address = target->host;
    if (const HostIdentity* h = FindPoolHost(request.allowed_redirect_hosts,
                                             target->host, hop == 0)) {
      peer = *h;
    }
    if (absl::Status s = tls.Apply(c, request.tls, url, peer); !s.ok()) {
      return Annotate(s, method, request.path, direction,
                      url.substr(0, url.find('?')));
    }
    Transfer t;
    t.request = &request;
    t.sink = sink;
    t.upload = upload;
    t.start = t.last_data = Clock::now();
    char error[CURL_ERROR_SIZE] = {0};
    const std::string cookie = absl::StrCat("session_id=", request.session_id);
    // XAPI never answers "100 Continue": curl would wait a second for it.
    CurlSlistPtr headers(curl_slist_append(nullptr, "Expect:"));
    if (upload != nullptr) {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(upload->size));
      curl_easy_setopt(c, CURLOPT_READFUNCTION, &OnRead);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
      curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    } else {
      curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (!request.session_id.empty())
      curl_easy_setopt(c, CURLOPT_COOKIE, cookie.c_str());
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vmbackup");
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 100L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(
        c, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(request.timeouts.connect)));
    if (deadline != Clock::time_point::max()) {
      // Rounded up: the transfer never ends before the caller's deadline.
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                       static_cast<long>(std::max<int64_t>(1, left.count())));
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.status);
    result.bytes += t.delivered;
    const std::string where = absl::StrCat(method, request.path, direction,
                                           url.substr(0, url.find('?')));
    if (!t.abort.ok()) return Annotate(t.abort, where);
    // A host may answer a PUT before it has read the body (a redirect, a
    // refusal) and close the connection while curl still sends.
    if (upload != nullptr &&
        (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR) && t.status != 0 &&
        t.status != 200) {
      rc = CURLE_OK;
    }
    if (rc == CURLE_GOT_NOTHING || (rc == CURLE_OK && t.status == 0)) {
      return absl::UnavailableError(
          absl::StrCat(where,
                       ": the host closed the connection without answering "
                       "(XAPI does this when "
                       "no host can serve the request; the task says why)"));
    }
    if (rc != CURLE_OK) return tls.TransferError(rc, where, error);
    if (t.status == 301 || t.status == 302 || t.status == 303 ||
        t.status == 307) {
      const std::optional<HttpUrl> next = ParseHttpUrl(t.location);
      if (!next.has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": redirect with a malformed Location"));
      }
      // The session cookie goes only where the first request went: never
      // from https to http.
      if (next->scheme != target->scheme) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": redirected from ", target->scheme, " to ",
                         next->scheme, " (", next->host,
                         "); refused: a redirect may not change the scheme, "
                         "the session cookie must never travel in clear"));
      }
      if (FindPoolHost(request.allowed_redirect_hosts, next->host,
                       /*by_name=*/false) == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": redirected to ", next->host,
                         ", which is not a host of this pool; refused"));
      }
      if (hop >= request.max_redirects) {
        return absl::FailedPreconditionError(
            absl::StrCat(where, ": too many redirects"));
      }
      if (upload != nullptr && t.sent > 0) {
        if (!upload->rewind) {
          return absl::FailedPreconditionError(absl::StrCat(
              where, ": redirected after ", t.sent,
              " body bytes were sent, and the body cannot be sent again"));
        }
        VMB_RETURN_IF_ERROR(Annotate(upload->rewind(), where));
      }
      url = t.location;
      ++result.redirects;
      result.bytes = 0;
      continue;
    }
    if (t.status == 401) {
      return absl::UnauthenticatedError(absl::StrCat(
          where, ": HTTP 401, the host did not accept the session"));
    }
    if (t.status != 200) {
      return ErrorPageStatus(t.error_body, t.status,
                             absl::StrCat(where, ": HTTP ", t.status));
    }
    if (upload != nullptr) {
      // After its 200, XAPI writes an error met while reading the body as a
      // whole error response; a success has no body.
      if (std::optional<XenApiError> e =
              ParseEmbeddedErrorResponse(t.error_body)) {
        std::vector<std::string> description = {e->code};
        description.insert(description.end(), e->params.begin(),
                           e->params.end());
        return AnnotateStatus(XenApiFailureToStatus(description),
                              absl::StrCat(where,
                                           ": HTTP 200, then XAPI's "
                                           "error response"));
      }
      if (t.sent != upload->size) {
        return absl::UnavailableError(
            absl::StrCat(where, ": the host answered after ", t.sent, " of ",
                         upload->size, " body bytes"));
      }
    }
    if (t.delivered <= kMaxErrorBody) {
      if (std::optional<XenApiError> e = ParseEmbeddedErrorResponse(t.head)) {
        std::vector<std::string> description = {e->code};
        description.insert(description.end(), e->params.begin(),
                           e->params.end());
        absl::Status s = AnnotateStatus(
            XenApiFailureToStatus(description),
            absl::StrCat(where,
                         ": HTTP 200, then XAPI's error response as "
                         "the whole body"));
        s.SetPayload(kEmbeddedErrorPayload, absl::Cord("1"));
        return s;
      }
    }
    result.final_url = url.substr(0, url.find('?'));
    result.task_id_header = t.task_id;
    result.content_type = t.content_type;
    result.http_version = t.status_line.substr(0, t.status_line.find(' '));
    return result;
  }
}

}  // namespace

absl::StatusOr<XapiStreamResult> XapiStreamGet(const XapiStreamRequest& request,
                                               const XapiStreamSink& sink) {
  return Perform(request, &sink, nullptr);
}

absl::StatusOr<XapiStreamResult> XapiStreamPut(const XapiStreamRequest& request,
                                               const XapiUploadBody& body) {
  if (!body.read) return absl::InvalidArgumentError("PUT without a body");
  return Perform(request, nullptr, &body);
}

}  // namespace vmb
