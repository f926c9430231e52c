// SPDX-License-Identifier: Apache-2.0
#pragma once

// The project's only logging header: a small facade spelled like absl/log
// (which Debian bookworm's Abseil lacks), so a later swap is mechanical.
//
//   VMB_LOG(INFO) << "job " << job_id << " exported " << bytes << " bytes";
//
// Each message becomes one line on stderr: severity letter, UTC time,
// file:line, message. Control characters in the message (a VM name holding a
// newline, say) are escaped, so no input can forge a log line. Never log
// secrets: passwords and session refs stay out of every message (and those
// registered with RegisterSecret, common/base/redact.h, are redacted).
//
// Thread-safe. The sink can be replaced for tests (ScopedLogSinkForTesting).

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vmb {

enum class LogSeverity { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

// Receives formatted log records. Implementations must be thread-safe.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Send(LogSeverity severity, absl::Time time,
                    absl::string_view file, int line,
                    absl::string_view message) = 0;
};

// Messages below `severity` are dropped (default kInfo).
void SetMinLogSeverity(LogSeverity severity);

// Installs `sink` for the lifetime of this object and restores the previous
// sink on destruction. `sink` must outlive this object.
class ScopedLogSinkForTesting {
 public:
  explicit ScopedLogSinkForTesting(LogSink* sink);
  ~ScopedLogSinkForTesting();
  ScopedLogSinkForTesting(const ScopedLogSinkForTesting&) = delete;
  ScopedLogSinkForTesting& operator=(const ScopedLogSinkForTesting&) = delete;

 private:
  LogSink* previous_;
};

// Returns `text` with control characters escaped (\n, \r, \t, \xNN) so that it
// is safe to put on one log or report line.
std::string EscapeForLog(absl::string_view text);

namespace logging_internal {

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();  // sends the line; aborts after a kFatal message
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

bool ShouldLog(LogSeverity severity);

}  // namespace logging_internal
}  // namespace vmb

#define VMB_LOG_SEVERITY_INFO ::vmb::LogSeverity::kInfo
#define VMB_LOG_SEVERITY_WARNING ::vmb::LogSeverity::kWarning
#define VMB_LOG_SEVERITY_ERROR ::vmb::LogSeverity::kError
#define VMB_LOG_SEVERITY_FATAL ::vmb::LogSeverity::kFatal

#define VMB_LOG(severity)                                                    \
  !::vmb::logging_internal::ShouldLog(VMB_LOG_SEVERITY_##severity)           \
      ? (void)0                                                              \
      : ::vmb::logging_internal::LogVoidify() &                              \
            ::vmb::logging_internal::LogMessage(VMB_LOG_SEVERITY_##severity, \
                                                __FILE__, __LINE__)          \
                .stream()

// For programmer errors only, never for input, I/O, network or XAPI failures.
#define VMB_CHECK(cond) \
  (cond) ? (void)0 : VMB_LOG(FATAL) << "Check failed: " #cond " "

namespace vmb::logging_internal {
struct LogVoidify {
  void operator&(std::ostream&) {}
};
}  // namespace vmb::logging_internal
