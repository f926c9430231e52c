// SPDX-License-Identifier: Apache-2.0
#include "agent/backup_metadata.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "common/backup/backup_layout.h"

namespace vmb::agent {
namespace {

absl::string_view PyBool(bool b) { return b ? "True" : "False"; }

// A tar header's octal number field (NUL or space terminated).
bool ParseOctal(absl::string_view field, uint64_t* out) {
  field = absl::StripAsciiWhitespace(field.substr(0, field.find('\0')));
  if (field.empty()) return false;
  uint64_t v = 0;
  for (char c : field) {
    if (c < '0' || c > '7') return false;
    if (v > (UINT64_MAX >> 3)) return false;
    v = v * 8 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

// `s` as Python 2's repr() of a str: single quotes unless the text holds a
// single quote and no double quote, with \\, \n, \r, \t and \xNN escapes for
// other bytes outside printable ASCII.
std::string PythonRepr(absl::string_view s) {
  const bool has_single = s.find('\'') != absl::string_view::npos;
  const bool has_double = s.find('"') != absl::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", c));
    } else {
      out.push_back(ch);
    }
  }
  out.push_back(quote);
  return out;
}

// A string map as Python's repr() of a dict, keys sorted: {'a': 'b'}.
std::string PythonDictRepr(const StringMap& map) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : map) {
    if (!first) out += ", ";
    first = false;
    absl::StrAppend(&out, PythonRepr(key), ": ", PythonRepr(value));
  }
  out += "}";
  return out;
}

struct XmlDocDeleter {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};

}  // namespace

std::string FormatVbdCfg(const VbdRecord& vbd) {
  return absl::StrCat("userdevice=", vbd.userdevice, "\n",            //
                      "bootable=", PyBool(vbd.bootable), "\n",        //
                      "mode=", vbd.mode, "\n",                        //
                      "type=", vbd.type, "\n",                        //
                      "unpluggable=", PyBool(vbd.unpluggable), "\n",  //
                      "empty=", PyBool(vbd.empty), "\n",              //
                      "orig_uuid=", vbd.uuid, "\n");
}

std::string FormatVdiCfg(const VdiRecord& vdi, absl::string_view sr_uuid) {
  return absl::StrCat("name_label=", vdi.name_label, "\n",              //
                      "name_description=", vdi.name_description, "\n",  //
                      "virtual_size=", vdi.virtual_size, "\n",          //
                      "type=", vdi.type, "\n",                          //
                      "sharable=", PyBool(vdi.sharable), "\n",          //
                      "read_only=", PyBool(vdi.read_only), "\n",        //
                      "orig_uuid=", vdi.uuid, "\n",                     //
                      "orig_sr_uuid=", sr_uuid, "\n");
}

std::string FormatVifCfg(const VifRecord& vif,
                         absl::string_view network_name_label) {
  return absl::StrCat("device=", vif.device, "\n",                      //
                      "network_name_label=", network_name_label, "\n",  //
                      "MTU=", vif.mtu, "\n",                            //
                      "MAC=", vif.mac, "\n",                            //
                      "other_config=", PythonDictRepr(vif.other_config),
                      "\n",  //
                      "orig_uuid=", vif.uuid, "\n");
}

absl::StatusOr<absl::string_view> ExtractOvaXml(absl::string_view tar) {
  size_t pos = 0;
  while (pos + 512 <= tar.size()) {
    const absl::string_view header = tar.substr(pos, 512);
    if (header.find_first_not_of('\0') == absl::string_view::npos) break;
    absl::string_view name = header.substr(0, 100);
    name = name.substr(0, name.find('\0'));
    uint64_t size = 0;
    if (!ParseOctal(header.substr(124, 12), &size)) {
      return absl::DataLossError(absl::StrCat(
          "the metadata export is not a tar archive (bad header at byte ", pos,
          ")"));
    }
    pos += 512;
    if (size > tar.size() - pos) {
      return absl::DataLossError("the metadata export is truncated");
    }
    if (name == "ova.xml") return tar.substr(pos, size);
    pos += (size + 511) / 512 * 512;
  }
  return absl::DataLossError("the metadata export holds no ova.xml");
}

absl::StatusOr<std::string> PrettyPrintXml(absl::string_view xml) {
  // xmllint --format parses without blank text nodes, then re-indents.
  std::unique_ptr<xmlDoc, XmlDocDeleter> doc(xmlReadMemory(
      xml.data(), static_cast<int>(xml.size()), "ova.xml", nullptr,
      XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
          XML_PARSE_NOWARNING));
  if (doc == nullptr) {
    const xmlError* error = xmlGetLastError();
    return absl::DataLossError(absl::StrCat(
        "ova.xml is not well-formed XML",
        error != nullptr && error->message != nullptr
            ? absl::StrCat(": line ", error->line, ": ",
                           absl::StripTrailingAsciiWhitespace(error->message))
            : ""));
  }
  if (doc->intSubset != nullptr || doc->extSubset != nullptr) {
    return absl::DataLossError("ova.xml has a DTD, which XAPI never writes");
  }
  xmlChar* out = nullptr;
  int size = 0;
  xmlDocDumpFormatMemory(doc.get(), &out, &size, 1);
  if (out == nullptr) return absl::ResourceExhaustedError("out of memory");
  std::string result(reinterpret_cast<const char*>(out),
                     static_cast<size_t>(size));
  xmlFree(out);
  return result;
}

std::string DiskFolderName(const VbdRecord& vbd, int* blank_device_count) {
  if (!vbd.device.empty()) {
    return absl::StrCat("DISK-", SanitizeVmName(vbd.device));
  }
  return absl::StrCat("DISK-", ++*blank_device_count);
}

}  // namespace vmb::agent
