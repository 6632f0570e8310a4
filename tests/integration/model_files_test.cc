// Model files people can open (issue 16): a model trained on the real Fashion-MNIST set is
// exported as ONNX, safetensors and raw; each file, opened with the tools its users have
// (python3-onnx and NumPy, tests/integration/check_model_files.py), gives the answers
// `custody predict` gave to 1e-5; the model card beside it names the model, its data and
// licence, its submitter and the export's own usage record.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

constexpr int kRows = 25;
const std::string kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

json parse_json(const std::string& text) { return json::parse(text, nullptr, false); }

TEST(ModelFilesTest, OnnxSafetensorsAndRawGiveThePredictionsOfCustodyAndCarryAModelCard) {
  LocalCluster c("model-files", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job_text = fashion_mlp_job("fashion-files", 1) +
                               "name = \"fashion-mnist\"\nlicense = \"MIT\"\nconsent = [\"public-benchmark\"]\n";
  CliResult submitted = c.cli({"submit", c.write_job("job.toml", job_text).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);

  CliResult predicted =
      c.cli({"predict", "fashion-files", "--input", kImages, "--rows", std::to_string(kRows), "--json", "--as", "carol"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  const fs::path predictions = c.write_job("predictions.json", predicted.out);

  const fs::path onnx = c.dir() / "model.onnx", st = c.dir() / "model.safetensors", raw = c.dir() / "model.f32";
  for (const auto& [file, format] : {std::pair{onnx, "auto"}, {st, "safetensors"}, {raw, "raw"}}) {
    CliResult exported = c.cli({"export", "fashion-files@1", file.string(), "--format", format, "--as", "dave",
                                "--purpose", "audit copy"});
    ASSERT_EQ(exported.code, 0) << exported.err;
    EXPECT_TRUE(fs::exists(file.string() + ".card.json") && fs::exists(file.string() + ".card.md")) << file;
  }

  CliResult checked = run_argv(c.dir(), {"/usr/bin/python3", std::string(CUSTODY_SOURCE_DIR) +
                                             "/tests/integration/check_model_files.py",
                                         onnx.string(), st.string(), raw.string(), kImages, std::to_string(kRows),
                                         predictions.string()},
                               std::chrono::seconds(120), "check", true);
  EXPECT_EQ(checked.code, 0) << checked.out << checked.err;
  std::printf("%s", checked.out.c_str());

  // The card: what a recipient of the file needs, from the custody store.
  json card = parse_json(read_file(onnx.string() + ".card.json"));
  ASSERT_TRUE(card.is_object());
  json status = parse_json(c.cli({"status", job, "--json"}).out);
  EXPECT_EQ(card["model"]["name"], "fashion-files");
  EXPECT_EQ(card["model"]["version"], 1);
  EXPECT_EQ(card["training"]["run"], job);
  EXPECT_EQ(card["submitter"], "alice");
  ASSERT_EQ(card["datasets"].size(), 1u);
  EXPECT_EQ("dataset:" + card["datasets"][0]["sha256"].get<std::string>(), "dataset:" + status["dataset_hash"].get<std::string>());
  EXPECT_EQ(card["datasets"][0]["license"], "MIT");
  EXPECT_EQ(card["architecture"]["layer_sizes"], json({784, 64, 10}));
  EXPECT_NEAR(card["preprocessing"]["scale"].get<double>(), 1.0 / 255.0, 1e-9);
  EXPECT_TRUE(card["privacy"].is_null()) << "no guarantee is claimed for a model trained without one";
  EXPECT_EQ(card["export"]["format"], "onnx");
  EXPECT_EQ(card["export"]["principal"], "dave");
  EXPECT_EQ(card["export"]["purpose"], "audit copy");
  EXPECT_EQ(card["export"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_NEAR(card["test_accuracy"].get<double>(), status["test_accuracy"].get<double>(), 1e-9);
  // The export's usage record is the one the card names.
  json usage = parse_json(c.cli({"usage", "fashion-files", "--json"}).out);
  bool found = false;
  for (const auto& r : usage["records"]) found |= r.value("usage_id", "") == card["export"]["usage_id"];
  EXPECT_TRUE(found) << usage.dump(2);
  const std::string md = read_file(onnx.string() + ".card.md");
  EXPECT_NE(md.find("# Model card: fashion-files version 1"), std::string::npos) << md;
  EXPECT_NE(md.find("licence: MIT"), std::string::npos) << md;

  // The same lineage as a picture: Graphviz draws the model's trace, with its data set.
  const fs::path svg = c.dir() / "lineage.svg";
  CliResult drawn = c.cli({"lineage", "graph", "fashion-files", "--format", "svg", "--out", svg.string()});
  ASSERT_EQ(drawn.code, 0) << drawn.err;
  const std::string picture = read_file(svg);
  EXPECT_NE(picture.find("<svg"), std::string::npos);
  EXPECT_NE(picture.find(status["dataset_hash"].get<std::string>().substr(0, 40)), std::string::npos)
      << "the data set's hash is in the picture";
  EXPECT_NE(picture.find("submitted by alice"), std::string::npos);

  // Trained without [privacy]: the privacy statement claims nothing, and says so.
  CliResult statement = c.cli({"privacy", "fashion-files"});
  EXPECT_EQ(statement.code, 0) << statement.err;
  EXPECT_EQ(statement.out.rfind("No differential-privacy guarantee is claimed for model fashion-files version 1", 0),
            0u)
      << statement.out;

  // Unhappy paths: an unknown format, and a model that does not exist, write nothing.
  const fs::path nothing = c.dir() / "nothing.onnx";
  CliResult bad_format = c.cli({"export", "fashion-files@1", nothing.string(), "--format", "pdf"});
  EXPECT_NE(bad_format.code, 0);
  EXPECT_NE(bad_format.err.find("not one of auto, onnx, safetensors, raw"), std::string::npos) << bad_format.err;
  CliResult unknown = c.cli({"export", "fashion-files@7", nothing.string()});
  EXPECT_NE(unknown.code, 0);
  EXPECT_FALSE(fs::exists(nothing)) << "a failed export leaves no file";
  EXPECT_FALSE(fs::exists(nothing.string() + ".card.json"));
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// The seeds' CNN's layer types through the real cluster (issue 17): a small conv model
// trains with 2 workers BSP on Fashion-MNIST, serves predictions, and its ONNX (Reshape,
// Conv, Relu, MaxPool, Flatten, Gemm), safetensors and raw files give the same answers.
TEST(ModelFilesTest, ACnnTrainsThroughTheClusterServesAndExportsFilesThatAgreeWithPredict) {
  LocalCluster c("model-files-cnn", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job_text =
      "[job]\nname = \"fashion-cnn-small\"\nepochs = 1\nbatch_size = 64\nworkers = 2\nconsistency = \"bsp\"\n"
      "[model]\nlayers = [{type = \"conv2d\", filters = 4, kernel = 3}, {type = \"maxpool\", size = 2},\n"
      "  {type = \"conv2d\", filters = 4, kernel = 2}, {type = \"flatten\"}, {type = \"dense\", units = 10}]\n"
      "[optimizer]\ntype = \"adam\"\nlearning_rate = 0.003\n"
      "[data]\nkind = \"idx\"\ndir = \"/usr/share/datasets/fashion-mnist\"\n";
  CliResult submitted = c.cli({"submit", c.write_job("cnn.toml", job_text).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  json status = parse_json(c.cli({"status", job, "--json"}).out);
  EXPECT_GT(status.value("test_accuracy", 0.0), 0.75) << status.dump(2);

  CliResult predicted = c.cli({"predict", "fashion-cnn-small", "--input", kImages, "--rows", std::to_string(kRows),
                               "--json", "--as", "carol"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  const fs::path predictions = c.write_job("predictions.json", predicted.out);
  const fs::path onnx = c.dir() / "cnn.onnx", st = c.dir() / "cnn.safetensors", raw = c.dir() / "cnn.f32";
  for (const auto& [file, format] : {std::pair{onnx, "onnx"}, {st, "safetensors"}, {raw, "raw"}}) {
    CliResult exported = c.cli({"export", "fashion-cnn-small@1", file.string(), "--format", format, "--as", "dave"});
    ASSERT_EQ(exported.code, 0) << exported.err;
  }
  CliResult checked = run_argv(c.dir(), {"/usr/bin/python3", std::string(CUSTODY_SOURCE_DIR) +
                                             "/tests/integration/check_model_files.py",
                                         onnx.string(), st.string(), raw.string(), kImages, std::to_string(kRows),
                                         predictions.string()},
                               std::chrono::seconds(120), "check", true);
  EXPECT_EQ(checked.code, 0) << checked.out << checked.err;
  std::printf("%s", checked.out.c_str());
  // The card names the layers; TracIn traces the CNN through its last dense layer.
  json card = parse_json(read_file(onnx.string() + ".card.json"));
  EXPECT_EQ(card["architecture"]["layers"], "1x28x28 conv2d:4:3 maxpool:2 conv2d:4:2 flatten dense:10");
  CliResult traced = c.cli({"attribute", "--self-influence", "fashion-cnn-small", "--top", "5", "--json"});
  ASSERT_EQ(traced.code, 0) << traced.err;
  json a = parse_json(traced.out);
  EXPECT_EQ(a["kind"], "self_influence");
  EXPECT_EQ(a["records"].size(), 5u) << a.dump(2);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

}  // namespace
}  // namespace custody::testing
