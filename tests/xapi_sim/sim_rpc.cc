// SPDX-License-Identifier: Apache-2.0
// XAPI's XML-RPC and JSON-RPC calls, as the simulator answers them.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

#include "tests/xapi_sim/sim_json.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {
namespace {

std::vector<std::string> Err(std::initializer_list<std::string> parts) {
  return parts;
}

const std::string& StrParam(const SimCall& call, size_t i) {
  static const std::string kEmpty;
  return i < call.params.size() &&
                 call.params[i].kind == SimValue::Kind::kString
             ? call.params[i].s
             : kEmpty;
}

bool BoolParam(const SimCall& call, size_t i) {
  if (i >= call.params.size()) return false;
  const SimValue& v = call.params[i];
  if (v.kind == SimValue::Kind::kBool) return v.b;
  return v.kind == SimValue::Kind::kString && (v.s == "true" || v.s == "1");
}

bool IsThickType(absl::string_view t) {
  return t == "lvm" || t == "lvmoiscsi" || t == "lvmohba" || t == "lvmofcoe";
}

// What a snapshot of `vdi` takes from its SR: the whole disk on a thick
// (LVM) SR, a small VHD on a thin one.
int64_t SnapshotBytesNeeded(const Object& sr, const Object& vdi) {
  return IsThickType(sr.str("type")) ? vdi.at("virtual_size").i : 46592;
}

RpcReply ErrorPageReply(std::string body) {
  RpcReply reply;
  reply.status = 500;
  reply.content_type = "text/html";
  reply.body = std::move(body);
  reply.cors = false;
  reply.close = true;
  return reply;
}

bool AllDigits(absl::string_view s) {
  return !s.empty() && s.size() <= 6 &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return absl::ascii_isdigit(c); });
}

}  // namespace

absl::StatusOr<RpcGeneration> RpcGenerationOf(
    absl::string_view product_version) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(product_version, '.');
  int major = 0;
  int minor = 0;
  if (parts.size() < 2 || !AllDigits(parts[0]) || !AllDigits(parts[1]) ||
      !absl::SimpleAtoi(parts[0], &major) ||
      !absl::SimpleAtoi(parts[1], &minor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("settings.product_version \"", product_version,
                     "\" is not a version such as 7.2.0"));
  }
  const auto before = [&](int ma, int mi) {
    return major < ma || (major == ma && minor < mi);
  };
  // JSON-RPC came with the rpc-light rewrite (xen-api cc8f80e43e, merged
  // 2012-12-21): absent from the XS62 tag, present in every later release.
  if (before(6, 5)) return RpcGeneration::kXmlRpcOnly;
  // CA-261166 (xen-api 27f3847936, 2017-08-23): v2 answers, after 7.2.
  if (before(7, 3)) return RpcGeneration::kJsonRpcLegacy;
  // CA-274994 (xen-api fe3255ae2f, 2017-11-29): error code 1, from 7.5.
  if (before(7, 5)) return RpcGeneration::kJsonRpcV2Code0;
  return RpcGeneration::kJsonRpcV2;
}

RpcReply SimPool::HandleRpc(const std::string& host, absl::string_view path,
                            absl::string_view body) {
  // XAPI's handler table is matched by the longest prefix of the path:
  // /jsonrpc (post_jsonrpc), /json (post_json, XML-RPC), else / (XML-RPC).
  // Before 6.5 there is no /jsonrpc handler, so /jsonrpc lands on /json.
  if (rpc_generation_ != RpcGeneration::kXmlRpcOnly &&
      absl::StartsWith(path, "/jsonrpc")) {
    return JsonRpcReply(host, body);
  }
  return XmlRpcReply(host, absl::StartsWith(path, "/json"), body);
}

std::string SimPool::HandleXmlRpc(const std::string& host,
                                  absl::string_view body, int* status) {
  RpcReply reply = XmlRpcReply(host, /*json_path=*/false, body);
  *status = reply.drop_connection ? -1 : reply.status;
  return reply.body;
}

HttpResponse SimPool::HandleOptions(const std::string& host,
                                    const std::string& requested_headers) {
  HttpResponse r;
  {
    absl::MutexLock lock(&mu_);
    Object* h = HostByNameLocked(host);
    if (h != nullptr && !HostLiveLocked(*h)) {
      r.drop_connection = true;
      return r;
    }
  }
  // Http_svr.respond_to_options.
  r.close = false;
  r.headers = {{"Cache-Control", "no-cache, no-store"},
               {"Access-Control-Allow-Origin", "*"},
               {"Access-Control-Allow-Headers",
                requested_headers.empty()
                    ? std::string("X-Requested-With")
                    : absl::StrCat(requested_headers, ", X-Requested-With")},
               {"Access-Control-Allow-Methods", "PUT"}};
  return r;
}

SimPool::CallOutcome SimPool::RunCall(const std::string& host,
                                      const SimCall& call) {
  // A SLOW_CALL fault delays the call before it runs, without the lock.
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    if (call.params.size() > 1 && absl::StartsWith(call.method, "VM.")) {
      if (Object* vm = GetLocked("VM", StrParam(call, 1)))
        ids = VmIdentitiesLocked(*vm);
    }
    if (const Fault* f =
            MatchFaultLocked(Fault::SLOW_CALL, host, call.method, ids)) {
      delay = absl::Milliseconds(f->delay_ms());
    }
  }
  if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
  CallOutcome outcome;
  {
    absl::MutexLock lock(&mu_);
    Object* h = HostByNameLocked(host);
    if (h != nullptr && !HostLiveLocked(*h)) {
      outcome.dropped = true;  // a host that is down answers nothing
      return outcome;
    }
    ++api_calls_;
    outcome.result = DispatchLocked(host, call);
  }
  if (!outcome.result.error.empty() &&
      outcome.result.error[0] == "SESSION_AUTHENTICATION_FAILED" &&
      settings_.auth_failure_delay_ms() > 0) {
    absl::SleepFor(absl::Milliseconds(settings_.auth_failure_delay_ms()));
  }
  return outcome;
}

