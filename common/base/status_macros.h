// SPDX-License-Identifier: Apache-2.0
#pragma once

// Propagation macros for absl::Status, spelled so that they can later be
// aliased to ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN once Debian's Abseil
// has them.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VMB_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status vmb_status_ = (expr);       \
    if (!vmb_status_.ok()) return vmb_status_; \
  } while (false)

#define VMB_STATUS_CONCAT_INNER_(a, b) a##b
#define VMB_STATUS_CONCAT_(a, b) VMB_STATUS_CONCAT_INNER_(a, b)

#define VMB_ASSIGN_OR_RETURN(lhs, expr)                                        \
  VMB_ASSIGN_OR_RETURN_IMPL_(VMB_STATUS_CONCAT_(vmb_statusor_, __LINE__), lhs, \
                             expr)

#define VMB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)
