#include "core/hash.h"

#include <gtest/gtest.h>

namespace custody {
namespace {

const char* const kDns = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";  // RFC 4122 appendix C
const char* const kUrl = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

std::string v5(std::string_view ns, std::string_view name) {
  auto u = uuid_v5(ns, name);
  EXPECT_TRUE(u.is_ok()) << u.status().to_string();
  return u.is_ok() ? u.value() : std::string();
}

// Published vectors: the DNS namespace with "www.example.com" (RFC 9562, appendix A.4) and
// with "python.org" (Python's uuid documentation).
TEST(UuidV5Test, MatchesPublishedVectors) {
  EXPECT_EQ(v5(kDns, "www.example.com"), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
  EXPECT_EQ(v5(kDns, "python.org"), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

TEST(UuidV5Test, IsStableAndCarriesVersionAndVariant) {
  const std::string a = v5(kUrl, "job-1");
  EXPECT_EQ(a, v5(kUrl, "job-1"));
  EXPECT_NE(a, v5(kUrl, "job-2"));
  EXPECT_NE(a, v5(kDns, "job-1"));
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '5');
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos) << a;
  EXPECT_EQ(v5("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "www.example.com"),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST(UuidV5Test, RefusesANamespaceThatIsNotAUuid) {
  for (const char* bad : {"", "6ba7b8109dad11d180b400c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c",
                          "6ba7b810-9dad-11d1-80b4-00c04fd430cg", "6ba7b810-9dad-11d1+80b4-00c04fd430c8",
                          "6ba7b810-9dad-11d1-80b4-00c04fd430c8 "}) {
    auto u = uuid_v5(bad, "x");
    ASSERT_FALSE(u.is_ok()) << bad;
    EXPECT_EQ(u.status().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(u.status().message().find("is not a UUID"), std::string::npos) << u.status().to_string();
  }
}

}  // namespace
}  // namespace custody
