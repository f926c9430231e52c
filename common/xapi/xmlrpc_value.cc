// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xmlrpc_value.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

#include "common/base/logging.h"

namespace vmb {

XmlRpcValue XmlRpcValue::String(std::string text) {
  XmlRpcValue v;
  v.type_ = Type::kString;
  v.text_ = std::move(text);
  return v;
}

XmlRpcValue XmlRpcValue::Int(int64_t value) {
  XmlRpcValue v;
  v.type_ = Type::kInt;
  v.int_ = value;
  return v;
}

XmlRpcValue XmlRpcValue::Bool(bool value) {
  XmlRpcValue v;
  v.type_ = Type::kBool;
  v.bool_ = value;
  return v;
}

XmlRpcValue XmlRpcValue::Double(double value) {
  XmlRpcValue v;
  v.type_ = Type::kDouble;
  v.double_ = value;
  return v;
}

XmlRpcValue XmlRpcValue::DateTime(std::string iso8601) {
  XmlRpcValue v;
  v.type_ = Type::kDateTime;
  v.text_ = std::move(iso8601);
  return v;
}

XmlRpcValue XmlRpcValue::Base64(std::string bytes) {
  XmlRpcValue v;
  v.type_ = Type::kBase64;
  v.text_ = std::move(bytes);
  return v;
}

XmlRpcValue XmlRpcValue::MakeArray(Array items) {
  XmlRpcValue v;
  v.type_ = Type::kArray;
  v.items_ = std::move(items);
  return v;
}

XmlRpcValue XmlRpcValue::MakeStruct() {
  XmlRpcValue v;
  v.type_ = Type::kStruct;
  return v;
}

const std::string& XmlRpcValue::text() const {
  VMB_CHECK(type_ == Type::kString || type_ == Type::kDateTime ||
            type_ == Type::kBase64)
      << TypeName(type_);
  return text_;
}

int64_t XmlRpcValue::int_value() const {
  VMB_CHECK(type_ == Type::kInt) << TypeName(type_);
  return int_;
}

bool XmlRpcValue::bool_value() const {
  VMB_CHECK(type_ == Type::kBool) << TypeName(type_);
  return bool_;
}

double XmlRpcValue::double_value() const {
  VMB_CHECK(type_ == Type::kDouble) << TypeName(type_);
  return double_;
}

void XmlRpcValue::Append(XmlRpcValue item) {
  VMB_CHECK(type_ == Type::kArray) << TypeName(type_);
  items_.push_back(std::move(item));
}

void XmlRpcValue::AddMember(std::string name, XmlRpcValue value) {
  VMB_CHECK(type_ == Type::kStruct) << TypeName(type_);
  names_.push_back(std::move(name));
  items_.push_back(std::move(value));
}

const XmlRpcValue* XmlRpcValue::Find(absl::string_view name) const {
  if (type_ != Type::kStruct) return nullptr;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return &items_[i];
  }
  return nullptr;
}

bool operator==(const XmlRpcValue& a, const XmlRpcValue& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case XmlRpcValue::Type::kNil:
      return true;
    case XmlRpcValue::Type::kString:
    case XmlRpcValue::Type::kDateTime:
    case XmlRpcValue::Type::kBase64:
      return a.text_ == b.text_;
    case XmlRpcValue::Type::kInt:
      return a.int_ == b.int_;
    case XmlRpcValue::Type::kBool:
      return a.bool_ == b.bool_;
    case XmlRpcValue::Type::kDouble:
      // Bitwise-equal doubles, so NaN round-trips compare equal.
      return a.double_ == b.double_ ||
             (a.double_ != a.double_ && b.double_ != b.double_);
    case XmlRpcValue::Type::kArray:
      return a.items_ == b.items_;
    case XmlRpcValue::Type::kStruct:
      return a.names_ == b.names_ && a.items_ == b.items_;
  }
  return false;
}

absl::string_view XmlRpcValue::TypeName(Type type) {
  switch (type) {
    case Type::kNil:
      return "nil";
    case Type::kString:
      return "string";
    case Type::kInt:
      return "int";
    case Type::kBool:
      return "boolean";
    case Type::kDouble:
      return "double";
    case Type::kDateTime:
      return "dateTime.iso8601";
    case Type::kBase64:
      return "base64";
    case Type::kArray:
      return "array";
    case Type::kStruct:
      return "struct";
  }
  return "?";
}

std::string XmlRpcValue::DebugString() const {
  switch (type_) {
    case Type::kNil:
      return "nil";
    case Type::kString:
      return absl::StrCat("\"", absl::CHexEscape(text_), "\"");
    case Type::kInt:
      return absl::StrCat(int_);
    case Type::kBool:
      return bool_ ? "true" : "false";
    case Type::kDouble:
      return absl::StrCat(double_);
    case Type::kDateTime:
      return absl::StrCat("dateTime(", text_, ")");
    case Type::kBase64:
      return absl::StrCat("base64(", text_.size(), " bytes)");
    case Type::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < items_.size(); ++i) {
        if (i > 0) out += ", ";
        out += items_[i].DebugString();
      }
      return out + "]";
    }
    case Type::kStruct: {
      std::string out = "{";
      for (size_t i = 0; i < items_.size(); ++i) {
        if (i > 0) out += ", ";
        absl::StrAppend(&out, names_[i], ": ", items_[i].DebugString());
      }
      return out + "}";
    }
  }
  return "?";
}

}  // namespace vmb
