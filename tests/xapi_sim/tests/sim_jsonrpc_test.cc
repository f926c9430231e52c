// SPDX-License-Identifier: Apache-2.0
// xapi-sim's JSON-RPC endpoint and system.listMethods: the shapes each
// modelled release answers (docs/xapi-sim.md 5.1), int64 and string
// fidelity, sessions shared with XML-RPC, faults, hostile bodies; over HTTP,
// the headers, keep-alive and one TLS certificate per host.
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <curl/curl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tests/testing/sim_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/fixture.h"
#include "tests/xapi_sim/sim_json.h"
#include "tests/xapi_sim/sim_pool.h"

namespace vmb::sim {
namespace {

using ::testing::Contains;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kMaster[] = "xcp-host1";
constexpr char kMember[] = "xcp-host2";

// Session refs are random: "OpaqueRef:X" in their place makes replies
// comparable byte for byte.
std::string Normalised(const std::string& body) {
  static const std::regex kRef("OpaqueRef:[0-9a-f]{8}-[0-9a-f-]{27}");
  return std::regex_replace(body, kRef, "OpaqueRef:X");
}

std::string FirstRef(const std::string& body) {
  static const std::regex kRef("OpaqueRef:[0-9a-f]{8}-[0-9a-f-]{27}");
  std::smatch m;
  return std::regex_search(body, m, kRef) ? m.str() : "";
}

bool IsValidJson(const std::string& text) {
  google::protobuf::Value v;
  return google::protobuf::util::JsonStringToMessage(text, &v).ok();
}

// A pool of the demo fixture modelling `product_version`.
std::unique_ptr<SimPool> MakePool(
    const std::string& product_version,
    const std::function<void(Fixture&)>& edit = nullptr) {
  Fixture f = DemoFixture();
  f.mutable_settings()->set_product_version(product_version);
  if (edit) edit(f);
  absl::StatusOr<std::unique_ptr<SimPool>> pool = SimPool::Create(f);
  return pool.ok() ? *std::move(pool) : nullptr;
}

// {"jsonrpc":"2.0","method":M,"params":[P...],"id":1}; `params` are JSON.
std::string V2(const std::string& method,
               const std::vector<std::string>& params,
               const std::string& id = "1") {
  return absl::StrCat(R"({"jsonrpc":"2.0","method":")", method,
                      R"(","params":[)", absl::StrJoin(params, ","),
                      R"(],"id":)", id, "}");
}
std::string V1(const std::string& method,
               const std::vector<std::string>& params,
               const std::string& id = "1") {
  return absl::StrCat(R"({"method":")", method, R"(","params":[)",
                      absl::StrJoin(params, ","), R"(],"id":)", id, "}");
}
std::string Q(const std::string& s) { return absl::StrCat("\"", s, "\""); }

std::string XmlCall(const std::string& method,
                    const std::vector<std::string>& params) {
  std::string out =
      absl::StrCat("<methodCall><methodName>", method, "</methodName><params>");
  for (const std::string& p : params)
    absl::StrAppend(&out, "<param><value>", p, "</value></param>");
  return out + "</params></methodCall>";
}

std::string JsonLogin(SimPool& pool) {
  RpcReply r = pool.HandleRpc(
      kMaster, "/jsonrpc",
      V1("session.login_with_password", {Q("root"), Q("demo-password")}));
  return FirstRef(r.body);
}

std::string XmlLogin(SimPool& pool) {
  RpcReply r = pool.HandleRpc(
      kMaster, "/",
      XmlCall("session.login_with_password", {"root", "demo-password"}));
  return FirstRef(r.body);
}

// The result text of a v2 call on a yojson host: what follows "result":.
std::string ResultOf(const std::string& body) {
  const size_t at = body.find("\"result\":");
  if (at == std::string::npos) return "(no result) " + body;
  absl::string_view rest = absl::string_view(body).substr(at + 9);
  if (absl::StartsWith(rest, " ")) rest.remove_prefix(1);
  size_t end = rest.rfind(", \"error\": null");
  if (end == absl::string_view::npos) end = rest.rfind(",\"error\":null");
  if (end == absl::string_view::npos) end = rest.rfind(",\"id\":");
  return std::string(rest.substr(0, end));
}

TEST(SimJsonRpcTest, RpcGenerationFollowsTheProductVersion) {
  const std::vector<std::pair<std::string, RpcGeneration>> cases = {
      {"5.6.100", RpcGeneration::kXmlRpcOnly},
      {"6.2.0", RpcGeneration::kXmlRpcOnly},
      {"6.5.0", RpcGeneration::kJsonRpcLegacy},
      {"7.1.2", RpcGeneration::kJsonRpcLegacy},
      {"7.2.0", RpcGeneration::kJsonRpcLegacy},
      {"7.3.0", RpcGeneration::kJsonRpcV2Code0},
      {"7.4.0", RpcGeneration::kJsonRpcV2Code0},
      {"7.5.0", RpcGeneration::kJsonRpcV2},
      {"8.2.1", RpcGeneration::kJsonRpcV2},
      {"10.0", RpcGeneration::kJsonRpcV2},
  };
  for (const auto& [version, generation] : cases) {
    absl::StatusOr<RpcGeneration> g = RpcGenerationOf(version);
    ASSERT_OK(g.status()) << version;
    EXPECT_EQ(*g, generation) << version;
  }
  for (const char* bad :
       {"", "7", "seven.two", "7.x", "+7.2", " 7.2", "7..2"}) {
    EXPECT_THAT(RpcGenerationOf(bad).status(),
                vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  Fixture f = DemoFixture();
  f.mutable_settings()->set_product_version("7");
  EXPECT_THAT(SimPool::Create(f).status(),
              vmb::testing::StatusIs(
                  absl::StatusCode::kInvalidArgument,
                  HasSubstr("fixture: settings.product_version \"7\" is not a "
                            "version such as 7.2.0")));
  auto pool = SimPool::Create(DemoFixture());
  ASSERT_OK(pool.status());
  EXPECT_EQ((*pool)->rpc_generation(), RpcGeneration::kJsonRpcLegacy)
      << "the default, 7.2.0";
}

TEST(SimJsonRpcTest, Xs72AnswersEveryRequestInV1WithIdZero) {
  auto pool = MakePool("7.2.0");
  ASSERT_NE(pool, nullptr);
  for (const std::string& body : {V1("session.login_with_password",
                                     {Q("root"), Q("demo-password")}, "42"),
                                  V2("session.login_with_password",
                                     {Q("root"), Q("demo-password")}, "43")}) {
    RpcReply r = pool->HandleRpc(kMaster, "/jsonrpc", body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_TRUE(r.cors);
    EXPECT_FALSE(r.close);
    EXPECT_EQ(Normalised(r.body),
              R"({"result": "OpaqueRef:X", "error": null, "id": 0})")
        << body;
  }
  RpcReply r = pool->HandleRpc(
      kMaster, "/jsonrpc",
      V2("session.login_with_password", {Q("root"), Q("wrong")}, "44"));
  EXPECT_EQ(r.body,
            R"({"result": null, "error": ["SESSION_AUTHENTICATION_FAILED", )"
            R"("root", "Authentication failure"], "id": 0})");
  r = pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.nope", {Q("x")}));
  EXPECT_EQ(r.body, R"({"result": null, "error": ["MESSAGE_METHOD_UNKNOWN", )"
                    R"("VM.nope"], "id": 0})");
  EXPECT_TRUE(IsValidJson(r.body));
}

TEST(SimJsonRpcTest, LaterHostsAnswerInTheRequestsVersionWithItsId) {
  auto pool = MakePool("8.2.1");
  ASSERT_NE(pool, nullptr);
  const std::vector<std::string> good = {Q("root"), Q("demo-password")};
  const std::vector<std::string> bad = {Q("root"), Q("wrong")};
  auto call = [&](const std::string& body) {
    return Normalised(pool->HandleRpc(kMaster, "/jsonrpc", body).body);
  };
  EXPECT_EQ(call(V2("session.login_with_password", good, "7")),
            R"({"jsonrpc":"2.0","result":"OpaqueRef:X","id":7})");
  EXPECT_EQ(call(V2("session.login_with_password", good, R"("a-1")")),
            R"({"jsonrpc":"2.0","result":"OpaqueRef:X","id":"a-1"})");
  EXPECT_EQ(call(V1("session.login_with_password", good, "-3")),
            R"({"result":"OpaqueRef:X","error":null,"id":-3})");
  EXPECT_EQ(call(V2("session.login_with_password", bad, "7")),
            R"({"jsonrpc":"2.0","error":{"code":1,"message":)"
            R"("SESSION_AUTHENTICATION_FAILED","data":["root",)"
            R"("Authentication failure"]},"id":7})");
  EXPECT_EQ(call(V1("session.login_with_password", bad, "8")),
            R"({"result":null,"error":["SESSION_AUTHENTICATION_FAILED",)"
            R"("root","Authentication failure"],"id":8})");
  // v2 "params" may be left out, or be an object (one parameter).
  EXPECT_EQ(call(R"({"jsonrpc":"2.0","method":"session.logout","id":1})"),
            R"({"jsonrpc":"2.0","error":{"code":1,"message":)"
            R"("MESSAGE_PARAMETER_COUNT_MISMATCH","data":["session.logout",)"
            R"("1","0"]},"id":1})");
  EXPECT_EQ(
      call(
          R"({"jsonrpc":"2.0","method":"VM.get_all","params":{"a":1},"id":2})"),
      R"({"jsonrpc":"2.0","error":{"code":1,"message":"SESSION_INVALID",)"
      R"("data":[""]},"id":2})");

  // 7.3 and 7.4 wrote code 0.
  auto xs73 = MakePool("7.3.0");
  ASSERT_NE(xs73, nullptr);
  EXPECT_EQ(xs73->HandleRpc(kMaster, "/jsonrpc",
                            V2("session.login_with_password", bad, "9"))
                .body,
            R"({"jsonrpc":"2.0","error":{"code":0,"message":)"
            R"("SESSION_AUTHENTICATION_FAILED","data":["root",)"
            R"("Authentication failure"]},"id":9})");
}

TEST(SimJsonRpcTest, NumbersDatesAndBooleansKeepTheirValues) {
  for (const char* version : {"8.2.1", "7.2.0"}) {
    SCOPED_TRACE(version);
    const bool legacy = std::string(version) == "7.2.0";
    auto pool = MakePool(version, [](Fixture& f) {
      StorageRepository* sr = f.add_srs();
      sr->set_name_label("huge");
      sr->set_shared(true);
      sr->set_physical_size(9007199254740993ULL);  // 2^53 + 1
    });
    ASSERT_NE(pool, nullptr);
    const std::string session = Q(JsonLogin(*pool));
    auto result = [&](const std::string& method,
                      const std::vector<std::string>& args) {
      std::vector<std::string> params = {session};
      params.insert(params.end(), args.begin(), args.end());
      const std::string body =
          pool->HandleRpc(kMaster, "/jsonrpc", V2(method, params)).body;
      EXPECT_TRUE(IsValidJson(body)) << body;
      return ResultOf(body);
    };
    std::string sr = result("SR.get_by_name_label", {Q("huge")});
    sr = sr.substr(1, sr.size() - 2);  // [ref]
    EXPECT_EQ(result("SR.get_physical_size", {sr}), "9007199254740993");
    std::string vm = result("VM.get_by_name_label", {Q("TEST-debian9")});
    vm = vm.substr(1, vm.size() - 2);
    EXPECT_EQ(result("VM.get_domid", {vm}), "-1");
    EXPECT_EQ(result("VM.get_is_a_template", {vm}), "false");
    EXPECT_EQ(result("VM.get_HVM_shadow_multiplier", {vm}),
              legacy ? "1.000000" : "1.0");
    EXPECT_EQ(result("VM.get_memory_static_max", {vm}), "1073741824");
    std::string snap =
        result("VM.get_by_name_label", {Q("PROD-oracle-db before upgrade")});
    snap = snap.substr(1, snap.size() - 2);
    EXPECT_EQ(result("VM.get_snapshot_time", {snap}), Q("20240915T14:33:31Z"));
    EXPECT_THAT(result("VM.get_record", {vm}),
                HasSubstr(legacy ? R"("domid": -1, )" : R"("domid":-1,)"));
  }
}

TEST(SimJsonRpcTest, ReaderMapsEveryJsonType) {
  for (JsonDialect d : {JsonDialect::kYojson, JsonDialect::kLegacy}) {
    absl::StatusOr<JsonRpcRequest> r = ParseJsonRpcRequest(
        R"({"id":5,"method":"m","jsonrpc":"2.0","params":[9223372036854775807,)"
        R"(-9223372036854775808,1.5,-2e3,true,false,null,"s",[1,[]],)"
        R"({"k":"v","k":2}]})",
        d);
    ASSERT_OK(r.status());
    EXPECT_EQ(r->version, JsonRpcVersion::kV2);
    EXPECT_EQ(r->id, SimValue::Int(5));
    EXPECT_EQ(r->call.method, "m");
    const std::vector<SimValue>& p = r->call.params;
    ASSERT_EQ(p.size(), 10u);
    EXPECT_EQ(p[0], SimValue::Int(INT64_MAX));
    EXPECT_EQ(p[1], SimValue::Int(INT64_MIN));
    EXPECT_EQ(p[2], SimValue::Float(1.5));
    EXPECT_EQ(p[3], SimValue::Float(-2000));
    EXPECT_EQ(p[4], SimValue::Bool(true));
    EXPECT_EQ(p[5], SimValue::Bool(false));
    EXPECT_EQ(p[6], SimValue::Str("")) << "null reads as the empty string";
    EXPECT_EQ(p[7], SimValue::Str("s"));
    EXPECT_EQ(p[8], SimValue::Set({SimValue::Int(1), SimValue::Set()}));
    ASSERT_EQ(p[9].kind, SimValue::Kind::kMap);
    ASSERT_EQ(p[9].map.size(), 2u) << "duplicate members are kept";
    EXPECT_EQ(p[9].map[1].second, SimValue::Int(2));
  }
  // Escapes: yojson decodes \u (surrogate pairs too); ocaml-rpc's own
  // parser left them as they were.
  const std::string body =
      R"({"id":1,"method":"m","params":["\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"]})";
  absl::StatusOr<JsonRpcRequest> y =
      ParseJsonRpcRequest(body, JsonDialect::kYojson);
  ASSERT_OK(y.status());
  EXPECT_EQ(y->call.params[0].s, "\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  absl::StatusOr<JsonRpcRequest> l =
      ParseJsonRpcRequest(body, JsonDialect::kLegacy);
  ASSERT_OK(l.status());
  EXPECT_EQ(l->call.params[0].s, "\"\\/\b\f\n\r\t\\u00e9\\ud83d\\ude00");
}

TEST(SimJsonRpcTest, WritersFormatAsTheirOcamlLibraries) {
  SimValue record = SimValue::Map();
  record.Put("s", SimValue::Str("a/\"\\\n\x01\x7f\xC3\xA9\xff"));
  record.Put("i", SimValue::Int(INT64_MIN));
  record.Put("f", SimValue::Float(0.1));
  record.Put("g", SimValue::Float(1e21));
  record.Put("b", SimValue::Bool(true));
  record.Put("t", SimValue::Time("20250319T04:16:24Z"));
  record.Put("set", SimValue::Set({SimValue::Int(1), SimValue::Str("x")}));
  record.Put("empty", SimValue::Set());
  record.Put("m", SimValue::Map());
  EXPECT_EQ(JsonText(record, JsonDialect::kYojson),
            R"({"s":"a/\"\\\n\u0001\u007fé\ufffd","i":-9223372036854775808,)"
            R"("f":0.1,"g":1e+21,"b":true,"t":"20250319T04:16:24Z",)"
            R"("set":[1,"x"],"empty":[],"m":{}})");
  EXPECT_EQ(JsonText(record, JsonDialect::kLegacy),
            "{\"s\": \"a\\/\\\"\\\\\\n\\u0001\x7f\xC3\xA9\\ufffd\", "
            "\"i\": -9223372036854775808, \"f\": 0.100000, "
            "\"g\": 1000000000000000000000.000000, \"b\": true, "
            "\"t\": \"20250319T04:16:24Z\", \"set\": [1, \"x\"], "
            "\"empty\": [], \"m\": {}}");
  EXPECT_EQ(JsonText(SimValue::Float(100), JsonDialect::kYojson), "100.0");
  EXPECT_EQ(JsonText(SimValue::Float(0.3), JsonDialect::kYojson), "0.3");
  EXPECT_EQ(JsonText(SimValue::Float(1.0 / 3), JsonDialect::kYojson),
            "0.3333333333333333");
  EXPECT_EQ(JsonText(SimValue::Float(-0.1 - 0.2), JsonDialect::kYojson),
            "-0.30000000000000004")
      << "%.17g when %.16g does not read back the same";
  EXPECT_TRUE(IsValidJson(JsonText(record, JsonDialect::kYojson)));
  EXPECT_TRUE(IsValidJson(JsonText(record, JsonDialect::kLegacy)));
}

TEST(SimJsonRpcTest, SessionsAreSharedByBothProtocols) {
  auto pool = MakePool("8.2.1");
  ASSERT_NE(pool, nullptr);
  const std::string from_xml = XmlLogin(*pool);
  ASSERT_THAT(from_xml, StartsWith("OpaqueRef:"));
  RpcReply r =
      pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {Q(from_xml)}));
  EXPECT_THAT(r.body, StartsWith(R"({"jsonrpc":"2.0","result":["OpaqueRef:)"));

  const std::string from_json = JsonLogin(*pool);
  ASSERT_THAT(from_json, StartsWith("OpaqueRef:"));
  r = pool->HandleRpc(kMaster, "/", XmlCall("VM.get_all", {from_json}));
  EXPECT_THAT(r.body, HasSubstr("<value>Success</value>"));
  r = pool->HandleRpc(kMaster, "/jsonrpc",
                      V2("session.logout", {Q(from_json)}));
  EXPECT_EQ(r.body, R"({"jsonrpc":"2.0","result":"","id":1})");
  r = pool->HandleRpc(kMaster, "/", XmlCall("VM.get_all", {from_json}));
  EXPECT_THAT(r.body, HasSubstr(absl::StrCat("<value>SESSION_INVALID</value>"
                                             "<value>",
                                             from_json, "</value>")));
  r = pool->HandleRpc(kMaster, "/", XmlCall("session.logout", {from_xml}));
  r = pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {Q(from_xml)}));
  EXPECT_THAT(r.body, HasSubstr(R"("message":"SESSION_INVALID")"));
}

TEST(SimJsonRpcTest, ListMethodsAnswersOnBothProtocolsWithoutASession) {
  for (const char* version : {"7.2.0", "8.2.1", "6.2.0"}) {
    SCOPED_TRACE(version);
    auto pool = MakePool(version);
    ASSERT_NE(pool, nullptr);
    const std::vector<std::string> names = SimPool::ServedMethods();
    for (const char* m :
         {"session.login_with_password", "session.logout", "VM.get_all_records",
          "VM.snapshot", "VM.get_power_state", "VDI.destroy", "task.create",
          "host.get_address", "pool.get_all_records", "SR.add_tags"}) {
      EXPECT_THAT(names, Contains(m));
    }
    for (const char* m : {"system.listMethods", "VM.suspend", "Async.VM.snapshot",
                          "host_metrics.get_by_name_label"}) {
      EXPECT_THAT(names, Not(Contains(m)));
    }
    // Every listed method is known to the dispatcher.
    const std::string session = XmlLogin(*pool);
    for (const std::string& m : names) {
      RpcReply r = pool->HandleRpc(kMaster, "/", XmlCall(m, {session}));
      EXPECT_THAT(r.body, Not(HasSubstr("MESSAGE_METHOD_UNKNOWN"))) << m;
    }

    // XML-RPC: the bare array, on a member too, parameters ignored.
    std::string array = "<value><array><data>";
    for (const std::string& m : names)
      absl::StrAppend(&array, "<value>", m, "</value>");
    array += "</data></array></value>";
    RpcReply r = pool->HandleRpc(
        kMember, "/", XmlCall("system.listMethods", {"junk", "more"}));
    EXPECT_EQ(r.status, 200);
    // Before 6.5 without the XML declaration.
    const bool old = std::string(version) == "6.2.0";
    EXPECT_EQ(r.body, absl::StrCat(old ? "" : "<?xml version=\"1.0\"?>",
                                   "<methodResponse><params><param>", array,
                                   "</param></params></methodResponse>"));
    if (old) continue;
    // JSON-RPC: the array is the result.
    const bool legacy = std::string(version) == "7.2.0";
    std::vector<std::string> quoted;
    for (const std::string& m : names) quoted.push_back(Q(m));
    r = pool->HandleRpc(kMember, "/jsonrpc", V2("system.listMethods", {"1"}));
    EXPECT_EQ(r.body,
              legacy
                  ? absl::StrCat(R"({"result": [)", absl::StrJoin(quoted, ", "),
                                 R"(], "error": null, "id": 0})")
                  : absl::StrCat(R"({"jsonrpc":"2.0","result":[)",
                                 absl::StrJoin(quoted, ","), R"(],"id":1})"));
  }
}

TEST(SimJsonRpcTest, ListMethodsIgnoresSessionFaultsAndObeysHostDown) {
  auto pool = MakePool("8.2.1");
  ASSERT_NE(pool, nullptr);
  const std::string session = JsonLogin(*pool);
  Fault f;
  f.set_kind(Fault::SESSION_INVALID);
  f.set_after_calls(1);
  ASSERT_OK(pool->AddFault(f));
  // Not counted: the session survives two listMethods and one call.
  for (int i = 0; i < 2; ++i) {
    RpcReply r =
        pool->HandleRpc(kMaster, "/jsonrpc", V2("system.listMethods", {}));
    EXPECT_THAT(r.body, HasSubstr("\"result\":[")) << r.body;
  }
  RpcReply r =
      pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {Q(session)}));
  EXPECT_THAT(r.body, HasSubstr("\"result\":[")) << r.body;
  r = pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {Q(session)}));
  EXPECT_THAT(r.body, HasSubstr("SESSION_INVALID")) << r.body;

  Fault down;
  down.set_kind(Fault::HOST_DOWN);
  down.set_host(kMember);
  ASSERT_OK(pool->AddFault(down));
  EXPECT_TRUE(pool->HandleRpc(kMember, "/jsonrpc", V2("system.listMethods", {}))
                  .drop_connection);
  EXPECT_TRUE(pool->HandleRpc(kMember, "/", XmlCall("system.listMethods", {}))
                  .drop_connection);
}

