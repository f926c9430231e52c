// SPDX-License-Identifier: Apache-2.0
#include "common/base/redact.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace vmb {
namespace {

struct Registry {
  absl::Mutex mu;
  uint64_t next ABSL_GUARDED_BY(mu) = 1;
  // handle -> (secret, replacement)
  std::map<uint64_t, std::pair<std::string, std::string>> secrets
      ABSL_GUARDED_BY(mu);
};

Registry& TheRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

}  // namespace

uint64_t RegisterSecret(absl::string_view secret,
                        absl::string_view replacement) {
  if (secret.empty()) return 0;
  Registry& r = TheRegistry();
  absl::MutexLock lock(&r.mu);
  const uint64_t handle = r.next++;
  r.secrets[handle] = {std::string(secret), std::string(replacement)};
  return handle;
}

void UnregisterSecret(uint64_t handle) {
  if (handle == 0) return;
  Registry& r = TheRegistry();
  absl::MutexLock lock(&r.mu);
  r.secrets.erase(handle);
}

std::string Redact(absl::string_view text) {
  std::vector<std::pair<std::string, std::string>> secrets;
  {
    Registry& r = TheRegistry();
    absl::MutexLock lock(&r.mu);
    if (r.secrets.empty()) return std::string(text);
    for (const auto& [handle, s] : r.secrets) {
      if (text.find(s.first) != absl::string_view::npos) secrets.push_back(s);
    }
  }
  if (secrets.empty()) return std::string(text);
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) {
    return a.first.size() > b.first.size();
  });
  // One pass over the text: at each position the longest secret that
  // starts there is replaced, so replacements are never searched again.
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const std::pair<std::string, std::string>* hit = nullptr;
    for (const auto& s : secrets) {
      if (text.compare(i, s.first.size(), s.first) == 0) {
        hit = &s;
        break;
      }
    }
    if (hit != nullptr) {
      out += hit->second;
      i += hit->first.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

}  // namespace vmb
