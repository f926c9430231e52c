// SPDX-License-Identifier: Apache-2.0
// The per-host pin store: the pins file, lookups, trust on first use.
#include "common/xapi/tls_pins.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::vmb::testing::StatusIs;

// Distinct fingerprints, bare lower-case hex and as openssl prints them.
std::string Hex(char c) { return std::string(64, c); }
std::string Colons(char c) { return FormatSha256Fingerprint(Hex(c)); }

std::string ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = vmb::testing::ReadFileToString(path);
  return text.ok() ? *text : "";
}

std::string WriteFile(const std::string& path, const std::string& text,
                      mode_t mode = 0644) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
  return path;
}

HostIdentity Host(const std::string& address, const std::string& uuid = "",
                  const std::string& hostname = "") {
  return {address, uuid, hostname};
}

// Lines that are not pins, as the file of `--tls-pins` may hold them.
size_t PinLines(const std::string& text) {
  size_t n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line[0] != '#') ++n;
  }
  return n;
}

TEST(HostPinsParseTest, ReadsKeysFingerprintsAndComments) {
  const std::string text = absl::StrCat(
      "# pool hosts\n"
      "\n"
      "10.0.0.1 ",
      Colons('a'),
      "\n"
      "  3F1C9D2E-6C1B-4B1E-9A53-2F5E1A7C0B11\t",
      Hex('b'),
      "   # xen2\n"
      "[fe80::1] sha256 Fingerprint=",
      Colons('c'),
      "\n"
      "xen3.example.com SHA256 Fingerprint=",
      Colons('d'), "\n10.0.0.1 ", Hex('e'));
  ASSERT_OK_AND_ASSIGN(std::vector<PinLine> lines,
                       HostPins::Parse(text, "pins"));
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].key, "10.0.0.1");
  EXPECT_EQ(lines[0].sha256, Hex('a'));
  EXPECT_EQ(lines[0].line, 3);
  EXPECT_EQ(lines[1].key, "3f1c9d2e-6c1b-4b1e-9a53-2f5e1a7c0b11");
  EXPECT_EQ(lines[1].sha256, Hex('b'));
  EXPECT_EQ(lines[2].key, "fe80::1");
  EXPECT_EQ(lines[2].sha256, Hex('c'));
  EXPECT_EQ(lines[3].key, "xen3.example.com");
  EXPECT_EQ(lines[4].line, 7);
}

TEST(HostPinsParseTest, ErrorsNameTheFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"10.0.0.1\n", "pins:1: expected \"<host uuid or address> <SHA-256"},
      {"# ok\n\n10.0.0.1 12:34\n",
       "pins:3: a SHA-256 certificate fingerprint "
       "has 64 hex digits, not 4"},
      {absl::StrCat("10.0.0.1 ", Hex('a'), "\n10.0.0.2 ", Hex('z'), "\n"),
       "pins:2: a SHA-256 certificate fingerprint holds only hex digits"},
      {absl::StrCat("host/1 ", Hex('a')),
       "pins:1: 'host/1' is not a host uuid, address or name"},
      {absl::StrCat("10.0.0.1 md5=", Hex('a')), "pins:1: 'md5=aaaa"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(
        HostPins::Parse(text, "pins"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)))
        << text;
  }
}

