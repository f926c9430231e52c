// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "proto/agent.pb.h"

namespace vmb::agent {

// The agent's link to the coordinator: one long-poll call, made over and over
// by the agent's connection thread (docs/architecture.md, "The agent
// protocol"). The agent dials out; the coordinator never dials agents.
//
// GrpcCoordinatorConnection is the real one; tests use
// FakeCoordinatorConnection (tests/fakes/). Implementations are thread-safe.
class CoordinatorConnection {
 public:
  virtual ~CoordinatorConnection() = default;

  // Sends the agent's whole state and returns what the coordinator wants,
  // waiting at most `timeout` (the coordinator may hold the call for a few
  // seconds before it answers). Every error is retried by the caller after a
  // backoff; the codes say why: UNAVAILABLE when the coordinator cannot be
  // reached or the connection broke, DEADLINE_EXCEEDED when no answer came
  // within `timeout`, and whatever the coordinator answered otherwise
  // (INVALID_ARGUMENT for a state it refuses, FAILED_PRECONDITION for an
  // agent it does not accept, ...).
  virtual absl::StatusOr<v1::DesiredState> Synchronize(
      const v1::AgentState& state, absl::Duration timeout) = 0;

  // Makes a Synchronize call in progress return now with CANCELLED, so that
  // the agent can report news (a commit to grant, a job ended) without
  // waiting for the coordinator to let go of a held call. Does nothing when
  // no call is in progress (news that comes just before a call is sent waits
  // at most for its answer). May be called from any thread.
  virtual void Interrupt() {}
};

}  // namespace vmb::agent
