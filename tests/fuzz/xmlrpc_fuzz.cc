// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the XML-RPC decoder and everything that reads what it
// returns (XAPI envelopes, typed records, error pages, datetimes). Any crash,
// hang, leak or sanitizer report is a bug. Run with tests/fuzz/run_fuzz.sh.
#include <stddef.h>
#include <stdint.h>

#include <string>

#include "common/xapi/xenapi_error.h"
#include "common/xapi/xenapi_records.h"
#include "common/xapi/xmlrpc_codec.h"

namespace {

void ReadRecords(const vmb::XmlRpcValue& v) {
  (void)vmb::ParseVmRecord(v, "fuzz");
  (void)vmb::ParseVdiRecord(v, "fuzz");
  (void)vmb::ParseVbdRecord(v, "fuzz");
  (void)vmb::ParseSrRecord(v, "fuzz");
  (void)vmb::ParseHostRecord(v, "fuzz");
  (void)vmb::ParseTaskRecord(v, "fuzz");
  (void)vmb::ParseRecordMap<vmb::VmRecord>(v, &vmb::ParseVmRecord);
  if (v.is_struct()) {
    for (const vmb::XmlRpcValue& item : v.items()) {
      if (item.is_string() || item.is_datetime())
        (void)vmb::ParseXapiTime(item.text());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  vmb::XmlRpcDecodeLimits limits;
  limits.max_bytes = 1 << 20;
  absl::StatusOr<vmb::XmlRpcValue> response =
      vmb::DecodeMethodResponse(input, limits);
  if (response.ok()) {
    ReadRecords(*response);
    if (const vmb::XmlRpcValue* value = response->Find("Value"))
      ReadRecords(*value);
    // A decoded value re-encodes and decodes to itself.
    absl::StatusOr<vmb::XmlRpcValue> again =
        vmb::DecodeXmlRpcValue(vmb::EncodeXmlRpcValue(*response));
    if (!again.ok()) __builtin_trap();
  }
  (void)vmb::DecodeXmlRpcValue(input, limits);
  (void)vmb::DecodeMethodCall(input, limits);
  (void)vmb::ParseXapiErrorPage(input);
  (void)vmb::ParseXapiTime(input);
  return 0;
}
