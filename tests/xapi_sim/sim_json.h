// SPDX-License-Identifier: Apache-2.0
#pragma once

// The simulator's own JSON-RPC reader and writers. XAPI marshals JSON-RPC
// with ocaml-rpc, whose JSON code was replaced in 2017: hosts up to
// XenServer 7.2 print and parse JSON with ocaml-rpc's own code, later hosts
// with yojson. Both are reproduced here, spacing and number formats
// included (docs/xapi-sim.md section 5). Like the XML-RPC codec in
// sim_value.h, this shares no code with the client under test.

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "tests/xapi_sim/sim_value.h"

namespace vmb::sim {

enum class JsonRpcVersion {
  kV1,  // no "jsonrpc" member
  kV2,  // "jsonrpc": "2.0"
};

// Whose JSON is written and read.
enum class JsonDialect {
  // ocaml-rpc before 2.1 (XenServer 6.5 to 7.2). Writer: a space after
  // every ':' and ',', doubles as "%f", '/' escaped as "\/". Reader:
  // \uXXXX escapes are kept as the six characters, raw TAB, LF, CR, BS and
  // FF in strings are refused, text after the request object is ignored,
  // "id" must be an integer and v2 requests need "params".
  kLegacy,
  // yojson (XenServer 7.3 and later). Writer: compact, doubles as %.16g
  // (%.17g when %.16g does not read back the same) with ".0" added to an
  // integral value, control characters and DEL as \u00XX. Reader: \uXXXX
  // decoded to UTF-8 (surrogate pairs combined), any other byte allowed raw
  // in strings, nothing but white space after the request object.
  kYojson,
};

// A JSON-RPC request as XAPI reads it.
struct JsonRpcRequest {
  JsonRpcVersion version = JsonRpcVersion::kV1;
  SimValue id;  // kInt or kString: XAPI echoes it (yojson hosts)
  // Parameters map as: string -> kString, integer -> kInt (the whole int64
  // range), other number -> kFloat, true/false -> kBool, null -> kString "",
  // array -> kSet, object -> kMap (members in order, duplicates kept).
  SimCall call;
};

// Arrays and objects nested deeper than this are refused.
inline constexpr int kMaxJsonDepth = 64;

// Parses a request body. Errors: INVALID_ARGUMENT with a short reason, for
// text that is not JSON (at most kMaxJsonDepth levels; an integer must fit
// in int64 and any other number in a double; strings may carry any bytes,
// whose UTF-8 the dispatcher checks later) and for a request XAPI refuses:
// not an object; "method" missing or not a string; "jsonrpc" present but
// not "2.0"; "params" missing (v1, or v2 in kLegacy) or not an array (v2
// also takes null or an object, which becomes the single parameter); "id"
// missing, null, or not an integer or (kYojson only) a string.
absl::StatusOr<JsonRpcRequest> ParseJsonRpcRequest(absl::string_view body,
                                                   JsonDialect dialect);

// The JSON text of `v`: kString and kDateTime as strings, kInt as an integer
// literal, kFloat as a number, kBool, kSet as an array, kMap as an object.
// A byte sequence that is not UTF-8 is written as \ufffd (XAPI copies the
// bytes), so the text is always valid JSON.
void AppendJson(const SimValue& v, JsonDialect dialect, std::string* out);
std::string JsonText(const SimValue& v, JsonDialect dialect);

// A response envelope, with ocaml-rpc's member order:
//   v1 success {"result":R,"error":null,"id":ID}
//   v1 failure {"result":null,"error":E,"id":ID}
//   v2 success {"jsonrpc":"2.0","result":R,"id":ID}
//   v2 failure {"jsonrpc":"2.0","error":E,"id":ID}
// `contents` is R or E.
std::string JsonRpcResponse(JsonDialect dialect, JsonRpcVersion version,
                            const SimValue& id, bool success,
                            const SimValue& contents);

// XAPI's JSON-RPC v2 error object for an ErrorDescription (code, then
// parameters): {"code":code,"message":CODE,"data":[parameters]}.
SimValue JsonRpcErrorObject(int64_t code,
                            const std::vector<std::string>& error);

}  // namespace vmb::sim