// One table serves both protocols: every listed method is dispatched over
// JSON-RPC with the parameter counts XML-RPC checks, and fault validation
// knows system.listMethods as a served method without a session.
TEST(SimJsonRpcTest, JsonRpcDispatchesFromTheServedMethodTable) {
  auto pool = MakePool("8.2.1", [](Fixture& f) {
    f.mutable_settings()->set_old_host_snapshot_arity(true);
  });
  ASSERT_NE(pool, nullptr);
  const std::string session = Q(JsonLogin(*pool));
  for (const std::string& m : SimPool::ServedMethods()) {
    if (m == "session.login_with_password" || m == "session.logout") continue;
    const std::vector<std::string> params(8, session);
    RpcReply r = pool->HandleRpc(kMaster, "/jsonrpc", V2(m, params));
    EXPECT_THAT(r.body, HasSubstr(R"("message":"MESSAGE_PARAMETER_COUNT_)"
                                  R"(MISMATCH","data":[")" +
                                  m + "\""))
        << m;
  }
  // The old hosts' VM.snapshot takes no ignore_vdis.
  RpcReply r = pool->HandleRpc(
      kMaster, "/jsonrpc",
      V2("VM.snapshot", {session, Q("OpaqueRef:NULL"), Q("x"), "[]"}));
  EXPECT_THAT(r.body, HasSubstr(R"("data":["VM.snapshot","3","4"])"));
  r = pool->HandleRpc(kMaster, "/jsonrpc",
                      V2("VM.snapshott", {session, Q("OpaqueRef:NULL")}));
  EXPECT_THAT(r.body, HasSubstr(R"("message":"MESSAGE_METHOD_UNKNOWN")"));

  Fault error;
  error.set_kind(Fault::CALL_ERROR);
  error.set_call("system.listMethods");
  EXPECT_THAT(SimPool::ValidateFault(error),
              vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("CALL_ERROR never applies to "
                                               "\"system.listMethods\"")));
  Fault slow;
  slow.set_kind(Fault::SLOW_CALL);
  slow.set_call("system.listMethods");
  slow.set_delay_ms(1);
  EXPECT_OK(SimPool::ValidateFault(slow));
  slow.set_vm("DEV-RH6");
  EXPECT_THAT(SimPool::ValidateFault(slow),
              vmb::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("only VM.* calls have a VM")));
}

