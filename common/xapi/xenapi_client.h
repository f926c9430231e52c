// SPDX-License-Identifier: Apache-2.0
#pragma once

// The XenAPI as a backup tool uses it: sessions, typed records, snapshots,
// tasks. XmlRpcXenApiClient talks to a real pool (or xapi-sim); tests of
// higher layers use a fake.
//
// Errors of every call: XenAPI failures map as in xenapi_error.h and keep
// their code and parameters; transport failures as in xml_rpc_transport.h;
// INVALID_ARGUMENT for a reply that is not what XAPI sends.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "common/xapi/xenapi_records.h"
#include "common/xapi/xmlrpc_value.h"

namespace vmb {

// Whether a call may be sent again after the session was found invalid.
// XAPI checks the session before it runs a call, but snapshot-creating calls
// are still not retried blindly: the caller decides.
enum class CallKind { kIdempotent, kNotIdempotent };

// Implementations are thread-safe.
class XenApiClient {
 public:
  virtual ~XenApiClient() = default;

  // Logs in (following HOST_IS_SLAVE to the master once). Errors:
  // UNAUTHENTICATED for a wrong user or password.
  virtual absl::Status Login() = 0;
  // Logs out; a no-op without a session.
  virtual absl::Status Logout() = 0;
  // The master's URL ("http://10.0.0.1"), after any HOST_IS_SLAVE redirect.
  virtual std::string master_url() const = 0;
  // The session ref, logging in if needed. A bearer secret: send it only as
  // the session_id cookie; never log it or put it in a URL.
  virtual absl::StatusOr<std::string> SessionRef() = 0;

  // Any call, with the session prepended to `params`.
  virtual absl::StatusOr<XmlRpcValue> Call(absl::string_view method,
                                           std::vector<XmlRpcValue> params,
                                           CallKind kind) = 0;

  virtual absl::StatusOr<RecordMap<PoolRecord>> GetAllPools() = 0;
  virtual absl::StatusOr<RecordMap<HostRecord>> GetAllHosts() = 0;
  virtual absl::StatusOr<RecordMap<HostMetricsRecord>> GetAllHostMetrics() = 0;
  virtual absl::StatusOr<RecordMap<VmRecord>> GetAllVms() = 0;
  virtual absl::StatusOr<RecordMap<VbdRecord>> GetAllVbds() = 0;
  virtual absl::StatusOr<RecordMap<VdiRecord>> GetAllVdis() = 0;
  virtual absl::StatusOr<RecordMap<SrRecord>> GetAllSrs() = 0;
  virtual absl::StatusOr<RecordMap<PbdRecord>> GetAllPbds() = 0;
  virtual absl::StatusOr<RecordMap<VifRecord>> GetAllVifs() = 0;
  virtual absl::StatusOr<RecordMap<NetworkRecord>> GetAllNetworks() = 0;
  virtual absl::StatusOr<RecordMap<TaskRecord>> GetAllTasks() = 0;

  virtual absl::StatusOr<VmRecord> GetVm(const std::string& ref) = 0;
  virtual absl::StatusOr<VbdRecord> GetVbd(const std::string& ref) = 0;
  virtual absl::StatusOr<VdiRecord> GetVdi(const std::string& ref) = 0;
  virtual absl::StatusOr<SrRecord> GetSr(const std::string& ref) = 0;
  virtual absl::StatusOr<HostRecord> GetHost(const std::string& ref) = 0;
  virtual absl::StatusOr<TaskRecord> GetTask(const std::string& ref) = 0;

  // Refs by uuid (NOT_FOUND: UUID_INVALID) and by name (templates and
  // snapshots included, as XAPI returns them).
  virtual absl::StatusOr<std::string> GetVmByUuid(const std::string& uuid) = 0;
  virtual absl::StatusOr<std::string> GetVdiByUuid(const std::string& uuid) = 0;
  virtual absl::StatusOr<std::vector<std::string>> GetVmsByNameLabel(
      const std::string& name) = 0;

  // VM.snapshot; `ignore_vdis` is sent only when non-empty (older hosts take
  // two parameters). Returns the snapshot's ref.
  virtual absl::StatusOr<std::string> SnapshotVm(
      const std::string& vm, const std::string& name,
      const std::vector<std::string>& ignore_vdis) = 0;
  virtual absl::Status SetVmIsATemplate(const std::string& vm, bool value) = 0;
  // Destroys the VM record; its VDIs stay (XAPI semantics).
  virtual absl::Status DestroyVm(const std::string& vm) = 0;
  virtual absl::StatusOr<std::string> SnapshotVdi(const std::string& vdi) = 0;
  virtual absl::Status DestroyVdi(const std::string& vdi) = 0;
  // other_config edits on any class ("VM", "VDI", ...).
  virtual absl::Status AddToOtherConfig(absl::string_view cls,
                                        const std::string& ref,
                                        const std::string& key,
                                        const std::string& value) = 0;
  virtual absl::Status RemoveFromOtherConfig(absl::string_view cls,
                                             const std::string& ref,
                                             const std::string& key) = 0;

  virtual absl::StatusOr<std::string> CreateTask(
      const std::string& label, const std::string& description) = 0;
  virtual absl::Status CancelTask(const std::string& task) = 0;
  virtual absl::Status DestroyTask(const std::string& task) = 0;
};

}  // namespace vmb
