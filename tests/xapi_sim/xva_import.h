// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulator's reader for XVA uploads (PUT /import), fed the body as it
// arrives, so an import never sits in memory or in a spool file: plain, gzip
// or zstd (told apart by the first bytes, as XAPI does), a tar whose first
// member is ova.xml, then the disks' 1 MiB chunks `Ref:N/NNNNNNNN`, each
// followed by its `.xxhash` or `.checksum`. Chunk data goes straight into
// one sparse file per disk. It shares no code with the client under test.

#include <stdint.h>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/sim_value.h"

namespace vmb::sim {

class XvaImporter {
 public:
  // Disk files are made in `dir`. With `force`, checksum mismatches are
  // ignored (XAPI's force=true).
  XvaImporter(std::string dir, bool force);
  // Removes the disk files that TakeDisks() did not hand out.
  ~XvaImporter();
  XvaImporter(const XvaImporter&) = delete;
  XvaImporter& operator=(const XvaImporter&) = delete;

  // Takes the next bytes of the upload. Errors end the import; the message
  // is what XAPI's IMPORT_ERROR carries here (`checksum mismatch in
  // Ref:16/00000000.xxhash`, `ova.xml is not the first member`,
  // `decompression failed`, ...). No further call may follow an error.
  absl::Status Feed(absl::string_view data);
  // The upload has ended. Errors: a truncated archive (`truncated tar
  // member`, ...) or one without ova.xml.
  absl::Status Finish();

  // After Finish(): the objects of ova.xml by id, as (class, record).
  const std::map<std::string, std::pair<std::string, const SimValue*>>&
  objects() const {
    return objects_;
  }
  // After Finish(): a disk for every VDI object, by id, holding the chunks
  // sent for it (zeros elsewhere) and sized to the object's virtual_size.
  // Their files then belong to the disks. Errors: INTERNAL (a file could not
  // be made).
  absl::StatusOr<std::map<std::string, std::shared_ptr<DiskImage>>> TakeDisks();

 private:
  enum class Codec { kUnknown, kPlain, kGzip, kZstd };
  enum class State { kHeader, kData, kPadding, kEnd };
  enum class Member { kOva, kChunk, kChecksum, kSkip };
  struct DiskFile {
    std::string path;
    int fd = -1;
  };

  void StartCodec(absl::string_view first_bytes);
  absl::Status Decode(absl::string_view data);
  absl::Status Tar(absl::string_view data);
  absl::Status StartMember();
  absl::Status MemberData(absl::string_view data);
  absl::Status EndMember();
  absl::StatusOr<DiskFile*> FileFor(const std::string& id);

  const std::string dir_;
  const bool force_;
  Codec codec_ = Codec::kUnknown;
  std::string sniff_;  // the first bytes, until the codec is known
  struct Inflater;
  std::unique_ptr<Inflater> gzip_;
  struct ZstdReader;
  std::unique_ptr<ZstdReader> zstd_;
  std::string out_;  // decompressed bytes, one piece at a time

  State state_ = State::kHeader;
  std::string header_;
  uint64_t left_ = 0;     // bytes left of the member's data or padding
  uint64_t padding_ = 0;  // padding after the member's data
  Member member_ = Member::kSkip;
  std::string name_;
  std::string text_;  // the data of ova.xml or of a checksum member
  bool seen_ova_ = false;

  // The data chunk being read, and the digests of the last one.
  DiskFile* chunk_file_ = nullptr;
  uint64_t chunk_offset_ = 0;
  uint64_t chunk_pos_ = 0;
  struct Digests;
  std::unique_ptr<Digests> digests_;
  std::string last_xxhash_;
  std::string last_sha1_;
  // Where XAPI's importer puts the next chunk (tolerating keep-alive chunks).
  std::string prev_id_;
  uint64_t prev_offset_ = 0;
  uint64_t prev_len_ = 0;
  int64_t prev_number_ = -1;

  std::map<std::string, DiskFile> files_;  // by disk id
  SimValue ova_;
  std::map<std::string, std::pair<std::string, const SimValue*>> objects_;
};

}  // namespace vmb::sim
