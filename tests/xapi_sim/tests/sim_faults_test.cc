// SPDX-License-Identifier: Apache-2.0
// xapi-sim's faults on every data handler, seen through a raw socket as a
// client sees them: for each handler and each fault kind that applies to it,
// the fault fires once and the reply is what XAPI would send. Also: faults
// that cannot fire are refused, PUT /import runs outside the simulator's
// lock, and PUT /import_raw_vdi puts chosen bytes on a disk.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <openssl/evp.h>

#include "common/xapi/xmlrpc_codec.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/xapi_sim/fixture.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::vmb::testing::SimProcess;

constexpr absl::Duration kDeadline = absl::Seconds(60);

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), len));
}

// ---- a plain HTTP client on a socket ----------------------------------------

// What came back on a connection, up to its end.
struct Reply {
  std::string raw;   // every byte received
  int status = 0;    // 0: no status line came
  std::string head;  // status line and headers
  std::string body;  // the bytes after the headers

  std::string Header(absl::string_view name) const {
    for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::EqualsIgnoreCase(line.substr(0, colon), name))
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
    return "";
  }
};

Reply ParseReply(std::string raw) {
  Reply r;
  r.raw = std::move(raw);
  const size_t end = r.raw.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.head = r.raw.substr(0, end);
  r.body = r.raw.substr(end + 4);
  std::vector<std::string> words = absl::StrSplit(r.head, ' ');
  if (words.size() >= 2) (void)absl::SimpleAtoi(words[1], &r.status);
  return r;
}

