// SPDX-License-Identifier: Apache-2.0
#include "coordinator/vm_selection.h"

#include <map>
#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <re2/re2.h>

namespace vmb::coordinator {
namespace {

// Matches VM names against one rule's pattern.
class Matcher {
 public:
  static absl::StatusOr<Matcher> Compile(const std::string& pattern) {
    Matcher m;
    m.pattern_ = pattern;
    if (pattern.empty() || IsSimpleName(pattern)) return m;
    RE2::Options options;
    options.set_log_errors(false);
    options.set_encoding(RE2::Options::EncodingUTF8);
    m.re_ = std::make_shared<RE2>(pattern, options);
    if (!m.re_->ok()) return absl::InvalidArgumentError(m.re_->error());
    return m;
  }

  bool Matches(const std::string& name) const {
    if (pattern_.empty())
      return true;  // VmBackup.py: an empty vm-export selects every VM
    if (re_ == nullptr) return name == pattern_;
    return re_->Match(name, 0, name.size(), RE2::ANCHOR_START, nullptr, 0);
  }

 private:
  std::string pattern_;
  std::shared_ptr<RE2> re_;
};

std::string Where(const BackupPolicy& policy, int line) {
  return line == 0 ? std::string("vm-selector")
                   : absl::StrCat(policy.source, ":", line);
}

std::string Names(const std::vector<const SelectionCandidate*>& vms) {
  std::vector<std::string> names;
  for (const SelectionCandidate* c : vms)
    names.push_back(absl::StrCat("'", c->name, "'"));
  return absl::StrJoin(names, ", ");
}

// An ordered list of selected VMs, one entry per UUID.
class SelectedList {
 public:
  SelectedVm* Find(const std::string& uuid) {
    auto it = index_.find(uuid);
    return it == index_.end() ? nullptr : &items_[it->second];
  }
  void Add(SelectedVm vm) {
    index_[vm.uuid] = items_.size();
    items_.push_back(std::move(vm));
  }
  std::vector<SelectedVm>& items() { return items_; }

 private:
  std::vector<SelectedVm> items_;
  std::map<std::string, size_t> index_;
};

}  // namespace

bool IsSimpleName(absl::string_view pattern) {
  if (pattern.empty()) return false;
  for (unsigned char c : pattern) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' &&
        !absl::ascii_isspace(c))
      return false;
  }
  return true;
}

absl::StatusOr<Selection> SelectVms(
    const BackupPolicy& policy,
    const std::vector<SelectionCandidate>& candidates) {
  Selection out;
  std::vector<Matcher> matchers;
  for (const SelectionRule& rule : policy.rules) {
    absl::StatusOr<Matcher> m = Matcher::Compile(rule.pattern);
    if (!m.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(policy, rule.line), ": invalid regex in ",
                       rule.text, ": ", m.status().message()));
    }
    matchers.push_back(*std::move(m));
  }
  auto matching = [&](const Matcher& m) {
    std::vector<const SelectionCandidate*> hits;
    for (const SelectionCandidate& c : candidates) {
      if (m.Matches(c.name)) hits.push_back(&c);
    }
    return hits;
  };

  // Excludes count wherever they stand.
  std::set<std::string> excluded;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const SelectionRule& rule = policy.rules[i];
    if (rule.kind != SelectionRule::Kind::kExclude) continue;
    std::vector<const SelectionCandidate*> hits = matching(matchers[i]);
    if (hits.empty()) {
      out.warnings.push_back(
          {rule.line, absl::StrCat(rule.text, " matches no VM"), true});
    }
    for (const SelectionCandidate* c : hits) excluded.insert(c->uuid);
  }
  for (const SelectionCandidate& c : candidates) {
    if (excluded.count(c.uuid) != 0) out.excluded.push_back(c);
  }

  SelectedList vdi, vm;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const SelectionRule& rule = policy.rules[i];
    if (rule.kind == SelectionRule::Kind::kExclude) continue;
    std::vector<const SelectionCandidate*> hits = matching(matchers[i]);
    if (hits.empty()) {
      // "web:abc" matching nothing while "web" would: a mistyped ":N".
      const size_t colon = rule.pattern.rfind(':');
      if (colon != std::string::npos && !rule.max_backups.has_value()) {
        absl::StatusOr<Matcher> prefix =
            Matcher::Compile(rule.pattern.substr(0, colon));
        if (prefix.ok() && !matching(*prefix).empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(policy, rule.line), ": ", rule.text,
                           " matches no VM; if '", rule.pattern.substr(colon),
                           "' was meant as the number of backups to keep, it "
                           "must be a whole number >= 1"));
        }
      }
      out.warnings.push_back(
          {rule.line, absl::StrCat(rule.text, " matches no VM"), true});
      continue;
    }
    std::vector<const SelectionCandidate*> kept;
    for (const SelectionCandidate* c : hits) {
      if (excluded.count(c->uuid) == 0) kept.push_back(c);
    }
    if (kept.empty()) {
      out.warnings.push_back(
          {rule.line, absl::StrCat(rule.text, " matches only excluded VMs: ",
                                   Names(hits))});
      continue;
    }
    SelectedList& list =
        rule.kind == SelectionRule::Kind::kVdiExport ? vdi : vm;
    for (const SelectionCandidate* c : kept) {
      SelectedVm entry;
      entry.uuid = c->uuid;
      entry.name = c->name;
      entry.vdi_export = rule.kind == SelectionRule::Kind::kVdiExport;
      entry.max_backups = rule.max_backups.value_or(policy.max_backups);
      entry.max_backups_from_rule = rule.max_backups.has_value();
      entry.line = rule.line;
      entry.rule = rule.text;
      if (SelectedVm* existing = list.Find(c->uuid)) {
        // The last rule sets max_backups; the VM keeps its first position.
        *existing = std::move(entry);
      } else {
        list.Add(std::move(entry));
      }
    }
  }

  out.vdi_exports = std::move(vdi.items());
  for (SelectedVm& entry : vm.items()) {
    if (SelectedVm* v = [&]() -> SelectedVm* {
          for (SelectedVm& d : out.vdi_exports) {
            if (d.uuid == entry.uuid) return &d;
          }
          return nullptr;
        }()) {
      out.warnings.push_back(
          {entry.line,
           absl::StrCat("VM '", entry.name, "' is selected by ", v->rule, " (",
                        Where(policy, v->line), ") and by ", entry.rule, " (",
                        Where(policy, entry.line), "): vdi-export wins")});
      continue;
    }
    out.vm_exports.push_back(std::move(entry));
  }

  // VMs sharing a name are each backed up, by UUID.
  std::map<std::string, std::vector<SelectedVm*>> by_name;
  for (auto* list : {&out.vdi_exports, &out.vm_exports}) {
    for (SelectedVm& s : *list) by_name[s.name].push_back(&s);
  }
  for (auto& [name, vms] : by_name) {
    if (vms.size() < 2) continue;
    std::vector<std::string> uuids;
    for (SelectedVm* s : vms) {
      s->shares_name = true;
      uuids.push_back(s->uuid);
    }
    out.warnings.push_back(
        {0, absl::StrCat(vms.size(), " VMs are called '", name, "' (",
                         absl::StrJoin(uuids, ", "),
                         "); each is backed up, by UUID")});
  }

  if (out.vdi_exports.empty() && out.vm_exports.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no VM selected by ", policy.source,
                     policy.rules.empty()
                         ? ": it has no vm-export or vdi-export line"
                         : ": every vm-export and vdi-export matched nothing "
                           "or only excluded VMs"));
  }
  return out;
}

}  // namespace vmb::coordinator
