#include "core/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace custody {
namespace {

TEST(Utf8Test, WellFormedTextIsValid) {
  for (const std::string& s : {std::string(), std::string("purpose: research"), std::string("caf\xc3\xa9"),
                              std::string("\xe2\x82\xac 10"), std::string("\xf0\x9f\x98\x80"),
                              std::string("\xed\x9f\xbf"), std::string("\xf4\x8f\xbf\xbf"), std::string(1, '\0')}) {
    EXPECT_TRUE(valid_utf8(s)) << s;
  }
}

// RFC 3629's ill-formed sequences, each named by the offset of its first byte.
TEST(Utf8Test, IllFormedTextIsNamedByItsFirstBadByte) {
  const struct {
    std::string text;
    size_t at;
  } cases[] = {
      {"res\xff" "earch", 3},       // never in UTF-8
      {"ab\x80", 2},                // a continuation byte with no lead
      {"\xc3", 0},                  // truncated
      {"x\xe2\x82", 1},             // truncated three-byte sequence
      {"\xc0\xaf", 0},              // overlong '/'
      {"\xe0\x80\xaf", 0},          // overlong, three bytes
      {"\xf0\x80\x80\xaf", 0},      // overlong, four bytes
      {"ok\xed\xa0\x80", 2},        // a UTF-16 surrogate (U+D800)
      {"\xf4\x90\x80\x80", 0},      // above U+10FFFF
      {"\xf5\x80\x80\x80", 0},      // a lead byte past F4
      {"\xc3\x28", 0},              // a lead followed by ASCII
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(valid_utf8(c.text));
    EXPECT_EQ(invalid_utf8_at(c.text), c.at) << c.text.size();
  }
}

}  // namespace
}  // namespace custody