TEST(SimJsonRpcTest, HostsBefore65AnswerJsonWithAnXmlRpcFault) {
  auto pool = MakePool("6.2.0");
  ASSERT_NE(pool, nullptr);
  const std::string fault =
      "<methodResponse><fault><value><struct><member><name>faultCode</name>"
      "<value><i4>1</i4></value></member><member><name>faultString</name>"
      "<value>Failed to parse supplied XML</value></member></struct></value>"
      "</fault></methodResponse>";
  for (const char* path : {"/jsonrpc", "/", "/RPC2"}) {
    RpcReply r = pool->HandleRpc(
        kMaster, path,
        V2("session.login_with_password", {Q("root"), Q("demo-password")}));
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.content_type, "text/xml") << path;
    EXPECT_FALSE(r.cors);
    EXPECT_EQ(r.body, fault) << path;
  }
  // XML that is not a call is still the 500 page.
  RpcReply r = pool->HandleRpc(kMaster, "/", "<foo/>");
  EXPECT_EQ(r.status, 500);
  // XML-RPC works on every path; /jsonrpc is the /json handler there.
  r = pool->HandleRpc(
      kMaster, "/",
      XmlCall("session.login_with_password", {"root", "demo-password"}));
  EXPECT_THAT(r.body, HasSubstr("<name>Value</name><value>OpaqueRef:"));
  r = pool->HandleRpc(
      kMaster, "/jsonrpc",
      XmlCall("session.login_with_password", {"root", "demo-password"}));
  EXPECT_THAT(r.body, HasSubstr("<name>Value</name><value>&quot;OpaqueRef:"));
}

