// SPDX-License-Identifier: Apache-2.0
#pragma once

// Waiting for a XAPI task (an export, the pool database dump) to end.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "common/base/clock.h"
#include "common/xapi/xenapi_client.h"

namespace vmb {

// Polls task.get_record until the task is neither pending nor cancelling,
// and returns its final record; the caller decides what success means. The
// pauses (20 ms, doubling up to 1 s) and the limit are on `clock`. Errors:
// those of GetTask; DEADLINE_EXCEEDED when it is still running after `limit`.
absl::StatusOr<TaskRecord> WaitForTask(XenApiClient& xapi, Clock& clock,
                                       const std::string& task,
                                       absl::Duration limit);

}  // namespace vmb
