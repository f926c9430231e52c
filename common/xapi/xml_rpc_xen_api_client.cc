// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xml_rpc_xen_api_client.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

#include "common/base/logging.h"
#include "common/base/status_macros.h"
#include "common/base/status_util.h"
#include "common/xapi/xenapi_error.h"
#include "common/xapi/xmlrpc_codec.h"

namespace vmb {
namespace {

constexpr char kRedactedSession[] = "OpaqueRef:(session)";

XmlRpcValue Str(const std::string& s) { return XmlRpcValue::String(s); }

}  // namespace

std::string ReplaceUrlHost(const std::string& url, const std::string& address) {
  std::string scheme = "http";
  absl::string_view rest = url;
  size_t sep = rest.find("://");
  if (sep != absl::string_view::npos) {
    scheme = std::string(rest.substr(0, sep));
    rest.remove_prefix(sep + 3);
  }
  absl::string_view authority = rest.substr(0, rest.find('/'));
  std::string port;
  if (absl::StartsWith(authority, "[")) {
    size_t close = authority.find(']');
    if (close != absl::string_view::npos && close + 1 < authority.size() &&
        authority[close + 1] == ':') {
      port = std::string(authority.substr(close + 1));
    }
  } else if (size_t colon = authority.rfind(':');
             colon != absl::string_view::npos) {
    port = std::string(authority.substr(colon));
  }
  const std::string host =
      absl::StrContains(address, ":") && !absl::StartsWith(address, "[")
          ? absl::StrCat("[", address, "]")
          : address;
  return absl::StrCat(scheme, "://", host, port);
}

XmlRpcXenApiClient::XmlRpcXenApiClient(
    Options options, std::unique_ptr<XmlRpcTransport> transport)
    : options_(std::move(options)),
      password_secret_(RegisterSecret(options_.password, "(password)")),
      transport_(std::move(transport)),
      url_(options_.url) {
  while (!url_.empty() && url_.back() == '/') url_.pop_back();
}

XmlRpcXenApiClient::~XmlRpcXenApiClient() {
  absl::Status s = Logout();
  if (!s.ok()) VMB_LOG(WARNING) << "XenAPI logout failed: " << s;
}

std::string XmlRpcXenApiClient::master_url() const {
  absl::MutexLock lock(&mu_);
  return url_;
}

absl::StatusOr<XmlRpcValue> XmlRpcXenApiClient::RoundTrip(
    const std::string& url, absl::string_view method,
    const std::vector<XmlRpcValue>& params, const std::string& session) {
  const std::string request = EncodeMethodCall(method, params);
  absl::StatusOr<std::string> body = transport_->Post(url, request);
  if (!body.ok()) return Annotate(body.status(), method);
  absl::StatusOr<XmlRpcValue> response = DecodeMethodResponse(*body);
  if (!response.ok())
    return Annotate(response.status(), method, " reply from ", url);
  const XmlRpcValue* status = response->Find("Status");
  if (status == nullptr || !status->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(method, " reply from ", url, " has no Status member"));
  }
  if (status->text() == "Success") {
    const XmlRpcValue* value = response->Find("Value");
    if (value == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(method, " reply has no Value member"));
    }
    return *value;
  }
  const XmlRpcValue* error = response->Find("ErrorDescription");
  std::vector<std::string> description;
  if (error != nullptr && error->is_array()) {
    for (const XmlRpcValue& item : error->items()) {
      std::string text = item.is_string() ? item.text() : item.DebugString();
      // A session ref in an error (SESSION_INVALID names it) is a secret.
      if (!session.empty())
        text = absl::StrReplaceAll(text, {{session, kRedactedSession}});
      description.push_back(std::move(text));
    }
  }
  if (description.empty()) description.push_back("UNKNOWN_XENAPI_ERROR");
  return Annotate(XenApiFailureToStatus(description), method);
}

