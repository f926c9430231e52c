// SPDX-License-Identifier: Apache-2.0
#include "tests/xapi_sim/fixture.h"

#include "absl/strings/str_cat.h"
#include <google/protobuf/util/json_util.h>

#include "common/base/logging.h"

namespace vmb::sim {

// Generated from demo_pool.json at build time.
extern const char kDemoPoolJson[];

absl::StatusOr<Fixture> ParseFixture(const std::string& json) {
  Fixture fixture;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status =
      google::protobuf::util::JsonStringToMessage(json, &fixture, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad fixture JSON: ", status.ToString()));
  }
  return fixture;
}

const std::string& DemoFixtureJson() {
  static const std::string* json = new std::string(kDemoPoolJson);
  return *json;
}

Fixture DemoFixture() {
  absl::StatusOr<Fixture> f = ParseFixture(DemoFixtureJson());
  VMB_CHECK(f.ok()) << f.status();
  return *f;
}

}  // namespace vmb::sim
