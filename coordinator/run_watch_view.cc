// SPDX-License-Identifier: Apache-2.0
#include "coordinator/run_watch_view.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include "common/backup/export_format.h"
#include "common/base/human_format.h"
#include "common/base/logging.h"
#include "common/base/utf8.h"
#include "common/rpc/mtls.h"

namespace vmb::coordinator {
namespace {

constexpr size_t kNameColumns = 24;
constexpr size_t kHostColumns = 12;
constexpr size_t kPhaseColumns = 9;  // "preflight", "cancelled"
constexpr size_t kMinBarCells = 10;
constexpr size_t kMaxBarCells = 30;
constexpr absl::Duration kRateWindow = absl::Seconds(20);
constexpr absl::Duration kMinRateSpan = absl::Seconds(2);

std::string PadRight(absl::string_view text, size_t width) {
  std::string out(text);
  const size_t w = DisplayWidth(text);
  if (w < width) out.append(width - w, ' ');
  return out;
}

// Cut to `width` and padded to it.
std::string Column(absl::string_view text, size_t width) {
  return PadRight(FitToWidth(text, width), width);
}

absl::Time FromUnixMillis(uint64_t ms) {
  return absl::FromUnixMillis(static_cast<int64_t>(ms));
}

std::string Percent(uint64_t done, uint64_t total) {
  if (total == 0) return " --%";
  const uint64_t p = done >= total ? 100 : done * 100 / total;
  return absl::StrFormat("%3d%%", p);
}

std::string BytesDone(uint64_t done, uint64_t total) {
  if (total == 0) return FormatBytes(done);
  return absl::StrCat(FormatBytes(done), "/", FormatBytes(total));
}

// How long a job ran (or runs so far); none before it started.
std::optional<absl::Duration> JobDuration(const v1::JobStatus& s,
                                          absl::Time now) {
  if (s.started_unix_ms() == 0) return std::nullopt;
  const absl::Time end =
      s.finished_unix_ms() != 0 ? FromUnixMillis(s.finished_unix_ms()) : now;
  return end - FromUnixMillis(s.started_unix_ms());
}

std::string FailureReason(const v1::JobStatus& s) {
  std::string reason;
  if (!s.status_token().empty()) reason = s.status_token();
  if (!s.error_step().empty()) {
    absl::StrAppend(&reason, reason.empty() ? "" : " ", "at ", s.error_step());
  }
  if (!s.error_message().empty()) {
    absl::StrAppend(&reason, reason.empty() ? "" : ": ", s.error_message());
  }
  return TerminalSafe(reason);
}

std::string VmKey(const v1::VmOutcome& vm) {
  return absl::StrCat(vm.vm_uuid(), "#", vm.status().attempt());
}

std::string Plural(size_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

std::vector<std::string> AlignColumns(
    const std::vector<std::vector<std::string>>& rows,
    absl::string_view indent) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  }
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, PadRight(row[i], widths[i]), "  ");
      }
    }
    // Trailing blanks from empty last cells.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

std::string TerminalSafe(absl::string_view text) {
  const std::string escaped = EscapeForLog(text);
  absl::string_view rest = escaped;
  std::string out;
  out.reserve(escaped.size());
  while (!rest.empty()) {
    const size_t n = Utf8SequenceLength(rest);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x",
                            static_cast<unsigned char>(rest[0]));
      rest.remove_prefix(1);
      continue;
    }
    if (n == 2) {
      const unsigned cp = ((static_cast<unsigned char>(rest[0]) & 0x1fu) << 6) |
                          (static_cast<unsigned char>(rest[1]) & 0x3fu);
      if (cp >= 0x80 && cp <= 0x9f) {
        absl::StrAppendFormat(&out, "\\u%04x", cp);
        rest.remove_prefix(2);
        continue;
      }
    }
    out.append(rest.data(), n);
    rest.remove_prefix(n);
  }
  return out;
}

size_t DisplayWidth(absl::string_view text) {
  size_t width = 0;
  while (!text.empty()) {
    const size_t n = Utf8SequenceLength(text);
    text.remove_prefix(n == 0 ? 1 : n);
    ++width;
  }
  return width;
}

