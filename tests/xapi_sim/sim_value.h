// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulator's own value type and its own XML-RPC writer and reader. They
// share no code with the client's codec (common/xapi/xmlrpc_codec.h), so that a
// misunderstanding of the wire format cannot hide on both sides at once.

#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vmb::sim {

// A value as the XAPI datamodel types it. Refs, uuids and enums are kString;
// maps keep insertion order (XAPI's own maps are association lists).
struct SimValue {
  enum class Kind { kString, kInt, kBool, kFloat, kDateTime, kSet, kMap };

  Kind kind = Kind::kString;
  std::string s;                                      // kString, kDateTime
  int64_t i = 0;                                      // kInt
  bool b = false;                                     // kBool
  double f = 0;                                       // kFloat
  std::vector<SimValue> items;                        // kSet
  std::vector<std::pair<std::string, SimValue>> map;  // kMap

  static SimValue Str(std::string v) {
    SimValue x;
    x.s = std::move(v);
    return x;
  }
  static SimValue Int(int64_t v) {
    SimValue x;
    x.kind = Kind::kInt;
    x.i = v;
    return x;
  }
  static SimValue Bool(bool v) {
    SimValue x;
    x.kind = Kind::kBool;
    x.b = v;
    return x;
  }
  static SimValue Float(double v) {
    SimValue x;
    x.kind = Kind::kFloat;
    x.f = v;
    return x;
  }
  static SimValue Time(std::string v) {
    SimValue x;
    x.kind = Kind::kDateTime;
    x.s = std::move(v);
    return x;
  }
  static SimValue Set(std::vector<SimValue> v = {}) {
    SimValue x;
    x.kind = Kind::kSet;
    x.items = std::move(v);
    return x;
  }
  static SimValue Map() {
    SimValue x;
    x.kind = Kind::kMap;
    return x;
  }
  static SimValue StrSet(const std::vector<std::string>& v);

  // Removes every item equal to the string `value` (kSet only).
  void RemoveItem(absl::string_view value);

  // Map helpers (kMap only).
  const SimValue* Get(absl::string_view key) const;
  void Put(absl::string_view key, SimValue value);  // replaces an existing key
  bool Erase(absl::string_view key);

  friend bool operator==(const SimValue& a, const SimValue& b);
};

// XAPI's own rendering of `v` as `<value>…</value>`: strings, refs, enums and
// int64 values untyped, `<value/>` for "", booleans as 0/1, doubles with
// %.16g, empty sets `<array><data/></array>`, empty maps `<struct/>`.
void AppendXapiValue(const SimValue& v, std::string* out);
std::string XapiValue(const SimValue& v);

// XML escaping as XAPI does it: & < > " escaped, control characters other
// than TAB/LF/CR dropped. Unlike XAPI, which copies any byte, a byte
// sequence that is not valid UTF-8 is written as U+FFFD, so that the reply
// is well-formed XML whatever a caller sent.
void AppendXapiEscaped(absl::string_view text, std::string* out);

// The length (1 to 4) of the valid UTF-8 sequence at the start of `s`, or 0
// when `s` is empty or starts with a byte sequence that is not valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
// Sets *code_point to the decoded value when it returns non-zero.
size_t Utf8SequenceLength(absl::string_view s, uint32_t* code_point);

// Whether XAPI accepts `text` in a call parameter (the check of
// Encodings.UTF8_XML that the generated dispatcher applies to every
// parameter): valid UTF-8, no Unicode non-character (U+FDD0 to U+FDEF,
// U+xFFFE, U+xFFFF) and no control character other than TAB, LF and CR.
bool IsXapiParameterText(absl::string_view text);

// ocaml-rpc's Rpc.to_string of a value, the text XAPI quotes when it refuses
// a parameter: S(text), I(42), B(true), F(%g), D(time), [a;b], {k:v;...}.
std::string RpcDebugString(const SimValue& v);

// `<methodResponse>` envelopes, with no XML declaration, on one line.
std::string XapiSuccess(const SimValue& value);
std::string XapiFailure(const std::vector<std::string>& error_description);

// An XML-RPC <fault> as hosts before XenServer 6.5 wrote it (xml-light,
// faultCode as <i4>, faultString untyped).
std::string XapiFault(int code, absl::string_view text);

// A request as the simulator parsed it. Typed XML-RPC scalars map as:
// string/untyped -> kString, int/i4/i8 -> kInt, boolean -> kBool,
// double -> kFloat, dateTime -> kDateTime, base64 -> kString (decoded),
// array -> kSet, struct -> kMap, nil -> kString "".
struct SimCall {
  std::string method;
  std::vector<SimValue> params;
};

// The reason ParseSimCall gives for a body that is not XML at all.
inline constexpr absl::string_view kXmlParseError = "Xml parse error";

// Parses a `<methodCall>`. Errors (INVALID_ARGUMENT) carry a short reason;
// documents with a DTD are refused.
absl::StatusOr<SimCall> ParseSimCall(absl::string_view xml);

}  // namespace vmb::sim
