// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb::testing {

// The repository root (from VMB_SOURCE_DIR, set by ctest), for test data.
std::string SourceDir();
// The directory holding the project's binaries (from VMB_BIN_DIR).
std::string BinDir();
// Reads a file under tests/testdata/.
absl::StatusOr<std::string> ReadTestData(absl::string_view relative_path);
// Reads any file.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// A fresh, empty directory under the test's temp dir, unique per call. It is
// removed when the process exits if every test passed and VMB_KEEP_TEST_DIRS
// is not set; a failed test's directories are kept.
std::string MakeTempDir(absl::string_view prefix);

}  // namespace vmb::testing
