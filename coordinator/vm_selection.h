// SPDX-License-Identifier: Apache-2.0
#pragma once

// Resolving a policy's exclude / vm-export / vdi-export rules against the
// pool's VMs, once. The seed's rules, with its bugs fixed:
//
// - Candidates are VMs that are not templates, not snapshots and not control
//   domains, identified by UUID: a template or snapshot never shadows a VM,
//   and VMs sharing a name are all selected (with a warning).
// - A NAME (ASCII letters, digits, '_', '-', whitespace) matches exactly; any
//   other pattern is a regular expression anchored at the start only, like
//   Python's re.match (RE2 syntax: no backreferences or lookaround).
// - Excludes apply to both lists wherever they stand.
// - Within a list the last rule for a VM sets its max_backups; the VM keeps
//   the position of its first mention. vdi-export wins over vm-export in any
//   order. A VM is never listed twice.
// - A rule that matches nothing is a warning; no VM at all is an error.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "coordinator/backup_policy.h"

namespace vmb::coordinator {

struct SelectionCandidate {
  std::string uuid;
  std::string name;
};

struct SelectedVm {
  std::string uuid;
  std::string name;
  bool vdi_export = false;  // else vm-export
  int max_backups = 0;      // the effective value
  bool max_backups_from_rule = false;
  int line = 0;              // the rule that set max_backups (0: command line)
  std::string rule;          // its text
  bool shares_name = false;  // another selected VM has the same name
};

struct Selection {
  std::vector<SelectedVm> vdi_exports;  // in order
  std::vector<SelectedVm> vm_exports;
  std::vector<SelectionCandidate> excluded;
  std::vector<PolicyWarning> warnings;
};

// Errors: INVALID_ARGUMENT "<source>:<line>: invalid regex ..." for a pattern
// RE2 refuses; "<source>:<line>: ... matches no VM; if ':X' was meant ..." for
// a rule whose text before its last ':' would have matched a VM;
// FAILED_PRECONDITION when no VM is selected at all.
absl::StatusOr<Selection> SelectVms(
    const BackupPolicy& policy,
    const std::vector<SelectionCandidate>& candidates);

// True if `pattern` is a simple name (exact match), false if a regex.
bool IsSimpleName(absl::string_view pattern);

}  // namespace vmb::coordinator
