// SPDX-License-Identifier: Apache-2.0
// TLS per pool host, end to end over loopback: two "pool hosts" on 127.0.0.2
// and 127.0.0.3 with certificates of their own (as XenServer hosts have),
// reached by the data plane (XapiStreamGet) and the XML-RPC transport.
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/curl_util.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xapi_http_stream.h"
#include "tests/common/xapi/tls_test_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::vmb::testing::StatusIs;
using ::vmb::testing::TestCert;
using ::vmb::testing::TestHttpServer;

constexpr char kSession[] = "OpaqueRef:0123-secret-session";

MATCHER_P(Holds, body, "is OK and holds \"" + std::string(body) + "\"") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  *result_listener << "holds \"" << *arg << "\"";
  return *arg == body;
}

std::string ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = vmb::testing::ReadFileToString(path);
  return text.ok() ? *text : "";
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  chmod(path.c_str(), 0644);
}

class XapiTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(vmb::testing::MakeTempDir("tls-pins"));
    auto make = [](const std::string& stem, const std::string& cn,
                   std::vector<std::string> dns, std::vector<std::string> ips) {
      auto cert = vmb::testing::MakeHostCert(*dir_, stem, cn, dns, ips);
      EXPECT_TRUE(cert.ok()) << cert.status();
      return new TestCert(cert.ok() ? *cert : TestCert());
    };
    cert_a_ = make("a", "xen-a", {"xen-a.pool.test"}, {"127.0.0.2"});
    cert_a2_ = make("a2", "xen-a", {"xen-a.pool.test"}, {"127.0.0.2"});
    cert_b_ = make("b", "xen-b", {"xen-b.pool.test"}, {"127.0.0.3"});
    // The way XenServer names its hosts: by host name, not by address.
    cert_b_name_only_ = make("b-name", "xen-b", {"xen-b.pool.test"}, {});
  }
  static void TearDownTestSuite() {
    for (TestCert* c : {cert_a_, cert_a2_, cert_b_, cert_b_name_only_}) {
      delete c;
    }
    delete dir_;
  }

  void SetUp() override {
    ASSERT_FALSE(cert_a_->sha256.empty());
    ASSERT_FALSE(cert_b_name_only_->sha256.empty());
    dir_here_ = vmb::testing::MakeTempDir("tls-case");
    a_ = StartServer("a", "127.0.0.2", *cert_a_);
    b_ = StartServer("b", "127.0.0.3", *cert_b_);
    host_a_ = {"127.0.0.2", "uuid-a", "xen-a.pool.test"};
    host_b_ = {"127.0.0.3", "uuid-b", "xen-b.pool.test"};
  }

  static std::unique_ptr<TestHttpServer> StartServer(const std::string& name,
                                                     const std::string& address,
                                                     const TestCert& cert) {
    auto server =
        TestHttpServer::Start({name, address, cert.cert_path, cert.key_path});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // A pins file in this test's folder.
  std::string PinsFile(const std::string& text) {
    const std::string path = dir_here_ + "/pins";
    WriteFile(path, text);
    return path;
  }

  static TlsOptions WithPins(const std::string& path, bool tofu = false) {
    TlsOptions tls;
    absl::StatusOr<std::shared_ptr<HostPins>> pins =
        HostPins::Load(path, {.tofu = tofu});
    EXPECT_TRUE(pins.ok()) << pins.status();
    if (pins.ok()) tls.pins = *pins;
    return tls;
  }

  // GET /export from `server`, the pool being hosts A and B.
  absl::StatusOr<std::string> Get(const TestHttpServer& server,
                                  const TlsOptions& tls,
                                  std::vector<HostIdentity> hosts = {}) {
    XapiStreamRequest r;
    r.base_url = server.url();
    r.path = "/export";
    r.session_id = kSession;
    r.task_id = "OpaqueRef:task";
    r.allowed_redirect_hosts =
        hosts.empty() ? std::vector<HostIdentity>{host_a_, host_b_} : hosts;
    r.timeouts.connect = absl::Seconds(10);
    r.timeouts.first_byte = absl::Seconds(10);
    r.tls = tls;
    std::string body;
    absl::StatusOr<XapiStreamResult> result =
        XapiStreamGet(r, [&](absl::string_view data) {
          body.append(data.data(), data.size());
          return absl::OkStatus();
        });
    if (!result.ok()) return result.status();
    return body;
  }

  static std::string Fp(const TestCert& c) { return c.sha256; }

  static std::string* dir_;
  static TestCert* cert_a_;
  static TestCert* cert_a2_;
  static TestCert* cert_b_;
  static TestCert* cert_b_name_only_;
  std::string dir_here_;
  std::unique_ptr<TestHttpServer> a_;
  std::unique_ptr<TestHttpServer> b_;
  HostIdentity host_a_;
  HostIdentity host_b_;
};

