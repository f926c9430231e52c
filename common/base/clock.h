// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vmb {

// The source of wall-clock time and of pauses. Scheduling logic takes `now`
// explicitly; components that read the time or wait between retries (task
// polling, destroy retries, the janitor) ask a Clock, so that tests can use
// FakeClock (tests/fakes/fake_clock.h) and move time without sleeping.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Pauses the calling thread for `d` of this clock's time (a fake clock
  // advances instead of sleeping). Non-positive durations return at once.
  virtual void SleepFor(absl::Duration d) = 0;
};

// The real clock: absl::Now() and absl::SleepFor().
class SystemClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
  // A process-wide instance; it has no state.
  static SystemClock* Get();
};

// The name of `zone` another machine can load: the IANA name ("Europe/
// Berlin") when `zone` is the local zone read from a file (absl names it
// "localtime" or "/etc/localtime"): the part after "zoneinfo/" of where
// /etc/localtime (or the named file) links to, else $TZ, else the contents of
// /etc/timezone; "UTC" when there is no such file (absl uses UTC then).
// Otherwise `zone.name()` as it is.
std::string PortableTimeZoneName(const absl::TimeZone& zone);

}  // namespace vmb
