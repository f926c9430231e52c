// SPDX-License-Identifier: Apache-2.0
#include "common/base/version.h"

namespace vmb {

absl::string_view VersionString() { return "vmbackup " VMB_VERSION; }

}  // namespace vmb