std::string FitToWidth(absl::string_view text, size_t width) {
  if (DisplayWidth(text) <= width) return std::string(text);
  const size_t keep = width > 3 ? width - 3 : width;
  std::string out;
  for (size_t i = 0; i < keep && !text.empty(); ++i) {
    size_t n = Utf8SequenceLength(text);
    if (n == 0) n = 1;
    out.append(text.data(), n);
    text.remove_prefix(n);
  }
  if (width > 3) out += "...";
  return out;
}

std::string ProgressBar(uint64_t done, uint64_t total, size_t cells) {
  size_t filled = 0;
  if (total > 0) {
    filled = done >= total
                 ? cells
                 : static_cast<size_t>(static_cast<long double>(done) * cells /
                                       total);
  }
  return absl::StrCat("[", std::string(filled, '#'),
                      std::string(cells - filled, '.'), "]");
}

std::string FormatRate(double bytes_per_second) {
  return absl::StrFormat("%.1f MiB/s",
                         std::max(0.0, bytes_per_second) / 1048576.0);
}

std::string FormatShortDuration(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) s = 0;
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, s % 3600 / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, s % 86400 / 3600);
}

std::optional<absl::Duration> EstimateEta(uint64_t done, uint64_t total,
                                          double bytes_per_second) {
  if (total == 0 || !(bytes_per_second > 0)) return std::nullopt;
  if (done >= total) return absl::ZeroDuration();
  return absl::Seconds(static_cast<double>(total - done) / bytes_per_second);
}

std::string FormatTimestamp(uint64_t unix_ms, absl::TimeZone time_zone) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", FromUnixMillis(unix_ms),
                          time_zone);
}

std::string JobPhaseName(v1::JobPhase phase) {
  switch (phase) {
    case v1::JOB_PHASE_QUEUED:
      return "queued";
    case v1::JOB_PHASE_PREFLIGHT:
      return "preflight";
    case v1::JOB_PHASE_SNAPSHOT:
      return "snapshot";
    case v1::JOB_PHASE_EXPORT:
      return "export";
    case v1::JOB_PHASE_METADATA:
      return "metadata";
    case v1::JOB_PHASE_CLEANUP:
      return "cleanup";
    case v1::JOB_PHASE_AWAITING_COMMIT:
      return "verified";
    case v1::JOB_PHASE_COMMIT:
      return "commit";
    case v1::JOB_PHASE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_PHASE_FAILED:
      return "failed";
    case v1::JOB_PHASE_CANCELLED:
      return "cancelled";
    default:
      return "-";
  }
}

std::string RunStateName(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_RUNNING:
      return "running";
    case v1::RUN_STATE_SUCCEEDED:
      return "succeeded";
    case v1::RUN_STATE_WARNINGS:
      return "warnings";
    case v1::RUN_STATE_FAILED:
      return "failed";
    case v1::RUN_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

bool IsTerminalPhase(v1::JobPhase phase) {
  return phase == v1::JOB_PHASE_SUCCEEDED || phase == v1::JOB_PHASE_FAILED ||
         phase == v1::JOB_PHASE_CANCELLED;
}

std::optional<double> AverageRate(const v1::JobStatus& status, absl::Time now) {
  if (status.started_unix_ms() == 0 || status.bytes_done() == 0) {
    return std::nullopt;
  }
  const double seconds =
      absl::ToDoubleSeconds(now - FromUnixMillis(status.started_unix_ms()));
  if (seconds < 1) return std::nullopt;
  return static_cast<double>(status.bytes_done()) / seconds;
}

std::vector<std::string> RunHeaderLines(const v1::RunSummary& run,
                                        absl::string_view address) {
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("run ", TerminalSafe(run.run_id()),
                               " on the coordinator at ",
                               TerminalSafe(address)));
  std::vector<std::string> parts;
  if (!run.config_name().empty()) {
    parts.push_back(absl::StrCat("config ", TerminalSafe(run.config_name())));
  }
  if (!run.backup_dir().empty()) {
    parts.push_back(
        absl::StrCat("backup_dir ", TerminalSafe(run.backup_dir())));
  }
  parts.push_back(Plural(run.vms_size(), "VM", "VMs"));
  lines.push_back(absl::StrCat("  ", absl::StrJoin(parts, ", ")));
  return lines;
}

