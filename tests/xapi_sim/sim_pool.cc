// SPDX-License-Identifier: Apache-2.0
// The simulated pool: database, fixture loading, the table of served
// methods, faults and bookkeeping. XML-RPC and JSON-RPC calls are in
// sim_rpc.cc, HTTP handlers in sim_http.cc (uploads: sim_upload.cc).
#include "tests/xapi_sim/sim_pool.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "common/base/logging.h"

namespace vmb::sim {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

bool IsThick(absl::string_view sr_type) {
  return sr_type == "lvm" || sr_type == "lvmoiscsi" || sr_type == "lvmohba" ||
         sr_type == "lvmofcoe";
}

// What a VHD file of `disk` takes on a thin SR: each 2 MiB block that holds
// a non-zero byte, with its 512-byte sector bitmap, plus the footer copy,
// header and block allocation table.
uint64_t AllocatedVhdBytes(const DiskImage& disk) {
  constexpr uint64_t kBlock = uint64_t{2} << 20;
  const uint64_t blocks = (disk.size() + kBlock - 1) / kBlock;
  uint64_t used = 0;
  for (uint64_t b = 0; b < blocks; ++b)
    used += disk.IsZero(b * kBlock, kBlock) ? 0 : 1;
  const uint64_t bat = (blocks * 4 + 511) / 512 * 512;
  return used * (kBlock + 512) + 512 + 1024 + bat + 512;
}

}  // namespace

SimValue& Object::at(absl::string_view field) {
  int i = schema->Find(field);
  VMB_CHECK(i >= 0) << schema->name << " has no field " << field;
  return fields[static_cast<size_t>(i)];
}

const SimValue& Object::at(absl::string_view field) const {
  int i = schema->Find(field);
  VMB_CHECK(i >= 0) << schema->name << " has no field " << field;
  return fields[static_cast<size_t>(i)];
}

// ---- database ---------------------------------------------------------------

Object* SimPool::CreateLocked(absl::string_view cls, std::string ref) {
  const ClassSchema* schema = FindClass(cls);
  VMB_CHECK(schema != nullptr) << cls;
  auto object = std::make_unique<Object>();
  object->schema = schema;
  object->ref = ref.empty() ? NewRefLocked() : std::move(ref);
  for (const FieldSchema& f : schema->fields)
    object->fields.push_back(f.default_value);
  if (schema->Find("uuid") >= 0)
    object->at("uuid") = SimValue::Str(NewUuidLocked());
  Object* raw = object.get();
  Table& t = tables_[std::string(cls)];
  t.order.push_back(raw->ref);
  t.rows[raw->ref] = std::move(object);
  return raw;
}

Object* SimPool::GetLocked(absl::string_view cls, absl::string_view ref) {
  auto t = tables_.find(cls);
  if (t == tables_.end()) return nullptr;
  auto it = t->second.rows.find(ref);
  return it == t->second.rows.end() ? nullptr : it->second.get();
}

Object* SimPool::ByUuidLocked(absl::string_view cls, absl::string_view uuid) {
  for (Object* o : AllLocked(cls)) {
    if (o->str("uuid") == uuid) return o;
  }
  return nullptr;
}

std::vector<Object*> SimPool::AllLocked(absl::string_view cls) {
  std::vector<Object*> out;
  auto t = tables_.find(cls);
  if (t == tables_.end()) return out;
  out.reserve(t->second.order.size());
  for (const std::string& ref : t->second.order)
    out.push_back(t->second.rows.at(ref).get());
  return out;
}

void SimPool::DestroyLocked(absl::string_view cls, absl::string_view ref_view) {
  // `ref_view` may point into the object being destroyed.
  const std::string ref(ref_view);
  auto t = tables_.find(cls);
  if (t == tables_.end()) return;
  t->second.rows.erase(ref);
  auto& order = t->second.order;
  order.erase(std::remove(order.begin(), order.end(), ref), order.end());
}

std::string SimPool::NewUuidLocked() {
  const uint64_t a = rng_();
  const uint64_t b = rng_();
  // Version 4, variant 1, as XAPI's own uuids.
  return absl::StrFormat("%08x-%04x-4%03x-%04x-%012x", a >> 32,
                         (a >> 16) & 0xffff, a & 0x0fff,
                         ((b >> 48) & 0x3fff) | 0x8000, b & 0xffffffffffffULL);
}

std::string SimPool::NewRefLocked() {
  return absl::StrCat("OpaqueRef:", NewUuidLocked());
}