std::string* XapiTlsTest::dir_ = nullptr;
TestCert* XapiTlsTest::cert_a_ = nullptr;
TestCert* XapiTlsTest::cert_a2_ = nullptr;
TestCert* XapiTlsTest::cert_b_ = nullptr;
TestCert* XapiTlsTest::cert_b_name_only_ = nullptr;

TEST_F(XapiTlsTest, APinsFileLetsEachHostThroughWithItsOwnCertificate) {
  // A by address, B by uuid; fingerprints as openssl prints them, or bare.
  const TlsOptions tls = WithPins(PinsFile(absl::StrCat(
      "# pool hosts\n\n127.0.0.2 ", Fp(*cert_a_), "\nuuid-b   ",
      absl::AsciiStrToLower(absl::StrReplaceAll(Fp(*cert_b_), {{":", ""}})),
      "  # xen-b\n")));
  EXPECT_THAT(Get(*a_, tls), Holds("a:/export"));
  EXPECT_THAT(Get(*b_, tls), Holds("b:/export"));
  ASSERT_EQ(b_->requests().size(), 1u);
  EXPECT_EQ(b_->requests()[0].cookie, absl::StrCat("session_id=", kSession));
}

TEST_F(XapiTlsTest, AWrongPinIsRefusedNamingTheHostAndBothFingerprints) {
  // B pinned to A's certificate.
  const TlsOptions tls = WithPins(PinsFile(absl::StrCat(
      "127.0.0.2 ", Fp(*cert_a_), "\nuuid-b ", Fp(*cert_a_), "\n")));
  EXPECT_THAT(
      Get(*b_, tls),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("host 127.0.0.3 (host uuid-b"),
                     HasSubstr("presented the certificate " + Fp(*cert_b_)),
                     HasSubstr("is " + Fp(*cert_a_)),
                     Not(HasSubstr("secret-session")))));
  // Refused in the handshake: B never saw the request, nor the cookie.
  EXPECT_THAT(b_->requests(), IsEmpty());
  EXPECT_OK(Get(*a_, tls).status());
}

TEST_F(XapiTlsTest, ARedirectIsVerifiedWithTheTargetHostsPin) {
  a_->Redirect("/export", b_->url() + "/export?ref=x");
  const std::string good = PinsFile(
      absl::StrCat("uuid-a ", Fp(*cert_a_), "\nuuid-b ", Fp(*cert_b_), "\n"));
  EXPECT_THAT(Get(*a_, WithPins(good)), Holds("b:/export"));
  ASSERT_EQ(b_->requests().size(), 1u);

  // B's pin wrong: A's answer is followed, B's certificate refused.
  const std::string bad = PinsFile(
      absl::StrCat("uuid-a ", Fp(*cert_a_), "\nuuid-b ", Fp(*cert_a2_), "\n"));
  EXPECT_THAT(Get(*a_, WithPins(bad)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("127.0.0.3"), HasSubstr(Fp(*cert_b_)),
                             HasSubstr(Fp(*cert_a2_)))));
  EXPECT_EQ(b_->requests().size(), 1u);  // only the first, good, one
}

