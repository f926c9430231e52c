// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/sim_value.h"

#include <stdlib.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <libxml/parser.h>
#include <libxml/tree.h>

namespace vmb::sim {

SimValue SimValue::StrSet(const std::vector<std::string>& v) {
  SimValue x = Set();
  for (const std::string& s : v) x.items.push_back(Str(s));
  return x;
}

void SimValue::RemoveItem(absl::string_view value) {
  items.erase(
      std::remove_if(items.begin(), items.end(),
                     [&](const SimValue& item) { return item.s == value; }),
      items.end());
}

const SimValue* SimValue::Get(absl::string_view key) const {
  for (const auto& [k, v] : map) {
    if (k == key) return &v;
  }
  return nullptr;
}

void SimValue::Put(absl::string_view key, SimValue value) {
  for (auto& [k, v] : map) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  map.emplace_back(std::string(key), std::move(value));
}

bool SimValue::Erase(absl::string_view key) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (it->first == key) {
      map.erase(it);
      return true;
    }
  }
  return false;
}

bool operator==(const SimValue& a, const SimValue& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case SimValue::Kind::kString:
    case SimValue::Kind::kDateTime:
      return a.s == b.s;
    case SimValue::Kind::kInt:
      return a.i == b.i;
    case SimValue::Kind::kBool:
      return a.b == b.b;
    case SimValue::Kind::kFloat:
      return a.f == b.f;
    case SimValue::Kind::kSet:
      return a.items == b.items;
    case SimValue::Kind::kMap:
      return a.map == b.map;
  }
  return false;
}

size_t Utf8SequenceLength(absl::string_view s, uint32_t* code_point) {
  if (s.empty()) return 0;
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = byte(0);
  if (c < 0x80) {
    *code_point = c;
    return 1;
  }
  size_t len;
  uint32_t cp;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;  // a continuation byte, or 0xF8 and above
  }
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *code_point = cp;
  return len;
}

bool IsXapiParameterText(absl::string_view text) {
  while (!text.empty()) {
    uint32_t cp = 0;
    const size_t len = Utf8SequenceLength(text, &cp);
    if (len == 0) return false;
    if (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') return false;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) return false;
    text.remove_prefix(len);
  }
  return true;
}

std::string RpcDebugString(const SimValue& v) {
  switch (v.kind) {
    case SimValue::Kind::kString:
      return absl::StrCat("S(", v.s, ")");
    case SimValue::Kind::kDateTime:
      return absl::StrCat("D(", v.s, ")");
    case SimValue::Kind::kInt:
      return absl::StrCat("I(", v.i, ")");
    case SimValue::Kind::kBool:
      return v.b ? "B(true)" : "B(false)";
    case SimValue::Kind::kFloat:
      return absl::StrFormat("F(%g)", v.f);
    case SimValue::Kind::kSet: {
      std::string out = "[";
      for (size_t i = 0; i < v.items.size(); ++i)
        absl::StrAppend(&out, i > 0 ? ";" : "", RpcDebugString(v.items[i]));
      return out + "]";
    }
    case SimValue::Kind::kMap: {
      std::string out = "{";
      for (size_t i = 0; i < v.map.size(); ++i) {
        absl::StrAppend(&out, i > 0 ? ";" : "", v.map[i].first, ":",
                        RpcDebugString(v.map[i].second));
      }
      return out + "}";
    }
  }
  return "";
}

void AppendXapiEscaped(absl::string_view text, std::string* out) {
  for (size_t at = 0; at < text.size(); ++at) {
    const char ch = text[at];
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      uint32_t cp = 0;
      const size_t len = Utf8SequenceLength(text.substr(at), &cp);
      if (len == 0) {
        *out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is not UTF-8
      } else {
        out->append(text.data() + at, len);
        at += len - 1;
      }
      continue;
    }
    switch (c) {
      case '&':
        *out += "&amp;";
        break;
      case '<':
        *out += "&lt;";
        break;
      case '>':
        *out += "&gt;";
        break;
      case '"':
        *out += "&quot;";
        break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') break;
        out->push_back(ch);
    }
  }
}

