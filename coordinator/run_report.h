// SPDX-License-Identifier: Apache-2.0
#pragma once

// The e-mail report of one run (docs/config.md, "The e-mail report"): the
// seed's subject, so mail filters keep matching, and a body about this run
// only (the seed mailed its whole status.log).
//
//   Subject: <Success|WARNING|ERROR> <pool name> VmBackup.py
//   Body:    the summary line; a table of the VMs (failed ones first when
//            there were errors): result, host, size, duration, MiB/s, the
//            error token and reason; warnings; the pool DB dump; the hosts
//            whose agent was missing; certificates about to expire.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

#include "common/base/clock.h"
#include "coordinator/backup_policy.h"
#include "coordinator/backup_run.h"
#include "coordinator/mailer.h"
#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

struct ReportContext {
  std::string pool_name;     // the subject's name (the seed: its host's)
  std::string default_from;  // when mail_from is not set: root@<host>
  std::vector<std::string> extra_warnings;  // e.g. certificates expiring
  absl::TimeZone time_zone = absl::UTCTimeZone();
};

// The report's level: the run's exit code, raised to 1 (WARNING) or 2
// (ERROR) by what verify_after_run found in older backups. It sets the
// subject's word and what mail_when sees; never the run's own result.
int ReportLevel(const v1::RunSummary& run);

// Whether `when` wants a report for a run that ended with `exit_code`
// (0 success, 1 warnings, 2 errors).
bool WantsReport(MailWhen when, int exit_code);

// The message (a text part and an HTML part with the same table).
MailMessage BuildRunReport(const BackupPolicy& policy,
                           const v1::RunSummary& run,
                           const ReportContext& context);

// The summary of a run made in one process (the standalone form), for its
// report: what RunManager keeps for a coordinator's run.
v1::RunSummary SummaryOfResult(const BackupRunResult& result,
                               const BackupPolicy& policy, absl::Time started,
                               absl::Time finished);

// Sends the report when the policy asks for one (mail_to set, mail_when).
// Returns what happened, for the journal and `vmbackup status`: "" when no
// report was wanted, "sent to a@x, b@y" or "FAILED: not sent after 3
// tries: ...". Never fails the run. `make_sender` (tests) defaults to
// libcurl's SMTP with the policy's settings; the SMTP password is read from
// mail_smtp_password_file (a VmBackup password file, mode 0600).
using SenderFactory = std::function<std::unique_ptr<MailSender>(
    const BackupPolicy& policy, const std::string& password)>;
std::string MailRunReport(const BackupPolicy& policy, const v1::RunSummary& run,
                          const ReportContext& context, Clock* clock,
                          const RetryOptions& retry = RetryOptions(),
                          const SenderFactory& make_sender = nullptr);

}  // namespace vmb::coordinator