absl::StatusOr<std::pair<std::string, std::string>> XmlRpcXenApiClient::LoginAt(
    std::string url) {
  std::vector<XmlRpcValue> params = {
      Str(options_.username), Str(options_.password), Str(options_.api_version),
      Str(options_.originator)};
  absl::StatusOr<XmlRpcValue> ref =
      RoundTrip(url, "session.login_with_password", params, /*session=*/"");
  if (!ref.ok()) {
    std::optional<XenApiError> e = GetXenApiError(ref.status());
    if (e.has_value() && e->code == "HOST_IS_SLAVE" && !e->params.empty()) {
      const std::string master = ReplaceUrlHost(url, e->params[0]);
      VMB_LOG(INFO) << url << " is a pool member; logging in at the master "
                    << master;
      url = master;
      ref = RoundTrip(url, "session.login_with_password", params, "");
    }
  }
  if (!ref.ok()) {
    // Never echo the password; XAPI's own error carries only the user name.
    return Annotate(ref.status(), "logging in to ", url, " as ",
                    options_.username);
  }
  absl::StatusOr<std::string> session = ValueAsRef(*ref, "session ref");
  if (!session.ok()) return session.status();
  return std::make_pair(*std::move(session), std::move(url));
}

absl::StatusOr<std::string> XmlRpcXenApiClient::EnsureSession() {
  if (options_.session_source) {
    absl::StatusOr<std::string> session = options_.session_source();
    if (session.ok() && session->empty()) {
      return absl::UnavailableError("no XenAPI session has been handed over");
    }
    return session;
  }
  std::string url;
  {
    absl::MutexLock lock(&mu_);
    if (logging_in_) {
      // Another thread is logging in: wait for its result.
      const uint64_t attempt = logins_;
      const auto done = [this, attempt]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return logins_ != attempt;
      };
      mu_.Await(absl::Condition(&done));
      if (!session_.empty()) return session_;
      return last_login_;
    }
    if (!session_.empty()) return session_;
    logging_in_ = true;
    url = url_;
  }
  absl::StatusOr<std::pair<std::string, std::string>> login =
      LoginAt(std::move(url));
  absl::MutexLock lock(&mu_);
  logging_in_ = false;
  ++logins_;
  if (!login.ok()) {
    last_login_ = login.status();
    return last_login_;
  }
  last_login_ = absl::OkStatus();
  session_ = login->first;
  session_secret_ = ScopedSecret(RegisterSecret(session_, kRedactedSession));
  url_ = login->second;
  return session_;
}

absl::Status XmlRpcXenApiClient::Login() { return EnsureSession().status(); }

absl::Status XmlRpcXenApiClient::Logout() {
  if (options_.session_source) return absl::OkStatus();  // not ours
  std::string session;
  std::string url;
  {
    absl::MutexLock lock(&mu_);
    session.swap(session_);
    url = url_;
  }
  if (session.empty()) return absl::OkStatus();
  absl::StatusOr<XmlRpcValue> r =
      RoundTrip(url, "session.logout", {Str(session)}, session);
  return r.status();
}

absl::StatusOr<std::string> XmlRpcXenApiClient::SessionRef() {
  return EnsureSession();
}

absl::StatusOr<XmlRpcValue> XmlRpcXenApiClient::Call(
    absl::string_view method, std::vector<XmlRpcValue> params, CallKind kind) {
  bool relogged = false;
  bool moved = false;
  while (true) {
    VMB_ASSIGN_OR_RETURN(std::string session, EnsureSession());
    std::string url = master_url();
    std::vector<XmlRpcValue> full;
    full.reserve(params.size() + 1);
    full.push_back(Str(session));
    full.insert(full.end(), params.begin(), params.end());
    absl::StatusOr<XmlRpcValue> result = RoundTrip(url, method, full, session);
    if (result.ok()) return result;
    std::optional<XenApiError> e = GetXenApiError(result.status());
    if (!e.has_value()) return result;
    if (e->code == "SESSION_INVALID" && options_.session_source) {
      absl::StatusOr<std::string> next = options_.session_source();
      if (kind == CallKind::kIdempotent && !relogged && next.ok() &&
          !next->empty() && *next != session) {
        relogged = true;
        continue;
      }
      return absl::UnavailableError(absl::StrCat(
          method, ": the XenAPI session handed over was no longer valid"));
    }
    if (e->code == "SESSION_INVALID") {
      {
        absl::MutexLock lock(&mu_);
        if (session_ == session)
          session_.clear();  // the next call logs in again
      }
      if (kind == CallKind::kNotIdempotent || relogged) {
        return absl::UnavailableError(
            absl::StrCat(method,
                         ": the XenAPI session was no longer valid (XAPI "
                         "restarted or expired it)",
                         kind == CallKind::kNotIdempotent
                             ? "; not repeated, the call is not idempotent"
                             : ""));
      }
      VMB_LOG(INFO) << method << ": XenAPI session expired; logging in again";
      relogged = true;
      continue;
    }
    if (e->code == "HOST_IS_SLAVE" && !e->params.empty() && !moved) {
      // The pool master changed under us: follow it once, with a new session.
      absl::MutexLock lock(&mu_);
      url_ = ReplaceUrlHost(url_, e->params[0]);
      session_.clear();
      moved = true;
      continue;
    }
    return result;
  }
}

