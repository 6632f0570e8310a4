#include "core/job_spec.h"

#include <gtest/gtest.h>

namespace custody {
namespace {

Status parse_error(const std::string& text) { return parse_job_spec(text, "test.toml").status(); }

void expect_refused(const std::string& text, const std::string& must_mention) {
  Status s = parse_error(text);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << text;
  EXPECT_NE(s.message().find(must_mention), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("test.toml"), std::string::npos) << s.message();
}

TEST(JobSpecTest, EmptyFileGivesTheDocumentedDefaults) {
  auto spec = parse_job_spec("", "empty.toml");
  ASSERT_TRUE(spec.is_ok());
  EXPECT_EQ(spec->model, "mlp");
  EXPECT_EQ(spec->hidden, (std::vector<int>{256, 128}));
  EXPECT_EQ(spec->layer_sizes(784), (std::vector<int>{784, 256, 128, 10}));
  EXPECT_EQ(spec->consistency, Consistency::kBsp);
}

TEST(JobSpecTest, ReadsEveryTable) {
  auto spec = parse_job_spec(R"(
[job]
name = "x"
epochs = 3
batch_size = 32
workers = 4
consistency = "asp"
[model]
type = "softmax"
[optimizer]
type = "adam"
learning_rate = 0.001
[data]
kind = "synthetic"
license = "CC-BY-4.0"
consent = ["research"]
[data.synthetic]
train_samples = 100
features = 8
classes = 3
)", "x.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->workers, 4);
  EXPECT_EQ(spec->consistency, Consistency::kAsp);
  EXPECT_EQ(spec->optimizer.kind, OptimizerConfig::Kind::kAdam);
  EXPECT_FLOAT_EQ(spec->optimizer.learning_rate, 0.001f);
  EXPECT_EQ(spec->layer_sizes(8), (std::vector<int>{8, 10}));
  EXPECT_EQ(spec->data.kind, DataSpec::Kind::kSynthetic);
  EXPECT_EQ(spec->data.synthetic_features, 8);
  EXPECT_EQ(spec->data.consent, (std::vector<std::string>{"research"}));
}

// Regression: a synthetic set without data.name was recorded as "fashion-mnist", so
// `lineage impact fashion-mnist` then named two data set versions.
TEST(JobSpecTest, AnUnnamedDataSetIsNamedAfterWhatItIs) {
  auto idx = parse_job_spec("[job]\nname = \"a\"\n", "idx.toml");
  ASSERT_TRUE(idx.is_ok()) << idx.status().to_string();
  EXPECT_EQ(idx->data.name, "fashion-mnist");
  auto synthetic = parse_job_spec(
      "[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = 100\nfeatures = 8\nclasses = 3\n", "s.toml");
  ASSERT_TRUE(synthetic.is_ok()) << synthetic.status().to_string();
  EXPECT_EQ(synthetic->data.name, "synthetic-100x8-c3-s7");
  auto named = parse_job_spec("[data]\nkind = \"synthetic\"\nname = \"clusters\"\n", "n.toml");
  ASSERT_TRUE(named.is_ok()) << named.status().to_string();
  EXPECT_EQ(named->data.name, "clusters");
}

TEST(JobSpecTest, SspTakesAStalenessBound) {
  auto spec = parse_job_spec("[job]\nconsistency = \"ssp\"\nstaleness = 3\n", "ssp.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->consistency, Consistency::kSsp);
  EXPECT_EQ(spec->staleness, 3);
  EXPECT_NE(spec->canonical_form().find("job.staleness = 3"), std::string::npos);
  expect_refused("[job]\nconsistency = \"ssp\"\nstaleness = -1\n", "job.staleness");
}

TEST(JobSpecTest, TheShippedJobFilesParse) {
  for (const char* f : {"fashion_mlp.toml", "fashion_softmax.toml", "fashion_mlp_private.toml", "fashion_cnn.toml"}) {
    auto spec = read_job_file(std::string(CUSTODY_SOURCE_DIR) + "/configs/jobs/" + f);
    EXPECT_TRUE(spec.is_ok()) << f << ": " << spec.status().to_string();
    if (spec.is_ok() && std::string(f) != "fashion_cnn.toml") {
      EXPECT_EQ(spec->canonical_form().find("model.layers"), std::string::npos) << "older hashes unchanged";
    }
  }
}

TEST(JobSpecTest, TheSeedsCnnIsAListOfLayersOnTheDatasSquareImages) {
  auto spec = read_job_file(std::string(CUSTODY_SOURCE_DIR) + "/configs/jobs/fashion_cnn.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->model, "layers");
  EXPECT_EQ(spec->classes, 10);
  auto model = spec->make_model(784);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  EXPECT_EQ(model->architecture(), "1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10");
  EXPECT_NE(spec->canonical_form().find("model.layers = conv2d:32:3 maxpool:2 flatten dense:128 dense:10"),
            std::string::npos);
  // Not a square image, and no input_shape: refused naming the key to set.
  auto odd = spec->make_model(785);
  ASSERT_FALSE(odd.is_ok());
  EXPECT_NE(odd.status().message().find("model.input_shape"), std::string::npos) << odd.status().message();
  // An MLP written as layers is the MLP (and flat features need no shape).
  auto dense = parse_job_spec("[model]\nlayers = [{type = \"dense\", units = 16}, {type = \"dense\", units = 3}]\n",
                              "d.toml");
  ASSERT_TRUE(dense.is_ok()) << dense.status().to_string();
  auto m = dense->make_model(20);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->layer_sizes(), (std::vector<int>{20, 16, 3}));
  EXPECT_TRUE(m->dense_only());
  auto shaped = parse_job_spec("[model]\ninput_shape = [2, 4, 5]\nlayers = [{type = \"conv2d\", filters = 3, "
                               "kernel = 2}, {type = \"flatten\"}, {type = \"dense\", units = 4}]\n",
                               "s.toml");
  ASSERT_TRUE(shaped.is_ok()) << shaped.status().to_string();
  ASSERT_TRUE(shaped->make_model(40).is_ok());
  auto wrong = shaped->make_model(41);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().message().find("2x4x5 holds 40 values, but the data has 41"), std::string::npos);
  auto too_big = parse_job_spec("[model]\nlayers = [{type = \"conv2d\", filters = 3, kernel = 30}, "
                                "{type = \"flatten\"}, {type = \"dense\", units = 4}]\n", "k.toml");
  ASSERT_TRUE(too_big.is_ok());
  auto refused = too_big->make_model(784);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("model.layers: layer 1 (conv2d): kernel 30 does not fit its 1x28x28"),
            std::string::npos) << refused.status().message();
}

