// SPDX-License-Identifier: Apache-2.0
#pragma once

// Typed XenAPI records: the fields a backup tool needs of each class
// (reference: XenAPI datamodel; real records from XenServer 6.2 to 8.2).
// Parsing is lenient where XAPI versions differ (a field missing in an older
// release gets its default; an empty ref reads as OpaqueRef:NULL; ints arrive
// as untyped digits) and strict where a wrong type means a broken reply.

#include <stdint.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "common/xapi/xmlrpc_value.h"

namespace vmb {

inline constexpr absl::string_view kNullRef = "OpaqueRef:NULL";

using StringMap = std::map<std::string, std::string>;
using RefList = std::vector<std::string>;

// Records keyed by their opaque ref, as get_all_records returns them.
template <typename Record>
using RecordMap = std::map<std::string, Record>;

struct PoolRecord {
  std::string uuid;
  std::string name_label;
  std::string master;      // host ref
  std::string default_sr;  // SR ref
  StringMap other_config;
};

struct HostRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  std::string hostname;
  std::string address;  // management IP: redirects and HOST_IS_SLAVE use it
  bool enabled = false;
  std::string metrics;         // host_metrics ref
  StringMap software_version;  // product_version, product_brand, build_number,
                               // xapi, ...
  int64_t api_version_major = 0;
  int64_t api_version_minor = 0;
  RefList pbds;
  RefList resident_vms;
  std::string control_domain;
  StringMap other_config;
};

struct HostMetricsRecord {
  std::string uuid;
  bool live = false;
  int64_t memory_total = 0;
  int64_t memory_free = 0;
  absl::Time last_updated = absl::UnixEpoch();
};

struct VmRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  std::string power_state;  // Halted, Paused, Running, Suspended
  bool is_a_template = false;
  bool is_default_template = false;
  bool is_a_snapshot = false;
  bool is_control_domain = false;
  std::string snapshot_of;  // VM ref
  RefList snapshots;
  absl::Time snapshot_time = absl::UnixEpoch();
  StringMap snapshot_info;
  std::string resident_on;  // host ref, NULL unless running or paused
  std::string affinity;     // host ref
  RefList vbds;
  RefList vifs;
  std::string suspend_vdi;
  StringMap other_config;
  std::vector<std::string> tags;
  StringMap blocked_operations;
  std::vector<std::string> allowed_operations;
  StringMap current_operations;
  int64_t memory_static_max = 0;
  int64_t vcpus_max = 0;
  std::string metrics;
  std::string guest_metrics;
  StringMap platform;
  std::string parent;  // VM ref
};

struct VbdRecord {
  std::string uuid;
  std::string vm;
  std::string vdi;         // NULL when empty
  std::string device;      // xvda, hda, ... (set at plug time; may be empty)
  std::string userdevice;  // "0", "1", ...
  bool bootable = false;
  std::string mode;  // RW, RO
  std::string type;  // Disk, CD, Floppy
  bool empty = false;
  bool currently_attached = false;
  bool unpluggable = false;
  StringMap other_config;
};

struct VdiRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  std::string sr;
  RefList vbds;
  int64_t virtual_size = 0;
  int64_t physical_utilisation = 0;
  std::string type;  // system, user, ...
  bool sharable = false;
  bool read_only = false;
  bool managed = true;  // false for hidden "base copy" chain members
  bool missing = false;
  bool is_a_snapshot = false;
  std::string snapshot_of;
  RefList snapshots;
  absl::Time snapshot_time = absl::UnixEpoch();
  StringMap sm_config;
  StringMap other_config;
  std::string location;
  std::vector<std::string> tags;
};

struct SrRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  std::string type;          // nfs, ext, lvm, lvmoiscsi, ...
  std::string content_type;  // user, iso, ...
  bool shared = false;
  RefList pbds;
  RefList vdis;
  int64_t physical_size = 0;
  int64_t physical_utilisation = 0;
  int64_t virtual_allocation = 0;
  StringMap sm_config;
  StringMap other_config;
};

struct PbdRecord {
  std::string uuid;
  std::string host;
  std::string sr;
  // May hold storage credentials (CIFS, iSCSI CHAP): never log it.
  StringMap device_config;
  bool currently_attached = false;
  StringMap other_config;
};

