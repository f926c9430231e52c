// SPDX-License-Identifier: Apache-2.0
// What the coordinator commands print: progress bars, rates, ETAs, widths,
// escaping, the tables, and the live view's redraws.
#include "coordinator/run_watch_view.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmb::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kMiB = 1 << 20;
const absl::Time kNow = absl::FromUnixSeconds(1764122401);  // 2025-11-26

uint64_t Ms(absl::Time t) {
  return static_cast<uint64_t>(absl::ToUnixMillis(t));
}

v1::VmOutcome Vm(const std::string& name, const std::string& host,
                 v1::JobPhase phase) {
  v1::VmOutcome vm;
  vm.set_vm_uuid(absl::StrCat("uuid-", name));
  vm.set_vm_name(name);
  vm.set_host_name(host);
  vm.set_kind(v1::EXPORT_KIND_VM);
  vm.mutable_status()->set_phase(phase);
  vm.mutable_status()->set_attempt(1);
  return vm;
}

// Exporting: `done` of `total` MiB, started `seconds` before kNow.
v1::VmOutcome Exporting(const std::string& name, uint64_t done_mib,
                        uint64_t total_mib, int seconds) {
  v1::VmOutcome vm = Vm(name, "xcp-host1", v1::JOB_PHASE_EXPORT);
  vm.mutable_status()->set_bytes_done(done_mib * kMiB);
  vm.mutable_status()->set_bytes_total(total_mib * kMiB);
  vm.mutable_status()->set_started_unix_ms(Ms(kNow - absl::Seconds(seconds)));
  return vm;
}

ViewContext Ctx(int width) {
  ViewContext ctx;
  ctx.width = width;
  ctx.now = kNow;
  return ctx;
}

TEST(RunWatchViewTest, ProgressBar) {
  EXPECT_EQ(ProgressBar(0, 100, 10), "[..........]");
  EXPECT_EQ(ProgressBar(50, 100, 10), "[#####.....]");
  EXPECT_EQ(ProgressBar(99, 100, 10), "[#########.]");  // full only when done
  EXPECT_EQ(ProgressBar(100, 100, 10), "[##########]");
  EXPECT_EQ(ProgressBar(150, 100, 10), "[##########]");
  EXPECT_EQ(ProgressBar(5, 0, 4), "[....]");  // unknown total
  EXPECT_EQ(ProgressBar(uint64_t{1} << 62, uint64_t{1} << 63, 4), "[##..]");
}

TEST(RunWatchViewTest, RatesDurationsAndEta) {
  EXPECT_EQ(FormatRate(50 * kMiB), "50.0 MiB/s");
  EXPECT_EQ(FormatRate(1.5 * kMiB), "1.5 MiB/s");
  EXPECT_EQ(FormatRate(-3), "0.0 MiB/s");
  EXPECT_EQ(FormatShortDuration(absl::Seconds(45)), "45s");
  EXPECT_EQ(FormatShortDuration(absl::Seconds(12 * 60 + 5)), "12m05s");
  EXPECT_EQ(FormatShortDuration(absl::Hours(3) + absl::Minutes(2)), "3h02m");
  EXPECT_EQ(FormatShortDuration(absl::Hours(52)), "2d04h");
  EXPECT_EQ(FormatShortDuration(absl::Seconds(-5)), "0s");
  EXPECT_EQ(EstimateEta(512 * kMiB, 1024 * kMiB, 51.2 * kMiB),
            absl::Seconds(10));
  EXPECT_EQ(EstimateEta(5, 5, 1), absl::ZeroDuration());
  EXPECT_EQ(EstimateEta(5, 0, 1), std::nullopt);
  EXPECT_EQ(EstimateEta(5, 10, 0), std::nullopt);
  v1::JobStatus s = Exporting("a", 100, 200, 10).status();
  ASSERT_TRUE(AverageRate(s, kNow).has_value());
  EXPECT_DOUBLE_EQ(*AverageRate(s, kNow), 10.0 * kMiB);
  s.set_started_unix_ms(0);
  EXPECT_EQ(AverageRate(s, kNow), std::nullopt);
  EXPECT_EQ(FormatTimestamp(Ms(kNow), absl::UTCTimeZone()),
            "2025-11-26 02:00:01");
  EXPECT_EQ(FormatTimestamp(0, absl::UTCTimeZone()), "-");
}