std::string LiveVmLine(const v1::VmOutcome& vm, std::optional<double> rate,
                       const ViewContext& ctx, size_t name_columns,
                       size_t host_columns) {
  const v1::JobStatus& s = vm.status();
  const size_t avail =
      static_cast<size_t>(std::max(ctx.width, 20)) - 1;  // see the header
  const std::string name = TerminalSafe(vm.vm_name());
  const std::string host = TerminalSafe(vm.host_name());
  std::string phase = JobPhaseName(s.phase());

  // The tail after the bar, and a shorter one without the bytes.
  std::string tail;
  std::string short_tail;
  if (s.phase() == v1::JOB_PHASE_EXPORT) {
    if (!rate.has_value()) rate = AverageRate(s, ctx.now);
    const std::optional<absl::Duration> eta =
        EstimateEta(s.bytes_done(), s.bytes_total(), rate.value_or(0));
    const std::string speed = absl::StrCat(
        rate.has_value() ? FormatRate(*rate) : "-- MiB/s", "  ETA ",
        eta.has_value() ? FormatShortDuration(*eta) : "--");
    const std::string percent = Percent(s.bytes_done(), s.bytes_total());
    tail = absl::StrCat(
        percent, "  ", BytesDone(s.bytes_done(), s.bytes_total()), "  ", speed);
    short_tail = absl::StrCat(percent, "  ", speed);
  } else if (std::optional<absl::Duration> d = JobDuration(s, ctx.now)) {
    tail = FormatShortDuration(*d);
    short_tail = tail;
  }
  if (s.attempt() > 1) {
    const std::string attempt = absl::StrCat("  (attempt ", s.attempt(), ")");
    absl::StrAppend(&tail, attempt);
    absl::StrAppend(&short_tail, attempt);
  }

  auto compose = [&](size_t name_cols, size_t host_cols, bool with_bar,
                     absl::string_view tail_text) {
    std::string head = absl::StrCat("  ", Column(name, name_cols), "  ",
                                    Column(host, host_cols), "  ",
                                    Column(phase, kPhaseColumns), "  ");
    if (with_bar) {
      const size_t used = DisplayWidth(head) + DisplayWidth(tail_text) + 2;
      if (used + kMinBarCells + 2 > avail) return std::string();
      const size_t cells = std::min(kMaxBarCells, avail - used - 2);
      absl::StrAppend(
          &head, ProgressBar(s.bytes_done(), s.bytes_total(), cells), "  ");
    }
    std::string line = absl::StrCat(head, tail_text);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line;
  };
  // From the widest layout to the narrowest: names are shortened first,
  // then the bytes go (`status` has them), then the bar.
  if (name_columns == 0) name_columns = DisplayWidth(name);
  if (host_columns == 0) host_columns = DisplayWidth(host);
  const size_t name_cols =
      std::min(kNameColumns, std::max<size_t>(8, name_columns));
  const size_t host_cols =
      std::min(kHostColumns, std::max<size_t>(4, host_columns));
  const size_t mid_name = std::min<size_t>(name_cols, 16);
  const size_t small_name = std::min<size_t>(name_cols, 12);
  const size_t small_host = std::min<size_t>(host_cols, 10);
  const bool bar = s.phase() == v1::JOB_PHASE_EXPORT;
  struct Layout {
    size_t name_cols;
    size_t host_cols;
    bool bar;
    const std::string* tail;
  };
  const Layout layouts[] = {
      {name_cols, host_cols, bar, &tail},
      {mid_name, host_cols, bar, &tail},
      {small_name, small_host, bar, &tail},
      {mid_name, host_cols, bar, &short_tail},
      {small_name, small_host, bar, &short_tail},
      {small_name, small_host, false, &tail},
      {small_name, small_host, false, &short_tail},
  };
  std::string line;
  for (const Layout& l : layouts) {
    line = compose(l.name_cols, l.host_cols, l.bar, *l.tail);
    if (!line.empty() && DisplayWidth(line) <= avail) return line;
  }
  return FitToWidth(line, avail);
}