TEST(SimJsonRpcTest, JsonPathCarriesJsonTextUpTo72) {
  auto xs72 = MakePool("7.2.0");
  ASSERT_NE(xs72, nullptr);
  const std::string session = XmlLogin(*xs72);
  RpcReply r = xs72->HandleRpc(
      kMaster, "/json", XmlCall("session.get_this_host", {session, session}));
  EXPECT_THAT(r.body, HasSubstr("<name>Value</name><value>&quot;OpaqueRef:"));
  r = xs72->HandleRpc(kMaster, "/json",
                      XmlCall("pool.get_all_records", {session}));
  EXPECT_THAT(r.body, HasSubstr("&quot;: {&quot;uuid&quot;: &quot;"))
      << "a struct in ocaml-rpc's old JSON, XML-escaped";
  r = xs72->HandleRpc(kMaster, "/json", XmlCall("VM.nope", {session}));
  EXPECT_THAT(r.body, HasSubstr("<value>MESSAGE_METHOD_UNKNOWN</value>"))
      << "failures are not translated";

  auto later = MakePool("8.2.1");
  ASSERT_NE(later, nullptr);
  r = later->HandleRpc(
      kMaster, "/json",
      XmlCall("session.login_with_password", {"root", "demo-password"}));
  EXPECT_THAT(r.body, HasSubstr("<name>Value</name><value>OpaqueRef:"));
}

