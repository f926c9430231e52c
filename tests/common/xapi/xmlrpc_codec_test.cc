// SPDX-License-Identifier: Apache-2.0
#include "common/xapi/xmlrpc_codec.h"

#include <dirent.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::IsOk;
using ::vmb::testing::StatusIs;

std::string Response(absl::string_view value_xml) {
  return absl::StrCat("<methodResponse><params><param>", value_xml,
                      "</param></params></methodResponse>");
}

TEST(XmlRpcDecodeTest, UntypedValueIsString) {
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v,
                       DecodeMethodResponse(Response("<value>abc</value>")));
  EXPECT_EQ(v, XmlRpcValue::String("abc"));
}

TEST(XmlRpcDecodeTest, SelfClosingValueIsEmptyString) {
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v,
                       DecodeMethodResponse(Response("<value/>")));
  EXPECT_EQ(v, XmlRpcValue::String(""));
  ASSERT_OK_AND_ASSIGN(v, DecodeMethodResponse(Response("<value></value>")));
  EXPECT_EQ(v, XmlRpcValue::String(""));
}

TEST(XmlRpcDecodeTest, UntypedWhitespaceIsKept) {
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v,
                       DecodeMethodResponse(Response("<value>  a b </value>")));
  EXPECT_EQ(v, XmlRpcValue::String("  a b "));
}

TEST(XmlRpcDecodeTest, UntypedDigitsStayString) {
  // XAPI sends int64 fields as untyped digits; the record layer converts.
  ASSERT_OK_AND_ASSIGN(
      XmlRpcValue v,
      DecodeMethodResponse(Response("<value>491463376896</value>")));
  EXPECT_EQ(v, XmlRpcValue::String("491463376896"));
}

struct ScalarCase {
  std::string xml;
  XmlRpcValue expected;
};

TEST(XmlRpcDecodeTest, TypedScalars) {
  const std::vector<ScalarCase> cases = {
      {"<value><string>x &amp; y &lt;z&gt;</string></value>",
       XmlRpcValue::String("x & y <z>")},
      {"<value><string/></value>", XmlRpcValue::String("")},
      {"<value><int>-17</int></value>", XmlRpcValue::Int(-17)},
      {"<value><i4>2147483647</i4></value>", XmlRpcValue::Int(2147483647)},
      {"<value><i8>9223372036854775807</i8></value>",
       XmlRpcValue::Int(INT64_MAX)},
      {"<value><i8>-9223372036854775808</i8></value>",
       XmlRpcValue::Int(INT64_MIN)},
      {"<value><boolean>1</boolean></value>", XmlRpcValue::Bool(true)},
      {"<value><boolean>0</boolean></value>", XmlRpcValue::Bool(false)},
      {"<value><double>1</double></value>", XmlRpcValue::Double(1.0)},
      {"<value><double>0.5</double></value>", XmlRpcValue::Double(0.5)},
      {"<value><double>-1.25e-3</double></value>",
       XmlRpcValue::Double(-1.25e-3)},
      {"<value><dateTime.iso8601>20140915T14:33:31Z</dateTime.iso8601></value>",
       XmlRpcValue::DateTime("20140915T14:33:31Z")},
      {"<value><base64>aGVsbG8=</base64></value>",
       XmlRpcValue::Base64("hello")},
      {"<value><nil/></value>", XmlRpcValue::Nil()},
      {"<value>\n  <boolean>1</boolean>\n</value>", XmlRpcValue::Bool(true)},
      {"<value><![CDATA[a<b]]></value>", XmlRpcValue::String("a<b")},
      {"<value>caf\xC3\xA9 \xF0\x9F\x92\xBE</value>",
       XmlRpcValue::String("caf\xC3\xA9 \xF0\x9F\x92\xBE")},
      {"<value>&#13;&#10;</value>", XmlRpcValue::String("\r\n")},
  };
  for (const ScalarCase& c : cases) {
    SCOPED_TRACE(c.xml);
    ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeMethodResponse(Response(c.xml)));
    EXPECT_EQ(v, c.expected) << v.DebugString();
  }
}

