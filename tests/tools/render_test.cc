#include "tools/render.h"

#include <gtest/gtest.h>

#include <string>

namespace custody::cli {
namespace {

msg::JobStatus a_job() {
  msg::JobStatus j;
  j.job_id = "job-0000abcd";
  j.name = "mnist";
  j.state = msg::JobState::kRunning;
  j.submitter = "alice";
  j.epoch = 2;
  j.epochs = 5;
  j.step = 120;
  j.total_steps = 300;
  j.loss = 0.25;
  j.samples_per_sec = 1234;
  return j;
}

TEST(RenderTest, TheStatusTableShowsJobsWhatTheyWaitForAndNodes) {
  msg::StatusReply r;
  r.jobs.push_back(a_job());
  r.jobs[0].recoveries = 2;
  r.jobs[0].waiting_for = {"worker-2 (rank 1): no report for 12 s"};
  msg::NodeStatus n;
  n.node_id = "worker-1";
  n.alive = true;
  n.address = "tcp://127.0.0.1:7000";
  n.last_seen_ms_ago = 1500;
  r.nodes.push_back(n);
  const std::string text = status_text(r);
  EXPECT_EQ(text.rfind("JOB           NAME             STATE", 0), 0u) << text;
  EXPECT_NE(text.find("job-0000abcd  mnist            running    2/5     -         alice"), std::string::npos)
      << text;
  EXPECT_NE(text.find("job-0000abcd: rolled back 2 times after node failures\n"), std::string::npos) << text;
  EXPECT_NE(text.find("job-0000abcd waits for:\n  worker-2 (rank 1): no report for 12 s\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nNODE "), std::string::npos) << text;
  EXPECT_NE(text.find("1.5 s ago"), std::string::npos) << text;
}

TEST(RenderTest, StatusJsonIsOneJobsObjectWhenOneJobWasAskedFor) {
  msg::StatusReply r;
  r.jobs.push_back(a_job());
  EXPECT_EQ(status_json(r, true, false)["job_id"], "job-0000abcd");
  EXPECT_TRUE(status_json(r, true, false)["test_accuracy"].is_null());
  json all = status_json(r, false, true);
  EXPECT_EQ(all["jobs"].size(), 1u);
  EXPECT_TRUE(all["nodes"].is_array());
  EXPECT_FALSE(status_json(r, false, false).contains("nodes"));
}

TEST(RenderTest, TheProgressLineSaysStateEpochStepAndThroughput) {
  EXPECT_EQ(progress_line(a_job()),
            "job-0000abcd running   epoch 2/5  step 120/300  loss 0.2500  test acc   -     1234 samples/s");
}

TEST(RenderTest, TablesShowDefaultsForFieldsThatAreMissingOrOfAnotherType) {
  const json usage = {{"summary",
                       {{{"principal", "principal:carol"},
                         {"version", "served@1"},
                         {"action", "predict"},
                         {"calls", 3},
                         {"rows", 5},
                         {"first", "a"},
                         {"last", "b"}},
                        {{"principal", 7}}}}};
  const std::string text = usage_table(usage);
  EXPECT_NE(text.find("carol                served@1             predict  3       5"), std::string::npos)
      << text;
  EXPECT_NO_THROW(models_table(json{{{"name", 1}, {"version", "x"}}}));
  EXPECT_NO_THROW(checkpoints_table(json("not a list")));
  EXPECT_NO_THROW(usage_table(json::array()));
}

TEST(RenderTest, SignedHeadsNameTheKeyAndEachLogAndTolerateOddFields) {
  const json heads = {{"key_id", "k1"},
                      {"public_key", "ab"},
                      {"time_ms", 0},
                      {"heads", {{{"log", "usage"}, {"size", 1}, {"root", "r1"}}, {{"log", 5}}, "junk"}}};
  const std::string text = signed_heads_text(heads);
  EXPECT_EQ(text.rfind("signed by key k1 (public key ab) at 1970-01-01", 0), 0u) << text;
  EXPECT_NE(text.find("  usage    1 record, root r1\n"), std::string::npos) << text;
  EXPECT_NO_THROW(signed_heads_text(json{{"key_id", 3}, {"heads", "none"}}));
  EXPECT_EQ(records(2), "2 records");
}

TEST(RenderTest, APredictionRowNamesItsIdClassAndProbabilities) {
  msg::PredictReply p;
  p.classes = 3;
  p.probabilities = {0.1f, 0.7f, 0.2f, 0.5f, 0.25f, 0.25f};
  p.prediction_ids = {"pred-a", "pred-b"};
  p.model = "served@1";
  p.checkpoint = "ckpt-1";
  p.root_hash = "0123456789abcdef0123";
  EXPECT_EQ(prediction_line(p, 0, 10), "pred-a  row 10  class 1  p=0.7000  [0.1000 0.7000 0.2000]\n");
  EXPECT_EQ(prediction_json(p, 1, 10)["class"], 0);
  EXPECT_EQ(prediction_json(p, 1, 10)["row"], 11);
  EXPECT_EQ(answered_by(p), "model served@1 (ckpt-1, weights 0123456789abcdef)");
}

}  // namespace
}  // namespace custody::cli
