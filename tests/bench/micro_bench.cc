// SPDX-License-Identifier: Apache-2.0
// Micro-benchmarks (Google Benchmark): how fast the simulator makes disk
// bytes and export streams, and how fast the client decodes XAPI replies.
// Run: build/bench/micro_bench (figures in docs/benchmarks.md).
#include <benchmark/benchmark.h>

#include <string>

#include "common/xapi/xenapi_records.h"
#include "common/xapi/xmlrpc_codec.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/streams.h"

namespace {

constexpr uint64_t kDisk = uint64_t{1} << 30;

// Raw reads of a generated disk in 1 MiB pieces (zero extents included, as an
// export reads them).
void BM_GeneratedDiskRead(benchmark::State& state) {
  vmb::sim::GeneratedDisk disk(1234, kDisk);
  std::string buf(1 << 20, '\0');
  uint64_t offset = 0;
  for (auto _ : state) {
    disk.Read(offset, buf.data(), buf.size());
    benchmark::DoNotOptimize(buf.data());
    offset = (offset + buf.size()) % kDisk;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (1 << 20));
}
BENCHMARK(BM_GeneratedDiskRead);

// Only the non-zero 1 MiB chunks (the worst case: every byte generated).
void BM_GeneratedDiskReadDataOnly(benchmark::State& state) {
  vmb::sim::GeneratedDisk disk(1234, kDisk);
  std::string buf(1 << 20, '\0');
  std::vector<uint64_t> data_chunks;
  for (uint64_t c = 0; c < kDisk >> 20; ++c) {
    if (!disk.IsZero(c << 20, 1 << 20)) data_chunks.push_back(c);
  }
  size_t i = 0;
  for (auto _ : state) {
    disk.Read(data_chunks[i] << 20, buf.data(), buf.size());
    benchmark::DoNotOptimize(buf.data());
    i = (i + 1) % data_chunks.size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (1 << 20));
}
BENCHMARK(BM_GeneratedDiskReadDataOnly);

// Whole streams of a 1 GiB disk; bytes counted are disk bytes covered.
template <typename MakeSource>
void StreamBench(benchmark::State& state, MakeSource make) {
  vmb::sim::GeneratedDisk disk(99, kDisk);
  std::string buf(256 * 1024, '\0');
  for (auto _ : state) {
    auto source = make(&disk);
    uint64_t total = 0;
    while (true) {
      auto n = source->Read(buf.data(), buf.size());
      if (!n.ok() || *n == 0) break;
      total += *n;
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kDisk));
}

void BM_XvaStream(benchmark::State& state) {
  StreamBench(state, [](const vmb::sim::DiskImage* d) {
    return std::make_unique<vmb::sim::XvaSource>(
        "<value/>", std::vector<vmb::sim::XvaDisk>{{"Ref:1", d}});
  });
}
BENCHMARK(BM_XvaStream)->Unit(benchmark::kMillisecond);

void BM_RawStream(benchmark::State& state) {
  StreamBench(state, [](const vmb::sim::DiskImage* d) {
    return std::make_unique<vmb::sim::RawSource>(d);
  });
}
BENCHMARK(BM_RawStream)->Unit(benchmark::kMillisecond);

void BM_VhdStream(benchmark::State& state) {
  StreamBench(state, [](const vmb::sim::DiskImage* d) {
    return std::make_unique<vmb::sim::VhdSource>(d, std::string(16, 'x'), 0);
  });
}
BENCHMARK(BM_VhdStream)->Unit(benchmark::kMillisecond);

// Decoding and parsing a real XenServer 6.2 VM.get_all_records reply (74
// records, 550 KB).
void BM_DecodeVmGetAllRecords(benchmark::State& state) {
  auto body = vmb::testing::ReadTestData(
      "real-xapi/xs620-rpc/VM.get_all_records.0.xml");
  if (!body.ok()) {
    state.SkipWithError("test data missing");
    return;
  }
  for (auto _ : state) {
    auto v = vmb::DecodeMethodResponse(*body);
    auto records = vmb::ParseRecordMap<vmb::VmRecord>(*v->Find("Value"),
                                                      &vmb::ParseVmRecord);
    benchmark::DoNotOptimize(records);
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * body->size()));
}
BENCHMARK(BM_DecodeVmGetAllRecords)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
