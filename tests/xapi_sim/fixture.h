// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include "absl/status/statusor.h"

#include "tests/xapi_sim/fixture.pb.h"

namespace vmb::sim {

// Parses a fixture from JSON (docs/xapi-sim.md). Unknown fields are errors.
// Errors: INVALID_ARGUMENT with the parser's message.
absl::StatusOr<Fixture> ParseFixture(const std::string& json);

// The built-in demo pool (demo_pool.json): 3 hosts, a shared NFS SR, a local
// SR per host, 15 VMs named after the seed README's examples.
const std::string& DemoFixtureJson();
Fixture DemoFixture();

}  // namespace vmb::sim
