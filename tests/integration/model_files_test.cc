// Model files people can open (issue 16): a model trained on the real Fashion-MNIST set is
// exported as ONNX, safetensors and raw; each file, opened with the tools its users have
// (python3-onnx and NumPy, tests/integration/check_model_files.py), gives the answers
// `custody predict` gave to 1e-5; the model card beside it names the model, its data and
// licence, its submitter and the export's own usage record.
// One input contract (core/input_contract.h): the same raw pixels 0 to 255 (the IDX file's
// bytes) give the same class and probabilities, to 1e-5, from `custody predict` on the IDX
// file, from HTTP (the OIP route, with `requests`) and from the ONNX graph in NumPy; the
// model's metadata and card say so; a pixel of 256, -1 or NaN is refused naming its row
// and column.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

constexpr int kRows = 25;
const std::string kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

json parse_json(const std::string& text) { return json::parse(text, nullptr, false); }

// A cluster whose coordinator also serves HTTP on a free port (no --auth: callers are "http").
ClusterOptions with_http(const std::string& name) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  o.coordinator_args = {"--http-listen", "127.0.0.1:0", "--http-port-file",
                        (fs::temp_directory_path() / ("custody-" + name + "-" + std::to_string(getpid()) + ".addr"))
                            .string()};
  fs::remove(o.coordinator_args.back());  // a file of an earlier run would name its port
  return o;
}

// The HTTP listener's base URL, once the coordinator has written its port file.
std::string http_url(const ClusterOptions& o) {
  const fs::path port_file = o.coordinator_args.back();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(port_file) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  std::string address = read_file(port_file);
  while (!address.empty() && std::isspace(static_cast<unsigned char>(address.back()))) address.pop_back();
  return "http://" + address;
}

// check_model_files.py: ONNX, safetensors, raw and HTTP against `custody predict`'s answers.
CliResult check_files(LocalCluster& c, const std::string& url, const std::string& model, const fs::path& onnx,
                      const fs::path& st, const fs::path& raw, const fs::path& predictions) {
  return run_argv(c.dir(), {"/usr/bin/python3", std::string(CUSTODY_SOURCE_DIR) + "/tests/integration/check_model_files.py",
                            onnx.string(), st.string(), raw.string(), kImages, std::to_string(kRows),
                            predictions.string(), "--http", url, "--model", model},
                  std::chrono::seconds(120), "check", true);
}

TEST(ModelFilesTest, OnnxSafetensorsAndRawGiveThePredictionsOfCustodyAndCarryAModelCard) {
  const ClusterOptions options = with_http("model-files");
  LocalCluster c("model-files", options);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string url = http_url(options);
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

  CliResult checked = check_files(c, url, "fashion-files", onnx, st, raw, predictions);
  EXPECT_EQ(checked.code, 0) << checked.out << checked.err;
  EXPECT_NE(checked.out.find("http: largest difference"), std::string::npos) << checked.out;
  std::printf("%s", checked.out.c_str());

  // Pixels the model was never trained on: refused naming the row, the column and the range,
  // by the CLI (IDX bytes cannot hold them; CSV rows of raw pixels can) as by HTTP.
  for (const auto& [bad, says] : std::vector<std::pair<std::string, std::string>>{
           {"256", "row 0, column 783: 256 is outside the range"},
           {"-1", "row 0, column 783: -1 is outside the range"},
           {"nan", "row 0, column 783: nan is not a finite number"}}) {
    std::string row;
    for (int f = 0; f < 783; ++f) row += std::to_string(f % 256) + ",";
    CliResult refused = c.cli({"predict", "fashion-files", "--input", c.write_job("bad.csv", row + bad + "\n").string()});
    EXPECT_EQ(refused.code, 4) << bad << ": " << refused.err;
    EXPECT_NE(refused.err.find(says), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("raw pixel values 0 to 255"), std::string::npos) << refused.err;
  }

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
  EXPECT_EQ(card["preprocessing"]["range"], json({0, 255}));
  EXPECT_NE(card["preprocessing"]["input"].get<std::string>().find("raw pixel values 0 to 255"), std::string::npos)
      << card["preprocessing"].dump();
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
  const ClusterOptions options = with_http("model-files-cnn");
  LocalCluster c("model-files-cnn", options);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string url = http_url(options);
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
  CliResult checked = check_files(c, url, "fashion-cnn-small", onnx, st, raw, predictions);
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
