// SPDX-License-Identifier: Apache-2.0
#pragma once

// The names of the export kinds, compressions and disk formats, as the
// config file, manifest.json, the logs and XAPI's query strings spell them.
// The enums themselves are the wire types of proto/common.proto: the one
// definition the coordinator, the agent and the job spec share.

#include "absl/strings/string_view.h"

#include "proto/common.pb.h"

namespace vmb {

// "vm-export", "vdi-export" (the seed's words); "" when unspecified.
absl::string_view ExportKindName(v1::ExportKind kind);
// "none", "gzip", "zstd".
absl::string_view CompressionName(v1::Compression compression);
// "raw", "vhd"; an unspecified format is raw, as the seed's default.
absl::string_view VdiFormatName(v1::VdiFormat format);

// The data file's extension of a vm-export: ".xva", ".xva.gz", ".xva.zst".
absl::string_view XvaExtension(v1::Compression compression);
// The value of /export's use_compression parameter: "" (none), "true"
// (gzip, as XAPI spells it) or "zstd".
absl::string_view UseCompressionParam(v1::Compression compression);

}  // namespace vmb