TEST(JobSpecTest, ImpossibleLayerListsAreRefusedByName) {
  expect_refused("[model]\nlayers = [{type = \"conv\", filters = 3, kernel = 3}, {type = \"dense\", units = 2}]\n",
                 "model.layers[0]: key 'type' must be");
  expect_refused("[model]\nlayers = [{type = \"dense\", unit = 3}]\n", "a dense layer has no key 'unit' (it takes units)");
  expect_refused("[model]\nlayers = [{type = \"conv2d\", filters = 3}, {type = \"dense\", units = 2}]\n",
                 "model.layers[0]: a conv2d layer needs key 'kernel'");
  expect_refused("[model]\nlayers = [{type = \"dense\", units = 0}]\n", "key 'units' must be an integer in [1,");
  expect_refused("[model]\nlayers = [{type = \"flatten\"}]\n", "must be a dense layer");
  expect_refused("[model]\ntype = \"mlp\"\nlayers = [{type = \"dense\", units = 2}]\n", "model.type");
  expect_refused("[model]\nhidden = [3]\nlayers = [{type = \"dense\", units = 2}]\n", "model.hidden");
  expect_refused("[model]\nclasses = 3\nlayers = [{type = \"dense\", units = 2}]\n", "model.classes");
  expect_refused("[model]\ntype = \"layers\"\n", "needs model.layers");
  expect_refused("[model]\ninput_shape = [1, 28, 28]\n", "model.input_shape");
  expect_refused("[model]\nlayers = \"conv2d\"\n", "model.layers");
}

TEST(JobSpecTest, UnknownKeyIsRefusedByName) {
  expect_refused("[model]\nhiden = [10]\n", "model.hiden");
  expect_refused("[jobb]\nepochs = 1\n", "jobb");
  expect_refused("epochs = 1\n", "'epochs'");
}

TEST(JobSpecTest, WrongTypeIsRefusedByName) {
  expect_refused("[job]\nepochs = \"ten\"\n", "job.epochs");
  expect_refused("[model]\nhidden = 128\n", "model.hidden");
  expect_refused("[optimizer]\nlearning_rate = \"fast\"\n", "optimizer.learning_rate");
  expect_refused("[job]\nconsistency = \"ssp-ish\"\n", "job.consistency");
}

TEST(JobSpecTest, ImpossibleValuesAreRefusedByName) {
  expect_refused("[job]\nepochs = 0\n", "job.epochs");
  expect_refused("[job]\nworkers = -1\n", "job.workers");
  expect_refused("[optimizer]\nlearning_rate = -0.1\n", "optimizer.learning_rate");
  expect_refused("[model]\nhidden = [256, 0]\n", "model.hidden");
  expect_refused("[model]\ntype = \"mlp\"\nhidden = []\n", "model.hidden");
}

TEST(JobSpecTest, BrokenTomlSaysWhere) {
  Status s = parse_error("[job\nepochs = 1\n");
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("test.toml:1"), std::string::npos) << s.message();
}

