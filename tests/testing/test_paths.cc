// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/test_paths.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace vmb::testing {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

std::string SourceDir() {
  return EnvOr("VMB_SOURCE_DIR", VMB_SOURCE_DIR_DEFAULT);
}
std::string BinDir() { return EnvOr("VMB_BIN_DIR", VMB_BIN_DIR_DEFAULT); }

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

absl::StatusOr<std::string> ReadTestData(absl::string_view relative_path) {
  return ReadFileToString(
      absl::StrCat(SourceDir(), "/tests/testdata/", relative_path));
}

std::string MakeTempDir(absl::string_view prefix) {
  static std::atomic<int> counter{0};
  std::string base = ::testing::TempDir();
  if (base.empty() || base.back() != '/') base += '/';
  std::string templ = absl::StrCat(base, prefix, "-", getpid(), "-",
                                   counter.fetch_add(1), "-XXXXXX");
  char* made = mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << templ;
    return templ;
  }
  return templ;
}

}  // namespace vmb::testing
