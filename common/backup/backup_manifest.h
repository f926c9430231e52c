// SPDX-License-Identifier: Apache-2.0
#pragma once

// manifest.json: what a committed backup folder holds, with the size and
// SHA-256 of every data file, so that anyone can check a backup with
// `sha256sum` and vmbackup can tell which VM a folder belongs to.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "proto/common.pb.h"

namespace vmb {

inline constexpr absl::string_view kManifestFileName = "manifest.json";
inline constexpr absl::string_view kManifestFormat = "vmbackup-manifest/1";

// Pretty-printed JSON with the proto's field names; sizes are JSON numbers.
std::string FormatManifest(const v1::BackupManifest& manifest);

// Errors: INVALID_ARGUMENT when `json` is not a manifest.
absl::StatusOr<v1::BackupManifest> ParseManifest(absl::string_view json);

// `s` as a JSON string literal, quotes included; control characters and
// invalid UTF-8 bytes escaped as \u00XX so the output is valid JSON.
std::string JsonQuote(absl::string_view s);

}  // namespace vmb
