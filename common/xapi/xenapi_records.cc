// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xenapi_records.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"

#include "common/base/status_macros.h"

namespace vmb {
namespace {

// Reads fields of one record; remembers the first error, so a parser is a
// straight list of field reads followed by status().
class FieldReader {
 public:
  FieldReader(const XmlRpcValue& v, absl::string_view cls,
              absl::string_view ref)
      : v_(v), cls_(cls), ref_(ref) {
    if (!v.is_struct()) {
      Fail("", absl::StrCat("record is ", XmlRpcValue::TypeName(v.type()),
                            ", not a struct"));
    }
  }

  absl::Status status() const { return status_; }

  void Required(const char* field) {
    if (status_.ok() && v_.Find(field) == nullptr) Fail(field, "missing");
  }

  void String(const char* field, std::string* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    auto s = ValueAsString(*f, field);
    if (!s.ok()) return Fail(field, s.status().message());
    *out = *std::move(s);
  }

  void Ref(const char* field, std::string* out) {
    String(field, out);
    if (out->empty()) *out = std::string(kNullRef);
  }

  void Int(const char* field, int64_t* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    if (f->is_int()) {
      *out = f->int_value();
    } else if (!f->is_string() || !absl::SimpleAtoi(f->text(), out)) {
      Fail(field, absl::StrCat("expected an integer, got ", f->DebugString()));
    }
  }

  void Bool(const char* field, bool* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    if (f->is_bool()) {
      *out = f->bool_value();
    } else if (f->is_string() &&
               (f->text() == "true" || f->text() == "false")) {
      *out = f->text() == "true";
    } else {
      Fail(field, absl::StrCat("expected a boolean, got ", f->DebugString()));
    }
  }

  void Double(const char* field, double* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    if (f->is_double()) {
      *out = f->double_value();
    } else if (f->is_int()) {
      *out = static_cast<double>(f->int_value());
    } else if (!f->is_string() || !absl::SimpleAtod(f->text(), out)) {
      Fail(field, absl::StrCat("expected a number, got ", f->DebugString()));
    }
  }

  void Time(const char* field, absl::Time* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    if (!f->is_datetime() && !f->is_string()) {
      return Fail(field,
                  absl::StrCat("expected a dateTime, got ", f->DebugString()));
    }
    auto t = ParseXapiTime(f->text());
    if (!t.ok()) return Fail(field, t.status().message());
    *out = *t;
  }

  void List(const char* field, std::vector<std::string>* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    auto list = ValueAsStringList(*f, field);
    if (!list.ok()) return Fail(field, list.status().message());
    *out = *std::move(list);
  }

  void Map(const char* field, StringMap* out) {
    const XmlRpcValue* f = Get(field);
    if (f == nullptr) return;
    if (!f->is_struct()) {
      return Fail(field, absl::StrCat("expected a map, got ",
                                      XmlRpcValue::TypeName(f->type())));
    }
    out->clear();
    for (size_t i = 0; i < f->size(); ++i) {
      const XmlRpcValue& item = f->items()[i];
      if (item.is_string() || item.is_datetime()) {
        (*out)[f->names()[i]] = item.text();
      } else if (item.is_int()) {
        (*out)[f->names()[i]] = absl::StrCat(item.int_value());
      } else if (item.is_bool()) {
        (*out)[f->names()[i]] = item.bool_value() ? "true" : "false";
      } else if (item.is_double()) {
        (*out)[f->names()[i]] = absl::StrCat(item.double_value());
      } else {
        return Fail(field,
                    absl::StrCat("map value for '", f->names()[i], "' is ",
                                 XmlRpcValue::TypeName(item.type())));
      }
    }
  }

 private:
  const XmlRpcValue* Get(const char* field) {
    if (!status_.ok()) return nullptr;
    return v_.Find(field);
  }

  void Fail(absl::string_view field, absl::string_view why) {
    if (!status_.ok()) return;
    status_ = absl::InvalidArgumentError(
        absl::StrCat("bad XenAPI ", cls_, " record ", ref_,
                     field.empty() ? "" : ": field ", field, ": ", why));
  }

