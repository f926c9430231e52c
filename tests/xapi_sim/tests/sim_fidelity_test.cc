// SPDX-License-Identifier: Apache-2.0
// The simulator against bytes produced by real XenServer hosts
// (tests/testdata/real-xapi): tar framing, a whole XVA, record field sets and
// order, the pool database format.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "common/xapi/xmlrpc_codec.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/fixture.h"
#include "tests/xapi_sim/schema.h"
#include "tests/xapi_sim/sim_pool.h"
#include "tests/xapi_sim/streams.h"

namespace vmb::sim {
namespace {

using ::testing::HasSubstr;

std::string Gunzip(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 15 + 32);
  std::string out;
  char buf[1 << 16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
  } while (rc == Z_OK);
  inflateEnd(&z);
  return out;
}

std::string ReadAll(ByteSource& source) {
  std::string out;
  std::string buf(300 * 1024, '\0');  // not a multiple of anything
  while (true) {
    auto n = source.Read(buf.data(), buf.size());
    EXPECT_OK(n.status());
    if (!n.ok() || *n == 0) return out;
    out.append(buf.data(), *n);
  }
}

// The whole streamed body of an in-process response, which then ends.
std::string ReadBody(HttpResponse& resp) {
  std::string body;
  std::string buf(1 << 16, '\0');
  while (!resp.stream_length.has_value() || body.size() < *resp.stream_length) {
    auto n = resp.stream->Read(buf.data(), buf.size());
    EXPECT_OK(n.status());
    if (!n.ok() || *n == 0) break;
    body.append(buf.data(), *n);
  }
  resp.stream->Finish(true);
  return body;
}

class ZeroDisk final : public DiskImage {
 public:
  explicit ZeroDisk(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  void Read(uint64_t, char* buf, size_t len) const override {
    memset(buf, 0, len);
  }
  bool IsZero(uint64_t, uint64_t) const override { return true; }

 private:
  uint64_t size_;
};

TEST(SimFidelityTest, TarHeadersMatchARealXenServerExport) {
  ASSERT_OK_AND_ASSIGN(
      std::string gz,
      vmb::testing::ReadTestData("real-xapi/xs56-xva/vmexport.xva.gz"));
  const std::string real = Gunzip(gz);
  ASSERT_EQ(real.size(), 2127872u);
  EXPECT_EQ(TarHeader("ova.xml", 26014), real.substr(0, 512));
  EXPECT_EQ(TarHeader("Ref:20/00000000", 1048576), real.substr(26624, 512));
  EXPECT_EQ(TarHeader("Ref:20/00000000.checksum", 40),
            real.substr(1075712, 512));
}

TEST(SimFidelityTest, RebuildsARealXvaByteForByte) {
  // XenServer 5.6's export of a VM with one all-zero 2 MiB disk, checksums
  // in SHA-1 (.checksum): our writer, given the same ova.xml and disk, must
  // produce the identical file.
  ASSERT_OK_AND_ASSIGN(
      std::string gz,
      vmb::testing::ReadTestData("real-xapi/xs56-xva/vmexport.xva.gz"));
  const std::string real = Gunzip(gz);
  ASSERT_OK_AND_ASSIGN(std::string ova, vmb::testing::ReadTestData(
                                            "real-xapi/xs56-xva/ova.xml"));
  ZeroDisk disk(2 << 20);
  XvaSource source(ova, {XvaDisk{"Ref:20", &disk}}, XvaChecksum::kSha1);
  const std::string ours = ReadAll(source);
  ASSERT_EQ(ours.size(), real.size());
  EXPECT_TRUE(ours == real)
      << "first difference at byte "
      << std::mismatch(ours.begin(), ours.end(), real.begin()).first -
             ours.begin();
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(ours.data()), ours.size(), md);
  EXPECT_EQ(absl::BytesToHexString(
                absl::string_view(reinterpret_cast<char*>(md), sizeof(md))),
            "b9766f50230551a45c0e852e9bf162dfa906ea36");
}

TEST(SimFidelityTest, XvaSkipsZeroChunksButKeepsFirstAndLast) {
  ZeroDisk disk((5 << 20) + 4096);  // 6 chunks, the last one short
  XvaSource source("<value/>", {XvaDisk{"Ref:7", &disk}});
  const std::string xva = ReadAll(source);
  std::vector<std::string> names;
  for (size_t at = 0; at + 512 <= xva.size();) {
    std::string name(xva.data() + at, strnlen(xva.data() + at, 100));
    if (name.empty()) break;
    names.push_back(name);
    const uint64_t size =
        std::stoull(std::string(xva.data() + at + 124, 11), nullptr, 8);
    at += 512 + (size + 511) / 512 * 512;
  }
  EXPECT_THAT(names, ::testing::ElementsAre(
                         "ova.xml", "Ref:7/00000000", "Ref:7/00000000.xxhash",
                         "Ref:7/00000005", "Ref:7/00000005.xxhash"));
  EXPECT_EQ(xva.size() % 512, 0u);
  EXPECT_EQ(xva.substr(xva.size() - 1024), std::string(1024, '\0'));
}

TEST(SimFidelityTest, XvaOrdersDisksLexicographically) {
  ZeroDisk a(1 << 20), b(1 << 20);
  XvaSource source("<value/>", {XvaDisk{"Ref:2", &a}, XvaDisk{"Ref:10", &b}});
  const std::string xva = ReadAll(source);
  EXPECT_LT(xva.find("Ref:10/00000000"), xva.find("Ref:2/00000000"));
}

TEST(SimFidelityTest, GeneratedDisksAreDeterministicAndHaveZeroRegions) {
  GeneratedDisk disk(42, 64 << 20);
  std::string whole(64 << 20, '\0');
  disk.Read(0, whole.data(), whole.size());
  // Unaligned reads agree with the whole.
  for (uint64_t off : {1ull, 7ull, 65535ull, 65536ull + 3, (1ull << 20) - 5}) {
    std::string part(1000, '\0');
    disk.Read(off, part.data(), part.size());
    EXPECT_EQ(part, whole.substr(off, part.size())) << off;
  }
  int zero_chunks = 0;
  for (uint64_t c = 0; c < 64; ++c) {
    const bool zero = whole.find_first_not_of('\0', c << 20) >= ((c + 1) << 20);
    EXPECT_EQ(zero, disk.IsZero(c << 20, 1 << 20)) << c;
    zero_chunks += zero;
  }
  EXPECT_GT(zero_chunks, 8);
  EXPECT_LT(zero_chunks, 56);
  GeneratedDisk again(42, 64 << 20);
  EXPECT_EQ(DiskSha256(again), DiskSha256(disk));
  EXPECT_NE(DiskSha256(GeneratedDisk(43, 64 << 20)), DiskSha256(disk));
}

TEST(SimFidelityTest, VhdStreamHasValidFooterHeaderAndBat) {
  GeneratedDisk disk(7, 10 << 20);
  VhdSource source(&disk, std::string(16, '\x11'), 1000);
  const std::string vhd = ReadAll(source);
  ASSERT_GE(vhd.size(), 2048u + 512);
  const std::string footer = vhd.substr(0, 512);
  EXPECT_EQ(footer, vhd.substr(vhd.size() - 512));
  EXPECT_EQ(footer.substr(0, 8), "conectix");
  std::string zeroed = footer;
  memset(zeroed.data() + 64, 0, 4);
  const uint32_t sum = VhdChecksum(zeroed.data(), 512);
  const auto be32 = [](const std::string& s, size_t at) {
    return (uint32_t{static_cast<unsigned char>(s[at])} << 24) |
           (uint32_t{static_cast<unsigned char>(s[at + 1])} << 16) |
           (uint32_t{static_cast<unsigned char>(s[at + 2])} << 8) |
           uint32_t{static_cast<unsigned char>(s[at + 3])};
  };
  EXPECT_EQ(be32(footer, 64), sum);
  EXPECT_EQ(be32(footer, 60), 3u);  // dynamic
  EXPECT_EQ(vhd.substr(512, 8), "cxsparse");
  EXPECT_EQ(be32(vhd, 512 + 28), 5u);  // 10 MiB / 2 MiB blocks
  // Allocated blocks are exactly the non-zero ones, in order, after the BAT.
  uint32_t expected_sector = (2048 + 512) / 512;
  for (uint32_t b = 0; b < 5; ++b) {
    const uint32_t entry = be32(vhd, 2048 + b * 4);
    if (disk.IsZero(uint64_t{b} << 21, 2 << 20)) {
      EXPECT_EQ(entry, 0xffffffffu) << b;
    } else {
      EXPECT_EQ(entry, expected_sector) << b;
      std::string data(2 << 20, '\0');
      disk.Read(uint64_t{b} << 21, data.data(), data.size());
      EXPECT_EQ(vhd.substr(uint64_t{entry} * 512 + 512, 2 << 20), data) << b;
      expected_sector += (512 + (2 << 20)) / 512;
    }
  }
  EXPECT_EQ(vhd.size(), uint64_t{expected_sector} * 512 + 512);
}

// Field names of the first record in an Ansible fixture (XenServer 7.2).
std::set<std::string> RealFields(const std::string& cls) {
  auto json = vmb::testing::ReadTestData(
      "real-xapi/xs72-records/ansible-test-vm-1-params.json");
  EXPECT_OK(json.status());
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &s).ok());
  std::set<std::string> out;
  const auto& records = s.fields().at(cls).struct_value().fields();
  for (const auto& [name, unused] :
       records.begin()->second.struct_value().fields()) {
    out.insert(name);
  }
  return out;
}