std::string FinishedVmLine(const v1::VmOutcome& vm) {
  const v1::JobStatus& s = vm.status();
  std::string word;
  switch (s.phase()) {
    case v1::JOB_PHASE_SUCCEEDED:
      word = "OK";
      break;
    case v1::JOB_PHASE_FAILED:
      word = "FAILED";
      break;
    case v1::JOB_PHASE_CANCELLED:
      word = "CANCELLED";
      break;
    default:
      word = absl::AsciiStrToUpper(JobPhaseName(s.phase()));
      if (word == "-") word = "NOT RUN";
  }
  std::string line =
      absl::StrCat(PadRight(word, 9), " ", TerminalSafe(vm.vm_name()));
  if (!vm.host_name().empty()) {
    absl::StrAppend(&line, " on ", TerminalSafe(vm.host_name()));
  }
  if (s.phase() == v1::JOB_PHASE_SUCCEEDED) {
    std::vector<std::string> parts;
    if (s.backup_bytes() > 0) parts.push_back(FormatBytes(s.backup_bytes()));
    if (s.started_unix_ms() != 0 && s.finished_unix_ms() != 0) {
      parts.push_back(absl::StrCat(
          "in ", FormatShortDuration(FromUnixMillis(s.finished_unix_ms()) -
                                     FromUnixMillis(s.started_unix_ms()))));
    }
    if (!parts.empty()) absl::StrAppend(&line, ": ", absl::StrJoin(parts, " "));
    if (s.warnings_size() > 0) {
      absl::StrAppend(&line, " (",
                      Plural(s.warnings_size(), "warning", "warnings"), ": ",
                      TerminalSafe(s.warnings(0)), ")");
    }
  } else if (s.phase() == v1::JOB_PHASE_FAILED ||
             s.phase() == v1::JOB_PHASE_CANCELLED) {
    const std::string reason = FailureReason(s);
    if (!reason.empty()) absl::StrAppend(&line, ": ", reason);
  }
  if (s.attempt() > 1) absl::StrAppend(&line, " (attempt ", s.attempt(), ")");
  return line;
}

std::vector<std::string> RunStatusLines(const v1::RunSummary& run,
                                        const ViewContext& ctx) {
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("run ", TerminalSafe(run.run_id()), ": ",
                               RunStateName(run.state())));
  std::vector<std::vector<std::string>> head;
  head.push_back({"config:", TerminalSafe(run.config_name())});
  head.push_back({"backup_dir:", TerminalSafe(run.backup_dir())});
  head.push_back(
      {"started:", FormatTimestamp(run.started_unix_ms(), ctx.time_zone)});
  if (run.finished_unix_ms() != 0) {
    std::string finished =
        FormatTimestamp(run.finished_unix_ms(), ctx.time_zone);
    if (run.started_unix_ms() != 0) {
      absl::StrAppend(
          &finished, " (took ",
          FormatShortDuration(FromUnixMillis(run.finished_unix_ms()) -
                              FromUnixMillis(run.started_unix_ms())),
          ")");
    }
    head.push_back({"finished:", finished});
  } else if (run.started_unix_ms() != 0) {
    head.push_back(
        {"finished:",
         absl::StrCat("- (running for ",
                      FormatShortDuration(
                          ctx.now - FromUnixMillis(run.started_unix_ms())),
                      ")")});
  }
  head.push_back(
      {"VMs:", absl::StrCat(run.vms_size(), " (S:", run.succeeded(),
                            " W:", run.warnings(), " E:", run.errors(), ")")});
  if (!run.summary_line().empty()) {
    head.push_back({"summary:", TerminalSafe(run.summary_line())});
  }
  if (!run.fatal().empty()) {
    head.push_back({"error:", TerminalSafe(run.fatal())});
  }
  for (const std::string& w : run.run_warnings()) {
    head.push_back({"warning:", TerminalSafe(w)});
  }
  if (!run.pool_db_dump().empty()) {
    head.push_back({"pool DB:", TerminalSafe(run.pool_db_dump())});
  }
  if (!run.verify().empty()) {
    head.push_back({"read back:", TerminalSafe(run.verify())});
  }
  for (const std::string& f : run.verify_findings()) {
    head.push_back({"", TerminalSafe(f)});
  }
  if (!run.mail().empty()) {
    head.push_back({"e-mail:", TerminalSafe(run.mail())});
  }
  for (std::string& line : AlignColumns(head, "  "))
    lines.push_back(std::move(line));
  if (run.vms_size() == 0) return lines;

  lines.push_back("");
  std::vector<std::vector<std::string>> rows;
  rows.push_back(
      {"VM", "HOST", "KIND", "RESULT", "SIZE", "DURATION", "REASON"});
  for (const v1::VmOutcome& vm : run.vms()) {
    const v1::JobStatus& s = vm.status();
    std::string result;
    std::string reason;
    switch (s.phase()) {
      case v1::JOB_PHASE_SUCCEEDED:
        result = s.warnings_size() > 0 ? "WARNINGS" : "OK";
        reason = TerminalSafe(absl::StrJoin(s.warnings(), "; "));
        break;
      case v1::JOB_PHASE_FAILED:
        result = "FAILED";
        reason = FailureReason(s);
        break;
      case v1::JOB_PHASE_CANCELLED:
        result = "CANCELLED";
        reason = FailureReason(s);
        break;
      default:
        result = JobPhaseName(s.phase());
        if (s.phase() == v1::JOB_PHASE_EXPORT) {
          absl::StrAppend(&result, " ",
                          absl::StripAsciiWhitespace(
                              Percent(s.bytes_done(), s.bytes_total())));
        }
    }
    if (s.attempt() > 1)
      absl::StrAppend(&result, " (attempt ", s.attempt(), ")");
    std::string size = "-";
    if (s.backup_bytes() > 0) {
      size = FormatBytes(s.backup_bytes());
    } else if (s.phase() == v1::JOB_PHASE_EXPORT) {
      size = BytesDone(s.bytes_done(), s.bytes_total());
    }
    const std::optional<absl::Duration> d = JobDuration(s, ctx.now);
    const std::string kind(ExportKindName(vm.kind()));
    rows.push_back({TerminalSafe(vm.vm_name()),
                    vm.host_name().empty() ? "-" : TerminalSafe(vm.host_name()),
                    kind.empty() ? "-" : kind, result, size,
                    d.has_value() ? FormatShortDuration(*d) : "-", reason});
  }
  for (std::string& line : AlignColumns(rows, "  "))
    lines.push_back(std::move(line));
  return lines;
}