// A connection to one host of the simulator.
class Connection {
 public:
  // `base_url` is "http://ADDRESS:PORT".
  explicit Connection(const std::string& base_url) {
    absl::string_view rest = base_url;
    absl::ConsumePrefix(&rest, "http://");
    const size_t colon = rest.rfind(':');
    int port = 0;
    EXPECT_TRUE(absl::SimpleAtoi(rest.substr(colon + 1), &port));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, std::string(rest.substr(0, colon)).c_str(),
              &addr.sin_addr);
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
              0);
  }
  ~Connection() {
    Reset();
    if (writer_.joinable()) writer_.join();
  }

  // Sends all of `data` (false if the peer stopped it).
  bool Send(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Sends `data` from a thread of its own, so that a server that stops
  // reading cannot block the test.
  void SendInBackground(std::string data) {
    writer_ = std::thread([this, data = std::move(data)] { (void)Send(data); });
  }

  // Reads the status line and headers (and perhaps more).
  std::string ReadHead() {
    while (received_.find("\r\n\r\n") == std::string::npos) {
      const size_t had = received_.size();
      if (Read(had + 1).size() == had) break;
    }
    return received_;
  }
  // Reads until the peer closes (or resets) the connection, or until
  // `want` bytes have come when `want` is set.
  std::string Read(size_t want = std::string::npos) {
    const absl::Time end = absl::Now() + kDeadline;
    char buf[65536];
    while (received_.size() < want && absl::Now() < end) {
      pollfd p = {fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const size_t room = std::min(sizeof(buf), want - received_.size());
      const ssize_t n = recv(fd_, buf, room, 0);
      if (n <= 0) break;
      received_.append(buf, static_cast<size_t>(n));
    }
    return received_;
  }
  // True if nothing more arrives within `wait` (the peer holds the rest).
  bool Quiet(absl::Duration wait) {
    pollfd p = {fd_, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) == 0;
  }
  // Ends the connection with a reset, as a client that gives up does.
  void Reset() {
    if (fd_ < 0) return;
    shutdown(fd_, SHUT_RDWR);  // wakes a writer blocked in send()
    if (writer_.joinable()) writer_.join();
    linger l = {1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::thread writer_;
  std::string received_;
};

std::string RequestHead(const std::string& method, const std::string& target,
                        const std::string& session,
                        std::optional<size_t> content_length) {
  std::string head = absl::StrCat(method, " ", target,
                                  " HTTP/1.1\r\nHost: xapi\r\nCookie: "
                                  "session_id=",
                                  session, "\r\nConnection: close\r\n");
  if (content_length.has_value())
    absl::StrAppend(&head, "Content-Length: ", *content_length, "\r\n");
  return head + "\r\n";
}

// ---- the handlers and what each kind looks like
// -------------------------------

enum class Handler {
  kExport,
  kExportRawVdi,
  kExportMetadata,
  kDbDump,
  kImport,
  kImportRawVdi
};

const char* PathOf(Handler h) {
  switch (h) {
    case Handler::kExport:
      return "/export";
    case Handler::kExportRawVdi:
      return "/export_raw_vdi";
    case Handler::kExportMetadata:
      return "/export_metadata";
    case Handler::kDbDump:
      return "/pool/xmldbdump";
    case Handler::kImport:
      return "/import";
    case Handler::kImportRawVdi:
      return "/import_raw_vdi";
  }
  return "";
}

bool IsUpload(Handler h) {
  return h == Handler::kImport || h == Handler::kImportRawVdi;
}

struct Case {
  Handler handler;
  std::string kind;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string path = PathOf(info.param.handler);
  for (char& c : path) {
    if (!absl::ascii_isalnum(c)) c = '_';
  }
  return absl::StrCat(path.substr(1), "_", info.param.kind);
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (Handler h :
       {Handler::kExport, Handler::kExportRawVdi, Handler::kExportMetadata,
        Handler::kDbDump, Handler::kImport, Handler::kImportRawVdi}) {
    for (const char* kind : {"CALL_ERROR", "TASK_FAIL", "STALL", "CUT",
                             "EMBEDDED_500", "CORRUPT"}) {
      cases.push_back({h, kind});
    }
  }
  return cases;
}

// The demo pool's halted TEST-debian9 (one 16 MiB disk on the shared SR)
// is what every handler works on.
class SimFaultsTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    auto sim = SimProcess::Start();
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK_AND_ASSIGN(session_, client_->SessionRef());
    ASSERT_OK_AND_ASSIGN(vm_,
                         vmb::testing::VmRefByName(*client_, "TEST-debian9"));
    ASSERT_OK_AND_ASSIGN(VmRecord vm, client_->GetVm(vm_));
    ASSERT_OK_AND_ASSIGN(VbdRecord vbd, client_->GetVbd(vm.vbds[0]));
    vdi_ = vbd.vdi;
    ASSERT_OK_AND_ASSIGN(VdiRecord vdi, client_->GetVdi(vdi_));
    vdi_uuid_ = vdi.uuid;
  }

  std::string Target(Handler h, const std::string& task) {
    std::string query;
    switch (h) {
      case Handler::kExport:
      case Handler::kExportMetadata:
        query = "ref=" + vm_;
        break;
      case Handler::kExportRawVdi:
      case Handler::kImportRawVdi:
        query = "vdi=" + vdi_;
        break;
      case Handler::kDbDump:
      case Handler::kImport:
        break;
    }
    return absl::StrCat(PathOf(h), "?task_id=", task, query.empty() ? "" : "&",
                        query);
  }

  // A download, read to its end.
  Reply Get(Handler h, const std::string& task) {
    Connection c(sim_->master_url());
    EXPECT_TRUE(c.Send(RequestHead("GET", Target(h, task), session_, {})));
    return ParseReply(c.Read());
  }

  // An upload of `body`, with the reply read to its end.
  Reply Put(Handler h, const std::string& task, const std::string& body) {
    Connection c(sim_->master_url());
    EXPECT_TRUE(
        c.Send(RequestHead("PUT", Target(h, task), session_, body.size())));
    c.SendInBackground(body);
    return ParseReply(c.Read());
  }

  // The body an upload sends: an XVA of TEST-debian9 for /import, 3 MiB of
  // chosen bytes for /import_raw_vdi.
  std::string UploadBody(Handler h) {
    if (h == Handler::kImport) {
      absl::StatusOr<std::string> task = client_->CreateTask("x", "");
      EXPECT_OK(task.status());
      Reply xva = Get(Handler::kExport, task.value_or(""));
      EXPECT_EQ(xva.status, 200);
      return xva.body;
    }
    std::string bytes = "HTTP/1.1 500 Internal Error\r\n\r\n";
    while (bytes.size() < (3u << 20)) bytes += absl::StrCat(bytes.size(), ";");
    bytes.resize(3u << 20);
    return bytes;
  }

  // Where a byte-offset fault fires in the handler's body.
  static uint64_t AfterBytes(Handler h) {
    switch (h) {
      case Handler::kExport:
      case Handler::kExportRawVdi:
        return 65536 + 3;
      case Handler::kExportMetadata:
      case Handler::kDbDump:
        return 1024 + 3;
      case Handler::kImport:
        return 100000;  // inside the first disk chunk
      case Handler::kImportRawVdi:
        return (1u << 20) + 7;
    }
    return 0;
  }

  absl::StatusOr<sim::RequestLogEntry> LastLogEntry() {
    absl::StatusOr<sim::RequestLog> log = sim_->Requests();
    if (!log.ok()) return log.status();
    if (log->requests().empty()) return absl::NotFoundError("no request");
    return log->requests(log->requests_size() - 1);
  }

  // Polls the request log until the last request is stalling.
  void WaitUntilStalling() {
    const absl::Time end = absl::Now() + kDeadline;
    while (absl::Now() < end) {
      absl::StatusOr<sim::RequestLogEntry> e = LastLogEntry();
      ASSERT_OK(e.status());
      if (e->stalling()) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
    FAIL() << "the request never stalled";
  }

  // Polls the request log until the last request has an outcome.
  sim::RequestLogEntry WaitUntilFinished() {
    const absl::Time end = absl::Now() + kDeadline;
    while (absl::Now() < end) {
      absl::StatusOr<sim::RequestLogEntry> e = LastLogEntry();
      EXPECT_OK(e.status());
      if (!e.ok()) break;
      if (!e->outcome().empty()) return *e;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "the request never finished";
    return {};
  }

  TaskRecord Task(const std::string& task) {
    absl::StatusOr<TaskRecord> t = vmb::testing::WaitForTask(*client_, task);
    EXPECT_OK(t.status());
    return t.ok() ? *t : TaskRecord();
  }

  // What an upload left behind, to tell whether it took effect.
  std::string Effect(Handler h) {
    if (h == Handler::kImport) {
      absl::StatusOr<sim::SimState> s = sim_->State();
      EXPECT_OK(s.status());
      return s.ok() ? absl::StrCat(s->vms(), " VMs, ", s->vdis(), " VDIs") : "";
    }
    absl::StatusOr<sim::VdiInfo> v = sim_->Vdi(vdi_uuid_);
    EXPECT_OK(v.status());
    return v.ok() ? v->sha256() : "";
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string session_;
  std::string vm_;
  std::string vdi_;
  std::string vdi_uuid_;
};

// Complete bodies of each download handler end as the format says.
void ExpectComplete(Handler h, const Reply& r) {
  switch (h) {
    case Handler::kExport:
      EXPECT_TRUE(absl::EndsWith(r.body, std::string(1024, '\0')));
      break;
    case Handler::kExportRawVdi:
      EXPECT_EQ(r.body.size(), 16u << 20);
      break;
    case Handler::kExportMetadata:
      EXPECT_EQ(r.Header("Content-Length"), absl::StrCat(r.body.size()));
      EXPECT_TRUE(absl::EndsWith(r.body, std::string(1024, '\0')));
      break;
    case Handler::kDbDump:
      EXPECT_TRUE(absl::EndsWith(r.body, "</database>"));
      break;
    default:
      break;
  }
}

TEST_P(SimFaultsTest, FiresOnceAndLooksLikeXapi) {
  const Handler h = GetParam().handler;
  const std::string& kind = GetParam().kind;
  const uint64_t at = AfterBytes(h);
  std::string body;
  std::string disk_before;  // TEST-debian9's disk
  if (IsUpload(h)) body = UploadBody(h);
  if (h == Handler::kImportRawVdi) {
    ASSERT_OK_AND_ASSIGN(std::string task, client_->CreateTask("x", ""));
    disk_before = Get(Handler::kExportRawVdi, task).body;
    ASSERT_EQ(disk_before.size(), 16u << 20);
  }
  ASSERT_OK_AND_ASSIGN(sim::SimState state_before, sim_->State());
  const std::string before = IsUpload(h) ? Effect(h) : "";
  std::string fault = absl::StrCat(R"({"kind": ")", kind, R"(", "call": ")",
                                   PathOf(h), R"(", "times": 1)");
  if (kind == "CALL_ERROR") {
    absl::StrAppend(&fault, R"(, "error": ["SR_BACKEND_FAILURE_44"])");
  } else if (kind != "TASK_FAIL") {
    absl::StrAppend(&fault, R"(, "after_bytes": ")", at, R"(")");
  }
  ASSERT_OK(sim_->AddFault(fault + "}"));
  // Both tasks first: XML-RPC calls between the two requests would change
  // the database dump.
  ASSERT_OK_AND_ASSIGN(std::string task1, client_->CreateTask("first", ""));
  ASSERT_OK_AND_ASSIGN(std::string task2, client_->CreateTask("second", ""));

  Reply first;
  if (kind == "STALL") {
    // The body stops at the offset until the client gives up.
    Connection c(sim_->master_url());
    const std::string target = Target(h, task1);
    if (IsUpload(h)) {
      ASSERT_TRUE(c.Send(RequestHead("PUT", target, session_, body.size())));
      c.SendInBackground(body);
      WaitUntilStalling();
      ASSERT_OK_AND_ASSIGN(sim::RequestLogEntry e, LastLogEntry());
      EXPECT_EQ(e.bytes_received(), at);
    } else {
      ASSERT_TRUE(c.Send(RequestHead("GET", target, session_, {})));
      const size_t head_end = c.ReadHead().find("\r\n\r\n");
      ASSERT_NE(head_end, std::string::npos);
      const std::string got = c.Read(head_end + 4 + at);
      EXPECT_EQ(got.size(), head_end + 4 + at);
      WaitUntilStalling();
      EXPECT_TRUE(c.Quiet(absl::Milliseconds(200)))
          << "bytes came after the stall offset";
      first = ParseReply(got);
      EXPECT_EQ(first.status, 200);
    }
    c.Reset();
    sim::RequestLogEntry e = WaitUntilFinished();
    EXPECT_EQ(e.outcome(), "client closed during stall");
  } else {
    first = IsUpload(h) ? Put(h, task1, body) : Get(h, task1);
  }
  const std::string after_first = IsUpload(h) ? Effect(h) : "";
  // The fault is spent: the same request again succeeds.
  Reply second = IsUpload(h) ? Put(h, task2, body) : Get(h, task2);
  EXPECT_EQ(second.status, 200) << second.head;
  if (!IsUpload(h)) ExpectComplete(h, second);
  EXPECT_EQ(second.body.size() > 0, !IsUpload(h)) << second.body;

  const TaskRecord t1 = Task(task1);
  const TaskRecord t2 = Task(task2);
  EXPECT_EQ(t2.status, TaskStatus::kSuccess)
      << ::testing::PrintToString(t2.error_info);
  EXPECT_EQ(t1.status, kind == "CORRUPT" && h != Handler::kImport
                           ? TaskStatus::kSuccess
                           : TaskStatus::kFailure)
      << ::testing::PrintToString(t1.error_info);

  const bool disk = h == Handler::kExport || h == Handler::kExportRawVdi ||
                    h == Handler::kImportRawVdi;
  const std::string page_46 = absl::StrCat(
      "SR_BACKEND_FAILURE_46: [ ; The VDI is not available [opterr=VDI ",
      disk ? vdi_uuid_ : "", " not detached cleanly];  ]");
  if (kind == "CALL_ERROR") {
    EXPECT_EQ(first.status, 500);
    EXPECT_THAT(first.body, HasSubstr("<h1> Additional information </h1>"
                                      "SR_BACKEND_FAILURE_44: [ ; There is "
                                      "insufficient space;  ]</body></html>"));
    EXPECT_THAT(t1.error_info, ElementsAre("SR_BACKEND_FAILURE_44", "",
                                           "There is insufficient space", ""));
  } else if (kind == "TASK_FAIL") {
    EXPECT_EQ(first.status, 200);
    if (IsUpload(h)) {
      EXPECT_EQ(first.body, "");
    } else {
      EXPECT_EQ(first.body.size(), second.body.size());
      ExpectComplete(h, first);
    }
    EXPECT_THAT(t1.error_info,
                ElementsAre("VDI_IO_ERROR", "Device I/O errors"));
  } else if (kind == "STALL") {
    if (h == Handler::kImport) {
      EXPECT_THAT(t1.error_info, ElementsAre("IMPORT_ERROR_PREMATURE_EOF"));
    } else if (h == Handler::kImportRawVdi) {
      EXPECT_THAT(t1.error_info,
                  ElementsAre("VDI_IO_ERROR", "Device I/O errors"));
    } else {
      EXPECT_EQ(first.body, second.body.substr(0, at));
      EXPECT_THAT(t1.error_info,
                  ElementsAre("INTERNAL_ERROR", HasSubstr("EPIPE")));
    }
  } else if (kind == "CUT") {
    if (IsUpload(h)) {
      EXPECT_EQ(first.raw, "") << "a cut upload gets no reply";
    } else {
      EXPECT_EQ(first.status, 200);
      EXPECT_EQ(first.body, second.body.substr(0, at));
      if (h == Handler::kExportMetadata) {
        EXPECT_EQ(first.Header("Content-Length"),
                  absl::StrCat(second.body.size()))
            << "the client sees a body shorter than announced";
      }
    }
    if (disk || h == Handler::kImport) {
      EXPECT_THAT(t1.error_info,
                  ElementsAre("VDI_IO_ERROR", "Device I/O errors"));
    } else {
      EXPECT_THAT(t1.error_info,
                  ElementsAre("INTERNAL_ERROR", "simulated failure"));
    }
  } else if (kind == "EMBEDDED_500") {
    EXPECT_EQ(first.status, 200);
    std::string page;
    if (IsUpload(h)) {
      page = first.body;
    } else {
      EXPECT_EQ(first.body.substr(0, at), second.body.substr(0, at));
      page = first.body.substr(std::min<size_t>(at, first.body.size()));
    }
    EXPECT_THAT(page,
                StartsWith("HTTP/1.1 500 Internal Error\r\ncontent-length: "));
    EXPECT_THAT(page, HasSubstr(page_46));
    EXPECT_EQ(t1.error_info.size(), 4u);
    EXPECT_EQ(t1.error_info[0], "SR_BACKEND_FAILURE_46");
  } else if (kind == "CORRUPT") {
    EXPECT_EQ(first.status, 200);
    if (h == Handler::kImport) {
      // The flipped byte breaks the chunk's checksum: the import fails,
      // inside the 200 as XAPI reports errors met in the body.
      EXPECT_THAT(first.body, StartsWith("HTTP/1.1 500 Internal Error\r\n"));
      EXPECT_THAT(first.body,
                  HasSubstr("IMPORT_ERROR: [ checksum mismatch in Ref:"));
      ASSERT_EQ(t1.error_info.size(), 2u);
      EXPECT_EQ(t1.error_info[0], "IMPORT_ERROR");
    } else if (h == Handler::kImportRawVdi) {
      EXPECT_EQ(first.body, "");
    } else {
      ASSERT_EQ(first.body.size(), second.body.size());
      for (size_t i = 0; i < first.body.size(); ++i) {
        if (i == at) {
          EXPECT_EQ(first.body[i], static_cast<char>(second.body[i] ^ 0x5a));
        } else if (first.body[i] != second.body[i]) {
          ADD_FAILURE() << "byte " << i << " differs too";
          break;
        }
      }
    }
  }

  if (IsUpload(h)) {
    // A failed upload changes nothing; the successful one (and a raw upload
    // with a flipped byte, which XAPI cannot tell) takes effect.
    std::string flipped = body;
    flipped[at] ^= 0x5a;
    const std::string rest =
        h == Handler::kImportRawVdi ? disk_before.substr(body.size()) : "";
    if (kind == "CORRUPT" && h == Handler::kImportRawVdi) {
      EXPECT_EQ(after_first, Sha256Hex(flipped + rest));
    } else {
      EXPECT_EQ(after_first, before);
    }
    if (h == Handler::kImport) {
      EXPECT_EQ(Effect(h), absl::StrCat(state_before.vms() + 1, " VMs, ",
                                        state_before.vdis() + 1, " VDIs"));
      ASSERT_OK_AND_ASSIGN(XmlRpcValue result, DecodeXmlRpcValue(t2.result));
      EXPECT_EQ(result.size(), 1u);
    } else {
      EXPECT_EQ(Effect(h), Sha256Hex(body + rest));
      EXPECT_EQ(t2.result, absl::StrCat("<value>", vdi_, "</value>"));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryHandlerAndKind, SimFaultsTest,
                         ::testing::ValuesIn(AllCases()), CaseName);

// ---- faults that cannot fire are refused ------------------------------------

TEST(SimBadFaultTest, ControlEndpointAnswers400NamingTheProblem) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SimProcess> sim, SimProcess::Start());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"kind": "CALL_ERROR", "call": "VM.snapshott"})",
       "bad fault: call \"VM.snapshott\" is neither an XML-RPC method nor a "
       "data handler the simulator serves"},
      {R"({"kind": "CALL_ERROR", "call": "/export/"})",
       "call \"/export/\" is neither"},
      {R"({"kind": "STALL", "call": "VM.snapshot"})",
       "bad fault: STALL never applies to \"VM.snapshot\""},
      {R"({"kind": "CUT", "call": "VM.snapshot"})",
       "bad fault: CUT never applies to \"VM.snapshot\""},
      {R"({"kind": "TASK_FAIL", "call": "task.create"})",
       "TASK_FAIL never applies to \"task.create\""},
      {R"({"kind": "SLOW_CALL", "call": "/export", "delay_ms": 10})",
       "SLOW_CALL never applies to \"/export\""},
      {R"({"kind": "SLOW_CALL", "call": "VM.snapshot"})",
       "SLOW_CALL needs delay_ms"},
      {R"({"kind": "CALL_ERROR", "call": "session.login_with_password"})",
       "CALL_ERROR never applies to \"session.login_with_password\""},
      {R"({"kind": "CALL_ERROR", "call": "/pool/xmldbdump", "vm": "DEV-RH6"})",
       "vm never matches \"/pool/xmldbdump\""},
      {R"({"kind": "CUT", "call": "/import", "vm": "DEV-RH6"})",
       "vm never matches \"/import\""},
      {R"({"kind": "CALL_ERROR", "call": "host.get_all", "vm": "DEV-RH6"})",
       "vm never matches \"host.get_all\""},
      {R"({"kind": "SESSION_INVALID", "call": "VM.snapshot"})",
       "SESSION_INVALID does not look at call"},
      {R"({"kind": "HOST_DOWN", "host": "xcp-host2", "vm": "DEV-RH6"})",
       "HOST_DOWN does not look at vm"},
      {R"({"kind": "BANDWIDTH"})", "BANDWIDTH needs bytes_per_second"},
      {R"({"call": "/export"})", "bad fault: kind is required"},
  };
  for (const auto& [json, message] : cases) {
    ASSERT_OK_AND_ASSIGN(vmb::testing::HttpReply r,
                         vmb::testing::HttpRequestForTest(
                             "POST", sim->master_url() + "/sim/faults", json));
    EXPECT_EQ(r.status, 400) << json;
    EXPECT_THAT(r.body, HasSubstr(message)) << json;
  }
  // None of them was armed; good ones still are.
  ASSERT_OK(sim->AddFault(
      R"({"kind": "CALL_ERROR", "call": "/export_metadata", "vm": "DEV-RH6"})"));
  ASSERT_OK(sim->AddFault(R"({"kind": "STALL", "call": "/import_raw_vdi"})"));
  ASSERT_OK(sim->AddFault(
      R"({"kind": "SLOW_CALL", "call": "VM.get_all", "delay_ms": 1})"));
  ASSERT_OK_AND_ASSIGN(vmb::testing::HttpReply list,
                       vmb::testing::HttpRequestForTest(
                           "GET", sim->master_url() + "/sim/faults"));
  EXPECT_EQ(std::count(list.body.begin(), list.body.end(), '{'), 4)
      << list.body;  // the list and its three faults
}

