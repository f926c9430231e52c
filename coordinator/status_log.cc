// SPDX-License-Identifier: Apache-2.0
#include "coordinator/status_log.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "common/base/status_macros.h"
#include "common/base/status_util.h"

namespace vmb::coordinator {

std::string FormatStatusLogLine(absl::CivilSecond t, absl::string_view fields) {
  return absl::StrFormat("%04d/%02d/%02d %02d:%02d:%02d,%s\n", t.year(),
                         t.month(), t.day(), t.hour(), t.minute(), t.second(),
                         fields);
}

std::string StatusLogName(absl::string_view name) {
  std::string out;
  for (char ch : name) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", c));
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

StatusLog::StatusLog(Filesystem* fs, Clock* clock, absl::TimeZone zone,
                     std::string path, std::string server)
    : fs_(fs),
      clock_(clock),
      zone_(zone),
      path_(std::move(path)),
      server_(std::move(server)) {}

absl::Status StatusLog::Append(absl::string_view fields) {
  if (path_.empty()) return absl::OkStatus();
  const std::string line =
      FormatStatusLogLine(absl::ToCivilSecond(clock_->Now(), zone_), fields);
  absl::MutexLock lock(&mu_);
  VMB_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                       fs_->NewAppendableFile(path_));
  VMB_RETURN_IF_ERROR(Annotate(file->Append(line), "status_log"));
  return Annotate(file->Close(), "status_log");
}

absl::Status StatusLog::RunBegin() {
  return Append(absl::StrCat("vmbackup.py,", server_, ",begin"));
}

absl::Status StatusLog::RunEnd(absl::string_view result, int succeeded,
                               int warnings, int errors) {
  return Append(absl::StrCat("vmbackup.py,", server_, ",end,", result,
                             ",S:", succeeded, " W:", warnings, " E:", errors));
}

absl::Status StatusLog::JobBegin(absl::string_view kind, absl::string_view host,
                                 absl::string_view vm_name) {
  return Append(absl::StrCat(kind, ",", StatusLogName(host), ",begin,",
                             StatusLogName(vm_name)));
}

absl::Status StatusLog::JobEnd(absl::string_view kind, absl::string_view host,
                               absl::string_view outcome) {
  return Append(absl::StrCat(kind, ",", StatusLogName(host), ",end,", outcome));
}

std::string StatusLog::Completed(bool warning, absl::string_view vm_name,
                                 absl::Duration elapsed, uint64_t bytes) {
  return absl::StrCat(warning ? "WARNING " : "SUCCESS ", StatusLogName(vm_name),
                      ",elapse:", absl::ToInt64Minutes(elapsed),
                      " size:", bytes >> 30, "G");
}

std::string StatusLog::Failed(absl::string_view token,
                              absl::string_view vm_name,
                              absl::string_view reason) {
  std::string out = absl::StrCat(token, " ", StatusLogName(vm_name));
  if (!reason.empty()) absl::StrAppend(&out, ",", StatusLogName(reason));
  return out;
}

}  // namespace vmb::coordinator