TEST_F(XapiTlsTest, TrustOnFirstUseRecordsAHostAndRefusesAChangedCertificate) {
  const std::string path = dir_here_ + "/recorded-pins";  // not there yet
  TlsOptions tls = WithPins(path, /*tofu=*/true);
  ASSERT_NE(tls.pins, nullptr);
  EXPECT_OK(Get(*a_, tls).status());

  // Recorded by the host's uuid, durably, in a file only root can read.
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600);
  const std::string recorded = ReadFile(path);
  EXPECT_THAT(recorded,
              HasSubstr(absl::StrCat("\nuuid-a ", Fp(*cert_a_), "\n")));
  EXPECT_THAT(recorded,
              HasSubstr("# 127.0.0.2 (host uuid-a, xen-a.pool.test)"));
  // Again: nothing more is recorded.
  EXPECT_OK(Get(*a_, tls).status());
  EXPECT_EQ(ReadFile(path), recorded);

  // Host A's certificate changes (or someone else answers at its address).
  a_.reset();
  a_ = StartServer("a2", "127.0.0.2", *cert_a2_);
  const auto refused =
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("host 127.0.0.2"), HasSubstr(Fp(*cert_a_)),
                     HasSubstr(Fp(*cert_a2_))));
  EXPECT_THAT(Get(*a_, tls), refused);
  // The next run, from the file, too.
  EXPECT_THAT(Get(*a_, WithPins(path, /*tofu=*/true)), refused);
  EXPECT_THAT(a_->requests(), IsEmpty());
  EXPECT_EQ(ReadFile(path), recorded);

  // B, still unknown, is recorded in the same file.
  EXPECT_OK(Get(*b_, tls).status());
  EXPECT_THAT(ReadFile(path),
              HasSubstr(absl::StrCat("\nuuid-b ", Fp(*cert_b_), "\n")));
}

