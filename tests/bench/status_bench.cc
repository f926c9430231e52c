// SPDX-License-Identifier: Apache-2.0
// status_bench: asks the coordinator for the newest run (Control.GetRun, as
// `vmbackup status` does) over and over from one process until its standard
// input closes (one call every 100 ms), then prints one JSON line: the number
// of calls and the median, p99 and maximum latency in milliseconds, and the VMs
// the last answer listed. It measures the coordinator's answer without a CLI
// process's start-up. Used by tests/bench/distributed_bench.py.
//
//   status_bench HOST:PORT < /dev/stdin-that-closes-when-done
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/time/clock.h"

#include "coordinator/control_client.h"

namespace {

// True once standard input has reached its end (the caller is done).
bool InputClosed() {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  char buf[64];
  return read(STDIN_FILENO, buf, sizeof buf) <= 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: status_bench HOST:PORT < pipe\n");
    return 2;
  }
  vmb::coordinator::ControlClientOptions options;
  options.address = argv[1];
  options.plaintext = true;
  absl::StatusOr<std::unique_ptr<vmb::coordinator::ControlClient>> client =
      vmb::coordinator::ControlClient::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "status_bench: %s\n",
                 client.status().ToString().c_str());
    return 1;
  }
  std::vector<double> ms;
  int vms = 0;
  while (!InputClosed()) {
    const absl::Time start = absl::Now();
    absl::StatusOr<vmb::v1::RunSummary> run = (*client)->GetRun("");
    const double took = absl::ToDoubleMilliseconds(absl::Now() - start);
    if (!run.ok()) {
      absl::SleepFor(absl::Milliseconds(50));  // no run yet
      continue;
    }
    ms.push_back(took);
    vms = run->vms_size();
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (ms.empty()) {
    std::printf("{\"calls\": 0}\n");
    return 0;
  }
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  std::printf(
      "{\"calls\": %zu, \"median_ms\": %.2f, \"p99_ms\": %.2f, "
      "\"max_ms\": %.2f, \"vms\": %d}\n",
      ms.size(), at(0.5), at(0.99), ms.back(), vms);
  return 0;
}
