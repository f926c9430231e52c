// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xmlrpc_codec.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "common/base/status_macros.h"

namespace vmb {
namespace {

// ---- encoding --------------------------------------------------------------

void AppendEscaped(absl::string_view text, std::string* out) {
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
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
      case '\r':
        *out += "&#13;";  // a raw CR would be normalised to LF by the reader
        break;
      default:
        // XML 1.0 cannot carry other C0 controls, even escaped; XAPI drops
        // them too.
        if (c < 0x20 && c != '\t' && c != '\n') break;
        out->push_back(ch);
    }
  }
}

void AppendValue(const XmlRpcValue& v, std::string* out) {
  *out += "<value>";
  switch (v.type()) {
    case XmlRpcValue::Type::kNil:
      *out += "<nil/>";
      break;
    case XmlRpcValue::Type::kString:
      *out += "<string>";
      AppendEscaped(v.text(), out);
      *out += "</string>";
      break;
    case XmlRpcValue::Type::kInt:
      if (v.int_value() >= INT32_MIN && v.int_value() <= INT32_MAX) {
        absl::StrAppend(out, "<int>", v.int_value(), "</int>");
      } else {
        absl::StrAppend(out, "<i8>", v.int_value(), "</i8>");
      }
      break;
    case XmlRpcValue::Type::kBool:
      absl::StrAppend(out, "<boolean>", v.bool_value() ? "1" : "0",
                      "</boolean>");
      break;
    case XmlRpcValue::Type::kDouble:
      absl::StrAppend(out, "<double>",
                      absl::StrFormat("%.17g", v.double_value()), "</double>");
      break;
    case XmlRpcValue::Type::kDateTime:
      *out += "<dateTime.iso8601>";
      AppendEscaped(v.text(), out);
      *out += "</dateTime.iso8601>";
      break;
    case XmlRpcValue::Type::kBase64:
      absl::StrAppend(out, "<base64>", absl::Base64Escape(v.text()),
                      "</base64>");
      break;
    case XmlRpcValue::Type::kArray:
      *out += "<array><data>";
      for (const XmlRpcValue& item : v.items()) AppendValue(item, out);
      *out += "</data></array>";
      break;
    case XmlRpcValue::Type::kStruct:
      *out += "<struct>";
      for (size_t i = 0; i < v.size(); ++i) {
        *out += "<member><name>";
        AppendEscaped(v.names()[i], out);
        *out += "</name>";
        AppendValue(v.items()[i], out);
        *out += "</member>";
      }
      *out += "</struct>";
      break;
  }
  *out += "</value>";
}

// ---- decoding --------------------------------------------------------------

void IgnoreGenericError(void*, const char*, ...) {}

xmlParserInputPtr NoExternalEntities(const char*, const char*,
                                     xmlParserCtxtPtr) {
  return nullptr;
}