std::string SimPool::NowLocked() {
  return absl::FormatTime("%Y%m%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

// ---- fixture ----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SimPool>> SimPool::Create(
    const Fixture& fixture) {
  std::unique_ptr<SimPool> pool(new SimPool());
  absl::MutexLock lock(&pool->mu_);
  pool->rng_.seed(fixture.seed() != 0 ? fixture.seed() : 1);
  pool->secret_rng_.seed(std::random_device()());
  absl::Status status = pool->LoadFixtureLocked(fixture);
  if (!status.ok()) return status;
  return pool;
}

SimPool::~SimPool() {
  if (own_state_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(state_dir_, ec);
  }
}

absl::Status SimPool::LoadFixtureLocked(const Fixture& fx) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("fixture: ", parts...));
  };
  credentials_ = fx.credentials();
  if (credentials_.username().empty()) credentials_.set_username("root");
  if (credentials_.password().empty())
    return bad("credentials.password is required");
  settings_ = fx.settings();
  if (settings_.product_version().empty())
    settings_.set_product_version("7.2.0");
  absl::StatusOr<RpcGeneration> generation =
      RpcGenerationOf(settings_.product_version());
  if (!generation.ok()) return bad(generation.status().message());
  rpc_generation_ = *generation;
  if (settings_.product_brand().empty())
    settings_.set_product_brand("XenServer");
  if (settings_.build_number().empty())
    settings_.set_build_number("release/falcon/master/8");
  if (settings_.max_sessions_per_originator() == 0)
    settings_.set_max_sessions_per_originator(500);
  if (!settings_.has_vdi_in_use_after_export())
    settings_.set_vdi_in_use_after_export(1);
  if (!settings_.state_dir().empty()) {
    state_dir_ = settings_.state_dir();
  } else {
    std::string templ =
        (std::filesystem::temp_directory_path() / "xapi-sim-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr)
      return absl::InternalError("cannot create state dir");
    state_dir_ = templ;
    own_state_dir_ = true;
  }
  if (fx.hosts().empty()) return bad("at least one host is required");

  Object* pool = CreateLocked("pool");
  pool_ref_ = pool->ref;
  pool->at("name_label") =
      SimValue::Str(fx.pool_name().empty() ? "pool" : fx.pool_name());

  // Networks.
  std::map<std::string, Object*> networks;
  Object* default_network = nullptr;  // the first one listed
  auto add_network = [&](const std::string& name, const std::string& bridge,
                         const std::string& uuid) {
    mu_.AssertHeld();
    Object* n = CreateLocked("network");
    if (!uuid.empty()) n->at("uuid") = SimValue::Str(uuid);
    n->at("name_label") = SimValue::Str(name);
    n->at("bridge") = SimValue::Str(bridge);
    networks[name] = n;
    if (default_network == nullptr) default_network = n;
  };
  for (const Network& n : fx.networks()) {
    if (n.name_label().empty()) return bad("networks: name_label is required");
    add_network(n.name_label(), n.bridge().empty() ? "xenbr0" : n.bridge(),
                n.uuid());
  }
  if (networks.empty())
    add_network("Pool-wide network associated with eth0", "xenbr0", "");

  // Hosts, their metrics and control domains.
  std::vector<Object*> hosts;
  std::set<std::string> addresses;
  int master_index = -1;
  for (int i = 0; i < fx.hosts_size(); ++i) {
    if (!fx.hosts(i).master()) continue;
    if (master_index >= 0) {
      return bad("hosts[", i, "]: only one host can be the master (hosts[",
                 master_index, "] is already)");
    }
    master_index = i;
  }
  if (master_index < 0) master_index = 0;
  for (int i = 0; i < fx.hosts_size(); ++i) {
    const Host& h = fx.hosts(i);
    if (h.name_label().empty())
      return bad("hosts[", i, "]: name_label is required");
    if (HostByNameLocked(h.name_label()) != nullptr) {
      return bad("hosts[", i, "]: duplicate host \"", h.name_label(), "\"");
    }
    Object* host = CreateLocked("host");
    if (!h.uuid().empty()) host->at("uuid") = SimValue::Str(h.uuid());
    const std::string address =
        h.address().empty() ? absl::StrCat("127.0.0.", 2 + i) : h.address();
    if (!addresses.insert(address).second) {
      return bad("hosts[", i, "]: address ", address, " used twice");
    }
    host->at("name_label") = SimValue::Str(h.name_label());
    host->at("hostname") = SimValue::Str(h.name_label());
    host->at("address") = SimValue::Str(address);
    host->at("enabled") = SimValue::Bool(true);
    host->at("API_version_major") = SimValue::Int(2);
    host->at("API_version_minor") = SimValue::Int(7);
    SimValue sv = SimValue::Map();
    sv.Put("product_version", SimValue::Str(settings_.product_version()));
    sv.Put("product_brand", SimValue::Str(settings_.product_brand()));
    sv.Put("build_number", SimValue::Str(settings_.build_number()));
    sv.Put("hostname", SimValue::Str(h.name_label()));
    sv.Put("date", SimValue::Str("2017-05-11"));
    sv.Put("xapi", SimValue::Str("1.9"));
    sv.Put("platform_name", SimValue::Str("XCP"));
    host->at("software_version") = sv;
    Object* metrics = CreateLocked("host_metrics");
    const uint64_t mem = h.memory_total() != 0 ? h.memory_total() : 64 * kGiB;
    metrics->at("memory_total") = SimValue::Int(static_cast<int64_t>(mem));
    metrics->at("memory_free") = SimValue::Int(static_cast<int64_t>(mem / 2));
    fixture_live_[metrics->ref] = !h.has_live() || h.live();
    metrics->at("last_updated") = SimValue::Time(NowLocked());
    host->at("metrics") = SimValue::Str(metrics->ref);
    Object* dom0 = CreateLocked("VM");
    dom0->at("name_label") =
        SimValue::Str(absl::StrCat("Control domain on host: ", h.name_label()));
    dom0->at("name_description") = SimValue::Str(
        "The domain which manages physical devices and manages other domains");
    dom0->at("is_control_domain") = SimValue::Bool(true);
    dom0->at("power_state") = SimValue::Str("Running");
    dom0->at("resident_on") = SimValue::Str(host->ref);
    dom0->at("affinity") = SimValue::Str(host->ref);
    dom0->at("domid") = SimValue::Int(0);
    Object* dom0_metrics = CreateLocked("VM_metrics");
    dom0->at("metrics") = SimValue::Str(dom0_metrics->ref);
    host->at("control_domain") = SimValue::Str(dom0->ref);
    host->at("resident_VMs").items.push_back(SimValue::Str(dom0->ref));
    hosts.push_back(host);
    if (i == master_index) master_ref_ = host->ref;
  }
  pool->at("master") = SimValue::Str(master_ref_);

  // SRs and PBDs.
  std::map<std::string, Object*> srs;
  std::map<std::string, uint32_t> sr_chain_limit;
  for (int i = 0; i < fx.srs_size(); ++i) {
    const StorageRepository& s = fx.srs(i);
    if (s.name_label().empty())
      return bad("srs[", i, "]: name_label is required");
    if (srs.count(s.name_label()) != 0) {
      return bad("srs[", i, "]: duplicate SR \"", s.name_label(), "\"");
    }
    Object* sr = CreateLocked("SR");
    if (!s.uuid().empty()) sr->at("uuid") = SimValue::Str(s.uuid());
    const std::string type = s.type().empty() ? "nfs" : s.type();
    sr->at("name_label") = SimValue::Str(s.name_label());
    sr->at("type") = SimValue::Str(type);
    sr->at("shared") = SimValue::Bool(s.shared());
    sr->at("content_type") = SimValue::Str(
        !s.content_type().empty() ? s.content_type()
                                  : (type == "iso" ? "iso" : "user"));
    sr->at("physical_size") = SimValue::Int(static_cast<int64_t>(
        s.physical_size() != 0 ? s.physical_size() : 1024 * kGiB));
    sr->at("physical_utilisation") =
        SimValue::Int(static_cast<int64_t>(s.physical_utilisation()));
    sr->at("virtual_allocation") =
        SimValue::Int(static_cast<int64_t>(s.physical_utilisation()));
    SimValue sm = SimValue::Map();
    sm.Put("allocation", SimValue::Str(IsThick(type) ? "thick" : "thin"));
    sm.Put("use_vhd", SimValue::Str("true"));
    sr->at("sm_config") = sm;
    std::vector<Object*> pbd_hosts;
    if (s.shared()) {
      pbd_hosts = hosts;
    } else {
      Object* owner = HostByNameLocked(s.host());
      if (owner == nullptr) {
        return bad("srs[", i, "] \"", s.name_label(),
                   "\": a local SR needs \"host\" naming a host",
                   s.host().empty()
                       ? ""
                       : absl::StrCat(" (unknown: \"", s.host(), "\")"));
      }
      pbd_hosts.push_back(owner);
    }
    for (const std::string& d : s.detached_on()) {
      if (HostByNameLocked(d) == nullptr) {
        return bad("srs[", i, "] \"", s.name_label(),
                   "\": detached_on names unknown host \"", d, "\"");
      }
    }
    for (Object* host : pbd_hosts) {
      Object* pbd = CreateLocked("PBD");
      pbd->at("host") = SimValue::Str(host->ref);
      pbd->at("SR") = SimValue::Str(sr->ref);
      const bool detached =
          std::find(s.detached_on().begin(), s.detached_on().end(),
                    host->str("name_label")) != s.detached_on().end();
      pbd->at("currently_attached") = SimValue::Bool(!detached);
      SimValue dc = SimValue::Map();
      if (type == "nfs") {
        dc.Put("server", SimValue::Str("192.0.2.10"));
        dc.Put("serverpath",
               SimValue::Str(absl::StrCat("/export/", s.name_label())));
      } else {
        dc.Put("device", SimValue::Str("/dev/sdb"));
      }
      pbd->at("device_config") = dc;
      sr->at("PBDs").items.push_back(SimValue::Str(pbd->ref));
      host->at("PBDs").items.push_back(SimValue::Str(pbd->ref));
    }
    sr_chain_limit[sr->ref] =
        s.max_chain_length() != 0 ? s.max_chain_length() : 30;
    if ((s.default_sr() ||
         (pool->str("default_SR") == "OpaqueRef:NULL" && s.shared())) &&
        type != "iso") {
      pool->at("default_SR") = SimValue::Str(sr->ref);
    }
    srs[s.name_label()] = sr;
  }
  for (Object* sr : AllLocked("SR")) {
    SimValue oc = SimValue::Map();
    oc.Put("vmbackup-sim:max_chain_length",
           SimValue::Str(absl::StrCat(sr_chain_limit[sr->ref])));
    sr->at("other_config") = oc;
  }

  // VMs.
  int64_t next_domid = 1;
  for (int i = 0; i < fx.vms_size(); ++i) {
    const Vm& v = fx.vms(i);
    const std::string where =
        absl::StrCat("vms[", i, "] \"", v.name_label(), "\"");
    const std::string state =
        v.power_state().empty() ? "Running" : v.power_state();
    if (state != "Running" && state != "Halted" && state != "Suspended" &&
        state != "Paused") {
      return bad(
          where,
          ": power_state must be Running, Halted, Suspended or Paused, not \"",
          state, "\"");
    }
    Object* vm = CreateLocked("VM");
    if (!v.uuid().empty()) vm->at("uuid") = SimValue::Str(v.uuid());
    const std::string vm_uuid = vm->str("uuid");
    vm->at("name_label") = SimValue::Str(v.name_label());
    vm->at("name_description") = SimValue::Str(v.name_description());
    vm->at("is_a_template") = SimValue::Bool(v.is_a_template());
    const bool running =
        !v.is_a_template() && (state == "Running" || state == "Paused");
    vm->at("power_state") = SimValue::Str(v.is_a_template() ? "Halted" : state);
    const uint64_t mem = v.memory() != 0 ? v.memory() : kGiB;
    for (const char* f : {"memory_target", "memory_static_max",
                          "memory_dynamic_max", "memory_dynamic_min"}) {
      vm->at(f) = SimValue::Int(static_cast<int64_t>(mem));
    }
    vm->at("memory_static_min") = SimValue::Int(static_cast<int64_t>(mem / 2));
    const int64_t vcpus = v.vcpus() != 0 ? v.vcpus() : 1;
    vm->at("VCPUs_max") = SimValue::Int(vcpus);
    vm->at("VCPUs_at_startup") = SimValue::Int(vcpus);
    SimValue oc = SimValue::Map();
    std::vector<std::string> keys;
    for (const auto& [k, unused] : v.other_config()) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    for (const std::string& k : keys)
      oc.Put(k, SimValue::Str(v.other_config().at(k)));
    vm->at("other_config") = oc;
    vm->at("tags") = SimValue::StrSet({v.tags().begin(), v.tags().end()});
    if (v.is_a_template()) {
      vm->at("allowed_operations") =
          SimValue::StrSet({"clone", "copy", "export", "destroy"});
    } else {
      vm->at("allowed_operations") =
          SimValue::StrSet({"snapshot", "export", "copy", "clone"});
    }
    Object* metrics = CreateLocked("VM_metrics");
    metrics->at("memory_actual") =
        SimValue::Int(running ? static_cast<int64_t>(mem) : 0);
    metrics->at("VCPUs_number") = SimValue::Int(running ? vcpus : 0);
    vm->at("metrics") = SimValue::Str(metrics->ref);
    if (!v.affinity().empty()) {
      Object* a = HostByNameLocked(v.affinity());
      if (a == nullptr)
        return bad(where, ": affinity names unknown host \"", v.affinity(),
                   "\"");
      vm->at("affinity") = SimValue::Str(a->ref);
    }

    // Disks.
    std::vector<std::string> disk_srs;
    for (int d = 0; d < v.disks_size(); ++d) {
      const Disk& disk = v.disks(d);
      const std::string dwhere = absl::StrCat(where, ": disks[", d, "]");
      const std::string userdevice =
          disk.userdevice().empty() ? absl::StrCat(d) : disk.userdevice();
      const bool cd = disk.type() == "CD";
      if (!cd && !disk.type().empty() && disk.type() != "Disk") {
        return bad(dwhere, ": type must be Disk or CD");
      }
      Object* vbd = CreateLocked("VBD");
      vbd->at("VM") = SimValue::Str(vm->ref);
      vbd->at("userdevice") = SimValue::Str(userdevice);
      int dev_index = 0;
      for (char c : userdevice)
        dev_index = dev_index * 10 + (absl::ascii_isdigit(c) ? c - '0' : 0);
      vbd->at("device") = SimValue::Str(
          !disk.device().empty()
              ? disk.device()
              : absl::StrCat("xvd", std::string(1, static_cast<char>(
                                                       'a' + dev_index % 26))));
      vbd->at("type") = SimValue::Str(cd ? "CD" : "Disk");
      vbd->at("mode") = SimValue::Str(cd ? "RO" : "RW");
      vbd->at("bootable") = SimValue::Bool(
          disk.has_bootable() ? disk.bootable() : (userdevice == "0" && !cd));
      vbd->at("currently_attached") = SimValue::Bool(running);
      vbd->at("empty") = SimValue::Bool(cd);
      vbd->at("unpluggable") = SimValue::Bool(cd);
      vbd->at("allowed_operations") = SimValue::StrSet({"attach"});
      vm->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
      if (cd) continue;
      auto sr_it = srs.find(disk.sr());
      if (sr_it == srs.end())
        return bad(dwhere, ": unknown SR \"", disk.sr(), "\"");
      if (disk.size() == 0 || disk.size() % 512 != 0) {
        return bad(dwhere, ": size must be a positive multiple of 512 bytes");
      }
      Object* sr = sr_it->second;
      Object* vdi = CreateLocked("VDI");
      if (!disk.vdi_uuid().empty())
        vdi->at("uuid") = SimValue::Str(disk.vdi_uuid());
      vdi->at("name_label") =
          SimValue::Str(!disk.name_label().empty()
                            ? disk.name_label()
                            : absl::StrCat(v.name_label(), " ", userdevice));
      vdi->at("SR") = SimValue::Str(sr->ref);
      vdi->at("VBDs").items.push_back(SimValue::Str(vbd->ref));
      vdi->at("virtual_size") =
          SimValue::Int(static_cast<int64_t>(disk.size()));
      const bool thick = IsThick(sr->str("type"));
      const uint64_t seed = disk.content_seed() != 0
                                ? disk.content_seed()
                                : GeneratedDisk::SeedFor(vm_uuid, userdevice);
      auto image = std::make_shared<GeneratedDisk>(seed, disk.size());
      // Thin (VHD) SRs store the 2 MiB blocks that hold data, as a VHD file
      // does; thick ones the whole disk.
      vdi->at("physical_utilisation") = SimValue::Int(static_cast<int64_t>(
          thick ? disk.size() : AllocatedVhdBytes(*image)));
      vdi->at("type") = SimValue::Str(userdevice == "0" ? "system" : "user");
      vdi->at("location") = SimValue::Str(vdi->str("uuid"));
      vdi->at("allowed_operations") =
          SimValue::StrSet({"clone", "snapshot", "copy", "resize", "destroy"});
      sr->at("VDIs").items.push_back(SimValue::Str(vdi->ref));
      sr->at("physical_utilisation").i += vdi->at("physical_utilisation").i;
      sr->at("virtual_allocation").i += static_cast<int64_t>(disk.size());
      vbd->at("VDI") = SimValue::Str(vdi->ref);
      VdiData data;
      data.seed = seed;
      data.image = std::move(image);
      data.chain_length = disk.chain_length() != 0 ? disk.chain_length() : 1;
      vdi_data_[vdi->ref] = std::move(data);
      disk_srs.push_back(sr->ref);
    }

    // Where it runs.
    if (running) {
      Object* host = nullptr;
      if (!v.resident_on().empty()) {
        host = HostByNameLocked(v.resident_on());
        if (host == nullptr) {
          return bad(where, ": resident_on names unknown host \"",
                     v.resident_on(), "\"");
        }
      } else {
        for (Object* h : hosts) {
          bool sees = true;
          for (const std::string& sr : disk_srs)
            sees = sees && HostSeesSrLocked(*h, sr);
          if (sees) {
            host = h;
            break;
          }
        }
        if (host == nullptr) return bad(where, ": no host sees all its SRs");
      }
      for (const std::string& sr : disk_srs) {
        if (!HostSeesSrLocked(*host, sr)) {
          return bad(where, ": runs on \"", host->str("name_label"),
                     "\" which cannot see one of its SRs");
        }
      }
      vm->at("resident_on") = SimValue::Str(host->ref);
      vm->at("domid") = SimValue::Int(next_domid++);
      host->at("resident_VMs").items.push_back(SimValue::Str(vm->ref));
      Object* gm = CreateLocked("VM_guest_metrics");
      vm->at("guest_metrics") = SimValue::Str(gm->ref);
      for (const SimValue& vbd_ref : vm->at("VBDs").items) {
        Object* vbd = GetLocked("VBD", vbd_ref.s);
        if (vbd->str("VDI") == "OpaqueRef:NULL") continue;
        Object* vdi = GetLocked("VDI", vbd->str("VDI"));
        vdi->at("sm_config")
            .Put(absl::StrCat("host_", host->ref), SimValue::Str("RW"));
      }
    }

    // VIFs.
    for (int n = 0; n < v.vifs_size(); ++n) {
      const Vif& f = v.vifs(n);
      Object* network = default_network;
      if (!f.network().empty()) {
        auto it = networks.find(f.network());
        if (it == networks.end()) {
          return bad(where, ": vifs[", n, "]: unknown network \"", f.network(),
                     "\"");
        }
        network = it->second;
      }
      Object* vif = CreateLocked("VIF");
      vif->at("device") =
          SimValue::Str(f.device().empty() ? absl::StrCat(n) : f.device());
      vif->at("network") = SimValue::Str(network->ref);
      vif->at("VM") = SimValue::Str(vm->ref);
      const uint64_t r = rng_();
      vif->at("MAC") = SimValue::Str(
          !f.mac().empty()
              ? f.mac()
              : absl::StrFormat("ce:%02x:%02x:%02x:%02x:%02x", r & 0xff,
                                (r >> 8) & 0xff, (r >> 16) & 0xff,
                                (r >> 24) & 0xff, (r >> 32) & 0xff));
      vif->at("MTU") = SimValue::Int(1500);
      vif->at("currently_attached") = SimValue::Bool(running);
      vm->at("VIFs").items.push_back(SimValue::Str(vif->ref));
      network->at("VIFs").items.push_back(SimValue::Str(vif->ref));
    }

    // Existing user snapshots.
    for (const Snapshot& s : v.snapshots()) {
      SimCall call;
      call.method = "VM.snapshot";
      call.params = {SimValue::Str(""), SimValue::Str(vm->ref),
                     SimValue::Str(s.name_label())};
      RpcResult result = SnapshotVmLocked(call);
      if (!result.error.empty()) {
        return bad(where, ": snapshot \"", s.name_label(),
                   "\": ", absl::StrJoin(result.error, " "));
      }
      Object* snap = GetLocked("VM", result.value.s);
      if (!s.snapshot_time().empty())
        snap->at("snapshot_time") = SimValue::Time(s.snapshot_time());
      if (!s.uuid().empty()) snap->at("uuid") = SimValue::Str(s.uuid());
    }
  }

  for (int i = 0; i < fx.faults_size(); ++i) {
    const Fault& f = fx.faults(i);
    if (absl::Status s = ValidateFault(f); !s.ok())
      return bad("faults[", i, "]: ", s.message());
    faults_.push_back(f);
    fault_fired_.push_back(0);
  }
  RefreshLivenessLocked();
  return absl::OkStatus();
}