void AppendXapiValue(const SimValue& v, std::string* out) {
  switch (v.kind) {
    case SimValue::Kind::kString:
      if (v.s.empty()) {
        *out += "<value/>";
      } else {
        *out += "<value>";
        AppendXapiEscaped(v.s, out);
        *out += "</value>";
      }
      return;
    case SimValue::Kind::kInt:
      absl::StrAppend(out, "<value>", v.i, "</value>");
      return;
    case SimValue::Kind::kBool:
      absl::StrAppend(out, "<value><boolean>", v.b ? "1" : "0",
                      "</boolean></value>");
      return;
    case SimValue::Kind::kFloat:
      absl::StrAppend(out, "<value><double>", absl::StrFormat("%.16g", v.f),
                      "</double></value>");
      return;
    case SimValue::Kind::kDateTime:
      absl::StrAppend(out, "<value><dateTime.iso8601>", v.s,
                      "</dateTime.iso8601></value>");
      return;
    case SimValue::Kind::kSet:
      if (v.items.empty()) {
        *out += "<value><array><data/></array></value>";
        return;
      }
      *out += "<value><array><data>";
      for (const SimValue& item : v.items) AppendXapiValue(item, out);
      *out += "</data></array></value>";
      return;
    case SimValue::Kind::kMap:
      if (v.map.empty()) {
        *out += "<value><struct/></value>";
        return;
      }
      *out += "<value><struct>";
      for (const auto& [k, item] : v.map) {
        *out += "<member><name>";
        AppendXapiEscaped(k, out);
        *out += "</name>";
        AppendXapiValue(item, out);
        *out += "</member>";
      }
      *out += "</struct></value>";
      return;
  }
}

std::string XapiValue(const SimValue& v) {
  std::string out;
  AppendXapiValue(v, &out);
  return out;
}

std::string XapiSuccess(const SimValue& value) {
  std::string out =
      "<methodResponse><params><param><value><struct><member><name>Status</"
      "name><value>"
      "Success</value></member><member><name>Value</name>";
  AppendXapiValue(value, &out);
  out += "</member></struct></value></param></params></methodResponse>";
  return out;
}

std::string XapiFailure(const std::vector<std::string>& error_description) {
  std::string out =
      "<methodResponse><params><param><value><struct><member><name>Status</"
      "name><value>"
      "Failure</value></member><member><name>ErrorDescription</name>";
  AppendXapiValue(SimValue::StrSet(error_description), &out);
  out += "</member></struct></value></param></params></methodResponse>";
  return out;
}

std::string XapiFault(int code, absl::string_view text) {
  std::string out = absl::StrCat(
      "<methodResponse><fault><value><struct><member><name>faultCode</"
      "name><value><i4>",
      code, "</i4></value></member><member><name>faultString</name>");
  AppendXapiValue(SimValue::Str(std::string(text)), &out);
  out += "</member></struct></value></fault></methodResponse>";
  return out;
}

namespace {

bool IsElement(const xmlNode* n, const char* name) {
  return n != nullptr && n->type == XML_ELEMENT_NODE &&
         xmlStrcmp(n->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

std::string Text(const xmlNode* n) {
  std::string out;
  for (const xmlNode* c = n->children; c != nullptr; c = c->next) {
    if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
      out += reinterpret_cast<const char*>(c->content);
    }
  }
  return out;
}

// The element children of `n`; non-blank text between them is an error.
absl::StatusOr<std::vector<const xmlNode*>> Elements(const xmlNode* n) {
  std::vector<const xmlNode*> out;
  for (const xmlNode* c = n->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) {
      out.push_back(c);
    } else if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
      std::string t = reinterpret_cast<const char*>(c->content);
      if (!absl::StripAsciiWhitespace(t).empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected text in <",
                         reinterpret_cast<const char*>(n->name), ">"));
      }
    } else if (c->type != XML_COMMENT_NODE && c->type != XML_PI_NODE) {
      return absl::InvalidArgumentError("unexpected XML node");
    }
  }
  return out;
}

