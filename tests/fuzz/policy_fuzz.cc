// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the config-file parser and the VM selection that reads
// its rules. Any crash, hang or sanitizer report is a bug.
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "coordinator/backup_policy.h"
#include "coordinator/vm_selection.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<vmb::coordinator::BackupPolicy> policy =
      vmb::coordinator::ParseBackupPolicy(input, "fuzz.cfg");
  static const std::vector<vmb::coordinator::SelectionCandidate> kPool = {
      {"u1", "PROD-ubuntu14"},   {"u2", "DEV mySql"},
      {"u3", "PRD-web:8080,v2"}, {"u4", "DEV-RH6"},
      {"u5", "DEV-RH6"},         {"u6", std::string(300, 'x')}};
  if (policy.ok()) (void)vmb::coordinator::SelectVms(*policy, kPool);
  // The same bytes as a command-line selector.
  absl::StatusOr<vmb::coordinator::BackupPolicy> selector =
      vmb::coordinator::PolicyForSelector(input.substr(0, input.find('\n')));
  if (selector.ok()) (void)vmb::coordinator::SelectVms(*selector, kPool);
  (void)vmb::coordinator::ParseByteSize(input);
  (void)vmb::coordinator::ParseDurationValue(input);
  return 0;
}