RpcReply SimPool::XmlRpcReply(const std::string& host, bool json_path,
                              absl::string_view body) {
  RpcReply reply;
  reply.content_type = "text/xml";
  absl::StatusOr<SimCall> call = ParseSimCall(body);
  if (!call.ok()) {
    if (rpc_generation_ == RpcGeneration::kXmlRpcOnly &&
        call.status().message() == kXmlParseError) {
      // Hosts before 6.5 caught the XML parser's error and answered a
      // fault (api_server.ml at the XS62 tag); XO reads the text/xml
      // answer to POST /jsonrpc as "no JSON-RPC here".
      reply.cors = false;
      reply.body = XapiFault(1, "Failed to parse supplied XML");
      return reply;
    }
    absl::MutexLock lock(&mu_);
    return ErrorPageReply(
        ErrorPageLocked(
            500, {"INTERNAL_ERROR", std::string(call.status().message())})
            .body);
  }
  CallOutcome outcome = RunCall(host, *call);
  if (outcome.dropped) {
    reply.drop_connection = true;
    return reply;
  }
  const RpcResult& result = outcome.result;
  reply.cors = !result.before_dispatch;
  if (!result.error.empty()) {
    reply.body = XapiFailure(result.error);
  } else if (call->method == "system.listMethods") {
    // The bare array, without the Status/Value struct. From 6.5
    // api_server.ml writes it itself, with an XML declaration; before, the
    // dispatcher returned it as XMLRPC.Raw for xml-light to print.
    reply.body =
        absl::StrCat(rpc_generation_ == RpcGeneration::kXmlRpcOnly
                         ? ""
                         : "<?xml version=\"1.0\"?>",
                     "<methodResponse><params><param>", XapiValue(result.value),
                     "</param></params></methodResponse>");
  } else if (json_path && (rpc_generation_ == RpcGeneration::kXmlRpcOnly ||
                           rpc_generation_ == RpcGeneration::kJsonRpcLegacy)) {
    // POST /json on hosts up to 7.2: the result travels as its JSON text.
    reply.body = XapiSuccess(
        SimValue::Str(JsonText(result.value, JsonDialect::kLegacy)));
  } else {
    reply.body = XapiSuccess(result.value);
  }
  return reply;
}

RpcReply SimPool::JsonRpcReply(const std::string& host,
                               absl::string_view body) {
  const bool legacy = rpc_generation_ == RpcGeneration::kJsonRpcLegacy;
  const JsonDialect dialect =
      legacy ? JsonDialect::kLegacy : JsonDialect::kYojson;
  absl::StatusOr<JsonRpcRequest> request = ParseJsonRpcRequest(body, dialect);
  if (!request.ok()) {
    absl::MutexLock lock(&mu_);
    return ErrorPageReply(
        ErrorPageLocked(
            500, {"INTERNAL_ERROR", std::string(request.status().message())})
            .body);
  }
  CallOutcome outcome = RunCall(host, request->call);
  RpcReply reply;
  if (outcome.dropped) {
    reply.drop_connection = true;
    return reply;
  }
  const RpcResult& result = outcome.result;
  reply.content_type = "application/json";
  reply.cors = !result.before_dispatch;
  // Hosts up to 7.2 answer v1 with "id": 0 whatever was asked (ocaml-rpc's
  // json_of_response before 2.0); later hosts answer in the request's
  // version with its id.
  const JsonRpcVersion version =
      legacy ? JsonRpcVersion::kV1 : request->version;
  const SimValue id = legacy ? SimValue::Int(0) : request->id;
  if (result.error.empty()) {
    reply.body = JsonRpcResponse(dialect, version, id, true, result.value);
  } else if (result.before_dispatch) {
    // Raised before the dispatcher and caught by jsoncallback itself:
    // Jsonrpc.string_of_response with the default id 0, v2 (v1 up to 7.2),
    // and the error as an array.
    reply.body = JsonRpcResponse(
        dialect, legacy ? JsonRpcVersion::kV1 : JsonRpcVersion::kV2,
        SimValue::Int(0), false, SimValue::StrSet(result.error));
  } else if (version == JsonRpcVersion::kV2 &&
             request->call.method != "system.listMethods") {
    const int64_t code =
        rpc_generation_ == RpcGeneration::kJsonRpcV2Code0 ? 0 : 1;
    reply.body = JsonRpcResponse(dialect, version, id, false,
                                 JsonRpcErrorObject(code, result.error));
  } else {
    reply.body = JsonRpcResponse(dialect, version, id, false,
                                 SimValue::StrSet(result.error));
  }
  return reply;
}

