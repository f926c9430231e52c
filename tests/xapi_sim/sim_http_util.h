// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the simulator's download handlers (sim_http.cc) and upload handlers
// (sim_upload.cc) share. Internal to the simulator.

#include <stdint.h>

#include <string>
#include <vector>

#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {

// A request's parameter: from the query, else from a cookie of that name
// (XAPI takes session_id either way); "" when absent.
std::string Param(const HttpRequest& r, const std::string& name);

// The complete second response XAPI sometimes writes inside a 200 body
// (xen-api issue 4603), for EMBEDDED_500.
std::string EmbeddedErrorResponse(const std::vector<std::string>& error);

// Waits out a STALL of `ms` milliseconds (0: until the client leaves or the
// simulator stops), marking the request as stalling meanwhile. Returns false
// when the wait ended because the client left (*client_gone) or the
// simulator is stopping.
bool WaitOutStall(SimPool* pool, int log_index, int fd, uint32_t ms,
                  bool* client_gone);

// The stream faults that fire on one request's body, with their offsets.
struct SimPool::StreamFaults {
  bool stall = false;
  uint64_t stall_at = 0;
  uint32_t stall_ms = 0;
  bool cut = false;
  uint64_t cut_at = 0;
  std::vector<std::string> cut_error;
  bool embedded = false;
  uint64_t embedded_at = 0;
  std::vector<std::string> embedded_error;
  bool corrupt = false;
  uint64_t corrupt_at = 0;
  std::vector<std::string> task_error;  // TASK_FAIL
};

}  // namespace vmb::sim
