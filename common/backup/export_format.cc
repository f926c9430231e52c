// SPDX-License-Identifier: Apache-2.0
#include "common/backup/export_format.h"

namespace vmb {

absl::string_view ExportKindName(v1::ExportKind kind) {
  switch (kind) {
    case v1::EXPORT_KIND_VM:
      return "vm-export";
    case v1::EXPORT_KIND_VDI:
      return "vdi-export";
    default:
      return "";
  }
}

absl::string_view CompressionName(v1::Compression compression) {
  switch (compression) {
    case v1::COMPRESSION_GZIP:
      return "gzip";
    case v1::COMPRESSION_ZSTD:
      return "zstd";
    default:
      return "none";
  }
}

absl::string_view VdiFormatName(v1::VdiFormat format) {
  return format == v1::VDI_FORMAT_VHD ? "vhd" : "raw";
}

absl::string_view XvaExtension(v1::Compression compression) {
  switch (compression) {
    case v1::COMPRESSION_GZIP:
      return ".xva.gz";
    case v1::COMPRESSION_ZSTD:
      return ".xva.zst";
    default:
      return ".xva";
  }
}

absl::string_view UseCompressionParam(v1::Compression compression) {
  switch (compression) {
    case v1::COMPRESSION_GZIP:
      return "true";
    case v1::COMPRESSION_ZSTD:
      return "zstd";
    default:
      return "";
  }
}

}  // namespace vmb