TEST(SimFidelityTest, RecordFieldsAreThoseOfARealXenServer72) {
  for (const char* cls :
       {"VM", "VBD", "VDI", "SR", "VIF", "network", "host", "VM_metrics"}) {
    const ClassSchema* schema = FindClass(cls);
    ASSERT_NE(schema, nullptr) << cls;
    std::set<std::string> ours;
    for (const FieldSchema& f : schema->fields) ours.insert(f.name);
    EXPECT_EQ(ours, RealFields(cls)) << cls;
  }
}

// Member names, in order, of a record in a recorded XenServer 6.2 reply.
std::vector<std::string> RecordedOrder(const std::string& file) {
  auto body = vmb::testing::ReadTestData("real-xapi/xs620-rpc/" + file);
  EXPECT_OK(body.status());
  auto v = DecodeMethodResponse(*body);
  EXPECT_OK(v.status());
  return v->Find("Value")->names();
}

TEST(SimFidelityTest, FieldsComeInTheWireOrderOfRealReplies) {
  for (const auto& [cls, file] :
       std::vector<std::pair<std::string, std::string>>{
           {"VM", "VM.get_record.0.xml"},
           {"VDI", "VDI.get_record.0.xml"},
           {"VBD", "VBD.get_record.0.xml"},
           {"SR", "SR.get_record.0.xml"},
           {"host", "host.get_record.0.xml"}}) {
    const std::vector<std::string> real = RecordedOrder(file);
    const std::set<std::string> real_set(real.begin(), real.end());
    std::vector<std::string> ours;
    for (const FieldSchema& f : FindClass(cls)->fields) {
      if (real_set.count(f.name) != 0) ours.push_back(f.name);
    }
    EXPECT_EQ(ours, real) << cls;
  }
}

class SimPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitXmlRpcCodec();
    ASSERT_NO_FATAL_FAILURE(Reset(DemoFixture()));
  }

  // A fresh pool from `f`, logged in.
  void Reset(const Fixture& f) {
    auto pool = SimPool::Create(f);
    ASSERT_OK(pool.status());
    pool_ = *std::move(pool);
    session_ =
        Call("session.login_with_password", {S("root"), S("demo-password")})
            .text();
  }

  XmlRpcValue Call(const std::string& method, std::vector<XmlRpcValue> params,
                   const std::string& host = "xcp-host1") {
    int status = 0;
    std::string body =
        pool_->HandleXmlRpc(host, EncodeMethodCall(method, params), &status);
    EXPECT_EQ(status, 200);
    auto v = DecodeMethodResponse(body);
    EXPECT_OK(v.status());
    last_body_ = body;
    if (v->Find("Status")->text() != "Success")
      return *v->Find("ErrorDescription");
    return *v->Find("Value");
  }

  XmlRpcValue S(const std::string& s) { return XmlRpcValue::String(s); }

  std::unique_ptr<SimPool> pool_;
  std::string session_;
  std::string last_body_;
};

TEST_F(SimPoolTest, RepliesLookLikeXapisOnTheWire) {
  Call("VM.get_all_records", {S(session_)});
  EXPECT_TRUE(
      absl::StartsWith(last_body_,
                       "<methodResponse><params><param><value><struct>"
                       "<member><name>Status</name><value>Success</value>"));
  EXPECT_THAT(last_body_, Not(HasSubstr("<?xml")));
  EXPECT_THAT(last_body_, Not(HasSubstr("<string>")));
  EXPECT_THAT(last_body_, Not(HasSubstr("<value></value>")));
  EXPECT_THAT(last_body_, HasSubstr("<value/>"));
  EXPECT_THAT(last_body_, HasSubstr("<double>1</double>"));  // %.16g, as XAPI
  EXPECT_THAT(
      last_body_,
      HasSubstr("<dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601>"));
  EXPECT_THAT(last_body_, Not(HasSubstr("\n")));
}

