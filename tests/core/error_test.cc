#include "core/error.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

namespace custody {
namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return invalid_argument("x must be positive, got " + std::to_string(x));
  return x;
}

Result<int> doubled(int x) {
  CUSTODY_ASSIGN_OR_RETURN(auto v, parse_positive(x));
  return v * 2;
}

Status into_existing(int x, int* out) {
  CUSTODY_ASSIGN_OR_RETURN(*out, parse_positive(x));
  return Status::ok();
}

Result<std::pair<int, int>> with_commas(int a, int b) {
  // The expression's template arguments hold a comma: the macro takes it whole.
  CUSTODY_ASSIGN_OR_RETURN(auto p, Result<std::pair<int, int>>(std::pair<int, int>{a, b}));
  CUSTODY_ASSIGN_OR_RETURN(auto q, parse_positive(p.first));  // two in one scope
  return std::pair<int, int>{q, p.second};
}

Result<std::unique_ptr<int>> boxed(int x) {
  CUSTODY_ASSIGN_OR_RETURN(auto v, parse_positive(x));
  return std::make_unique<int>(v);
}

Result<int> unboxed(int x) {
  CUSTODY_ASSIGN_OR_RETURN(std::unique_ptr<int> p, boxed(x));  // move-only values move
  return *p;
}

TEST(ErrorTest, AssignOrReturnGivesTheValueOrReturnsTheError) {
  auto ok = doubled(21);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok.value(), 42);

  auto bad = doubled(-1);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "x must be positive, got -1");

  int out = 7;
  EXPECT_TRUE(into_existing(5, &out).is_ok());
  EXPECT_EQ(out, 5);
  EXPECT_FALSE(into_existing(0, &out).is_ok());
  EXPECT_EQ(out, 5);  // untouched on error

  EXPECT_EQ(with_commas(3, 4).value(), (std::pair<int, int>{3, 4}));
  EXPECT_FALSE(with_commas(-3, 4).is_ok());
  EXPECT_EQ(unboxed(9).value(), 9);
  EXPECT_EQ(unboxed(-9).status().code(), ErrorCode::kInvalidArgument);
}

TEST(ErrorTest, AResultNeverHoldsAnOkStatusWithoutAValue) {
  Result<int> r{Status::ok()};
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInternal);
  EXPECT_NE(r.status().message().find("ok Status"), std::string::npos);
}

}  // namespace
}  // namespace custody
