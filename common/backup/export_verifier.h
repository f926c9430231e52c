// SPDX-License-Identifier: Apache-2.0
#pragma once

// Verification of an export stream as it is written: the end of an HTTP body
// is not success, so every byte XAPI sends is checked on the way to the file,
// holding only a few KiB (plus ova.xml) whatever the VM's size.
//
//   XVA (/export): tar framing and header checksums, ova.xml first and
//   parseable, every chunk's inline checksum (.xxhash = XXH64, or the older
//   .checksum = SHA-1), chunk numbering per disk covering each disk's
//   virtual_size exactly (tolerating XAPI's keep-alive chunks), the two zero
//   blocks at the end, nothing after them. gzip and zstd streams are
//   decompressed on the fly and the tar inside is checked.
//   Raw (/export_raw_vdi?format=raw): exactly virtual_size bytes.
//   VHD (format=vhd): footer, dynamic header and BAT checksums, sizes, the
//   allocated blocks in BAT order, and the closing footer.
//
// Not thread-safe: one verifier per stream.

#include <stdint.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

#include "proto/common.pb.h"

namespace vmb {

class ExportVerifier {
 public:
  virtual ~ExportVerifier() = default;

  // Feeds the next bytes of the stream, as received. Errors: DATA_LOSS as
  // soon as the stream is known to be bad, naming the stream offset and what
  // is wrong (for a compressed stream, the offset in the decompressed tar).
  virtual absl::Status Update(absl::string_view data) = 0;

  // The stream ended. Errors: DATA_LOSS when it is incomplete.
  virtual absl::Status Finish() = 0;

  // Disk bytes the stream has covered so far, and in all (0 until known):
  // for progress against the total virtual size.
  virtual uint64_t covered() const = 0;
  virtual uint64_t total() const = 0;
  // After a Finish() without error, for a verifier made with
  // content_digests: the SHA-256 (lower-case hex) of each disk's whole
  // content, zeros where the stream skipped: for an XVA by the userdevice
  // of the disk's VBD in ova.xml (by the VDI's uuid when no VBD names it);
  // raw and VHD: one disk, key "". A VHD whose blocks are not in disk
  // order gives none (they cannot be hashed as they stream). Else empty.
  virtual std::map<std::string, std::string> ContentSha256() const {
    return {};
  }
};

// A disk the job exports, as the stream must carry it.
struct ExpectedDisk {
  std::string vdi_uuid;  // of the VDI exported (the snapshot's)
  uint64_t virtual_size = 0;
  std::string name;  // for messages: the VBD's device, e.g. "xvdb"
};

// `compression` is what the stream was asked for (use_compression).
// `disks`: the disks the export must carry. Each must be a VDI of ova.xml
// (matched by uuid) of that virtual size, and its chunks must cover it
// whole; a missing or short one is DATA_LOSS. Other VDIs of ova.xml (CD
// images, which XAPI exports without data) may come without chunks.
std::unique_ptr<ExportVerifier> NewXvaVerifier(v1::Compression compression,
                                               std::vector<ExpectedDisk> disks,
                                               bool content_digests = false);
std::unique_ptr<ExportVerifier> NewRawVerifier(uint64_t virtual_size,
                                               bool content_digests = false);
std::unique_ptr<ExportVerifier> NewVhdVerifier(uint64_t virtual_size,
                                               bool content_digests = false);

}  // namespace vmb
