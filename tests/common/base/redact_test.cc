// SPDX-License-Identifier: Apache-2.0
// Redact and the secret registry, and VMB_LOG's use of them.
#include "common/base/redact.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/base/logging.h"
#include "tests/testing/capturing_log_sink.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedactTest, ReplacesEveryOccurrenceOfARegisteredSecret) {
  ScopedSecret s(RegisterSecret("hunter2-canary", "(password)"));
  EXPECT_EQ(Redact("login hunter2-canary failed; hunter2-canary!"),
            "login (password) failed; (password)!");
  EXPECT_EQ(Redact("nothing secret"), "nothing secret");
}

TEST(RedactTest, UnregisteredSecretsAreNoLongerReplaced) {
  const uint64_t handle =
      RegisterSecret("OpaqueRef:canary-session", "OpaqueRef:(session)");
  EXPECT_EQ(Redact("session OpaqueRef:canary-session expired"),
            "session OpaqueRef:(session) expired");
  UnregisterSecret(handle);
  EXPECT_EQ(Redact("session OpaqueRef:canary-session expired"),
            "session OpaqueRef:canary-session expired");
}

TEST(RedactTest, ASecretRegisteredTwiceStaysUntilBothAreGone) {
  ScopedSecret a(RegisterSecret("twice-secret"));
  { ScopedSecret b(RegisterSecret("twice-secret")); }
  EXPECT_EQ(Redact("twice-secret"), "(secret)");
}

TEST(RedactTest, TheLongestSecretWinsAndReplacementsAreNotSearchedAgain) {
  ScopedSecret shorter(RegisterSecret("abc", "[short]"));
  ScopedSecret longer(RegisterSecret("abcdef", "[long]"));
  // "abc" inside a replacement must not be replaced again.
  ScopedSecret tricky(RegisterSecret("xyz", "abc"));
  EXPECT_EQ(Redact("abcdef abc xyz"), "[long] [short] abc");
}

TEST(RedactTest, EmptySecretsAreIgnored) {
  EXPECT_EQ(RegisterSecret(""), 0u);
  UnregisterSecret(0);  // no-op
  EXPECT_EQ(Redact("text"), "text");
}

TEST(RedactTest, ALogLineNeverCarriesARegisteredSecret) {
  testing::CapturingLogSink sink;
  ScopedLogSinkForTesting scoped(&sink);
  ScopedSecret s(RegisterSecret("pa\nss-canary", "(password)"));
  // Redacted before the newline is escaped, so it is still found.
  VMB_LOG(ERROR) << "XAPI said: bad password pa\nss-canary";
  ASSERT_EQ(sink.lines().size(), 1u);
  EXPECT_THAT(sink.lines()[0], Not(HasSubstr("ss-canary")));
  EXPECT_THAT(sink.lines()[0], HasSubstr("bad password (password)"));
}

TEST(RedactTest, RegisteringWhileRedactingIsSafe) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        const std::string secret = absl::StrCat("s-", t, "-", i, "-canary");
        ScopedSecret s(RegisterSecret(secret));
        EXPECT_EQ(Redact(absl::StrCat("[", secret, "]")), "[(secret)]");
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace
}  // namespace vmb
