// SPDX-License-Identifier: Apache-2.0
#include "common/base/clock.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace vmb {

SystemClock* SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return clock;
}

std::string PortableTimeZoneName(const absl::TimeZone& zone) {
  const std::string name = zone.name();
  if (name != "localtime" && !absl::StartsWith(name, "/")) return name;
  const std::string file = name == "localtime" ? "/etc/localtime" : name;
  // No file: absl uses UTC.
  if (access(file.c_str(), F_OK) != 0) return "UTC";
  char target[PATH_MAX];
  const ssize_t n = readlink(file.c_str(), target, sizeof(target) - 1);
  if (n > 0) {
    const std::string path(target, static_cast<size_t>(n));
    const size_t at = path.find("zoneinfo/");
    if (at != std::string::npos) return path.substr(at + 9);
  }
  if (const char* tz = std::getenv("TZ");
      tz != nullptr && *tz != '\0' && *tz != ':' && *tz != '/') {
    return tz;
  }
  std::ifstream in("/etc/timezone");
  std::string line;
  if (std::getline(in, line)) {
    line = std::string(absl::StripAsciiWhitespace(line));
    if (!line.empty()) return line;
  }
  return name;
}

}  // namespace vmb
