// SPDX-License-Identifier: Apache-2.0
// The HTTP data plane against a real xapi-sim process on loopback.
#include "common/xapi/xapi_http_stream.h"

#include <string.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <openssl/evp.h>

#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/xenapi_error.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::vmb::testing::SimProcess;
using ::vmb::testing::StatusIs;

// Pool hosts known by their addresses only.
std::vector<HostIdentity> ByAddress(const std::vector<std::string>& addresses) {
  std::vector<HostIdentity> out;
  for (const std::string& a : addresses) {
    HostIdentity h;
    h.address = a;
    out.push_back(h);
  }
  return out;
}

// A sink that hashes what it receives.
class HashingSink {
 public:
  HashingSink() : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~HashingSink() { EVP_MD_CTX_free(ctx_); }
  XapiStreamSink sink() {
    return [this](absl::string_view data) {
      EVP_DigestUpdate(ctx_, data.data(), data.size());
      bytes_ += data.size();
      return absl::OkStatus();
    };
  }
  std::string Hex() {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    return absl::BytesToHexString(
        absl::string_view(reinterpret_cast<char*>(md), n));
  }
  uint64_t bytes() const { return bytes_; }

 private:
  EVP_MD_CTX* ctx_;
  uint64_t bytes_ = 0;
};

class XapiStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { StartSim({}); }

  void StartSim(const SimProcess::Options& options) {
    client_.reset();
    auto sim = SimProcess::Start(options);
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK_AND_ASSIGN(session_, client_->SessionRef());
  }

  std::string VmRef(const std::string& name) {
    auto ref = vmb::testing::VmRefByName(*client_, name);
    EXPECT_OK(ref.status());
    return ref.ok() ? *ref : "";
  }

  // The first disk VDI of a VM record.
  std::string FirstDisk(const std::string& vm_ref) {
    auto vm = client_->GetVm(vm_ref);
    EXPECT_OK(vm.status());
    for (const std::string& vbd_ref : vm->vbds) {
      auto vbd = client_->GetVbd(vbd_ref);
      if (vbd.ok() && vbd->type == "Disk") return vbd->vdi;
    }
    ADD_FAILURE() << "no disk";
    return "";
  }

  // Snapshot of `name` and its first disk; the source disk's uuid.
  struct Snap {
    std::string vm;
    std::string vdi;
    std::string source_vdi_uuid;
    int64_t size = 0;
  };
  Snap Snapshot(const std::string& name) {
    Snap s;
    const std::string vm = VmRef(name);
    auto snap = client_->SnapshotVm(vm, "stream-test", {});
    EXPECT_OK(snap.status());
    s.vm = *snap;
    s.vdi = FirstDisk(s.vm);
    auto vdi = client_->GetVdi(s.vdi);
    EXPECT_OK(vdi.status());
    s.size = vdi->virtual_size;
    auto source = client_->GetVdi(vdi->snapshot_of);
    EXPECT_OK(source.status());
    s.source_vdi_uuid = source->uuid;
    return s;
  }

  XapiStreamRequest Request(const std::string& host, const std::string& path) {
    XapiStreamRequest r;
    r.base_url = sim_->host_url(host);
    r.path = path;
    r.session_id = session_;
    r.allowed_redirect_hosts = ByAddress(sim_->host_addresses());
    r.timeouts.first_byte = absl::Seconds(60);
    r.timeouts.inactivity = absl::Seconds(60);
    auto task = client_->CreateTask("stream test", "");
    EXPECT_OK(task.status());
    r.task_id = *task;
    return r;
  }

  // Waits (bounded) for the task to leave "pending".
  TaskRecord FinalTask(const std::string& task) {
    auto t = vmb::testing::WaitForTask(*client_, task);
    EXPECT_OK(t.status());
    return t.ok() ? *t : TaskRecord();
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string session_;
};

TEST_F(XapiStreamTest, RawExportCarriesTheDisksBytes) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}, {"format", "raw"}};
  HashingSink sink;
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result, XapiStreamGet(r, sink.sink()));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo expected, sim_->Vdi(s.source_vdi_uuid));
  EXPECT_EQ(sink.bytes(), static_cast<uint64_t>(s.size));
  EXPECT_EQ(result.bytes, static_cast<uint64_t>(s.size));
  EXPECT_EQ(sink.Hex(), expected.sha256());
  EXPECT_EQ(result.http_version, "HTTP/1.1");
  EXPECT_EQ(result.task_id_header, r.task_id);
  EXPECT_EQ(FinalTask(r.task_id).status, TaskStatus::kSuccess);
}

