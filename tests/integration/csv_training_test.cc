// CSV training data through a real cluster (issue 17, "the seeds' other example"): the
// small penguins table shipped in tests/data, with 12 incomplete rows, trains an MLP on 1
// parameter server and 2 workers (processes, sockets, a RocksDB store). Black-box through
// the CLI: a table with a missing cell is refused naming file, line and column unless the
// job drops such rows; the dropped rows and the standardization are in lineage; predict
// takes raw rows and answers as the exported ONNX file evaluated with NumPy does (to
// 1e-5); and the same job submitted twice trains the same weights, bit for bit.
#include <nlohmann/json.hpp>

#include <thread>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

const std::string kTable = std::string(CUSTODY_SOURCE_DIR) + "/tests/data/penguins_small.csv";

std::string penguins_job(const std::string& missing) {
  return "[job]\nname = \"penguins\"\nepochs = 30\nbatch_size = 16\nworkers = 2\n"
         "[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 3\n"
         "[optimizer]\ntype = \"momentum\"\nlearning_rate = 0.05\n"
         "[data]\nkind = \"csv\"\nname = \"penguins-small\"\ntrain = \"" + kTable +
         "\"\nlabel = \"species\"\nmissing = \"" + missing + "\"\ntest_fraction = 0.2\n";
}

// The table's complete rows without the label column, with the features' header: what a
// caller of a deployed model holds.
std::string raw_rows(int rows) {
  std::istringstream in(read_file(kTable));
  std::string line, out;
  std::getline(in, line);
  out = "bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g\n";
  int taken = 0;
  while (taken < rows && std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    if (cells.size() != 5) continue;
    bool complete = true;
    for (int i : {0, 1, 3, 4}) {
      char* end = nullptr;
      std::strtod(cells[i].c_str(), &end);
      complete &= !cells[i].empty() && *end == '\0';
    }
    if (!complete) continue;
    out += cells[0] + "," + cells[1] + "," + cells[3] + "," + cells[4] + "\n";
    ++taken;
  }
  return out;
}