TEST(SimBadFaultTest, AFixtureWithABadFaultDoesNotLoad) {
  sim::Fixture fixture = sim::DemoFixture();
  sim::Fault* f = fixture.add_faults();
  f->set_kind(sim::Fault::CORRUPT);
  f->set_call("VM.destroy");
  EXPECT_THAT(sim::SimPool::Create(fixture).status(),
              vmb::testing::StatusIs(
                  absl::StatusCode::kInvalidArgument,
                  HasSubstr("fixture: faults[0]: CORRUPT never applies to "
                            "\"VM.destroy\"")));
  f->set_call("/export_metadata");
  EXPECT_OK(sim::SimPool::Create(fixture).status());
}

// The list of served methods is the dispatcher's: every method in it is
// dispatched (not MESSAGE_METHOD_UNKNOWN), with the arity it accepts.
TEST(SimServedMethodsTest, EveryListedMethodIsServedAndNoOther) {
  auto pool = sim::SimPool::Create(sim::DemoFixture());
  ASSERT_OK(pool.status());
  InitXmlRpcCodec();
  int status = 0;
  auto call = [&](const std::string& method,
                  std::vector<XmlRpcValue> params) -> XmlRpcValue {
    const std::string body = (*pool)->HandleXmlRpc(
        "xcp-host1", EncodeMethodCall(method, params), &status);
    absl::StatusOr<XmlRpcValue> v = DecodeMethodResponse(body);
    EXPECT_OK(v.status()) << method;
    return v.ok() ? *v : XmlRpcValue();
  };
  const std::string session =
      call("session.login_with_password",
           {XmlRpcValue::String("root"), XmlRpcValue::String("demo-password")})
          .Find("Value")
          ->text();
  const std::vector<std::string> methods = sim::SimPool::ServedMethods();
  // What system.listMethods answers, without duplicates.
  const XmlRpcValue list = call("system.listMethods", {});
  std::vector<std::string> listed;
  for (const XmlRpcValue& v : list.items()) listed.push_back(v.text());
  EXPECT_EQ(listed, methods);
  EXPECT_EQ(std::set<std::string>(methods.begin(), methods.end()).size(),
            methods.size());
  for (const char* m :
       {"VM.snapshot", "VM.get_record", "VM.get_all_records", "VDI.destroy",
        "task.cancel", "host.get_address", "session.login_with_password",
        "VM.add_tags", "VM.start", "VDI.create"}) {
    EXPECT_THAT(methods, ::testing::Contains(m));
  }
  for (const std::string& method : methods) {
    if (method == "session.login_with_password" || method == "session.logout")
      continue;
    // A wrong number of parameters is refused as MESSAGE_PARAMETER_COUNT_
    // MISMATCH, which only a served method gets.
    std::vector<XmlRpcValue> params(8, XmlRpcValue::String(session));
    XmlRpcValue reply = call(method, params);
    ASSERT_NE(reply.Find("ErrorDescription"), nullptr) << method;
    EXPECT_EQ(reply.Find("ErrorDescription")->items()[0].text(),
              "MESSAGE_PARAMETER_COUNT_MISMATCH")
        << method;
  }
  for (const char* unknown :
       {"VM.snapshott", "VM.get_nothing", "VM.suspend", "Async.VM.snapshot"}) {
    EXPECT_THAT(methods, ::testing::Not(::testing::Contains(unknown)));
    XmlRpcValue reply = call(unknown, {XmlRpcValue::String(session)});
    EXPECT_EQ(reply.Find("ErrorDescription")->items()[0].text(),
              "MESSAGE_METHOD_UNKNOWN")
        << unknown;
  }
  EXPECT_THAT(sim::SimPool::ServedHandlers(),
              ElementsAre("/export", "/export_raw_vdi", "/export_metadata",
                          "/pool/xmldbdump", "/import", "/import_raw_vdi",
                          "/import_metadata"));
}

