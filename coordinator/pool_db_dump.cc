// SPDX-License-Identifier: Apache-2.0
#include "coordinator/pool_db_dump.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/backup/backup_layout.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/xapi_http_stream.h"
#include "common/xapi/xapi_task.h"
#include "common/xapi/xenapi_error.h"

namespace vmb::coordinator {
namespace {

// A dump being written: ".pool_db_<time>.dump.partial".
constexpr absl::string_view kPartialSuffix = ".partial";

}  // namespace

absl::StatusOr<PoolDbDumpResult> DumpPoolDatabase(XenApiClient& xapi,
                                                  Filesystem& fs, Clock& clock,
                                                  const PoolDbDumpOptions& o) {
  const std::string dir =
      JoinPath(o.backup_dir, PoolDbFolderName(o.master_name));
  absl::Status s = CreateDirDurably(fs, dir);
  if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
  // What crashed runs left, whatever their time: only this run writes here
  // (it holds the share's lock).
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> before, fs.ListDir(dir));
  for (const DirEntry& e : before) {
    if (!e.is_dir && absl::StartsWith(e.name, ".pool_db_") &&
        absl::EndsWith(e.name, kPartialSuffix)) {
      absl::Status removed = fs.RemoveFile(JoinPath(dir, e.name));
      if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
    }
  }
  const std::string name =
      PoolDbFileName(absl::ToCivilSecond(clock.Now(), o.time_zone));
  const std::string final_path = JoinPath(dir, name);
  const std::string partial =
      JoinPath(dir, absl::StrCat(".", name, kPartialSuffix));

  VMB_ASSIGN_OR_RETURN(std::string session, xapi.SessionRef());
  VMB_ASSIGN_OR_RETURN(std::string task,
                       xapi.CreateTask("vmbackup pool database dump", ""));
  PoolDbDumpResult result;
  absl::Status status = [&]() -> absl::Status {
    VMB_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                         fs.NewWritableFile(partial));
    XapiStreamRequest req;
    req.base_url = o.master_url;
    req.path = "/pool/xmldbdump";
    req.session_id = session;
    req.task_id = task;
    req.allowed_redirect_hosts = o.redirect_hosts;
    req.tls = o.tls;
    std::string head, tail;
    VMB_RETURN_IF_ERROR(
        XapiStreamGet(req, [&](absl::string_view data) -> absl::Status {
          if (head.size() < 256) {
            absl::StrAppend(&head, data.substr(0, 256 - head.size()));
          }
          // The last 64 bytes, without copying the whole piece.
          absl::StrAppend(&tail,
                          data.substr(data.size() > 64 ? data.size() - 64 : 0));
          if (tail.size() > 64) tail.erase(0, tail.size() - 64);
          result.bytes += data.size();
          return file->Append(data);
        }).status());
    if (!absl::StrContains(head, "<database") ||
        !absl::EndsWith(absl::StripTrailingAsciiWhitespace(tail),
                        "</database>")) {
      return absl::DataLossError(absl::StrCat(
          "the pool database dump is incomplete (", result.bytes, " bytes)"));
    }
    VMB_ASSIGN_OR_RETURN(TaskRecord t,
                         WaitForTask(xapi, clock, task, absl::Seconds(60)));
    if (t.status != TaskStatus::kSuccess) {
      return Annotate(
          t.error_info.empty() ? absl::DataLossError("no error given")
                               : XenApiFailureToStatus(t.error_info),
          "the pool database dump task ended ", TaskStatusName(t.status));
    }
    VMB_RETURN_IF_ERROR(file->Sync());
    return file->Close();
  }();
  const absl::Status destroyed = xapi.DestroyTask(task);
  (void)destroyed;  // best effort: XAPI collects finished tasks itself
  if (!status.ok()) {
    const absl::Status cleanup = fs.RemoveFile(partial);
    (void)cleanup;  // best effort: the next dump removes it
    return Annotate(status, "pool database dump");
  }
  VMB_RETURN_IF_ERROR(fs.Rename(partial, final_path));
  VMB_RETURN_IF_ERROR(fs.SyncDir(dir));
  result.path = final_path;

  // Retention: the newest `keep` dumps.
  VMB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, fs.ListDir(dir));
  std::vector<std::string> dumps;
  for (const DirEntry& e : entries) {
    if (!e.is_dir && ParsePoolDbFileName(e.name)) dumps.push_back(e.name);
  }
  std::sort(dumps.begin(), dumps.end());
  const size_t keep = static_cast<size_t>(std::max(1, o.keep));
  for (size_t i = 0; i + keep < dumps.size(); ++i) {
    if (dumps[i] == name) continue;
    VMB_RETURN_IF_ERROR(fs.RemoveFile(JoinPath(dir, dumps[i])));
    result.removed.push_back(dumps[i]);
  }
  return result;
}

}  // namespace vmb::coordinator
