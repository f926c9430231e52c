// SPDX-License-Identifier: Apache-2.0
#include "tests/testing/test_paths.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace vmb::testing {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// The directories MakeTempDir made in this process.
struct MadeDirs {
  absl::Mutex mu;
  std::vector<std::string> paths ABSL_GUARDED_BY(mu);
};

MadeDirs& Made() {
  static MadeDirs* made = new MadeDirs();  // never destroyed: used at exit
  return *made;
}

// At exit: removes them when every test passed (a failed test's files are
// kept to look at), unless VMB_KEEP_TEST_DIRS is set. Folders a test made
// read-only are made writable first.
void RemoveMadeDirs() {
  if (!::testing::UnitTest::GetInstance()->Passed() ||
      getenv("VMB_KEEP_TEST_DIRS") != nullptr) {
    return;
  }
  namespace fs = std::filesystem;
  MadeDirs& made = Made();
  absl::MutexLock lock(&made.mu);
  for (const std::string& path : made.paths) {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    for (auto it = fs::recursive_directory_iterator(
             path, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) {
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add,
                        ec);
      }
    }
    fs::remove_all(path, ec);  // best effort
  }
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
  static const bool registered = [] {
    return std::atexit(RemoveMadeDirs) == 0;
  }();
  (void)registered;
  MadeDirs& dirs = Made();
  absl::MutexLock lock(&dirs.mu);
  dirs.paths.push_back(templ);
  return templ;
}

}  // namespace vmb::testing
