// SPDX-License-Identifier: Apache-2.0
#pragma once

// clang-format off
// status.log, in VmBackup.py's format, so that the checks admins built on it
// (NRPE, grep in cron mail) keep working:
//
//   2026/11/26 03:00:01,vmbackup.py,xcp-host1,begin
//   2026/11/26 03:00:02,vm-export,xcp-host2,begin,PROD-web
//   2026/11/26 03:04:10,vm-export,xcp-host2,end,SUCCESS PROD-web,elapse:4 size:12G
//   2026/11/26 03:05:00,vm-export,xcp-host3,end,VM-EXPORT-FAIL DEV-db,VDI_IO_ERROR
//   2026/11/26 03:05:01,vmbackup.py,xcp-host1,end,ERROR,S:1 W:0 E:1
// clang-format on
//
// Differences from the seed, all additive: a VM's lines name the host that
// exported it (the seed's was always the one host it ran on); a failure line
// carries the reason (the XAPI error code, or the error) as a last field;
// elapse counts every minute (the seed's wrapped after a day). VM names are
// escaped (control characters as \xNN) so that no name can forge a line.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/base/filesystem.h"

namespace vmb::coordinator {

// "2026/11/26 03:00:01,<fields joined by ','>".
std::string FormatStatusLogLine(absl::CivilSecond local,
                                absl::string_view fields);

// Appends lines, each with one write(2) on a file opened O_APPEND, so that
// lines from concurrent jobs never interleave. Thread-safe. `fs` and `clock`
// must outlive it. With an empty path it writes nothing (the seed's
// vm-selector mode).
class StatusLog {
 public:
  StatusLog(Filesystem* fs, Clock* clock, absl::TimeZone zone, std::string path,
            std::string server);

  absl::Status RunBegin();
  absl::Status RunEnd(absl::string_view result, int succeeded, int warnings,
                      int errors);
  // `kind` is "vm-export" or "vdi-export"; `host` the exporting host.
  absl::Status JobBegin(absl::string_view kind, absl::string_view host,
                        absl::string_view vm_name);
  // `outcome`: "SUCCESS <vm>,elapse:N size:NG", "<TOKEN> <vm>[,reason]", ...
  // as built by the caller with the helpers below.
  absl::Status JobEnd(absl::string_view kind, absl::string_view host,
                      absl::string_view outcome);

  // "SUCCESS <vm>,elapse:<min> size:<GiB>G" (or WARNING).
  static std::string Completed(bool warning, absl::string_view vm_name,
                               absl::Duration elapsed, uint64_t bytes);
  // "<TOKEN> <vm>[,<reason>]".
  static std::string Failed(absl::string_view token, absl::string_view vm_name,
                            absl::string_view reason);

 private:
  absl::Status Append(absl::string_view fields);

  Filesystem* const fs_;
  Clock* const clock_;
  const absl::TimeZone zone_;
  const std::string path_;
  const std::string server_;
  absl::Mutex mu_;
};

// A name as it may stand in a status.log line: CR, LF and the other control
// bytes as \xNN; everything else (commas too, as the seed wrote them) as is.
std::string StatusLogName(absl::string_view name);

}  // namespace vmb::coordinator
