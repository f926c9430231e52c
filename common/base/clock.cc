// SPDX-License-Identifier: Apache-2.0
#include "common/base/clock.h"

namespace vmb {

SystemClock* SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return clock;
}

}  // namespace vmb
