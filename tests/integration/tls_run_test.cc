// SPDX-License-Identifier: Apache-2.0
// The standalone run over https: the real `vmbackup` binary against an xapi-sim
// serving TLS, with per-host pins, trust on first use, and the one pin of
// --tls-fingerprint.
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/xapi/curl_util.h"
#include "common/xapi/tls_pins.h"
#include "coordinator/password_file.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::CommandResult;
using ::vmb::testing::SimProcess;

class TlsRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("tls-run");
    ASSERT_OK_AND_ASSIGN(cert_, testing::MakeSelfSignedCert(dir_, "pool"));
    ASSERT_OK_AND_ASSIGN(other_, testing::MakeSelfSignedCert(dir_, "other"));
    SimProcess::Options options;
    options.tls_cert_path = cert_.cert_path;
    options.tls_key_path = cert_.key_path;
    ASSERT_OK_AND_ASSIGN(sim_, SimProcess::Start(options));
    master_ = ParseHttpUrl(sim_->master_url())->host;
    password_file_ = dir_ + "/pw";
    ASSERT_OK(coordinator::WritePasswordFile(password_file_, sim_->password()));
    mkdir((dir_ + "/backups").c_str(), 0755);
    // DEV-local-build lives on xcp-host3's local storage: exported there.
    config_ = dir_ + "/run.cfg";
    std::ofstream(config_) << "backup_dir=" << dir_ << "/backups\n"
                           << "status_log=" << dir_ << "/status.log\n"
                           << "pool_db_backup=1\nvm-export=DEV-local-build\n";
    std::unique_ptr<XmlRpcXenApiClient> client = sim_->NewClient();
    ASSERT_OK_AND_ASSIGN(RecordMap<HostRecord> hosts, client->GetAllHosts());
    for (const auto& [ref, host] : hosts) uuid_[host.name_label] = host.uuid;
    ASSERT_EQ(uuid_.size(), 3u);
  }

  // key -> fingerprint of every pin line in `path`.
  static std::map<std::string, std::string> Pins(const std::string& path) {
    std::map<std::string, std::string> out;
    absl::StatusOr<std::string> text = testing::ReadFileToString(path);
    EXPECT_TRUE(text.ok()) << text.status();
    absl::StatusOr<std::vector<PinLine>> lines =
        HostPins::Parse(text.value_or(""), path);
    EXPECT_TRUE(lines.ok()) << lines.status();
    for (const PinLine& l : lines.value_or(std::vector<PinLine>{})) {
      out[l.key] = FormatSha256Fingerprint(l.sha256);
    }
    return out;
  }

  CommandResult Run(std::vector<std::string> flags,
                    const std::string& what = "") {
    std::vector<std::string> argv = {testing::BinDir() + "/vmbackup",
                                     "--xapi-url", sim_->master_url(),
                                     "--snapshot-destroy-timeout=5s"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (what == "inventory") {
      argv.push_back("inventory");
      argv.push_back(password_file_);
    } else {
      argv.push_back(password_file_);
      argv.push_back(config_);
    }
    return testing::RunCommand(argv);
  }

  std::string dir_;
  testing::TestCert cert_;
  testing::TestCert other_;
  std::unique_ptr<SimProcess> sim_;
  std::string master_;
  std::string password_file_;
  std::string config_;
  std::map<std::string, std::string> uuid_;  // by host name_label
};

TEST_F(TlsRunTest, TrustOnFirstUseRecordsEachHostThenPinsIt) {
  const std::string pins = dir_ + "/pins";
  CommandResult r = Run({"--tls-pins", pins, "--tls-pins-tofu"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The master by the address of --xapi-url (its uuid is not known at the
  // login), the host that exported by its uuid.
  const std::map<std::string, std::string> recorded = Pins(pins);
  EXPECT_EQ(recorded.at(master_), cert_.sha256);
  EXPECT_EQ(recorded.at(uuid_["xcp-host3"]), cert_.sha256);
  struct stat st;
  ASSERT_EQ(stat(pins.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600);
  absl::StatusOr<std::string> before = testing::ReadFileToString(pins);

  // The next run is pinned throughout, and records nothing new.
  r = Run({"--tls-pins", pins});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(testing::ReadFileToString(pins).value_or(""), before.value_or("?"));
}

TEST_F(TlsRunTest, APinsFileWithAnotherCertificateForTheExportingHost) {
  const std::string pins = dir_ + "/pins";
  std::ofstream(pins) << master_ << " " << cert_.sha256 << "\n"
                      << uuid_["xcp-host3"] << " " << other_.sha256 << "\n";
  const CommandResult r = Run({"--tls-pins", pins});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat("(host ", uuid_["xcp-host3"])));
  EXPECT_THAT(r.output, HasSubstr("presented the certificate " + cert_.sha256));
  EXPECT_THAT(r.output, HasSubstr(other_.sha256));
}

// --tls-fingerprint as before for the master; a pool member has a
// certificate of its own, which that one pin does not cover.
TEST_F(TlsRunTest, AFingerprintPinsTheMasterUrlsHostOnly) {
  CommandResult r = Run({"--tls-fingerprint", cert_.sha256}, "inventory");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("xcp-host3"));

  r = Run({"--tls-fingerprint", other_.sha256}, "inventory");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(
                            "host ", master_, " presented the certificate ",
                            cert_.sha256, ", but its pin (", master_,
                            " in the pins given) is ", other_.sha256)));

  r = Run({"--tls-fingerprint", cert_.sha256});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no certificate pin for host"));
  EXPECT_THAT(r.output, HasSubstr(uuid_["xcp-host3"]));
}

}  // namespace
}  // namespace vmb