TEST(SimJsonRpcTest, MalformedBodiesGetThe500PageAndCountNoCall) {
  const std::string deep =
      R"({"id":1,"method":"m","params":)" + std::string(100000, '[');
  const std::vector<std::pair<std::string, std::string>> both = {
      {"", "JSON parse error: blank input"},
      {" \r\n\t", "JSON parse error: blank input"},
      {"[]", "Invalid request body"},
      {R"("text")", "Invalid request body"},
      {"{", "JSON parse error"},
      {R"({"method":"session.logout","params":[]})",
       "Invalid field 'id' in request body"},
      {R"({"method":"session.logout","params":[],"id":null})",
       "Invalid field 'id' in request body"},
      {R"({"method":"session.logout","params":[],"id":1.5})",
       "Invalid field 'id' in request body"},
      {R"({"method":"session.logout","params":[],"id":true})",
       "Invalid field 'id' in request body"},
      {R"({"params":[],"id":1})", "Required field method is missing"},
      {R"({"method":5,"params":[],"id":1})",
       "Invalid field 'method' in request body"},
      {R"({"jsonrpc":"1.0","method":"m","params":[],"id":1})",
       "Invalid field 'jsonrpc' in request body"},
      {R"({"jsonrpc":2,"method":"m","params":[],"id":1})",
       "Invalid field 'jsonrpc' in request body"},
      {R"({"method":"m","id":1})", "Required field params is missing"},
      {R"({"method":"m","params":{},"id":1})",
       "Invalid field 'params' in request body"},
      {R"({"jsonrpc":"2.0","method":"m","params":"x","id":1})",
       "Invalid field 'params' in request body"},
      {deep, "JSON parse error: nested too deeply"},
      {R"({"id":1,"method":"m","params":[18446744073709551616]})",
       "JSON parse error: integer out of the int64 range"},
      {R"({"id":1,"method":"m","params":[-9223372036854775809]})",
       "JSON parse error: integer out of the int64 range"},
      {R"({"id":1,"method":"m","params":[1e999]})",
       "JSON parse error: number out of the double range"},
      {R"({"id":1,"method":"m","params":[01]})", "JSON parse error"},
      {R"({"id":1,"method":"m","params":[1,]})", "JSON parse error"},
      {R"({"id":1,"method":"m","params":[NaN]})",
       "JSON parse error: unexpected character"},
      {R"({"id":1,"method":"m","params":["\q"]})",
       "JSON parse error: bad escape"},
      {R"({"id":1,"method":"m","params":["\u12"]})",
       "JSON parse error: bad \\u escape"},
      {R"({"id":1,"method":"m","params":["abc)",
       "JSON parse error: unterminated string"},
      {R"({"id":1,"method":"m","params":[1)",
       "JSON parse error: unterminated array"},
  };
  const std::vector<std::pair<std::string, std::string>> yojson_only = {
      {R"({"id":1,"method":"m","params":[]} x)",
       "JSON parse error: junk after the JSON value"},
      {R"({"id":1,"method":"m","params":["\udc00"]})",
       "JSON parse error: lone low surrogate"},
      {R"({"id":1,"method":"m","params":["\ud800x"]})",
       "JSON parse error: high surrogate without a low one"},
  };
  const std::vector<std::pair<std::string, std::string>> legacy_only = {
      {R"({"id":"s","method":"m","params":[]})",
       "Invalid field 'id' in request body"},
      {R"({"jsonrpc":"2.0","id":1,"method":"m"})",
       "Required field params is missing"},
      {"{\"id\":1,\"method\":\"m\",\"params\":[\"a\nb\"]}",
       "JSON parse error: control character in a string"},
  };
  for (const char* version : {"8.2.1", "7.2.0"}) {
    SCOPED_TRACE(version);
    const bool legacy = std::string(version) == "7.2.0";
    auto pool = MakePool(version);
    ASSERT_NE(pool, nullptr);
    std::vector<std::pair<std::string, std::string>> cases = both;
    const auto& extra = legacy ? legacy_only : yojson_only;
    cases.insert(cases.end(), extra.begin(), extra.end());
    for (const auto& [body, reason] : cases) {
      RpcReply r = pool->HandleRpc(kMaster, "/jsonrpc", body);
      EXPECT_EQ(r.status, 500) << body.substr(0, 80);
      EXPECT_EQ(r.content_type, "text/html");
      EXPECT_TRUE(r.close);
      EXPECT_FALSE(r.cors);
      EXPECT_THAT(r.body, HasSubstr("<h1> Additional information </h1>"
                                    "INTERNAL_ERROR: [ " +
                                    reason))
          << body.substr(0, 80);
      EXPECT_THAT(r.body, EndsWith(" ]</body></html>"));
    }
    EXPECT_EQ(pool->State().api_calls(), 0) << "no call was made";
    // What one reader refuses the other takes (ocaml-rpc's own parser does
    // not decode \u escapes, so it has no surrogates to check).
    const auto& other = legacy ? yojson_only : legacy_only;
    for (const auto& [body, unused] : other) {
      RpcReply r = pool->HandleRpc(kMaster, "/jsonrpc", body);
      EXPECT_EQ(r.status, 200) << body;
      EXPECT_THAT(r.body, HasSubstr("MESSAGE_METHOD_UNKNOWN")) << body;
    }
    EXPECT_EQ(pool->State().api_calls(), static_cast<int64_t>(other.size()));
  }
}