  const XmlRpcValue& v_;
  absl::string_view cls_;
  absl::string_view ref_;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::string> ValueAsString(const XmlRpcValue& v,
                                          absl::string_view what) {
  if (v.is_string()) return v.text();
  if (v.is_int()) return absl::StrCat(v.int_value());
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": expected a string, got ", XmlRpcValue::TypeName(v.type())));
}

absl::StatusOr<std::string> ValueAsRef(const XmlRpcValue& v,
                                       absl::string_view what) {
  VMB_ASSIGN_OR_RETURN(std::string s, ValueAsString(v, what));
  if (s.empty()) s = std::string(kNullRef);
  return s;
}

absl::StatusOr<std::vector<std::string>> ValueAsStringList(
    const XmlRpcValue& v, absl::string_view what) {
  if (!v.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": expected an array, got ", XmlRpcValue::TypeName(v.type())));
  }
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const XmlRpcValue& item : v.items()) {
    VMB_ASSIGN_OR_RETURN(std::string s, ValueAsString(item, what));
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<absl::Time> ParseXapiTime(absl::string_view text) {
  std::string t(absl::StripAsciiWhitespace(text));
  // XAPI's compact form, by position: YYYYMMDDTHH:MM:SS[Z].
  auto digits = [&](size_t at, size_t n, int* out) {
    if (at + n > t.size()) return false;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(t[i]))) return false;
      v = v * 10 + (t[i] - '0');
    }
    *out = v;
    return true;
  };
  int y, mo, d, h, mi, sec;
  if ((t.size() == 17 || (t.size() == 18 && t[17] == 'Z')) && t[8] == 'T' &&
      t[11] == ':' && t[14] == ':' && digits(0, 4, &y) && digits(4, 2, &mo) &&
      digits(6, 2, &d) && digits(9, 2, &h) && digits(12, 2, &mi) &&
      digits(15, 2, &sec)) {
    const absl::CivilSecond cs(y, mo, d, h, mi, sec);
    if (cs.year() == y && cs.month() == mo && cs.day() == d && cs.hour() == h &&
        cs.minute() == mi && cs.second() == sec) {
      return absl::FromCivil(cs, absl::UTCTimeZone());
    }
  }
  absl::Time out;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, t, &out, &err)) return out;
  if (absl::ParseTime("%Y-%m-%dT%H:%M:%S", t, absl::UTCTimeZone(), &out, &err))
    return out;
  // "1627478400." (seconds since the epoch, as some SDKs write).
  absl::string_view seconds = t;
  absl::ConsumeSuffix(&seconds, ".");
  int64_t s;
  if (!seconds.empty() && absl::SimpleAtoi(seconds, &s))
    return absl::FromUnixSeconds(s);
  return absl::InvalidArgumentError(
      absl::StrCat("bad XenAPI datetime '", t, "'"));
}

absl::string_view TaskStatusName(TaskStatus status) {
  switch (status) {
    case TaskStatus::kPending:
      return "pending";
    case TaskStatus::kSuccess:
      return "success";
    case TaskStatus::kFailure:
      return "failure";
    case TaskStatus::kCancelling:
      return "cancelling";
    case TaskStatus::kCancelled:
      return "cancelled";
  }
  return "?";
}

