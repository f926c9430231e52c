// SPDX-License-Identifier: Apache-2.0
#include "common/base/clock.h"

#include "gtest/gtest.h"

namespace vmb {
namespace {

TEST(PortableTimeZoneNameTest, NamesAZoneAnotherMachineCanLoad) {
  absl::TimeZone berlin;
  ASSERT_TRUE(absl::LoadTimeZone("Europe/Berlin", &berlin));
  EXPECT_EQ(PortableTimeZoneName(berlin), "Europe/Berlin");
  EXPECT_EQ(PortableTimeZoneName(absl::UTCTimeZone()), "UTC");
  // The local zone as absl names it ("localtime", "/etc/localtime"): an IANA
  // name, which loads.
  const std::string local = PortableTimeZoneName(absl::LocalTimeZone());
  EXPECT_NE(local, "localtime");
  EXPECT_NE(local.front(), '/') << local;
  absl::TimeZone loaded;
  EXPECT_TRUE(absl::LoadTimeZone(local, &loaded)) << local;
}

}  // namespace
}  // namespace vmb
