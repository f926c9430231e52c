// SPDX-License-Identifier: Apache-2.0
#pragma once

// The examples of VmBackup's README regex section, with what they select
// among the VM names the README talks about. Used by the selection unit test
// and, end to end, by the CLI test.

#include <string>
#include <vector>

namespace vmb::testing {

struct ReadmeRegexExample {
  std::string config;
  std::vector<std::string> vdi;  // sorted; "name:N" where a rule sets N
  std::vector<std::string> vm;
};

inline const std::vector<std::string>& ReadmeVmNames() {
  static const auto* names = new std::vector<std::string>{
      "PRD-a",        "PRD-a2",         "PRD-ab",          "PRD-b",
      "PRD-A-web",    "DEV-V1-TEMP",    "DEV-Vx-TEMPLATE", "DEV-web3",
      "DEV-web30",    "DEV-app-TEST-1", "DEV-app-test",    "DEV-app-Test",
      "DEVTEST",      "my-SAVE",        "SAVE-me",         "PRD-x-print4",
      "PRD-x-print5", "PRD-x-print45",  "PRD-x-print6",    "PRD-x-print8",
      "PRD-x-print9", "PRD-x-print12"};
  return *names;
}

inline const std::vector<ReadmeRegexExample>& ReadmeRegexExamples() {
  static const auto* examples = new std::vector<ReadmeRegexExample>{
      // exclude simple host names (non-wildcard instances)
      {"exclude=PRD-b\nvm-export=PRD-[ab].*",
       {},
       {"PRD-a", "PRD-a2", "PRD-ab"}},
      // exclude using end-of-string - handled as a regex expression
      {"exclude=PRD-a$\nvm-export=PRD-a.*", {}, {"PRD-a2", "PRD-ab"}},
      // exclude PRD-a as well as PRD-a followed by anything
      {"exclude=PRD-a.*\nvm-export=PRD-[aAb].*", {}, {"PRD-A-web", "PRD-b"}},
      // exclude DEV-V followed by anything followed by TEMP, ending in TEMP
      {"exclude=DEV-V.*TEMP$\nvm-export=DEV-V.*", {}, {"DEV-Vx-TEMPLATE"}},
      // back up just the root VDI of DEV-web3 (a simple name: not DEV-web30)
      {"vdi-export=DEV-web3", {"DEV-web3"}, {}},
      // the same, retaining seven copies
      {"vdi-export=DEV-web3:7", {"DEV-web3:7"}, {}},
      // DEV followed by anything, then TEST or test, then anything
      {"vdi-export=DEV.*(TEST|test).*",
       {"DEV-app-TEST-1", "DEV-app-test", "DEVTEST"},
       {}},
      // the same with Test or test
      {"vdi-export=DEV.*[Tt]est.*", {"DEV-app-Test", "DEV-app-test"}, {}},
      // VMs ending with SAVE, five kept
      {"vm-export=.*SAVE$:5", {}, {"my-SAVE:5"}},
      // PRD- ... ending with print4 or print5, five kept
      {"vm-export=PRD-.*print[45]$:5",
       {},
       {"PRD-x-print4:5", "PRD-x-print5:5"}},
      // PRD- ... ending with print6, print7 or print8, ten kept
      {"vm-export=PRD-.*print[6-8]$:10",
       {},
       {"PRD-x-print6:10", "PRD-x-print8:10"}},
      // PRD- ... ending with print and a number, eight kept
      {"vm-export=PRD-.*print[0-9]+$:8",
       {},
       {"PRD-x-print12:8", "PRD-x-print45:8", "PRD-x-print4:8",
        "PRD-x-print5:8", "PRD-x-print6:8", "PRD-x-print8:8",
        "PRD-x-print9:8"}},
  };
  return *examples;
}

}  // namespace vmb::testing