bool IsBlank(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// A pull parser over libxml2's xmlTextReader that yields only the node kinds
// XML-RPC uses and refuses everything that could make the parser reach out
// (DTDs, entities).
class Parser {
 public:
  Parser(absl::string_view xml, const XmlRpcDecodeLimits& limits)
      : limits_(limits) {
    if (xml.size() <= limits.max_bytes &&
        xml.size() <= static_cast<size_t>(INT_MAX)) {
      reader_ = xmlReaderForMemory(xml.data(), static_cast<int>(xml.size()),
                                   nullptr, nullptr, XML_PARSE_NONET);
      if (reader_ != nullptr) {
        xmlTextReaderSetStructuredErrorHandler(reader_, &Parser::OnError, this);
      }
    }
    too_big_ = xml.size() > limits.max_bytes ||
               xml.size() > static_cast<size_t>(INT_MAX);
  }
  ~Parser() {
    if (reader_ != nullptr) xmlFreeTextReader(reader_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Moves to the root element and checks its name.
  absl::Status ExpectRoot(absl::string_view name) {
    if (too_big_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "XML-RPC document too large (limit ", limits_.max_bytes, " bytes)"));
    }
    if (reader_ == nullptr)
      return absl::InvalidArgumentError("cannot create XML reader");
    VMB_RETURN_IF_ERROR(NextSignificant());
    return ExpectStart(name);
  }

  // After the root element ended: nothing but comments and blanks may follow.
  absl::Status ExpectEnd() {
    while (true) {
      VMB_ASSIGN_OR_RETURN(bool more, Read());
      if (!more) return absl::OkStatus();
      if (IsText() && IsBlank(Value())) continue;
      return Error("content after the document element");
    }
  }

  absl::Status NextSignificant() {
    while (true) {
      VMB_ASSIGN_OR_RETURN(bool more, Read());
      if (!more) return Error("unexpected end of document");
      if (IsText()) {
        if (IsBlank(Value())) continue;
        return Error(absl::StrCat("unexpected text '", Shorten(Value()), "'"));
      }
      return absl::OkStatus();
    }
  }

  absl::Status ExpectStart(absl::string_view name) {
    if (type_ != XML_READER_TYPE_ELEMENT || Name() != name) {
      return Error(absl::StrCat("expected <", name, ">, found ", Describe()));
    }
    return absl::OkStatus();
  }

  // At a start element that is not empty: consumes the matching end element
  // next (blanks allowed in between).
  absl::Status ExpectEndOf(absl::string_view name) {
    VMB_RETURN_IF_ERROR(NextSignificant());
    if (type_ != XML_READER_TYPE_END_ELEMENT || Name() != name) {
      return Error(absl::StrCat("expected </", name, ">, found ", Describe()));
    }
    return absl::OkStatus();
  }

  // The current node is <value>. Consumes through </value>.
  absl::StatusOr<XmlRpcValue> ParseValue(int depth) {
    if (depth > limits_.max_depth) {
      return Error(
          absl::StrCat("values nested deeper than ", limits_.max_depth));
    }
    if (IsEmptyElement()) return XmlRpcValue::String("");
    std::string text;
    while (true) {
      VMB_ASSIGN_OR_RETURN(bool more, Read());
      if (!more) return Error("unexpected end of document inside <value>");
      if (IsText()) {
        absl::StrAppend(&text, Value());
        continue;
      }
      if (type_ == XML_READER_TYPE_END_ELEMENT)
        return XmlRpcValue::String(std::move(text));
      // An element: a typed value.
      if (!IsBlank(text))
        return Error("<value> mixes text and a typed element");
      VMB_ASSIGN_OR_RETURN(XmlRpcValue typed, ParseTyped(depth));
      VMB_RETURN_IF_ERROR(ExpectEndOf("value"));
      return typed;
    }
  }

  absl::Status Error(absl::string_view what) {
    int line =
        reader_ != nullptr ? xmlTextReaderGetParserLineNumber(reader_) : 0;
    return absl::InvalidArgumentError(
        absl::StrCat("malformed XML-RPC at line ", line, ": ", what));
  }

  absl::string_view Name() const { return name_; }
  bool AtEndOf(absl::string_view name) const {
    return type_ == XML_READER_TYPE_END_ELEMENT && name_ == name;
  }
  bool AtEmptyElement() const { return IsEmptyElement(); }
  // The text of the current scalar element (see ReadScalarText).
  absl::StatusOr<std::string> ReadText() { return ReadScalarText(); }

 private:
  static void OnError(void* arg, xmlErrorPtr error) {
    auto* self = static_cast<Parser*>(arg);
    if (!self->first_error_.empty() || error == nullptr) return;
    std::string message =
        error->message != nullptr ? error->message : "parse error";
    absl::StripTrailingAsciiWhitespace(&message);
    self->first_error_ =
        absl::StrCat("malformed XML-RPC at line ", error->line, ": ", message);
  }

  // Reads the next node, skipping comments and processing instructions.
  // Returns false at the end of the document.
  absl::StatusOr<bool> Read() {
    while (true) {
      int rc = xmlTextReaderRead(reader_);
      if (rc < 0 || !first_error_.empty()) {
        if (!first_error_.empty())
          return absl::InvalidArgumentError(first_error_);
        return Error("XML syntax error");
      }
      if (rc == 0) return false;
      type_ = xmlTextReaderNodeType(reader_);
      switch (type_) {
        case XML_READER_TYPE_COMMENT:
        case XML_READER_TYPE_PROCESSING_INSTRUCTION:
        case XML_READER_TYPE_XML_DECLARATION:
          continue;
        case XML_READER_TYPE_DOCUMENT_TYPE:
          return Error("DTDs are not allowed");
        case XML_READER_TYPE_ENTITY_REFERENCE:
        case XML_READER_TYPE_ENTITY:
        case XML_READER_TYPE_END_ENTITY:
          return Error("entity references are not allowed");
        case XML_READER_TYPE_ELEMENT:
        case XML_READER_TYPE_END_ELEMENT: {
          const xmlChar* n = xmlTextReaderConstName(reader_);
          name_ = n != nullptr ? reinterpret_cast<const char*>(n) : "";
          return true;
        }
        case XML_READER_TYPE_TEXT:
        case XML_READER_TYPE_CDATA:
        case XML_READER_TYPE_WHITESPACE:
        case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
          name_.clear();
          return true;
        default:
          return Error(absl::StrCat("unexpected XML node type ", type_));
      }
    }
  }

  bool IsText() const {
    return type_ == XML_READER_TYPE_TEXT || type_ == XML_READER_TYPE_CDATA ||
           type_ == XML_READER_TYPE_WHITESPACE ||
           type_ == XML_READER_TYPE_SIGNIFICANT_WHITESPACE;
  }

  bool IsEmptyElement() const {
    return xmlTextReaderIsEmptyElement(reader_) == 1;
  }

  absl::string_view Value() const {
    const xmlChar* v = xmlTextReaderConstValue(reader_);
    return v != nullptr ? absl::string_view(reinterpret_cast<const char*>(v))
                        : "";
  }

  std::string Describe() const {
    switch (type_) {
      case XML_READER_TYPE_ELEMENT:
        return absl::StrCat("<", name_, ">");
      case XML_READER_TYPE_END_ELEMENT:
        return absl::StrCat("</", name_, ">");
      default:
        return "text";
    }
  }

  static std::string Shorten(absl::string_view s) {
    std::string out(s.substr(0, 40));
    if (s.size() > 40) out += "...";
    return absl::CHexEscape(out);
  }

  // The current node is a scalar element; returns its text and consumes its
  // end element. Child elements are an error.
  absl::StatusOr<std::string> ReadScalarText() {
    std::string tag = name_;
    if (IsEmptyElement()) return std::string();
    std::string text;
    while (true) {
      VMB_ASSIGN_OR_RETURN(bool more, Read());
      if (!more)
        return Error(
            absl::StrCat("unexpected end of document inside <", tag, ">"));
      if (IsText()) {
        absl::StrAppend(&text, Value());
        continue;
      }
      if (type_ == XML_READER_TYPE_END_ELEMENT) return text;
      return Error(
          absl::StrCat("unexpected element <", name_, "> inside <", tag, ">"));
    }
  }

  absl::StatusOr<XmlRpcValue> ParseTyped(int depth) {
    const std::string tag = name_;
    if (tag == "array") return ParseArray(depth);
    if (tag == "struct") return ParseStruct(depth);
    if (tag == "nil") {
      VMB_ASSIGN_OR_RETURN(std::string text, ReadScalarText());
      if (!IsBlank(text)) return Error("<nil> must be empty");
      return XmlRpcValue::Nil();
    }
    VMB_ASSIGN_OR_RETURN(std::string text, ReadScalarText());
    if (tag == "string") return XmlRpcValue::String(std::move(text));
    if (tag == "int" || tag == "i4" || tag == "i8") {
      int64_t n;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &n)) {
        return Error(
            absl::StrCat("bad integer '", Shorten(text), "' in <", tag, ">"));
      }
      if (tag == "i4" && (n < INT32_MIN || n > INT32_MAX)) {
        return Error(absl::StrCat("integer ", n, " out of range for <i4>"));
      }
      return XmlRpcValue::Int(n);
    }
    if (tag == "boolean") {
      absl::string_view t = absl::StripAsciiWhitespace(text);
      if (t == "1") return XmlRpcValue::Bool(true);
      if (t == "0") return XmlRpcValue::Bool(false);
      return Error(absl::StrCat("bad boolean '", Shorten(text), "'"));
    }
    if (tag == "double") {
      std::string t(absl::StripAsciiWhitespace(text));
      char* end = nullptr;
      errno = 0;
      double d = strtod(t.c_str(), &end);
      if (t.empty() || end != t.c_str() + t.size()) {
        return Error(absl::StrCat("bad double '", Shorten(text), "'"));
      }
      return XmlRpcValue::Double(d);
    }
    if (tag == "dateTime.iso8601") {
      return XmlRpcValue::DateTime(
          std::string(absl::StripAsciiWhitespace(text)));
    }
    if (tag == "base64") {
      std::string compact;
      for (char c : text) {
        if (!absl::ascii_isspace(static_cast<unsigned char>(c)))
          compact.push_back(c);
      }
      std::string bytes;
      if (!absl::Base64Unescape(compact, &bytes)) return Error("bad base64");
      return XmlRpcValue::Base64(std::move(bytes));
    }
    return Error(absl::StrCat("unknown value type <", tag, ">"));
  }

  absl::StatusOr<XmlRpcValue> ParseArray(int depth) {
    XmlRpcValue array = XmlRpcValue::MakeArray();
    if (IsEmptyElement()) return array;
    VMB_RETURN_IF_ERROR(NextSignificant());
    if (type_ == XML_READER_TYPE_END_ELEMENT && name_ == "array") return array;
    VMB_RETURN_IF_ERROR(ExpectStart("data"));
    if (!IsEmptyElement()) {
      while (true) {
        VMB_RETURN_IF_ERROR(NextSignificant());
        if (type_ == XML_READER_TYPE_END_ELEMENT && name_ == "data") break;
        VMB_RETURN_IF_ERROR(ExpectStart("value"));
        VMB_ASSIGN_OR_RETURN(XmlRpcValue item, ParseValue(depth + 1));
        array.Append(std::move(item));
      }
    }
    VMB_RETURN_IF_ERROR(ExpectEndOf("array"));
    return array;
  }

  absl::StatusOr<XmlRpcValue> ParseStruct(int depth) {
    XmlRpcValue record = XmlRpcValue::MakeStruct();
    if (IsEmptyElement()) return record;
    while (true) {
      VMB_RETURN_IF_ERROR(NextSignificant());
      if (type_ == XML_READER_TYPE_END_ELEMENT && name_ == "struct")
        return record;
      VMB_RETURN_IF_ERROR(ExpectStart("member"));
      if (IsEmptyElement()) return Error("empty <member>");
      VMB_RETURN_IF_ERROR(NextSignificant());
      VMB_RETURN_IF_ERROR(ExpectStart("name"));
      VMB_ASSIGN_OR_RETURN(std::string name, ReadScalarText());
      VMB_RETURN_IF_ERROR(NextSignificant());
      VMB_RETURN_IF_ERROR(ExpectStart("value"));
      VMB_ASSIGN_OR_RETURN(XmlRpcValue value, ParseValue(depth + 1));
      VMB_RETURN_IF_ERROR(ExpectEndOf("member"));
      record.AddMember(std::move(name), std::move(value));
    }
  }

  const XmlRpcDecodeLimits limits_;
  xmlTextReaderPtr reader_ = nullptr;
  bool too_big_ = false;
  int type_ = XML_READER_TYPE_NONE;
  std::string name_;
  std::string first_error_;
};

