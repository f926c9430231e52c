// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the coordinator commands of the command line print (docs/cli.md):
// the live view of `vmbackup run` on a terminal, and the tables of
// `vmbackup status`, `runs` and `agents`. Pure functions of the messages, the
// terminal's width and the time, so that tests need no terminal; and
// RunWatchView, which remembers what it drew to redraw the live lines in
// place.
//
// Every name, host and reason taken from a message goes through
// TerminalSafe(): a VM name holding control characters or an escape sequence
// cannot move the cursor or forge a line. Widths count code points (a
// double-width character counts as one column).

#include <stddef.h>
#include <stdint.h>

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "proto/coordinator.pb.h"

namespace vmb::coordinator {

struct ViewContext {
  int width = 80;            // the terminal's columns
  absl::Time now;            // for rates, ages, and running jobs' durations
  absl::TimeZone time_zone;  // times are shown in it (default UTC)
};

// EscapeForLog (common/base/logging.h), then C1 control characters
// (U+0080..U+009F) as \u00NN and bytes that are not UTF-8 as \xNN.
std::string TerminalSafe(absl::string_view text);
// The cells of `rows` aligned in columns two spaces apart (by display
// width), each line starting with `indent`; the last column is not padded
// and no line ends in blanks.
std::vector<std::string> AlignColumns(
    const std::vector<std::vector<std::string>>& rows,
    absl::string_view indent);
// Code points of UTF-8 text.
size_t DisplayWidth(absl::string_view text);
// `text` cut to `width` code points, the cut marked with "..."; never splits
// a UTF-8 sequence.
std::string FitToWidth(absl::string_view text, size_t width);

// "[#####.....]": `cells` cells between brackets, '#' for the done part
// (rounded down, full only when done >= total), '.' for the rest; all '.'
// when the total is unknown (0).
std::string ProgressBar(uint64_t done, uint64_t total, size_t cells);
// "85.3 MiB/s" (MiB = 2^20 bytes).
std::string FormatRate(double bytes_per_second);
// "45s", "12m05s", "3h02m", "2d04h"; negative durations as "0s".
std::string FormatShortDuration(absl::Duration d);
// The time left at `bytes_per_second`; none when the rate is not positive
// or the total is unknown.
std::optional<absl::Duration> EstimateEta(uint64_t done, uint64_t total,
                                          double bytes_per_second);
// "2026-11-26 03:00:01" in `time_zone`; "-" for 0.
std::string FormatTimestamp(uint64_t unix_ms, absl::TimeZone time_zone);
// "queued", "preflight", "snapshot", "export", "metadata", "cleanup",
// "verified" (awaiting its commit), "commit", "succeeded", "failed",
// "cancelled"; "-" unspecified.
std::string JobPhaseName(v1::JobPhase phase);
// "running", "succeeded", "warnings", "failed", "cancelled"; "unknown".
std::string RunStateName(v1::RunState state);
// The terminal phases: SUCCEEDED, FAILED, CANCELLED.
bool IsTerminalPhase(v1::JobPhase phase);
// The average rate of a job's export since it started: bytes_done over
// now - started; none before it started or moved a byte.
std::optional<double> AverageRate(const v1::JobStatus& status, absl::Time now);

// The run's first lines on a terminal: run id and coordinator, then config,
// backup_dir and the number of VMs.
std::vector<std::string> RunHeaderLines(const v1::RunSummary& run,
                                        absl::string_view address);
// One running VM, at most ctx.width - 1 columns (a line that fills the last
// column would wrap on some terminals and break the redraw): name, host,
// phase, and while it exports a progress bar, percent, bytes done/total,
// MiB/s, ETA. `rate` is the recent rate (RunWatchView's); without one, the
// average since the job started. Parts are dropped (bar first) or names
// shortened when the width is small. `name_columns` / `host_columns`: the
// widths of the name and host columns (RunWatchView passes the widest of its
// live VMs, so that the lines align); 0: this VM's own. Capped at 24 and 12.
std::string LiveVmLine(const v1::VmOutcome& vm, std::optional<double> rate,
                       const ViewContext& ctx, size_t name_columns = 0,
                       size_t host_columns = 0);
// The permanent line of a finished VM: "OK        name on host: 1.5 GiB in
// 4m12s", "FAILED    name on host: TOKEN at step: reason", "CANCELLED ...";
// not cut to the width (it scrolls away, a wrap does no harm).
std::string FinishedVmLine(const v1::VmOutcome& vm);

// `vmbackup status`: the run's header (id, state, config, backup_dir,
// started and finished, counts, summary line, fatal error, run warnings),
// then a table: VM, host, kind, result or phase, size, duration, reason
// (status token and error of a failed one; warnings of a successful one).
std::vector<std::string> RunStatusLines(const v1::RunSummary& run,
                                        const ViewContext& ctx);
// `vmbackup runs`: a heading, then one line per run: id, state, started,
// S/W/E counts, config.
std::vector<std::string> RunListLines(const v1::ListRunsResponse& runs,
                                      const ViewContext& ctx);
// `vmbackup agents`: a heading, then one line per agent: id, host, live or
// lost, running/max jobs, last seen (ago), version.
std::vector<std::string> AgentListLines(const v1::ListAgentsResponse& agents,
                                        const ViewContext& ctx);

// The live view of a run on a terminal: a header once the VMs are known, a
// permanent line for each VM as it finishes, and below them the live lines
// of the running VMs (at most kMaxLiveVms, then "... and N more running"),
// and "N queued", redrawn in place with ANSI cursor movement (cursor up,
// erase line, erase below). Remembers the recent bytes of each export to
// show its current rate.
//
// Thread-compatible (one thread calls it).
class RunWatchView {
 public:
  static constexpr size_t kMaxLiveVms = 20;

  explicit RunWatchView(std::string address);

  // Takes the update received at `now`.
  void Apply(const v1::RunUpdate& update, absl::Time now);
  // What to write to redraw: the header if it is due, permanent lines for
  // VMs finished since the last draw, and the live lines in place of the
  // ones drawn before.
  std::string Draw(const ViewContext& ctx);
  // Erases the live lines (before writing something else to the terminal);
  // the next Draw draws them again, below what was written.
  std::string ClearLive();
  // The end of the view: the live lines erased, the header if it was never
  // drawn, and a permanent line for every VM not yet given one (a VM still
  // queued or running gets its phase in capitals).
  std::string Finish();

  const v1::RunSummary& summary() const { return summary_; }
  // The recent rate of a VM's export (over the last 20 s of updates, at
  // least 2 s of them); none before that.
  std::optional<double> RecentRate(const v1::VmOutcome& vm,
                                   absl::Time now) const;

 private:
  struct Samples {
    uint32_t attempt = 0;
    std::deque<std::pair<absl::Time, uint64_t>> points;  // time, bytes_done
  };
  std::string HeaderAndPermanentLines(bool all);

  const std::string address_;
  v1::RunSummary summary_;
  bool header_drawn_ = false;
  size_t live_drawn_ = 0;                 // live lines on screen now
  std::set<std::string> finished_;        // "<vm uuid>#<attempt>" printed
  std::map<std::string, Samples> rates_;  // by vm uuid
};

}  // namespace vmb::coordinator
