// SPDX-License-Identifier: Apache-2.0
// The e-mail report: what it says (subject, table, order, warnings), the
// message's form, when it is sent, and its tries; with a fake sender. A real
// server receives it in tests/integration (MailReportTest).
#include "coordinator/run_report.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "coordinator/coordinator_server.h"
#include "coordinator/mailer.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace vmb::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::vmb::testing::FakeClock;
using ::vmb::testing::StatusIs;

v1::VmOutcome Vm(const std::string& name, const std::string& host,
                 v1::JobPhase phase, uint64_t bytes = 0) {
  v1::VmOutcome vm;
  vm.set_vm_name(name);
  vm.set_host_name(host);
  vm.mutable_status()->set_phase(phase);
  vm.mutable_status()->set_backup_bytes(bytes);
  vm.mutable_status()->set_started_unix_ms(1'000'000);
  vm.mutable_status()->set_finished_unix_ms(1'000'000 + 4'000);
  return vm;
}

v1::RunSummary ARun() {
  v1::RunSummary run;
  run.set_run_id("20261130-030000-abcd");
  run.set_config_name("weekend.cfg");
  run.set_pool_name("prod-pool");
  run.set_summary_line("VmBackup ended - **ERRORS DETECTED** - S:2 W:0 E:1");
  run.set_exit_code(2);
  run.set_errors(1);
  run.set_succeeded(2);
  run.set_pool_db_dump("/snapshots/BACKUPS/METADATA_x/pool_db.dump (1 MiB)");
  *run.add_vms() = Vm("web-1", "xcp-host1", v1::JOB_PHASE_SUCCEEDED, 8 << 20);
  v1::VmOutcome lost = Vm("db-<1>", "xcp-host2", v1::JOB_PHASE_FAILED);
  lost.mutable_status()->set_status_token("NO-AGENT");
  lost.mutable_status()->set_error_message("no agent is connected on its host");
  *run.add_vms() = lost;
  v1::VmOutcome warned =
      Vm("mail-1", "xcp-host1", v1::JOB_PHASE_SUCCEEDED, 4 << 20);
  warned.mutable_status()->add_warnings("a disk was skipped");
  *run.add_vms() = warned;
  run.add_run_warnings("vm-export=old-vm matched no VM");
  return run;
}

BackupPolicy Policy() {
  BackupPolicy p;
  p.mail_to = {"ops@example.com", "boss@example.com"};
  return p;
}

TEST(RunReportTest, SaysWhatTheRunDidFailuresFirst) {
  ReportContext context;
  context.pool_name = "prod-pool";
  context.default_from = "root@coord";
  context.extra_warnings = {"the certificate of agent a expires in 3 days"};
  const MailMessage m = BuildRunReport(Policy(), ARun(), context);
  EXPECT_EQ(m.subject, "ERROR prod-pool VmBackup.py");
  EXPECT_EQ(m.from, "root@coord");
  EXPECT_THAT(m.to, ElementsAre("ops@example.com", "boss@example.com"));
  std::vector<std::string> lines = absl::StrSplit(m.text, '\n');
  EXPECT_EQ(lines[0], "VmBackup ended - **ERRORS DETECTED** - S:2 W:0 E:1");
  EXPECT_THAT(m.text, HasSubstr("pool database:  /snapshots/BACKUPS/"));
  EXPECT_THAT(m.text, HasSubstr("agents missing: xcp-host2"));
  // The table: the failed VM first, then the others in run order.
  std::vector<std::string> rows;
  for (const std::string& l : lines) {
    if (absl::StartsWith(l, "RESULT") || absl::StartsWith(l, "ok") ||
        absl::StartsWith(l, "FAILED") || absl::StartsWith(l, "warning "))
      rows.push_back(l);
  }
  ASSERT_EQ(rows.size(), 4u) << m.text;
  EXPECT_THAT(rows[0], HasSubstr("VM"));
  EXPECT_THAT(rows[1], HasSubstr("db-<1>"));
  EXPECT_THAT(rows[1], HasSubstr("NO-AGENT"));
  EXPECT_THAT(rows[1], HasSubstr("no agent is connected on its host"));
  EXPECT_THAT(rows[2], HasSubstr("web-1"));
  EXPECT_THAT(rows[2], HasSubstr("8 MiB"));
  EXPECT_THAT(rows[2], HasSubstr("4.0s"));
  EXPECT_THAT(rows[2], HasSubstr("2.0"));  // MiB/s
  EXPECT_THAT(rows[3], HasSubstr("mail-1"));
  EXPECT_THAT(rows[3], HasSubstr("a disk was skipped"));
  EXPECT_THAT(m.text, HasSubstr("warnings:\n  vm-export=old-vm matched no VM"));
  EXPECT_THAT(m.text, HasSubstr("  mail-1: a disk was skipped"));
  EXPECT_THAT(m.text, HasSubstr("  the certificate of agent a expires"));
  // The HTML part: the same table, escaped.
  EXPECT_THAT(m.html, HasSubstr("<td>db-&lt;1&gt;</td>"));
  EXPECT_THAT(m.html, Not(HasSubstr("db-<1>")));
}

TEST(RunReportTest, TheSubjectFollowsTheExitCodeAndMailFromWins) {
  v1::RunSummary run = ARun();
  BackupPolicy p = Policy();
  p.mail_from = "vmbackup@example.com";
  ReportContext context;
  context.pool_name = "p";
  run.set_exit_code(0);
  run.set_errors(0);
  EXPECT_EQ(BuildRunReport(p, run, context).subject, "Success p VmBackup.py");
  EXPECT_EQ(BuildRunReport(p, run, context).from, "vmbackup@example.com");
  run.set_exit_code(1);
  EXPECT_EQ(BuildRunReport(p, run, context).subject, "WARNING p VmBackup.py");
  // Without errors the VMs stay in run order.
  const std::string text = BuildRunReport(p, run, context).text;
  EXPECT_LT(text.find("web-1"), text.find("db-<1>"));
}

TEST(RunReportTest, CertificatesNearTheirEndAreWarnedOf) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  std::vector<v1::AgentInfo> agents(3);
  agents[0].mutable_identity()->set_agent_id("a1");
  agents[0].mutable_identity()->set_host_name("xcp-host1");
  agents[0].set_certificate("CN=xcp-host1 (urn:vmbackup:host:1)");
  agents[0].set_certificate_not_after_unix_ms(
      static_cast<uint64_t>(absl::ToUnixMillis(now + absl::Hours(24 * 29))));
  agents[1] = agents[0];
  agents[1].mutable_identity()->set_agent_id("a2");
  agents[1].set_certificate_not_after_unix_ms(
      static_cast<uint64_t>(absl::ToUnixMillis(now + absl::Hours(24 * 31))));
  agents[2].mutable_identity()->set_agent_id("plain");  // no certificate
  CertificateInfo own;
  own.subject = "CN=localhost";
  own.not_after = now - absl::Hours(1);
  const std::vector<std::string> w = CertificateWarnings(agents, own, now);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_THAT(w[0], HasSubstr("the certificate of the coordinator has expired "
                              "(CN=localhost"));
  EXPECT_THAT(w[1], HasSubstr("the certificate of agent a1 (xcp-host1) "
                              "expires in 29 days"));
  EXPECT_THAT(
      CertificateWarnings(agents, std::nullopt, now - absl::Hours(24 * 10)),
      ::testing::IsEmpty());
}

