// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/sim_json.h"

#include <charconv>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vmb::sim {
namespace {

// A parsed JSON value, before it becomes a SimValue: the envelope needs to
// tell null, integers and floats apart.
struct Node {
  enum class Type { kNull, kBool, kInt, kFloat, kString, kArray, kObject };
  Type type = Type::kNull;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<Node> items;        // kArray; kObject: the member values
  std::vector<std::string> keys;  // kObject: the member names, in order

  // The first member called `key` (OCaml's List.assoc), or nullptr.
  const Node* Find(absl::string_view key) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &items[i];
    }
    return nullptr;
  }
};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A recursive-descent reader with a depth bound, so hostile nesting ends in
// an error rather than a stack overflow.
class Reader {
 public:
  Reader(absl::string_view text, JsonDialect dialect)
      : text_(text), legacy_(dialect == JsonDialect::kLegacy) {}

  absl::StatusOr<Node> Document() {
    SkipSpace();
    if (pos_ == text_.size()) return Error("blank input");
    Node root;
    if (absl::Status s = Value(&root, 0); !s.ok()) return s;
    // ocaml-rpc's own parser stops at the end of the first value; yojson
    // refuses anything after it.
    if (!legacy_) {
      SkipSpace();
      if (pos_ != text_.size()) return Error("junk after the JSON value");
    }
    return root;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON parse error: ", what, " at byte ", pos_));
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipSpace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' ||
                        Peek() == '\r')) {
      ++pos_;
    }
  }

  absl::Status Literal(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      return Error("unexpected character");
    pos_ += word.size();
    return absl::OkStatus();
  }

  absl::Status Value(Node* out, int depth) {
    SkipSpace();
    if (AtEnd()) return Error("unexpected end of input");
    switch (Peek()) {
      case '{':
      case '[':
        if (depth + 1 > kMaxJsonDepth) return Error("nested too deeply");
        return Peek() == '{' ? Object(out, depth + 1) : Array(out, depth + 1);
      case '"':
        out->type = Node::Type::kString;
        return String(&out->s);
      case 't':
        out->type = Node::Type::kBool;
        out->b = true;
        return Literal("true");
      case 'f':
        out->type = Node::Type::kBool;
        out->b = false;
        return Literal("false");
      case 'n':
        out->type = Node::Type::kNull;
        return Literal("null");
      default:
        if (Peek() == '-' || absl::ascii_isdigit(Peek())) return Number(out);
        return Error("unexpected character");
    }
  }

  absl::Status Array(Node* out, int depth) {
    out->type = Node::Type::kArray;
    ++pos_;  // [
    SkipSpace();
    if (!AtEnd() && Peek() == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      Node item;
      if (absl::Status s = Value(&item, depth); !s.ok()) return s;
      out->items.push_back(std::move(item));
      SkipSpace();
      if (AtEnd()) return Error("unterminated array");
      if (Peek() == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      if (Peek() != ',') return Error("expected ',' or ']'");
      ++pos_;
    }
  }

  absl::Status Object(Node* out, int depth) {
    out->type = Node::Type::kObject;
    ++pos_;  // {
    SkipSpace();
    if (!AtEnd() && Peek() == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      SkipSpace();
      if (AtEnd() || Peek() != '"') return Error("expected a member name");
      std::string key;
      if (absl::Status s = String(&key); !s.ok()) return s;
      SkipSpace();
      if (AtEnd() || Peek() != ':') return Error("expected ':'");
      ++pos_;
      Node value;
      if (absl::Status s = Value(&value, depth); !s.ok()) return s;
      out->keys.push_back(std::move(key));
      out->items.push_back(std::move(value));
      SkipSpace();
      if (AtEnd()) return Error("unterminated object");
      if (Peek() == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      if (Peek() != ',') return Error("expected ',' or '}'");
      ++pos_;
    }
  }

  // Four hex digits at pos_, consumed.
  absl::StatusOr<uint32_t> Hex4() {
    if (text_.size() - pos_ < 4) return Error("bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = HexDigit(text_[pos_ + static_cast<size_t>(k)]);
      if (d < 0) return Error("bad \\u escape");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    pos_ += 4;
    return v;
  }

  absl::Status String(std::string* out) {
    ++pos_;  // "
    while (true) {
      const size_t run = pos_;
      while (!AtEnd() && Peek() != '"' && Peek() != '\\') {
        const char c = Peek();
        if (legacy_ &&
            (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')) {
          return Error("control character in a string");
        }
        ++pos_;
      }
      out->append(text_.data() + run, pos_ - run);
      if (AtEnd()) return Error("unterminated string");
      if (Peek() == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      ++pos_;  // backslash
      if (AtEnd()) return Error("unterminated string");
      const char e = Peek();
      ++pos_;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          const size_t digits = pos_;
          absl::StatusOr<uint32_t> cp = Hex4();
          if (!cp.ok()) return cp.status();
          if (legacy_) {
            // ocaml-rpc's own parser left \u escapes undecoded.
            absl::StrAppend(out, "\\u", text_.substr(digits, 4));
            break;
          }
          if (*cp >= 0xDC00 && *cp <= 0xDFFF)
            return Error("lone low surrogate");
          if (*cp >= 0xD800 && *cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u")
              return Error("high surrogate without a low one");
            pos_ += 2;
            absl::StatusOr<uint32_t> low = Hex4();
            if (!low.ok()) return low.status();
            if (*low < 0xDC00 || *low > 0xDFFF)
              return Error("high surrogate without a low one");
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
          }
          AppendUtf8(*cp, out);
          break;
        }
        default:
          return Error("bad escape");
      }
    }
  }

  absl::Status Number(Node* out) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (!AtEnd() && absl::ascii_isdigit(Peek())) ++pos_;
      return pos_ > from;
    };
    if (Peek() == '-') ++pos_;
    if (AtEnd()) return Error("bad number");
    if (Peek() == '0') {
      ++pos_;
    } else if (!digits()) {
      return Error("bad number");
    }
    bool integral = true;
    if (!AtEnd() && Peek() == '.') {
      ++pos_;
      integral = false;
      if (!digits()) return Error("bad number");
    }
    if (!AtEnd() && (Peek() == 'e' || Peek() == 'E')) {
      ++pos_;
      integral = false;
      if (!AtEnd() && (Peek() == '+' || Peek() == '-')) ++pos_;
      if (!digits()) return Error("bad number");
    }
    const absl::string_view literal = text_.substr(start, pos_ - start);
    if (integral) {
      out->type = Node::Type::kInt;
      // XAPI: Int64.of_string, which fails beyond the int64 range.
      if (!absl::SimpleAtoi(literal, &out->i))
        return Error("integer out of the int64 range");
      return absl::OkStatus();
    }
    out->type = Node::Type::kFloat;
    const auto [end, ec] = std::from_chars(
        literal.data(), literal.data() + literal.size(), out->f);
    if (ec != std::errc() || end != literal.data() + literal.size() ||
        !std::isfinite(out->f)) {
      return Error("number out of the double range");
    }
    return absl::OkStatus();
  }

  absl::string_view text_;
  bool legacy_;
  size_t pos_ = 0;
};