TEST_F(XapiStreamTest, XvaExportIsHttp10WithoutLength) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest r = Request("xcp-host3", "/export");
  r.query = {{"ref", s.vm}};
  HashingSink sink;
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result, XapiStreamGet(r, sink.sink()));
  EXPECT_EQ(result.http_version, "HTTP/1.0");
  EXPECT_EQ(result.content_type, "application/octet-stream");
  EXPECT_GT(result.bytes, 1024u);
  EXPECT_EQ(result.bytes % 512, 0u);
  EXPECT_EQ(FinalTask(r.task_id).status, TaskStatus::kSuccess);
}

TEST_F(XapiStreamTest, SessionTravelsOnlyAsACookie) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest r = Request("xcp-host2", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  HashingSink sink;
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result, XapiStreamGet(r, sink.sink()));
  EXPECT_THAT(result.final_url, Not(HasSubstr("session")));
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests("xcp-host2"));
  ASSERT_EQ(log.requests_size(), 1);
  EXPECT_TRUE(log.requests(0).session_cookie());
  EXPECT_FALSE(log.requests(0).session_in_query());
  EXPECT_EQ(log.requests(0).host(),
            "xcp-host2");  // served by the host we asked
}

TEST_F(XapiStreamTest, FollowsARedirectToAPoolHostThatSeesTheSr) {
  // DEV-local-build lives on xcp-host3's local SR; ask xcp-host1.
  Snap s = Snapshot("DEV-local-build");
  XapiStreamRequest r = Request("xcp-host1", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  HashingSink sink;
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result, XapiStreamGet(r, sink.sink()));
  EXPECT_EQ(result.redirects, 1);
  EXPECT_THAT(result.final_url, HasSubstr("127.0.0.4"));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo expected, sim_->Vdi(s.source_vdi_uuid));
  EXPECT_EQ(sink.Hex(), expected.sha256());
  EXPECT_EQ(FinalTask(r.task_id).status, TaskStatus::kSuccess);
}

TEST_F(XapiStreamTest, RefusesARedirectOutsideThePool) {
  Snap s = Snapshot("DEV-local-build");
  XapiStreamRequest r = Request("xcp-host1", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  r.allowed_redirect_hosts = ByAddress({"127.0.0.2"});
  HashingSink sink;
  EXPECT_THAT(XapiStreamGet(r, sink.sink()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a host of this pool")));
  EXPECT_EQ(sink.bytes(), 0u);
}

TEST_F(XapiStreamTest, ErrorPageBecomesTheXenApiError) {
  XapiStreamRequest r = Request("xcp-host3", "/export");
  r.query = {{"ref", VmRef("DEV-RH6")}};  // a running VM, not a snapshot
  HashingSink sink;
  absl::Status s = XapiStreamGet(r, sink.sink()).status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          HasSubstr("HTTP 500")));
  EXPECT_TRUE(IsXenApiError(s, "VM_BAD_POWER_STATE"));
  TaskRecord t = FinalTask(r.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  ASSERT_FALSE(t.error_info.empty());
  EXPECT_EQ(t.error_info[0], "VM_BAD_POWER_STATE");
}

TEST_F(XapiStreamTest, EmbeddedHttp500AtTheStartIsAnError) {
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "EMBEDDED_500", "call": "/export_raw_vdi",
                               "error": ["SR_BACKEND_FAILURE_46"], "times": 1})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}, {"format", "vhd"}};
  HashingSink sink;
  absl::Status status = XapiStreamGet(r, sink.sink()).status();
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("XAPI's error response as the whole body")));
  EXPECT_TRUE(IsEmbeddedErrorResponse(status));
  ASSERT_TRUE(GetXenApiError(status).has_value());
  EXPECT_EQ(GetXenApiError(status)->code, "SR_BACKEND_FAILURE_46");
  EXPECT_THAT(GetXenApiError(status)->params[1],
              HasSubstr("not detached cleanly"));
  // The sink had the bytes (they might have been a disk's); the caller
  // decides by the task, which failed.
  EXPECT_GT(sink.bytes(), 0u);
  EXPECT_EQ(FinalTask(r.task_id).status, TaskStatus::kFailure);
}

