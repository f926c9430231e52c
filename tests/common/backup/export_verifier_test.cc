// SPDX-License-Identifier: Apache-2.0
// The stream verifiers against streams written by the simulator's own
// writers (and a real XenServer XVA), whole, in odd pieces, and damaged.
#include "common/backup/export_verifier.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <zlib.h>

#include "common/backup/export_format.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_paths.h"
#include "tests/xapi_sim/disk_image.h"
#include "tests/xapi_sim/streams.h"

namespace vmb {
namespace {

using ::testing::HasSubstr;
using ::vmb::testing::StatusIs;

// Feeds `stream` in pieces of random sizes (seeded) and finishes.
absl::Status Verify(ExportVerifier& v, const std::string& stream,
                    uint32_t seed = 1) {
  std::mt19937 rng(seed);
  size_t at = 0;
  while (at < stream.size()) {
    const size_t n = std::min<size_t>(stream.size() - at, 1 + rng() % 70000);
    absl::Status s = v.Update(absl::string_view(stream).substr(at, n));
    if (!s.ok()) return s;
    at += n;
  }
  return v.Finish();
}

class XvaVerifierTest : public ::testing::Test {
 protected:
  XvaVerifierTest()
      : a_(11, (3 << 20) + 512 * 7),  // not a whole number of chunks
        b_(12, 6 << 20),
        ova_(sim::MinimalOvaXml(
            {{"Ref:12", a_.size()}, {"Ref:9", b_.size()}, {"Ref:30", 0}})) {}

  std::string Xva() {
    sim::XvaSource source(ova_, {{"Ref:12", &a_}, {"Ref:9", &b_}});
    return sim::DrainSource(source);
  }

  sim::GeneratedDisk a_, b_;
  std::string ova_;
};

TEST_F(XvaVerifierTest, EveryDiskTheJobExportsMustBeThereWhole) {
  const std::vector<ExpectedDisk> both = {{"uuid-Ref:12", a_.size(), "xvda"},
                                          {"uuid-Ref:9", b_.size(), "xvdb"}};
  EXPECT_OK(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, both), Xva()));
  // ova.xml lists xvdb, but the stream carries no chunk of it.
  sim::XvaSource without_b(ova_, {{"Ref:12", &a_}});
  const std::string missing = sim::DrainSource(without_b);
  EXPECT_OK(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), missing))
      << "without the job's disks, a disk with no data passes (a CD image)";
  EXPECT_THAT(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, both), missing),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("no data for disk xvdb (VDI uuid-Ref:9)")));
  // A disk ova.xml does not list at all.
  EXPECT_THAT(
      Verify(*NewXvaVerifier(v1::COMPRESSION_NONE,
                             {{"uuid-Ref:77", 1 << 20, "xvdc"}}),
             Xva()),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("ova.xml has no disk xvdc (VDI uuid-Ref:77)")));
  // A disk of another size than the job's.
  EXPECT_THAT(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE,
                                     {{"uuid-Ref:9", b_.size() + 512, "xvdb"}}),
                     Xva()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not its")));
}

TEST_F(XvaVerifierTest, AWholeXvaVerifiesInAnyPieces) {
  const std::string xva = Xva();
  for (uint32_t seed : {1u, 2u, 3u}) {
    auto v = NewXvaVerifier(v1::COMPRESSION_NONE, {});
    ASSERT_OK(Verify(*v, xva, seed));
    EXPECT_EQ(v->total(), a_.size() + b_.size());
    EXPECT_EQ(v->covered(), v->total());
  }
  // One byte at a time, for the first part.
  auto v = NewXvaVerifier(v1::COMPRESSION_NONE, {});
  for (size_t i = 0; i < 40000; ++i) ASSERT_OK(v->Update(xva.substr(i, 1)));
  ASSERT_OK(v->Update(xva.substr(40000)));
  ASSERT_OK(v->Finish());
}

TEST_F(XvaVerifierTest, ReportsProgressAgainstTheVirtualSize) {
  const std::string xva = Xva();
  auto v = NewXvaVerifier(v1::COMPRESSION_NONE, {});
  ASSERT_OK(v->Update(xva.substr(0, xva.size() / 2)));
  EXPECT_GT(v->covered(), 0u);
  EXPECT_LT(v->covered(), v->total());
}

TEST_F(XvaVerifierTest, CompressedStreamsVerify) {
  for (v1::Compression c : {v1::COMPRESSION_GZIP, v1::COMPRESSION_ZSTD}) {
    auto inner = std::make_unique<sim::XvaSource>(
        ova_, std::vector<sim::XvaDisk>{{"Ref:12", &a_}, {"Ref:9", &b_}});
    auto source = c == v1::COMPRESSION_GZIP ? sim::GzipSource(std::move(inner))
                                            : sim::ZstdSource(std::move(inner));
    const std::string stream = sim::DrainSource(*source);
    auto v = NewXvaVerifier(c, {});
    EXPECT_OK(Verify(*v, stream)) << CompressionName(c);
    // The plain verifier refuses a compressed stream, and the other way round.
    EXPECT_FALSE(
        Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), stream).ok());
    // Truncated compressed streams fail.
    EXPECT_FALSE(
        Verify(*NewXvaVerifier(c, {}), stream.substr(0, stream.size() - 7))
            .ok());
  }
  EXPECT_FALSE(Verify(*NewXvaVerifier(v1::COMPRESSION_GZIP, {}), Xva()).ok());
  EXPECT_FALSE(Verify(*NewXvaVerifier(v1::COMPRESSION_ZSTD, {}), Xva()).ok());
}