SimValue ToSimValue(const Node& n) {
  switch (n.type) {
    case Node::Type::kNull:
      return SimValue::Str("");
    case Node::Type::kBool:
      return SimValue::Bool(n.b);
    case Node::Type::kInt:
      return SimValue::Int(n.i);
    case Node::Type::kFloat:
      return SimValue::Float(n.f);
    case Node::Type::kString:
      return SimValue::Str(n.s);
    case Node::Type::kArray: {
      SimValue set = SimValue::Set();
      for (const Node& item : n.items) set.items.push_back(ToSimValue(item));
      return set;
    }
    case Node::Type::kObject: {
      SimValue map = SimValue::Map();
      for (size_t i = 0; i < n.keys.size(); ++i)
        map.map.emplace_back(n.keys[i], ToSimValue(n.items[i]));
      return map;
    }
  }
  return SimValue();
}

absl::Status Malformed(absl::string_view reason) {
  return absl::InvalidArgumentError(reason);
}

void AppendJsonString(absl::string_view s, JsonDialect dialect,
                      std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool legacy = dialect == JsonDialect::kLegacy;
  out->push_back('"');
  for (size_t at = 0; at < s.size(); ++at) {
    const unsigned char c = static_cast<unsigned char>(s[at]);
    if (c >= 0x80) {
      uint32_t cp = 0;
      const size_t len = Utf8SequenceLength(s.substr(at), &cp);
      if (len == 0) {
        *out += "\\ufffd";
      } else {
        out->append(s.data() + at, len);
        at += len - 1;
      }
      continue;
    }
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '/':
        *out += legacy ? "\\/" : "/";
        break;
      default:
        // yojson escapes the other control characters and DEL. ocaml-rpc's
        // own printer copied them raw, which is not JSON: escaped here too.
        if (c < 0x20 || (c == 0x7F && !legacy)) {
          *out += "\\u00";
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

std::string YojsonFloat(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  std::string s = absl::StrFormat("%.16g", f);
  double back = 0;
  if (!absl::SimpleAtod(s, &back) || back != f) s = absl::StrFormat("%.17g", f);
  if (s.find_first_not_of("0123456789-") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

absl::StatusOr<JsonRpcRequest> ParseJsonRpcRequest(absl::string_view body,
                                                   JsonDialect dialect) {
  Reader reader(body, dialect);
  absl::StatusOr<Node> root = reader.Document();
  if (!root.ok()) return root.status();
  // The checks and their order are those of ocaml-rpc's
  // Jsonrpc.version_id_and_call_of_string.
  if (root->type != Node::Type::kObject)
    return Malformed("Invalid request body");
  JsonRpcRequest request;
  const Node* method = root->Find("method");
  if (method == nullptr) return Malformed("Required field method is missing");
  if (method->type != Node::Type::kString)
    return Malformed("Invalid field 'method' in request body");
  request.call.method = method->s;
  const Node* version = root->Find("jsonrpc");
  if (version != nullptr) {
    if (version->type != Node::Type::kString || version->s != "2.0")
      return Malformed("Invalid field 'jsonrpc' in request body");
    request.version = JsonRpcVersion::kV2;
  }
  const Node* params = root->Find("params");
  const bool params_optional =
      request.version == JsonRpcVersion::kV2 && dialect == JsonDialect::kYojson;
  if (params == nullptr && !params_optional)
    return Malformed("Required field params is missing");
  if (params == nullptr || params->type == Node::Type::kNull) {
    if (!params_optional)
      return Malformed("Invalid field 'params' in request body");
  } else if (params->type == Node::Type::kArray) {
    for (const Node& p : params->items)
      request.call.params.push_back(ToSimValue(p));
  } else if (params->type == Node::Type::kObject &&
             request.version == JsonRpcVersion::kV2) {
    request.call.params.push_back(ToSimValue(*params));
  } else {
    return Malformed("Invalid field 'params' in request body");
  }
  const Node* id = root->Find("id");
  if (id != nullptr && id->type == Node::Type::kInt) {
    request.id = SimValue::Int(id->i);
  } else if (id != nullptr && id->type == Node::Type::kString &&
             dialect == JsonDialect::kYojson) {
    request.id = SimValue::Str(id->s);
  } else {
    // Absent or null is a notification, which XAPI does not take.
    return Malformed("Invalid field 'id' in request body");
  }
  return request;
}

void AppendJson(const SimValue& v, JsonDialect dialect, std::string* out) {
  const bool legacy = dialect == JsonDialect::kLegacy;
  switch (v.kind) {
    case SimValue::Kind::kString:
    case SimValue::Kind::kDateTime:
      AppendJsonString(v.s, dialect, out);
      return;
    case SimValue::Kind::kInt:
      absl::StrAppend(out, v.i);
      return;
    case SimValue::Kind::kBool:
      *out += v.b ? "true" : "false";
      return;
    case SimValue::Kind::kFloat:
      *out += legacy ? absl::StrFormat("%f", v.f) : YojsonFloat(v.f);
      return;
    case SimValue::Kind::kSet:
      out->push_back('[');
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i > 0) *out += legacy ? ", " : ",";
        AppendJson(v.items[i], dialect, out);
      }
      out->push_back(']');
      return;
    case SimValue::Kind::kMap:
      out->push_back('{');
      for (size_t i = 0; i < v.map.size(); ++i) {
        if (i > 0) *out += legacy ? ", " : ",";
        AppendJsonString(v.map[i].first, dialect, out);
        *out += legacy ? ": " : ":";
        AppendJson(v.map[i].second, dialect, out);
      }
      out->push_back('}');
      return;
  }
}

std::string JsonText(const SimValue& v, JsonDialect dialect) {
  std::string out;
  AppendJson(v, dialect, &out);
  return out;
}

std::string JsonRpcResponse(JsonDialect dialect, JsonRpcVersion version,
                            const SimValue& id, bool success,
                            const SimValue& contents) {
  const bool legacy = dialect == JsonDialect::kLegacy;
  const absl::string_view colon = legacy ? ": " : ":";
  const absl::string_view comma = legacy ? ", " : ",";
  std::string out = "{";
  if (version == JsonRpcVersion::kV2) {
    absl::StrAppend(&out, "\"jsonrpc\"", colon, "\"2.0\"", comma,
                    success ? "\"result\"" : "\"error\"", colon);
    AppendJson(contents, dialect, &out);
  } else if (success) {
    absl::StrAppend(&out, "\"result\"", colon);
    AppendJson(contents, dialect, &out);
    absl::StrAppend(&out, comma, "\"error\"", colon, "null");
  } else {
    absl::StrAppend(&out, "\"result\"", colon, "null", comma, "\"error\"",
                    colon);
    AppendJson(contents, dialect, &out);
  }
  absl::StrAppend(&out, comma, "\"id\"", colon);
  AppendJson(id, dialect, &out);
  out.push_back('}');
  return out;
}

SimValue JsonRpcErrorObject(int64_t code,
                            const std::vector<std::string>& error) {
  SimValue object = SimValue::Map();
  object.Put("code", SimValue::Int(code));
  object.Put("message", SimValue::Str(error.empty() ? "" : error[0]));
  SimValue data = SimValue::Set();
  for (size_t i = 1; i < error.size(); ++i)
    data.items.push_back(SimValue::Str(error[i]));
  object.Put("data", std::move(data));
  return object;
}

}  // namespace vmb::sim
