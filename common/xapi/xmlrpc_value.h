// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace vmb {

// One XML-RPC value: a scalar, an array or a struct. XAPI sends strings, refs,
// enums and int64 values as untyped `<value>text</value>`, so on the client
// side most scalars arrive as kString; typed accessors in the record layer
// convert them. Struct members keep their wire order; names may repeat.
//
// A plain value type: copyable, movable, not thread-safe for mutation.
class XmlRpcValue {
 public:
  enum class Type {
    kNil,       // <nil/>, and the value of a void result
    kString,    // <string> or untyped text
    kInt,       // <int>, <i4>, <i8>
    kBool,      // <boolean>
    kDouble,    // <double>
    kDateTime,  // <dateTime.iso8601>, text kept as sent
    kBase64,    // <base64>, decoded bytes
    kArray,
    kStruct,
  };
  using Array = std::vector<XmlRpcValue>;

  XmlRpcValue() = default;  // kNil

  static XmlRpcValue Nil() { return XmlRpcValue(); }
  static XmlRpcValue String(std::string text);
  static XmlRpcValue Int(int64_t value);
  static XmlRpcValue Bool(bool value);
  static XmlRpcValue Double(double value);
  static XmlRpcValue DateTime(std::string iso8601);
  static XmlRpcValue Base64(std::string bytes);
  static XmlRpcValue MakeArray(Array items = {});
  static XmlRpcValue MakeStruct();

  Type type() const { return type_; }
  bool is_nil() const { return type_ == Type::kNil; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_double() const { return type_ == Type::kDouble; }
  bool is_datetime() const { return type_ == Type::kDateTime; }
  bool is_base64() const { return type_ == Type::kBase64; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_struct() const { return type_ == Type::kStruct; }

  // Scalar accessors. Calling one for another type is a programmer error
  // (checked). text() serves kString, kDateTime and kBase64.
  const std::string& text() const;
  int64_t int_value() const;
  bool bool_value() const;
  double double_value() const;

  // Array items, or struct member values (in wire order).
  const std::vector<XmlRpcValue>& items() const { return items_; }
  std::vector<XmlRpcValue>& mutable_items() { return items_; }
  // Struct member names, parallel to items().
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return items_.size(); }

  // Appends to an array.
  void Append(XmlRpcValue item);
  // Appends a struct member (no check for duplicates; XML-RPC allows them).
  void AddMember(std::string name, XmlRpcValue value);
  // The first struct member called `name`, or nullptr (also for non-structs).
  const XmlRpcValue* Find(absl::string_view name) const;

  friend bool operator==(const XmlRpcValue& a, const XmlRpcValue& b);
  friend bool operator!=(const XmlRpcValue& a, const XmlRpcValue& b) {
    return !(a == b);
  }

  // A compact human-readable rendering for test failures and error messages.
  std::string DebugString() const;

  static absl::string_view TypeName(Type type);

 private:
  Type type_ = Type::kNil;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string text_;
  std::vector<XmlRpcValue> items_;
  std::vector<std::string> names_;
};

}  // namespace vmb