TEST_F(SimPoolTest, SnapshotsAreTemplatesWithMetadataAndBaseCopies) {
  XmlRpcValue vms = Call("VM.get_by_name_label", {S(session_), S("DEV-RH6")});
  const std::string vm = vms.items()[0].text();
  const std::string snap =
      Call("VM.snapshot", {S(session_), S(vm), S("s1")}).text();
  XmlRpcValue rec = Call("VM.get_record", {S(session_), S(snap)});
  EXPECT_EQ(*rec.Find("is_a_template"), XmlRpcValue::Bool(true));
  EXPECT_EQ(*rec.Find("is_a_snapshot"), XmlRpcValue::Bool(true));
  EXPECT_EQ(rec.Find("snapshot_info")->Find("power-state-at-snapshot")->text(),
            "Running");
  // snapshot_metadata is the source record in the pool database's syntax.
  EXPECT_THAT(rec.Find("snapshot_metadata")->text(),
              HasSubstr("('name__label' 'DEV-RH6')"));
  // The first snapshot of a disk adds a hidden base copy.
  XmlRpcValue vdis = Call("VDI.get_all_records", {S(session_)});
  int base_copies = 0;
  for (const XmlRpcValue& v : vdis.items()) {
    if (v.Find("name_label")->text() == "base copy") {
      ++base_copies;
      EXPECT_EQ(*v.Find("managed"), XmlRpcValue::Bool(false));
      EXPECT_EQ(*v.Find("read_only"), XmlRpcValue::Bool(true));
    }
  }
  EXPECT_GE(base_copies, 2);  // the fixture's own snapshot made one too
}

TEST_F(SimPoolTest, ThickSrWithoutRoomRefusesSnapshots) {
  Fixture f = DemoFixture();
  Vm* vm = f.add_vms();
  vm->set_name_label("thick");
  vm->set_resident_on("xcp-host2");
  Disk* d = vm->add_disks();
  d->set_size(uint64_t{600} << 30);  // more than the SR has free
  d->set_sr("Local storage xcp-host2");
  ASSERT_NO_FATAL_FAILURE(Reset(f));
  const std::string ref =
      Call("VM.get_by_name_label", {S(session_), S("thick")}).items()[0].text();
  XmlRpcValue error = Call("VM.snapshot", {S(session_), S(ref), S("s")});
  ASSERT_TRUE(error.is_array());
  EXPECT_EQ(error.items()[0].text(), "SR_BACKEND_FAILURE_44");
}