std::vector<std::string> RunListLines(const v1::ListRunsResponse& runs,
                                      const ViewContext& ctx) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"RUN", "STATE", "STARTED", "RESULT", "CONFIG"});
  for (const v1::RunSummary& run : runs.runs()) {
    rows.push_back(
        {TerminalSafe(run.run_id()), RunStateName(run.state()),
         FormatTimestamp(run.started_unix_ms(), ctx.time_zone),
         absl::StrCat("S:", run.succeeded(), " W:", run.warnings(),
                      " E:", run.errors()),
         run.config_name().empty() ? "-" : TerminalSafe(run.config_name())});
  }
  return AlignColumns(rows, "");
}

std::vector<std::string> AgentListLines(const v1::ListAgentsResponse& agents,
                                        const ViewContext& ctx) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"AGENT", "HOST", "STATE", "JOBS", "LAST SEEN", "VERSION",
                  "CERTIFICATE"});
  std::vector<std::string> warnings;
  for (const v1::AgentInfo& a : agents.agents()) {
    std::string cert = "-";  // plaintext
    if (a.certificate_not_after_unix_ms() != 0) {
      const absl::Time until =
          FromUnixMillis(a.certificate_not_after_unix_ms());
      cert = absl::StrCat("until ",
                          absl::FormatTime("%Y-%m-%d", until, ctx.time_zone));
      const std::string warning = ExpiryWarning(
          absl::StrCat("agent ", TerminalSafe(a.identity().agent_id())),
          TerminalSafe(a.certificate()), until, ctx.now);
      if (!warning.empty()) {
        cert += " (!)";
        warnings.push_back("warning: " + warning);
      }
    }
    std::string seen = "never";
    if (a.last_seen_unix_ms() != 0) {
      seen = absl::StrCat(
          FormatShortDuration(ctx.now - FromUnixMillis(a.last_seen_unix_ms())),
          " ago");
    }
    const v1::AgentIdentity& id = a.identity();
    rows.push_back({TerminalSafe(id.agent_id()),
                    id.host_name().empty() ? "-" : TerminalSafe(id.host_name()),
                    a.live() ? "live" : "lost",
                    absl::StrCat(a.running_jobs(), "/", a.max_jobs()), seen,
                    id.version().empty() ? "-" : TerminalSafe(id.version()),
                    cert});
  }
  std::vector<std::string> out = AlignColumns(rows, "");
  out.insert(out.end(), warnings.begin(), warnings.end());
  return out;
}

RunWatchView::RunWatchView(std::string address)
    : address_(std::move(address)) {}