SimPool::RpcResult SimPool::DispatchLocked(const std::string& host,
                                           const SimCall& call) {
  const std::string& method = call.method;
  const size_t dot = method.find('.');
  const std::string cls = dot == std::string::npos ? "" : method.substr(0, dot);
  const std::string message =
      dot == std::string::npos ? "" : method.substr(dot + 1);
  Object* receiving_host = HostByNameLocked(host);
  const bool on_master =
      receiving_host == nullptr || receiving_host->ref == master_ref_;

  // XAPI's generated dispatcher first checks that every parameter is
  // UTF-8 that XML can carry (gen_server.ml, Encodings.UTF8_XML).
  for (const SimValue& p : call.params) {
    std::string text = RpcDebugString(p);
    if (!IsXapiParameterText(text)) {
      RpcResult refused;
      refused.error = {"INVALID_VALUE", "Invalid UTF-8 string in parameter",
                       std::move(text)};
      refused.before_dispatch = true;
      return refused;
    }
  }

  // The method's row in the table of served methods: whether it exists,
  // its parameter counts, whether it takes a session.
  const ServedMethod* served = FindServedMethod(method);

  // SESSION_INVALID faults: after `after_calls` calls, every session goes,
  // as when the toolstack restarts. Calls without a session do not count.
  for (size_t i = 0; i < faults_.size(); ++i) {
    const Fault& f = faults_[i];
    if (f.kind() != Fault::SESSION_INVALID) continue;
    if (f.times() != 0 && fault_fired_[i] >= f.times()) continue;
    if (served != nullptr && !served->session) continue;
    uint32_t& seen = session_invalid_seen_[i];
    if (++seen > f.after_calls()) {
      seen = 0;
      ++fault_fired_[i];
      for (const auto& [ref, unused_session] : sessions_)
        DestroyLocked("session", ref);
      sessions_.clear();
    }
  }

  if (served == nullptr)
    return {SimValue(), Err({"MESSAGE_METHOD_UNKNOWN", method})};
  const Arity arity = ArityOf(*served);
  if (call.params.size() < arity.min || call.params.size() > arity.max) {
    return {SimValue(),
            Err({"MESSAGE_PARAMETER_COUNT_MISMATCH", method,
                 absl::StrCat(arity.max), absl::StrCat(call.params.size())})};
  }

  // The two methods without a session; no CALL_ERROR applies to them.
  if (!served->session) {
    // Ignores its parameters and answers on every host.
    if (method == "system.listMethods")
      return {SimValue::StrSet(ServedMethods()), {}};
    if (!on_master)
      return {SimValue(), Err({"HOST_IS_SLAVE", MasterAddressLocked()})};
    return LoginLocked(host, call);  // session.login_with_password
  }

  if (!on_master)
    return {SimValue(), Err({"HOST_IS_SLAVE", MasterAddressLocked()})};
  const std::string& session = StrParam(call, 0);
  if (sessions_.find(session) == sessions_.end()) {
    return {SimValue(), Err({"SESSION_INVALID", session})};
  }

  // CALL_ERROR faults.
  std::vector<std::string> ids;
  if (cls == "VM") {
    if (Object* vm = GetLocked("VM", StrParam(call, 1)))
      ids = VmIdentitiesLocked(*vm);
  } else if (cls == "VDI") {
    if (Object* vdi = GetLocked("VDI", StrParam(call, 1)))
      ids = VdiVmIdentitiesLocked(*vdi);
  }
  if (const Fault* f = MatchFaultLocked(Fault::CALL_ERROR, host, method, ids)) {
    return {SimValue(), FaultErrorLocked(*f, StrParam(call, 1))};
  }

  if (method == "session.logout") {
    sessions_.erase(session);
    DestroyLocked("session", session);
    return {SimValue::Str(""), {}};
  }
  if (method == "session.get_this_host") {
    return {SimValue::Str(master_ref_), {}};
  }
  if (method == "VM.snapshot") return SnapshotVmLocked(call);
  if (method == "VM.destroy") return DestroyVmLocked(call);
  if (method == "VDI.snapshot") return SnapshotVdiLocked(call);
  if (method == "VDI.destroy") return DestroyVdiLocked(call);
  if (method == "VDI.create") return CreateVdiLocked(call);
  if (method == "VM.start") return StartVmLocked(call);
  if (method == "VM.set_is_a_template") {
    Object* vm = GetLocked("VM", StrParam(call, 1));
    if (vm == nullptr)
      return {SimValue(), Err({"HANDLE_INVALID", "VM", StrParam(call, 1)})};
    const bool value = BoolParam(call, 2);
    if (value && vm->str("power_state") != "Halted") {
      return {SimValue(), Err({"VM_BAD_POWER_STATE", vm->ref, "halted",
                               absl::AsciiStrToLower(vm->str("power_state"))})};
    }
    vm->at("is_a_template") = SimValue::Bool(value);
    return {SimValue::Str(""), {}};
  }
  if (method == "VM.set_affinity") {
    Object* vm = GetLocked("VM", StrParam(call, 1));
    if (vm == nullptr)
      return {SimValue(), Err({"HANDLE_INVALID", "VM", StrParam(call, 1)})};
    const std::string& host_ref = StrParam(call, 2);
    if (host_ref != "OpaqueRef:NULL" &&
        GetLocked("host", host_ref) == nullptr) {
      return {SimValue(), Err({"HANDLE_INVALID", "host", host_ref})};
    }
    vm->at("affinity") = SimValue::Str(host_ref);
    return {SimValue::Str(""), {}};
  }
  if (method == "task.create") {
    Object* task = CreateLocked("task");
    task->at("name_label") = SimValue::Str(StrParam(call, 1));
    task->at("name_description") = SimValue::Str(StrParam(call, 2));
    task->at("created") = SimValue::Time(NowLocked());
    task->at("status") = SimValue::Str("pending");
    task->at("resident_on") = SimValue::Str(master_ref_);
    task->at("progress") = SimValue::Float(0);
    task->at("type") = SimValue::Str("<none/>");
    task->at("allowed_operations") = SimValue::StrSet({"cancel"});
    return {SimValue::Str(task->ref), {}};
  }
  if (method == "task.cancel") {
    Object* task = GetLocked("task", StrParam(call, 1));
    if (task == nullptr)
      return {SimValue(), Err({"HANDLE_INVALID", "task", StrParam(call, 1)})};
    if (task->str("status") != "pending") {
      return {SimValue(),
              Err({"OPERATION_NOT_ALLOWED", "task is not pending"})};
    }
    if (task_streaming_.count(task->ref) != 0) {
      task->at("status") = SimValue::Str("cancelling");
    } else {
      task->at("status") = SimValue::Str("cancelled");
      task->at("finished") = SimValue::Time(NowLocked());
      task->at("error_info") = SimValue::StrSet({"TASK_CANCELLED", task->ref});
    }
    return {SimValue::Str(""), {}};
  }
  if (method == "task.destroy") {
    Object* task = GetLocked("task", StrParam(call, 1));
    if (task == nullptr)
      return {SimValue(), Err({"HANDLE_INVALID", "task", StrParam(call, 1)})};
    DestroyLocked("task", task->ref);
    return {SimValue::Str(""), {}};
  }
  bool handled = false;
  RpcResult r = GenericLocked(cls, message, call, &handled);
  if (handled) return r;
  return {SimValue(), Err({"MESSAGE_METHOD_UNKNOWN", method})};
}

