// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the streaming export verifiers (XVA plain, gzip and zstd;
// raw; VHD), fed in pieces. The first byte picks the verifier (low 3 bits)
// and the piece size (the rest); the remaining bytes are the stream. Any
// crash, hang or sanitizer report is a bug; a bad stream must only ever be
// an error.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <memory>

#include "common/backup/export_verifier.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] & 7;
  const size_t piece = 1 + static_cast<size_t>(data[0] >> 3) * 97;
  std::unique_ptr<vmb::ExportVerifier> v;
  switch (mode) {
    case 0:
    case 5:
      v = vmb::NewXvaVerifier(vmb::v1::COMPRESSION_NONE, {});
      break;
    case 1:
      v = vmb::NewXvaVerifier(vmb::v1::COMPRESSION_GZIP, {});
      break;
    case 2:
      v = vmb::NewXvaVerifier(vmb::v1::COMPRESSION_ZSTD, {});
      break;
    case 3:
    case 6:
      v = vmb::NewRawVerifier(size - 1);
      break;
    default:
      v = vmb::NewVhdVerifier(uint64_t{2} << 20);
      break;
  }
  const char* p = reinterpret_cast<const char*>(data) + 1;
  size_t left = size - 1;
  while (left > 0) {
    const size_t n = std::min(left, piece);
    if (!v->Update(absl::string_view(p, n)).ok()) return 0;
    p += n;
    left -= n;
  }
  (void)v->Finish();
  (void)v->covered();
  (void)v->total();
  return 0;
}