TEST(XmlRpcDecodeTest, XapiEnvelopeSuccess) {
  // Byte for byte as XenServer 6.2 answered session.login_with_password.
  const std::string body =
      "<methodResponse><params><param><value><struct><member><name>Status</"
      "name><value>"
      "Success</value></member><member><name>Value</"
      "name><value>OpaqueRef:3364a807-6433-"
      "eb77-84fd-f3452db26947</value></member></struct></value></param></"
      "params>"
      "</methodResponse>";
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeMethodResponse(body));
  ASSERT_TRUE(v.is_struct());
  EXPECT_EQ(v.names(), (std::vector<std::string>{"Status", "Value"}));
  EXPECT_EQ(*v.Find("Status"), XmlRpcValue::String("Success"));
  EXPECT_EQ(v.Find("Value")->text(),
            "OpaqueRef:3364a807-6433-eb77-84fd-f3452db26947");
}

TEST(XmlRpcDecodeTest, XmlDeclarationAndPrettyPrintingAccepted) {
  const std::string body =
      "<?xml version=\"1.0\"?>\n<methodResponse>\n <params>\n  <param>\n"
      "   <value><struct>\n    <member>\n     <name>a</name>\n     "
      "<value><array><data>\n"
      "      <value>1</value>\n      <value><i4>2</i4></value>\n     "
      "</data></array></value>\n"
      "    </member>\n   </struct></value>\n  </param>\n "
      "</params>\n</methodResponse>\n";
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeMethodResponse(body));
  const XmlRpcValue* a = v.Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->is_array());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ(a->items()[0], XmlRpcValue::String("1"));
  EXPECT_EQ(a->items()[1], XmlRpcValue::Int(2));
}

TEST(XmlRpcDecodeTest, EmptyContainers) {
  ASSERT_OK_AND_ASSIGN(
      XmlRpcValue v,
      DecodeMethodResponse(Response("<value><struct/></value>")));
  EXPECT_EQ(v, XmlRpcValue::MakeStruct());
  ASSERT_OK_AND_ASSIGN(
      v,
      DecodeMethodResponse(Response("<value><array><data/></array></value>")));
  EXPECT_EQ(v, XmlRpcValue::MakeArray());
  ASSERT_OK_AND_ASSIGN(
      v, DecodeMethodResponse(Response("<value><array/></value>")));
  EXPECT_EQ(v, XmlRpcValue::MakeArray());
}

TEST(XmlRpcDecodeTest, FaultBecomesInternalError) {
  const std::string body =
      "<methodResponse><fault><value><struct><member><name>faultCode</"
      "name><value><int>143"
      "</int></value></member><member><name>faultString</"
      "name><value><string>Failed to parse"
      " the "
      "request</string></value></member></struct></value></fault></"
      "methodResponse>";
  EXPECT_THAT(DecodeMethodResponse(body).status(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("Failed to parse the request")));
}

XmlRpcValue SampleValue() {
  XmlRpcValue record = XmlRpcValue::MakeStruct();
  record.AddMember("uuid",
                   XmlRpcValue::String("c0ffee00-0000-4000-8000-000000000001"));
  record.AddMember("name",
                   XmlRpcValue::String("DEV mySql <&> \"q\" \t tab\nline\r"));
  record.AddMember("empty", XmlRpcValue::String(""));
  record.AddMember("small", XmlRpcValue::Int(-5));
  record.AddMember("big", XmlRpcValue::Int(int64_t{1} << 40));
  record.AddMember("min", XmlRpcValue::Int(INT64_MIN));
  record.AddMember("flag", XmlRpcValue::Bool(true));
  record.AddMember("ratio", XmlRpcValue::Double(0.1));
  record.AddMember("when", XmlRpcValue::DateTime("19700101T00:00:00Z"));
  record.AddMember("blob", XmlRpcValue::Base64(std::string("\0\x01\xff", 3)));
  record.AddMember("nothing", XmlRpcValue::Nil());
  XmlRpcValue list = XmlRpcValue::MakeArray();
  list.Append(XmlRpcValue::String("a"));
  list.Append(XmlRpcValue::MakeArray());
  list.Append(XmlRpcValue::MakeStruct());
  record.AddMember("list", list);
  record.AddMember("dup", XmlRpcValue::String("first"));
  record.AddMember("dup", XmlRpcValue::String("second"));
  return record;
}

TEST(XmlRpcRoundTripTest, EveryValueTypeRoundTrips) {
  XmlRpcValue value = SampleValue();
  ASSERT_OK_AND_ASSIGN(XmlRpcValue back,
                       DecodeMethodResponse(EncodeMethodResponse(value)));
  EXPECT_EQ(back, value) << back.DebugString();
  ASSERT_OK_AND_ASSIGN(back, DecodeXmlRpcValue(EncodeXmlRpcValue(value)));
  EXPECT_EQ(back, value);
  EXPECT_EQ(back.Find("dup")->text(), "first");
}