// ---- helpers ----------------------------------------------------------------

Object* SimPool::HostByNameLocked(absl::string_view name) {
  for (Object* h : AllLocked("host")) {
    if (h->str("name_label") == name) return h;
  }
  return nullptr;
}

std::string SimPool::MasterAddressLocked() {
  return GetLocked("host", master_ref_)->str("address");
}

bool SimPool::HostLiveLocked(const Object& host) {
  Object* metrics = GetLocked("host_metrics", host.str("metrics"));
  return metrics != nullptr && metrics->at("live").b;
}

void SimPool::RefreshLivenessLocked() {
  for (Object* host : AllLocked("host")) {
    bool down = false;
    for (const Fault& f : faults_) {
      down =
          down || (f.kind() == Fault::HOST_DOWN &&
                   (f.host().empty() || f.host() == host->str("name_label")));
    }
    Object* metrics = GetLocked("host_metrics", host->str("metrics"));
    if (metrics == nullptr) continue;
    metrics->at("live") = SimValue::Bool(fixture_live_[metrics->ref] && !down);
  }
}

bool SimPool::HostSeesSrLocked(const Object& host, const std::string& sr_ref) {
  for (const SimValue& pbd_ref : host.at("PBDs").items) {
    Object* pbd = GetLocked("PBD", pbd_ref.s);
    if (pbd != nullptr && pbd->str("SR") == sr_ref &&
        pbd->at("currently_attached").b)
      return true;
  }
  return false;
}