TEST(SimJsonRpcTest, ParametersThatAreNotXmlSafeUtf8AreRefusedFirst) {
  auto later = MakePool("8.2.1");
  auto xs72 = MakePool("7.2.0");
  ASSERT_NE(later, nullptr);
  ASSERT_NE(xs72, nullptr);
  const std::string raw_ff =
      V2("session.login_with_password", {"\"\xff\"", Q("x")}, "5");
  RpcReply r = later->HandleRpc(kMaster, "/jsonrpc", raw_ff);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.cors) << "answered outside the dispatcher";
  EXPECT_EQ(r.body,
            R"js({"jsonrpc":"2.0","error":["INVALID_VALUE",)js"
            R"js("Invalid UTF-8 string in parameter","S(\ufffd)"],"id":0})js");
  EXPECT_TRUE(IsValidJson(r.body));
  r = xs72->HandleRpc(kMaster, "/jsonrpc", raw_ff);
  EXPECT_EQ(
      r.body,
      R"js({"result": null, "error": ["INVALID_VALUE", )js"
      R"js("Invalid UTF-8 string in parameter", "S(\ufffd)"], "id": 0})js");
  // Control characters and non-characters, also inside maps.
  for (const std::string& param :
       {std::string(R"("a\u0001")"), std::string(R"("\ufffe")"),
        std::string(R"({"k":["\u0000"]})"), std::string("\"a\0b\"", 5)}) {
    r = later->HandleRpc(kMaster, "/jsonrpc",
                         V2("session.login_with_password", {param, Q("x")}));
    EXPECT_THAT(r.body, HasSubstr("\"INVALID_VALUE\"")) << param;
  }
  r = xs72->HandleRpc(
      kMaster, "/jsonrpc",
      V2("session.login_with_password", {std::string("\"a\0b\"", 5), Q("x")}));
  EXPECT_THAT(r.body, HasSubstr("\"INVALID_VALUE\"")) << "a raw NUL";
  // Up to 7.2 the \u escape stays as six characters, which pass.
  r = xs72->HandleRpc(
      kMaster, "/jsonrpc",
      V2("session.login_with_password", {R"("a\u0001")", Q("x")}));
  EXPECT_EQ(r.body,
            R"({"result": null, "error": ["SESSION_AUTHENTICATION_FAILED", )"
            R"("a\\u0001", "Authentication failure"], "id": 0})");
  // Valid UTF-8 goes through, and comes back as it was.
  r = later->HandleRpc(kMaster, "/jsonrpc",
                       V2("session.login_with_password",
                          {Q("\xC3\xA9\xF0\x9F\x98\x80"), Q("x")}));
  EXPECT_THAT(r.body, HasSubstr("\"data\":[\"\xC3\xA9\xF0\x9F\x98\x80\""));
  // XML-RPC: a base64 parameter can carry any byte.
  r = later->HandleRpc(
      kMaster, "/",
      "<methodCall><methodName>session.login_with_password</methodName>"
      "<params><param><value><base64>/w==</base64></value></param><param>"
      "<value>x</value></param></params></methodCall>");
  EXPECT_FALSE(r.cors);
  EXPECT_THAT(r.body, HasSubstr("<value>INVALID_VALUE</value><value>Invalid "
                                "UTF-8 string in parameter</value><value>"
                                "S(\xEF\xBF\xBD)</value>"));
}

TEST(SimJsonRpcTest, RandomlyDamagedRequestsGetAnAnswerOrThe500Page) {
  // Valid requests with bytes flipped, dropped, duplicated or inserted: every
  // one must get a well-formed answer or the 500 page, never a crash.
  const std::vector<std::string> seeds = {
      V2("session.login_with_password", {Q("root"), Q("demo-password")}),
      V1("VM.get_all_records", {Q("OpaqueRef:x")}, "\"id\""),
      R"({"jsonrpc":"2.0","method":"VM.set_tags","params":["s","v",)"
      R"([1,-2.5e3,true,null,{"k":["\u00e9\ud83d\ude00"]}]],"id":-7})",
      V2("system.listMethods", {}),
  };
  constexpr char kInteresting[] = "{}[]\",:\\u0123456789eE.-+ntfa\x00\x7f\xff";
  std::mt19937 rng(20250319);
  for (const char* version : {"8.2.1", "7.2.0"}) {
    SCOPED_TRACE(version);
    auto pool = MakePool(version);
    ASSERT_NE(pool, nullptr);
    int answered = 0;
    for (int round = 0; round < 3000; ++round) {
      std::string body = seeds[rng() % seeds.size()];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !body.empty(); ++e) {
        const size_t at = rng() % body.size();
        const char c = kInteresting[rng() % (sizeof(kInteresting) - 1)];
        switch (rng() % 4) {
          case 0:
            body[at] = c;
            break;
          case 1:
            body.erase(at, 1 + rng() % 3);
            break;
          case 2:
            body.insert(at, 1 + rng() % 40, c);
            break;
          default:
            body.insert(at, body.substr(at, rng() % 30));
        }
      }
      RpcReply r = pool->HandleRpc(kMaster, "/jsonrpc", body);
      if (r.status == 200) {
        ++answered;
        EXPECT_EQ(r.content_type, "application/json");
        EXPECT_TRUE(IsValidJson(r.body)) << body << "\n" << r.body;
      } else {
        EXPECT_EQ(r.status, 500) << body;
        EXPECT_THAT(r.body, HasSubstr("INTERNAL_ERROR: [ ")) << body;
      }
    }
    EXPECT_GT(answered, 100) << "some damaged requests still parse";
  }
}

TEST(SimJsonRpcTest, StringsRoundTripWithEachWritersEscapes) {
  const std::string name = "q\"b\\s/\n\r\t\xC3\xA9\xF0\x9F\x98\x80\x7f";
  for (const char* version : {"8.2.1", "7.2.0"}) {
    SCOPED_TRACE(version);
    const bool legacy = std::string(version) == "7.2.0";
    auto pool = MakePool(version);
    ASSERT_NE(pool, nullptr);
    const std::string session = Q(JsonLogin(*pool));
    std::string vm = ResultOf(pool->HandleRpc(kMaster, "/jsonrpc",
                                              V2("VM.get_by_name_label",
                                                 {session, Q("TEST-debian9")}))
                                  .body);
    vm = vm.substr(1, vm.size() - 2);
    RpcReply r = pool->HandleRpc(
        kMaster, "/jsonrpc",
        V2("VM.set_name_label", {
                                    session,
                                    vm,
                                    R"("q\"b\\s\/\n\r\t\u00e9\ud83d\ude00)"
                                    "\x7f\"",
                                }));
    if (legacy) {
      // \u escapes are not decoded up to 7.2; set the name raw instead.
      r = pool->HandleRpc(
          kMaster, "/jsonrpc",
          V2("VM.set_name_label",
             {session, vm,
              "\"q\\\"b\\\\s\\/\\n\\r\\t\xC3\xA9\xF0\x9F\x98\x80\x7f\""}));
    }
    EXPECT_THAT(r.body,
                HasSubstr(legacy ? "\"result\": \"\"" : "\"result\":\"\""));
    r = pool->HandleRpc(kMaster, "/jsonrpc",
                        V2("VM.get_name_label", {session, vm}));
    EXPECT_EQ(ResultOf(r.body),
              legacy
                  ? "\"q\\\"b\\\\s\\/\\n\\r\\t\xC3\xA9\xF0\x9F\x98\x80\x7f\""
                  : "\"q\\\"b\\\\s/\\n\\r\\t\xC3\xA9\xF0\x9F\x98\x80\\u007f\"");
    EXPECT_TRUE(IsValidJson(r.body)) << r.body;
    r = pool->HandleRpc(
        kMaster, "/",
        XmlCall("VM.get_name_label", {session.substr(1, session.size() - 2),
                                      vm.substr(1, vm.size() - 2)}));
    EXPECT_THAT(
        r.body,
        HasSubstr(
            "<value>q&quot;b\\s/\n\r\t\xC3\xA9\xF0\x9F\x98\x80\x7f</value>"));
  }
}

