// SPDX-License-Identifier: Apache-2.0
#include "tests/fakes/fake_clock.h"

namespace vmb::testing {

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  sleeps_.push_back(d);
  if (d > absl::ZeroDuration()) now_ += d;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

std::vector<absl::Duration> FakeClock::sleeps() const {
  absl::MutexLock lock(&mu_);
  return sleeps_;
}

absl::Duration FakeClock::slept() const {
  absl::MutexLock lock(&mu_);
  absl::Duration total;
  for (absl::Duration d : sleeps_) total += d;
  return total;
}

}  // namespace vmb::testing