TEST(XmlRpcRoundTripTest, MethodCallRoundTrips) {
  std::vector<XmlRpcValue> params = {XmlRpcValue::String("root"),
                                     XmlRpcValue::String("p&ss<word>"),
                                     SampleValue()};
  ASSERT_OK_AND_ASSIGN(XmlRpcMethodCall call,
                       DecodeMethodCall(EncodeMethodCall(
                           "session.login_with_password", params)));
  EXPECT_EQ(call.method, "session.login_with_password");
  EXPECT_EQ(call.params, params);
}

TEST(XmlRpcRoundTripTest, ControlCharactersOtherThanTabLfCrAreDropped) {
  // XML 1.0 cannot carry them; XAPI drops them the same way.
  ASSERT_OK_AND_ASSIGN(XmlRpcValue back,
                       DecodeXmlRpcValue(EncodeXmlRpcValue(
                           XmlRpcValue::String(std::string("a\x01\x1f"
                                                           "b",
                                                           4)))));
  EXPECT_EQ(back, XmlRpcValue::String("ab"));
}

TEST(XmlRpcRoundTripTest, DoublesRoundTripExactly) {
  for (double d : {0.0, -0.0, 1.0, 0.1, 1e300, -2.2250738585072014e-308,
                   123456789.123456789}) {
    ASSERT_OK_AND_ASSIGN(
        XmlRpcValue back,
        DecodeXmlRpcValue(EncodeXmlRpcValue(XmlRpcValue::Double(d))));
    EXPECT_EQ(back.double_value(), d);
  }
}

// Malformed and hostile inputs: each must give INVALID_ARGUMENT, never crash.
TEST(XmlRpcDecodeTest, RejectsMalformedInput) {
  const std::vector<std::string> bad = {
      "",
      "not xml at all",
      "<methodResponse>",
      "<methodResponse><params><param><value>x</value></param></params>",
      "<methodResponse><params><param><value>x</param></params></"
      "methodResponse>",
      "<methodCall/>",
      "<methodResponse/>",
      "<methodResponse><params/></methodResponse>",
      "<methodResponse><params><param/></params></methodResponse>",
      Response("<value><int>12x</int></value>"),
      Response("<value><int></int></value>"),
      Response("<value><i4>2147483648</i4></value>"),
      Response("<value><i8>9223372036854775808</i8></value>"),
      Response("<value><boolean>yes</boolean></value>"),
      Response("<value><boolean>2</boolean></value>"),
      Response("<value><double>1.5.5</double></value>"),
      Response("<value><double></double></value>"),
      Response("<value><base64>!!!</base64></value>"),
      Response("<value><blob>1</blob></value>"),
      Response("<value>text<string>x</string></value>"),
      Response("<value><string>x</string>tail</value>"),
      Response("<value><string><b>x</b></string></value>"),
      Response("<value><string>x</string><string>y</string></value>"),
      Response("<value><nil>x</nil></value>"),
      Response("<value><array><value>1</value></array></value>"),
      Response("<value><array><data><int>1</int></data></array></value>"),
      Response(
          "<value><struct><member><value>1</value></member></struct></value>"),
      Response(
          "<value><struct><member><name>a</name></member></struct></value>"),
      Response("<value><struct><member/></struct></value>"),
      Response(
          "<value><struct><name>a</name><value>1</value></struct></value>"),
      Response("<value><struct><member><name>a</name><value>1</value><value>2</"
               "value>"
               "</member></struct></value>"),
      Response("<value>1</value><value>2</value>"),
      Response("<value>\x80\x81</value>"),  // invalid UTF-8
      Response("<value>&bogus;</value>"),
      Response("<value>&#0;</value>"),
      "<methodResponse><params><param><value>1</value></param></params></"
      "methodResponse><x/>",
      "<methodResponse><params><param><value>1</value></param></params></"
      "methodResponse>junk",
      "<methodResponse><params><param><value>1</value></param><param><value>2</"
      "value></param>"
      "</params></methodResponse>",
      "<methodResponse><fault><value>1</value></fault><params/></"
      "methodResponse>",
  };
  for (const std::string& xml : bad) {
    SCOPED_TRACE(xml);
    EXPECT_THAT(DecodeMethodResponse(xml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("malformed XML-RPC")));
  }
}