// ---- uploads
// ------------------------------------------------------------------

class SimUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sim = SimProcess::Start();
    ASSERT_OK(sim.status());
    sim_ = *std::move(sim);
    client_ = sim_->NewClient();
    ASSERT_OK_AND_ASSIGN(session_, client_->SessionRef());
  }

  std::string DiskOf(const std::string& vm_name) {
    auto vm = vmb::testing::VmRefByName(*client_, vm_name);
    EXPECT_OK(vm.status());
    auto rec = client_->GetVm(vm.value_or(""));
    EXPECT_OK(rec.status());
    if (!rec.ok()) return "";
    auto vbd = client_->GetVbd(rec->vbds[0]);
    EXPECT_OK(vbd.status());
    return vbd.ok() ? vbd->vdi : "";
  }

  Reply Request(const std::string& method, const std::string& target,
                const std::string& body, bool with_length = true) {
    Connection c(sim_->master_url());
    EXPECT_TRUE(c.Send(RequestHead(
        method, target, session_,
        with_length ? std::optional<size_t>(body.size()) : std::nullopt)));
    if (!body.empty()) c.SendInBackground(body);
    return ParseReply(c.Read());
  }

  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<XmlRpcXenApiClient> client_;
  std::string session_;
};

// While an import is held in the middle of its body (a STALL that lasts until
// the client leaves), XML-RPC calls still complete: the upload is read and
// parsed without the simulator's lock.
TEST_F(SimUploadTest, AnImportInProgressDoesNotBlockOtherRequests) {
  ASSERT_OK_AND_ASSIGN(std::string vm,
                       vmb::testing::VmRefByName(*client_, "TEST-debian9"));
  Reply xva = Request("GET", "/export?ref=" + vm, "", false);
  ASSERT_EQ(xva.status, 200);
  // Past ova.xml, in the middle of the first disk chunk.
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "STALL", "call": "/import", "after_bytes": "300000", "times": 1})"));
  Connection upload(sim_->master_url());
  ASSERT_TRUE(
      upload.Send(RequestHead("PUT", "/import", session_, xva.body.size())));
  upload.SendInBackground(xva.body);
  const absl::Time end = absl::Now() + kDeadline;
  bool stalling = false;
  while (!stalling && absl::Now() < end) {
    ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests());
    stalling = log.requests(log.requests_size() - 1).stalling();
  }
  ASSERT_TRUE(stalling);
  auto calls = std::async(std::launch::async, [&] {
    std::unique_ptr<XmlRpcXenApiClient> other = sim_->NewClient();
    absl::Status s = other->SessionRef().status();
    if (s.ok()) s = other->GetAllVms().status();
    return s;
  });
  const bool done =
      calls.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  upload.Reset();  // ends the stall either way
  ASSERT_TRUE(done) << "XML-RPC blocked behind the import";
  EXPECT_OK(calls.get());
}

