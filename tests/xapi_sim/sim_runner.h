// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <signal.h>

#include <string>

#include "absl/status/status.h"

namespace vmb::sim {

struct SimOptions {
  std::string fixture_path;  // empty: the built-in demo pool
  int port = 0;
  std::string ready_file;
  std::string tls_cert_path;
  std::string tls_key_path;
  // Per-host certificates: DIR/<host name_label>.pem and .key for every
  // host. Not together with tls_cert_path/tls_key_path.
  std::string tls_cert_dir;
  bool print_demo_fixture = false;
};

// Loads the fixture, starts every host, writes the ready file, and serves
// until one of `stop_signals` arrives (they must be blocked in every thread).
// Errors: INVALID_ARGUMENT for a bad fixture or flags, UNAVAILABLE when the
// hosts cannot listen.
absl::Status RunSimulator(const SimOptions& options,
                          const sigset_t& stop_signals);

}  // namespace vmb::sim
