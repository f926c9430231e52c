// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdint.h>

#include <string>

namespace vmb {

// "40 KiB" (under 1 MiB), "512 MiB", "1.5 GiB": sizes for people (powers of
// 1024).
std::string FormatBytes(uint64_t bytes);

}  // namespace vmb
