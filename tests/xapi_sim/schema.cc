// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/schema.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <google/protobuf/util/json_util.h>

#include "common/base/logging.h"
#include "tests/xapi_sim/fixture.pb.h"

namespace vmb::sim {

// Generated from schema_xs72.json at build time.
extern const char kSchemaJson[];

namespace {

FieldKind KindOf(absl::string_view type) {
  if (absl::EndsWith(type, ") map")) return FieldKind::kMap;
  if (absl::EndsWith(type, " set")) return FieldKind::kSet;
  if (absl::EndsWith(type, " ref")) return FieldKind::kRef;
  if (type == "int") return FieldKind::kInt;
  if (type == "bool") return FieldKind::kBool;
  if (type == "float") return FieldKind::kFloat;
  if (type == "datetime") return FieldKind::kDateTime;
  return FieldKind::kString;  // string, enum X
}

FieldKind ElementKind(absl::string_view type, FieldKind kind) {
  if (kind == FieldKind::kSet) {
    return KindOf(type.substr(0, type.size() - 4));
  }
  if (kind == FieldKind::kMap) {
    // "(K -> V) map"
    size_t arrow = type.find(" -> ");
    absl::string_view v = type.substr(arrow + 4, type.size() - arrow - 4 - 5);
    return KindOf(v);
  }
  return kind;
}

SimValue Convert(const google::protobuf::Value& v, FieldKind kind,
                 FieldKind element) {
  switch (kind) {
    case FieldKind::kString:
    case FieldKind::kRef:
      return SimValue::Str(v.string_value());
    case FieldKind::kDateTime:
      return SimValue::Time(v.string_value());
    case FieldKind::kInt: {
      int64_t n = 0;
      if (v.kind_case() == google::protobuf::Value::kNumberValue) {
        n = static_cast<int64_t>(v.number_value());
      } else {
        n = std::stoll(v.string_value().empty() ? "0" : v.string_value());
      }
      return SimValue::Int(n);
    }
    case FieldKind::kBool:
      return SimValue::Bool(v.bool_value());
    case FieldKind::kFloat:
      return SimValue::Float(v.number_value());
    case FieldKind::kSet: {
      SimValue set = SimValue::Set();
      for (const auto& item : v.list_value().values()) {
        set.items.push_back(Convert(item, element, element));
      }
      return set;
    }
    case FieldKind::kMap: {
      SimValue map = SimValue::Map();
      // Struct fields are unordered in protobuf; sort for determinism.
      std::vector<std::string> keys;
      for (const auto& [k, unused] : v.struct_value().fields())
        keys.push_back(k);
      std::sort(keys.begin(), keys.end());
      for (const std::string& k : keys) {
        const auto& item = v.struct_value().fields().at(k);
        FieldKind ek = element == FieldKind::kSet ? FieldKind::kSet : element;
        map.map.emplace_back(k, Convert(item, ek, FieldKind::kString));
      }
      return map;
    }
  }
  return SimValue();
}

struct Loaded {
  std::string release;
  std::vector<ClassSchema> classes;
};

const Loaded& Load() {
  static const Loaded* loaded = [] {
    Schema schema;
    auto status =
        google::protobuf::util::JsonStringToMessage(kSchemaJson, &schema);
    VMB_CHECK(status.ok()) << "embedded schema: " << status.ToString();
    auto* out = new Loaded;
    out->release = schema.release();
    for (const Schema::Class& c : schema.classes()) {
      ClassSchema cls;
      cls.name = c.name();
      for (const Schema::Field& f : c.fields()) {
        FieldSchema field;
        field.name = f.name();
        field.type = f.type();
        field.kind = KindOf(f.type());
        field.value_kind = ElementKind(f.type(), field.kind);
        field.default_value =
            Convert(f.default_value(), field.kind, field.value_kind);
        field.db_name = DbFieldName(f.name());
        cls.index[field.name] = static_cast<int>(cls.fields.size());
        cls.fields.push_back(std::move(field));
      }
      out->classes.push_back(std::move(cls));
    }
    return out;
  }();
  return *loaded;
}

}  // namespace

int ClassSchema::Find(absl::string_view field) const {
  auto it = index.find(field);
  return it == index.end() ? -1 : it->second;
}

const std::string& SchemaRelease() { return Load().release; }

const ClassSchema* FindClass(absl::string_view name) {
  for (const ClassSchema& c : Load().classes) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const std::vector<ClassSchema>& AllClasses() { return Load().classes; }

std::string DbFieldName(absl::string_view field) {
  // Datamodel namespaces are stored with a double underscore.
  static constexpr absl::string_view kNamespaces[] = {
      "name_",    "qos_",    "HVM_",         "PV_", "VCPUs_",
      "actions_", "memory_", "API_version_", "io_"};
  for (absl::string_view ns : kNamespaces) {
    if (absl::StartsWith(field, ns) && field.size() > ns.size()) {
      return absl::StrCat(ns, "_", field.substr(ns.size()));
    }
  }
  return std::string(field);
}

}  // namespace vmb::sim
