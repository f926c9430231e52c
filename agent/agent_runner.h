// SPDX-License-Identifier: Apache-2.0
#pragma once

// The vmbackup-agent process: its settings and the one function that wires
// the real implementations together (agent/agent_main.cc is the main;
// docs/operations.md, "The agent", is the manual).

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

#include "agent/xensource_inventory.h"
#include "common/rpc/mtls.h"

namespace vmb::agent {

// The process settings, one field a flag.
struct AgentOptions {
  std::string coordinator;  // --coordinator HOST:PORT
  std::string host_uuid;    // --host-uuid; "": INSTALLATION_UUID of inventory
  std::string inventory_path = std::string(kXensourceInventoryPath);
  std::string agent_id;   // --agent-id; "": the host uuid
  std::string host_name;  // --host-name; "": gethostname(2)
  std::string state_dir;  // --state-dir
  int max_jobs = 2;       // --max-jobs, 1..64
  absl::Duration commit_wait = absl::Minutes(30);  // --commit-wait
  bool plaintext = false;                          // --plaintext
  MtlsFiles mtls;  // --mtls-ca, --mtls-cert, --mtls-key
};

// Checks `options` and fills in the defaults (reading `inventory_path` and
// the system's host name when needed). Errors: INVALID_ARGUMENT, naming the
// flag, for a missing or malformed value: no --coordinator or not
// HOST:PORT; neither the three --mtls-* flags nor --plaintext, or
// --plaintext to an address that is not loopback; no --state-dir or a
// relative one; --max-jobs outside 1..64; a --commit-wait that is not
// positive; no --host-uuid and no readable INSTALLATION_UUID in the
// inventory file (the message names both); a malformed --host-uuid or
// --agent-id.
absl::StatusOr<AgentOptions> ResolveAgentOptions(AgentOptions options);

// Splits "HOST:PORT" ("[v6]:PORT" for IPv6) into host and port.
// Errors: INVALID_ARGUMENT.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view target);

// Runs the agent until SIGINT or SIGTERM: creates the state folder (mode
// 0700) when missing and locks it, connects to the coordinator, runs the
// daemon (AgentDaemon), and on the signal stops it (jobs are cancelled and
// clean up) and returns. A second signal ends the process at once. Call it
// before any other thread starts: it blocks the signals for a thread of its
// own, and every later thread inherits the mask.
// Errors: the state folder cannot be made, read or locked (UNAVAILABLE when
// another agent holds it); the daemon's Start errors.
absl::Status RunAgent(const AgentOptions& options);

}  // namespace vmb::agent