TEST_F(XapiStreamTest, EmbeddedHttp500LaterShowsOnlyInTheTask) {
  // The data plane cannot see an error page in the middle of the data; the
  // task does (and the stream verifier, later, does too).
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "EMBEDDED_500", "call": "/export_raw_vdi",
                               "after_bytes": "1048576", "times": 1})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  HashingSink sink;
  ASSERT_OK(XapiStreamGet(r, sink.sink()).status());
  EXPECT_LT(sink.bytes(), static_cast<uint64_t>(s.size));
  TaskRecord t = FinalTask(r.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  EXPECT_EQ(t.error_info.at(0), "SR_BACKEND_FAILURE_46");
}

TEST_F(XapiStreamTest, CutStreamFailsTheTaskWithVdiIoError) {
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CUT", "after_bytes": "3000000", "times": 1})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  HashingSink sink;
  // The connection just closes: for a body without a length that looks like
  // the end. Only the task tells the truth.
  (void)XapiStreamGet(r, sink.sink());
  EXPECT_LE(sink.bytes(), 3000000u);
  TaskRecord t = FinalTask(r.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  EXPECT_EQ(t.error_info,
            (std::vector<std::string>{"VDI_IO_ERROR", "Device I/O errors"}));
}

TEST_F(XapiStreamTest, StallHitsTheInactivityTimeout) {
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "STALL", "after_bytes": "2097152", "times": 1})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  r.timeouts.inactivity = absl::Seconds(1);
  HashingSink sink;
  EXPECT_THAT(
      XapiStreamGet(r, sink.sink()).status(),
      StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("stalled")));
  EXPECT_EQ(sink.bytes(), 2097152u);
  // The simulator notices the client left and fails the task.
  EXPECT_EQ(FinalTask(r.task_id).status, TaskStatus::kFailure);
}

TEST_F(XapiStreamTest, NoFirstByteHitsTheFirstByteTimeout) {
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(
      sim_->AddFault(R"({"kind": "STALL", "after_bytes": "0", "times": 1})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  r.timeouts.first_byte = absl::Seconds(1);
  HashingSink sink;
  EXPECT_THAT(XapiStreamGet(r, sink.sink()).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("no data within")));
}

TEST_F(XapiStreamTest, CancelFromAnotherThread) {
  Snap s = Snapshot("DEV-RH6");
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "BANDWIDTH", "bytes_per_second": "1048576"})"));
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  absl::Notification cancel, got_data;
  r.cancel = &cancel;
  std::thread canceller([&] {
    got_data.WaitForNotificationWithTimeout(absl::Seconds(60));
    cancel.Notify();
  });
  std::atomic<uint64_t> bytes{0};
  absl::Status status = XapiStreamGet(r, [&](absl::string_view data) {
                          bytes += data.size();
                          if (!got_data.HasBeenNotified()) got_data.Notify();
                          return absl::OkStatus();
                        }).status();
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LT(bytes.load(), static_cast<uint64_t>(s.size));
}

TEST_F(XapiStreamTest, BandwidthLimitIsHonoured) {
  Snap s = Snapshot("DEV-RH6");  // 24 MiB
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  r.bandwidth_limit = 16 << 20;
  HashingSink sink;
  const absl::Time start = absl::Now();
  ASSERT_OK(XapiStreamGet(r, sink.sink()).status());
  // A lower bound only: it cannot go faster than the limit allows.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1000));
  EXPECT_EQ(sink.bytes(), static_cast<uint64_t>(s.size));
}

TEST_F(XapiStreamTest, SinkErrorAbortsTheTransfer) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  uint64_t bytes = 0;
  absl::Status status = XapiStreamGet(r, [&](absl::string_view data) {
                          bytes += data.size();
                          return bytes > (1 << 20)
                                     ? absl::ResourceExhaustedError("disk full")
                                     : absl::OkStatus();
                        }).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("disk full")));
  EXPECT_LT(bytes, static_cast<uint64_t>(s.size));
}