// The bytes put on a disk with /import_raw_vdi are what every later export
// of it reads; a snapshot taken before keeps the old bytes.
TEST_F(SimUploadTest, ImportRawVdiPutsChosenBytesOnADisk) {
  const std::string vdi = DiskOf("TEST-debian9");
  ASSERT_OK_AND_ASSIGN(VdiRecord rec, client_->GetVdi(vdi));
  ASSERT_OK_AND_ASSIGN(std::string vm,
                       vmb::testing::VmRefByName(*client_, "TEST-debian9"));
  ASSERT_OK_AND_ASSIGN(std::string snap, client_->SnapshotVm(vm, "before", {}));
  const std::string old_disk =
      Request("GET", "/export_raw_vdi?vdi=" + vdi, "", false).body;
  ASSERT_EQ(old_disk.size(), 16u << 20);
  const std::string page =
      "HTTP/1.1 500 Internal Error\r\ncontent-length: 10\r\n\r\n0123456789";
  ASSERT_OK_AND_ASSIGN(std::string task, client_->CreateTask("upload", ""));
  Reply put = Request("PUT",
                      absl::StrCat("/import_raw_vdi?format=raw&task_id=", task,
                                   "&vdi=", rec.uuid),
                      page);
  EXPECT_EQ(put.status, 200);
  EXPECT_EQ(put.Header("task-id"), task);
  EXPECT_EQ(put.body, "");
  ASSERT_OK_AND_ASSIGN(TaskRecord t, vmb::testing::WaitForTask(*client_, task));
  EXPECT_EQ(t.status, TaskStatus::kSuccess);
  EXPECT_EQ(t.result, absl::StrCat("<value>", vdi, "</value>"));

  const std::string new_disk = page + old_disk.substr(page.size());
  Reply raw = Request("GET", "/export_raw_vdi?vdi=" + vdi, "", false);
  EXPECT_EQ(raw.body, new_disk);
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo info, sim_->Vdi(rec.uuid));
  EXPECT_EQ(info.sha256(), Sha256Hex(new_disk));
  EXPECT_EQ(info.content_seed(), 0u);
  // The XVA of the VM carries the new first chunk.
  Reply xva = Request("GET", "/export?ref=" + vm, "", false);
  EXPECT_THAT(xva.body, HasSubstr(page));
  // The snapshot was taken before: its disk keeps the old bytes.
  ASSERT_OK_AND_ASSIGN(VmRecord s, client_->GetVm(snap));
  ASSERT_OK_AND_ASSIGN(VbdRecord svbd, client_->GetVbd(s.vbds[0]));
  EXPECT_EQ(Request("GET", "/export_raw_vdi?vdi=" + svbd.vdi, "", false).body,
            old_disk);
  // A whole disk replaces everything.
  std::string whole(16u << 20, 'z');
  EXPECT_EQ(Request("PUT", "/import_raw_vdi?vdi=" + vdi, whole).status, 200);
  ASSERT_OK_AND_ASSIGN(info, sim_->Vdi(rec.uuid));
  EXPECT_EQ(info.sha256(), Sha256Hex(whole));
}