TEST(CsvTrainingTest, ThePenguinsTableTrainsServesExportsAndRepeatsBitForBit) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  const fs::path http_port = fs::temp_directory_path() / ("custody-csv-http-" + std::to_string(getpid()) + ".addr");
  fs::remove(http_port);
  o.coordinator_args = {"--http-listen", "127.0.0.1:0", "--http-port-file", http_port.string()};
  LocalCluster c("csv-training", o);
  ASSERT_TRUE(c.wait_for_nodes(3));

  // missing = "refuse": the job is refused at submission, naming the first bad cell.
  CliResult refused = c.cli({"submit", c.write_job("refuse.toml", penguins_job("refuse")).string(), "--as", "alice"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("penguins_small.csv"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("line 19: 'bill_length_mm' is empty"), std::string::npos) << refused.err;

  const fs::path job_file = c.write_job("penguins.toml", penguins_job("drop"));
  CliResult submitted = c.cli({"submit", job_file.string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  // A model with fewer outputs than the table has classes is refused, naming them.
  std::string two = penguins_job("drop");
  two.replace(two.find("classes = 3"), 11, "classes = 2");
  CliResult too_few = c.cli({"submit", c.write_job("two.toml", two).string(), "--as", "alice"});
  EXPECT_NE(too_few.code, 0);
  EXPECT_NE(too_few.err.find("3 classes (adelie, chinstrap, gentoo) but 'model.classes' is 2"), std::string::npos)
      << too_few.err;
  ASSERT_EQ(c.cli({"wait", job}).code, 0) << c.cli({"status", job}).out;
  json status = json::parse(c.cli({"status", job, "--json"}).out, nullptr, false);
  const double accuracy = status.value("test_accuracy", 0.0);
  std::printf("penguins test accuracy %.4f (58 test rows)\n", accuracy);
  EXPECT_GT(accuracy, 0.9) << status.dump(2);

  // Lineage: the data set names its dropped rows, and the run its standardization.
  const std::string dataset = "dataset:" + status.value("dataset_hash", std::string());
  CliResult shown = c.cli({"lineage", "show", dataset, "--json"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  json record = json::parse(shown.out, nullptr, false);
  const std::string text = record.dump();
  EXPECT_NE(text.find("\"dropped_rows\":12"), std::string::npos) << shown.out;
  EXPECT_NE(text.find("penguins_small.csv:19"), std::string::npos) << "the first dropped line: " << shown.out;
  EXPECT_NE(text.find("\"source\":\"csv\""), std::string::npos) << shown.out;
  CliResult run = c.cli({"lineage", "show", job, "--json"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("standardize"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("chinstrap"), std::string::npos) << "the classes: " << run.out;

  // Serving takes raw rows; the ONNX file standardizes them itself and answers the same.
  constexpr int kRows = 40;
  const fs::path rows = c.write_job("rows.csv", raw_rows(kRows));
  CliResult predicted = c.cli({"predict", "penguins", "--input", rows.string(), "--json", "--as", "carol"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  json predictions = json::parse(predicted.out, nullptr, false);
  ASSERT_EQ(predictions.size(), static_cast<size_t>(kRows)) << predicted.out;
  const fs::path predictions_file = c.write_job("predictions.json", predicted.out);
  const fs::path onnx = c.dir() / "p.onnx", st = c.dir() / "p.safetensors", raw = c.dir() / "p.f32";
  for (const auto& [file, format] : {std::pair{onnx, "onnx"}, {st, "safetensors"}, {raw, "raw"}}) {
    CliResult exported = c.cli({"export", "penguins@1", file.string(), "--format", format, "--as", "dave"});
    ASSERT_EQ(exported.code, 0) << exported.err;
  }
  CliResult checked = run_argv(c.dir(), {"/usr/bin/python3", std::string(CUSTODY_SOURCE_DIR) +
                                             "/tests/integration/check_model_files.py",
                                         onnx.string(), st.string(), raw.string(), rows.string(),
                                         std::to_string(kRows), predictions_file.string()},
                               std::chrono::seconds(120), "check", true);
  EXPECT_EQ(checked.code, 0) << checked.out << checked.err;
  std::printf("%s", checked.out.c_str());
  json card = json::parse(read_file(onnx.string() + ".card.json"), nullptr, false);
  EXPECT_EQ(card["preprocessing"]["classes"], json({"adelie", "chinstrap", "gentoo"}));
  EXPECT_EQ(card["preprocessing"]["standardize"]["mean"].size(), 4u);
  const std::string md = read_file(onnx.string() + ".card.md");
  EXPECT_NE(md.find("standardized per feature"), std::string::npos) << md;
  EXPECT_NE(md.find("chinstrap"), std::string::npos) << md;
  // HTTP (Open Inference Protocol) takes the same raw rows and answers the same.
  for (int i = 0; i < 200 && !fs::exists(http_port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::string url = read_file(http_port);
  while (!url.empty() && std::isspace(static_cast<unsigned char>(url.back()))) url.pop_back();
  fs::remove(http_port);
  std::vector<float> values;
  {
    std::istringstream in(read_file(rows));
    std::string line;
    std::getline(in, line);  // the header
    for (int r = 0; r < 3 && std::getline(in, line);) {
      std::stringstream ss(line);
      for (std::string cell; std::getline(ss, cell, ',');) values.push_back(std::stof(cell));
      ++r;
    }
  }
  const std::string body =
      json{{"inputs", {{{"name", "input"}, {"shape", {3, 4}}, {"datatype", "FP32"}, {"data", values}}}}}.dump();
  CliResult http = run_argv(c.dir(), {"/usr/bin/curl", "-sS", "--max-time", "20", "-H",
                                      "Content-Type: application/json", "--data-binary", body,
                                      "http://" + url + "/v2/models/penguins/infer"},
                            std::chrono::seconds(30), "curl");
  json inferred = json::parse(http.out, nullptr, false);
  ASSERT_TRUE(inferred.is_object() && inferred.contains("outputs")) << http.out << http.err;
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 3; ++k) {
      EXPECT_NEAR(inferred["outputs"][0]["data"][r * 3 + k].get<double>(),
                  predictions[r]["probabilities"][k].get<double>(), 1e-6)
          << "row " << r;
    }
  }
  // A raw row that is not a number is refused by the CLI, naming line and value.
  CliResult bad = c.cli({"predict", "penguins", "--input", c.write_job("bad.csv", "39.1,18.7,0.5abc,3750\n").string()});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("line 1, value 3: '0.5abc' is not a number"), std::string::npos) << bad.err;

  // The same job again: the same weights, to the bit (the same bytes, split, statistics,
  // shards and order on every node).
  CliResult again = c.cli({"submit", job_file.string(), "--as", "alice"});
  ASSERT_EQ(again.code, 0) << again.err;
  const std::string job2 = again.out.substr(0, again.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job2}).code, 0);
  const fs::path raw2 = c.dir() / "p2.f32";
  ASSERT_EQ(c.cli({"export", "penguins@2", raw2.string(), "--format", "raw", "--as", "dave"}).code, 0);
  EXPECT_EQ(read_file(raw), read_file(raw2)) << "two runs of one CSV job trained different weights";
  json first = json::parse(read_file(raw.string() + ".json"), nullptr, false);
  json second = json::parse(read_file(raw2.string() + ".json"), nullptr, false);
  EXPECT_EQ(first["root_hash"], second["root_hash"]);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}


// CSV tables are not shipped: a worker that lacks the job's table (here: it was removed
// between submission and the start) cannot run the job, and the job fails saying why and
// what to do, instead of training on something else or waiting for ever.
TEST(CsvTrainingTest, AWorkerWithoutTheTableFailsTheJobSayingTablesAreNotShipped) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("csv-no-table", o);
  ASSERT_TRUE(c.wait_for_nodes(1));
  const fs::path copy = c.dir() / "copy.csv";
  fs::copy_file(kTable, copy);
  std::string text = penguins_job("drop");
  text.replace(text.find(kTable), kTable.size(), copy.string());
  text.replace(text.find("workers = 2"), 11, "workers = 1");
  CliResult submitted = c.cli({"submit", c.write_job("job.toml", text).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  fs::remove(copy);
  c.add_node("custody-worker", "worker-1");
  EXPECT_NE(c.cli({"wait", job}, std::chrono::seconds(60)).code, 0);
  json status = json::parse(c.cli({"status", job, "--json"}).out, nullptr, false);
  const std::string message = status.value("message", std::string());
  EXPECT_EQ(status.value("state", std::string()), "failed") << status.dump(2);
  EXPECT_NE(message.find("cannot open data file '" + copy.string() + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("tables are not shipped"), std::string::npos) << message;
}

}  // namespace
}  // namespace custody::testing