absl::StatusOr<PoolRecord> ParsePoolRecord(const XmlRpcValue& v,
                                           absl::string_view ref) {
  PoolRecord r;
  FieldReader f(v, "pool", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.Ref("master", &r.master);
  f.Ref("default_SR", &r.default_sr);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<HostRecord> ParseHostRecord(const XmlRpcValue& v,
                                           absl::string_view ref) {
  HostRecord r;
  FieldReader f(v, "host", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  f.String("hostname", &r.hostname);
  f.String("address", &r.address);
  f.Bool("enabled", &r.enabled);
  f.Ref("metrics", &r.metrics);
  f.Map("software_version", &r.software_version);
  f.Int("API_version_major", &r.api_version_major);
  f.Int("API_version_minor", &r.api_version_minor);
  f.List("PBDs", &r.pbds);
  f.List("resident_VMs", &r.resident_vms);
  f.Ref("control_domain", &r.control_domain);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<HostMetricsRecord> ParseHostMetricsRecord(
    const XmlRpcValue& v, absl::string_view ref) {
  HostMetricsRecord r;
  FieldReader f(v, "host_metrics", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.Bool("live", &r.live);
  f.Int("memory_total", &r.memory_total);
  f.Int("memory_free", &r.memory_free);
  f.Time("last_updated", &r.last_updated);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<VmRecord> ParseVmRecord(const XmlRpcValue& v,
                                       absl::string_view ref) {
  VmRecord r;
  FieldReader f(v, "VM", ref);
  f.Required("uuid");
  f.Required("power_state");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  f.String("power_state", &r.power_state);
  f.Bool("is_a_template", &r.is_a_template);
  f.Bool("is_default_template", &r.is_default_template);
  f.Bool("is_a_snapshot", &r.is_a_snapshot);
  f.Bool("is_control_domain", &r.is_control_domain);
  f.Ref("snapshot_of", &r.snapshot_of);
  f.List("snapshots", &r.snapshots);
  f.Time("snapshot_time", &r.snapshot_time);
  f.Map("snapshot_info", &r.snapshot_info);
  f.Ref("resident_on", &r.resident_on);
  f.Ref("affinity", &r.affinity);
  f.List("VBDs", &r.vbds);
  f.List("VIFs", &r.vifs);
  f.Ref("suspend_VDI", &r.suspend_vdi);
  f.Map("other_config", &r.other_config);
  f.List("tags", &r.tags);
  f.Map("blocked_operations", &r.blocked_operations);
  f.List("allowed_operations", &r.allowed_operations);
  f.Map("current_operations", &r.current_operations);
  f.Int("memory_static_max", &r.memory_static_max);
  f.Int("VCPUs_max", &r.vcpus_max);
  f.Ref("metrics", &r.metrics);
  f.Ref("guest_metrics", &r.guest_metrics);
  f.Map("platform", &r.platform);
  f.Ref("parent", &r.parent);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<VbdRecord> ParseVbdRecord(const XmlRpcValue& v,
                                         absl::string_view ref) {
  VbdRecord r;
  FieldReader f(v, "VBD", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.Ref("VM", &r.vm);
  f.Ref("VDI", &r.vdi);
  f.String("device", &r.device);
  f.String("userdevice", &r.userdevice);
  f.Bool("bootable", &r.bootable);
  f.String("mode", &r.mode);
  f.String("type", &r.type);
  f.Bool("empty", &r.empty);
  f.Bool("currently_attached", &r.currently_attached);
  f.Bool("unpluggable", &r.unpluggable);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<VdiRecord> ParseVdiRecord(const XmlRpcValue& v,
                                         absl::string_view ref) {
  VdiRecord r;
  FieldReader f(v, "VDI", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  f.Ref("SR", &r.sr);
  f.List("VBDs", &r.vbds);
  f.Int("virtual_size", &r.virtual_size);
  f.Int("physical_utilisation", &r.physical_utilisation);
  f.String("type", &r.type);
  f.Bool("sharable", &r.sharable);
  f.Bool("read_only", &r.read_only);
  f.Bool("managed", &r.managed);
  f.Bool("missing", &r.missing);
  f.Bool("is_a_snapshot", &r.is_a_snapshot);
  f.Ref("snapshot_of", &r.snapshot_of);
  f.List("snapshots", &r.snapshots);
  f.Time("snapshot_time", &r.snapshot_time);
  f.Map("sm_config", &r.sm_config);
  f.Map("other_config", &r.other_config);
  f.String("location", &r.location);
  f.List("tags", &r.tags);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<SrRecord> ParseSrRecord(const XmlRpcValue& v,
                                       absl::string_view ref) {
  SrRecord r;
  FieldReader f(v, "SR", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  f.String("type", &r.type);
  f.String("content_type", &r.content_type);
  f.Bool("shared", &r.shared);
  f.List("PBDs", &r.pbds);
  f.List("VDIs", &r.vdis);
  f.Int("physical_size", &r.physical_size);
  f.Int("physical_utilisation", &r.physical_utilisation);
  f.Int("virtual_allocation", &r.virtual_allocation);
  f.Map("sm_config", &r.sm_config);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<PbdRecord> ParsePbdRecord(const XmlRpcValue& v,
                                         absl::string_view ref) {
  PbdRecord r;
  FieldReader f(v, "PBD", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.Ref("host", &r.host);
  f.Ref("SR", &r.sr);
  f.Map("device_config", &r.device_config);
  f.Bool("currently_attached", &r.currently_attached);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<VifRecord> ParseVifRecord(const XmlRpcValue& v,
                                         absl::string_view ref) {
  VifRecord r;
  FieldReader f(v, "VIF", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("device", &r.device);
  f.Ref("network", &r.network);
  f.Ref("VM", &r.vm);
  f.String("MAC", &r.mac);
  f.Int("MTU", &r.mtu);
  f.Bool("currently_attached", &r.currently_attached);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<NetworkRecord> ParseNetworkRecord(const XmlRpcValue& v,
                                                 absl::string_view ref) {
  NetworkRecord r;
  FieldReader f(v, "network", ref);
  f.Required("uuid");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  f.String("bridge", &r.bridge);
  f.List("PIFs", &r.pifs);
  f.List("VIFs", &r.vifs);
  f.Int("MTU", &r.mtu);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  return r;
}

absl::StatusOr<TaskRecord> ParseTaskRecord(const XmlRpcValue& v,
                                           absl::string_view ref) {
  TaskRecord r;
  FieldReader f(v, "task", ref);
  f.Required("uuid");
  f.Required("status");
  f.String("uuid", &r.uuid);
  f.String("name_label", &r.name_label);
  f.String("name_description", &r.name_description);
  std::string status;
  f.String("status", &status);
  f.Double("progress", &r.progress);
  f.Time("created", &r.created);
  f.Time("finished", &r.finished);
  f.Ref("resident_on", &r.resident_on);
  f.String("result", &r.result);
  f.List("error_info", &r.error_info);
  f.Map("other_config", &r.other_config);
  VMB_RETURN_IF_ERROR(f.status());
  if (status == "pending") {
    r.status = TaskStatus::kPending;
  } else if (status == "success") {
    r.status = TaskStatus::kSuccess;
  } else if (status == "failure") {
    r.status = TaskStatus::kFailure;
  } else if (status == "cancelling") {
    r.status = TaskStatus::kCancelling;
  } else if (status == "cancelled") {
    r.status = TaskStatus::kCancelled;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad XenAPI task record ", ref,
                     ": field status: unknown value '", status, "'"));
  }
  return r;
}

bool IsUuid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-'
             : !absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace vmb