TEST(SimJsonRpcTest, FaultsAndPoolRolesApplyAsToXmlRpc) {
  auto pool = MakePool("8.2.1");
  ASSERT_NE(pool, nullptr);
  const std::string session = Q(JsonLogin(*pool));
  Fault error;
  error.set_kind(Fault::CALL_ERROR);
  error.set_call("VM.get_all");
  error.add_error("INTERNAL_ERROR");
  error.set_times(1);
  ASSERT_OK(pool->AddFault(error));
  RpcReply r =
      pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {session}));
  EXPECT_EQ(r.body,
            R"({"jsonrpc":"2.0","error":{"code":1,"message":"INTERNAL_ERROR",)"
            R"("data":["simulated failure"]},"id":1})");

  Fault slow;
  slow.set_kind(Fault::SLOW_CALL);
  slow.set_call("host.get_all");
  slow.set_delay_ms(200);
  slow.set_times(1);
  ASSERT_OK(pool->AddFault(slow));
  const absl::Time start = absl::Now();
  r = pool->HandleRpc(kMaster, "/jsonrpc", V2("host.get_all", {session}));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  EXPECT_THAT(r.body, HasSubstr("\"result\":["));

  r = pool->HandleRpc(
      kMember, "/jsonrpc",
      V2("session.login_with_password", {Q("root"), Q("demo-password")}));
  EXPECT_EQ(r.body,
            R"({"jsonrpc":"2.0","error":{"code":1,"message":"HOST_IS_SLAVE",)"
            R"("data":["127.0.0.2"]},"id":1})");
  r = pool->HandleRpc(kMember, "/jsonrpc", V2("VM.get_all", {session}));
  EXPECT_THAT(r.body, HasSubstr(R"("message":"HOST_IS_SLAVE")"));

  Fault invalid;
  invalid.set_kind(Fault::SESSION_INVALID);
  invalid.set_times(1);
  ASSERT_OK(pool->AddFault(invalid));
  r = pool->HandleRpc(kMaster, "/jsonrpc", V2("VM.get_all", {session}));
  EXPECT_EQ(r.body,
            absl::StrCat(R"({"jsonrpc":"2.0","error":{"code":1,"message":)"
                         R"("SESSION_INVALID","data":[)",
                         session, R"(]},"id":1})"));

  Fault down;
  down.set_kind(Fault::HOST_DOWN);
  down.set_host(kMaster);
  ASSERT_OK(pool->AddFault(down));
  EXPECT_TRUE(pool->HandleRpc(kMaster, "/jsonrpc",
                              V2("session.login_with_password",
                                 {Q("root"), Q("demo-password")}))
                  .drop_connection);
}

TEST(SimJsonRpcTest, OptionsIsACorsPreflight) {
  auto pool = MakePool("7.2.0");
  ASSERT_NE(pool, nullptr);
  HttpResponse r = pool->HandleOptions(kMaster, "content-type");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
  EXPECT_THAT(r.headers, Contains(std::make_pair(
                             std::string("Access-Control-Allow-Headers"),
                             std::string("content-type, X-Requested-With"))));
  EXPECT_THAT(r.headers, Contains(std::make_pair(
                             std::string("Access-Control-Allow-Origin"),
                             std::string("*"))));
  r = pool->HandleOptions(kMaster, "");
  EXPECT_THAT(r.headers, Contains(std::make_pair(
                             std::string("Access-Control-Allow-Headers"),
                             std::string("X-Requested-With"))));
}

// ---- over HTTP
// ---------------------------------------------------------------

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One curl handle, so that successive requests can share a connection.
class Http {
 public:
  struct Reply {
    long status = 0;
    std::string headers;
    std::string body;
    long new_connections = 0;
    CURLcode code = CURLE_OK;
  };
  Http() : c_(curl_easy_init()) {}
  ~Http() { curl_easy_cleanup(c_); }