SimValue SimPool::RecordLocked(const Object& o) {
  SimValue record = SimValue::Map();
  record.map.reserve(o.fields.size());
  for (size_t i = 0; i < o.fields.size(); ++i) {
    record.map.emplace_back(o.schema->fields[i].name, o.fields[i]);
  }
  return record;
}

SimPool::RpcResult SimPool::GenericLocked(const std::string& cls,
                                          const std::string& message,
                                          const SimCall& call, bool* handled) {
  *handled = true;
  const ClassSchema* schema = FindClass(cls);
  if (message == "get_all") {
    SimValue refs = SimValue::Set();
    for (Object* o : AllLocked(cls))
      refs.items.push_back(SimValue::Str(o->ref));
    return {refs, {}};
  }
  if (message == "get_all_records") {
    SimValue records = SimValue::Map();
    for (Object* o : AllLocked(cls))
      records.map.emplace_back(o->ref, RecordLocked(*o));
    return {records, {}};
  }
  if (message == "get_by_uuid") {
    Object* o = ByUuidLocked(cls, StrParam(call, 1));
    if (o == nullptr)
      return {SimValue(), Err({"UUID_INVALID", cls, StrParam(call, 1)})};
    return {SimValue::Str(o->ref), {}};
  }
  if (message == "get_by_name_label") {
    // Like XAPI: templates and snapshots are returned too.
    SimValue refs = SimValue::Set();
    for (Object* o : AllLocked(cls)) {
      if (o->str("name_label") == StrParam(call, 1))
        refs.items.push_back(SimValue::Str(o->ref));
    }
    return {refs, {}};
  }
  Object* o = GetLocked(cls, StrParam(call, 1));
  if (o == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", cls, StrParam(call, 1)})};
  if (message == "get_record") return {RecordLocked(*o), {}};
  if (message == "set_name_label" || message == "set_name_description") {
    o->at(message.substr(4)) = SimValue::Str(StrParam(call, 2));
    return {SimValue::Str(""), {}};
  }
  if (message == "set_other_config" || message == "set_tags") {
    const SimValue& v = call.params[2];
    if (v.kind !=
        (message == "set_tags" ? SimValue::Kind::kSet : SimValue::Kind::kMap)) {
      return {SimValue(), Err({"FIELD_TYPE_ERROR", "value"})};
    }
    o->at(message.substr(4)) = v;
    return {SimValue::Str(""), {}};
  }
  if (message == "add_to_other_config") {
    SimValue& oc = o->at("other_config");
    if (oc.Get(StrParam(call, 2)) != nullptr) {
      return {SimValue(), Err({"MAP_DUPLICATE_KEY", cls, "other_config", o->ref,
                               StrParam(call, 2)})};
    }
    oc.Put(StrParam(call, 2), SimValue::Str(StrParam(call, 3)));
    return {SimValue::Str(""), {}};
  }
  if (message == "remove_from_other_config") {
    o->at("other_config").Erase(StrParam(call, 2));
    return {SimValue::Str(""), {}};
  }
  if (message == "add_tags" || message == "remove_tags") {
    SimValue& tags = o->at("tags");
    const std::string& tag = StrParam(call, 2);
    auto it = std::find_if(tags.items.begin(), tags.items.end(),
                           [&](const SimValue& t) { return t.s == tag; });
    if (message == "add_tags" && it == tags.items.end())
      tags.items.push_back(SimValue::Str(tag));
    if (message == "remove_tags" && it != tags.items.end())
      tags.items.erase(it);
    return {SimValue::Str(""), {}};
  }
  if (absl::StartsWith(message, "get_") &&
      schema->Find(message.substr(4)) >= 0) {
    return {o->at(message.substr(4)), {}};
  }
  *handled = false;
  return {};
}

SimPool::RpcResult SimPool::LoginLocked(const std::string& host,
                                        const SimCall& call) {
  (void)host;
  const std::string& user = StrParam(call, 0);
  if (user != credentials_.username() ||
      StrParam(call, 1) != credentials_.password()) {
    return {SimValue(), Err({"SESSION_AUTHENTICATION_FAILED", user,
                             "Authentication failure"})};
  }
  const std::string originator = StrParam(call, 3);
  // XAPI keeps at most N sessions per originator (or per user name when there
  // is none) and destroys the oldest beyond that.
  std::vector<std::pair<uint64_t, std::string>> same;
  for (const auto& [ref, s] : sessions_) {
    if (originator.empty() ? s.originator.empty() && s.user == user
                           : s.originator == originator) {
      same.emplace_back(s.seq, ref);
    }
  }
  std::sort(same.begin(), same.end());
  while (same.size() + 1 > settings_.max_sessions_per_originator()) {
    sessions_.erase(same.front().second);
    DestroyLocked("session", same.front().second);
    same.erase(same.begin());
  }
  // Session refs are bearer tokens: random, never derived from the fixture.
  const uint64_t a = secret_rng_(), b = secret_rng_();
  Object* session = CreateLocked(
      "session",
      absl::StrFormat("OpaqueRef:%08x-%04x-4%03x-%04x-%012x", a >> 32,
                      (a >> 16) & 0xffff, a & 0x0fff,
                      ((b >> 48) & 0x3fff) | 0x8000, b & 0xffffffffffffULL));
  session->at("this_host") = SimValue::Str(master_ref_);
  session->at("last_active") = SimValue::Time(NowLocked());
  session->at("originator") = SimValue::Str(originator);
  session->at("auth_user_name") = SimValue::Str(user);
  session->at("is_local_superuser") = SimValue::Bool(true);
  sessions_[session->ref] =
      Session{user, originator, absl::Now(), ++session_seq_};
  if (issued_sessions_.size() < 10000) issued_sessions_.push_back(session->ref);
  return {SimValue::Str(session->ref), {}};
}

Object* SimPool::CopyVdiAsSnapshotLocked(Object* vdi, std::string* error_code) {
  Object* sr = GetLocked("SR", vdi->str("SR"));
  VdiData& data = vdi_data_[vdi->ref];
  const int64_t size = vdi->at("virtual_size").i;
  // A snapshot on a thick (LVM) SR needs room for the whole disk; on a thin SR
  // only a small VHD.
  const bool thick = IsThickType(sr->str("type"));
  const int64_t needed = SnapshotBytesNeeded(*sr, *vdi);
  const int64_t free =
      sr->at("physical_size").i - sr->at("physical_utilisation").i;
  if (needed > free) {
    *error_code = "SR_BACKEND_FAILURE_44";
    return nullptr;
  }
  const auto& limit =
      sr->at("other_config").Get("vmbackup-sim:max_chain_length");
  if (limit != nullptr && data.chain_length + 1 > std::stoul(limit->s)) {
    *error_code = "SR_BACKEND_FAILURE_109";
    return nullptr;
  }
  // On VHD SRs the first snapshot turns the disk's data into a hidden,
  // unmanaged "base copy" that both the disk and the snapshot point at.
  SimValue& sm = vdi->at("sm_config");
  if (sm.Get("vhd-parent") == nullptr) {
    Object* base = CreateLocked("VDI");
    base->at("name_label") = SimValue::Str("base copy");
    base->at("SR") = SimValue::Str(sr->ref);
    base->at("virtual_size") = SimValue::Int(size);
    base->at("physical_utilisation") = vdi->at("physical_utilisation");
    base->at("type") = SimValue::Str("user");
    base->at("managed") = SimValue::Bool(false);
    base->at("read_only") = SimValue::Bool(true);
    base->at("location") = SimValue::Str(base->str("uuid"));
    SimValue base_sm = SimValue::Map();
    base_sm.Put("vdi_type", SimValue::Str("vhd"));
    base_sm.Put(
        "vhd-blocks",
        SimValue::Str("eJztwTEBAAAAwqD1T20ND6AAAAAAAAAAAAAA4N8AKXAAAQ=="));
    base->at("sm_config") = base_sm;
    sr->at("VDIs").items.push_back(SimValue::Str(base->ref));
    sm.Put("vhd-parent", SimValue::Str(base->str("uuid")));
    vdi->at("physical_utilisation") =
        SimValue::Int(thick ? size : 8 * 1024 * 1024);
  }
  // Every snapshot adds a level to the disk's VHD chain until the SR
  // coalesces it (here: when the snapshot is destroyed).
  data.chain_length += 1;
  Object* snap = CreateLocked("VDI");
  const std::string uuid = snap->str("uuid");
  snap->fields = vdi->fields;
  snap->at("uuid") = SimValue::Str(uuid);
  snap->at("location") = SimValue::Str(uuid);
  snap->at("VBDs") = SimValue::Set();
  snap->at("snapshots") = SimValue::Set();
  snap->at("is_a_snapshot") = SimValue::Bool(true);
  snap->at("snapshot_of") = SimValue::Str(vdi->ref);
  snap->at("snapshot_time") = SimValue::Time(NowLocked());
  snap->at("physical_utilisation") = SimValue::Int(needed);
  snap->at("current_operations") = SimValue::Map();
  SimValue snap_sm = SimValue::Map();
  snap_sm.Put("vdi_type", SimValue::Str("vhd"));
  snap_sm.Put("vhd-parent", *sm.Get("vhd-parent"));
  snap->at("sm_config") = snap_sm;
  sr->at("VDIs").items.push_back(SimValue::Str(snap->ref));
  sr->at("physical_utilisation").i += snap->at("physical_utilisation").i;
  sr->at("virtual_allocation").i += size;
  vdi->at("snapshots").items.push_back(SimValue::Str(snap->ref));
  VdiData snap_data;
  snap_data.seed = data.seed;
  snap_data.image =
      data.image;  // a snapshot reads the disk's bytes at snapshot time
  snap_data.chain_length = data.chain_length;
  vdi_data_[snap->ref] = std::move(snap_data);
  return snap;
}

SimPool::RpcResult SimPool::SnapshotVmLocked(const SimCall& call) {
  Object* vm = GetLocked("VM", StrParam(call, 1));
  if (vm == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "VM", StrParam(call, 1)})};
  if (vm->at("is_control_domain").b) {
    return {SimValue(),
            Err({"OPERATION_NOT_ALLOWED", "Cannot snapshot a control domain"})};
  }
  if (vm->at("is_a_template").b)
    return {SimValue(), Err({"VM_IS_TEMPLATE", vm->ref})};
  std::vector<std::string> ignore;
  if (call.params.size() > 3) {
    for (const SimValue& v : call.params[3].items) ignore.push_back(v.s);
  }
  // Check space for every disk first, per SR for all its disks together: a
  // failed snapshot leaves nothing behind.
  std::vector<Object*> disk_vbds;
  std::map<std::string, int64_t> needed_per_sr;
  for (const SimValue& vbd_ref : vm->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr || vbd->at("empty").b || vbd->str("type") != "Disk")
      continue;
    if (std::find(ignore.begin(), ignore.end(), vbd->str("VDI")) !=
        ignore.end())
      continue;
    Object* vdi = GetLocked("VDI", vbd->str("VDI"));
    if (vdi == nullptr) continue;
    Object* sr = GetLocked("SR", vdi->str("SR"));
    needed_per_sr[sr->ref] += SnapshotBytesNeeded(*sr, *vdi);
    auto limit = sr->at("other_config").Get("vmbackup-sim:max_chain_length");
    if (limit != nullptr &&
        vdi_data_[vdi->ref].chain_length + 1 > std::stoul(limit->s)) {
      return {SimValue(), Err({"SR_BACKEND_FAILURE_109", "",
                               "The snapshot chain is too long", ""})};
    }
    disk_vbds.push_back(vbd);
  }
  for (const auto& [sr_ref, needed] : needed_per_sr) {
    Object* sr = GetLocked("SR", sr_ref);
    if (needed > sr->at("physical_size").i - sr->at("physical_utilisation").i) {
      return {SimValue(), Err({"SR_BACKEND_FAILURE_44", "",
                               "There is insufficient space", ""})};
    }
  }
  const std::string source_metadata = SexprRecordLocked(*vm);
  Object* snap = CreateLocked("VM");
  const std::string uuid = snap->str("uuid");
  snap->fields = vm->fields;
  snap->at("uuid") = SimValue::Str(uuid);
  snap->at("name_label") = SimValue::Str(StrParam(call, 2));
  snap->at("is_a_snapshot") = SimValue::Bool(true);
  snap->at("is_a_template") = SimValue::Bool(true);
  snap->at("snapshot_of") = SimValue::Str(vm->ref);
  snap->at("snapshot_time") = SimValue::Time(NowLocked());
  snap->at("snapshots") = SimValue::Set();
  snap->at("children") = SimValue::Set();
  snap->at("parent") = vm->at("parent");
  snap->at("resident_on") = SimValue::Str("OpaqueRef:NULL");
  snap->at("power_state") = SimValue::Str("Halted");
  snap->at("domid") = SimValue::Int(-1);
  snap->at("guest_metrics") = SimValue::Str("OpaqueRef:NULL");
  snap->at("current_operations") = SimValue::Map();
  snap->at("allowed_operations") =
      SimValue::StrSet({"revert", "clone", "copy", "export", "destroy",
                        "changing_static_range"});
  SimValue info = SimValue::Map();
  info.Put("disk-snapshot-type", SimValue::Str("crash_consistent"));
  info.Put("power-state-at-snapshot", SimValue::Str(vm->str("power_state")));
  snap->at("snapshot_info") = info;
  snap->at("snapshot_metadata") = SimValue::Str(source_metadata);
  Object* metrics = CreateLocked("VM_metrics");
  snap->at("metrics") = SimValue::Str(metrics->ref);
  snap->at("VBDs") = SimValue::Set();
  snap->at("VIFs") = SimValue::Set();
  for (const SimValue& vbd_ref : vm->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr) continue;
    const bool is_disk =
        std::find(disk_vbds.begin(), disk_vbds.end(), vbd) != disk_vbds.end();
    if (!is_disk && vbd->str("type") == "Disk") continue;  // an ignored disk
    Object* copy = CreateLocked("VBD");
    const std::string vbd_uuid = copy->str("uuid");
    copy->fields = vbd->fields;
    copy->at("uuid") = SimValue::Str(vbd_uuid);
    copy->at("VM") = SimValue::Str(snap->ref);
    copy->at("currently_attached") = SimValue::Bool(false);
    copy->at("current_operations") = SimValue::Map();
    if (is_disk) {
      std::string code;
      Object* vdi =
          CopyVdiAsSnapshotLocked(GetLocked("VDI", vbd->str("VDI")), &code);
      if (vdi == nullptr) {
        // Space and chain length were checked above for all disks at once.
        return {SimValue(), Err({"INTERNAL_ERROR", code})};
      }
      vdi->at("VBDs").items.push_back(SimValue::Str(copy->ref));
      copy->at("VDI") = SimValue::Str(vdi->ref);
    } else {
      copy->at("VDI") = SimValue::Str("OpaqueRef:NULL");
      copy->at("empty") = SimValue::Bool(true);
    }
    snap->at("VBDs").items.push_back(SimValue::Str(copy->ref));
  }
  for (const SimValue& vif_ref : vm->at("VIFs").items) {
    Object* vif = GetLocked("VIF", vif_ref.s);
    if (vif == nullptr) continue;
    Object* copy = CreateLocked("VIF");
    const std::string vif_uuid = copy->str("uuid");
    copy->fields = vif->fields;
    copy->at("uuid") = SimValue::Str(vif_uuid);
    copy->at("VM") = SimValue::Str(snap->ref);
    copy->at("currently_attached") = SimValue::Bool(false);
    snap->at("VIFs").items.push_back(SimValue::Str(copy->ref));
    if (Object* net = GetLocked("network", vif->str("network"))) {
      net->at("VIFs").items.push_back(SimValue::Str(copy->ref));
    }
  }
  vm->at("snapshots").items.push_back(SimValue::Str(snap->ref));
  vm->at("parent") = SimValue::Str(snap->ref);
  if (Object* previous = GetLocked("VM", snap->str("parent"))) {
    previous->at("children").items.push_back(SimValue::Str(snap->ref));
  }
  return {SimValue::Str(snap->ref), {}};
}

