// SPDX-License-Identifier: Apache-2.0
#include "common/base/logging.h"

#include <stdio.h>
#include <stdlib.h>

#include <atomic>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

#include "common/base/redact.h"

namespace vmb {
namespace {

class StderrSink final : public LogSink {
 public:
  void Send(LogSeverity severity, absl::Time time, absl::string_view file,
            int line, absl::string_view message) override {
    static constexpr char kLetters[] = {'I', 'W', 'E', 'F'};
    absl::string_view base = file;
    if (size_t slash = base.rfind('/'); slash != absl::string_view::npos) {
      base.remove_prefix(slash + 1);
    }
    std::string out = absl::StrFormat(
        "%c%s %s:%d] %s\n", kLetters[static_cast<int>(severity)],
        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone()),
        base, line, message);
    absl::MutexLock lock(&mu_);
    fwrite(out.data(), 1, out.size(), stderr);
    fflush(stderr);
  }

 private:
  absl::Mutex mu_;
};

StderrSink* DefaultSink() {
  static StderrSink* sink = new StderrSink();
  return sink;
}

std::atomic<LogSink*> g_sink{nullptr};
std::atomic<int> g_min_severity{0};

LogSink* CurrentSink() {
  LogSink* sink = g_sink.load(std::memory_order_acquire);
  return sink != nullptr ? sink : DefaultSink();
}

}  // namespace

void SetMinLogSeverity(LogSeverity severity) {
  g_min_severity.store(static_cast<int>(severity), std::memory_order_relaxed);
}

ScopedLogSinkForTesting::ScopedLogSinkForTesting(LogSink* sink)
    : previous_(g_sink.exchange(sink, std::memory_order_acq_rel)) {}

ScopedLogSinkForTesting::~ScopedLogSinkForTesting() {
  g_sink.store(previous_, std::memory_order_release);
}

std::string EscapeForLog(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out;
}

namespace logging_internal {

bool ShouldLog(LogSeverity severity) {
  return severity == LogSeverity::kFatal ||
         static_cast<int>(severity) >=
             g_min_severity.load(std::memory_order_relaxed);
}

LogMessage::LogMessage(LogSeverity severity, const char* file, int line)
    : severity_(severity), file_(file), line_(line) {}

LogMessage::~LogMessage() {
  // Redacted before escaping: a secret is matched as it was given.
  CurrentSink()->Send(severity_, absl::Now(), file_, line_,
                      EscapeForLog(Redact(stream_.str())));
  if (severity_ == LogSeverity::kFatal) abort();
}

}  // namespace logging_internal
}  // namespace vmb
