// SPDX-License-Identifier: Apache-2.0
#pragma once

// The one place secrets are redacted. A process registers each secret it
// holds (the pool password, the XAPI session refs it uses, an SMTP password)
// when it gets it; every log line (VMB_LOG) passes through Redact, and so
// must any other text that leaves the process (journal rows, reports,
// answers to clients). Code still never logs a secret on purpose: this
// catches the one that reaches an error message by a path nobody foresaw
// (a session ref in a XAPI fault, a password echoed by a server).
//
//   ScopedSecret password(RegisterSecret(text, "(password)"));
//   VMB_LOG(INFO) << Redact(message);   // VMB_LOG redacts by itself too
//
// Every occurrence of a registered secret is replaced by its replacement, so
// a very short secret (a one-letter password) makes log lines hard to read;
// it is redacted all the same. Empty secrets are ignored. Thread-safe.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace vmb {

// Registers `secret`; returns a handle for UnregisterSecret (0 when
// `secret` is empty and nothing was registered). The same secret may be
// registered more than once: it stays redacted until every handle is gone.
uint64_t RegisterSecret(absl::string_view secret,
                        absl::string_view replacement = "(secret)");
void UnregisterSecret(uint64_t handle);

// `text` with every registered secret replaced (the longest first, so a
// secret holding another is replaced whole).
std::string Redact(absl::string_view text);

// Unregisters on destruction.
class ScopedSecret {
 public:
  explicit ScopedSecret(uint64_t handle = 0) : handle_(handle) {}
  ~ScopedSecret() { UnregisterSecret(handle_); }
  ScopedSecret(ScopedSecret&& other) noexcept : handle_(other.handle_) {
    other.handle_ = 0;
  }
  ScopedSecret& operator=(ScopedSecret&& other) noexcept {
    if (this != &other) {
      UnregisterSecret(handle_);
      handle_ = other.handle_;
      other.handle_ = 0;
    }
    return *this;
  }
  ScopedSecret(const ScopedSecret&) = delete;
  ScopedSecret& operator=(const ScopedSecret&) = delete;

 private:
  uint64_t handle_;
};

}  // namespace vmb