absl::StatusOr<SimValue> ParseValue(const xmlNode* value, int depth) {
  if (depth > 32) return absl::InvalidArgumentError("values nested too deeply");
  auto children = Elements(value);
  if (!children.ok()) {
    // Untyped string (mixed text is only allowed when no element is present).
    for (const xmlNode* c = value->children; c != nullptr; c = c->next) {
      if (c->type == XML_ELEMENT_NODE) return children.status();
    }
    return SimValue::Str(Text(value));
  }
  if (children->empty()) return SimValue::Str(Text(value));
  if (children->size() != 1)
    return absl::InvalidArgumentError("<value> with several children");
  const xmlNode* t = (*children)[0];
  std::string name = reinterpret_cast<const char*>(t->name);
  std::string text = Text(t);
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (name == "string") return SimValue::Str(text);
  if (name == "int" || name == "i4" || name == "i8") {
    int64_t n;
    if (!absl::SimpleAtoi(trimmed, &n))
      return absl::InvalidArgumentError("bad int");
    return SimValue::Int(n);
  }
  if (name == "boolean") {
    if (trimmed == "1") return SimValue::Bool(true);
    if (trimmed == "0") return SimValue::Bool(false);
    return absl::InvalidArgumentError("bad boolean");
  }
  if (name == "double") {
    double d;
    if (!absl::SimpleAtod(trimmed, &d))
      return absl::InvalidArgumentError("bad double");
    return SimValue::Float(d);
  }
  if (name == "dateTime.iso8601") return SimValue::Time(std::string(trimmed));
  if (name == "base64") {
    std::string out;
    if (!absl::Base64Unescape(trimmed, &out))
      return absl::InvalidArgumentError("bad base64");
    return SimValue::Str(out);
  }
  if (name == "nil") return SimValue::Str("");
  if (name == "array") {
    auto data = Elements(t);
    if (!data.ok()) return data.status();
    SimValue set = SimValue::Set();
    if (data->empty()) return set;
    if (data->size() != 1 || !IsElement((*data)[0], "data")) {
      return absl::InvalidArgumentError("<array> without <data>");
    }
    auto values = Elements((*data)[0]);
    if (!values.ok()) return values.status();
    for (const xmlNode* v : *values) {
      if (!IsElement(v, "value"))
        return absl::InvalidArgumentError("<data> child not <value>");
      auto item = ParseValue(v, depth + 1);
      if (!item.ok()) return item.status();
      set.items.push_back(*std::move(item));
    }
    return set;
  }
  if (name == "struct") {
    auto members = Elements(t);
    if (!members.ok()) return members.status();
    SimValue map = SimValue::Map();
    for (const xmlNode* m : *members) {
      if (!IsElement(m, "member"))
        return absl::InvalidArgumentError("<struct> child not <member>");
      auto parts = Elements(m);
      if (!parts.ok()) return parts.status();
      if (parts->size() != 2 || !IsElement((*parts)[0], "name") ||
          !IsElement((*parts)[1], "value")) {
        return absl::InvalidArgumentError("bad <member>");
      }
      auto item = ParseValue((*parts)[1], depth + 1);
      if (!item.ok()) return item.status();
      map.map.emplace_back(Text((*parts)[0]), *std::move(item));
    }
    return map;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown type <", name, ">"));
}

struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

}  // namespace

absl::StatusOr<SimCall> ParseSimCall(absl::string_view xml) {
  if (xml.size() > (64u << 20))
    return absl::InvalidArgumentError("request too large");
  std::unique_ptr<xmlDoc, DocDeleter> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), nullptr, nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (doc == nullptr) return absl::InvalidArgumentError(kXmlParseError);
  if (doc->intSubset != nullptr)
    return absl::InvalidArgumentError("DTD not allowed");
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!IsElement(root, "methodCall"))
    return absl::InvalidArgumentError("not a methodCall");
  auto parts = Elements(root);
  if (!parts.ok()) return parts.status();
  SimCall call;
  const xmlNode* params = nullptr;
  for (const xmlNode* p : *parts) {
    if (IsElement(p, "methodName")) {
      call.method = std::string(absl::StripAsciiWhitespace(Text(p)));
    } else if (IsElement(p, "params")) {
      params = p;
    } else {
      return absl::InvalidArgumentError("unexpected element in methodCall");
    }
  }
  if (call.method.empty()) return absl::InvalidArgumentError("no methodName");
  if (params != nullptr) {
    auto list = Elements(params);
    if (!list.ok()) return list.status();
    for (const xmlNode* p : *list) {
      if (!IsElement(p, "param"))
        return absl::InvalidArgumentError("<params> child not <param>");
      auto inner = Elements(p);
      if (!inner.ok()) return inner.status();
      if (inner->size() != 1 || !IsElement((*inner)[0], "value")) {
        return absl::InvalidArgumentError("<param> without <value>");
      }
      auto v = ParseValue((*inner)[0], 0);
      if (!v.ok()) return v.status();
      call.params.push_back(*std::move(v));
    }
  }
  return call;
}

}  // namespace vmb::sim