TEST_F(XvaVerifierTest, ContentDigestsAreThoseOfTheDisks) {
  for (v1::Compression c : {v1::COMPRESSION_NONE, v1::COMPRESSION_GZIP,
                            v1::COMPRESSION_ZSTD}) {
    std::unique_ptr<sim::ByteSource> source = std::make_unique<sim::XvaSource>(
        ova_, std::vector<sim::XvaDisk>{{"Ref:12", &a_}, {"Ref:9", &b_}});
    if (c == v1::COMPRESSION_GZIP) source = sim::GzipSource(std::move(source));
    if (c == v1::COMPRESSION_ZSTD) source = sim::ZstdSource(std::move(source));
    const std::string stream = sim::DrainSource(*source);
    auto v = NewXvaVerifier(c, {}, /*content_digests=*/true);
    ASSERT_OK(Verify(*v, stream)) << CompressionName(c);
    // Zero chunks are skipped in the stream; the digests count them.
    const std::map<std::string, std::string> want = {
        {"uuid-Ref:12", sim::DiskSha256(a_)}, {"uuid-Ref:9", sim::DiskSha256(b_)}};
    EXPECT_EQ(v->ContentSha256(), want) << CompressionName(c);
  }
  // Without asking: none.
  auto v = NewXvaVerifier(v1::COMPRESSION_NONE, {});
  ASSERT_OK(Verify(*v, Xva()));
  EXPECT_TRUE(v->ContentSha256().empty());
}

TEST_F(XvaVerifierTest, ARealXenServerXvaWithSha1ChecksumsVerifies) {
  ASSERT_OK_AND_ASSIGN(
      std::string gz,
      vmb::testing::ReadTestData("real-xapi/xs56-xva/vmexport.xva.gz"));
  auto v = NewXvaVerifier(v1::COMPRESSION_GZIP, {});
  ASSERT_OK(Verify(*v, gz));
  EXPECT_EQ(v->total(), 2u << 20);
}

TEST_F(XvaVerifierTest, EveryFlippedByteOutsideOvaXmlIsCaught) {
  const std::string xva = Xva();
  const size_t ova_end = 512 + (ova_.size() + 511) / 512 * 512;
  // Headers (and their padding), chunk data, checksum members, the trailer.
  std::vector<size_t> positions;
  for (size_t at = 0; at < 512; at += 37) positions.push_back(at);
  for (size_t at = ova_.size() + 512; at < ova_end; at += 11)
    positions.push_back(at);
  for (size_t at = ova_end; at < xva.size(); at += 50021)
    positions.push_back(at);
  for (size_t at = xva.size() - 1024; at < xva.size(); at += 101)
    positions.push_back(at);
  for (size_t at : positions) {
    std::string damaged = xva;
    damaged[at] ^= 0x20;
    EXPECT_THAT(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), damaged),
                StatusIs(absl::StatusCode::kDataLoss))
        << "flip at " << at;
  }
}

TEST_F(XvaVerifierTest, EveryTruncationIsCaught) {
  const std::string xva = Xva();
  for (size_t cut = 0; cut < xva.size(); cut += 40009) {
    EXPECT_THAT(
        Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), xva.substr(0, cut)),
        StatusIs(absl::StatusCode::kDataLoss))
        << "cut at " << cut;
  }
  // Losing only the final zero block.
  EXPECT_FALSE(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
                      xva.substr(0, xva.size() - 512))
                   .ok());
}

TEST_F(XvaVerifierTest, AnHttpErrorInsideTheStreamIsCaught) {
  const std::string xva = Xva();
  const std::string page =
      "HTTP/1.1 500 Internal Error\r\ncontent-length: "
      "10\r\n\r\n<html>...</html>";
  for (size_t at : {size_t{0}, size_t{2048 + 512}, xva.size() / 2}) {
    const size_t aligned = at / 512 * 512;
    absl::Status s = Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
                            xva.substr(0, aligned) + page);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss)) << at;
  }
  absl::Status s = Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), page);
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("HTTP response")));
}

