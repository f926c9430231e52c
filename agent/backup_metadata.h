// SPDX-License-Identifier: Apache-2.0
#pragma once

// The metadata files VmBackup.py writes beside every export, byte for byte in
// its format, so that restore scripts written for it keep working:
//
//   vm-metadata.xml      ova.xml of a metadata-only export, as
//                        `xmllint --format` prints it
//   DISK-<dev>/vbd.cfg   userdevice, bootable, mode, type, unpluggable, empty,
//                        orig_uuid
//   DISK-<dev>/vdi.cfg   name_label, name_description, virtual_size, type,
//                        sharable, read_only, orig_uuid, orig_sr_uuid
//   VIFs/vif-<n>.cfg     device, network_name_label, MTU, MAC, other_config,
//                        orig_uuid
//
// Booleans print as Python printed them (True/False) and other_config as a
// Python dict literal (keys sorted; Python 2 printed them in hash order).

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "common/xapi/xenapi_records.h"

namespace vmb::agent {

std::string FormatVbdCfg(const VbdRecord& vbd);
std::string FormatVdiCfg(const VdiRecord& vdi, absl::string_view sr_uuid);
std::string FormatVifCfg(const VifRecord& vif,
                         absl::string_view network_name_label);

// ova.xml out of the tar stream /export_metadata returns: a view into `tar`.
// Errors: DATA_LOSS when the body is not a tar holding ova.xml.
absl::StatusOr<absl::string_view> ExtractOvaXml(absl::string_view tar);

// `xml` re-indented as `xmllint --format` prints it. Errors: DATA_LOSS when
// it is not well-formed XML. External entities and DTDs are never loaded.
absl::StatusOr<std::string> PrettyPrintXml(absl::string_view xml);

// The folder name of a disk's metadata: "DISK-<device>", or when XAPI has no
// device for it (a VM not started for a long time) "DISK-<n>" with n
// counting such disks from 1, as VmBackup.py did.
std::string DiskFolderName(const VbdRecord& vbd, int* blank_device_count);

}  // namespace vmb::agent