// Parses `<params><param><value>…</value></param></params>` with exactly one
// param, or an empty <params/> (a void result); the current node is <params>.
absl::StatusOr<XmlRpcValue> ParseSingleParam(Parser& p) {
  // The caller checked <params>; an empty <params/> is not valid for XAPI.
  VMB_RETURN_IF_ERROR(p.NextSignificant());
  VMB_RETURN_IF_ERROR(p.ExpectStart("param"));
  VMB_RETURN_IF_ERROR(p.NextSignificant());
  VMB_RETURN_IF_ERROR(p.ExpectStart("value"));
  VMB_ASSIGN_OR_RETURN(XmlRpcValue value, p.ParseValue(1));
  VMB_RETURN_IF_ERROR(p.ExpectEndOf("param"));
  VMB_RETURN_IF_ERROR(p.ExpectEndOf("params"));
  return value;
}

}  // namespace

void InitXmlRpcCodec() {
  static std::once_flag once;
  std::call_once(once, [] {
    xmlInitParser();
    xmlSetExternalEntityLoader(&NoExternalEntities);
    xmlSetGenericErrorFunc(nullptr, &IgnoreGenericError);
  });
}

std::string EncodeXmlRpcValue(const XmlRpcValue& value) {
  std::string out;
  AppendValue(value, &out);
  return out;
}

