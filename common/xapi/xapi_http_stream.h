// SPDX-License-Identifier: Apache-2.0
#pragma once

// The HTTP data plane: a streaming GET of a XAPI handler (/export,
// /export_raw_vdi, /export_metadata, /pool/xmldbdump) into a sink, and a
// streaming PUT of an upload handler (/import, /import_raw_vdi,
// /import_metadata) from a source; the body is never held in memory.
//
//   XapiStreamRequest req;
//   req.base_url = "http://10.0.0.3";          // this agent's own host
//   req.path = "/export";
//   req.query = {{"ref", snapshot_ref}, {"use_compression", "zstd"}};
//   req.session_id = session;                   // sent only as a cookie
//   req.task_id = task;
//   req.allowed_redirect_hosts = pool_hosts;    // IdentityOfHost(host record)
//   auto result = XapiStreamGet(req, [&](absl::string_view data) {
//     return file.Append(data);
//   });
//
// The end of the body is not success: XAPI closes the connection at the end
// of every export, and failures can surface only in the task. Callers must
// check the task's final status.

#include <stdint.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#include "common/xapi/curl_util.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xenapi_error.h"

namespace vmb {

struct XapiStreamTimeouts {
  absl::Duration connect = absl::Seconds(30);
  // From the request until the first body byte (XAPI attaches the disks
  // first; with compression the first byte comes later still).
  absl::Duration first_byte = absl::Minutes(5);
  // Longest silence once data flows (XAPI can pause while it skips empty
  // space on a disk).
  absl::Duration inactivity = absl::Minutes(5);
  // The whole transfer; infinite by default.
  absl::Duration total = absl::InfiniteDuration();
};

struct XapiStreamRequest {
  std::string base_url;  // "scheme://host[:port]" of the host to ask
  std::string path;      // "/export"
  // Query parameters, sent URL-encoded. Never put session_id here.
  std::vector<std::pair<std::string, std::string>> query;
  std::string session_id;  // secret: sent only as "Cookie: session_id=..."
  std::string task_id;     // added to the query as task_id
  // The pool's hosts (address, uuid, hostname: IdentityOfHost). A 302 may
  // lead only to one of their addresses, and with the same scheme; each
  // connection to one of them is verified as that host (its pin, or its
  // hostname with a CA: see TlsOptions). The host of base_url is looked up
  // by address, then by hostname; a host not in the list is verified by
  // the URL's host alone.
  std::vector<HostIdentity> allowed_redirect_hosts;
  int max_redirects = 2;
  XapiStreamTimeouts timeouts;
  uint64_t bandwidth_limit = 0;  // bytes per second; 0 = unlimited
  // Notified from another thread to abort the transfer (CANCELLED).
  const absl::Notification* cancel = nullptr;
  TlsOptions tls;
};

struct XapiStreamResult {
  std::string final_url;  // after redirects; holds no secret
  int redirects = 0;
  uint64_t bytes = 0;  // body bytes handed to the sink
  std::string task_id_header;
  std::string content_type;
  std::string http_version;  // "HTTP/1.0" or "HTTP/1.1"
};

// Receives the body in order; a non-OK return aborts the transfer and is
// returned by XapiStreamGet.
using XapiStreamSink = std::function<absl::Status(absl::string_view data)>;

// Errors:
//   UNAVAILABLE          connection refused or reset, or the host closed the
//                        connection without a response (XAPI does that when
//                        no host can serve the request: NO_HOSTS_AVAILABLE);
//   DEADLINE_EXCEEDED    connect, first-byte, inactivity or total timeout;
//   CANCELLED            `cancel` was notified;
//   UNAUTHENTICATED      HTTP 401 (the session is not valid);
//   FAILED_PRECONDITION  TLS verification failed (a pin mismatch names the
//                        host, the expected and presented fingerprints), or
//                        the host has no pin and there is no TOFU or CA
//                        (CurlTlsCheck, HostPins::Check), or a redirect to a
//                        host not in allowed_redirect_hosts, or one that
//                        changes the scheme (https to http), or too many
//                        redirects; the session cookie is not sent then;
//   INVALID_ARGUMENT     a malformed base_url, an unreadable CA file;
//   the pins file's      errors recording a first-use certificate;
//   the XenAPI error     of an HTTP 500/403/404 error page, or of a 200 body
//                        that is, whole, XAPI's error response (xen-api
//                        #4603; IsEmbeddedErrorResponse is true of it: the
//                        sink has had those bytes, and only the task can
//                        say whether they were a disk's that look alike);
//   the sink's error     as the sink returned it.
// Messages never contain the session id.
absl::StatusOr<XapiStreamResult> XapiStreamGet(const XapiStreamRequest& request,
                                               const XapiStreamSink& sink);

// The body of a PUT. XAPI refuses chunked uploads: its length is sent as
// Content-Length, and the source must give exactly that many bytes.
struct XapiUploadBody {
  uint64_t size = 0;
  // Copies the next bytes into `buffer` (at most `max`, never 0 before
  // `size` bytes were given). A non-OK status aborts the upload, so that the
  // host sees the body end early, and is returned by XapiStreamPut.
  std::function<absl::StatusOr<size_t>(char* buffer, size_t max)> read;
  // Starts the body again from its first byte, for a redirect met after
  // bytes were taken; unset: such a redirect fails.
  std::function<absl::Status()> rewind;
};

// A PUT of `body` to request.path. The timeouts: `first_byte` also bounds
// the wait for the answer once the whole body is sent; `inactivity` a
// source that gives nothing. The answer is only an acknowledgement: the
// task says whether the upload did what it should. Errors: those of
// XapiStreamGet (an error page, an embedded error response after the 200
// headers, redirects, TLS, timeouts, CANCELLED), the source's own, and
// UNAVAILABLE when the host answered before it had the whole body.
absl::StatusOr<XapiStreamResult> XapiStreamPut(const XapiStreamRequest& request,
                                               const XapiUploadBody& body);

// Whether a status of XapiStreamGet is that of a 200 body that was, whole,
// XAPI's error response.
bool IsEmbeddedErrorResponse(const absl::Status& status);

// The XenAPI error of `body` if it is, whole, an HTTP error response as XAPI
// writes one after a 200 (status line 4xx/5xx, headers, a blank line, and
// its HTML error page of Content-Length bytes); nullopt for anything else,
// whatever its first bytes.
std::optional<XenApiError> ParseEmbeddedErrorResponse(absl::string_view body);

// "a=b&c=d" with RFC 3986 percent-encoding.
std::string EncodeQuery(
    const std::vector<std::pair<std::string, std::string>>& query);

}  // namespace vmb
