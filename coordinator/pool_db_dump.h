// SPDX-License-Identifier: Apache-2.0
#pragma once

// pool_db_backup=1: the pool database (GET /pool/xmldbdump on the master, what
// `xe pool-dump-database` saves) into
// <backup_dir>/METADATA_<master>/pool_db_YYYYMMDD-HHMMSS.dump, written under a
// temporary name (".pool_db_….dump.partial") and renamed once complete and
// checked, then the newest `keep` dumps kept (the seed never pruned them).
// A new METADATA_ folder is made durable (its parent fsynced), and the
// temporary files of crashed runs are removed first, whatever their time.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/tls_pins.h"
#include "common/xapi/xenapi_client.h"

namespace vmb::coordinator {

struct PoolDbDumpOptions {
  std::string backup_dir;
  std::string master_name;  // host name_label of the master: the folder name
  std::string master_url;
  std::vector<HostIdentity> redirect_hosts;
  TlsOptions tls;
  int keep = 4;
  absl::TimeZone time_zone = absl::LocalTimeZone();
};

struct PoolDbDumpResult {
  std::string path;
  uint64_t bytes = 0;
  std::vector<std::string> removed;  // older dumps retention deleted
};

// Errors: those of the transfer, DATA_LOSS when the body is not a whole
// database dump or its task did not succeed, and the filesystem's; nothing
// is left under the final name on error.
absl::StatusOr<PoolDbDumpResult> DumpPoolDatabase(XenApiClient& xapi,
                                                  Filesystem& fs, Clock& clock,
                                                  const PoolDbDumpOptions& o);

}  // namespace vmb::coordinator