TEST_F(XvaVerifierTest, StructuralErrorsAreNamed) {
  // Data after the end of the archive.
  EXPECT_THAT(
      Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), Xva() + "x"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("data after the end")));
  // Zero padding after the trailer is tolerated (a 10 KiB record).
  EXPECT_OK(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
                   Xva() + std::string(8192, '\0')));
  // The first member must be ova.xml.
  std::string wrong =
      sim::TarHeader("other.xml", 3) + "abc" + std::string(509, '\0');
  EXPECT_THAT(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}), wrong),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not ova.xml")));
  // A chunk for a disk ova.xml does not have.
  sim::XvaSource stranger(sim::MinimalOvaXml({{"Ref:1", 1 << 20}}),
                          {{"Ref:2", &a_}});
  EXPECT_THAT(
      Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
             sim::DrainSource(stranger)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("belongs to no disk")));
  // A disk that is smaller in ova.xml than in the data.
  sim::XvaSource smaller(sim::MinimalOvaXml({{"Ref:1", 1 << 20}}),
                         {{"Ref:1", &a_}});
  EXPECT_THAT(
      Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
             sim::DrainSource(smaller)),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("beyond the disk")));
  // A disk that is larger in ova.xml than its data covers.
  sim::XvaSource larger(sim::MinimalOvaXml({{"Ref:1", a_.size() + (1 << 20)}}),
                        {{"Ref:1", &a_}});
  EXPECT_THAT(Verify(*NewXvaVerifier(v1::COMPRESSION_NONE, {}),
                     sim::DrainSource(larger)),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("covers 3149312 of its 4197888")));
}

TEST(RawVerifierTest, SizeMustMatch) {
  EXPECT_OK(Verify(*NewRawVerifier(10), std::string(10, 'x')));
  EXPECT_THAT(Verify(*NewRawVerifier(10), std::string(9, 'x')),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("the disk has 10 bytes, the stream 9")));
  EXPECT_THAT(
      Verify(*NewRawVerifier(10), std::string(11, 'x')),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("more bytes than")));
  // Bytes that look like XAPI's error response are a disk's like any other:
  // only the size (and the task) decides.
  const std::string looks_like_an_error = "HTTP/1.1 500 Internal Error\r\n\r\n";
  EXPECT_OK(
      Verify(*NewRawVerifier(looks_like_an_error.size()), looks_like_an_error));
  EXPECT_THAT(Verify(*NewRawVerifier(100), looks_like_an_error),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("the disk has 100 bytes")));
}

class VhdVerifierTest : public ::testing::Test {
 protected:
  VhdVerifierTest() : disk_(5, 9 << 20) {}
  std::string Vhd() {
    sim::VhdSource source(&disk_, std::string(16, 'u'), 12345);
    return sim::DrainSource(source);
  }
  sim::GeneratedDisk disk_;
};

TEST_F(VhdVerifierTest, AWholeVhdVerifies) {
  const std::string vhd = Vhd();
  for (uint32_t seed : {1u, 7u}) {
    auto v = NewVhdVerifier(disk_.size());
    ASSERT_OK(Verify(*v, vhd, seed));
    EXPECT_EQ(v->covered(), disk_.size());
  }
}

TEST_F(VhdVerifierTest, ContentDigestIsTheDisks) {
  auto v = NewVhdVerifier(disk_.size(), /*content_digests=*/true);
  ASSERT_OK(Verify(*v, Vhd(), 3));
  EXPECT_EQ(v->ContentSha256(),
            (std::map<std::string, std::string>{{"", sim::DiskSha256(disk_)}}));
  std::string raw(disk_.size(), '\0');
  disk_.Read(0, raw.data(), raw.size());
  auto r = NewRawVerifier(disk_.size(), true);
  ASSERT_OK(Verify(*r, raw));
  EXPECT_EQ(r->ContentSha256(), v->ContentSha256());
}

TEST_F(VhdVerifierTest, StructureDamageIsCaught) {
  const std::string vhd = Vhd();
  // Footer, header, BAT, closing footer: every byte matters.
  std::vector<size_t> positions;
  for (size_t at = 0; at < 512; at += 7) positions.push_back(at);
  for (size_t at = 512; at < 1536; at += 13) positions.push_back(at);
  for (size_t at = vhd.size() - 512; at < vhd.size(); at += 7)
    positions.push_back(at);
  for (size_t at : positions) {
    std::string damaged = vhd;
    damaged[at] ^= 0x01;
    // Reserved bytes of the footer/header are in the checksum; so is the rest.
    EXPECT_FALSE(Verify(*NewVhdVerifier(disk_.size()), damaged).ok())
        << "flip at " << at;
  }
  for (size_t cut :
       {size_t{0}, size_t{511}, size_t{1600}, vhd.size() / 2, vhd.size() - 1}) {
    EXPECT_THAT(Verify(*NewVhdVerifier(disk_.size()), vhd.substr(0, cut)),
                StatusIs(absl::StatusCode::kDataLoss))
        << cut;
  }
  EXPECT_THAT(Verify(*NewVhdVerifier(disk_.size() + 512), vhd),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("the disk has")));
  EXPECT_THAT(
      Verify(*NewVhdVerifier(disk_.size()), vhd + "x"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("after the closing")));
  EXPECT_THAT(
      Verify(*NewVhdVerifier(disk_.size()),
             "HTTP/1.1 500 Internal Error\r\n" + std::string(600, ' ')),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("HTTP response")));
}

}  // namespace
}  // namespace vmb
