// SPDX-License-Identifier: Apache-2.0
#include "common/base/human_format.h"

#include "absl/strings/str_format.h"

namespace vmb {

std::string FormatBytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) {
    return absl::StrFormat("%.1f GiB",
                           static_cast<double>(bytes) / 1073741824.0);
  }
  if (bytes < (uint64_t{1} << 20)) {
    // Small files (a pool database dump, metadata) would all read "0 MiB".
    return absl::StrFormat("%.0f KiB", static_cast<double>(bytes) / 1024.0);
  }
  return absl::StrFormat("%.0f MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace vmb