TEST(RunWatchViewTest, LiveLineOfAnExport) {
  // 512 of 1024 MiB in 10 s: 51.2 MiB/s on average, 10 s left.
  const std::string line = LiveVmLine(Exporting("PROD-ubuntu14", 512, 1024, 10),
                                      std::nullopt, Ctx(120));
  EXPECT_THAT(line, StartsWith("  PROD-ubuntu14"));
  EXPECT_THAT(line, HasSubstr("xcp-host1"));
  EXPECT_THAT(line, HasSubstr("export"));
  EXPECT_THAT(line, HasSubstr("[###"));
  EXPECT_THAT(line, HasSubstr(" 50%  512 MiB/1.0 GiB  51.2 MiB/s  ETA 10s"));
  EXPECT_LE(line.size(), 119u);
  // A recent rate wins over the average.
  EXPECT_THAT(LiveVmLine(Exporting("a", 512, 1024, 10), 128.0 * kMiB, Ctx(120)),
              HasSubstr("128.0 MiB/s  ETA 4s"));
  // Before any byte: no rate, no ETA.
  EXPECT_THAT(LiveVmLine(Exporting("a", 0, 1024, 0), std::nullopt, Ctx(120)),
              HasSubstr("  0%  0 KiB/1.0 GiB  -- MiB/s  ETA --"));
  // Other phases: the time so far.
  v1::VmOutcome snap = Vm("a", "h", v1::JOB_PHASE_SNAPSHOT);
  snap.mutable_status()->set_started_unix_ms(Ms(kNow - absl::Seconds(7)));
  snap.mutable_status()->set_attempt(2);
  EXPECT_THAT(LiveVmLine(snap, std::nullopt, Ctx(80)),
              HasSubstr("snapshot   7s  (attempt 2)"));
}

TEST(RunWatchViewTest, LiveLinesFitTheWidth) {
  const std::string long_name(100, 'n');
  for (int width : {20, 40, 60, 80, 100, 200}) {
    for (const v1::VmOutcome& vm :
         {Exporting(long_name, 512, 1024, 10), Exporting("short", 1, 2, 10),
          Vm(long_name, std::string(50, 'h'), v1::JOB_PHASE_METADATA)}) {
      const std::string line = LiveVmLine(vm, std::nullopt, Ctx(width));
      EXPECT_LE(DisplayWidth(line), static_cast<size_t>(width - 1))
          << width << ": " << line;
      EXPECT_FALSE(line.empty());
    }
  }
  // A long name is cut, marked, and the bar still fits at 100 columns.
  const std::string line =
      LiveVmLine(Exporting(long_name, 512, 1024, 10), std::nullopt, Ctx(100));
  EXPECT_THAT(line, HasSubstr(std::string(13, 'n') + "..."));
  EXPECT_THAT(line, Not(HasSubstr(std::string(14, 'n'))));
  EXPECT_THAT(line, HasSubstr("[#"));
  EXPECT_THAT(line, HasSubstr("ETA 10s"));
  // Narrow: the bar goes first, the numbers stay.
  const std::string narrow =
      LiveVmLine(Exporting("vm", 512, 1024, 10), std::nullopt, Ctx(70));
  EXPECT_THAT(narrow, Not(HasSubstr("[")));
  EXPECT_THAT(narrow, HasSubstr("ETA 10s"));
}

TEST(RunWatchViewTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(TerminalSafe("a\x1b[2J\nb\tc"), "a\\x1b[2J\\nb\\tc");
  EXPECT_EQ(TerminalSafe("\xc2\x9b"
                         "31m"),
            "\\u009b31m");                            // C1 CSI
  EXPECT_EQ(TerminalSafe("\xff\xfe"), "\\xff\\xfe");  // not UTF-8
  EXPECT_EQ(TerminalSafe("Caf\xc3\xa9 \xe2\x9c\x93"),
            "Caf\xc3\xa9 \xe2\x9c\x93");  // UTF-8 stays
  const std::string evil = "evil\x1b[2J\r\nname\x07";
  v1::VmOutcome vm = Exporting(evil, 1, 2, 10);
  vm.set_host_name("host\x1b]0;title\x07");
  // The live line cuts the host to its column; the permanent one does not.
  const std::string live = LiveVmLine(vm, std::nullopt, Ctx(200));
  const std::string finished = FinishedVmLine(vm);
  EXPECT_THAT(live, HasSubstr("evil\\x1b[2J\\r\\nname\\x07"));
  EXPECT_THAT(live, HasSubstr("host\\x1b]..."));
  EXPECT_THAT(finished, HasSubstr("evil\\x1b[2J\\r\\nname\\x07"));
  EXPECT_THAT(finished, HasSubstr("host\\x1b]0;title\\x07"));
  for (const std::string& line : {live, finished}) {
    for (char c : line) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
  }
  v1::RunSummary run;
  run.set_run_id("r");
  *run.add_vms() = vm;
  for (const std::string& line : RunStatusLines(run, Ctx(80))) {
    for (char c : line) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
  }
}

