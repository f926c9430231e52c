// SPDX-License-Identifier: Apache-2.0
#pragma once

// A LogSink that keeps every message, for "logged once" and "never logged"
// checks. Install it with ScopedLogSinkForTesting.

#include <algorithm>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "common/base/logging.h"

namespace vmb::testing {

class CapturingLogSink final : public LogSink {
 public:
  void Send(LogSeverity, absl::Time, absl::string_view, int,
            absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    lines_.emplace_back(message);
  }
  // Messages holding `needle`.
  int Count(absl::string_view needle) const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count_if(
        lines_.begin(), lines_.end(),
        [&](const std::string& l) { return absl::StrContains(l, needle); }));
  }
  std::vector<std::string> lines() const {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vmb::testing