void RunWatchView::Apply(const v1::RunUpdate& update, absl::Time now) {
  summary_ = update.summary();
  for (const v1::VmOutcome& vm : summary_.vms()) {
    const v1::JobStatus& s = vm.status();
    if (s.phase() != v1::JOB_PHASE_EXPORT) {
      rates_.erase(vm.vm_uuid());
      continue;
    }
    Samples& samples = rates_[vm.vm_uuid()];
    if (samples.attempt != s.attempt() ||
        (!samples.points.empty() &&
         samples.points.back().second > s.bytes_done())) {
      samples = Samples{s.attempt(), {}};
    }
    samples.points.emplace_back(now, s.bytes_done());
    while (samples.points.size() > 1 &&
           samples.points.front().first < now - kRateWindow) {
      samples.points.pop_front();
    }
  }
}

std::optional<double> RunWatchView::RecentRate(const v1::VmOutcome& vm,
                                               absl::Time now) const {
  auto it = rates_.find(vm.vm_uuid());
  if (it == rates_.end() || it->second.points.empty()) return std::nullopt;
  const auto& points = it->second.points;
  // Measured up to now, not to the last update: a stalled export (no
  // updates) shows its rate falling.
  const absl::Duration span = now - points.front().first;
  if (span < kMinRateSpan) return std::nullopt;
  return static_cast<double>(points.back().second - points.front().second) /
         absl::ToDoubleSeconds(span);
}

std::string RunWatchView::HeaderAndPermanentLines(bool all) {
  std::string out;
  if (!header_drawn_ && (all || summary_.vms_size() > 0 ||
                         summary_.state() != v1::RUN_STATE_RUNNING)) {
    for (const std::string& line : RunHeaderLines(summary_, address_)) {
      absl::StrAppend(&out, "\x1b[2K", line, "\n");
    }
    header_drawn_ = true;
  }
  for (const v1::VmOutcome& vm : summary_.vms()) {
    if (!all && !IsTerminalPhase(vm.status().phase())) continue;
    if (!finished_.insert(VmKey(vm)).second) continue;
    absl::StrAppend(&out, "\x1b[2K", FinishedVmLine(vm), "\n");
  }
  return out;
}

std::string RunWatchView::ClearLive() {
  if (live_drawn_ == 0) return "";
  std::string out = absl::StrCat("\r\x1b[", live_drawn_, "A\x1b[J");
  live_drawn_ = 0;
  return out;
}

std::string RunWatchView::Draw(const ViewContext& ctx) {
  std::string out;
  if (live_drawn_ > 0) absl::StrAppend(&out, "\r\x1b[", live_drawn_, "A");
  live_drawn_ = 0;
  absl::StrAppend(&out, HeaderAndPermanentLines(false));
  std::vector<const v1::VmOutcome*> running;
  size_t queued = 0;
  size_t name_columns = 0;
  size_t host_columns = 0;
  for (const v1::VmOutcome& vm : summary_.vms()) {
    const v1::JobPhase phase = vm.status().phase();
    if (IsTerminalPhase(phase)) continue;
    if (phase == v1::JOB_PHASE_QUEUED || phase == v1::JOB_PHASE_UNSPECIFIED) {
      ++queued;
      continue;
    }
    running.push_back(&vm);
    if (running.size() <= kMaxLiveVms) {
      name_columns =
          std::max(name_columns, DisplayWidth(TerminalSafe(vm.vm_name())));
      host_columns =
          std::max(host_columns, DisplayWidth(TerminalSafe(vm.host_name())));
    }
  }
  std::vector<std::string> live;
  for (size_t i = 0; i < running.size() && i < kMaxLiveVms; ++i) {
    live.push_back(LiveVmLine(*running[i], RecentRate(*running[i], ctx.now),
                              ctx, name_columns, host_columns));
  }
  const size_t avail = static_cast<size_t>(std::max(ctx.width, 20)) - 1;
  if (running.size() > kMaxLiveVms) {
    live.push_back(
        FitToWidth(absl::StrCat("  ... and ", running.size() - kMaxLiveVms,
                                " more running"),
                   avail));
  }
  if (queued > 0) {
    live.push_back(FitToWidth(absl::StrCat("  ", queued, " queued"), avail));
  }
  for (const std::string& line : live) {
    absl::StrAppend(&out, "\x1b[2K", line, "\n");
  }
  absl::StrAppend(&out, "\x1b[J");
  live_drawn_ = live.size();
  return out;
}

std::string RunWatchView::Finish() {
  std::string out = ClearLive();
  absl::StrAppend(&out, HeaderAndPermanentLines(true));
  return out;
}

}  // namespace vmb::coordinator
