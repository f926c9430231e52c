// SPDX-License-Identifier: Apache-2.0
#include "common/backup/backup_manifest.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <google/protobuf/util/json_util.h>

#include "common/base/utf8.h"

namespace vmb {
namespace {

void AppendField(std::string& out, int indent, absl::string_view name,
                 const std::string& value, bool last) {
  absl::StrAppend(&out, std::string(indent, ' '), JsonQuote(name), ": ", value,
                  last ? "\n" : ",\n");
}

}  // namespace

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  while (!s.empty()) {
    const unsigned char c = static_cast<unsigned char>(s[0]);
    const size_t n = Utf8SequenceLength(s);
    if (n == 0) {
      // Not UTF-8: keep the byte's value visible, as a Latin-1 code point.
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
      s.remove_prefix(1);
      continue;
    }
    if (n > 1) {
      out.append(s.data(), n);
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out.push_back(static_cast<char>(c));
    }
    s.remove_prefix(n);
  }
  out += "\"";
  return out;
}

std::string FormatManifest(const v1::BackupManifest& m) {
  std::string out = "{\n";
  const auto str = [&](absl::string_view name, const std::string& value) {
    AppendField(out, 2, name, JsonQuote(value), false);
  };
  str("format", m.format());
  str("vmbackup_version", m.vmbackup_version());
  str("run_id", m.run_id());
  str("job_id", m.job_id());
  str("vm_uuid", m.vm_uuid());
  str("vm_name", m.vm_name());
  str("kind", m.kind());
  str("source_host", m.source_host());
  str("source_host_uuid", m.source_host_uuid());
  str("xapi_version", m.xapi_version());
  str("started", m.started());
  str("finished", m.finished());
  str("compression", m.compression());
  if (!m.vdi_format().empty()) str("vdi_format", m.vdi_format());
  str("snapshot_uuid", m.snapshot_uuid());
  out += "  \"disks\": [";
  for (int i = 0; i < m.disks_size(); ++i) {
    const v1::ManifestDisk& d = m.disks(i);
    out += i == 0 ? "\n    {\n" : ",\n    {\n";
    AppendField(out, 6, "device", JsonQuote(d.device()), false);
    AppendField(out, 6, "userdevice", JsonQuote(d.userdevice()), false);
    AppendField(out, 6, "vdi_uuid", JsonQuote(d.vdi_uuid()), false);
    AppendField(out, 6, "name_label", JsonQuote(d.name_label()), false);
    const bool has_file = !d.file().empty();
    AppendField(out, 6, "virtual_size", absl::StrCat(d.virtual_size()),
                !has_file);
    if (has_file) AppendField(out, 6, "file", JsonQuote(d.file()), true);
    out += "    }";
  }
  out += m.disks_size() > 0 ? "\n  ],\n" : "],\n";
  out += "  \"files\": [";
  for (int i = 0; i < m.files_size(); ++i) {
    const v1::ManifestFile& f = m.files(i);
    out += i == 0 ? "\n    {\n" : ",\n    {\n";
    AppendField(out, 6, "name", JsonQuote(f.name()), false);
    AppendField(out, 6, "size", absl::StrCat(f.size()), false);
    AppendField(out, 6, "sha256", JsonQuote(f.sha256()), true);
    out += "    }";
  }
  out += m.files_size() > 0 ? "\n  ]\n" : "]\n";
  out += "}\n";
  return out;
}

absl::StatusOr<v1::BackupManifest> ParseManifest(absl::string_view json) {
  v1::BackupManifest manifest;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      std::string(json), &manifest, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a manifest: ", status.ToString()));
  }
  if (manifest.format() != kManifestFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a manifest: format is \"", manifest.format(), "\""));
  }
  return manifest;
}

}  // namespace vmb
