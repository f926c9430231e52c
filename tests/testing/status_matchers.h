// SPDX-License-Identifier: Apache-2.0
#pragma once

// Status matchers for GoogleTest; Abseil 20220623 ships none.
//
//   EXPECT_THAT(DoIt(), IsOk());
//   EXPECT_THAT(DoIt(), StatusIs(absl::StatusCode::kNotFound,
//   HasSubstr("vm"))); ASSERT_OK(DoIt()); ASSERT_OK_AND_ASSIGN(auto value,
//   MakeIt());

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vmb::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::vmb::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code,
          "has code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = ::vmb::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = ::vmb::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(s.message()), result_listener);
}

}  // namespace vmb::testing

#define VMB_TESTING_CONCAT_INNER_(a, b) a##b
#define VMB_TESTING_CONCAT_(a, b) VMB_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::vmb::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::vmb::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                    \
  ASSERT_OK_AND_ASSIGN_IMPL_(VMB_TESTING_CONCAT_(vmb_statusor_, __LINE__), \
                             lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                 \
  ASSERT_THAT(statusor.status(), ::vmb::testing::IsOk()); \
  lhs = *std::move(statusor)
