// SPDX-License-Identifier: Apache-2.0
#pragma once

// Waits for process signals (SIGINT, SIGTERM) on a thread of its own and
// hands each to a callback, so that no code runs in a signal handler:
//
//   absl::Notification cancel;   // declared before the watcher: outlives it
//   auto watcher = SignalWatcher::Start({SIGINT, SIGTERM},
//       [&cancel](int signo, int count) { if (count == 1) cancel.Notify(); });
//   ... run ...
//   watcher.reset();             // stops and joins the thread

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace vmb {

// Thread-compatible: Start and the destructor from one thread. The callback
// runs on the watcher's thread; whatever it references must outlive the
// watcher.
class SignalWatcher {
 public:
  // Called with the signal and how many of the watched signals have arrived
  // so far (1 for the first).
  using Callback = std::function<void(int signo, int count)>;

  // Blocks `signals` in the calling thread (so call it before starting other
  // threads: they inherit the mask) and starts watching them. Errors:
  // INTERNAL when the signal set or its descriptors cannot be made.
  static absl::StatusOr<std::unique_ptr<SignalWatcher>> Start(
      const std::vector<int>& signals, Callback callback);

  // Stops watching and joins the thread; the signals stay blocked.
  ~SignalWatcher();

  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  SignalWatcher(int signal_fd, int stop_fd, Callback callback);
  void Loop();

  const int signal_fd_;
  const int stop_fd_;
  const Callback callback_;
  std::thread thread_;
};

}  // namespace vmb