TEST(RunReportTest, MailWhen) {
  EXPECT_TRUE(WantsReport(MailWhen::kAlways, 0));
  EXPECT_FALSE(WantsReport(MailWhen::kProblems, 0));
  EXPECT_TRUE(WantsReport(MailWhen::kProblems, 1));
  EXPECT_FALSE(WantsReport(MailWhen::kFailure, 1));
  EXPECT_TRUE(WantsReport(MailWhen::kFailure, 2));
  EXPECT_FALSE(WantsReport(MailWhen::kNever, 2));
}

TEST(MailerTest, TheMessageIsMimeWithBothParts) {
  MailMessage m;
  m.from = "a@example.com";
  m.to = {"b@example.com", "c@example.com"};
  m.subject = "Success pool-é VmBackup.py";
  m.text = "line 1\nline 2\n";
  m.html = "<p>x</p>\n";
  const std::string out =
      FormatMessage(m, absl::FromUnixSeconds(1796000000), "u1");
  EXPECT_THAT(out, HasSubstr("From: a@example.com\r\n"));
  EXPECT_THAT(out, HasSubstr("To: b@example.com, c@example.com\r\n"));
  EXPECT_THAT(out, HasSubstr("Subject: =?utf-8?B?"));
  EXPECT_THAT(out, HasSubstr("Message-ID: <u1@example.com>\r\n"));
  EXPECT_THAT(out, HasSubstr("Date: "));
  EXPECT_THAT(out,
              HasSubstr("multipart/alternative; boundary=\"=_vmbackup_u1\""));
  EXPECT_THAT(out, HasSubstr("--=_vmbackup_u1--\r\n"));
  // The text part: base64 of the text with CRLF line ends.
  EXPECT_THAT(out, HasSubstr(absl::Base64Escape("line 1\r\nline 2\r\n")));
  // Every line within 78 characters, CRLF-ended.
  for (absl::string_view line : absl::StrSplit(out, "\r\n")) {
    EXPECT_LE(line.size(), 78u) << line;
    EXPECT_FALSE(absl::StrContains(line, "\n")) << line;
  }
}

