// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "absl/strings/string_view.h"

namespace vmb {

// "vmbackup <major.minor.patch>", from the CMake project version.
absl::string_view VersionString();

}  // namespace vmb
