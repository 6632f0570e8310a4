// Withdrawal and retraining on the real cluster (separate coordinator, parameter-server and
// worker processes), as a data owner, a consumer and the engineer who fixes the model meet
// them: train, predict, revoke some records, see the model tainted and refused (by version
// and by name), retrain without them, serve the replacement, and trace it to the proof that
// no worker trained on a withdrawn record.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

TEST(LiabilityTest, ARevokedRecordTaintsTheModelAndTheRetrainedReplacementNeverTrainsOnIt) {
  LocalCluster c("liability");
  ASSERT_TRUE(c.wait_for_nodes(4));
  const std::string terms = "spdx = \"CC-BY-NC-4.0\"\npurposes = [\"research\", \"evaluation\"]\n";
  CliResult submitted =
      c.cli({"submit", c.write_job("l.toml", synthetic_mlp_job("liab", 2, 800, terms)).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string row = c.write_job("row.csv", synthetic_mlp_row()).string();

  // Purposes: the licence allows research, not commercial use.
  CliResult research = c.cli({"predict", "liab@1", "--input", row, "--purpose", "research"});
  ASSERT_EQ(research.code, 0) << research.err;
  CliResult commercial = c.cli({"predict", "liab@1", "--input", row, "--purpose", "commercial"});
  EXPECT_NE(commercial.code, 0);
  EXPECT_NE(commercial.err.find("purpose 'commercial' is not allowed for model liab@1"), std::string::npos)
      << commercial.err;
  EXPECT_NE(commercial.err.find("the licence CC-BY-NC-4.0 of data set synthetic-800x32-c4-s7"), std::string::npos)
      << commercial.err;

  // Someone else may not withdraw alice's data; alice may, some of its records.
  const std::string dataset = "synthetic-800x32-c4-s7";
  const std::string records = c.write_job("withdrawn.txt", "# records whose consent was withdrawn\n3\n10-19\n500\n").string();
  CliResult by_bob = c.cli({"revoke", dataset, "--records", records, "--reason", "not mine", "--as", "bob"});
  // Without security every caller is an admin (nothing proves who asks): bob's request is
  // accepted here; the refusal of non-owners is tested with tokens (tests/actors/liability_test.cc).
  ASSERT_EQ(by_bob.code, 0) << by_bob.err;
  const std::string bob_revocation = by_bob.out.substr(0, by_bob.out.find('\n'));
  CliResult revoked = c.cli({"revoke", dataset, "--records", records, "--reason",
                             "data subjects withdrew consent (ticket 4711)", "--as", "alice", "--json"});
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  const json revocation = json::parse(revoked.out);
  const std::string rev = revocation["id"];
  EXPECT_EQ(revocation["records"].size(), 12u);
  EXPECT_EQ(revocation["tainted_models"], json({"model:liab@1"}));

  // Tainted: refused by version and by name, naming the revocation; the trace says why.
  for (const char* ref : {"liab@1", "liab"}) {
    CliResult p = c.cli({"predict", ref, "--input", row, "--purpose", "research"});
    EXPECT_NE(p.code, 0) << ref;
    EXPECT_NE(p.err.find("model liab@1"), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("is tainted by revocation"), std::string::npos) << p.err;
  }
  CliResult exported = c.cli({"export", "liab@1", (c.dir() / "m.safetensors").string(), "--purpose", "research"});
  EXPECT_NE(exported.code, 0);
  EXPECT_NE(exported.err.find("is tainted by revocation"), std::string::npos) << exported.err;
  EXPECT_NE(exported.err.find("2 revocations taint it"), std::string::npos) << exported.err;
  CliResult trace = c.cli({"lineage", "trace", "liab@1"});
  EXPECT_NE(trace.out.find("model liab@1"), std::string::npos);
  EXPECT_NE(trace.out.find("TAINTED by revocation " + rev), std::string::npos) << trace.out;
  EXPECT_NE(trace.out.find("ticket 4711"), std::string::npos) << trace.out;
  EXPECT_NE(trace.out.find("permitted purposes: evaluation, research"), std::string::npos) << trace.out;

  // Retrain without alice's (and bob's, the same records) withdrawn records.
  CliResult retrained = c.cli({"retrain", "liab@1", "--without", rev, "--without", bob_revocation, "--as", "alice"});
  ASSERT_EQ(retrained.code, 0) << retrained.err;
  const std::string job2 = retrained.out.substr(0, retrained.out.find('\n'));
  CliResult waited = c.cli({"wait", job2});
  ASSERT_EQ(waited.code, 0) << waited.out << waited.err;
  json status = json::parse(c.cli({"status", job2, "--json"}).out);
  EXPECT_EQ(status["state"], "completed") << status.dump(2);
  EXPECT_GE(status["test_accuracy"].get<double>(), 0.6) << status.dump(2);

  // The name now serves the replacement (serving resolves a name again at most once a
  // second: docs/ARCHITECTURE.md, "Serving").
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CliResult served = c.cli({"predict", "liab", "--input", row, "--purpose", "research", "--json"});
  ASSERT_EQ(served.code, 0) << served.err;
  EXPECT_NE(served.out.find("liab@2"), std::string::npos) << served.out;

  // Its trace: it replaces the tainted version, is not tainted, keeps the licence, and
  // proves from the shard assignments that no worker was given a withdrawn record.
  CliResult trace2 = c.cli({"lineage", "trace", "liab@2"});
  ASSERT_EQ(trace2.code, 0) << trace2.err;
  EXPECT_EQ(trace2.out.find("TAINTED"), std::string::npos) << trace2.out;
  EXPECT_NE(trace2.out.find("replaces liab@1"), std::string::npos) << trace2.out;
  EXPECT_NE(trace2.out.find("12 records excluded (withdrawn by"), std::string::npos) << trace2.out;
  EXPECT_NE(trace2.out.find("no worker trained on a withdrawn record: all 12 withdrawn records are excluded, and each of "
                            "the 2 rank assignments excluded those in its shard"),
            std::string::npos)
      << trace2.out;
  EXPECT_NE(trace2.out.find("permitted purposes: evaluation, research"), std::string::npos) << trace2.out;
  json trace2_json = json::parse(c.cli({"lineage", "trace", "liab@2", "--json"}).out);
  EXPECT_EQ(trace2_json["tainted"], false);
  EXPECT_EQ(trace2_json["replaces"], json({"model:liab@1"}));
  EXPECT_NE(c.cli({"lineage", "trace", "liab@1"}).out.find("replaced by liab@2"), std::string::npos);
  // The retrained data set is a version of its own, and its runs' shards name what they skipped.
  json shown = json::parse(c.cli({"lineage", "show", job2, "--json"}).out);
  bool consumed_subset = false;
  for (const auto& r : shown["outgoing"]) {
    if (r["body"]["rel"] != "consumed") continue;
    consumed_subset = true;
    EXPECT_NE(r["body"]["to"], revocation["dataset"]) << "the retraining consumed the withdrawn version";
    size_t excluded = 0;
    for (const auto& s : r["body"]["shards"]) excluded += s["excluded"].size();
    EXPECT_EQ(excluded, 12u) << r.dump(2);
  }
  EXPECT_TRUE(consumed_subset) << shown.dump(2);

  // A revocation of records the retraining kept taints the replacement too.
  const std::string more = c.write_job("more.txt", "700\n").string();
  CliResult again = c.cli({"revoke", dataset, "--records", more, "--reason", "another request", "--as", "alice"});
  ASSERT_EQ(again.code, 0) << again.err;
  CliResult refused = c.cli({"predict", "liab@2", "--input", row, "--purpose", "research"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("tainted by revocation"), std::string::npos) << refused.err;
  // The audit log still verifies, with every revocation and refusal in it.
  CliResult verified = c.cli({"audit", "verify"});
  EXPECT_EQ(verified.code, 0) << verified.out << verified.err;
}

}  // namespace
}  // namespace custody::testing