std::string EncodeMethodCall(absl::string_view method,
                             absl::Span<const XmlRpcValue> params) {
  std::string out = "<?xml version=\"1.0\"?>\n<methodCall><methodName>";
  AppendEscaped(method, &out);
  out += "</methodName><params>";
  for (const XmlRpcValue& p : params) {
    out += "<param>";
    AppendValue(p, &out);
    out += "</param>";
  }
  out += "</params></methodCall>\n";
  return out;
}

std::string EncodeMethodResponse(const XmlRpcValue& value) {
  std::string out = "<methodResponse><params><param>";
  AppendValue(value, &out);
  out += "</param></params></methodResponse>";
  return out;
}

absl::StatusOr<XmlRpcValue> DecodeMethodResponse(
    absl::string_view xml, const XmlRpcDecodeLimits& limits) {
  InitXmlRpcCodec();
  Parser p(xml, limits);
  VMB_RETURN_IF_ERROR(p.ExpectRoot("methodResponse"));
  VMB_RETURN_IF_ERROR(p.NextSignificant());
  if (p.Name() == "fault") {
    VMB_RETURN_IF_ERROR(p.NextSignificant());
    VMB_RETURN_IF_ERROR(p.ExpectStart("value"));
    VMB_ASSIGN_OR_RETURN(XmlRpcValue fault, p.ParseValue(1));
    VMB_RETURN_IF_ERROR(p.ExpectEndOf("fault"));
    VMB_RETURN_IF_ERROR(p.ExpectEndOf("methodResponse"));
    VMB_RETURN_IF_ERROR(p.ExpectEnd());
    const XmlRpcValue* code = fault.Find("faultCode");
    const XmlRpcValue* text = fault.Find("faultString");
    return absl::InternalError(absl::StrCat(
        "XML-RPC fault ", code != nullptr ? code->DebugString() : "?", ": ",
        text != nullptr && text->is_string() ? text->text()
                                             : fault.DebugString()));
  }
  VMB_RETURN_IF_ERROR(p.ExpectStart("params"));
  VMB_ASSIGN_OR_RETURN(XmlRpcValue value, ParseSingleParam(p));
  VMB_RETURN_IF_ERROR(p.ExpectEndOf("methodResponse"));
  VMB_RETURN_IF_ERROR(p.ExpectEnd());
  return value;
}

