// Attribution's scoring spread over workers (actors/attribution_scatter.h), without sockets:
// honest answers merge to the coordinator's own ranking; a worker that lies about its first
// scores, answers for another range, fails, or never answers has its range scored by the
// coordinator, named in scored_by.
#include "actors/attribution_scatter.h"

#include <gtest/gtest.h>

#include <random>

namespace custody::actors {
namespace {

storage::AttributionQuestion question(bool self_influence) {
  storage::AttributionQuestion q;
  const Model model({12, 6, 3});
  q.question.layer_sizes = model.layer_sizes();
  for (int c = 0; c < 2; ++c) {
    q.question.params.push_back(model.initial_parameters(static_cast<uint64_t>(7 + c)));
    q.question.rates.push_back(0.05f);
  }
  q.question.self_influence = self_influence;
  q.question.test_input.assign(12, 0.25f);
  q.question.test_label = 1;
  q.question.top = 6;
  std::mt19937_64 rng(3);
  LabeledSet& t = q.data.train;
  t.count = 900;
  t.features = 12;
  for (int i = 0; i < 900 * 12; ++i) t.pixels.push_back(static_cast<uint8_t>(rng()));
  for (int i = 0; i < 900; ++i) t.labels.push_back(static_cast<uint8_t>(rng() % 3));
  q.data.version_hash = "d4";
  q.run = "job-1";
  q.spec_text = "[job]";
  return q;
}

// What an honest worker answers to `request`.
msg::Envelope honest(const storage::AttributionQuestion& q, const msg::Envelope& request) {
  const auto& m = *request.get<msg::ScoreRecords>();
  auto ranked = score_records(q.question, q.data.train, static_cast<int64_t>(m.begin), static_cast<int64_t>(m.end),
                              m.begin, 1);
  EXPECT_TRUE(ranked.is_ok());
  msg::RecordScores r{m.begin, m.end, {}, {}, ranked->scored, 3, "local"};
  for (const auto& s : ranked->highest) r.highest.push_back({s.index, s.score});
  for (const auto& s : ranked->lowest) r.lowest.push_back({s.index, s.score});
  return msg::reply_to(request, "worker", r);
}

const std::vector<LiveWorker> kWorkers = {{"worker-1", "peer-1"}, {"worker-2", "peer-2"}};

TEST(AttributionScatterTest, HonestWorkersRangesMergeToTheCoordinatorsOwnRanking) {
  for (bool self : {false, true}) {
    const auto q = question(self);
    auto whole = score_records(q.question, q.data.train, 0, 900, 0, 1);
    ASSERT_TRUE(whole.is_ok());
    ScoringRound round(q, kWorkers, 1);
    const Outbox requests = round.requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0].peer, "peer-1");
    const auto& first = *requests[0].envelope.get<msg::ScoreRecords>();
    const auto& second = *requests[1].envelope.get<msg::ScoreRecords>();
    EXPECT_EQ(first.begin, 0u);
    EXPECT_EQ(first.end, second.begin);
    EXPECT_EQ(second.end, 900u);
    EXPECT_FALSE(first.digest.empty());
    EXPECT_EQ(first.checkpoints.size(), 2u);
    EXPECT_TRUE(requests[0].envelope.request_id & kScoringRequestBit);
    EXPECT_FALSE(round.done());
    for (const auto& r : requests) EXPECT_TRUE(round.on_reply(r.peer, honest(q, r.envelope)));
    EXPECT_TRUE(round.done());
    storage::json by;
    auto merged = round.finish(1, &by);
    ASSERT_TRUE(merged.is_ok());
    EXPECT_EQ(merged->scored, 900u);
    ASSERT_EQ(merged->highest.size(), whole->highest.size());
    for (size_t i = 0; i < merged->highest.size(); ++i) EXPECT_EQ(merged->highest[i].index, whole->highest[i].index);
    ASSERT_EQ(by.size(), 2u);
    EXPECT_EQ(by[0]["by"], "worker-1");
    EXPECT_EQ(by[1]["by"], "worker-2");
    EXPECT_FALSE(by[0].contains("why"));
  }
}

TEST(AttributionScatterTest, ALyingOrFailingOrSilentWorkersRangeIsScoredByTheCoordinator) {
  const auto q = question(false);
  auto whole = score_records(q.question, q.data.train, 0, 900, 0, 1);
  ASSERT_TRUE(whole.is_ok());
  // worker-1 inflates its first proponent's score; worker-2 answers from another peer, then
  // never: its range fails at the deadline.
  {
    ScoringRound round(q, kWorkers, 1);
    const Outbox requests = round.requests();
    msg::Envelope lie = honest(q, requests[0].envelope);
    std::get<msg::RecordScores>(lie.body).highest[0].score *= 3;
    EXPECT_TRUE(round.on_reply("peer-1", lie));
    EXPECT_TRUE(round.on_reply("peer-9", honest(q, requests[1].envelope)));  // not the worker asked
    EXPECT_FALSE(round.done());
    msg::Envelope stranger = honest(q, requests[1].envelope);
    stranger.request_id = 77;
    EXPECT_FALSE(round.on_reply("peer-2", stranger)) << "not this round's";
    round.fail_pending("it did not answer within 10 ms");
    storage::json by;
    auto merged = round.finish(1, &by);
    ASSERT_TRUE(merged.is_ok());
    for (size_t i = 0; i < merged->highest.size(); ++i) EXPECT_EQ(merged->highest[i].index, whole->highest[i].index);
    EXPECT_EQ(merged->highest[0].score, whole->highest[0].score) << "the lie is not in the answer";
    ASSERT_EQ(by.size(), 2u);
    EXPECT_EQ(by[0]["by"], "coordinator");
    EXPECT_NE(by[0]["why"].get<std::string>().find("worker worker-1 was asked, but its answer was refused"),
              std::string::npos)
        << by[0]["why"];
    EXPECT_NE(by[0]["why"].get<std::string>().find("the coordinator computes"), std::string::npos);
    EXPECT_EQ(by[1]["by"], "coordinator");
    EXPECT_NE(by[1]["why"].get<std::string>().find("did not answer within 10 ms"), std::string::npos);
  }
  // A worker's error, and a worker declared dead.
  {
    ScoringRound round(q, kWorkers, 1);
    const Outbox requests = round.requests();
    round.on_reply("peer-1", msg::make_error(requests[0].envelope, "worker-1", data_loss("'train-images' differs")));
    round.forget_gone({kWorkers[0]});
    EXPECT_TRUE(round.done());
    storage::json by;
    ASSERT_TRUE(round.finish(1, &by).is_ok());
    EXPECT_NE(by[0]["why"].get<std::string>().find("it failed: 'train-images' differs"), std::string::npos) << by;
    EXPECT_NE(by[1]["why"].get<std::string>().find("declared dead"), std::string::npos) << by;
  }
  // No workers: the coordinator scores it all and says why.
  {
    ScoringRound round(q, {}, 1);
    EXPECT_TRUE(round.requests().empty());
    EXPECT_TRUE(round.done());
    storage::json by;
    auto merged = round.finish(1, &by);
    ASSERT_TRUE(merged.is_ok());
    EXPECT_EQ(merged->scored, 900u);
    ASSERT_EQ(by.size(), 1u);
    EXPECT_EQ(by[0]["why"], "no worker is alive");
  }
}

}  // namespace
}  // namespace custody::actors