SimPool::RpcResult SimPool::DestroyVmLocked(const SimCall& call) {
  Object* vm = GetLocked("VM", StrParam(call, 1));
  if (vm == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "VM", StrParam(call, 1)})};
  if (vm->at("is_control_domain").b) {
    return {SimValue(),
            Err({"OPERATION_NOT_ALLOWED", "Cannot destroy a control domain"})};
  }
  const std::string& state = vm->str("power_state");
  if (state != "Halted" && !vm->at("is_a_snapshot").b) {
    return {SimValue(), Err({"VM_BAD_POWER_STATE", vm->ref, "halted",
                             absl::AsciiStrToLower(state)})};
  }
  // VBDs and VIFs go with the VM; its VDIs stay (callers destroy them).
  for (const SimValue& vbd_ref : vm->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr) continue;
    if (Object* vdi = GetLocked("VDI", vbd->str("VDI"))) {
      vdi->at("VBDs").RemoveItem(vbd->ref);
    }
    DestroyLocked("VBD", vbd->ref);
  }
  for (const SimValue& vif_ref : vm->at("VIFs").items) {
    Object* vif = GetLocked("VIF", vif_ref.s);
    if (vif == nullptr) continue;
    if (Object* net = GetLocked("network", vif->str("network"))) {
      net->at("VIFs").RemoveItem(vif->ref);
    }
    DestroyLocked("VIF", vif->ref);
  }
  if (Object* parent = GetLocked("VM", vm->str("snapshot_of"))) {
    parent->at("snapshots").RemoveItem(vm->ref);
    if (parent->str("parent") == vm->ref)
      parent->at("parent") = vm->at("parent");
  }
  for (Object* other : AllLocked("VM"))
    other->at("children").RemoveItem(vm->ref);
  DestroyLocked("VM_metrics", vm->str("metrics"));
  DestroyLocked("VM_guest_metrics", vm->str("guest_metrics"));
  DestroyLocked("VM", vm->ref);
  return {SimValue::Str(""), {}};
}