TEST(HostPinsLoadTest, FileErrors) {
  const std::string dir = vmb::testing::MakeTempDir("pins-load");
  EXPECT_THAT(HostPins::Load(dir + "/missing", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(HostPins::Load(dir, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a regular file")));
  const std::string bad =
      WriteFile(dir + "/bad", absl::StrCat("# x\n10.0.0.1 ", Hex('a'), "x\n"));
  EXPECT_THAT(
      HostPins::Load(bad, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad + ":2: ")));
  const std::string open =
      WriteFile(dir + "/open", absl::StrCat("10.0.0.1 ", Hex('a')), 0666);
  EXPECT_THAT(HostPins::Load(open, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("writable by others (mode 0666)")));
  // With TOFU a missing file is fine: it is created on the first record.
  EXPECT_OK(HostPins::Load(dir + "/later", {.tofu = true}).status());
  EXPECT_NE(access((dir + "/later").c_str(), F_OK), 0);
  if (geteuid() != 0) {  // root may write anywhere
    EXPECT_THAT(HostPins::Load("/proc/no/such/pins", {.tofu = true}),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("cannot be created")));
  }
}

TEST(HostPinsTest, FindsPinsByUuidThenAddressThenHostName) {
  HostPins pins;
  ASSERT_OK(pins.AddPin("10.0.0.2", Hex('a')));
  ASSERT_OK(pins.AddPin("UUID-2", Colons('b')));
  ASSERT_OK(pins.AddPin("xen3", Hex('c')));
  ASSERT_OK(pins.AddPin("[FE80::1]", Hex('d')));
  EXPECT_THAT(pins.Find(Host("10.0.0.2")).sha256, ElementsAre(Hex('a')));
  EXPECT_EQ(pins.Find(Host("10.0.0.2")).key, "10.0.0.2");
  EXPECT_THAT(pins.Find(Host("10.0.0.2", "uuid-2")).sha256,
              ElementsAre(Hex('b')));
  EXPECT_THAT(pins.Find(Host("10.0.0.3", "uuid-3", "XEN3")).sha256,
              ElementsAre(Hex('c')));
  EXPECT_THAT(pins.Find(Host("fe80::1")).sha256, ElementsAre(Hex('d')));
  EXPECT_THAT(pins.Find(Host("10.0.0.9")).sha256, IsEmpty());
  // Once the pool's hosts are known, an address finds its uuid's pins.
  ASSERT_OK(pins.SetPoolHosts({Host("10.0.0.2", "uuid-2", "xen2"),
                               Host("10.0.0.9", "uuid-9", "xen3")}));
  EXPECT_THAT(pins.Find(Host("10.0.0.2")).sha256, ElementsAre(Hex('b')));
  EXPECT_THAT(pins.Find(Host("10.0.0.9")).sha256, ElementsAre(Hex('c')));
  EXPECT_EQ(pins.Resolve(Host("10.0.0.9")).uuid, "uuid-9");
  // A URL that names a host by its host name.
  EXPECT_EQ(pins.Resolve(Host("XEN2")).uuid, "uuid-2");
  EXPECT_THAT(pins.Find(Host("xen2")).sha256, ElementsAre(Hex('b')));
}

TEST(HostPinsTest, ChecksThePresentedCertificate) {
  HostPins pins;
  ASSERT_OK(pins.AddPin("10.0.0.2", Hex('a')));
  ASSERT_OK(pins.AddPin("10.0.0.2", Hex('b')));  // a certificate change
  EXPECT_OK(pins.Check(Host("10.0.0.2"), Hex('a')));
  EXPECT_OK(pins.Check(Host("10.0.0.2"), Hex('b')));
  EXPECT_THAT(
      pins.Check(Host("10.0.0.2", "", "xen2"), Hex('c')),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat("host 10.0.0.2 (xen2) presented the "
                                      "certificate ",
                                      Colons('c'),
                                      ", but its pin (10.0.0.2 "
                                      "in the pins given) is ",
                                      Colons('a'), " or ", Colons('b')))));
  EXPECT_THAT(pins.Check(Host("10.0.0.3", "uuid-3"), Hex('a')),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin for host 10.0.0.3 (host "
                                 "uuid-3): add the line \"uuid-3 <SHA-256 "
                                 "fingerprint>\"")));
}

TEST(HostPinsTest, TrustOnFirstUseRecordsDurablyOnceAndThenPins) {
  const std::string dir = vmb::testing::MakeTempDir("pins-tofu");
  const std::string path = dir + "/pins";
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(path, {.tofu = true}));
  EXPECT_OK(pins->Check(Host("10.0.0.2", "uuid-2", "xen2"), Hex('a')));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600);
  std::string text = ReadFile(path);
  EXPECT_THAT(text, HasSubstr("# 10.0.0.2 (host uuid-2, xen2): trusted on "
                              "first use "));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("\nuuid-2 ", Colons('a'), "\n")));
  // A host whose uuid is not known is recorded by its address.
  EXPECT_OK(pins->Check(Host("10.0.0.3"), Hex('b')));
  text = ReadFile(path);
  EXPECT_THAT(text, HasSubstr(absl::StrCat("\n10.0.0.3 ", Colons('b'), "\n")));
  EXPECT_EQ(PinLines(text), 2u);
  // Known now: the same certificate passes, another is refused.
  EXPECT_OK(pins->Check(Host("10.0.0.2", "uuid-2"), Hex('a')));
  EXPECT_THAT(pins->Check(Host("10.0.0.2", "uuid-2"), Hex('c')),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("presented the certificate ",
                                              Colons('c')))));
  EXPECT_EQ(ReadFile(path), text);
  // The file reads back as what was recorded.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> again,
                       HostPins::Load(path, {}));
  EXPECT_THAT(again->Find(Host("x", "uuid-2")).sha256, ElementsAre(Hex('a')));
  EXPECT_THAT(again->Find(Host("10.0.0.3")).sha256, ElementsAre(Hex('b')));
}

