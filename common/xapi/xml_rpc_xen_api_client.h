// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "common/base/redact.h"
#include "common/xapi/xenapi_client.h"
#include "common/xapi/xml_rpc_transport.h"

namespace vmb {

// XenApiClient over XML-RPC.
//
// Sessions: logs in lazily; on HOST_IS_SLAVE (at login or later, after a
// master change) it switches to the master address XAPI names, keeping the
// scheme and port, once per call; on SESSION_INVALID it logs in again and
// repeats kIdempotent calls once, while a kNotIdempotent call returns
// UNAVAILABLE and the next call uses a new session. The session ref never
// appears in an error message. The destructor logs out (best effort).
//
// Thread-safe; network I/O (a login included) happens without the client's
// lock, so a slow re-login holds up only the calls that need a session.
// The transport is owned.
class XmlRpcXenApiClient final : public XenApiClient {
 public:
  struct Options {
    std::string url = "http://localhost";  // pool master (or any member)
    std::string username = "root";
    std::string password;                 // kept in memory only
    std::string originator = "vmbackup";  // groups our sessions in XAPI
    std::string api_version = "1.2";
    // A session logged in by someone else (the coordinator hands its agents
    // one): when set, the client never logs in or out itself and `password`
    // is unused; each call asks it for the current session. On
    // SESSION_INVALID a kIdempotent call is repeated once if it then gives a
    // different session; otherwise the call returns UNAVAILABLE. Called
    // from any thread, without the client's lock.
    std::function<absl::StatusOr<std::string>()> session_source;
  };

  XmlRpcXenApiClient(Options options,
                     std::unique_ptr<XmlRpcTransport> transport);
  ~XmlRpcXenApiClient() override;

  absl::Status Login() override;
  absl::Status Logout() override;
  std::string master_url() const override;
  absl::StatusOr<std::string> SessionRef() override;
  absl::StatusOr<XmlRpcValue> Call(absl::string_view method,
                                   std::vector<XmlRpcValue> params,
                                   CallKind kind) override;

  absl::StatusOr<RecordMap<PoolRecord>> GetAllPools() override;
  absl::StatusOr<RecordMap<HostRecord>> GetAllHosts() override;
  absl::StatusOr<RecordMap<HostMetricsRecord>> GetAllHostMetrics() override;
  absl::StatusOr<RecordMap<VmRecord>> GetAllVms() override;
  absl::StatusOr<RecordMap<VbdRecord>> GetAllVbds() override;
  absl::StatusOr<RecordMap<VdiRecord>> GetAllVdis() override;
  absl::StatusOr<RecordMap<SrRecord>> GetAllSrs() override;
  absl::StatusOr<RecordMap<PbdRecord>> GetAllPbds() override;
  absl::StatusOr<RecordMap<VifRecord>> GetAllVifs() override;
  absl::StatusOr<RecordMap<NetworkRecord>> GetAllNetworks() override;
  absl::StatusOr<RecordMap<TaskRecord>> GetAllTasks() override;

  absl::StatusOr<VmRecord> GetVm(const std::string& ref) override;
  absl::StatusOr<VbdRecord> GetVbd(const std::string& ref) override;
  absl::StatusOr<VdiRecord> GetVdi(const std::string& ref) override;
  absl::StatusOr<SrRecord> GetSr(const std::string& ref) override;
  absl::StatusOr<HostRecord> GetHost(const std::string& ref) override;
  absl::StatusOr<TaskRecord> GetTask(const std::string& ref) override;

  absl::StatusOr<std::string> GetVmByUuid(const std::string& uuid) override;
  absl::StatusOr<std::string> GetVdiByUuid(const std::string& uuid) override;
  absl::StatusOr<std::vector<std::string>> GetVmsByNameLabel(
      const std::string& name) override;

  absl::StatusOr<std::string> SnapshotVm(
      const std::string& vm, const std::string& name,
      const std::vector<std::string>& ignore_vdis) override;
  absl::Status SetVmIsATemplate(const std::string& vm, bool value) override;
  absl::Status DestroyVm(const std::string& vm) override;
  absl::StatusOr<std::string> SnapshotVdi(const std::string& vdi) override;
  absl::Status DestroyVdi(const std::string& vdi) override;
  absl::Status AddToOtherConfig(absl::string_view cls, const std::string& ref,
                                const std::string& key,
                                const std::string& value) override;
  absl::Status RemoveFromOtherConfig(absl::string_view cls,
                                     const std::string& ref,
                                     const std::string& key) override;

  absl::StatusOr<std::string> CreateTask(
      const std::string& label, const std::string& description) override;
  absl::Status CancelTask(const std::string& task) override;
  absl::Status DestroyTask(const std::string& task) override;

 private:
  // One round trip: encode, post, decode the XAPI envelope. `session` (may be
  // empty) is redacted from error messages.
  absl::StatusOr<XmlRpcValue> RoundTrip(const std::string& url,
                                        absl::string_view method,
                                        const std::vector<XmlRpcValue>& params,
                                        const std::string& session);
  // Logs in at `url`, following HOST_IS_SLAVE once: the session, and the
  // URL that gave it. Network I/O: called without mu_ held.
  absl::StatusOr<std::pair<std::string, std::string>> LoginAt(std::string url)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The current session, logging in when there is none. One thread logs in
  // at a time, without holding mu_; others wanting a session wait for its
  // result (and share its error), while calls that hold a session go on.
  absl::StatusOr<std::string> EnsureSession() ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Record>
  absl::StatusOr<RecordMap<Record>> GetAll(
      absl::string_view cls,
      absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view));
  template <typename Record>
  absl::StatusOr<Record> GetRecord(
      absl::string_view cls, const std::string& ref,
      absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view));
  absl::StatusOr<std::string> CallForRef(absl::string_view method,
                                         std::vector<XmlRpcValue> params,
                                         CallKind kind);

  const Options options_;
  const ScopedSecret password_secret_;  // redacted while the client lives
  const std::unique_ptr<XmlRpcTransport> transport_;
  mutable absl::Mutex mu_;
  std::string url_ ABSL_GUARDED_BY(mu_);
  std::string session_ ABSL_GUARDED_BY(mu_);
  ScopedSecret session_secret_ ABSL_GUARDED_BY(mu_);  // session_, redacted
  bool logging_in_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t logins_ ABSL_GUARDED_BY(mu_) = 0;  // attempts finished
  absl::Status last_login_ ABSL_GUARDED_BY(mu_);
};

// Rewrites `url`'s host to `address` (as HOST_IS_SLAVE names the master),
// keeping scheme and port; IPv6 addresses get brackets.
std::string ReplaceUrlHost(const std::string& url, const std::string& address);

}  // namespace vmb
