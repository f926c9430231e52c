// SPDX-License-Identifier: Apache-2.0
// PlanBackup on hand-built pools: which host exports each VM and why.
#include "coordinator/planner.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmb::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kMiB = 1024 * 1024;

// A pool of `hosts` live hosts ("h1"...) sharing one SR, plus a local SR on
// h1.
class PlannerTest : public ::testing::Test {
 protected:
  explicit PlannerTest(int hosts = 4) {
    for (int i = 1; i <= hosts; ++i) {
      InventoryHost h;
      h.ref = absl::StrCat("OpaqueRef:host", i);
      h.record.uuid = absl::StrCat("uuid-h", i);
      h.record.name_label = absl::StrCat("h", i);
      h.live = true;
      inv_.hosts.push_back(h);
    }
    InventorySr shared;
    shared.ref = "OpaqueRef:shared";
    for (const InventoryHost& h : inv_.hosts)
      shared.attached_hosts.push_back(h.ref);
    inv_.srs.push_back(shared);
    InventorySr local;
    local.ref = "OpaqueRef:local1";
    local.attached_hosts.push_back(inv_.hosts[0].ref);
    inv_.srs.push_back(local);
  }

  // A VM with one disk of `mib` MiB on `sr`; running on host `on` (1-based),
  // or halted when 0.
  void AddVm(const std::string& name, uint64_t mib, int on,
             const std::string& sr = "OpaqueRef:shared") {
    InventoryVm vm;
    vm.ref = "OpaqueRef:vm-" + name;
    vm.record.uuid = "uuid-" + name;
    vm.record.name_label = name;
    vm.record.power_state = on > 0 ? "Running" : "Halted";
    if (on > 0) vm.record.resident_on = inv_.hosts[on - 1].ref;
    InventoryDisk d;
    d.vbd.type = "Disk";
    d.vbd.userdevice = "0";
    d.vbd.device = "xvda";
    d.has_vdi = true;
    d.vdi.sr = sr;
    d.vdi.virtual_size = static_cast<int64_t>(mib * kMiB);
    vm.disks.push_back(d);
    inv_.vms.push_back(vm);
    SelectedVm s;
    s.uuid = vm.record.uuid;
    s.name = name;
    s.max_backups = 1;
    selection_.vm_exports.push_back(s);
  }

  std::map<std::string, const v1::PlannedVm*> Plan(
      const std::set<std::string>* agent_hosts = nullptr) {
    plan_ = PlanBackup(policy_, selection_, inv_, {agent_hosts});
    std::map<std::string, const v1::PlannedVm*> by_name;
    for (const v1::PlannedVm& p : plan_) by_name[p.name()] = &p;
    return by_name;
  }

  // Planned bytes per host name.
  std::map<std::string, uint64_t> Load() const {
    std::map<std::string, uint64_t> load;
    for (const v1::PlannedVm& p : plan_)
      load[p.host_name()] += p.estimated_bytes();
    return load;
  }

  BackupPolicy policy_;
  PoolInventory inv_;
  Selection selection_;
  std::vector<v1::PlannedVm> plan_;
};

TEST_F(PlannerTest, RunningVmsStayWhereTheyRun) {
  AddVm("a", 10, 3);
  auto p = Plan();
  EXPECT_EQ(p["a"]->host_name(), "h3");
  EXPECT_THAT(p["a"]->host_reason(), HasSubstr("resident_on"));
  EXPECT_EQ(p["a"]->candidate_host_uuids_size(), 0);
}

// The benchmark's layout: 16 VMs of 64 MiB, running ones 4/3/2/1 and six
// halted on shared storage: halted VMs fill the lightest hosts by bytes, so
// every host ends with 4.
TEST_F(PlannerTest, HaltedVmsEvenOutBytesPerHost) {
  int n = 0;
  for (int host = 1; host <= 4; ++host) {
    for (int i = 0; i < 5 - host; ++i) AddVm(absl::StrCat("r", n++), 64, host);
  }
  for (int i = 0; i < 6; ++i) AddVm(absl::StrCat("halted", i), 64, 0);
  Plan();
  for (const auto& [host, bytes] : Load()) {
    EXPECT_EQ(bytes, 4 * 64 * kMiB) << host;
  }
}

TEST_F(PlannerTest, LargestHaltedVmsArePlacedFirst) {
  AddVm("small1", 10, 0);
  AddVm("small2", 10, 0);
  AddVm("big", 100, 0);
  AddVm("mid", 50, 0);
  auto p = Plan();
  // Largest first onto empty hosts (h1..h4 by name on ties): big, mid,
  // small1, small2 each get their own host.
  std::set<std::string> hosts;
  for (const auto& [name, vm] : p) hosts.insert(vm->host_name());
  EXPECT_EQ(hosts.size(), 4u);
  EXPECT_EQ(p["big"]->host_name(), "h1");
  EXPECT_EQ(p["mid"]->host_name(), "h2");
}