std::vector<HostInfo> SimPool::hosts() {
  absl::MutexLock lock(&mu_);
  std::vector<HostInfo> out;
  for (Object* h : AllLocked("host")) {
    out.push_back(HostInfo{h->str("name_label"), h->str("address"),
                           h->str("uuid"), h->ref == master_ref_});
  }
  return out;
}

void SimPool::SetEndpoint(const std::string& scheme, int port) {
  absl::MutexLock lock(&mu_);
  scheme_ = scheme;
  port_ = port;
}

std::vector<std::string> SimPool::VmIdentitiesLocked(const Object& vm) {
  std::vector<std::string> ids = {vm.str("name_label"), vm.str("uuid")};
  Object* parent = GetLocked("VM", vm.str("snapshot_of"));
  if (parent != nullptr) {
    ids.push_back(parent->str("name_label"));
    ids.push_back(parent->str("uuid"));
  }
  return ids;
}

std::vector<std::string> SimPool::VdiVmIdentitiesLocked(const Object& vdi) {
  std::vector<std::string> ids;
  std::vector<const Object*> vdis = {&vdi};
  if (Object* src = GetLocked("VDI", vdi.str("snapshot_of")))
    vdis.push_back(src);
  for (const Object* v : vdis) {
    for (const SimValue& vbd_ref : v->at("VBDs").items) {
      Object* vbd = GetLocked("VBD", vbd_ref.s);
      if (vbd == nullptr) continue;
      Object* vm = GetLocked("VM", vbd->str("VM"));
      if (vm == nullptr) continue;
      for (std::string& id : VmIdentitiesLocked(*vm))
        ids.push_back(std::move(id));
    }
  }
  return ids;
}