SimPool::RpcResult SimPool::StartVmLocked(const SimCall& call) {
  Object* vm = GetLocked("VM", StrParam(call, 1));
  if (vm == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "VM", StrParam(call, 1)})};
  if (vm->at("is_a_template").b || vm->at("is_a_snapshot").b)
    return {SimValue(), Err({"VM_IS_TEMPLATE", vm->ref})};
  const std::string state = vm->str("power_state");
  if (state != "Halted") {
    return {SimValue(), Err({"VM_BAD_POWER_STATE", vm->ref, "halted",
                             absl::AsciiStrToLower(state)})};
  }
  // A live host that sees every SR of the VM's disks: its affinity first,
  // then the master, then the others.
  std::vector<std::string> srs;
  for (const SimValue& vbd_ref : vm->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    Object* vdi = vbd != nullptr ? GetLocked("VDI", vbd->str("VDI")) : nullptr;
    if (vdi != nullptr) srs.push_back(vdi->str("SR"));
  }
  std::vector<Object*> order;
  if (Object* a = GetLocked("host", vm->str("affinity"))) order.push_back(a);
  if (Object* m = GetLocked("host", master_ref_)) order.push_back(m);
  for (Object* h : AllLocked("host")) order.push_back(h);
  Object* host = nullptr;
  for (Object* h : order) {
    if (host != nullptr || !HostLiveLocked(*h)) continue;
    bool sees = true;
    for (const std::string& sr : srs) sees = sees && HostSeesSrLocked(*h, sr);
    if (sees) host = h;
  }
  if (host == nullptr) return {SimValue(), Err({"NO_HOSTS_AVAILABLE"})};
  vm->at("power_state") = SimValue::Str("Running");
  vm->at("resident_on") = SimValue::Str(host->ref);
  int64_t domid = 1;
  for (Object* other : AllLocked("VM"))
    domid = std::max(domid, other->at("domid").i + 1);
  vm->at("domid") = SimValue::Int(domid);
  host->at("resident_VMs").items.push_back(SimValue::Str(vm->ref));
  for (const char* cls : {"VBDs", "VIFs"}) {
    for (const SimValue& ref : vm->at(cls).items) {
      Object* o = GetLocked(std::string(cls).substr(0, 3), ref.s);
      if (o == nullptr) continue;
      if (std::string(cls) == "VBDs" && o->str("VDI") == "OpaqueRef:NULL")
        continue;
      o->at("currently_attached") = SimValue::Bool(true);
    }
  }
  return {SimValue::Str(""), {}};
}

