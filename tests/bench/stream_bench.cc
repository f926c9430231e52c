// SPDX-License-Identifier: Apache-2.0
// stream_bench: downloads one XAPI data-handler URL with the project's data
// plane (XapiStreamGet) and prints one JSON line: bytes, wall seconds, CPU
// seconds (user, system) and peak RSS. The session ref is read from standard
// input so that it never appears in argv. Used by tests/bench/run_bench.sh.
//
//   stream_bench BASE_URL PATH [KEY=VALUE ...] [--sink=discard|xxh64|sha256] <
//   session
#include <sys/resource.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include <openssl/evp.h>
#include <xxhash.h>

#include "common/xapi/xapi_http_stream.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: stream_bench BASE_URL PATH [KEY=VALUE ...] [--sink=S] "
                 "< session\n");
    return 2;
  }
  vmb::XapiStreamRequest r;
  r.base_url = argv[1];
  r.path = argv[2];
  std::string sink_kind = "discard";
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (absl::StartsWith(a, "--sink=")) {
      sink_kind = a.substr(7);
      continue;
    }
    size_t eq = a.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "stream_bench: bad argument %s\n", a.c_str());
      return 2;
    }
    r.query.emplace_back(a.substr(0, eq), a.substr(eq + 1));
  }
  std::getline(std::cin, r.session_id);
  XXH64_state_t* xxh = XXH64_createState();
  XXH64_reset(xxh, 0);
  EVP_MD_CTX* sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(sha, EVP_sha256(), nullptr);
  const absl::Time start = absl::Now();
  auto result = vmb::XapiStreamGet(r, [&](absl::string_view data) {
    if (sink_kind == "xxh64") XXH64_update(xxh, data.data(), data.size());
    if (sink_kind == "sha256") EVP_DigestUpdate(sha, data.data(), data.size());
    return absl::OkStatus();
  });
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!result.ok()) {
    std::fprintf(stderr, "stream_bench: %s\n",
                 std::string(result.status().message()).c_str());
    return 1;
  }
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  const double user = u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6;
  const double sys = u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
  std::printf(
      "{\"bytes\": %llu, \"wall\": %.3f, \"user\": %.3f, \"sys\": %.3f, "
      "\"maxrss_kib\": %ld}\n",
      static_cast<unsigned long long>(result->bytes), seconds, user, sys,
      u.ru_maxrss);
  XXH64_freeState(xxh);
  EVP_MD_CTX_free(sha);
  return 0;
}
