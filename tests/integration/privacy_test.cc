// Differentially private jobs on the real cluster (separate coordinator, parameter-server
// and worker processes), as a data scientist submits them: calibrated before they start,
// refused when their target cannot be met, trained with DP-SGD (workers clip, servers add
// the noise) to a model that still learns.
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

// The synthetic MLP job of cluster.h with a [privacy] section appended.
std::string private_job(const std::string& name, int epochs, const std::string& privacy_keys) {
  return synthetic_mlp_job(name, epochs, 4000) + "[privacy]\n" + privacy_keys;
}

TEST(PrivacyTest, APrivateJobIsCalibratedTrainsAndLearns) {
  LocalCluster c("private");
  ASSERT_TRUE(c.wait_for_nodes(4));
  // 4000 examples, expected batch 2 x 16 = 32 (q = 0.008), 10 epochs = 1250 steps.
  CliResult submitted = c.cli({"submit",
                               c.write_job("p.toml", private_job("dp", 10,
                                                                 "target_epsilon = 8\ndelta = 1e-5\n"
                                                                 "clip_norm = 1.0\n"))
                                   .string(),
                               "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  CliResult waited = c.cli({"wait", job});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  json s = json::parse(c.cli({"status", job, "--json"}).out);
  EXPECT_EQ(s["state"], "completed") << s.dump(2);
  // The synthetic classes are well separated (the non-private job reaches ~0.95); with
  // clipped gradients and noise at epsilon 8 the model must still be far above chance (0.25).
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.6) << s.dump(2);
  std::cout << "test accuracy at epsilon 8: " << s["test_accuracy"].get<double>() << "\n";
  // The guarantee is recorded with the checkpoint, and the trace shows it (the model
  // "dp@1" is the run's final checkpoint).
  json trace = json::parse(c.cli({"lineage", "trace", s["last_checkpoint"], "--json"}).out);
  ASSERT_TRUE(trace.contains("entity") && trace["entity"].contains("privacy")) << trace.dump(2);
  const json& p = trace["entity"]["privacy"];
  EXPECT_LE(p["epsilon"].get<double>(), 8.0);
  EXPECT_GE(p["epsilon"].get<double>(), 7.99);
  EXPECT_EQ(p["delta"], 1e-5);
  EXPECT_EQ(p["clip_norm"], 1.0);
  EXPECT_EQ(p["steps_accounted"], 1250);
  EXPECT_EQ(p["adjacency"], "example-level add/remove");
  CliResult tree = c.cli({"lineage", "trace", "dp@1"});
  EXPECT_NE(tree.out.find("differentially private: (epsilon 8"), std::string::npos) << tree.out;
  // The privacy statement a data protection officer reads: the guarantee, its unit, the
  // accountant, the mechanism, and what it does not cover.
  CliResult statement = c.cli({"privacy", "dp@1"});
  ASSERT_EQ(statement.code, 0) << statement.err;
  for (const char* part : {"model dp version 1", "-differential privacy at the example level, under add/remove",
                           "over 1250 steps", "Mechanism: every example's gradient clipped to L2 norm C = 1",
                           "Poisson sampling", "Not covered: the choice of hyperparameters"}) {
    EXPECT_NE(statement.out.find(part), std::string::npos) << part << " in\n" << statement.out;
  }
  json as_json = json::parse(c.cli({"privacy", "dp@1", "--json"}).out);
  EXPECT_EQ(as_json["private"], true);
  EXPECT_EQ(as_json["guarantee"]["epsilon"], p["epsilon"]);
  // A prediction's trace shows the guarantee of the model that answered it.
  CliResult predicted =
      c.cli({"predict", "dp@1", "--input", c.write_job("row.csv", synthetic_mlp_row()).string(), "--json"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  const std::string pid = json::parse(predicted.out)[0]["prediction_id"];
  CliResult prediction_trace = c.cli({"lineage", "trace", pid});
  EXPECT_NE(prediction_trace.out.find("differentially private: (epsilon 8"), std::string::npos)
      << prediction_trace.out;
  // The model card of an export carries the same guarantee.
  const fs::path exported = c.dir() / "dp.safetensors";
  ASSERT_EQ(c.cli({"export", "dp@1", exported.string()}).code, 0);
  json card = json::parse(read_file(exported.string() + ".card.json"));
  EXPECT_EQ(card["privacy"]["epsilon"], p["epsilon"]);
  // The coordinator says what it calibrated, before the job ran.
  const std::string log = read_file(c.coordinator().log());
  EXPECT_NE(log.find("private (DP-SGD): sigma="), std::string::npos) << log;
  EXPECT_NE(log.find("(calibrated)"), std::string::npos) << log;
  EXPECT_NE(log.find("q=0.008"), std::string::npos) << log;
}

TEST(PrivacyTest, TheNoiseTheServersAddIsThere) {
  // Evidence that the servers add noise of the stated size, end to end: with sigma = 2000
  // the noise on the mean update (sigma C / B = 62.5 per coordinate at C = 1, B = 32)
  // drowns the clipped gradients (norm <= 1 over 32 examples): the weights take a random
  // walk of that step, and the model answers with near certainty whatever it answers, so
  // its test loss is far above chance's ln 4 = 1.39 (each wrong answer costs up to 69,
  // the loss's floor of 1e-30 on the label's probability). Its accuracy is a random
  // classifier's, which on 4 prototypes ranged 0.08 to 0.55 in five runs, so the test holds
  // the loss to account, not the accuracy. The same job at sigma = 0.5 learns.
  LocalCluster c("private-noise");
  ASSERT_TRUE(c.wait_for_nodes(4));
  auto run = [&](const std::string& file, const std::string& sigma) {
    CliResult r = c.cli(
        {"submit", c.write_job(file, private_job("n", 3, "noise_multiplier = " + sigma + "\ndelta = 1e-5\n"))
                       .string()});
    EXPECT_EQ(r.code, 0) << r.err;
    const std::string job = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(c.cli({"wait", job}).code, 0);
    json s = json::parse(c.cli({"status", job, "--json"}).out);
    EXPECT_EQ(s["state"], "completed") << s.dump(2);
    return std::make_pair(s["test_accuracy"].get<double>(), s["test_loss"].get<double>());
  };
  const auto drowned = run("loud.toml", "2000"), learned = run("quiet.toml", "0.5");
  std::cout << "sigma 2000: test accuracy " << drowned.first << ", loss " << drowned.second
            << "; sigma 0.5: accuracy " << learned.first << ", loss " << learned.second << "\n";
  EXPECT_GT(drowned.second, 5 * std::log(4.0)) << "the noise drowned what the gradients said";
  EXPECT_GE(learned.first, 0.6);
  EXPECT_LT(learned.second, std::log(4.0)) << "without the loud noise the model learns";
}

TEST(PrivacyTest, ATargetNoNoiseReachesIsRefusedAtSubmissionNamingTheNumbers) {
  LocalCluster c("private-refused", {1, 1});
  ASSERT_TRUE(c.wait_for_nodes(2));
  // A full batch every step (2 x 2000 = all 4000 examples: q = 1) for 5 epochs, at
  // epsilon 0.01 with the noise capped at sigma 20: unreachable.
  std::string text =
      "[job]\nname = \"x\"\nepochs = 5\nbatch_size = 2000\nworkers = 2\n[model]\ntype = \"softmax\"\n"
      "classes = 4\n[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = 4000\n"
      "test_samples = 400\nfeatures = 32\nclasses = 4\n[privacy]\ntarget_epsilon = 0.01\n"
      "delta = 1e-5\nmax_noise_multiplier = 20\n";
  CliResult r = c.cli({"submit", c.write_job("x.toml", text).string()});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("cannot reach its privacy target"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("epsilon=0.01"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sigma=20"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("q = 4000/4000"), std::string::npos) << r.err;
  // delta not below 1/N, and a private ASP job: refused, named.
  CliResult big_delta = c.cli(
      {"submit", c.write_job("d.toml", private_job("d", 1, "target_epsilon = 3\ndelta = 0.001\n")).string()});
  EXPECT_NE(big_delta.code, 0);
  EXPECT_NE(big_delta.err.find("below 1/N = 0.00025"), std::string::npos) << big_delta.err;
  std::string asp = private_job("a", 1, "noise_multiplier = 1.0\ndelta = 1e-5\n");
  asp.replace(asp.find("workers = 2\n"), 12, "workers = 2\nconsistency = \"asp\"\n");
  CliResult asp_refused = c.cli({"submit", c.write_job("a.toml", asp).string()});
  EXPECT_NE(asp_refused.code, 0);
  EXPECT_NE(asp_refused.err.find("only with \"bsp\""), std::string::npos) << asp_refused.err;
  EXPECT_TRUE(c.coordinator().running());
  EXPECT_EQ(c.cli({"jobs"}).out.find("job-"), std::string::npos) << "no job was accepted";
}

TEST(PrivacyTest, ADataSetsBudgetIsSpentByItsJobsAndAJobBeyondItIsRefusedThroughTheCli) {
  LocalCluster c("private-budget");
  ASSERT_TRUE(c.wait_for_nodes(4));
  // 4000 examples, q = 32/4000, 1 epoch = 125 steps at sigma 1: alice's job declares the data.
  const std::string keys = "noise_multiplier = 1.0\ndelta = 1e-5\n";
  CliResult first = c.cli({"submit", c.write_job("a.toml", private_job("a", 1, keys)).string(), "--as", "alice"});
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string job = first.out.substr(0, first.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string dataset = "dataset:" + json::parse(c.cli({"status", job, "--json"}).out)["dataset_hash"].get<std::string>();
  json before = json::parse(c.cli({"privacy", dataset, "--json"}).out);
  const double spent = before["spent_epsilon"];
  EXPECT_GT(spent, 0);
  EXPECT_TRUE(before["budget"].is_null());

  // Its owner sets a budget a little above what was spent: too little for another such job (two compose to 1.09x one here).
  const std::string budget = std::to_string(spent * 1.05);
  CliResult set = c.cli({"privacy", "budget", "set", dataset, "--epsilon", budget, "--delta", "1e-5", "--reason",
                         "the consent form's terms", "--as", "alice"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_NE(set.out.find("remaining: epsilon"), std::string::npos) << set.out;
  CliResult refused = c.cli({"submit", c.write_job("b.toml", private_job("b", 1, keys)).string(), "--as", "alice"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("would exceed the privacy budget of data set " + dataset), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("spent epsilon"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("composed with what was spent"), std::string::npos) << refused.err;
  // A job without [privacy] is refused too, unless overridden (recorded).
  const std::string plain = c.write_job("plain.toml", synthetic_mlp_job("plain", 1, 4000)).string();
  CliResult no_privacy = c.cli({"submit", plain, "--as", "bob"});
  EXPECT_NE(no_privacy.code, 0);
  EXPECT_NE(no_privacy.err.find("has no [privacy] section"), std::string::npos) << no_privacy.err;
  CliResult overridden =
      c.cli({"submit", plain, "--as", "root", "--override-privacy-budget", "an audit rerun, approved"});
  EXPECT_EQ(overridden.code, 0) << overridden.err;

  // The listing: the budget, the job and its epsilon, what remains, the override, the refusals.
  CliResult listing = c.cli({"privacy", dataset});
  ASSERT_EQ(listing.code, 0) << listing.err;
  for (const std::string& part : std::vector<std::string>{"budget: epsilon", "set by alice (the consent form's terms)", job + " 'a' by alice",
                                  "125 steps planned", "remaining: epsilon", "let through by root: an audit rerun",
                                  "refused: a job of alice", "refused: a job of bob"}) {
    EXPECT_NE(listing.out.find(part), std::string::npos) << part << " in\n" << listing.out;
  }
  json after = json::parse(c.cli({"privacy", dataset, "--json"}).out);
  EXPECT_DOUBLE_EQ(after["spent_epsilon"].get<double>(), spent);
  EXPECT_NEAR(after["remaining_epsilon"].get<double>(), spent * 0.05, 1e-4);
  EXPECT_EQ(after["refusals"].size(), 2u);
  // Everything is chained: the store verifies.
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

TEST(PrivacyTest, APrivateTanhMlpTrainsAnswersAndExportsAsTanh) {
  LocalCluster c("private-tanh");
  ASSERT_TRUE(c.wait_for_nodes(4));
  std::string text = private_job("t", 5, "target_epsilon = 8\ndelta = 1e-5\n");
  text.replace(text.find("classes = 4\n"), 12, "classes = 4\nactivation = \"tanh\"\n");
  CliResult submitted = c.cli({"submit", c.write_job("t.toml", text).string()});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  json s = json::parse(c.cli({"status", job, "--json"}).out);
  EXPECT_EQ(s["state"], "completed") << s.dump(2);
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.6) << "tanh hidden units learn the synthetic classes";
  // It answers (serving computes with the checkpoint's activation: serving_state_test), and
  // its export says tanh in the card and the ONNX graph.
  CliResult predicted =
      c.cli({"predict", "t@1", "--input", c.write_job("row.csv", synthetic_mlp_row()).string(), "--json"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  const fs::path exported = c.dir() / "t.onnx";
  ASSERT_EQ(c.cli({"export", "t@1", exported.string()}).code, 0);
  json card = json::parse(read_file(exported.string() + ".card.json"));
  EXPECT_EQ(card["architecture"]["hidden_activation"], "tanh") << card.dump(2);
  EXPECT_NE(read_file(exported.string()).find("Tanh"), std::string::npos) << "the ONNX graph's hidden op";
}

}  // namespace
}  // namespace custody::testing