// What an export carries is estimated from the data the disk's VHD chain
// holds, as XAPI reports it (physical_utilisation), never more than its size.
TEST_F(PlannerTest, EstimatesTheBytesADisksVhdChainHolds) {
  // A VDI of the pool by uuid, with `vhd-parent` naming `parent` if any.
  auto add_vdi = [&](const std::string& uuid, uint64_t size_mib,
                     uint64_t held_mib, const std::string& parent) {
    VdiRecord v;
    v.uuid = uuid;
    v.virtual_size = static_cast<int64_t>(size_mib * kMiB);
    v.physical_utilisation = static_cast<int64_t>(held_mib * kMiB);
    if (!parent.empty()) v.sm_config["vhd-parent"] = parent;
    inv_.vdi_records["OpaqueRef:vdi-" + uuid] = v;
    return v;
  };
  // Thin, no snapshot: what its VHD file takes.
  AddVm("thin", 64, 1);
  inv_.vms.back().disks[0].vdi = add_vdi("thin", 64, 40, "");
  // With snapshots the disk itself is a small leaf; its base copies hold
  // the data: the chain adds up.
  AddVm("chain", 64, 1);
  add_vdi("base1", 64, 30, "");
  add_vdi("base2", 64, 6, "base1");
  inv_.vms.back().disks[0].vdi = add_vdi("leaf", 64, 8, "base2");
  // Thick (LVM): the active disk takes its whole size, and a bit more for
  // the VHD's metadata: capped at the size.
  AddVm("thick", 64, 2);
  inv_.vms.back().disks[0].vdi = add_vdi("thick", 64, 65, "");
  // A reply naming a parent that is not there, or a loop, ends the chain.
  AddVm("orphan", 64, 2);
  inv_.vms.back().disks[0].vdi = add_vdi("orphan", 64, 8, "gone");
  AddVm("loop", 64, 3);
  add_vdi("loop-b", 64, 4, "loop-a");
  inv_.vms.back().disks[0].vdi = add_vdi("loop-a", 64, 2, "loop-b");
  // Nothing reported: the size.
  AddVm("unknown", 64, 3);

  auto p = Plan();
  EXPECT_EQ(p["thin"]->estimated_bytes(), 40 * kMiB);
  EXPECT_EQ(p["chain"]->estimated_bytes(), (8 + 6 + 30) * kMiB);
  EXPECT_EQ(p["thick"]->estimated_bytes(), 64 * kMiB);
  EXPECT_EQ(p["orphan"]->estimated_bytes(), 8 * kMiB);
  EXPECT_EQ(p["loop"]->estimated_bytes(), 6 * kMiB);
  EXPECT_EQ(p["unknown"]->estimated_bytes(), 64 * kMiB);
}

// Halted VMs are balanced by those estimates, not by their disks' size: of
// two 64 MiB disks holding 60 and 20 MiB, the fuller goes to the host with
// the least data, the other to the next (by size, both would go to h1).
TEST_F(PlannerTest, HaltedVmsAreBalancedByTheirData) {
  // The last VM added holds `mib` MiB of data on its 64 MiB disk.
  auto holds = [&](uint64_t mib) {
    inv_.vms.back().disks[0].vdi.physical_utilisation =
        static_cast<int64_t>(mib * kMiB);
  };
  AddVm("r1", 64, 1);  // nothing reported: 64 MiB
  AddVm("r2", 64, 2);
  holds(40);
  AddVm("r3", 64, 3);
  holds(4);
  AddVm("r4", 64, 4);
  holds(64);
  AddVm("full", 64, 0);
  holds(60);
  AddVm("sparse", 64, 0);
  holds(20);
  auto p = Plan();
  EXPECT_EQ(p["full"]->host_name(), "h3");
  EXPECT_EQ(p["sparse"]->host_name(), "h2");
}

TEST_F(PlannerTest, AffinityBreaksTies) {
  AddVm("a", 10, 0);
  inv_.vms.back().record.affinity = inv_.hosts[2].ref;
  auto p = Plan();
  EXPECT_EQ(p["a"]->host_name(), "h3");
  EXPECT_THAT(p["a"]->host_reason(), HasSubstr("affinity"));
  EXPECT_EQ(p["a"]->candidate_host_uuids_size(), 4);
}

TEST_F(PlannerTest, LocalStorageBindsAHaltedVmToItsHost) {
  AddVm("local", 10, 0, "OpaqueRef:local1");
  auto p = Plan();
  EXPECT_EQ(p["local"]->host_name(), "h1");
  // It cannot move: no other candidate.
  EXPECT_EQ(p["local"]->candidate_host_uuids_size(), 0);
}

TEST_F(PlannerTest, OnlyHostsWithAnAgentTakeHaltedVms) {
  AddVm("a", 10, 0);
  AddVm("b", 10, 0);
  const std::set<std::string> agents = {"uuid-h2", "uuid-h4"};
  auto p = Plan(&agents);
  EXPECT_THAT(std::set<std::string>({p["a"]->host_name(), p["b"]->host_name()}),
              UnorderedElementsAre("h2", "h4"));
  EXPECT_THAT(p["a"]->candidate_host_uuids(),
              UnorderedElementsAre("uuid-h2", "uuid-h4"));
  EXPECT_FALSE(p["a"]->no_agent());
}

TEST_F(PlannerTest, RunningVmOnAHostWithoutAgentIsMarked) {
  AddVm("a", 10, 3);
  const std::set<std::string> agents = {"uuid-h1"};
  auto p = Plan(&agents);
  EXPECT_EQ(p["a"]->host_name(), "h3");
  EXPECT_TRUE(p["a"]->no_agent());
  EXPECT_THAT(p["a"]->warnings(0), HasSubstr("no agent"));
}

TEST_F(PlannerTest, HaltedLocalVmWhoseHostHasNoAgentIsMarked) {
  AddVm("local", 10, 0, "OpaqueRef:local1");
  const std::set<std::string> agents = {"uuid-h2"};
  auto p = Plan(&agents);
  EXPECT_TRUE(p["local"]->host_uuid().empty());
  EXPECT_TRUE(p["local"]->no_agent());
}

}  // namespace
}  // namespace vmb::coordinator