TEST_F(SimUploadTest, ImportRawVdiRefusesWhatXapiRefuses) {
  const std::string vdi = DiskOf("TEST-debian9");
  ASSERT_OK_AND_ASSIGN(VdiRecord rec, client_->GetVdi(vdi));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo before, sim_->Vdi(rec.uuid));
  auto task_error = [&](const std::string& target, const std::string& body,
                        int status, bool with_length = true) {
    absl::StatusOr<std::string> task = client_->CreateTask("t", "");
    EXPECT_OK(task.status());
    Reply r = Request("PUT", absl::StrCat(target, "&task_id=", *task), body,
                      with_length);
    EXPECT_EQ(r.status, status) << target << "\n" << r.raw.substr(0, 300);
    absl::StatusOr<TaskRecord> t = vmb::testing::WaitForTask(*client_, *task);
    EXPECT_OK(t.status());
    EXPECT_EQ(t->status, TaskStatus::kFailure);
    return std::make_pair(r, t->error_info);
  };
  // More bytes than the disk holds: vhd-tool's write fails after the 200.
  auto [big, big_error] = task_error("/import_raw_vdi?vdi=" + vdi,
                                     std::string((16u << 20) + 512, 'x'), 200);
  EXPECT_THAT(big.body, StartsWith("HTTP/1.1 500 Internal Error\r\n"));
  EXPECT_THAT(big.body, HasSubstr("VDI_IO_ERROR: [ Device I/O errors ]"));
  EXPECT_THAT(big_error, ElementsAre("VDI_IO_ERROR", "Device I/O errors"));
  // A format XAPI does not know: 404 headers, no page.
  auto [unknown, unknown_error] =
      task_error("/import_raw_vdi?format=iso&vdi=" + vdi, "abc", 404);
  EXPECT_EQ(unknown.body, "");
  EXPECT_THAT(unknown_error,
              ElementsAre("INTERNAL_ERROR", "Unknown format iso"));
  // No VDI named.
  auto [missing, missing_error] = task_error("/import_raw_vdi?x=1", "abc", 400);
  EXPECT_THAT(missing_error, ElementsAre("VDI_MISSING"));
  // No such VDI.
  auto [bad, bad_error] = task_error("/import_raw_vdi?vdi=nope", "abc", 500);
  EXPECT_THAT(bad.body, HasSubstr("HANDLE_INVALID: [ VDI; nope ]"));
  // A body that is not a VHD: the 200, then the write fails.
  auto [vhd, vhd_error] =
      task_error("/import_raw_vdi?format=vhd&vdi=" + vdi, "abc", 200);
  EXPECT_THAT(vhd_error, ElementsAre("VDI_IO_ERROR", "Device I/O errors"));
  // qcow2 is not simulated.
  auto [qcow, qcow_error] =
      task_error("/import_raw_vdi?format=qcow2&vdi=" + vdi, "abc", 500);
  EXPECT_THAT(qcow_error,
              ElementsAre("INTERNAL_ERROR", "format qcow2 is not simulated"));
  // Nothing was written.
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo after, sim_->Vdi(rec.uuid));
  EXPECT_EQ(after.sha256(), before.sha256());
  // Without a session: 401, before the body is read.
  Reply denied = ParseReply([&] {
    Connection c(sim_->master_url());
    EXPECT_TRUE(c.Send(absl::StrCat("PUT /import_raw_vdi?vdi=", vdi,
                                    " HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                    "3\r\n\r\nabc")));
    return c.Read();
  }());
  EXPECT_EQ(denied.status, 401);
}

// A STALL with a delay holds an upload that long, then it completes.
TEST_F(SimUploadTest, AStallWithADelayHoldsAnUploadThenItCompletes) {
  const std::string vdi = DiskOf("TEST-debian9");
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "STALL", "call": "/import_raw_vdi", "after_bytes": "1000", "delay_ms": 300})"));
  const absl::Time start = absl::Now();
  Reply r =
      Request("PUT", "/import_raw_vdi?vdi=" + vdi, std::string(5000, 'q'));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests());
  const sim::RequestLogEntry& e = log.requests(log.requests_size() - 1);
  EXPECT_EQ(e.outcome(), "ok");
  EXPECT_EQ(e.bytes_received(), 5000u);
  EXPECT_FALSE(e.stalling());
}