TEST(JobSpecTest, TheActivationIsReluByDefaultTanhOnRequestAndTheDefaultKeepsOldHashes) {
  auto plain = parse_job_spec("[model]\ntype = \"mlp\"\n", "a.toml");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->activation, "relu");
  EXPECT_EQ(plain->canonical_form().find("activation"), std::string::npos) << "hashes of older specs unchanged";
  auto tanh_spec = parse_job_spec("[model]\ntype = \"mlp\"\nactivation = \"tanh\"\n", "t.toml");
  ASSERT_TRUE(tanh_spec.is_ok());
  EXPECT_EQ(tanh_spec->activation, "tanh");
  EXPECT_NE(tanh_spec->canonical_form().find("model.activation = tanh"), std::string::npos);
  auto bad = parse_job_spec("[model]\nactivation = \"sigmoid\"\n", "b.toml");
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("model.activation"), std::string::npos) << bad.status().message();
  auto softmax = parse_job_spec("[model]\ntype = \"softmax\"\nactivation = \"tanh\"\n", "s.toml");
  EXPECT_NE(softmax.status().message().find("a softmax model has none"), std::string::npos);
}

}  // namespace
}  // namespace custody

namespace custody {
namespace {

TEST(JobSpecTermsTest, MachineReadableTermsAreReadSortedAndOnlyInTheCanonicalFormWhenDeclared) {
  auto plain = parse_job_spec("[data]\nkind = \"synthetic\"\n", "plain.toml");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->canonical_form().find("data.spdx"), std::string::npos);  // old jobs hash as before
  EXPECT_EQ(plain->canonical_form().find("data.purposes"), std::string::npos);
  auto spec = parse_job_spec("[data]\nkind = \"synthetic\"\nspdx = \"CC-BY-NC-4.0\"\n"
                             "purposes = [\"research\", \"evaluation\", \"research\"]\nconsent_purposes = [\"research\"]\n",
                             "terms.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_EQ(spec->data.spdx, "CC-BY-NC-4.0");
  EXPECT_EQ(spec->data.purposes, (std::vector<std::string>{"evaluation", "research"}));
  EXPECT_EQ(spec->data.consent_purposes, (std::vector<std::string>{"research"}));
  EXPECT_NE(spec->canonical_form().find("data.purposes = [evaluation, research]"), std::string::npos);
}

TEST(JobSpecTermsTest, TermsThatAreNotMachineReadableAreRefusedByName) {
  auto empty = parse_job_spec("[data]\npurposes = []\n", "e.toml");
  EXPECT_EQ(empty.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("data.purposes = [] allows no purpose at all"), std::string::npos)
      << empty.status().message();
  auto word = parse_job_spec("[data]\nconsent_purposes = [\"Research use\"]\n", "w.toml");
  EXPECT_NE(word.status().message().find("data.consent_purposes holds 'Research use'"), std::string::npos)
      << word.status().message();
  auto spdx = parse_job_spec("[data]\nspdx = \"MIT (Zalando)\"\n", "s.toml");
  EXPECT_NE(spdx.status().message().find("is not an SPDX license identifier"), std::string::npos)
      << spdx.status().message();
  auto without = parse_job_spec("[data]\nwithout = [\"job-1\"]\n", "x.toml");
  EXPECT_NE(without.status().message().find("it lists revocations"), std::string::npos) << without.status().message();
  auto replaces = parse_job_spec("[job]\nreplaces = \"m\"\n", "r.toml");
  EXPECT_NE(replaces.status().message().find("NAME@VERSION"), std::string::npos) << replaces.status().message();
}

TEST(JobSpecTermsTest, ARetrainingSpecIsTheSameJobWithoutTheRevokedRecordsAndNamesWhatItReplaces) {
  const std::string text = "# my job\n[job]\nname = \"m\"\nepochs = 3\n[data]\nkind = \"synthetic\"\n"
                           "purposes = [\"research\"]\n[data.synthetic]\ntrain_samples = 100\n";
  auto original = parse_job_spec(text, "m.toml");
  ASSERT_TRUE(original.is_ok());
  auto again = retraining_spec(text, {"revocation:0123456789abcdef"}, "m@1", "m.toml");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  auto spec = parse_job_spec(again.value(), "again.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string() << "\n" << again.value();
  EXPECT_EQ(spec->data.without, (std::vector<std::string>{"revocation:0123456789abcdef"}));
  EXPECT_EQ(spec->replaces, "m@1");
  JobSpec without_the_two = spec.value();
  without_the_two.data.without.clear();
  without_the_two.replaces.clear();
  EXPECT_EQ(without_the_two.canonical_form(), original->canonical_form());
  EXPECT_EQ(retraining_spec("[job\n", {}, "m@1", "bad.toml").status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace custody