// ---- served methods and handlers
// ---------------------------------------------

namespace {

// The one table of served XML-RPC/JSON-RPC methods, in the order
// system.listMethods lists them.
struct MethodTable {
  std::vector<ServedMethod> rows;
  absl::flat_hash_map<std::string, size_t> index;  // name to row
};

ServedMethod MethodRow(std::string name, size_t min_params, size_t max_params) {
  ServedMethod m;
  m.name = std::move(name);
  m.min_params = min_params;
  m.max_params = max_params;
  return m;
}

// Built once from the schema (docs/xapi-sim.md section 5.5): class by class
// in schema order, the specific messages the class has, then the generic
// messages it has, then get_<field> for every field. Parameter counts include
// the session. A name already in the table keeps its first row.
const MethodTable& Methods() {
  static const MethodTable* const table = [] {
    std::vector<ServedMethod> specific = {
        MethodRow("session.login_with_password", 2, 4),
        MethodRow("session.logout", 1, 1),
        MethodRow("session.get_this_host", 2, 2),
        MethodRow("VM.snapshot", 3, 4),
        MethodRow("VM.destroy", 2, 2),
        MethodRow("VM.set_is_a_template", 3, 3),
        MethodRow("VM.set_affinity", 3, 3),
        MethodRow("VM.start", 4, 4),
        MethodRow("VDI.snapshot", 2, 3),
        MethodRow("VDI.destroy", 2, 2),
        MethodRow("VDI.create", 2, 2),
        MethodRow("task.create", 3, 3),
        MethodRow("task.cancel", 2, 2),
        MethodRow("task.destroy", 2, 2),
    };
    specific[0].session = false;          // session.login_with_password
    specific[3].old_host_max_params = 3;  // VM.snapshot
    auto* t = new MethodTable;
    auto add = [t](ServedMethod m) {
      if (t->index.emplace(m.name, t->rows.size()).second)
        t->rows.push_back(std::move(m));
    };
    for (const ClassSchema& c : AllClasses()) {
      const std::string& cls = c.name;
      for (const ServedMethod& m : specific) {
        if (absl::StartsWith(m.name, cls + ".")) add(m);
      }
      add(MethodRow(cls + ".get_all", 1, 1));
      add(MethodRow(cls + ".get_all_records", 1, 1));
      add(MethodRow(cls + ".get_record", 2, 2));
      add(MethodRow(cls + ".get_by_uuid", 2, 2));
      if (c.Find("name_label") >= 0) {
        add(MethodRow(cls + ".get_by_name_label", 2, 2));
        add(MethodRow(cls + ".set_name_label", 3, 3));
        add(MethodRow(cls + ".set_name_description", 3, 3));
      }
      if (c.Find("other_config") >= 0) {
        add(MethodRow(cls + ".set_other_config", 3, 3));
        add(MethodRow(cls + ".add_to_other_config", 4, 4));
        add(MethodRow(cls + ".remove_from_other_config", 3, 3));
      }
      if (c.Find("tags") >= 0) {
        add(MethodRow(cls + ".set_tags", 3, 3));
        add(MethodRow(cls + ".add_tags", 3, 3));
        add(MethodRow(cls + ".remove_tags", 3, 3));
      }
      for (const FieldSchema& f : c.fields)
        add(MethodRow(cls + ".get_" + f.name, 2, 2));
    }
    for (const ServedMethod& m : specific)
      VMB_CHECK(t->index.count(m.name) != 0) << m.name << ": not in the schema";
    // Any parameters, not looked at; needs no session; not in its own list.
    ServedMethod list = MethodRow("system.listMethods", 0, SIZE_MAX);
    list.session = false;
    list.listed = false;
    add(std::move(list));
    return t;
  }();
  return *table;
}

// A data handler: its path and whether its requests concern a VM (that a
// fault's `vm` can match).
struct Handler {
  const char* path;
  bool has_vm;
};
constexpr Handler kHandlers[] = {
    {"/export", true},           {"/export_raw_vdi", true},
    {"/export_metadata", true},  {"/pool/xmldbdump", false},
    {"/import", false},          {"/import_raw_vdi", true},
    {"/import_metadata", false},
};

const Handler* FindHandler(absl::string_view path) {
  for (const Handler& h : kHandlers) {
    if (path == h.path) return &h;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string> SimPool::ServedMethods() {
  std::vector<std::string> names;
  for (const ServedMethod& m : Methods().rows) {
    if (m.listed) names.push_back(m.name);
  }
  return names;
}

std::vector<std::string> SimPool::ServedHandlers() {
  std::vector<std::string> out;
  for (const Handler& h : kHandlers) out.emplace_back(h.path);
  return out;
}

const ServedMethod* SimPool::FindServedMethod(absl::string_view method) {
  const MethodTable& table = Methods();
  auto it = table.index.find(method);
  return it == table.index.end() ? nullptr : &table.rows[it->second];
}

SimPool::Arity SimPool::ArityOf(const ServedMethod& served) const {
  if (served.old_host_max_params != 0 && settings_.old_host_snapshot_arity())
    return Arity{served.min_params, served.old_host_max_params};
  return Arity{served.min_params, served.max_params};
}

absl::Status SimPool::ValidateFault(const Fault& f) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (f.kind() == Fault::KIND_UNSPECIFIED) return bad("kind is required");
  const std::string kind = Fault::Kind_Name(f.kind());
  if (kind.empty()) return bad("unknown kind ", static_cast<int>(f.kind()));
  const std::string& call = f.call();
  const Handler* handler = FindHandler(call);
  const ServedMethod* served = FindServedMethod(call);
  const bool method = served != nullptr;
  if (!call.empty() && handler == nullptr && !method) {
    return bad("call \"", call,
               "\" is neither an XML-RPC method nor a data handler the "
               "simulator serves (handlers: ",
               absl::StrJoin(ServedHandlers(), ", "), ")");
  }
  // Kinds that ignore some of the matching fields.
  auto must_be_empty = [&](absl::string_view field,
                           const std::string& value) -> absl::Status {
    if (value.empty()) return absl::OkStatus();
    return bad(kind, " does not look at ", field, " (\"", value,
               "\"); leave it empty");
  };
  switch (f.kind()) {
    case Fault::SESSION_INVALID:
      for (auto [field, value] :
           {std::pair<absl::string_view, const std::string*>{"call", &f.call()},
            {"vm", &f.vm()},
            {"host", &f.host()}}) {
        if (absl::Status s = must_be_empty(field, *value); !s.ok()) return s;
      }
      return absl::OkStatus();
    case Fault::BANDWIDTH:
      if (f.bytes_per_second() == 0)
        return bad("BANDWIDTH needs bytes_per_second");
      [[fallthrough]];
    case Fault::HOST_DOWN:
      if (absl::Status s = must_be_empty("call", f.call()); !s.ok()) return s;
      return must_be_empty("vm", f.vm());
    case Fault::SLOW_CALL:
      if (f.delay_ms() == 0) return bad("SLOW_CALL needs delay_ms");
      if (handler != nullptr) {
        return bad("SLOW_CALL never applies to \"", call,
                   "\": it delays XML-RPC and JSON-RPC calls, not data "
                   "handlers");
      }
      if (!f.vm().empty() && method && !absl::StartsWith(call, "VM.")) {
        return bad("vm never matches a SLOW_CALL on \"", call,
                   "\": only VM.* calls have a VM");
      }
      return absl::OkStatus();
    case Fault::CALL_ERROR:
      if (method && !served->session) {
        return bad("CALL_ERROR never applies to \"", call,
                   "\": it takes no session, and faults fail only calls "
                   "made with one");
      }
      if (!f.vm().empty() && method && !absl::StartsWith(call, "VM.") &&
          !absl::StartsWith(call, "VDI.")) {
        return bad("vm never matches \"", call,
                   "\": only VM.* and VDI.* calls have a VM");
      }
      break;
    case Fault::STALL:
    case Fault::CUT:
    case Fault::EMBEDDED_500:
    case Fault::CORRUPT:
    case Fault::TASK_FAIL:
      if (method) {
        return bad(kind, " never applies to \"", call,
                   "\": it applies to the data handlers (",
                   absl::StrJoin(ServedHandlers(), ", "), ")");
      }
      break;
    default:
      return bad("unknown kind ", kind);
  }
  if (handler != nullptr && !handler->has_vm && !f.vm().empty()) {
    return bad("vm never matches \"", call, "\": its requests concern no VM");
  }
  return absl::OkStatus();
}

// ---- faults -----------------------------------------------------------------

const Fault* SimPool::MatchFaultLocked(Fault::Kind kind,
                                       const std::string& host,
                                       const std::string& call,
                                       const std::vector<std::string>& vm_ids) {
  for (size_t i = 0; i < faults_.size(); ++i) {
    const Fault& f = faults_[i];
    if (f.kind() != kind) continue;
    if (f.times() != 0 && fault_fired_[i] >= f.times()) continue;
    if (!f.host().empty() && f.host() != host) continue;
    if (!f.call().empty() && f.call() != call) continue;
    if (!f.vm().empty() &&
        std::find(vm_ids.begin(), vm_ids.end(), f.vm()) == vm_ids.end()) {
      continue;
    }
    ++fault_fired_[i];
    return &f;
  }
  return nullptr;
}

std::vector<std::string> SimPool::FaultErrorLocked(const Fault& f,
                                                   const std::string& subject) {
  std::vector<std::string> error(f.error().begin(), f.error().end());
  if (error.empty()) error.push_back("INTERNAL_ERROR");
  if (error.size() > 1) return error;
  // Only a code was given: add the parameters XAPI sends with it.
  const std::string& code = error[0];
  if (code == "SR_BACKEND_FAILURE_44")
    return {code, "", "There is insufficient space", ""};
  if (code == "SR_BACKEND_FAILURE_109")
    return {code, "", "The snapshot chain is too long", ""};
  if (code == "SR_BACKEND_FAILURE_46") {
    return {code, "",
            absl::StrCat("The VDI is not available [opterr=VDI ", subject,
                         " not detached cleanly]"),
            ""};
  }
  if (code == "SR_FULL") return {code, "0", "0"};
  if (code == "OTHER_OPERATION_IN_PROGRESS")
    return {code, "VM", subject, "snapshot", ""};
  if (code == "VDI_IO_ERROR") return {code, "Device I/O errors"};
  if (code == "VDI_IN_USE") return {code, subject, "destroy"};
  if (code == "LICENCE_RESTRICTION") return {code, "Snapshot"};
  if (code == "INTERNAL_ERROR") return {code, "simulated failure"};
  return error;
}

absl::Status SimPool::AddFault(const Fault& fault) {
  if (absl::Status s = ValidateFault(fault); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("fault: ", s.message()));
  }
  absl::MutexLock lock(&mu_);
  faults_.push_back(fault);
  fault_fired_.push_back(0);
  RefreshLivenessLocked();
  return absl::OkStatus();
}

void SimPool::ClearFaults() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
  fault_fired_.clear();
  session_invalid_seen_.clear();
  RefreshLivenessLocked();
}

