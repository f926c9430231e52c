// SPDX-License-Identifier: Apache-2.0
// export_bench: one whole vm-export job (snapshot, verified streaming export
// into a file, fsync, metadata, snapshot cleanup, commit) with the agent
// library, against a running xapi-sim; prints one JSON line: bytes written,
// wall seconds of the job and of its export phase, CPU seconds (user,
// system) and peak RSS. The password is read from standard input so that it
// never appears in argv. Used by tests/bench/run_bench.py --export.
//
//   export_bench MASTER_URL HOST_NAME VM_NAME BACKUP_DIR < password
#include <sys/resource.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "agent/vm_backup_job.h"
#include "common/base/filesystem.h"
#include "common/xapi/curl_util.h"
#include "common/xapi/curl_xml_rpc_transport.h"
#include "common/xapi/xml_rpc_xen_api_client.h"
#include "common/xapi/xmlrpc_codec.h"

namespace {

// User + system CPU seconds of this process, all threads.
double CpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "export_bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: export_bench MASTER_URL HOST_NAME VM_NAME BACKUP_DIR "
                 "< password\n");
    return 2;
  }
  vmb::InitCurlGlobal();
  vmb::InitXmlRpcCodec();
  vmb::XmlRpcXenApiClient::Options options;
  options.url = argv[1];
  std::getline(std::cin, options.password);
  vmb::XmlRpcXenApiClient client(options,
                                 std::make_unique<vmb::CurlXmlRpcTransport>(
                                     vmb::CurlXmlRpcTransport::Options()));
  if (absl::Status s = client.Login(); !s.ok()) return Fail(s.ToString());
  auto hosts = client.GetAllHosts();
  if (!hosts.ok()) return Fail(hosts.status().ToString());
  vmb::agent::JobContext context;
  context.xapi = &client;
  context.fs = vmb::PosixFilesystem::Get();
  context.clock = vmb::SystemClock::Get();
  for (const auto& [ref, host] : *hosts) {
    context.redirect_hosts.push_back(vmb::IdentityOfHost(host));
    if (host.name_label == argv[2]) {
      context.host = host;
      context.data_url = vmb::ReplaceUrlHost(argv[1], host.address);
    }
  }
  if (context.host.uuid.empty()) return Fail("no such host");
  auto refs = client.GetVmsByNameLabel(argv[3]);
  if (!refs.ok() || refs->empty()) return Fail("no such VM");
  auto vm = client.GetVm(refs->front());
  if (!vm.ok()) return Fail(vm.status().ToString());

  vmb::v1::JobSpec spec;
  spec.set_job_id("bench-1");
  spec.set_run_id("bench");
  spec.set_vm_uuid(vm->uuid);
  spec.set_vm_name(vm->name_label);
  spec.set_kind(vmb::v1::EXPORT_KIND_VM);
  spec.set_backup_dir(argv[4]);
  spec.set_vm_folder(vm->name_label);
  spec.set_max_backups(1);
  spec.set_share_id("bench");
  spec.set_host_uuid(context.host.uuid);
  // The export phase: from the first EXPORT progress report to the first
  // METADATA one, in wall time and in the process's CPU time.
  absl::Time export_start, export_end;
  double export_cpu_start = 0, export_cpu_end = 0;
  vmb::agent::JobHooks hooks;
  hooks.progress = [&](const vmb::v1::JobStatus& s) {
    if (s.phase() == vmb::v1::JOB_PHASE_EXPORT &&
        export_start == absl::Time()) {
      export_start = absl::Now();
      export_cpu_start = CpuSeconds();
    }
    if (s.phase() == vmb::v1::JOB_PHASE_METADATA &&
        export_end == absl::Time()) {
      export_end = absl::Now();
      export_cpu_end = CpuSeconds();
    }
  };
  const absl::Time start = absl::Now();
  const vmb::v1::JobStatus st =
      vmb::agent::RunVmBackupJob(context, spec, hooks);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (st.phase() != vmb::v1::JOB_PHASE_SUCCEEDED) {
    return Fail(absl::StrCat("the job failed: ", st.error_message()));
  }
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  std::printf(
      "{\"bytes\": %llu, \"wall\": %.3f, \"export_wall\": %.3f, "
      "\"export_cpu\": %.3f, \"user\": %.3f, \"sys\": %.3f, "
      "\"maxrss_kib\": %ld}\n",
      static_cast<unsigned long long>(st.backup_bytes()), seconds,
      absl::ToDoubleSeconds(export_end - export_start),
      export_cpu_end - export_cpu_start,
      u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6,
      u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6, u.ru_maxrss);
  return 0;
}