// Answers with `results` in turn (the last one again and again); what it was
// asked to send goes to `sent` (or to its own list).
class FakeSender final : public MailSender {
 public:
  explicit FakeSender(std::vector<absl::Status> results,
                      std::vector<MailMessage>* sent = nullptr)
      : results_(std::move(results)), sent_(sent != nullptr ? sent : &own_) {}
  absl::Status Send(const MailMessage& m) override {
    sent_->push_back(m);
    absl::Status s = results_.front();
    if (results_.size() > 1) results_.erase(results_.begin());
    return s;
  }
  size_t sent() const { return sent_->size(); }

 private:
  std::vector<absl::Status> results_;
  std::vector<MailMessage> own_;
  std::vector<MailMessage>* sent_;
};

TEST(MailerTest, ThreeTriesWithBackoffThenTheLastError) {
  FakeClock clock;
  FakeSender down({absl::UnavailableError("connection refused")});
  EXPECT_THAT(
      SendWithRetries(down, MailMessage(), RetryOptions(), &clock),
      StatusIs(absl::StatusCode::kUnavailable,
               HasSubstr("not sent after 3 tries: connection refused")));
  EXPECT_EQ(down.sent(), 3u);
  EXPECT_THAT(clock.sleeps(), ElementsAre(absl::Seconds(5), absl::Seconds(10)));
  FakeClock clock2;
  FakeSender flaky({absl::UnavailableError("busy"), absl::OkStatus()});
  EXPECT_OK(SendWithRetries(flaky, MailMessage(), RetryOptions(), &clock2));
  EXPECT_EQ(flaky.sent(), 2u);
}