TEST(HostPinsTest, TrustOnFirstUseAppendsToAFileWithoutAFinalNewline) {
  const std::string dir = vmb::testing::MakeTempDir("pins-append");
  const std::string path =
      WriteFile(dir + "/pins", absl::StrCat("10.0.0.1 ", Hex('a')), 0600);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(path, {.tofu = true}));
  EXPECT_OK(pins->Check(Host("10.0.0.2"), Hex('b')));
  const std::string text = ReadFile(path);
  EXPECT_THAT(text, ::testing::StartsWith(
                        absl::StrCat("10.0.0.1 ", Hex('a'), "\n# 10.0.0.2")));
  ASSERT_OK_AND_ASSIGN(std::vector<PinLine> lines, HostPins::Parse(text, path));
  EXPECT_EQ(lines.size(), 2u);
}

TEST(HostPinsTest, TrustOnFirstUseSeesWhatAnotherProcessRecorded) {
  const std::string dir = vmb::testing::MakeTempDir("pins-two");
  const std::string path = dir + "/pins";
  // Two runs sharing one file, both started before either recorded.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> first,
                       HostPins::Load(path, {.tofu = true}));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> second,
                       HostPins::Load(path, {.tofu = true}));
  EXPECT_OK(first->Check(Host("10.0.0.2", "uuid-2"), Hex('a')));
  // The second sees the first's record under the file lock: a different
  // certificate is refused, not recorded a second time.
  EXPECT_THAT(second->Check(Host("10.0.0.2", "uuid-2"), Hex('b')),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_OK(second->Check(Host("10.0.0.2", "uuid-2"), Hex('a')));
  EXPECT_EQ(PinLines(ReadFile(path)), 1u);
}

TEST(HostPinsTest, ConcurrentFirstUsesRecordAHostOnce) {
  const std::string dir = vmb::testing::MakeTempDir("pins-threads");
  const std::string path = dir + "/pins";
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(path, {.tofu = true}));
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(8);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] = pins->Check(Host("10.0.0.2", "uuid-2"), Hex('a'));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) EXPECT_OK(s);
  EXPECT_EQ(PinLines(ReadFile(path)), 1u);
}

TEST(HostPinsTest, WithoutTofuNothingIsRecorded) {
  const std::string dir = vmb::testing::MakeTempDir("pins-notofu");
  const std::string path =
      WriteFile(dir + "/pins", absl::StrCat("10.0.0.1 ", Hex('a'), "\n"));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(path, {}));
  EXPECT_THAT(pins->Check(Host("10.0.0.2"), Hex('b')),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no certificate pin")));
  EXPECT_EQ(ReadFile(path), absl::StrCat("10.0.0.1 ", Hex('a'), "\n"));
}

// A certificate accepted at the login, by the master's address, before its
// uuid was known, must agree with the pins of the uuid.
TEST(HostPinsTest, SetPoolHostsChecksWhatWasAcceptedBefore) {
  const std::string dir = vmb::testing::MakeTempDir("pins-login");
  const std::string path =
      WriteFile(dir + "/pins", absl::StrCat("uuid-1 ", Hex('a'), "\n"), 0600);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(path, {.tofu = true}));
  // The login reached 10.0.0.1, unknown by address: recorded on first use.
  EXPECT_OK(pins->Check(Host("10.0.0.1"), Hex('b')));
  EXPECT_THAT(
      pins->SetPoolHosts({Host("10.0.0.1", "uuid-1", "xen1")}),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat(
                   "before the pool's hosts were known does not match: TLS: "
                   "host 10.0.0.1 (host uuid-1, xen1) presented the "
                   "certificate ",
                   Colons('b')))));
  // When they agree, all is well.
  HostPins agree;
  ASSERT_OK(agree.AddPin("10.0.0.1", Hex('a')));
  ASSERT_OK(agree.AddPin("uuid-1", Hex('a')));
  EXPECT_OK(agree.Check(Host("10.0.0.1"), Hex('a')));
  EXPECT_OK(agree.SetPoolHosts({Host("10.0.0.1", "uuid-1", "xen1")}));
}

TEST(HostPinsTest, RecordsOnlyUsableKeys) {
  const std::string dir = vmb::testing::MakeTempDir("pins-keys");
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<HostPins> pins,
                       HostPins::Load(dir + "/pins", {.tofu = true}));
  // A uuid that could break the file falls back to the address.
  EXPECT_OK(pins->Check(Host("10.0.0.5", "bad uuid\nx", "xen5\n#"), Hex('a')));
  const std::string text = ReadFile(dir + "/pins");
  EXPECT_THAT(text, HasSubstr(absl::StrCat("\n10.0.0.5 ", Colons('a'), "\n")));
  ASSERT_OK_AND_ASSIGN(std::vector<PinLine> lines,
                       HostPins::Parse(text, "pins"));
  EXPECT_EQ(lines.size(), 1u);
}

}  // namespace
}  // namespace vmb