absl::StatusOr<std::string> XmlRpcXenApiClient::CallForRef(
    absl::string_view method, std::vector<XmlRpcValue> params, CallKind kind) {
  VMB_ASSIGN_OR_RETURN(XmlRpcValue v, Call(method, std::move(params), kind));
  return ValueAsRef(v, absl::StrCat(method, " result"));
}

template <typename Record>
absl::StatusOr<RecordMap<Record>> XmlRpcXenApiClient::GetAll(
    absl::string_view cls,
    absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view)) {
  VMB_ASSIGN_OR_RETURN(
      XmlRpcValue v,
      Call(absl::StrCat(cls, ".get_all_records"), {}, CallKind::kIdempotent));
  return ParseRecordMap<Record>(v, parse);
}

template <typename Record>
absl::StatusOr<Record> XmlRpcXenApiClient::GetRecord(
    absl::string_view cls, const std::string& ref,
    absl::StatusOr<Record> (*parse)(const XmlRpcValue&, absl::string_view)) {
  VMB_ASSIGN_OR_RETURN(XmlRpcValue v, Call(absl::StrCat(cls, ".get_record"),
                                           {Str(ref)}, CallKind::kIdempotent));
  return parse(v, ref);
}

absl::StatusOr<RecordMap<PoolRecord>> XmlRpcXenApiClient::GetAllPools() {
  return GetAll<PoolRecord>("pool", &ParsePoolRecord);
}
absl::StatusOr<RecordMap<HostRecord>> XmlRpcXenApiClient::GetAllHosts() {
  return GetAll<HostRecord>("host", &ParseHostRecord);
}
absl::StatusOr<RecordMap<HostMetricsRecord>>
XmlRpcXenApiClient::GetAllHostMetrics() {
  return GetAll<HostMetricsRecord>("host_metrics", &ParseHostMetricsRecord);
}
absl::StatusOr<RecordMap<VmRecord>> XmlRpcXenApiClient::GetAllVms() {
  return GetAll<VmRecord>("VM", &ParseVmRecord);
}
absl::StatusOr<RecordMap<VbdRecord>> XmlRpcXenApiClient::GetAllVbds() {
  return GetAll<VbdRecord>("VBD", &ParseVbdRecord);
}
absl::StatusOr<RecordMap<VdiRecord>> XmlRpcXenApiClient::GetAllVdis() {
  return GetAll<VdiRecord>("VDI", &ParseVdiRecord);
}
absl::StatusOr<RecordMap<SrRecord>> XmlRpcXenApiClient::GetAllSrs() {
  return GetAll<SrRecord>("SR", &ParseSrRecord);
}
absl::StatusOr<RecordMap<PbdRecord>> XmlRpcXenApiClient::GetAllPbds() {
  return GetAll<PbdRecord>("PBD", &ParsePbdRecord);
}
absl::StatusOr<RecordMap<VifRecord>> XmlRpcXenApiClient::GetAllVifs() {
  return GetAll<VifRecord>("VIF", &ParseVifRecord);
}
absl::StatusOr<RecordMap<NetworkRecord>> XmlRpcXenApiClient::GetAllNetworks() {
  return GetAll<NetworkRecord>("network", &ParseNetworkRecord);
}
absl::StatusOr<RecordMap<TaskRecord>> XmlRpcXenApiClient::GetAllTasks() {
  return GetAll<TaskRecord>("task", &ParseTaskRecord);
}