struct VifRecord {
  std::string uuid;
  std::string device;
  std::string network;
  std::string vm;
  std::string mac;
  int64_t mtu = 0;
  bool currently_attached = false;
  StringMap other_config;
};

struct NetworkRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  std::string bridge;
  RefList pifs;
  RefList vifs;
  int64_t mtu = 0;
  StringMap other_config;
};

enum class TaskStatus { kPending, kSuccess, kFailure, kCancelling, kCancelled };

struct TaskRecord {
  std::string uuid;
  std::string name_label;
  std::string name_description;
  TaskStatus status = TaskStatus::kPending;
  double progress = 0;
  absl::Time created = absl::UnixEpoch();
  absl::Time finished = absl::UnixEpoch();
  std::string resident_on;
  std::string result;                   // an XML-RPC value, as text
  std::vector<std::string> error_info;  // like ErrorDescription
  StringMap other_config;
};

// Each parser reads one record (a struct) of its class; `ref` only names it in
// errors. Errors: INVALID_ARGUMENT naming the class, ref and field when a
// field present has the wrong type, or a required field (uuid) is missing.
// 8-4-4-4-12 hex digits, as XAPI writes uuids (either case).
bool IsUuid(absl::string_view s);

absl::StatusOr<PoolRecord> ParsePoolRecord(const XmlRpcValue& v,
                                           absl::string_view ref);
absl::StatusOr<HostRecord> ParseHostRecord(const XmlRpcValue& v,
                                           absl::string_view ref);
absl::StatusOr<HostMetricsRecord> ParseHostMetricsRecord(const XmlRpcValue& v,
                                                         absl::string_view ref);
absl::StatusOr<VmRecord> ParseVmRecord(const XmlRpcValue& v,
                                       absl::string_view ref);
absl::StatusOr<VbdRecord> ParseVbdRecord(const XmlRpcValue& v,
                                         absl::string_view ref);
absl::StatusOr<VdiRecord> ParseVdiRecord(const XmlRpcValue& v,
                                         absl::string_view ref);
absl::StatusOr<SrRecord> ParseSrRecord(const XmlRpcValue& v,
                                       absl::string_view ref);
absl::StatusOr<PbdRecord> ParsePbdRecord(const XmlRpcValue& v,
                                         absl::string_view ref);
absl::StatusOr<VifRecord> ParseVifRecord(const XmlRpcValue& v,
                                         absl::string_view ref);
absl::StatusOr<NetworkRecord> ParseNetworkRecord(const XmlRpcValue& v,
                                                 absl::string_view ref);
absl::StatusOr<TaskRecord> ParseTaskRecord(const XmlRpcValue& v,
                                           absl::string_view ref);

// Parses a get_all_records result (ref -> record struct) with `parse`.
template <typename Record>
absl::StatusOr<RecordMap<Record>> ParseRecordMap(
    const XmlRpcValue& v,
    absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view));

// XAPI's datetime forms: "20140915T14:33:31Z" (also without Z, dashed ISO
// 8601, and "<seconds>." as some SDK tests write). Errors: INVALID_ARGUMENT.
absl::StatusOr<absl::Time> ParseXapiTime(absl::string_view text);

absl::string_view TaskStatusName(TaskStatus status);

// Helpers for values outside records: a string, ref (empty -> NULL), or a set
// of strings. Errors: INVALID_ARGUMENT naming `what`.
absl::StatusOr<std::string> ValueAsString(const XmlRpcValue& v,
                                          absl::string_view what);
absl::StatusOr<std::string> ValueAsRef(const XmlRpcValue& v,
                                       absl::string_view what);
absl::StatusOr<std::vector<std::string>> ValueAsStringList(
    const XmlRpcValue& v, absl::string_view what);

// ---- implementation of the template ----

template <typename Record>
absl::StatusOr<RecordMap<Record>> ParseRecordMap(
    const XmlRpcValue& v,
    absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view)) {
  if (!v.is_struct()) {
    return absl::InvalidArgumentError(
        absl::StrCat("get_all_records returned ",
                     XmlRpcValue::TypeName(v.type()), ", not a struct"));
  }
  RecordMap<Record> out;
  for (size_t i = 0; i < v.size(); ++i) {
    absl::StatusOr<Record> r = parse(v.items()[i], v.names()[i]);
    if (!r.ok()) return r.status();
    out.emplace(v.names()[i], *std::move(r));
  }
  return out;
}

}  // namespace vmb