TEST_F(SimPoolTest, SpaceIsCheckedForAllDisksTogether) {
  // Two thick disks that each fit in the SR's free space, but not both.
  Fixture f = DemoFixture();
  Vm* vm = f.add_vms();
  vm->set_name_label("two-thick");
  vm->set_resident_on("xcp-host2");
  for (int i = 0; i < 2; ++i) {
    Disk* d = vm->add_disks();
    d->set_size(uint64_t{100} << 30);
    d->set_sr("Local storage xcp-host2");
  }
  f.mutable_srs(2)->set_physical_utilisation(
      uint64_t{350} << 30);  // 150 GiB free after 200 used
  ASSERT_NO_FATAL_FAILURE(Reset(f));
  const std::string ref =
      Call("VM.get_by_name_label", {S(session_), S("two-thick")})
          .items()[0]
          .text();
  const size_t vdis_before = Call("VDI.get_all", {S(session_)}).size();
  XmlRpcValue error = Call("VM.snapshot", {S(session_), S(ref), S("s")});
  ASSERT_TRUE(error.is_array());
  EXPECT_EQ(error.items()[0].text(), "SR_BACKEND_FAILURE_44");
  EXPECT_EQ(error.size(), 4u);
  // Nothing was left behind.
  EXPECT_EQ(Call("VDI.get_all", {S(session_)}).size(), vdis_before);
  EXPECT_EQ(Call("VM.get_by_name_label", {S(session_), S("s")}).size(), 0u);
}

TEST_F(SimPoolTest, ChainLimitRefusesSnapshots) {
  Fixture f = DemoFixture();
  f.mutable_srs(0)->set_max_chain_length(3);
  ASSERT_NO_FATAL_FAILURE(Reset(f));
  const std::string ref =
      Call("VM.get_by_name_label", {S(session_), S("DEV-RH6")})
          .items()[0]
          .text();
  std::string last_error;
  for (int i = 0; i < 5 && last_error.empty(); ++i) {
    XmlRpcValue r = Call("VM.snapshot", {S(session_), S(ref), S("s")});
    if (r.is_array()) last_error = r.items()[0].text();
  }
  EXPECT_EQ(last_error, "SR_BACKEND_FAILURE_109");
}

TEST_F(SimPoolTest, OldHostsRejectTheIgnoreVdisParameter) {
  Fixture f = DemoFixture();
  f.mutable_settings()->set_old_host_snapshot_arity(true);
  ASSERT_NO_FATAL_FAILURE(Reset(f));
  const std::string ref =
      Call("VM.get_by_name_label", {S(session_), S("DEV-RH6")})
          .items()[0]
          .text();
  XmlRpcValue r = Call("VM.snapshot",
                       {S(session_), S(ref), S("s"), XmlRpcValue::MakeArray()});
  ASSERT_TRUE(r.is_array());
  EXPECT_EQ(r.items()[0].text(), "MESSAGE_PARAMETER_COUNT_MISMATCH");
  EXPECT_EQ(r.items()[2].text(), "3");
}

TEST_F(SimPoolTest, VdiDestroyRightAfterAnExportIsRefusedOnce) {
  const std::string vm =
      Call("VM.get_by_name_label", {S(session_), S("DEV-RH6")})
          .items()[0]
          .text();
  const std::string snap =
      Call("VM.snapshot", {S(session_), S(vm), S("s")}).text();
  XmlRpcValue rec = Call("VM.get_record", {S(session_), S(snap)});
  const std::string vbd = rec.Find("VBDs")->items()[0].text();
  const std::string vdi = Call("VBD.get_VDI", {S(session_), S(vbd)}).text();
  HttpRequest r;
  r.host = "xcp-host1";
  r.method = "GET";
  r.path = "/export_raw_vdi";
  r.query = {{"vdi", vdi}};
  r.cookies = {{"session_id", session_}};
  HttpResponse resp = pool_->HandleHttp(r);
  ASSERT_EQ(resp.status, 200);
  ASSERT_NE(resp.stream, nullptr);
  std::string buf(1 << 20, '\0');
  while (*resp.stream->Read(buf.data(), buf.size()) > 0) {
  }
  resp.stream->Finish(true);
  Call("VM.destroy", {S(session_), S(snap)});
  XmlRpcValue first = Call("VDI.destroy", {S(session_), S(vdi)});
  ASSERT_TRUE(first.is_array());
  EXPECT_EQ(first.items()[0].text(), "VDI_IN_USE");
  EXPECT_EQ(Call("VDI.destroy", {S(session_), S(vdi)}), S(""));
}

