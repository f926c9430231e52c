// SPDX-License-Identifier: Apache-2.0
#include "common/backup/attempt_file.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

#include "common/base/logging.h"
#include "common/base/status_macros.h"

namespace vmb {
namespace {

// Keeps the parser's first error for the status instead of protobuf's log.
class FirstError final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    error_ =
        absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber,
                  const std::string&) override {
  }  // unknown fields: later versions'

  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

}  // namespace

absl::Status WriteAttemptFile(Filesystem& fs, const std::string& folder,
                              const v1::AttemptFile& attempt) {
  if (attempt.job_id().empty()) {
    return absl::InvalidArgumentError("an attempt file needs a job_id");
  }
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(attempt, &text)) {
    return absl::InternalError("cannot format the attempt file");
  }
  VMB_RETURN_IF_ERROR(
      WriteNewFile(fs, JoinPath(folder, kAttemptFileName), text));
  return fs.SyncDir(folder);
}

absl::StatusOr<v1::AttemptFile> ReadAttemptFile(Filesystem& fs,
                                                const std::string& folder) {
  const std::string path = JoinPath(folder, kAttemptFileName);
  const auto malformed = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attempt file ", EscapeForLog(path), " is malformed: ", why));
  };
  // lstat first: a link, a FIFO (open would wait for a writer) or a huge
  // file is never opened.
  VMB_ASSIGN_OR_RETURN(FileInfo info, fs.Stat(path));
  if (!info.is_regular) {
    return malformed("not a regular file");
  }
  if (info.size > kMaxAttemptFileBytes) {
    return malformed(
        absl::StrCat(info.size, " bytes (at most ", kMaxAttemptFileBytes, ")"));
  }
  absl::StatusOr<std::string> text = fs.ReadFile(path, kMaxAttemptFileBytes);
  if (absl::IsOutOfRange(text.status())) {
    return malformed(absl::StrCat("over ", kMaxAttemptFileBytes, " bytes"));
  }
  if (!text.ok()) return text.status();
  v1::AttemptFile attempt;
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(*text, &attempt)) {
    return malformed(errors.error().empty() ? "does not parse"
                                            : EscapeForLog(errors.error()));
  }
  if (attempt.job_id().empty()) return malformed("no job_id");
  return attempt;
}

}  // namespace vmb
