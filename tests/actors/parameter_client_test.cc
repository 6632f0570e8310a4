// Slicing keys by server, and the requests and answers every parameter client exchanges.
#include "actors/parameter_client.h"

#include <gtest/gtest.h>

namespace custody::actors {
namespace {

std::vector<msg::ServerRange> ranges(std::vector<std::pair<uint64_t, uint64_t>> rs) {
  std::vector<msg::ServerRange> out;
  for (size_t i = 0; i < rs.size(); ++i) {
    out.push_back(
        {"ps-" + std::to_string(i + 1), "tcp://ps:" + std::to_string(i + 1), rs[i].first, rs[i].second});
  }
  return out;
}

TEST(KeySlicesTest, ServersInAnyOrderThatCoverTheModelOnceEachGetTheirSlice) {
  auto slices = KeySlices::make(ranges({{6, 10}, {0, 6}}), 10);
  ASSERT_TRUE(slices.is_ok()) << slices.status().to_string();
  ASSERT_EQ(slices->size(), 2u);
  EXPECT_EQ(slices->server(0).node_id, "ps-1") << "the task's order is kept";
  float whole[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(slices->slice(0, whole), (msg::Floats{6, 7, 8, 9}));
  EXPECT_EQ(slices->slice(1, whole), (msg::Floats{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(slices->slice(0, whole).data(), whole + 6) << "borrowed, not copied";
}

TEST(KeySlicesTest, RangesThatLeaveKeysOutOrHoldThemTwiceAreRefusedByName) {
  auto refused = [](std::vector<std::pair<uint64_t, uint64_t>> rs, uint64_t n) {
    auto s = KeySlices::make(ranges(rs), n);
    EXPECT_EQ(s.status().code(), ErrorCode::kInvalidArgument);
    return s.status().message();
  };
  EXPECT_EQ(refused({}, 10), "the task names no parameter servers");
  EXPECT_EQ(refused({{0, 4}, {5, 10}}, 10), "keys [4, 5) are held by no parameter server");
  EXPECT_EQ(refused({{0, 4}, {4, 8}}, 10), "keys [8, 10) are held by no parameter server");
  EXPECT_EQ(refused({{1, 10}}, 10), "keys [0, 1) are held by no parameter server");
  EXPECT_EQ(refused({{0, 6}, {4, 10}}, 10), "parameter server ps-2's keys [4, 10) overlap another server's");
  EXPECT_EQ(refused({{0, 10}, {10, 10}}, 10), "parameter server ps-2's keys [10, 10) are an empty range");
  EXPECT_EQ(refused({{0, 11}}, 10),
            "parameter server ps-1's keys [0, 11) reach past the model's 10 parameters");
}

class ParameterRequestsTest : public ::testing::Test {
 protected:
  ParameterRequests requests_{KeySlices::make(ranges({{0, 4}, {4, 10}}), 10).value(), "worker-1", "job-1", 3,
                              1};
  std::vector<float> values_ = std::vector<float>(10, -1.0f);

  static msg::Envelope params(uint64_t request_id, uint64_t version, uint64_t begin,
                              std::vector<float> values) {
    msg::Envelope e;
    e.request_id = request_id;
    e.body = msg::Params{version, begin, std::move(values)};
    return e;
  }
};

TEST_F(ParameterRequestsTest, APushSendsEachServerItsSliceAndTheVersionItLastSent) {
  auto pulls = requests_.pull();
  ASSERT_EQ(pulls.size(), 2u);
  EXPECT_EQ(pulls[0].job_id, "job-1");
  EXPECT_EQ(pulls[0].attempt, 3u);
  EXPECT_EQ(pulls[0].sender, "worker-1");
  ASSERT_NE(pulls[1].get<msg::Pull>(), nullptr);
  EXPECT_EQ(requests_.accept(0, params(pulls[0].request_id, 7, 0, {1, 2, 3, 4}), values_.data()).value(),
            true);
  EXPECT_EQ(
      requests_.accept(1, params(pulls[0].request_id, 9, 4, {5, 6, 7, 8, 9, 10}), values_.data()).value(),
      true);
  EXPECT_EQ(values_, (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));

  std::vector<float> gradient = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto pushes = requests_.push(12, 8, gradient.data());
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_NE(pushes[0].request_id, pulls[0].request_id);
  const auto* second = pushes[1].get<msg::Push>();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->worker, "worker-1");
  EXPECT_EQ(second->step, 12u);
  EXPECT_EQ(second->samples, 8u);
  EXPECT_EQ(second->rank, 1u);
  EXPECT_EQ(second->base_version, 9u);
  EXPECT_EQ(second->gradient, (msg::Floats{4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(pushes[0].get<msg::Push>()->base_version, 7u);
}

TEST_F(ParameterRequestsTest, AnAnswerToAnEarlierRequestIsIgnored) {
  auto first = requests_.pull();
  auto second = requests_.pull();
  EXPECT_EQ(requests_.accept(0, params(first[0].request_id, 1, 0, {1, 2, 3, 4}), values_.data()).value(),
            false);
  EXPECT_EQ(values_[0], -1.0f) << "nothing copied";
  EXPECT_EQ(requests_.accept(0, params(second[0].request_id, 1, 0, {1, 2, 3, 4}), values_.data()).value(),
            true);
}

TEST_F(ParameterRequestsTest, ARefusalOrAnAnswerThatIsNotTheServersRangeIsAnErrorNamingTheServer) {
  auto pulls = requests_.pull();
  msg::Envelope refusal = msg::make_error(pulls[1], "ps-2", not_found("no keys of job-1"));
  Status s = requests_.accept(1, refusal, values_.data()).status();
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.message(), "parameter server ps-2: no keys of job-1");

  s = requests_.accept(1, params(pulls[1].request_id, 1, 0, {1, 2, 3, 4, 5, 6}), values_.data()).status();
  EXPECT_EQ(s.code(), ErrorCode::kDataLoss);
  EXPECT_EQ(s.message(),
            "parameter server ps-2 answered a pull with something other than the values of its key range");
  s = requests_.accept(1, params(pulls[1].request_id, 1, 4, {1, 2}), values_.data()).status();
  EXPECT_EQ(s.code(), ErrorCode::kDataLoss);
  EXPECT_EQ(values_, std::vector<float>(10, -1.0f));
}

TEST_F(ParameterRequestsTest, AWaitThatRunsOutNamesTheServerAndWhatItWaitedFor) {
  std::vector<float> gradient(10, 0.0f);
  requests_.push(0, 8, gradient.data());
  Status s = requests_.no_answer(1, std::chrono::seconds(60));
  EXPECT_EQ(s.code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "no reply to a push from parameter server ps-2 at tcp://ps:2 within 60 s");
}

}  // namespace
}  // namespace custody::actors