FaultList SimPool::Faults() {
  absl::MutexLock lock(&mu_);
  return FaultsLocked();
}

FaultList SimPool::FaultsLocked() {
  FaultList list;
  for (const Fault& f : faults_) *list.add_faults() = f;
  return list;
}

// ---- state for tests
// ----------------------------------------------------------

absl::StatusOr<VdiInfo> SimPool::DescribeVdi(const std::string& uuid) {
  std::shared_ptr<DiskImage> image;
  VdiInfo info;
  {
    absl::MutexLock lock(&mu_);
    Object* vdi = ByUuidLocked("VDI", uuid);
    if (vdi == nullptr)
      return absl::NotFoundError(absl::StrCat("no VDI ", uuid));
    auto it = vdi_data_.find(vdi->ref);
    if (it == vdi_data_.end() || it->second.image == nullptr) {
      return absl::NotFoundError(absl::StrCat("VDI ", uuid, " has no data"));
    }
    image = it->second.image;
    info.set_uuid(uuid);
    info.set_virtual_size(image->size());
    info.set_content_seed(it->second.seed);
    for (const SimValue& vbd_ref : vdi->at("VBDs").items) {
      Object* vbd = GetLocked("VBD", vbd_ref.s);
      if (vbd == nullptr) continue;
      Object* vm = GetLocked("VM", vbd->str("VM"));
      if (vm != nullptr) info.set_vm_uuid(vm->str("uuid"));
      info.set_userdevice(vbd->str("userdevice"));
    }
  }
  info.set_sha256(DiskSha256(*image));
  return info;
}