absl::StatusOr<XmlRpcValue> DecodeXmlRpcValue(
    absl::string_view xml, const XmlRpcDecodeLimits& limits) {
  InitXmlRpcCodec();
  Parser p(xml, limits);
  VMB_RETURN_IF_ERROR(p.ExpectRoot("value"));
  VMB_ASSIGN_OR_RETURN(XmlRpcValue value, p.ParseValue(1));
  VMB_RETURN_IF_ERROR(p.ExpectEnd());
  return value;
}

absl::StatusOr<XmlRpcMethodCall> DecodeMethodCall(
    absl::string_view xml, const XmlRpcDecodeLimits& limits) {
  InitXmlRpcCodec();
  Parser p(xml, limits);
  VMB_RETURN_IF_ERROR(p.ExpectRoot("methodCall"));
  VMB_RETURN_IF_ERROR(p.NextSignificant());
  VMB_RETURN_IF_ERROR(p.ExpectStart("methodName"));
  XmlRpcMethodCall call;
  VMB_ASSIGN_OR_RETURN(std::string method, p.ReadText());
  call.method = std::string(absl::StripAsciiWhitespace(method));
  if (call.method.empty()) return p.Error("empty <methodName>");
  VMB_RETURN_IF_ERROR(p.NextSignificant());
  if (p.AtEndOf("methodCall")) return call;
  VMB_RETURN_IF_ERROR(p.ExpectStart("params"));
  if (!p.AtEmptyElement()) {
    while (true) {
      VMB_RETURN_IF_ERROR(p.NextSignificant());
      if (p.AtEndOf("params")) break;
      VMB_RETURN_IF_ERROR(p.ExpectStart("param"));
      VMB_RETURN_IF_ERROR(p.NextSignificant());
      VMB_RETURN_IF_ERROR(p.ExpectStart("value"));
      VMB_ASSIGN_OR_RETURN(XmlRpcValue value, p.ParseValue(1));
      call.params.push_back(std::move(value));
      VMB_RETURN_IF_ERROR(p.ExpectEndOf("param"));
    }
  }
  VMB_RETURN_IF_ERROR(p.ExpectEndOf("methodCall"));
  VMB_RETURN_IF_ERROR(p.ExpectEnd());
  return call;
}

}  // namespace vmb
