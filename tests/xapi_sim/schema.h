// SPDX-License-Identifier: Apache-2.0
#pragma once

// The record schema the simulator serves: every class's fields, in wire
// order, with types and defaults, as a XenServer 7.2 host sends them
// (schema_xs72.json, derived from real 7.2 records and the XAPI datamodel).

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

#include "tests/xapi_sim/sim_value.h"

namespace vmb::sim {

enum class FieldKind {
  kString,
  kInt,
  kBool,
  kFloat,
  kDateTime,
  kRef,
  kSet,
  kMap
};

struct FieldSchema {
  std::string name;
  std::string type;  // the datamodel's type, e.g. "(string -> string) map"
  FieldKind kind;
  FieldKind value_kind;  // element kind of a set, value kind of a map
  SimValue default_value;
  std::string db_name;  // the pool database's column name (name__label)
};

struct ClassSchema {
  std::string name;
  std::vector<FieldSchema> fields;
  absl::flat_hash_map<std::string, int> index;

  // The field's position, or -1.
  int Find(absl::string_view field) const;
};

// The schema release ("XenServer 7.2.0 (falcon)").
const std::string& SchemaRelease();

// The class called `name` (exact case, as on the wire), or nullptr.
const ClassSchema* FindClass(absl::string_view name);

// Every class, in the order the simulator lists tables.
const std::vector<ClassSchema>& AllClasses();

// The pool-database column name for a field (name_label -> name__label).
std::string DbFieldName(absl::string_view field);

}  // namespace vmb::sim
