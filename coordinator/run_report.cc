// SPDX-License-Identifier: Apache-2.0
#include "coordinator/run_report.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "coordinator/password_file.h"
#include "coordinator/run_watch_view.h"

namespace vmb::coordinator {
namespace {

bool Failed(const v1::VmOutcome& vm) {
  return vm.status().phase() == v1::JOB_PHASE_FAILED;
}

std::string Result(const v1::VmOutcome& vm) {
  switch (vm.status().phase()) {
    case v1::JOB_PHASE_SUCCEEDED:
      return vm.status().warnings_size() > 0 ? "warning" : "ok";
    case v1::JOB_PHASE_FAILED:
      return "FAILED";
    case v1::JOB_PHASE_CANCELLED:
      return "cancelled";
    default:
      return "not run";
  }
}

absl::Duration Took(const v1::JobStatus& s) {
  if (s.started_unix_ms() == 0 || s.finished_unix_ms() < s.started_unix_ms())
    return absl::ZeroDuration();
  return absl::Milliseconds(s.finished_unix_ms() - s.started_unix_ms());
}

std::string Rate(const v1::JobStatus& s, absl::Duration took) {
  const double seconds = absl::ToDoubleSeconds(took);
  if (s.backup_bytes() == 0 || seconds <= 0) return "-";
  return absl::StrFormat("%.1f", static_cast<double>(s.backup_bytes()) /
                                     seconds / (1024.0 * 1024.0));
}

// One row a VM: the cells of the table, in both parts.
std::vector<std::string> Row(const v1::VmOutcome& vm) {
  const v1::JobStatus& s = vm.status();
  const absl::Duration took = Took(s);
  std::string reason = s.error_message();
  if (reason.empty() && s.warnings_size() > 0) reason = s.warnings(0);
  std::string time = "-";
  if (took >= absl::Minutes(1)) {
    time = FormatShortDuration(took);
  } else if (took > absl::ZeroDuration()) {
    time = absl::StrFormat("%.1fs", absl::ToDoubleSeconds(took));
  }
  return {Result(vm),
          vm.vm_name(),
          vm.host_name().empty() ? "-" : vm.host_name(),
          s.backup_bytes() > 0 ? FormatBytes(s.backup_bytes()) : "-",
          time,
          Rate(s, took),
          s.status_token().empty() ? "-" : s.status_token(),
          reason};
}

const std::vector<std::string>& Header() {
  static const auto* h = new std::vector<std::string>{
      "RESULT", "VM", "HOST", "SIZE", "TIME", "MiB/s", "ERROR", "REASON"};
  return *h;
}

std::string Html(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// The VMs in report order: failed first when the run had errors.
std::vector<const v1::VmOutcome*> Ordered(const v1::RunSummary& run) {
  std::vector<const v1::VmOutcome*> vms;
  for (const v1::VmOutcome& vm : run.vms()) vms.push_back(&vm);
  if (run.errors() > 0) {
    std::stable_partition(vms.begin(), vms.end(),
                          [](const v1::VmOutcome* vm) { return Failed(*vm); });
  }
  return vms;
}

// Hosts whose agent was missing (a VM failed for want of one, or lost it).
std::vector<std::string> MissingAgents(const v1::RunSummary& run) {
  std::set<std::string> hosts;
  for (const v1::VmOutcome& vm : run.vms()) {
    const std::string& token = vm.status().status_token();
    if (token == "NO-AGENT" || token == "AGENT-LOST")
      hosts.insert(vm.host_name().empty() ? vm.host_uuid() : vm.host_name());
  }
  return {hosts.begin(), hosts.end()};
}

std::vector<std::string> Warnings(const v1::RunSummary& run,
                                  const ReportContext& context) {
  std::vector<std::string> out(run.run_warnings().begin(),
                               run.run_warnings().end());
  for (const v1::VmOutcome& vm : run.vms()) {
    for (const std::string& w : vm.status().warnings())
      out.push_back(absl::StrCat(vm.vm_name(), ": ", w));
  }
  out.insert(out.end(), context.extra_warnings.begin(),
             context.extra_warnings.end());
  return out;
}

}  // namespace

v1::RunSummary SummaryOfResult(const BackupRunResult& result,
                               const BackupPolicy& policy, absl::Time started,
                               absl::Time finished) {
  v1::RunSummary s;
  s.set_run_id(result.run_id);
  s.set_state(result.exit_code == 0   ? v1::RUN_STATE_SUCCEEDED
              : result.exit_code == 1 ? v1::RUN_STATE_WARNINGS
                                      : v1::RUN_STATE_FAILED);
  s.set_started_unix_ms(static_cast<uint64_t>(absl::ToUnixMillis(started)));
  s.set_finished_unix_ms(static_cast<uint64_t>(absl::ToUnixMillis(finished)));
  s.set_succeeded(static_cast<uint32_t>(result.succeeded));
  s.set_warnings(static_cast<uint32_t>(result.warnings));
  s.set_errors(static_cast<uint32_t>(result.errors));
  for (const v1::VmOutcome& vm : result.vms) *s.add_vms() = vm;
  const size_t slash = policy.source.find_last_of('/');
  s.set_config_name(slash == std::string::npos
                        ? policy.source
                        : policy.source.substr(slash + 1));
  s.set_backup_dir(policy.backup_dir);
  s.set_summary_line(result.summary_line);
  s.set_exit_code(result.exit_code);
  s.set_fatal(result.fatal);
  for (const std::string& w : result.run_warnings) s.add_run_warnings(w);
  s.set_pool_db_dump(result.pool_db_dump);
  s.set_pool_name(result.pool_name);
  return s;
}

int ReportLevel(const v1::RunSummary& run) {
  int level = run.exit_code();
  for (const std::string& f : run.verify_findings()) {
    level = std::max(level, absl::StartsWith(f, "ERROR ")     ? 2
                            : absl::StartsWith(f, "WARNING ") ? 1
                                                              : 0);
  }
  return level;
}

bool WantsReport(MailWhen when, int exit_code) {
  switch (when) {
    case MailWhen::kAlways:
      return true;
    case MailWhen::kProblems:
      return exit_code != 0;
    case MailWhen::kFailure:
      return exit_code >= 2;
    case MailWhen::kNever:
      return false;
  }
  return true;
}

MailMessage BuildRunReport(const BackupPolicy& policy,
                           const v1::RunSummary& run,
                           const ReportContext& context) {
  MailMessage m;
  m.from = policy.mail_from.empty() ? context.default_from : policy.mail_from;
  m.to = policy.mail_to;
  const int level = ReportLevel(run);
  const char* word = level == 0 ? "Success" : level == 1 ? "WARNING" : "ERROR";
  m.subject = absl::StrCat(word, " ", context.pool_name, " VmBackup.py");

  const auto when = [&](uint64_t ms) {
    return ms == 0 ? std::string("-") : FormatTimestamp(ms, context.time_zone);
  };
  const std::string summary = run.summary_line().empty()
                                  ? "VmBackup did not finish"
                                  : run.summary_line();
  std::vector<std::pair<std::string, std::string>> facts = {
      {"run", run.run_id()},
      {"config", run.config_name()},
      {"backup_dir", run.backup_dir()},
      {"started", when(run.started_unix_ms())},
      {"ended", when(run.finished_unix_ms())},
  };
  if (!run.fatal().empty()) facts.emplace_back("stopped", run.fatal());
  facts.emplace_back("pool database", run.pool_db_dump().empty()
                                          ? "not dumped (pool_db_backup=0)"
                                          : run.pool_db_dump());
  if (!run.verify().empty()) facts.emplace_back("read back", run.verify());
  const std::vector<std::string> missing = MissingAgents(run);
  if (!missing.empty())
    facts.emplace_back("agents missing", absl::StrJoin(missing, ", "));
  const std::vector<std::string> warnings = Warnings(run, context);

  std::vector<std::vector<std::string>> rows = {Header()};
  for (const v1::VmOutcome* vm : Ordered(run)) rows.push_back(Row(*vm));

  std::string text = absl::StrCat(summary, "\n\n");
  for (const auto& [k, v] : facts)
    absl::StrAppend(&text, absl::StrFormat("%-15s %s\n", k + ":", v));
  absl::StrAppend(&text, "\n");
  for (const std::string& line : AlignColumns(rows, ""))
    absl::StrAppend(&text, line, "\n");
  if (!warnings.empty()) {
    absl::StrAppend(&text, "\nwarnings:\n");
    for (const std::string& w : warnings) absl::StrAppend(&text, "  ", w, "\n");
  }
  if (run.verify_findings_size() > 0) {
    absl::StrAppend(&text, "\nolder backups read back (verify_after_run):\n");
    for (const std::string& f : run.verify_findings())
      absl::StrAppend(&text, "  ", f, "\n");
  }
  m.text = std::move(text);

  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>",
      Html(m.subject), "</title></head><body>\n<p><b>", Html(summary),
      "</b></p>\n<table>\n");
  for (const auto& [k, v] : facts)
    absl::StrAppend(&html, "<tr><th align=\"left\">", Html(k), "</th><td>",
                    Html(v), "</td></tr>\n");
  absl::StrAppend(&html,
                  "</table>\n<table border=\"1\" cellpadding=\"3\" "
                  "style=\"border-collapse:collapse\">\n");
  for (size_t r = 0; r < rows.size(); ++r) {
    absl::StrAppend(&html, "<tr>");
    for (const std::string& cell : rows[r]) {
      absl::StrAppend(&html, r == 0 ? "<th>" : "<td>", Html(cell),
                      r == 0 ? "</th>" : "</td>");
    }
    absl::StrAppend(&html, "</tr>\n");
  }
  absl::StrAppend(&html, "</table>\n");
  if (!warnings.empty()) {
    absl::StrAppend(&html, "<p>warnings:</p>\n<ul>\n");
    for (const std::string& w : warnings)
      absl::StrAppend(&html, "<li>", Html(w), "</li>\n");
    absl::StrAppend(&html, "</ul>\n");
  }
  if (run.verify_findings_size() > 0) {
    absl::StrAppend(
        &html, "<p>older backups read back (verify_after_run):</p>\n<ul>\n");
    for (const std::string& f : run.verify_findings())
      absl::StrAppend(&html, "<li>", Html(f), "</li>\n");
    absl::StrAppend(&html, "</ul>\n");
  }
  absl::StrAppend(&html, "</body></html>\n");
  m.html = std::move(html);
  return m;
}

std::string MailRunReport(const BackupPolicy& policy, const v1::RunSummary& run,
                          const ReportContext& context, Clock* clock,
                          const RetryOptions& retry,
                          const SenderFactory& make_sender) {
  if (policy.mail_to.empty() ||
      !WantsReport(policy.mail_when, ReportLevel(run)))
    return "";
  std::string password;
  if (!policy.mail_smtp_password_file.empty()) {
    struct stat st;
    absl::StatusOr<PasswordSource> pw =
        stat(policy.mail_smtp_password_file.c_str(), &st) == 0
            ? ResolvePasswordArgument(policy.mail_smtp_password_file, "")
            : absl::NotFoundError(absl::StrCat("mail_smtp_password_file ",
                                               policy.mail_smtp_password_file,
                                               ": no such file"));
    if (!pw.ok()) {
      const std::string why =
          absl::StrCat("FAILED: not sent: ", pw.status().message());
      VMB_LOG(ERROR) << "e-mail report: " << why;
      return why;
    }
    password = pw->password;
  }
  std::unique_ptr<MailSender> sender;
  if (make_sender) {
    sender = make_sender(policy, password);
  } else {
    CurlSmtpSender::Options o;
    o.url = policy.mail_smtp_url;
    o.require_starttls = policy.mail_starttls;
    o.ca_file = policy.mail_smtp_ca;
    o.user = policy.mail_smtp_user;
    o.password = password;
    sender = std::make_unique<CurlSmtpSender>(std::move(o));
  }
  const MailMessage message = BuildRunReport(policy, run, context);
  const absl::Status s = SendWithRetries(*sender, message, retry, clock);
  if (!s.ok()) {
    VMB_LOG(ERROR) << "e-mail report of run " << run.run_id() << ": "
                   << s.message();
    return absl::StrCat("FAILED: ", s.message());
  }
  const std::string sent =
      absl::StrCat("sent to ", absl::StrJoin(policy.mail_to, ", "));
  VMB_LOG(INFO) << "e-mail report of run " << run.run_id() << ": " << sent;
  return sent;
}

}  // namespace vmb::coordinator
