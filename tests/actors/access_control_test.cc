// AccessControl over a real (in-memory) custody store: credentials by CurveZMQ key, rotation
// and revocation, and what a fresh coordinator reads back from the record.
#include "actors/access_control.h"

#include <gtest/gtest.h>

#include "protocols/transport.h"

namespace custody::actors {
namespace {

msg::Envelope request(msg::Body body) {
  msg::Envelope e;
  e.sender = "cli";
  e.body = std::move(body);
  return e;
}

TEST(AccessControlTest, KeysNamePrincipalsUntilRevokedAndRotationKeepsTheRole) {
  auto store = storage::CustodyStore::in_memory();
  AccessControl access(Security::kCurve, store.get());
  ASSERT_TRUE(access.load().is_ok());
  auto bob = access.add("bob", Role::kConsumer, "", false, "admin");
  ASSERT_TRUE(bob.is_ok()) << bob.status().to_string();
  EXPECT_FALSE(bob->secret_key.empty());
  EXPECT_EQ(transport::curve_public_key(bob->secret_key).value(), bob->credential.public_key);
  EXPECT_EQ(access.principal_of_key(bob->credential.public_key), std::optional<std::string>("bob"));
  EXPECT_EQ(access.principal_of_key(transport::make_curve_key_pair()->public_key), std::nullopt);

  // The session's credential names who acts; the name in the request does not matter.
  const std::string bobs_session = access.credential_of_key(bob->credential.public_key).value();
  msg::Predict predict;
  predict.principal = "eve";
  auto caller = access.authorize(request(predict), bobs_session);
  ASSERT_TRUE(caller.is_ok());
  EXPECT_EQ(caller->principal, "bob");
  EXPECT_EQ(access.authorize(request(msg::SubmitJob{}), bobs_session).status().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(access.authorize(request(predict), "").status().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(access.authorize(request(predict), "bob").status().code(), ErrorCode::kPermissionDenied);

  // Adding an existing name is refused, whatever the role asked for.
  auto promoted = access.add("bob", Role::kAdmin, "", false, "admin");
  EXPECT_EQ(promoted.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(promoted.status().message().find("already exists (consumer)"), std::string::npos);

  // Rotation: a new key, the same role; the old key proves nothing any more.
  auto rotated = access.add("bob", Role::kConsumer, "", true, "admin");
  ASSERT_TRUE(rotated.is_ok());
  EXPECT_EQ(access.principal_of_key(bob->credential.public_key), std::nullopt);
  EXPECT_EQ(access.principal_of_key(rotated->credential.public_key), std::optional<std::string>("bob"));
  EXPECT_FALSE(access.add("bob", Role::kAdmin, "", true, "admin").is_ok()) << "rotation cannot change the role";
  // A session opened with the old key is cut off, though bob has a valid key again.
  EXPECT_EQ(access.authorize(request(predict), bobs_session).status().code(), ErrorCode::kPermissionDenied);
  EXPECT_TRUE(access.authorize(request(predict), access.credential_of_key(rotated->credential.public_key).value())
                  .is_ok());

  // A public key the principal made; the same key twice is refused.
  const auto own = transport::make_curve_key_pair().value();
  ASSERT_TRUE(access.add("carol", Role::kSubmitter, own.public_key, false, "admin").is_ok());
  EXPECT_FALSE(access.add("dave", Role::kSubmitter, own.public_key, false, "admin").is_ok());
  EXPECT_EQ(access.add("erin", Role::kSubmitter, "not a key", false, "admin").status().code(),
            ErrorCode::kInvalidArgument);

  // Revocation: the key and any session opened before it are refused.
  const std::string carols_session = access.credential_of_key(own.public_key).value();
  ASSERT_TRUE(access.authorize(request(msg::SubmitJob{}), carols_session).is_ok());
  ASSERT_TRUE(access.revoke("carol", "left", "admin").is_ok());
  EXPECT_EQ(access.principal_of_key(own.public_key), std::nullopt);
  auto refused = access.authorize(request(msg::SubmitJob{}), carols_session);
  EXPECT_EQ(refused.status().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("revoked (left)"), std::string::npos) << refused.status().message();
  EXPECT_EQ(access.revoke("carol", "again", "admin").code(), ErrorCode::kNotFound);

  // A coordinator started on the same store reads the same state back.
  AccessControl again(Security::kCurve, store.get());
  ASSERT_TRUE(again.load().is_ok());
  EXPECT_EQ(again.principal_of_key(rotated->credential.public_key), std::optional<std::string>("bob"));
  EXPECT_EQ(again.principal_of_key(bob->credential.public_key), std::nullopt);
  EXPECT_EQ(again.principal_of_key(own.public_key), std::nullopt);
  int revoked = 0;
  for (const auto& c : again.list()) revoked += c.revoked;
  EXPECT_EQ(revoked, 2);
  EXPECT_EQ(again.list().size(), 3u);
}

TEST(AccessControlTest, WithoutSecurityTheRequestNamesItsCallerAndNoCredentialsAreIssued) {
  auto store = storage::CustodyStore::in_memory();
  AccessControl access(Security::kNone, store.get());
  auto caller = access.authorize(request(msg::SubmitJob{}), "");
  ASSERT_TRUE(caller.is_ok());
  EXPECT_EQ(caller->role, Role::kAdmin);
  EXPECT_EQ(access.add("bob", Role::kConsumer, "", false, "admin").status().code(), ErrorCode::kFailedPrecondition);
}

TEST(AccessControlTest, TokensAreRevokedToo) {
  auto store = storage::CustodyStore::in_memory();
  AccessControl access(Security::kToken, store.get());
  auto issued = access.add("bob", Role::kConsumer, "", false, "admin");
  ASSERT_TRUE(issued.is_ok());
  ASSERT_EQ(issued->token.size(), 64u);
  msg::Envelope e = request(msg::Predict{});
  e.token = issued->token;
  EXPECT_TRUE(access.authorize(e, "").is_ok());
  ASSERT_TRUE(access.revoke("bob", "", "admin").is_ok());
  EXPECT_EQ(access.authorize(e, "").status().code(), ErrorCode::kPermissionDenied);
}

}  // namespace
}  // namespace custody::actors