SimPool::RpcResult SimPool::CreateVdiLocked(const SimCall& call) {
  const SimValue& args = call.params[1];
  if (args.kind != SimValue::Kind::kMap)
    return {SimValue(), Err({"FIELD_TYPE_ERROR", "args"}), true};
  // The fields VDI.create needs (XAPI's rpc layer refuses a record without
  // one); xenstore_data, sm_config and tags have defaults.
  for (const char* f : {"name_label", "name_description", "SR", "virtual_size",
                        "type", "sharable", "read_only", "other_config"}) {
    if (args.Get(f) == nullptr)
      return {SimValue(), Err({"FIELD_TYPE_ERROR", f}), true};
  }
  auto str = [&](const char* f) { return args.Get(f)->s; };
  Object* sr = GetLocked("SR", str("SR"));
  if (sr == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "SR", str("SR")})};
  int64_t size = 0;
  const SimValue& vsize = *args.Get("virtual_size");
  if (vsize.kind == SimValue::Kind::kInt) {
    size = vsize.i;
  } else if (vsize.kind != SimValue::Kind::kString ||
             !absl::SimpleAtoi(vsize.s, &size)) {
    return {SimValue(), Err({"FIELD_TYPE_ERROR", "virtual_size"}), true};
  }
  if (size <= 0) {
    return {SimValue(),
            Err({"SR_BACKEND_FAILURE_79", "", "VDI Invalid size", ""})};
  }
  if (sr->str("content_type") == "iso") {
    return {SimValue(), Err({"SR_OPERATION_NOT_SUPPORTED", sr->ref})};
  }
  // Room for the whole disk on a thick (LVM) SR, for a small VHD on a thin
  // one.
  const int64_t needed = IsThickType(sr->str("type")) ? size : 46592;
  if (needed > sr->at("physical_size").i - sr->at("physical_utilisation").i) {
    return {SimValue(), Err({"SR_BACKEND_FAILURE_44", "",
                             "There is insufficient space", ""})};
  }
  Object* vdi = CreateLocked("VDI");
  vdi->at("name_label") = SimValue::Str(str("name_label"));
  vdi->at("name_description") = SimValue::Str(str("name_description"));
  vdi->at("SR") = SimValue::Str(sr->ref);
  vdi->at("virtual_size") = SimValue::Int(size);
  vdi->at("physical_utilisation") = SimValue::Int(needed);
  vdi->at("type") = SimValue::Str(str("type"));
  vdi->at("sharable") = SimValue::Bool(args.Get("sharable")->b);
  vdi->at("read_only") = SimValue::Bool(args.Get("read_only")->b);
  vdi->at("location") = SimValue::Str(vdi->str("uuid"));
  for (const char* f : {"other_config", "xenstore_data", "sm_config"}) {
    const SimValue* v = args.Get(f);
    if (v != nullptr && v->kind == SimValue::Kind::kMap) vdi->at(f) = *v;
  }
  if (const SimValue* v = args.Get("tags");
      v != nullptr && v->kind == SimValue::Kind::kSet) {
    vdi->at("tags") = *v;
  }
  sr->at("VDIs").items.push_back(SimValue::Str(vdi->ref));
  sr->at("physical_utilisation").i += needed;
  sr->at("virtual_allocation").i += size;
  VdiData data;
  data.image = std::make_shared<ZeroDisk>(static_cast<uint64_t>(size));
  vdi_data_[vdi->ref] = std::move(data);
  return {SimValue::Str(vdi->ref), {}};
}