TEST(RunWatchViewTest, FitToWidthNeverSplitsUtf8) {
  EXPECT_EQ(FitToWidth("abcdef", 6), "abcdef");
  EXPECT_EQ(FitToWidth("abcdefg", 6), "abc...");
  EXPECT_EQ(FitToWidth("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 4),
            "\xc3\xa9...");
  EXPECT_EQ(FitToWidth("abcdef", 2), "ab");
  EXPECT_EQ(DisplayWidth("\xc3\xa9t\xc3\xa9"), 3u);
}

TEST(RunWatchViewTest, FinishedLines) {
  v1::VmOutcome ok = Vm("vm-a", "xcp-host1", v1::JOB_PHASE_SUCCEEDED);
  ok.mutable_status()->set_backup_bytes(28 * kMiB);
  ok.mutable_status()->set_started_unix_ms(Ms(kNow - absl::Seconds(248)));
  ok.mutable_status()->set_finished_unix_ms(Ms(kNow));
  EXPECT_EQ(FinishedVmLine(ok), "OK        vm-a on xcp-host1: 28 MiB in 4m08s");
  ok.mutable_status()->add_warnings("snapshot left: VDI_IN_USE");
  EXPECT_EQ(FinishedVmLine(ok),
            "OK        vm-a on xcp-host1: 28 MiB in 4m08s (1 warning: "
            "snapshot left: VDI_IN_USE)");

  v1::VmOutcome failed = Vm("vm-b", "xcp-host2", v1::JOB_PHASE_FAILED);
  failed.mutable_status()->set_status_token("SNAPSHOT-FAILED");
  failed.mutable_status()->set_error_step("snapshot");
  failed.mutable_status()->set_error_message("VM.snapshot: SR_FULL");
  failed.mutable_status()->set_attempt(2);
  EXPECT_EQ(FinishedVmLine(failed),
            "FAILED    vm-b on xcp-host2: SNAPSHOT-FAILED at snapshot: "
            "VM.snapshot: SR_FULL (attempt 2)");
  EXPECT_EQ(FinishedVmLine(Vm("vm-c", "", v1::JOB_PHASE_CANCELLED)),
            "CANCELLED vm-c");
  EXPECT_EQ(FinishedVmLine(Vm("vm-d", "h", v1::JOB_PHASE_QUEUED)),
            "QUEUED    vm-d on h");
}

v1::RunSummary SampleRun() {
  v1::RunSummary run;
  run.set_run_id("20251126-020001-4f2a");
  run.set_state(v1::RUN_STATE_FAILED);
  run.set_config_name("weekly.cfg");
  run.set_backup_dir("/snapshots/BACKUPS");
  run.set_started_unix_ms(Ms(kNow - absl::Minutes(20)));
  run.set_finished_unix_ms(Ms(kNow));
  run.set_succeeded(1);
  run.set_errors(1);
  run.set_summary_line("VmBackup ended - Failure - S:1 W:0 E:1");
  run.add_run_warnings("pool DB dump skipped");
  v1::VmOutcome ok = Vm("PROD-ubuntu14", "xcp-host1", v1::JOB_PHASE_SUCCEEDED);
  ok.mutable_status()->set_backup_bytes(28 * kMiB);
  ok.mutable_status()->set_started_unix_ms(Ms(kNow - absl::Seconds(248)));
  ok.mutable_status()->set_finished_unix_ms(Ms(kNow));
  *run.add_vms() = ok;
  v1::VmOutcome bad = Vm("DEV-RH7", "xcp-host2", v1::JOB_PHASE_FAILED);
  bad.set_kind(v1::EXPORT_KIND_VDI);
  bad.mutable_status()->set_status_token("EXPORT-FAILED");
  bad.mutable_status()->set_error_message("connection reset");
  *run.add_vms() = bad;
  return run;
}

TEST(RunWatchViewTest, StatusTable) {
  const std::vector<std::string> lines = RunStatusLines(SampleRun(), Ctx(80));
  const std::string text = absl::StrJoin(lines, "\n");
  EXPECT_EQ(lines[0], "run 20251126-020001-4f2a: failed");
  EXPECT_THAT(text, HasSubstr("  config:      weekly.cfg\n"));
  EXPECT_THAT(text, HasSubstr("  backup_dir:  /snapshots/BACKUPS\n"));
  EXPECT_THAT(text, HasSubstr("  started:     2025-11-26 01:40:01\n"));
  EXPECT_THAT(text,
              HasSubstr("  finished:    2025-11-26 02:00:01 (took 20m00s)\n"));
  EXPECT_THAT(text, HasSubstr("  VMs:         2 (S:1 W:0 E:1)\n"));
  EXPECT_THAT(text, HasSubstr("  summary:     VmBackup ended - Failure"));
  EXPECT_THAT(text, HasSubstr("  warning:     pool DB dump skipped\n"));
  EXPECT_THAT(text, HasSubstr("  VM             HOST       KIND        RESULT  "
                              "SIZE    DURATION  REASON\n"));
  EXPECT_THAT(text, HasSubstr("  PROD-ubuntu14  xcp-host1  vm-export   OK      "
                              "28 MiB  4m08s\n"));
  EXPECT_THAT(text, HasSubstr("  DEV-RH7        xcp-host2  vdi-export  FAILED  "
                              "-       -         EXPORT-FAILED: connection "
                              "reset"));
  // Local time: the zone given.
  ViewContext ctx = Ctx(80);
  ctx.time_zone = absl::FixedTimeZone(3600);
  EXPECT_THAT(absl::StrJoin(RunStatusLines(SampleRun(), ctx), "\n"),
              HasSubstr("started:     2025-11-26 02:40:01"));
}

TEST(RunWatchViewTest, RunsAndAgentsTables) {
  v1::ListRunsResponse runs;
  *runs.add_runs() = SampleRun();
  EXPECT_THAT(RunListLines(runs, Ctx(80)),
              ElementsAre("RUN                   STATE   STARTED              "
                          "RESULT       CONFIG",
                          "20251126-020001-4f2a  failed  2025-11-26 01:40:01  "
                          "S:1 W:0 E:1  weekly.cfg"));
  v1::ListAgentsResponse agents;
  v1::AgentInfo* a = agents.add_agents();
  a->mutable_identity()->set_agent_id("agent-1");
  a->mutable_identity()->set_host_name("xcp-host1");
  a->mutable_identity()->set_version("0.1.0");
  a->set_live(true);
  a->set_running_jobs(1);
  a->set_max_jobs(2);
  a->set_last_seen_unix_ms(Ms(kNow - absl::Seconds(3)));
  a->set_certificate("CN=agent-xcp-host1 (urn:vmbackup:host:1)");
  a->set_certificate_not_after_unix_ms(Ms(kNow + absl::Hours(24 * 400)));
  v1::AgentInfo* b = agents.add_agents();
  b->mutable_identity()->set_agent_id("agent-2");
  // A certificate within 30 days of its end: marked, and a warning.
  v1::AgentInfo* c = agents.add_agents();
  *c = *a;
  c->mutable_identity()->set_agent_id("agent-3");
  c->set_certificate("CN=agent-xcp-host3 (urn:vmbackup:host:3)");
  c->set_certificate_not_after_unix_ms(
      Ms(kNow + absl::Hours(24 * 12) + absl::Hours(1)));
  const std::string until_a = absl::FormatTime(
      "%Y-%m-%d", kNow + absl::Hours(24 * 400), absl::UTCTimeZone());
  const std::string until_c =
      absl::FormatTime("%Y-%m-%d", kNow + absl::Hours(24 * 12) + absl::Hours(1),
                       absl::UTCTimeZone());
  EXPECT_THAT(
      AgentListLines(agents, Ctx(80)),
      ElementsAre(
          "AGENT    HOST       STATE  JOBS  LAST SEEN  VERSION  CERTIFICATE",
          "agent-1  xcp-host1  live   1/2   3s ago     0.1.0    until " +
              until_a,
          "agent-2  -          lost   0/0   never      -        -",
          "agent-3  xcp-host1  live   1/2   3s ago     0.1.0    until " +
              until_c + " (!)",
          "warning: the certificate of agent agent-3 expires in 12 days "
          "(CN=agent-xcp-host3 (urn:vmbackup:host:3), " +
              until_c +
              "): renew it with deploy/gen-certs.sh (docs/security.md)"));
}

TEST(RunWatchViewTest, LiveViewRedrawsInPlace) {
  RunWatchView view("127.0.0.1:7441");
  v1::RunUpdate update;
  v1::RunSummary* run = update.mutable_summary();
  run->set_run_id("r1");
  run->set_state(v1::RUN_STATE_RUNNING);
  run->set_config_name("weekly.cfg");
  run->set_backup_dir("/b");
  *run->add_vms() = Exporting("vm-a", 100, 1000, 10);
  *run->add_vms() = Vm("vm-b", "xcp-host2", v1::JOB_PHASE_QUEUED);
  *run->add_vms() = Vm("vm-c", "xcp-host2", v1::JOB_PHASE_QUEUED);
  view.Apply(update, kNow);
  const std::string first = view.Draw(Ctx(100));
  EXPECT_THAT(first, StartsWith("\x1b[2Krun r1 on the coordinator at "
                                "127.0.0.1:7441\n\x1b[2K  config weekly.cfg, "
                                "backup_dir /b, 3 VMs\n"));
  EXPECT_THAT(first, HasSubstr("\x1b[2K  vm-a"));
  EXPECT_THAT(first, HasSubstr("\x1b[2K  2 queued\n\x1b[J"));

  // 10 s later vm-a has 400 MiB more, vm-b runs, vm-c failed.
  run->mutable_vms(0)->mutable_status()->set_bytes_done(500 * kMiB);
  run->mutable_vms(1)->mutable_status()->set_phase(v1::JOB_PHASE_PREFLIGHT);
  run->mutable_vms(2)->mutable_status()->set_phase(v1::JOB_PHASE_FAILED);
  run->mutable_vms(2)->mutable_status()->set_error_message("no agent");
  view.Apply(update, kNow + absl::Seconds(10));
  ASSERT_TRUE(view.RecentRate(run->vms(0), kNow + absl::Seconds(10)));
  EXPECT_DOUBLE_EQ(*view.RecentRate(run->vms(0), kNow + absl::Seconds(10)),
                   40.0 * kMiB);
  ViewContext later = Ctx(100);
  later.now = kNow + absl::Seconds(10);
  const std::string second = view.Draw(later);
  // Up over the two live lines, the failure as a permanent line, then the
  // live lines again.
  EXPECT_THAT(second, StartsWith("\r\x1b[2A\x1b[2KFAILED    vm-c on xcp-host2: "
                                 "no agent\n\x1b[2K  vm-a"));
  EXPECT_THAT(second, HasSubstr("40.0 MiB/s"));
  EXPECT_THAT(second, HasSubstr("\x1b[2K  vm-b"));
  EXPECT_THAT(second, Not(HasSubstr("run r1")));  // the header once
  // The failure is not repeated; the clear-live escape erases the 2 lines.
  EXPECT_THAT(view.Draw(later), Not(HasSubstr("FAILED")));
  EXPECT_EQ(view.ClearLive(), "\r\x1b[2A\x1b[J");
  EXPECT_EQ(view.ClearLive(), "");

  // The end: every VM not yet given a line gets one.
  run->mutable_vms(0)->mutable_status()->set_phase(v1::JOB_PHASE_SUCCEEDED);
  view.Apply(update, later.now);
  EXPECT_EQ(view.Finish(),
            "\x1b[2KOK        vm-a on xcp-host1\n"
            "\x1b[2KPREFLIGHT vm-b on xcp-host2\n");
}

TEST(RunWatchViewTest, LiveLinesAlign) {
  RunWatchView view("a:1");
  v1::RunUpdate update;
  update.mutable_summary()->set_run_id("r");
  *update.mutable_summary()->add_vms() = Exporting("a-long-vm-name", 1, 2, 10);
  *update.mutable_summary()->add_vms() = Exporting("vm", 1, 2, 10);
  view.Apply(update, kNow);
  std::vector<std::string> lines;
  for (absl::string_view part : absl::StrSplit(view.Draw(Ctx(120)), '\n')) {
    if (absl::StrContains(part, "export")) lines.emplace_back(part);
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find("xcp-host1"), lines[1].find("xcp-host1"));
  EXPECT_EQ(lines[0].find("["), lines[1].find("["));
}

TEST(RunWatchViewTest, ManyRunningVmsAreCapped) {
  RunWatchView view("a:1");
  v1::RunUpdate update;
  update.mutable_summary()->set_run_id("r");
  for (int i = 0; i < 25; ++i) {
    *update.mutable_summary()->add_vms() =
        Exporting(absl::StrCat("vm", i), 1, 2, 10);
  }
  view.Apply(update, kNow);
  const std::string out = view.Draw(Ctx(100));
  EXPECT_THAT(out, HasSubstr("  vm19 "));
  EXPECT_THAT(out, Not(HasSubstr("  vm20 ")));
  EXPECT_THAT(out, HasSubstr("  ... and 5 more running\n"));
  EXPECT_THAT(view.Draw(Ctx(100)), StartsWith("\r\x1b[21A"));
}

}  // namespace
}  // namespace vmb::coordinator