TEST(XmlRpcDecodeTest, ErrorsNameTheLine) {
  EXPECT_THAT(
      DecodeMethodResponse(
          "<methodResponse>\n<params>\n<param>\n<value><int>z</int>"
          "</value></param></params></methodResponse>")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 4")));
}

TEST(XmlRpcDecodeTest, RejectsExternalEntities) {
  const std::string xxe =
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM "
      "\"file:///etc/passwd\">]>"
      "<methodResponse><params><param><value>&x;</value></param></params></"
      "methodResponse>";
  EXPECT_THAT(DecodeMethodResponse(xxe).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(XmlRpcDecodeTest, RejectsEntityExpansion) {
  std::string lol =
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; ++c) {
    absl::StrAppend(&lol, "<!ENTITY ", std::string(1, c), " \"");
    for (int i = 0; i < 10; ++i)
      absl::StrAppend(&lol, "&", std::string(1, prev), ";");
    lol += "\">";
    prev = c;
  }
  lol +=
      "]><methodResponse><params><param><value>&j;</value></param></params></"
      "methodResponse>";
  EXPECT_THAT(DecodeMethodResponse(lol).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(XmlRpcDecodeTest, RejectsDeepNesting) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "<value><array><data>";
  EXPECT_THAT(DecodeMethodResponse(Response(deep)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Just within the limit parses.
  std::string ok;
  for (int i = 0; i < 60; ++i) ok += "<value><array><data>";
  for (int i = 0; i < 60; ++i) ok += "</data></array></value>";
  EXPECT_THAT(DecodeMethodResponse(Response(ok)).status(), IsOk());
}

TEST(XmlRpcDecodeTest, RejectsOversizedDocuments) {
  XmlRpcDecodeLimits limits;
  limits.max_bytes = 1024;
  std::string big =
      Response(absl::StrCat("<value>", std::string(2000, 'x'), "</value>"));
  EXPECT_THAT(
      DecodeMethodResponse(big, limits).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

TEST(XmlRpcDecodeTest, HugeStringsAreBoundedByTheParser) {
  // libxml2 refuses text nodes over 10 MB without XML_PARSE_HUGE.
  std::string big =
      Response(absl::StrCat("<value>", std::string(12 << 20, 'x'), "</value>"));
  EXPECT_THAT(DecodeMethodResponse(big).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::string fine =
      Response(absl::StrCat("<value>", std::string(1 << 20, 'x'), "</value>"));
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeMethodResponse(fine));
  EXPECT_EQ(v.text().size(), size_t{1} << 20);
}

TEST(XmlRpcDecodeTest, TruncationsOfAValidDocumentNeverCrash) {
  const std::string body = EncodeMethodResponse(SampleValue());
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(DecodeMethodResponse(body.substr(0, n)).ok()) << n;
  }
}

// Every response body recorded from a real XenServer 6.2 host parses, and
// carries the XAPI envelope.
TEST(XmlRpcDecodeTest, ParsesEveryRecordedXenServerResponse) {
  const std::string dir = absl::StrCat(vmb::testing::SourceDir(),
                                       "/tests/testdata/real-xapi/xs620-rpc");
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr) << dir;
  int parsed = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 4 || name.substr(name.size() - 4) != ".xml") continue;
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(std::string body, vmb::testing::ReadFileToString(
                                               absl::StrCat(dir, "/", name)));
    ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeMethodResponse(body));
    ASSERT_TRUE(v.is_struct());
    ASSERT_NE(v.Find("Status"), nullptr);
    EXPECT_EQ(v.Find("Status")->text(), "Success");
    EXPECT_NE(v.Find("Value"), nullptr);
    ++parsed;
  }
  closedir(d);
  EXPECT_GE(parsed, 30);
}

TEST(XmlRpcDecodeTest, ParsesRealOvaXml) {
  ASSERT_OK_AND_ASSIGN(std::string ova, vmb::testing::ReadTestData(
                                            "real-xapi/xs56-xva/ova.xml"));
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeXmlRpcValue(ova));
  const XmlRpcValue* version = v.Find("version");
  ASSERT_NE(version, nullptr);
  EXPECT_EQ(version->Find("export_vsn")->text(), "2");
  const XmlRpcValue* objects = v.Find("objects");
  ASSERT_NE(objects, nullptr);
  ASSERT_TRUE(objects->is_array());
  EXPECT_EQ(objects->items()[0].Find("class")->text(), "VM");
  EXPECT_EQ(objects->items()[0].Find("id")->text(), "Ref:12");
}

}  // namespace
}  // namespace vmb