TEST_F(XapiStreamTest, BadSessionIsUnauthenticated) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  r.session_id = "OpaqueRef:00000000-dead-beef-0000-000000000000";
  HashingSink sink;
  absl::Status status = XapiStreamGet(r, sink.sink()).status();
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("401")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("dead-beef")));
  TaskRecord t = FinalTask(r.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  EXPECT_EQ(t.error_info.at(0), "SESSION_AUTHENTICATION_FAILED");
}

TEST_F(XapiStreamTest, NoHostCanServeClosesWithoutAnAnswer) {
  Snap s = Snapshot("DEV-local-build");
  ASSERT_OK(sim_->AddFault(R"({"kind": "HOST_DOWN", "host": "xcp-host3"})"));
  XapiStreamRequest r = Request("xcp-host1", "/export_raw_vdi");
  r.query = {{"vdi", s.vdi}};
  HashingSink sink;
  EXPECT_THAT(
      XapiStreamGet(r, sink.sink()).status(),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("without answering")));
  TaskRecord t = FinalTask(r.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  EXPECT_EQ(t.error_info.at(0), "NO_HOSTS_AVAILABLE");
}

TEST_F(XapiStreamTest, UnreachableHostIsUnavailable) {
  XapiStreamRequest r = Request("xcp-host1", "/export");
  r.base_url = "http://127.0.0.1:1";
  HashingSink sink;
  EXPECT_THAT(XapiStreamGet(r, sink.sink()).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

class XapiStreamTlsTest : public XapiStreamTest {
 protected:
  void SetUp() override {
    dir_ = vmb::testing::MakeTempDir("tls");
    ASSERT_OK_AND_ASSIGN(cert_, vmb::testing::MakeSelfSignedCert(dir_, "pool"));
    ASSERT_OK_AND_ASSIGN(other_,
                         vmb::testing::MakeSelfSignedCert(dir_, "other"));
    StartSim({"", cert_.cert_path, cert_.key_path});
  }

  absl::Status Fetch(const TlsOptions& tls) {
    XapiStreamRequest r = Request("xcp-host3", "/export_raw_vdi");
    r.query = {{"vdi", vdi_}};
    r.tls = tls;
    HashingSink sink;
    return XapiStreamGet(r, sink.sink()).status();
  }

  std::string dir_;
  vmb::testing::TestCert cert_;
  vmb::testing::TestCert other_;
  std::string vdi_;
};

// Options that pin `sha256` for the host `address`.
TlsOptions PinFor(const std::string& address, const std::string& sha256) {
  TlsOptions tls;
  tls.pins = std::make_shared<HostPins>();
  EXPECT_OK(tls.pins->AddPin(address, sha256));
  return tls;
}

TlsOptions CaFile(const std::string& path) {
  TlsOptions tls;
  tls.ca_file = path;
  return tls;
}

TEST_F(XapiStreamTlsTest, VerifiesAgainstACaFileOrAPin) {
  EXPECT_THAT(sim_->master_url(), ::testing::StartsWith("https://"));
  vdi_ = Snapshot("DEV-RH6").vdi;
  const std::string host3 = ParseHttpUrl(sim_->host_url("xcp-host3"))->host;
  EXPECT_OK(Fetch(CaFile(cert_.cert_path)));
  EXPECT_OK(Fetch(PinFor(host3, cert_.sha256)));
  EXPECT_OK(Fetch(PinFor(host3, absl::AsciiStrToLower(cert_.sha256))));
  TlsOptions insecure;
  insecure.insecure = true;
  EXPECT_OK(Fetch(insecure));
  EXPECT_THAT(Fetch(CaFile(other_.cert_path)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(
      Fetch(PinFor(host3, other_.sha256)),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(host3)));
  // A pin for another host only: this one has none, and no CA is given.
  EXPECT_THAT(Fetch(PinFor("127.0.0.99", cert_.sha256)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin for host " + host3)));
  // No CA given: the system store does not know a self-signed certificate.
  EXPECT_THAT(Fetch({}), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(HostPins().AddPin(host3, "12:34"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(XapiStreamTlsTest, XmlRpcVerifiesThePinToo) {
  const std::string master = ParseHttpUrl(sim_->master_url())->host;
  for (const auto& [pin, ok] :
       {std::pair{cert_.sha256, true}, std::pair{other_.sha256, false}}) {
    XmlRpcXenApiClient::Options o;
    o.url = sim_->master_url();
    o.password = sim_->password();
    CurlXmlRpcTransport::Options t;
    t.tls = PinFor(master, pin);
    XmlRpcXenApiClient client(o, std::make_unique<CurlXmlRpcTransport>(t));
    absl::Status s = client.Login();
    EXPECT_EQ(s.ok(), ok) << s;
  }
}

// The error response XAPI wrote as a 200 body in xen-api #4603, byte for
// byte (headers as captured, with HTTP's CRLF).
constexpr char kIssue4603Page[] =
    "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
    "occurred; please wait a while and try again. If the problem persists, "
    "please contact your support representative.<h1> Additional information "
    "</h1>SR_BACKEND_FAILURE_46: [ ; The VDI is not available [opterr=VDI "
    "929df5ec-a9b5-4f40-8fbe-636509070c03 not detached cleanly];  "
    "]</body></html>";

std::string Issue4603Response() {
  return absl::StrCat(
      "HTTP/1.1 500 Internal Error\r\ncontent-length: 357\r\n"
      "content-type:text/html\r\nconnection:close\r\n"
      "cache-control:no-cache, no-store\r\n\r\n",
      kIssue4603Page);
}

TEST(EmbeddedErrorResponseTest, XapisWholeErrorResponseIsRecognised) {
  ASSERT_EQ(std::string(kIssue4603Page).size(), 357u);
  std::optional<XenApiError> e =
      ParseEmbeddedErrorResponse(Issue4603Response());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "SR_BACKEND_FAILURE_46");
  EXPECT_THAT(e->params[1], HasSubstr("not detached cleanly"));
}

TEST(EmbeddedErrorResponseTest, APrefixIsNotEnough) {
  // A disk that starts like an error response is a disk.
  EXPECT_FALSE(ParseEmbeddedErrorResponse("HTTP/1.1 500 Internal Error\r\n" +
                                          std::string(4096, '\0')));
  EXPECT_FALSE(ParseEmbeddedErrorResponse(Issue4603Response() + "more data"));
  // Other lengths than the page's, other status lines, other pages.
  std::string wrong_length = Issue4603Response();
  wrong_length.replace(wrong_length.find("357"), 3, "356");
  EXPECT_FALSE(ParseEmbeddedErrorResponse(wrong_length));
  std::string ok_status = Issue4603Response();
  ok_status.replace(9, 3, "200");
  EXPECT_FALSE(ParseEmbeddedErrorResponse(ok_status));
  EXPECT_FALSE(ParseEmbeddedErrorResponse(
      "HTTP/1.1 500 Internal Error\r\n\r\n<html><body>hello</body></html>"));
  EXPECT_FALSE(ParseEmbeddedErrorResponse("HTTP/1.1 500"));
  EXPECT_FALSE(ParseEmbeddedErrorResponse(""));
}

// An upload body of `bytes`, counting rewinds.
struct MemoryBody {
  explicit MemoryBody(std::string bytes) : data(std::move(bytes)) {}
  XapiUploadBody Body() {
    XapiUploadBody b;
    b.size = data.size();
    b.read = [this](char* buffer, size_t max) -> absl::StatusOr<size_t> {
      const size_t n = std::min(max, data.size() - pos);
      memcpy(buffer, data.data() + pos, n);
      pos += n;
      return n;
    };
    b.rewind = [this] {
      pos = 0;
      ++rewinds;
      return absl::OkStatus();
    };
    return b;
  }
  std::string data;
  size_t pos = 0;
  int rewinds = 0;
};

std::string Pattern(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i)
    out[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
  return out;
}

TEST_F(XapiStreamTest, PutPutsTheBytesOnTheDisk) {
  Snap s = Snapshot("DEV-RH6");
  const std::string bytes = Pattern(3 * 1024 * 1024 + 17);
  XapiStreamRequest put = Request("xcp-host3", "/import_raw_vdi");
  put.query = {{"vdi", s.vdi}, {"format", "raw"}};
  MemoryBody body(bytes);
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result,
                       XapiStreamPut(put, body.Body()));
  EXPECT_EQ(result.bytes, bytes.size());
  EXPECT_EQ(result.redirects, 0);
  EXPECT_EQ(FinalTask(put.task_id).status, TaskStatus::kSuccess);
  // What an export of the disk now starts with.
  XapiStreamRequest get = Request("xcp-host3", "/export_raw_vdi");
  get.query = {{"vdi", s.vdi}, {"format", "raw"}};
  std::string head;
  ASSERT_OK(XapiStreamGet(get, [&](absl::string_view data) {
              if (head.size() < bytes.size())
                absl::StrAppend(&head,
                                data.substr(0, bytes.size() - head.size()));
              return absl::OkStatus();
            }).status());
  EXPECT_TRUE(head == bytes) << "the disk does not start with the bytes put";
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests("xcp-host3"));
  ASSERT_GE(log.requests_size(), 1);
  EXPECT_EQ(log.requests(0).bytes_received(), bytes.size());
  EXPECT_TRUE(log.requests(0).session_cookie());
  EXPECT_FALSE(log.requests(0).session_in_query());
}

TEST_F(XapiStreamTest, PutFollowsARedirectAndSendsTheBodyAgain) {
  // DEV-local-build's disk is on xcp-host3's local SR; ask xcp-host1.
  Snap s = Snapshot("DEV-local-build");
  XapiStreamRequest put = Request("xcp-host1", "/import_raw_vdi");
  put.query = {{"vdi", s.vdi}};
  MemoryBody body(Pattern(2 * 1024 * 1024));
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result,
                       XapiStreamPut(put, body.Body()));
  EXPECT_EQ(result.redirects, 1);
  EXPECT_THAT(result.final_url, HasSubstr("127.0.0.4"));
  EXPECT_EQ(result.bytes, body.data.size());
  EXPECT_EQ(FinalTask(put.task_id).status, TaskStatus::kSuccess);
}

TEST_F(XapiStreamTest, ASourceErrorEndsTheUploadAndTheTaskFails) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest put = Request("xcp-host3", "/import_raw_vdi");
  put.query = {{"vdi", s.vdi}};
  XapiUploadBody body;
  body.size = 8 * 1024 * 1024;
  uint64_t given = 0;
  body.read = [&](char* buffer, size_t max) -> absl::StatusOr<size_t> {
    if (given >= 1024 * 1024)
      return absl::DataLossError("sha256 of web.raw does not match");
    memset(buffer, 'x', max);
    given += max;
    return max;
  };
  EXPECT_THAT(XapiStreamPut(put, body).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("PUT /import_raw_vdi to http://")));
  TaskRecord t = FinalTask(put.task_id);
  EXPECT_EQ(t.status, TaskStatus::kFailure);
  // The disk kept its bytes.
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo after, sim_->Vdi(s.source_vdi_uuid));
  XapiStreamRequest get = Request("xcp-host3", "/export_raw_vdi");
  get.query = {{"vdi", s.vdi}};
  HashingSink sink;
  ASSERT_OK(XapiStreamGet(get, sink.sink()).status());
  EXPECT_EQ(sink.Hex(), after.sha256());
}

TEST_F(XapiStreamTest, PutErrorPageBecomesTheXenApiError) {
  XapiStreamRequest put = Request("xcp-host3", "/import_raw_vdi");
  put.query = {{"vdi", "OpaqueRef:nope"}};
  MemoryBody body(Pattern(4 * 1024 * 1024));
  absl::Status s = XapiStreamPut(put, body.Body()).status();
  EXPECT_TRUE(IsXenApiError(s, "HANDLE_INVALID")) << s;
  EXPECT_EQ(FinalTask(put.task_id).status, TaskStatus::kFailure);
}

TEST_F(XapiStreamTest, PutEmbeddedErrorAfterTheBodyIsAnError) {
  Snap s = Snapshot("DEV-RH6");
  XapiStreamRequest put = Request("xcp-host3", "/import_raw_vdi");
  put.query = {{"vdi", s.vdi}};
  // Longer than the disk: the write past its end fails.
  MemoryBody body(std::string(static_cast<size_t>(s.size) + 4096, 'z'));
  absl::Status st = XapiStreamPut(put, body.Body()).status();
  EXPECT_TRUE(IsXenApiError(st, "VDI_IO_ERROR")) << st;
  EXPECT_THAT(st.message(), HasSubstr("HTTP 200, then XAPI's error response"));
  EXPECT_EQ(FinalTask(put.task_id).status, TaskStatus::kFailure);
}

}  // namespace
}  // namespace vmb
