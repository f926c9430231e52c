// SPDX-License-Identifier: Apache-2.0
// SerializeRunSummary: a summary's bytes built from VMs kept serialized parse
// back to the same summary.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "coordinator/run_manager.h"

namespace vmb::coordinator {
namespace {

v1::VmOutcome Vm(int i, size_t name_size) {
  v1::VmOutcome vm;
  vm.set_vm_uuid(absl::StrCat("uuid-", i));
  vm.set_vm_name(std::string(name_size, static_cast<char>('a' + i % 26)));
  vm.set_host_name("h1");
  vm.set_attempts(static_cast<uint32_t>(i));
  vm.mutable_status()->set_phase(v1::JOB_PHASE_EXPORT);
  vm.mutable_status()->set_bytes_done(uint64_t{1} << (i % 60));
  return vm;
}

TEST(SerializeRunSummaryTest, ParsesBackToTheSummaryWithItsVmsInOrder) {
  v1::RunSummary header;
  header.set_run_id("20261130-010203-abcd");
  header.set_state(v1::RUN_STATE_RUNNING);
  header.set_succeeded(3);
  header.add_run_warnings("w");
  v1::RunSummary want = header;
  std::vector<std::string> vms;
  // Sizes around the varint boundaries of the length (127/128, 16383/16384).
  const size_t sizes[] = {0, 1, 100, 127, 128, 200, 16383, 16384, 70000};
  int i = 0;
  for (size_t size : sizes) {
    const v1::VmOutcome vm = Vm(i++, size);
    vms.push_back(vm.SerializeAsString());
    *want.add_vms() = vm;
  }
  v1::RunSummary got;
  ASSERT_TRUE(got.ParseFromString(SerializeRunSummary(header, vms)));
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString());
  ASSERT_EQ(got.vms_size(), static_cast<int>(std::size(sizes)));
  EXPECT_EQ(got.vms(8).vm_name().size(), 70000u);
}

TEST(SerializeRunSummaryTest, NoVmsIsTheHeaderAlone) {
  v1::RunSummary header;
  header.set_run_id("r");
  EXPECT_EQ(SerializeRunSummary(header, {}), header.SerializeAsString());
}

}  // namespace
}  // namespace vmb::coordinator