SimState SimPool::State() {
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

SimState SimPool::StateLocked() {
  SimState state;
  state.set_sessions(static_cast<uint32_t>(sessions_.size()));
  for (const std::string& ref : issued_sessions_)
    state.add_issued_session_refs(ref);
  for (Object* vm : AllLocked("VM")) {
    state.set_vms(state.vms() + 1);
    if (vm->at("is_a_snapshot").b) {
      state.set_snapshots(state.snapshots() + 1);
      state.add_snapshot_names(vm->str("name_label"));
    }
  }
  for (Object* vdi : AllLocked("VDI")) {
    state.set_vdis(state.vdis() + 1);
    if (vdi->at("is_a_snapshot").b)
      state.set_snapshot_vdis(state.snapshot_vdis() + 1);
  }
  for (Object* task : AllLocked("task")) {
    state.set_tasks(state.tasks() + 1);
    if (task->str("status") == "pending")
      state.set_pending_tasks(state.pending_tasks() + 1);
  }
  state.set_api_calls(api_calls_);
  return state;
}

RequestLog SimPool::Requests(const std::string& host) {
  absl::MutexLock lock(&mu_);
  return RequestsLocked(host);
}

RequestLog SimPool::RequestsLocked(const std::string& host) {
  RequestLog log;
  for (const RequestLogEntry& e : request_log_) {
    if (host.empty() || e.host() == host) *log.add_requests() = e;
  }
  return log;
}

std::string RedactSessionInQuery(absl::string_view raw_query) {
  std::string query;
  for (absl::string_view part : absl::StrSplit(raw_query, '&')) {
    if (part.empty()) continue;
    if (!query.empty()) query += "&";
    if (absl::StartsWith(part, "session_id=")) {
      query += "session_id=REDACTED";
    } else {
      absl::StrAppend(&query, part);
    }
  }
  return query;
}

int SimPool::LogRequestLocked(const HttpRequest& r) {
  RequestLogEntry e;
  e.set_host(r.host);
  e.set_method(r.method);
  const std::string query = RedactSessionInQuery(r.raw_query);
  e.set_path(query.empty() ? r.path : absl::StrCat(r.path, "?", query));
  e.set_session_cookie(r.cookies.count("session_id") != 0);
  e.set_session_in_query(r.query.count("session_id") != 0);
  e.set_basic_auth(absl::StartsWith(r.authorization, "Basic "));
  auto task = r.query.find("task_id");
  if (task != r.query.end()) e.set_task_id(task->second);
  e.set_started(absl::ToDoubleSeconds(absl::Now() - started_));
  request_log_.push_back(std::move(e));
  return static_cast<int>(request_log_.size()) - 1;
}

void SimPool::Shutdown() { shutdown_.store(true); }

}  // namespace vmb::sim
