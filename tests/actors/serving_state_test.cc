// The serving actor's replies: ServingState::answer, one request at a time.
#include "actors/serving_state.h"

#include <gtest/gtest.h>

namespace custody::actors {
namespace {

msg::Envelope request(msg::Body body) {
  msg::Envelope e;
  e.sender = "cli";
  e.request_id = 9;
  e.token = "secret";
  e.body = std::move(body);
  return e;
}

TEST(ServingStateAnswer, APredictItCannotServeGetsAnErrorAddressedToIt) {
  ServingState serving(nullptr, ServingOptions{});
  msg::Predict p;
  p.model = "twin@1";
  p.principal = "dave";
  msg::Envelope reply = serving.answer(request(p));
  EXPECT_EQ(reply.sender, "coordinator");
  EXPECT_EQ(reply.request_id, 9u);
  EXPECT_EQ(reply.token, "");
  ASSERT_NE(reply.get<msg::Error>(), nullptr);
  EXPECT_EQ(reply.get<msg::Error>()->code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(reply.get<msg::Error>()->message.find("without a custody store"), std::string::npos)
      << reply.get<msg::Error>()->message;
}

TEST(ServingStateAnswer, ARequestThatIsNotAPredictIsRefusedByName) {
  ServingState serving(nullptr, ServingOptions{});
  msg::Envelope reply = serving.answer(request(msg::StatusRequest{}));
  EXPECT_EQ(reply.request_id, 9u);
  ASSERT_NE(reply.get<msg::Error>(), nullptr);
  EXPECT_EQ(reply.get<msg::Error>()->code, ErrorCode::kInvalidArgument);
  EXPECT_NE(reply.get<msg::Error>()->message.find("'statusRequest'"), std::string::npos)
      << reply.get<msg::Error>()->message;
}

}  // namespace
}  // namespace custody::actors
