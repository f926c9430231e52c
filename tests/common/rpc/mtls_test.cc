// SPDX-License-Identifier: Apache-2.0
// Mutual TLS: the transport flags, the checks of the files, and real gRPC
// connections on loopback between parties holding certificates of a test
// CA (and of another one, expired ones, the wrong kind).
#include "common/rpc/mtls.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>

#include "proto/agent.grpc.pb.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/testing/test_pki.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::ClientLeaf;
using ::vmb::testing::ServerLeaf;
using ::vmb::testing::StatusIs;
using ::vmb::testing::TestPki;
using ::vmb::testing::WithValidity;

constexpr char kHostUuid[] = "3c6f2d6e-1b7a-4c1e-9a52-7d3e0f4b2a11";

std::string HostUri() { return absl::StrCat(kHostUriPrefix, kHostUuid); }

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CheckTransportFlagsTest, WantsAllThreeFilesOrPlaintextOnLoopback) {
  const MtlsFiles all{"ca", "cert", "key"};
  EXPECT_OK(CheckTransportFlags(all, false, {{"--listen", "0.0.0.0:7441"}}));
  EXPECT_OK(CheckTransportFlags({}, true,
                                {{"--listen", "127.0.0.1:0"},
                                 {"--coordinator", "[::1]:7441"},
                                 {"--coordinator", "localhost:1"}}));
  EXPECT_THAT(
      CheckTransportFlags({}, false, {}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("needs --mtls-ca, --mtls-cert and --mtls-key")));
  EXPECT_THAT(CheckTransportFlags({"ca", "", ""}, false, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs --mtls-cert and --mtls-key too")));
  EXPECT_THAT(CheckTransportFlags(all, true, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exclude each other")));
  EXPECT_THAT(
      CheckTransportFlags({}, true, {{"--listen", "192.0.2.7:7441"}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("--plaintext refuses --listen 192.0.2.7:7441")));
  EXPECT_THAT(CheckTransportFlags({}, true, {{"--coordinator", "[::]:7441"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--coordinator [::]:7441")));
}

TEST(IsLoopbackAddressTest, KnowsLoopbackSpellings) {
  for (const char* a : {"127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "localhost:1",
                        "LOCALHOST:2", "ipv4:127.0.0.1:1", "unix:/tmp/x"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a : {"0.0.0.0:1", "[::]:1", "10.0.0.1:1", "128.0.0.1:1",
                        "localhost.example:1", "127.0.0.1", ""}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

class MtlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("mtls");
    ASSERT_OK_AND_ASSIGN(pki_, TestPki::Create(dir_ + "/pki", "site"));
    ASSERT_OK_AND_ASSIGN(other_, TestPki::Create(dir_ + "/other", "other"));
    ASSERT_OK_AND_ASSIGN(
        coordinator_,
        pki_.Issue("coordinator", ServerLeaf({"localhost"}, {"127.0.0.1"})));
    ASSERT_OK_AND_ASSIGN(
        agent_, pki_.Issue("agent-a", ClientLeaf({HostUri()}, {"xcp-a"})));
    ASSERT_OK_AND_ASSIGN(
        operator_,
        pki_.Issue("cli",
                   ClientLeaf({std::string(kOperatorUriPrefix) + "cli"})));
  }

  MtlsFiles Files(const TestPki::Issued& who) const {
    return {pki_.ca_cert(), who.cert, who.key};
  }

  // A server answering Synchronize; it records each caller's certificate.
  class Service final : public v1::AgentService::CallbackService {
   public:
    grpc::ServerUnaryReactor* Synchronize(grpc::CallbackServerContext* context,
                                          const v1::AgentState*,
                                          v1::DesiredState*) override {
      absl::StatusOr<CertificateInfo> peer = PeerOf(*context->auth_context());
      {
        absl::MutexLock lock(&mu);
        last_peer = peer;
      }
      auto* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    absl::Mutex mu;
    absl::StatusOr<CertificateInfo> last_peer ABSL_GUARDED_BY(mu) =
        absl::UnknownError("no call");
  };

  void StartServer(const TestPki::Issued& who) {
    ASSERT_OK_AND_ASSIGN(server_tls_,
                         MtlsCredentials::Create(Files(who), dir_ + "/work"));
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", server_tls_->ServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  // One call on a new channel; the server certificate's CN on success.
  absl::StatusOr<std::string> Call(
      std::shared_ptr<grpc::ChannelCredentials> creds,
      const std::string& host = "127.0.0.1") {
    auto channel =
        grpc::CreateChannel(absl::StrCat(host, ":", port_), std::move(creds));
    auto stub = v1::AgentService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::AgentState state;
    v1::DesiredState desired;
    grpc::Status s = stub->Synchronize(&context, state, &desired);
    if (!s.ok()) {
      return absl::UnavailableError(s.error_message());
    }
    std::vector<grpc::string_ref> cn =
        context.auth_context()->FindPropertyValues("x509_common_name");
    return cn.empty() ? "" : std::string(cn[0].data(), cn[0].size());
  }

  absl::StatusOr<CertificateInfo> LastPeer() {
    absl::MutexLock lock(&service_.mu);
    return service_.last_peer;
  }

  std::shared_ptr<grpc::ChannelCredentials> Client(const TestPki::Issued& who) {
    absl::StatusOr<std::unique_ptr<MtlsCredentials>> tls =
        MtlsCredentials::Create(Files(who), "");
    EXPECT_OK(tls.status());
    return (*tls)->ChannelCredentials();
  }

  // Credentials that skip our checks, to show what the server does.
  std::shared_ptr<grpc::ChannelCredentials> RawClient(
      const std::string& ca, const TestPki::Issued* who) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Slurp(ca);
    if (who != nullptr) {
      o.pem_private_key = Slurp(who->key);
      o.pem_cert_chain = Slurp(who->cert);
    }
    return grpc::SslCredentials(o);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  std::string dir_;
  TestPki pki_, other_;
  TestPki::Issued coordinator_, agent_, operator_;
  std::unique_ptr<MtlsCredentials> server_tls_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(MtlsTest, ParsesTheRoleOfACertificate) {
  ASSERT_OK_AND_ASSIGN(CertificateInfo agent,
                       ParseCertificatePem(Slurp(agent_.cert)));
  EXPECT_EQ(agent.host_uuid, kHostUuid);
  EXPECT_FALSE(agent.is_operator);
  EXPECT_THAT(agent.subject, HasSubstr("CN=agent-a"));
  EXPECT_THAT(agent.Describe(), HasSubstr(kHostUuid));
  EXPECT_THAT(agent.dns_names, ::testing::ElementsAre("xcp-a"));
  EXPECT_LT(agent.not_before, absl::Now());
  EXPECT_GT(agent.not_after, absl::Now() + absl::Hours(24 * 300));
  ASSERT_OK_AND_ASSIGN(CertificateInfo cli,
                       ParseCertificatePem(Slurp(operator_.cert)));
  EXPECT_TRUE(cli.is_operator);
  EXPECT_EQ(cli.host_uuid, "");
  EXPECT_THAT(ParseCertificatePem("not a certificate"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MtlsTest, LoadingChecksEachFileAndSaysWhich) {
  EXPECT_OK(LoadMtlsMaterial(Files(agent_), absl::Now()).status());
  EXPECT_THAT(LoadMtlsMaterial({pki_.ca_cert(), agent_.cert, dir_ + "/none"},
                               absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--mtls-key " + dir_ + "/none: No such")));
  EXPECT_THAT(
      LoadMtlsMaterial({pki_.ca_cert(), agent_.cert, operator_.key},
                       absl::Now()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("is not the key of --mtls-cert " + agent_.cert)));
  EXPECT_THAT(
      LoadMtlsMaterial({agent_.key, agent_.cert, agent_.key}, absl::Now()),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("--mtls-ca " + agent_.key + ": holds no PEM certificate")));
  EXPECT_THAT(LoadMtlsMaterial({other_.ca_cert(), agent_.cert, agent_.key},
                               absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not pass against --mtls-ca")));
  // The same files a year and a day later: expired, and it says since when.
  EXPECT_THAT(
      LoadMtlsMaterial(Files(agent_), absl::Now() + absl::Hours(24 * 366)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("certificate has expired (not after ")));
}

TEST_F(MtlsTest, AnAgentCallsACoordinatorAndTheServerKnowsWhichHost) {
  StartServer(coordinator_);
  ASSERT_OK_AND_ASSIGN(std::string server_cn, Call(Client(agent_)));
  EXPECT_EQ(server_cn, "coordinator");
  ASSERT_OK_AND_ASSIGN(CertificateInfo peer, LastPeer());
  EXPECT_EQ(peer.host_uuid, kHostUuid);
  // An operator too. (By address: a name would go through gRPC's c-ares
  // resolver, which leaks a few bytes LeakSanitizer reports.)
  EXPECT_OK(Call(Client(operator_)).status());
  ASSERT_OK_AND_ASSIGN(peer, LastPeer());
  EXPECT_TRUE(peer.is_operator);
}

TEST_F(MtlsTest, TheServerRefusesClientsWithoutAGoodCertificate) {
  StartServer(coordinator_);
  ASSERT_OK_AND_ASSIGN(TestPki::Issued stranger,
                       other_.Issue("stranger", ClientLeaf({HostUri()})));
  ASSERT_OK_AND_ASSIGN(
      TestPki::Issued expired,
      pki_.Issue("expired", WithValidity(ClientLeaf({HostUri()}),
                                         -absl::Hours(48), -absl::Hours(24))));
  EXPECT_FALSE(Call(RawClient(pki_.ca_cert(), nullptr)).ok());  // no cert
  EXPECT_FALSE(Call(RawClient(pki_.ca_cert(), &stranger)).ok());
  EXPECT_FALSE(Call(RawClient(pki_.ca_cert(), &expired)).ok());
  EXPECT_FALSE(Call(grpc::InsecureChannelCredentials()).ok());
  EXPECT_THAT(LastPeer(), StatusIs(absl::StatusCode::kUnknown));  // no call
  // Our own loading refuses those files before any connection.
  EXPECT_THAT(
      MtlsCredentials::Create(Files(expired), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expired")));
}

TEST_F(MtlsTest, TheClientRefusesAServerShowingAnAgentsCertificate) {
  // A certificate the CA made for an agent, naming this machine: it would
  // pass gRPC's own checks, so ours must refuse it.
  ASSERT_OK_AND_ASSIGN(
      TestPki::Issued impostor,
      pki_.Issue("impostor",
                 ServerLeaf({"localhost"}, {"127.0.0.1"}, {HostUri()})));
  StartServer(impostor);
  EXPECT_THAT(Call(Client(agent_)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("made for an agent or an operator")));
  EXPECT_THAT(LastPeer(), StatusIs(absl::StatusCode::kUnknown));
}

TEST_F(MtlsTest, TheClientRefusesAServerNotNamedInItsCertificate) {
  ASSERT_OK_AND_ASSIGN(
      TestPki::Issued elsewhere,
      pki_.Issue("elsewhere", ServerLeaf({"backup.example"}, {})));
  StartServer(elsewhere);
  EXPECT_THAT(Call(Client(agent_)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(LastPeer(), StatusIs(absl::StatusCode::kUnknown));
}

TEST_F(MtlsTest, AReloadSwapsInNewFilesAndKeepsTheOldOnesWhenBad) {
  StartServer(coordinator_);
  ASSERT_OK_AND_ASSIGN(std::string cn, Call(Client(agent_)));
  EXPECT_EQ(cn, "coordinator");
  EXPECT_OK(server_tls_->ReloadIfChanged());  // nothing changed
  // A renewed certificate under the same file names.
  ASSERT_OK_AND_ASSIGN(
      TestPki::Issued renewed,
      pki_.Issue("renewed", ServerLeaf({"localhost"}, {"127.0.0.1"})));
  ASSERT_EQ(rename(renewed.cert.c_str(), coordinator_.cert.c_str()), 0);
  ASSERT_EQ(rename(renewed.key.c_str(), coordinator_.key.c_str()), 0);
  ASSERT_OK(server_tls_->ReloadIfChanged());
  EXPECT_THAT(server_tls_->current().subject, HasSubstr("CN=renewed"));
  // gRPC looks at the checked copies every second: new connections get the
  // new certificate within a few.
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while (absl::Now() < until && cn != "renewed") {
    ASSERT_OK_AND_ASSIGN(cn, Call(Client(agent_)));
    if (cn != "renewed") absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(cn, "renewed");
  // A key that does not match: refused, the renewed set stays.
  ASSERT_EQ(rename(operator_.key.c_str(), coordinator_.key.c_str()), 0);
  EXPECT_THAT(server_tls_->Reload(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not the key of")));
  EXPECT_THAT(server_tls_->current().subject, HasSubstr("CN=renewed"));
  EXPECT_OK(Call(Client(agent_)).status());
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/work/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(stat((dir_ + "/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
}

}  // namespace
}  // namespace vmb
