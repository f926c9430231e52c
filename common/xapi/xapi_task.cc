// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xapi_task.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "common/base/status_macros.h"

namespace vmb {

absl::StatusOr<TaskRecord> WaitForTask(XenApiClient& xapi, Clock& clock,
                                       const std::string& task,
                                       absl::Duration limit) {
  const absl::Time until = clock.Now() + limit;
  absl::Duration pause = absl::Milliseconds(20);
  while (true) {
    VMB_ASSIGN_OR_RETURN(TaskRecord record, xapi.GetTask(task));
    if (record.status != TaskStatus::kPending &&
        record.status != TaskStatus::kCancelling) {
      return record;
    }
    if (clock.Now() >= until) {
      return absl::DeadlineExceededError(
          absl::StrCat("the task \"", record.name_label, "\" was still ",
                       TaskStatusName(record.status), " after ",
                       absl::FormatDuration(limit)));
    }
    clock.SleepFor(pause);
    pause = std::min(pause * 2, absl::Seconds(1));
  }
}

}  // namespace vmb