TEST_F(XapiTlsTest, TrustOnFirstUseRecordsNothingForARefusedConnection) {
  // B has a (wrong) pin: it is not "unknown", so TOFU does not apply.
  const std::string path =
      PinsFile(absl::StrCat("uuid-b ", Fp(*cert_a_), "\n"));
  const std::string before = ReadFile(path);
  EXPECT_THAT(Get(*b_, WithPins(path, /*tofu=*/true)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // A redirect out of the pool is refused before any connection.
  a_->Redirect("/export", "https://127.0.0.9:1/export");
  EXPECT_THAT(Get(*a_, WithPins(path, /*tofu=*/true), {host_a_}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a host of this pool")));
  // A itself was recorded (it is unknown and answered); nothing else.
  const std::string after = ReadFile(path);
  EXPECT_THAT(after, HasSubstr("uuid-a " + Fp(*cert_a_)));
  EXPECT_THAT(after, Not(HasSubstr(Fp(*cert_b_))));
  EXPECT_THAT(after, Not(HasSubstr("127.0.0.9")));
}

TEST_F(XapiTlsTest, ACaChecksTheHostsNameNotItsAddress) {
  // B's certificate names xen-b.pool.test only, as XenServer's do.
  b_.reset();
  b_ = StartServer("b", "127.0.0.3", *cert_b_name_only_);
  TlsOptions tls;
  tls.ca_file = cert_b_name_only_->cert_path;
  // The pool says 127.0.0.3 is xen-b.pool.test: connect to the address,
  // verify the name (and send it as SNI).
  EXPECT_THAT(Get(*b_, tls), Holds("b:/export"));
  ASSERT_EQ(b_->requests().size(), 1u);
  EXPECT_EQ(b_->requests()[0].sni, "xen-b.pool.test");
  // No name known: the bare address does not match the certificate.
  HostIdentity anonymous;
  anonymous.address = "127.0.0.3";
  EXPECT_THAT(Get(*b_, tls, {anonymous}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // A name the certificate does not carry fails, and says which was checked.
  HostIdentity misnamed = host_b_;
  misnamed.hostname = "xen-c.pool.test";
  EXPECT_THAT(Get(*b_, tls, {misnamed}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("checked for the name xen-c.pool.test")));
  EXPECT_EQ(b_->requests().size(), 1u);
}

TEST_F(XapiTlsTest, ARedirectFromHttpsToHttpIsRefusedAndNoCookieLeaks) {
  auto plain = TestHttpServer::Start({"plain", "127.0.0.3", "", ""});
  ASSERT_OK(plain.status());
  a_->Redirect("/export", (*plain)->url() + "/export?ref=x");
  TlsOptions tls;
  tls.insecure = true;  // whatever the trust, the scheme may not change
  EXPECT_THAT(Get(*a_, tls),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("redirected from https to http")));
  EXPECT_EQ((*plain)->connections(), 0);
  EXPECT_THAT((*plain)->requests(), IsEmpty());
}

TEST_F(XapiTlsTest, AHostWithoutAPinIsRefusedBeforeConnecting) {
  const TlsOptions tls =
      WithPins(PinsFile(absl::StrCat("uuid-a ", Fp(*cert_a_), "\n")));
  EXPECT_THAT(Get(*b_, tls),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("no certificate pin for host 127.0.0.3"),
                             HasSubstr("uuid-b <SHA-256 fingerprint>"),
                             HasSubstr(dir_here_ + "/pins"))));
  EXPECT_EQ(b_->connections(), 0);
  // With a CA file too, the host is checked against the CA instead.
  TlsOptions with_ca = tls;
  with_ca.ca_file = cert_b_->cert_path;
  EXPECT_OK(Get(*b_, with_ca).status());
}

// The XML-RPC transport applies the same rules by the URL's host.
absl::StatusOr<std::string> Post(const std::string& url,
                                 const TlsOptions& tls) {
  CurlXmlRpcTransport::Options o;
  o.tls = tls;
  o.connect_timeout = absl::Seconds(10);
  o.call_timeout = absl::Seconds(10);
  CurlXmlRpcTransport transport(o);
  return transport.Post(url, "<methodCall/>");
}

TEST_F(XapiTlsTest, TheXmlRpcTransportPinsEachHost) {
  const std::string path = PinsFile(absl::StrCat(
      "127.0.0.2 ", Fp(*cert_a_), "\nuuid-b ", Fp(*cert_b_), "\n"));
  TlsOptions tls = WithPins(path);
  EXPECT_THAT(Post(a_->url(), tls), Holds("a:/"));
  // B is pinned by uuid: before the pool's hosts are known it has no pin.
  EXPECT_THAT(Post(b_->url(), tls),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin for host 127.0.0.3")));
  ASSERT_OK(tls.pins->SetPoolHosts({host_a_, host_b_}));
  EXPECT_THAT(Post(b_->url(), tls), Holds("b:/"));

  WriteFile(path, absl::StrCat("127.0.0.3 ", Fp(*cert_a_), "\n"));
  EXPECT_THAT(
      Post(b_->url(), WithPins(path)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("host 127.0.0.3"), HasSubstr(Fp(*cert_a_)),
                     HasSubstr(Fp(*cert_b_)))));
}

// --tls-fingerprint: one pin, for the host of --xapi-url.
TEST_F(XapiTlsTest, ASinglePinCoversTheMasterUrlsHostOnly) {
  TlsOptions tls;
  tls.pins = std::make_shared<HostPins>();
  ASSERT_OK(tls.pins->AddPin(ParseHttpUrl(a_->url())->host, Fp(*cert_a_)));
  EXPECT_THAT(Post(a_->url(), tls), Holds("a:/"));
  EXPECT_OK(Get(*a_, tls).status());
  // Another host has its own certificate: the master's pin does not cover it.
  EXPECT_THAT(Post(b_->url(), tls),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin for host 127.0.0.3")));
  EXPECT_THAT(Get(*b_, tls),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin for host 127.0.0.3")));
  // And a wrong one for the master is refused.
  TlsOptions wrong;
  wrong.pins = std::make_shared<HostPins>();
  ASSERT_OK(wrong.pins->AddPin("127.0.0.2", Fp(*cert_b_)));
  EXPECT_THAT(
      Post(a_->url(), wrong),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(Fp(*cert_b_))));
}

}  // namespace
}  // namespace vmb