  Reply Post(const std::string& url, const std::string& body,
             const std::string& content_type) {
    Reply r;
    curl_slist* headers =
        curl_slist_append(nullptr, ("Content-Type: " + content_type).c_str());
    curl_easy_setopt(c_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c_, CURLOPT_HEADERFUNCTION, &Append);
    curl_easy_setopt(c_, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(c_, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(c_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c_, CURLOPT_TIMEOUT, 60L);
    r.code = curl_easy_perform(c_);
    curl_easy_getinfo(c_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(c_, CURLINFO_NUM_CONNECTS, &r.new_connections);
    curl_slist_free_all(headers);
    return r;
  }

  CURL* handle() { return c_; }

 private:
  CURL* c_;
};

TEST(SimJsonRpcHttpTest, JsonRpcHasXapisHeadersAndKeepsTheConnection) {
  ASSERT_OK_AND_ASSIGN(auto sim, vmb::testing::SimProcess::Start());
  const std::string url = sim->master_url() + "/jsonrpc";
  Http http;
  Http::Reply first = http.Post(
      url, V2("session.login_with_password", {Q("root"), Q("demo-password")}),
      "application/json");
  ASSERT_EQ(first.code, CURLE_OK);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.new_connections, 1);
  for (const char* h : {"Content-Type: application/json\r\n",
                        "Cache-Control: no-cache, no-store\r\n",
                        "Access-Control-Allow-Origin: *\r\n",
                        "Access-Control-Allow-Headers: X-Requested-With\r\n"}) {
    EXPECT_THAT(first.headers, HasSubstr(h));
  }
  EXPECT_THAT(first.headers,
              HasSubstr(absl::StrCat("Content-Length: ", first.body.size())));
  EXPECT_EQ(Normalised(first.body),
            R"({"result": "OpaqueRef:X", "error": null, "id": 0})");
  Http::Reply second =
      http.Post(url, V2("VM.get_all_records", {Q(FirstRef(first.body))}),
                "application/json");
  EXPECT_EQ(second.new_connections, 0) << "kept alive";
  EXPECT_THAT(second.body, HasSubstr(R"("name_label": "PROD-ubuntu14")"));
  EXPECT_THAT(second.body, HasSubstr(R"("memory_static_max": 1073741824)"));
  Http::Reply bad = http.Post(url, "{", "application/json");
  EXPECT_EQ(bad.status, 500);
  EXPECT_THAT(bad.headers, HasSubstr("Connection: close"));
  EXPECT_THAT(bad.headers, HasSubstr("Content-Type: text/html"));
  Http::Reply after =
      http.Post(url, V2("system.listMethods", {}), "application/json");
  EXPECT_EQ(after.new_connections, 1) << "a new connection after the 500";
  EXPECT_THAT(after.body, StartsWith(R"({"result": ["pool.get_all", )"));
}

TEST(SimJsonRpcHttpTest, BodiesOver64MiBGet413) {
  ASSERT_OK_AND_ASSIGN(auto sim, vmb::testing::SimProcess::Start());
  const std::string huge((64u << 20) + 1, ' ');
  for (const char* path : {"/jsonrpc", "/"}) {
    Http http;
    Http::Reply r =
        http.Post(sim->master_url() + path, huge, "application/json");
    EXPECT_EQ(r.status, 413) << path;
    EXPECT_THAT(r.headers, HasSubstr("Connection: close")) << path;
    EXPECT_TRUE(r.body.empty()) << path;
  }
  ASSERT_OK_AND_ASSIGN(SimState state, sim->State());
  EXPECT_EQ(state.api_calls(), 0);
}

TEST(SimJsonRpcHttpTest, SessionsWorkOnBothEndpoints) {
  ASSERT_OK_AND_ASSIGN(auto sim, vmb::testing::SimProcess::Start());
  auto client = sim->NewClient();
  ASSERT_OK_AND_ASSIGN(std::string xml_session, client->SessionRef());
  Http http;
  Http::Reply r =
      http.Post(sim->master_url() + "/jsonrpc",
                V1("VM.get_all_records", {Q(xml_session)}), "application/json");
  EXPECT_THAT(r.body, HasSubstr(R"("name_label": "DEV-RH6")"));
  r = http.Post(sim->master_url() + "/jsonrpc",
                V1("session.login_with_password",
                   {Q(sim->username()), Q(sim->password())}),
                "application/json");
  const std::string json_session = FirstRef(r.body);
  ASSERT_FALSE(json_session.empty()) << r.body;
  r = http.Post(sim->master_url() + "/",
                XmlCall("host.get_all", {json_session}), "text/xml");
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: text/xml\r\n"));
  EXPECT_THAT(r.body, HasSubstr("<value>Success</value>"));
  // The project's XML-RPC client's session, ended over JSON-RPC.
  r = http.Post(sim->master_url() + "/jsonrpc",
                V1("session.logout", {Q(xml_session)}), "application/json");
  EXPECT_EQ(r.body, R"({"result": "", "error": null, "id": 0})");
  r = http.Post(sim->master_url() + "/", XmlCall("host.get_all", {xml_session}),
                "text/xml");
  EXPECT_THAT(r.body, HasSubstr("<value>SESSION_INVALID</value>"));
}

// The SHA-256 fingerprint ("AB:CD:...") of the certificate a TLS server
// presents, read with curl trusting `ca` (empty: trusting nothing); sets
// *code to curl's result.
std::string PresentedFingerprint(const std::string& url, const std::string& ca,
                                 CURLcode* code) {
  Http http;
  CURL* c = http.handle();
  std::string body;
  curl_easy_setopt(c, CURLOPT_URL, (url + "/sim/state").c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  if (ca.empty()) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(c, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
  }
  *code = curl_easy_perform(c);
  if (*code != CURLE_OK) return "";
  curl_certinfo* info = nullptr;
  curl_easy_getinfo(c, CURLINFO_CERTINFO, &info);
  if (info == nullptr || info->num_of_certs < 1) return "";
  std::string pem;
  for (curl_slist* s = info->certinfo[0]; s != nullptr; s = s->next) {
    if (absl::StartsWith(s->data, "Cert:")) pem = s->data + 5;
  }
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  X509_free(cert);
  std::vector<std::string> hex;
  for (unsigned int i = 0; i < len; ++i)
    hex.push_back(absl::StrFormat("%02X", md[i]));
  return absl::StrJoin(hex, ":");
}

TEST(SimJsonRpcHttpTest, EachHostPresentsItsOwnCertificate) {
  vmb::testing::SimProcess::Options options;
  options.per_host_tls = true;
  ASSERT_OK_AND_ASSIGN(auto sim, vmb::testing::SimProcess::Start(options));
  const auto& certs = sim->host_certs();
  ASSERT_EQ(certs.size(), 3u);
  const std::string one = sim->host_url("xcp-host1");
  const std::string two = sim->host_url("xcp-host2");
  EXPECT_THAT(one, StartsWith("https://127.0.0.2:"));
  CURLcode code;
  // Each host's certificate is the one made for it, valid for its address
  // (curl checks the subjectAltName against the IP).
  const std::string fp1 =
      PresentedFingerprint(one, certs.at("xcp-host1").cert_path, &code);
  EXPECT_EQ(code, CURLE_OK) << curl_easy_strerror(code);
  EXPECT_EQ(fp1, certs.at("xcp-host1").sha256);
  const std::string fp2 =
      PresentedFingerprint(two, certs.at("xcp-host2").cert_path, &code);
  EXPECT_EQ(code, CURLE_OK) << curl_easy_strerror(code);
  EXPECT_EQ(fp2, certs.at("xcp-host2").sha256);
  EXPECT_NE(fp1, fp2);
  // Trusting host 1's certificate does not let one talk to host 2.
  PresentedFingerprint(two, certs.at("xcp-host1").cert_path, &code);
  EXPECT_EQ(code, CURLE_PEER_FAILED_VERIFICATION) << curl_easy_strerror(code);
  // The RPC endpoints work over TLS.
  Http http;
  curl_easy_setopt(http.handle(), CURLOPT_CAINFO,
                   certs.at("xcp-host1").cert_path.c_str());
  Http::Reply r = http.Post(one + "/jsonrpc", V2("system.listMethods", {}),
                            "application/json");
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_THAT(r.body, HasSubstr("\"VM.get_all_records\""));
}

TEST(SimJsonRpcHttpTest, TlsCertDirProblemsAreNamedErrors) {
  const std::string dir = vmb::testing::MakeTempDir("tls-dir");
  const std::string bin = vmb::testing::BinDir() + "/xapi-sim";
  const std::string ready = "--ready-file=" + dir + "/ready.json";
  vmb::testing::CommandResult r =
      vmb::testing::RunCommand({bin, ready, "--tls-cert-dir=" + dir});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("cannot read --tls-cert-dir certificate " +
                                  dir + "/xcp-host1.pem"));
  ASSERT_OK(vmb::testing::MakeSelfSignedCert(dir, "xcp-host1").status());
  ASSERT_EQ(unlink((dir + "/xcp-host1.key").c_str()), 0);
  r = vmb::testing::RunCommand({bin, ready, "--tls-cert-dir=" + dir});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("cannot read --tls-cert-dir key " + dir +
                                  "/xcp-host1.key"));
  r = vmb::testing::RunCommand({bin, ready, "--tls-cert-dir=" + dir,
                                "--tls-cert=" + dir + "/xcp-host1.pem"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--tls-cert-dir cannot be combined with "
                                  "--tls-cert or --tls-key"));
}

}  // namespace
}  // namespace vmb::sim
