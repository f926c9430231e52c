// SPDX-License-Identifier: Apache-2.0
#include "common/base/signal_watcher.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace vmb {

absl::StatusOr<std::unique_ptr<SignalWatcher>> SignalWatcher::Start(
    const std::vector<int>& signals, Callback callback) {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : signals) sigaddset(&set, signo);
  if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0) {
    return absl::InternalError(
        absl::StrCat("cannot block signals: ", strerror(e)));
  }
  const int signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (signal_fd < 0) {
    return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  }
  const int stop_fd = eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) {
    const int e = errno;
    close(signal_fd);
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(e)));
  }
  std::unique_ptr<SignalWatcher> watcher(
      new SignalWatcher(signal_fd, stop_fd, std::move(callback)));
  watcher->thread_ = std::thread([w = watcher.get()] { w->Loop(); });
  return watcher;
}

SignalWatcher::SignalWatcher(int signal_fd, int stop_fd, Callback callback)
    : signal_fd_(signal_fd),
      stop_fd_(stop_fd),
      callback_(std::move(callback)) {}

SignalWatcher::~SignalWatcher() {
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) != sizeof(one)) {
    // Cannot happen with an eventfd below its maximum; the join would hang,
    // so leave the thread rather than block forever.
    thread_.detach();
  } else if (thread_.joinable()) {
    thread_.join();
  }
  close(signal_fd_);
  close(stop_fd_);
}

void SignalWatcher::Loop() {
  int count = 0;
  while (true) {
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    signalfd_siginfo info;
    if (read(signal_fd_, &info, sizeof(info)) != sizeof(info)) continue;
    callback_(static_cast<int>(info.ssi_signo), ++count);
  }
}

}  // namespace vmb
