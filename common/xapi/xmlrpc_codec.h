// SPDX-License-Identifier: Apache-2.0
#pragma once

// XML-RPC encoding and decoding on libxml2, for the XenAPI client.
//
// Decoding accepts values as XAPI emits them (untyped `<value>` strings,
// ints as untyped digits, `<i4>`/`<i8>`/`<int>`, `<boolean>`, `<double>`,
// compact `<dateTime.iso8601>`, `<array>`, `<struct>`, `<value/>`, with or
// without an XML declaration) and as other servers do (`<string>`,
// `<base64>`, `<nil/>`). It is hardened against hostile input: documents with
// a DTD or entity references are refused (so no external entity is loaded and
// no entity is expanded), nesting is bounded, the input size is bounded, and
// every malformed input returns INVALID_ARGUMENT naming the line; nothing
// crashes or hangs.
//
// All functions are thread-safe.

#include <stddef.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

#include "common/xapi/xmlrpc_value.h"

namespace vmb {

struct XmlRpcDecodeLimits {
  int max_depth = 64;                    // nested <value>s
  size_t max_bytes = size_t{512} << 20;  // whole document
};

// `<value>...</value>` for `value`. Strings are written as `<string>`, ints as
// `<int>` (or `<i8>` beyond 32 bits), doubles with enough digits to round-trip.
std::string EncodeXmlRpcValue(const XmlRpcValue& value);

// A complete `<methodCall>` document with an XML declaration.
std::string EncodeMethodCall(absl::string_view method,
                             absl::Span<const XmlRpcValue> params);

// A `<methodResponse>` carrying one parameter (used by fakes and tests).
std::string EncodeMethodResponse(const XmlRpcValue& value);

// Decodes a `<methodResponse>` and returns its single parameter.
// Errors: INVALID_ARGUMENT for malformed or hostile input (the message names
// the line); INTERNAL for a `<fault>` response, with faultCode and faultString
// in the message.
absl::StatusOr<XmlRpcValue> DecodeMethodResponse(
    absl::string_view xml, const XmlRpcDecodeLimits& limits = {});

// Decodes a document whose root element is `<value>` (XVA's ova.xml, a task's
// `result` field). Errors as DecodeMethodResponse.
absl::StatusOr<XmlRpcValue> DecodeXmlRpcValue(
    absl::string_view xml, const XmlRpcDecodeLimits& limits = {});

struct XmlRpcMethodCall {
  std::string method;
  std::vector<XmlRpcValue> params;
};

// Decodes a `<methodCall>`. Errors: INVALID_ARGUMENT as above.
absl::StatusOr<XmlRpcMethodCall> DecodeMethodCall(
    absl::string_view xml, const XmlRpcDecodeLimits& limits = {});

// One-time libxml2 set-up (xmlInitParser, no external entity loading). Safe to
// call more than once and from any thread; mains call it before starting
// threads, and the decoders call it too.
void InitXmlRpcCodec();

}  // namespace vmb
