// The store's named queries (storage/store_query.h): what a CLI asks of the coordinator.
// A name the store does not know (a newer CLI, or garbage) is refused by name, listing the
// queries it does know; verify's argument is checked before anything is read.
#include "storage/store_query.h"

#include <gtest/gtest.h>

namespace custody::storage {
namespace {

TEST(StoreQueryTest, UnknownNamesAndMalformedArgumentsAreRefusedClearly) {
  auto store = CustodyStore::in_memory();
  auto unknown = run_query(*store, "drop-everything", "");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("no store query 'drop-everything'"), std::string::npos);
  for (const auto& name : query_names()) EXPECT_NE(unknown.status().message().find(name), std::string::npos);
  auto bad_verify = run_query(*store, "verify", "not json");
  ASSERT_FALSE(bad_verify.is_ok());
  EXPECT_EQ(bad_verify.status().code(), ErrorCode::kInvalidArgument);
  auto verified = run_query(*store, "verify", "");
  ASSERT_TRUE(verified.is_ok()) << verified.status().to_string();
  EXPECT_TRUE((*verified)["ok"].get<bool>());
  auto models = run_query(*store, "models", "");
  ASSERT_TRUE(models.is_ok()) << models.status().to_string();
  auto missing = run_query(*store, "trace", "ckpt-0000000000000000");
  EXPECT_FALSE(missing.is_ok());
}

}  // namespace
}  // namespace custody::storage