TEST(MailerTest, MailRunReportRecordsWhatHappened) {
  FakeClock clock;
  ReportContext context;
  context.pool_name = "prod-pool";
  BackupPolicy policy = Policy();
  std::vector<MailMessage> sent;
  const SenderFactory ok = [&sent](const BackupPolicy&, const std::string&) {
    return std::make_unique<FakeSender>(
        std::vector<absl::Status>{absl::OkStatus()}, &sent);
  };
  EXPECT_EQ(MailRunReport(policy, ARun(), context, &clock, RetryOptions(), ok),
            "sent to ops@example.com, boss@example.com");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].subject, "ERROR prod-pool VmBackup.py");
  const SenderFactory down = [](const BackupPolicy&, const std::string&) {
    return std::make_unique<FakeSender>(
        std::vector<absl::Status>{absl::UnavailableError("refused")});
  };
  EXPECT_EQ(
      MailRunReport(policy, ARun(), context, &clock, RetryOptions(), down),
      "FAILED: not sent after 3 tries: refused");
  // Not wanted: nothing sent, nothing to say.
  policy.mail_when = MailWhen::kNever;
  EXPECT_EQ(
      MailRunReport(policy, ARun(), context, &clock, RetryOptions(), down), "");
  policy = Policy();
  policy.mail_to.clear();
  EXPECT_EQ(
      MailRunReport(policy, ARun(), context, &clock, RetryOptions(), down), "");
  // A password file that is missing: said, not sent.
  policy = Policy();
  policy.mail_smtp_user = "u";
  policy.mail_smtp_password_file = "/nonexistent/smtp.pass";
  EXPECT_THAT(
      MailRunReport(policy, ARun(), context, &clock, RetryOptions(), ok),
      HasSubstr("FAILED: not sent: mail_smtp_password_file /nonexistent"));
}

// verify_after_run's findings: listed in both parts, and they raise the
// subject's word and what mail_when sees, never the run's own result.
TEST(RunReportTest, OlderBackupsReadBackRaiseTheReportsLevel) {
  v1::RunSummary run = ARun();
  run.set_exit_code(0);
  run.set_errors(0);
  BackupPolicy p = Policy();
  p.mail_when = MailWhen::kFailure;
  ReportContext context;
  context.pool_name = "p";
  run.set_verify(
      "2 backups read back: 2 ok, 0 WARNING, 0 ERROR; 9 MiB in 0.1 s");
  EXPECT_EQ(ReportLevel(run), 0);
  MailMessage m = BuildRunReport(p, run, context);
  EXPECT_EQ(m.subject, "Success p VmBackup.py");
  EXPECT_THAT(m.text, HasSubstr("read back:      2 backups read back: 2 ok"));
  EXPECT_THAT(m.text, Not(HasSubstr("older backups read back")));

  run.add_verify_findings("WARNING /s/old/backup-x: no manifest.json");
  EXPECT_EQ(ReportLevel(run), 1);
  EXPECT_EQ(BuildRunReport(p, run, context).subject, "WARNING p VmBackup.py");
  run.add_verify_findings("ERROR /s/web/backup-<y>: web.xva: missing");
  EXPECT_EQ(ReportLevel(run), 2);
  EXPECT_EQ(run.exit_code(), 0);
  m = BuildRunReport(p, run, context);
  EXPECT_EQ(m.subject, "ERROR p VmBackup.py");
  EXPECT_THAT(m.text,
              HasSubstr("older backups read back (verify_after_run):\n"
                        "  WARNING /s/old/backup-x: no manifest.json\n"
                        "  ERROR /s/web/backup-<y>: web.xva: missing\n"));
  EXPECT_THAT(m.html, HasSubstr("<li>ERROR /s/web/backup-&lt;y&gt;: web.xva: "
                                "missing</li>"));

  // mail_when=failure: the run succeeded, an older backup is damaged: sent.
  FakeClock clock;
  std::vector<MailMessage> sent;
  const SenderFactory ok = [&sent](const BackupPolicy&, const std::string&) {
    return std::make_unique<FakeSender>(
        std::vector<absl::Status>{absl::OkStatus()}, &sent);
  };
  EXPECT_THAT(MailRunReport(p, run, context, &clock, RetryOptions(), ok),
              HasSubstr("sent to"));
  run.clear_verify_findings();
  EXPECT_EQ(MailRunReport(p, run, context, &clock, RetryOptions(), ok), "");
}

}  // namespace
}  // namespace vmb::coordinator
