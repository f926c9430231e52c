// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stddef.h>

#include "absl/strings/string_view.h"

namespace vmb {

// The length (1-4) of the well-formed UTF-8 sequence at the start of `s`, or
// 0 when `s` is empty or starts with a byte sequence that is not UTF-8
// (overlong forms, surrogates and code points beyond U+10FFFF included).
size_t Utf8SequenceLength(absl::string_view s);

}  // namespace vmb