// A fault on a handler also fires for the same handler reached with a
// trailing slash.
TEST_F(SimUploadTest, AFaultOnAHandlerMatchesItsPathWithASlash) {
  ASSERT_OK_AND_ASSIGN(std::string vm,
                       vmb::testing::VmRefByName(*client_, "TEST-debian9"));
  ASSERT_OK(sim_->AddFault(
      R"({"kind": "CALL_ERROR", "call": "/export_metadata", "times": 1})"));
  Reply r = Request("GET", "/export_metadata/?ref=" + vm, "", false);
  EXPECT_EQ(r.status, 500);
  EXPECT_THAT(r.body, HasSubstr("INTERNAL_ERROR: [ simulated failure ]"));
  EXPECT_EQ(Request("GET", "/export_metadata/?ref=" + vm, "", false).status,
            200);
}

// An upload whose task is cancelled stops and changes nothing.
TEST_F(SimUploadTest, ACancelledTaskStopsAnUpload) {
  const std::string vdi = DiskOf("TEST-debian9");
  ASSERT_OK_AND_ASSIGN(VdiRecord rec, client_->GetVdi(vdi));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo before, sim_->Vdi(rec.uuid));
  ASSERT_OK_AND_ASSIGN(std::string task, client_->CreateTask("upload", ""));
  ASSERT_OK(client_->CancelTask(task));
  Reply r = Request(
      "PUT", absl::StrCat("/import_raw_vdi?task_id=", task, "&vdi=", vdi),
      std::string(4096, 'c'));
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, StartsWith("HTTP/1.1 500 Internal Error\r\n"));
  EXPECT_THAT(r.body,
              HasSubstr(absl::StrCat("TASK_CANCELLED: [ ", task, " ]")));
  ASSERT_OK_AND_ASSIGN(TaskRecord t, client_->GetTask(task));
  EXPECT_EQ(t.status, TaskStatus::kCancelled);
  EXPECT_THAT(t.error_info, ElementsAre("TASK_CANCELLED", task));
  ASSERT_OK_AND_ASSIGN(sim::VdiInfo after, sim_->Vdi(rec.uuid));
  EXPECT_EQ(after.sha256(), before.sha256());
  ASSERT_OK_AND_ASSIGN(sim::RequestLog log, sim_->Requests());
  EXPECT_EQ(log.requests(log.requests_size() - 1).outcome(), "cancelled");
}

}  // namespace
}  // namespace vmb