TEST_F(SimPoolTest, OvaXmlHasXapisShape) {
  const std::string vm =
      Call("VM.get_by_name_label", {S(session_), S("PROD-ubuntu14")})
          .items()[0]
          .text();
  HttpRequest r;
  r.host = "xcp-host1";
  r.method = "GET";
  r.path = "/export_metadata";
  r.query = {{"ref", vm}};
  r.cookies = {{"session_id", session_}};
  HttpResponse resp = pool_->HandleHttp(r);
  ASSERT_EQ(resp.status, 200);
  ASSERT_TRUE(resp.http10);
  ASSERT_NE(resp.stream, nullptr);
  const std::string body = ReadBody(resp);
  EXPECT_EQ(resp.stream_length, body.size());  // sent with a Content-Length
  const uint64_t size = std::stoull(body.substr(124, 11), nullptr, 8);
  const std::string ova = body.substr(512, size);
  EXPECT_TRUE(
      absl::StartsWith(ova, "<value><struct><member><name>version</name>"));
  EXPECT_THAT(ova, Not(HasSubstr("<?xml")));
  ASSERT_OK_AND_ASSIGN(XmlRpcValue v, DecodeXmlRpcValue(ova));
  const XmlRpcValue* version = v.Find("version");
  EXPECT_EQ(version->names(),
            (std::vector<std::string>{
                "hostname", "date", "product_version", "product_brand",
                "build_number", "xapi_major", "xapi_minor", "export_vsn"}));
  EXPECT_EQ(*version->Find("export_vsn"),
            S("2"));  // untyped, as XAPI writes it
  const auto& objects = v.Find("objects")->items();
  EXPECT_EQ(objects[0].Find("class")->text(), "VM");
  EXPECT_EQ(objects[0].Find("id")->text(), "Ref:12");
  std::vector<std::string> classes;
  for (const XmlRpcValue& o : objects)
    classes.push_back(o.Find("class")->text());
  // Grouped by class as XAPI does: VM, VBDs, VIFs, networks, VDIs, SRs.
  std::vector<std::string> order;
  for (const std::string& c : classes) {
    if (order.empty() || order.back() != c) order.push_back(c);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"VM", "VBD", "VIF", "network",
                                             "VDI", "SR"}));
  // The VM points at its host by an id that has no object (as in real XVAs).
  const std::string resident =
      objects[0].Find("snapshot")->Find("affinity")->text();
  (void)resident;
  const std::string host_id =
      objects[0].Find("snapshot")->Find("resident_on")->text();
  EXPECT_THAT(host_id, ::testing::StartsWith("Ref:"));
  for (const XmlRpcValue& o : objects) EXPECT_NE(o.Find("id")->text(), host_id);
}

TEST_F(SimPoolTest, PoolDatabaseDumpUsesTheDatabaseSyntax) {
  HttpRequest r;
  r.host = "xcp-host1";
  r.method = "GET";
  r.path = "/pool/xmldbdump";
  r.cookies = {{"session_id", session_}};
  HttpResponse resp = pool_->HandleHttp(r);
  ASSERT_EQ(resp.status, 200);
  ASSERT_NE(resp.stream, nullptr);
  const std::string dump = ReadBody(resp);
  EXPECT_TRUE(absl::StartsWith(
      dump, "<database><manifest><pair key=\"schema_major_vsn\""));
  EXPECT_THAT(dump, HasSubstr("<table name=\"VM\"><row ref=\"OpaqueRef:"));
  EXPECT_THAT(dump, HasSubstr("name__label=\"DEV-RH6\""));
  EXPECT_THAT(dump, HasSubstr("memory__static_max=\""));
  EXPECT_THAT(dump, HasSubstr("<table name=\"task\"/>"));
  // Same syntax as a real dump: sets as ('a' 'b'), maps as (('k' 'v')).
  ASSERT_OK_AND_ASSIGN(std::string real,
                       vmb::testing::ReadTestData(
                           "real-xapi/xs61-pooldb/tampa-db_inc_snapshots.xml"));
  EXPECT_THAT(real, HasSubstr("PGPUs=\"('OpaqueRef:"));
  EXPECT_THAT(dump, HasSubstr("allowed_operations=\"('"));
  EXPECT_THAT(dump, HasSubstr("sm_config=\"(('"));
}

}  // namespace
}  // namespace vmb::sim
