// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vmb {

// The source of wall-clock time. Scheduling logic takes `now` explicitly;
// components that need the time ask a Clock so that tests can use FakeClock.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// The real clock (absl::Now()).
class SystemClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  // A process-wide instance; it has no state.
  static SystemClock* Get();
};

}  // namespace vmb