absl::StatusOr<VmRecord> XmlRpcXenApiClient::GetVm(const std::string& ref) {
  return GetRecord<VmRecord>("VM", ref, &ParseVmRecord);
}
absl::StatusOr<VbdRecord> XmlRpcXenApiClient::GetVbd(const std::string& ref) {
  return GetRecord<VbdRecord>("VBD", ref, &ParseVbdRecord);
}
absl::StatusOr<VdiRecord> XmlRpcXenApiClient::GetVdi(const std::string& ref) {
  return GetRecord<VdiRecord>("VDI", ref, &ParseVdiRecord);
}
absl::StatusOr<SrRecord> XmlRpcXenApiClient::GetSr(const std::string& ref) {
  return GetRecord<SrRecord>("SR", ref, &ParseSrRecord);
}
absl::StatusOr<HostRecord> XmlRpcXenApiClient::GetHost(const std::string& ref) {
  return GetRecord<HostRecord>("host", ref, &ParseHostRecord);
}
absl::StatusOr<TaskRecord> XmlRpcXenApiClient::GetTask(const std::string& ref) {
  return GetRecord<TaskRecord>("task", ref, &ParseTaskRecord);
}

absl::StatusOr<std::string> XmlRpcXenApiClient::GetVmByUuid(
    const std::string& uuid) {
  return CallForRef("VM.get_by_uuid", {Str(uuid)}, CallKind::kIdempotent);
}

absl::StatusOr<std::string> XmlRpcXenApiClient::GetVdiByUuid(
    const std::string& uuid) {
  return CallForRef("VDI.get_by_uuid", {Str(uuid)}, CallKind::kIdempotent);
}

absl::StatusOr<std::vector<std::string>> XmlRpcXenApiClient::GetVmsByNameLabel(
    const std::string& name) {
  VMB_ASSIGN_OR_RETURN(XmlRpcValue v, Call("VM.get_by_name_label", {Str(name)},
                                           CallKind::kIdempotent));
  return ValueAsStringList(v, "VM.get_by_name_label result");
}

absl::StatusOr<std::string> XmlRpcXenApiClient::SnapshotVm(
    const std::string& vm, const std::string& name,
    const std::vector<std::string>& ignore_vdis) {
  std::vector<XmlRpcValue> params = {Str(vm), Str(name)};
  if (!ignore_vdis.empty()) {
    XmlRpcValue list = XmlRpcValue::MakeArray();
    for (const std::string& vdi : ignore_vdis) list.Append(Str(vdi));
    params.push_back(std::move(list));
  }
  return CallForRef("VM.snapshot", std::move(params), CallKind::kNotIdempotent);
}

absl::Status XmlRpcXenApiClient::SetVmIsATemplate(const std::string& vm,
                                                  bool value) {
  return Call("VM.set_is_a_template", {Str(vm), XmlRpcValue::Bool(value)},
              CallKind::kIdempotent)
      .status();
}

absl::Status XmlRpcXenApiClient::DestroyVm(const std::string& vm) {
  return Call("VM.destroy", {Str(vm)}, CallKind::kIdempotent).status();
}

absl::StatusOr<std::string> XmlRpcXenApiClient::SnapshotVdi(
    const std::string& vdi) {
  return CallForRef("VDI.snapshot", {Str(vdi), XmlRpcValue::MakeStruct()},
                    CallKind::kNotIdempotent);
}

absl::Status XmlRpcXenApiClient::DestroyVdi(const std::string& vdi) {
  return Call("VDI.destroy", {Str(vdi)}, CallKind::kIdempotent).status();
}

absl::Status XmlRpcXenApiClient::AddToOtherConfig(absl::string_view cls,
                                                  const std::string& ref,
                                                  const std::string& key,
                                                  const std::string& value) {
  return Call(absl::StrCat(cls, ".add_to_other_config"),
              {Str(ref), Str(key), Str(value)}, CallKind::kIdempotent)
      .status();
}

absl::Status XmlRpcXenApiClient::RemoveFromOtherConfig(absl::string_view cls,
                                                       const std::string& ref,
                                                       const std::string& key) {
  return Call(absl::StrCat(cls, ".remove_from_other_config"),
              {Str(ref), Str(key)}, CallKind::kIdempotent)
      .status();
}

absl::StatusOr<std::string> XmlRpcXenApiClient::CreateTask(
    const std::string& label, const std::string& description) {
  return CallForRef("task.create", {Str(label), Str(description)},
                    CallKind::kNotIdempotent);
}

absl::Status XmlRpcXenApiClient::CancelTask(const std::string& task) {
  return Call("task.cancel", {Str(task)}, CallKind::kIdempotent).status();
}

absl::Status XmlRpcXenApiClient::DestroyTask(const std::string& task) {
  return Call("task.destroy", {Str(task)}, CallKind::kIdempotent).status();
}

}  // namespace vmb
