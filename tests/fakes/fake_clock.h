// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/base/clock.h"

namespace vmb::testing {

// A Clock whose time moves only when told: Advance() from the test, or
// SleepFor() from the code under test, which advances the time by the pause
// at once instead of sleeping (so a retry loop with backoff runs to its
// deadline in microseconds). Every pause is recorded. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}

  absl::Time Now() override;
  void SleepFor(absl::Duration d) override;

  void Advance(absl::Duration d);
  void Set(absl::Time t);
  // The pauses SleepFor was asked for, in order.
  std::vector<absl::Duration> sleeps() const;
  // Their sum.
  absl::Duration slept() const;

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> sleeps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb::testing
