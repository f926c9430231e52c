// SPDX-License-Identifier: Apache-2.0
// SignalWatcher: signals reach the callback on the watcher's thread, counted,
// and the watcher stops and joins when it goes.
#include "common/base/signal_watcher.h"

#include <signal.h>
#include <unistd.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

TEST(SignalWatcherTest, SignalsReachTheCallbackInOrderWithTheirCount) {
  absl::Mutex mu;
  std::vector<std::pair<int, int>> seen;
  {
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<SignalWatcher> watcher,
        SignalWatcher::Start({SIGUSR1, SIGUSR2}, [&](int signo, int count) {
          absl::MutexLock lock(&mu);
          seen.emplace_back(signo, count);
        }));
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    {
      absl::MutexLock lock(&mu);
      const auto one = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return seen.size() == 1;
      };
      ASSERT_TRUE(
          mu.AwaitWithTimeout(absl::Condition(&one), absl::Seconds(60)));
    }
    ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
    absl::MutexLock lock(&mu);
    const auto two = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return seen.size() == 2;
    };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&two), absl::Seconds(60)));
  }
  // The watcher is gone (joined): nothing references `seen` any more.
  EXPECT_EQ(seen,
            (std::vector<std::pair<int, int>>{{SIGUSR1, 1}, {SIGUSR2, 2}}));
}

TEST(SignalWatcherTest, StopsAtOnceWithoutASignal) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SignalWatcher> watcher,
                       SignalWatcher::Start({SIGUSR1}, [](int, int) {}));
  watcher.reset();  // must return: the thread is told to stop and joined
  SUCCEED();
}

}  // namespace
}  // namespace vmb