SimPool::RpcResult SimPool::SnapshotVdiLocked(const SimCall& call) {
  Object* vdi = GetLocked("VDI", StrParam(call, 1));
  if (vdi == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "VDI", StrParam(call, 1)})};
  if (!vdi->at("managed").b) {
    return {SimValue(), Err({"OPERATION_NOT_ALLOWED", "VDI is not managed"})};
  }
  std::string code;
  Object* snap = CopyVdiAsSnapshotLocked(vdi, &code);
  if (snap == nullptr) {
    Fault f;
    f.add_error(code);
    return {SimValue(), FaultErrorLocked(f, vdi->ref)};
  }
  return {SimValue::Str(snap->ref), {}};
}

SimPool::RpcResult SimPool::DestroyVdiLocked(const SimCall& call) {
  Object* vdi = GetLocked("VDI", StrParam(call, 1));
  if (vdi == nullptr)
    return {SimValue(), Err({"HANDLE_INVALID", "VDI", StrParam(call, 1)})};
  for (const SimValue& vbd_ref : vdi->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd != nullptr && vbd->at("currently_attached").b) {
      return {SimValue(), Err({"VDI_IN_USE", vdi->ref, "destroy"})};
    }
  }
  VdiData& data = vdi_data_[vdi->ref];
  // Right after an export, the VDI may still be attached to dom0 (xen-api
  // issue 4339): the first destroy attempts are refused.
  if (data.exporting > 0) {
    return {SimValue(), Err({"VDI_IN_USE", vdi->ref, "destroy"})};
  }
  if (data.in_use_after_export > 0) {
    --data.in_use_after_export;
    return {SimValue(), Err({"VDI_IN_USE", vdi->ref, "destroy"})};
  }
  for (const SimValue& vbd_ref : vdi->at("VBDs").items) {
    Object* vbd = GetLocked("VBD", vbd_ref.s);
    if (vbd == nullptr) continue;
    if (Object* vm = GetLocked("VM", vbd->str("VM"))) {
      vm->at("VBDs").RemoveItem(vbd->ref);
    }
    DestroyLocked("VBD", vbd->ref);
  }
  if (Object* source = GetLocked("VDI", vdi->str("snapshot_of"))) {
    source->at("snapshots").RemoveItem(vdi->ref);
    auto source_data = vdi_data_.find(source->ref);
    if (source_data != vdi_data_.end() &&
        source_data->second.chain_length > 1) {
      --source_data->second.chain_length;
    }
  }
  if (Object* sr = GetLocked("SR", vdi->str("SR"))) {
    sr->at("VDIs").RemoveItem(vdi->ref);
    sr->at("physical_utilisation").i -= vdi->at("physical_utilisation").i;
    sr->at("virtual_allocation").i -= vdi->at("virtual_size").i;
  }
  vdi_data_.erase(vdi->ref);
  DestroyLocked("VDI", vdi->ref);
  return {SimValue::Str(""), {}};
}

}  // namespace vmb::sim
