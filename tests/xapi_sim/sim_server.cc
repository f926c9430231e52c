// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/sim_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <microhttpd.h>

#include "common/base/logging.h"

namespace vmb::sim {

struct SimServer::Listener {
  SimPool* pool = nullptr;
  SimServer* server = nullptr;
  HostInfo host;
  TlsIdentity tls;  // empty: plain HTTP; outlives the daemon that uses it
  MHD_Daemon* daemon = nullptr;
};

namespace {

constexpr size_t kMaxRpcBody = 64u << 20;

// Per-request state, kept in MHD's con_cls.
struct RequestState {
  std::string method;
  std::string body;        // POST bodies
  std::string spool_path;  // PUT bodies
  int spool_fd = -1;
  uint64_t spooled = 0;
  bool chunked = false;
  bool too_big = false;
  std::shared_ptr<struct StreamCtx> stream;
  std::unique_ptr<UploadSink> upload;  // a PUT its handler reads as it comes
  ~RequestState() {
    if (spool_fd >= 0) close(spool_fd);
    if (!spool_path.empty()) unlink(spool_path.c_str());
  }
};

struct StreamCtx {
  std::unique_ptr<ResponseStream> stream;
  uint64_t size = MHD_SIZE_UNKNOWN;  // known: MHD asks for no more
  uint64_t sent = 0;
  bool ended = false;
  bool failed = false;
  bool finished = false;
};

ssize_t ReadStream(void* cls, uint64_t /*pos*/, char* buf, size_t max) {
  auto* ctx = static_cast<std::shared_ptr<StreamCtx>*>(cls)->get();
  absl::StatusOr<size_t> n = ctx->stream->Read(buf, max);
  if (!n.ok()) {
    ctx->failed = true;
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (*n == 0) {
    ctx->ended = true;
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  ctx->sent += *n;
  if (ctx->sent == ctx->size) ctx->ended = true;
  return static_cast<ssize_t>(*n);
}

void FreeStream(void* cls) {
  delete static_cast<std::shared_ptr<StreamCtx>*>(cls);
}

MHD_Result CollectArg(void* cls, MHD_ValueKind, const char* key,
                      const char* value) {
  auto* out =
      static_cast<std::vector<std::pair<std::string, std::string>>*>(cls);
  out->emplace_back(key != nullptr ? key : "", value != nullptr ? value : "");
  return MHD_YES;
}

std::string UrlEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~' || c == ':') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

MHD_Result Queue(MHD_Connection* c, HttpResponse& r, RequestState* state) {
  if (r.drop_connection) return MHD_NO;
  MHD_Response* resp = nullptr;
  if (r.stream != nullptr) {
    auto ctx = std::make_shared<StreamCtx>();
    ctx->stream = std::move(r.stream);
    if (r.stream_length.has_value()) ctx->size = *r.stream_length;
    state->stream = ctx;
    resp = MHD_create_response_from_callback(
        ctx->size, 256 * 1024, &ReadStream, new std::shared_ptr<StreamCtx>(ctx),
        &FreeStream);
  } else if (!r.content_length) {
    auto ctx = std::make_shared<StreamCtx>();
    ctx->stream = nullptr;
    // A fixed body sent without a length: serve it through a trivial stream.
    class Fixed final : public ResponseStream {
     public:
      explicit Fixed(std::string b) : body_(std::move(b)) {}
      absl::StatusOr<size_t> Read(char* buf, size_t max) override {
        size_t n = std::min(max, body_.size() - pos_);
        memcpy(buf, body_.data() + pos_, n);
        pos_ += n;
        return n;
      }
      void Finish(bool) override {}

     private:
      std::string body_;
      size_t pos_ = 0;
    };
    ctx->stream = std::make_unique<Fixed>(std::move(r.body));
    state->stream = ctx;
    resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 64 * 1024, &ReadStream,
        new std::shared_ptr<StreamCtx>(ctx), &FreeStream);
  } else {
    resp = MHD_create_response_from_buffer(r.body.size(), r.body.data(),
                                           MHD_RESPMEM_MUST_COPY);
  }
  if (resp == nullptr) return MHD_NO;
  int flags = 0;
  if (r.http10) flags |= MHD_RF_HTTP_1_0_SERVER;
  if (r.close || !r.content_length) flags |= MHD_RF_HTTP_1_0_COMPATIBLE_STRICT;
  if (flags != 0)
    MHD_set_response_options(resp, static_cast<MHD_ResponseFlags>(flags),
                             MHD_RO_END);
  for (const auto& [k, v] : r.headers)
    MHD_add_response_header(resp, k.c_str(), v.c_str());
  if (r.close) MHD_add_response_header(resp, "Connection", "close");
  MHD_Result ret =
      MHD_queue_response(c, static_cast<unsigned int>(r.status), resp);
  MHD_destroy_response(resp);
  return ret;
}

// The request as SimPool sees it (everything but the body).
HttpRequest RequestOf(MHD_Connection* c, SimServer::Listener* listener,
                      const RequestState& state, const std::string& path) {
  HttpRequest req;
  req.host = listener->host.name;
  req.method = state.method;
  req.path = path;
  req.chunked = state.chunked;
  req.scheme = listener->server->scheme();
  req.port = listener->server->port();
  std::vector<std::pair<std::string, std::string>> args, cookies;
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, &CollectArg, &args);
  MHD_get_connection_values(c, MHD_COOKIE_KIND, &CollectArg, &cookies);
  std::vector<std::string> parts;
  for (const auto& [k, v] : args) {
    req.query[k] = v;
    parts.push_back(absl::StrCat(UrlEncode(k), "=", UrlEncode(v)));
  }
  req.raw_query = absl::StrJoin(parts, "&");
  for (const auto& [k, v] : cookies) req.cookies[k] = v;
  if (const char* auth =
          MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")) {
    req.authorization = auth;
  }
  if (const char* length =
          MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length")) {
    int64_t n = 0;
    if (absl::SimpleAtoi(length, &n)) req.content_length = n;
  }
  if (const MHD_ConnectionInfo* info =
          MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD)) {
    req.socket_fd = info->connect_fd;
  }
  return req;
}

MHD_Result OnRequest(void* cls, MHD_Connection* c, const char* url,
                     const char* method, const char* /*version*/,
                     const char* upload_data, size_t* upload_size,
                     void** con_cls) {
  auto* listener = static_cast<SimServer::Listener*>(cls);
  auto* state = static_cast<RequestState*>(*con_cls);
  const std::string path = url != nullptr ? url : "/";
  if (state == nullptr) {
    state = new RequestState;
    state->method = method;
    *con_cls = state;
    const char* te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    state->chunked = te != nullptr &&
                     absl::StrContains(absl::AsciiStrToLower(te), "chunked");
    if (state->method == "PUT") {
      // /import and /import_raw_vdi read the body as it arrives, or answer
      // before reading it.
      HttpRequest req = RequestOf(c, listener, *state, path);
      if (std::optional<UploadStart> upload =
              listener->pool->StartUpload(req)) {
        if (upload->sink == nullptr) return Queue(c, upload->response, state);
        state->upload = std::move(upload->sink);
        return MHD_YES;
      }
    }
    if (state->method == "PUT" && !state->chunked) {
      std::string templ =
          (std::filesystem::temp_directory_path() / "xapi-sim-upload-XXXXXX")
              .string();
      state->spool_fd = mkstemp(templ.data());
      if (state->spool_fd >= 0) state->spool_path = templ;
    }
    // XAPI refuses a chunked upload before reading it; so do we.
    if (!(state->method == "PUT" && state->chunked)) return MHD_YES;
  }
  if (state->upload != nullptr) {
    if (*upload_size > 0) {
      const bool go_on = state->upload->Write(upload_data, *upload_size);
      *upload_size = 0;
      return go_on ? MHD_YES : MHD_NO;
    }
    HttpResponse r = state->upload->Finish();
    state->upload.reset();
    return Queue(c, r, state);
  }
  if (*upload_size > 0) {
    if (state->method == "PUT" && !state->chunked && state->spool_fd >= 0) {
      const char* p = upload_data;
      size_t left = *upload_size;
      while (left > 0) {
        ssize_t n = write(state->spool_fd, p, left);
        if (n <= 0) break;
        p += n;
        left -= static_cast<size_t>(n);
      }
      state->spooled += *upload_size;
    } else if (state->body.size() + *upload_size <= kMaxRpcBody) {
      state->body.append(upload_data, *upload_size);
    } else {
      state->too_big = true;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  // The whole request is here (or it is a chunked PUT, refused unread).
  SimPool* pool = listener->pool;
  if (state->method == "POST" && !absl::StartsWith(path, "/sim/")) {
    HttpResponse r;
    if (state->too_big) {
      r.status = 413;
      r.headers = {{"Cache-Control", "no-cache, no-store"},
                   {"Content-Type", "text/html"}};
      return Queue(c, r, state);
    }
    RpcReply reply = pool->HandleRpc(listener->host.name, path, state->body);
    if (reply.drop_connection) return MHD_NO;  // a host that is down
    r.status = reply.status;
    r.close = reply.close;
    r.headers = {{"Cache-Control", "no-cache, no-store"},
                 {"Content-Type", reply.content_type}};
    if (reply.cors) {
      r.headers.emplace_back("Access-Control-Allow-Origin", "*");
      r.headers.emplace_back("Access-Control-Allow-Headers",
                             "X-Requested-With");
    }
    r.body = std::move(reply.body);
    return Queue(c, r, state);
  }
  if (state->method == "OPTIONS" && !absl::StartsWith(path, "/sim/")) {
    const char* requested = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    HttpResponse r = pool->HandleOptions(listener->host.name,
                                         requested != nullptr ? requested : "");
    return Queue(c, r, state);
  }
  HttpRequest req = RequestOf(c, listener, *state, path);
  if (state->method == "PUT") {
    if (state->spool_fd >= 0) fsync(state->spool_fd);
    req.body_path = state->spool_path;
    req.body_size = state->spooled;
  } else if (state->method == "POST") {
    // Control-endpoint bodies go through a file too, so HandleHttp has one
    // path.
    std::string templ =
        (std::filesystem::temp_directory_path() / "xapi-sim-post-XXXXXX")
            .string();
    int fd = mkstemp(templ.data());
    if (fd >= 0) {
      (void)!write(fd, state->body.data(), state->body.size());
      close(fd);
      state->spool_path = templ;
      req.body_path = templ;
    }
  }
  HttpResponse r = pool->HandleHttp(req);
  return Queue(c, r, state);
}

void OnCompleted(void* /*cls*/, MHD_Connection* /*c*/, void** con_cls,
                 MHD_RequestTerminationCode toe) {
  auto* state = static_cast<RequestState*>(*con_cls);
  if (state == nullptr) return;
  if (state->upload != nullptr) state->upload->Abort();
  if (state->stream != nullptr && state->stream->stream != nullptr &&
      !state->stream->finished) {
    state->stream->finished = true;
    state->stream->stream->Finish(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK &&
                                  state->stream->ended &&
                                  !state->stream->failed);
  }
  delete state;
  *con_cls = nullptr;
}

void LogMhdError(void* /*cls*/, const char* fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  VMB_LOG(WARNING) << "libmicrohttpd: " << buf;
}

MHD_Daemon* StartDaemon(SimServer::Listener* l, const std::string& address,
                        int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) return nullptr;
  unsigned int flags = MHD_USE_THREAD_PER_CONNECTION |
                       MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (!l->tls.cert_pem.empty()) {
    flags |= MHD_USE_TLS;
    return MHD_start_daemon(
        flags, 0, nullptr, nullptr, &OnRequest, l, MHD_OPTION_EXTERNAL_LOGGER,
        &LogMhdError, nullptr, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, &OnCompleted, l, MHD_OPTION_HTTPS_MEM_KEY,
        l->tls.key_pem.c_str(), MHD_OPTION_HTTPS_MEM_CERT,
        l->tls.cert_pem.c_str(), MHD_OPTION_END);
  }
  return MHD_start_daemon(
      flags, 0, nullptr, nullptr, &OnRequest, l, MHD_OPTION_EXTERNAL_LOGGER,
      &LogMhdError, nullptr, MHD_OPTION_SOCK_ADDR, &addr,
      MHD_OPTION_NOTIFY_COMPLETED, &OnCompleted, l, MHD_OPTION_END);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimServer>> SimServer::Start(
    SimPool* pool, const Options& options) {
  std::unique_ptr<SimServer> server(new SimServer());
  server->pool_ = pool;
  server->options_ = options;
  const bool tls =
      !options.host_tls.empty() ||
      (!options.tls_cert_pem.empty() && !options.tls_key_pem.empty());
  server->scheme_ = tls ? "https" : "http";
  const std::vector<HostInfo> hosts = pool->hosts();
  for (const HostInfo& h : hosts) {
    if (!options.host_tls.empty() && options.host_tls.count(h.name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("no TLS certificate for host ", h.name));
    }
  }
  for (int attempt = 0; attempt < 50; ++attempt) {
    server->StopListeners();
    int port = options.port;
    bool ok = true;
    for (const HostInfo& h : hosts) {
      auto l = std::make_unique<Listener>();
      l->pool = pool;
      l->server = server.get();
      l->host = h;
      if (!options.host_tls.empty()) {
        l->tls = options.host_tls.at(h.name);
      } else if (tls) {
        l->tls = {options.tls_cert_pem, options.tls_key_pem};
      }
      l->daemon = StartDaemon(l.get(), h.address, port);
      if (l->daemon == nullptr) {
        ok = false;
        break;
      }
      if (port == 0) {
        const MHD_DaemonInfo* info =
            MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
        port = info != nullptr ? info->port : 0;
      }
      server->listeners_.push_back(std::move(l));
    }
    if (ok) {
      server->port_ = port;
      pool->SetEndpoint(server->scheme_, port);
      return server;
    }
    if (options.port != 0) break;  // a fixed port that is taken: no retry
  }
  server->StopListeners();
  return absl::UnavailableError(
      options.port != 0 ? absl::StrCat("cannot listen on port ", options.port,
                                       " of every host address")
                        : "no free port shared by every host address");
}

SimServer::~SimServer() { Stop(); }

void SimServer::Stop() {
  if (listeners_.empty()) return;
  pool_->Shutdown();
  StopListeners();
}

void SimServer::StopListeners() {
  for (auto& l : listeners_) {
    if (l->daemon != nullptr) MHD_stop_daemon(l->daemon);
  }
  listeners_.clear();
}

std::string SimServer::UrlOf(const HostInfo& host) const {
  return absl::StrCat(scheme_, "://", host.address, ":", port_);
}

}  // namespace vmb::sim
