// SPDX-License-Identifier: Apache-2.0
// Streaming keeps memory flat: downloading a 2 GiB export from xapi-sim holds
// this process's peak RSS under 32 MiB. Its own binary, so that nothing else
// has touched this process's memory.
#include <sys/resource.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include <xxhash.h>

#include "common/xapi/xapi_http_stream.h"
#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"

namespace vmb {
namespace {

constexpr uint64_t kDiskBytes = uint64_t{2} << 30;

TEST(XapiStreamRssTest, TwoGibExportKeepsRssUnder32Mib) {
  const std::string fixture = absl::StrCat(R"({
    "credentials": {"password": "pw"},
    "hosts": [{"name_label": "h1"}],
    "srs": [{"name_label": "nfs", "type": "nfs", "shared": true}],
    "vms": [{"name_label": "big", "power_state": "Halted",
             "disks": [{"size": ")",
                                           kDiskBytes, R"(", "sr": "nfs"}]}]
  })");
  ASSERT_OK_AND_ASSIGN(auto sim,
                       vmb::testing::SimProcess::Start({fixture, "", ""}));
  auto client = sim->NewClient();
  ASSERT_OK_AND_ASSIGN(std::string session, client->SessionRef());
  ASSERT_OK_AND_ASSIGN(auto refs, client->GetVmsByNameLabel("big"));
  ASSERT_EQ(refs.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto vm, client->GetVm(refs[0]));
  ASSERT_OK_AND_ASSIGN(auto vbd, client->GetVbd(vm.vbds[0]));

  XapiStreamRequest r;
  r.base_url = sim->master_url();
  r.path = "/export_raw_vdi";
  r.query = {{"vdi", vbd.vdi}, {"format", "raw"}};
  r.session_id = session;
  XXH64_state_t* hash = XXH64_createState();
  XXH64_reset(hash, 0);
  uint64_t bytes = 0;
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(XapiStreamResult result,
                       XapiStreamGet(r, [&](absl::string_view data) {
                         XXH64_update(hash, data.data(), data.size());
                         bytes += data.size();
                         return absl::OkStatus();
                       }));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  XXH64_freeState(hash);
  EXPECT_EQ(bytes, kDiskBytes);
  EXPECT_EQ(result.bytes, kDiskBytes);

  struct rusage usage;
  ASSERT_EQ(getrusage(RUSAGE_SELF, &usage), 0);
  const double rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
  RecordProperty("peak_rss_kib", static_cast<int>(usage.ru_maxrss));
  std::printf("2 GiB raw export: %.1f s (%.0f MiB/s), peak RSS %.1f MiB\n",
              seconds, 2048.0 / seconds, rss_mib);
  EXPECT_LT(rss_mib, 32.0);
}

}  // namespace
}  // namespace vmb
