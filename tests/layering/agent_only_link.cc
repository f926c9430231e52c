// SPDX-License-Identifier: Apache-2.0
// A program linked with vmb_agent alone (tests/layering/CMakeLists.txt): it
// links only if the agent library and everything it pulls in stand on
// common/ and proto/, and its link map shows what was loaded.
#include "agent/in_process_executor.h"
#include "agent/vm_backup_job.h"

int main() {
  // Take the addresses so that the job and the executor are linked in.
  volatile auto job = &vmb::agent::RunVmBackupJob;
  vmb::ExecutorSetup setup;
  vmb::agent::InProcessExecutor executor(setup);
  return job == nullptr ? 1 : 0;
}
