// What a reply carries from its request (msg::reply_to, msg::make_error).
#include "protocols/messages.h"

#include <gtest/gtest.h>

namespace custody::msg {
namespace {

Envelope request() {
  Envelope e;
  e.sender = "worker-2";
  e.job_id = "job-1234";
  e.request_id = 99;
  e.attempt = 3;
  e.token = "secret";
  e.body = Pull{"worker-2"};
  return e;
}

TEST(ReplyTo, EchoesTheJobTheRequestIdAndTheAttemptFromTheReplier) {
  const Envelope in = request();
  Envelope reply = reply_to(in, "ps-1", KeyRangeReady{10, 30});
  EXPECT_EQ(reply.version, kProtocolVersion);
  EXPECT_EQ(reply.sender, "ps-1");
  EXPECT_EQ(reply.job_id, "job-1234");
  EXPECT_EQ(reply.request_id, 99u);
  EXPECT_EQ(reply.attempt, 3u);
  ASSERT_NE(reply.get<KeyRangeReady>(), nullptr);
  EXPECT_EQ(reply.get<KeyRangeReady>()->range_end, 30u);
}

TEST(ReplyTo, NeverCarriesTheCallersToken) {
  EXPECT_EQ(reply_to(request(), "coordinator", HeartbeatAck{}).token, "");
  EXPECT_EQ(make_error(request(), "coordinator", not_found("no such job")).token, "");
}

TEST(ReplyTo, AnErrorIsAReplyLikeAnyOther) {
  Envelope error = make_error(request(), "ps-1", not_found("no such job"));
  EXPECT_EQ(error.sender, "ps-1");
  EXPECT_EQ(error.job_id, "job-1234");
  EXPECT_EQ(error.request_id, 99u);
  EXPECT_EQ(error.attempt, 3u);
  ASSERT_NE(error.get<Error>(), nullptr);
  EXPECT_EQ(error.get<Error>()->code, ErrorCode::kNotFound);
  EXPECT_EQ(error.get<Error>()->message, "no such job");
}

}  // namespace
}  // namespace custody::msg
