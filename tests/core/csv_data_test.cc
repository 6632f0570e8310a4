// CSV tables as a job's data set (core/dataset.h load_csv_data, job_spec.h's data keys):
// the job file's keys and their refusals, rows refused naming file, line and column or
// dropped and counted, standardization fitted on the training split only and applied to
// both, records as float32, the seeded split, a separate test file's classes and columns,
// and that the same bytes give the same bits.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/dataset.h"
#include "core/job_spec.h"

namespace custody {
namespace {

namespace fs = std::filesystem;

class CsvDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("custody_csv_data_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  Result<JobSpec> spec(const std::string& data_keys) {
    return parse_job_spec("[data]\nkind = \"csv\"\ndir = \"" + dir_.string() + "\"\n" + data_keys, "t.toml");
  }
  fs::path dir_;
};

std::vector<float> floats(const LabeledSet& set) {
  std::vector<float> v(set.pixels.size() / 4);
  std::memcpy(v.data(), set.pixels.data(), set.pixels.size());
  return v;
}

TEST(CsvJobSpecTest, ReadsTheCsvKeysAndKeepsOtherJobsCanonicalForms) {
  auto s = parse_job_spec("[data]\nkind = \"csv\"\ntrain = \"a.csv\"\nlabel = \"y\"\nmissing = \"drop\"\n"
                          "test_fraction = 0.25\nsplit_seed = 3\n",
                          "t.toml");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->data.kind, DataSpec::Kind::kCsv);
  EXPECT_EQ(s->data.csv_train, "a.csv");
  EXPECT_EQ(s->data.csv_label, "y");
  EXPECT_TRUE(s->data.csv_drop_missing);
  EXPECT_DOUBLE_EQ(s->data.csv_test_fraction, 0.25);
  EXPECT_EQ(s->data.csv_split_seed, 3u);
  EXPECT_EQ(s->data.name, "a.csv") << "named after its file by default";
  EXPECT_EQ(s->data.path(s->data.csv_train), "./a.csv") << "not in the default dir, Fashion-MNIST's";
  const std::string canonical = s->canonical_form();
  EXPECT_NE(canonical.find("data.kind = csv"), std::string::npos);
  EXPECT_NE(canonical.find("data.label = y"), std::string::npos);
  EXPECT_NE(canonical.find("data.test_fraction = 0.25"), std::string::npos);
  auto other = parse_job_spec("[data]\nsplit_seed = 3\n", "t.toml");
  ASSERT_TRUE(other.is_ok());
  auto plain = parse_job_spec("", "t.toml");
  EXPECT_EQ(other->canonical_form(), plain->canonical_form()) << "csv keys are not in an idx job's canonical form";
  EXPECT_EQ(plain->canonical_form().find("data.label"), std::string::npos);
}

TEST(CsvJobSpecTest, RefusesIncompleteOrContradictoryCsvKeysNamingThem) {
  auto refused = [](const std::string& text, const std::string& mention) {
    Status st = parse_job_spec(text, "t.toml").status();
    EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument) << text;
    EXPECT_NE(st.message().find(mention), std::string::npos) << st.message();
  };
  refused("[data]\nkind = \"csv\"\nlabel = \"y\"\n", "'data.train'");
  refused("[data]\nkind = \"csv\"\ntrain = \"a.csv\"\n", "'data.label'");
  refused("[data]\nkind = \"csv\"\ntrain = \"a.csv\"\nlabel = \"y\"\ntest = \"b.csv\"\ntest_fraction = 0.1\n",
          "exclusive");
  refused("[data]\nkind = \"csv\"\ntrain = \"a.csv\"\nlabel = \"y\"\nmissing = \"skip\"\n", "data.missing");
  refused("[data]\nkind = \"csv\"\ntrain = \"a.csv\"\nlabel = \"y\"\ntest_fraction = 1.0\n", "data.test_fraction");
  refused("[data]\ntrain = \"a.csv\"\nlabel = \"y\"\n", "data.kind = \"csv\"");
}

TEST(CsvJobSpecTest, ThePenguinsJobParses) {
  auto s = read_job_file(std::string(CUSTODY_SOURCE_DIR) + "/configs/jobs/penguins_mlp.toml");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->data.kind, DataSpec::Kind::kCsv);
  EXPECT_EQ(s->data.csv_label, "species");
}

TEST_F(CsvDataTest, RefusesARowWithAMissingCellNamingFileLineAndColumn) {
  const std::string path = write("t.csv", "a,b,y\n1,2,x\n3,0.5abc,y\n5,6,x\n");
  auto s = spec("train = \"t.csv\"\nlabel = \"y\"\n");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  auto data = load_data(s->data);
  ASSERT_EQ(data.status().code(), ErrorCode::kInvalidArgument);
  const std::string m = data.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("line 3"), std::string::npos) << m;
  EXPECT_NE(m.find("'b' is '0.5abc', not a number"), std::string::npos) << m;
  EXPECT_NE(m.find("data.missing = \"drop\""), std::string::npos) << "says what to do: " << m;
}

TEST_F(CsvDataTest, StandardizesBothSplitsWithTheTrainingRowsStatisticsOnly) {
  write("train.csv", "f,g,y\n1,10,a\n3,10,b\n,7,a\n5,10,a\n");
  write("test.csv", "f,g,y\n100,1000,b\n3,10,c\n");
  auto s = spec("train = \"train.csv\"\ntest = \"test.csv\"\nlabel = \"y\"\nmissing = \"drop\"\n");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  auto data = load_data(s->data);
  ASSERT_TRUE(data.is_ok()) << data.status().to_string();
  const TablePreprocessing& p = data->table;
  EXPECT_EQ(p.feature_names, (std::vector<std::string>{"f", "g"}));
  // f over the 3 kept training rows: mean 3, population std sqrt(8/3); g is constant: std 1.
  EXPECT_FLOAT_EQ(p.standardization.mean[0], 3.0f);
  EXPECT_FLOAT_EQ(p.standardization.std[0], std::sqrt(8.0f / 3.0f));
  EXPECT_FLOAT_EQ(p.standardization.mean[1], 10.0f) << "the test rows' 1000 does not move it";
  EXPECT_FLOAT_EQ(p.standardization.std[1], 1.0f);
  EXPECT_EQ(p.dropped, 1);
  ASSERT_EQ(p.dropped_lines.size(), 1u);
  EXPECT_NE(p.dropped_lines[0].find("train.csv:4"), std::string::npos) << p.dropped_lines[0];
  EXPECT_EQ(p.classes, (std::vector<std::string>{"a", "b", "c"})) << "one mapping for both files";
  EXPECT_EQ(data->train.labels, (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(data->test.labels, (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(data->train.value_bytes, 4);
  EXPECT_EQ(data->train.features, 2);
  const float sd = std::sqrt(8.0f / 3.0f);
  EXPECT_EQ(floats(data->train), (std::vector<float>{(1 - 3.0f) / sd, 0, (3 - 3.0f) / sd, 0, (5 - 3.0f) / sd, 0}));
  EXPECT_EQ(floats(data->test), (std::vector<float>{(100 - 3.0f) / sd, 990, 0, 0}));
  ASSERT_EQ(p.files_sha256.size(), 2u);
  // features() hands the model these values as they are.
  Matrix x = features(data->test, 0, 2);
  EXPECT_EQ(x(1, 0), 990.0f);
}

TEST_F(CsvDataTest, SplitsOneFileWithASeedAndTheSameBytesGiveTheSameBits) {
  std::string text = "x,label\n";
  for (int i = 0; i < 50; ++i) text += std::to_string(i * 1.5) + "," + std::to_string(i % 2) + "\n";
  write("t.csv", text);
  auto s = spec("train = \"t.csv\"\nlabel = \"label\"\ntest_fraction = 0.2\n");
  ASSERT_TRUE(s.is_ok());
  auto a = load_data(s->data), b = load_data(s->data);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->train.count, 40);
  EXPECT_EQ(a->test.count, 10);
  EXPECT_EQ(a->train.pixels, b->train.pixels);
  EXPECT_EQ(a->version_hash, b->version_hash);
  EXPECT_EQ(a->table.classes, (std::vector<std::string>{"0", "1"}));
  // Record i of the training split is line train_lines[i] of the file (the header is line
  // 1, row k holds x = 1.5 k and label k % 2): ascending, and holding that record's label.
  EXPECT_EQ(a->table.train_file, (dir_ / "t.csv").string());
  ASSERT_EQ(a->table.train_lines.size(), 40u);
  for (size_t i = 0; i < 40; ++i) {
    const int64_t k = a->table.train_lines[i] - 2;
    ASSERT_GE(k, 0);
    ASSERT_LT(k, 50);
    if (i > 0) {
      EXPECT_GT(a->table.train_lines[i], a->table.train_lines[i - 1]);
    }
    EXPECT_EQ(a->train.labels[i], k % 2) << "record " << i << ", line " << k + 2;
  }
  auto other = spec("train = \"t.csv\"\nlabel = \"label\"\ntest_fraction = 0.2\nsplit_seed = 8\n");
  auto c = load_data(other->data);
  ASSERT_TRUE(c.is_ok());
  EXPECT_NE(c->version_hash, a->version_hash) << "another split is another version";
  // The streaming reads the nodes use give the same records and digests.
  auto parts = load_data_parts(s->data, 10, 20, 0, 5, true);
  ASSERT_TRUE(parts.is_ok()) << parts.status().to_string();
  EXPECT_EQ(parts->train.records.value_bytes, 4);
  EXPECT_EQ(records_digest(parts->train.records, 0, 10).images_sha256,
            records_digest(a->train, 10, 20).images_sha256);
  auto summary = summarize_data(s->data, 2);
  ASSERT_TRUE(summary.is_ok());
  EXPECT_EQ(summary->version_hash, a->version_hash);
  EXPECT_EQ(summary->train.features, 1);
  EXPECT_EQ(summary->table.standardization.mean, a->table.standardization.mean);
  ASSERT_EQ(summary->train.digests.size(), 2u);
  EXPECT_EQ(summary->train.digests[1].images_sha256, records_digest(a->train, 20, 40).images_sha256);
  // One changed byte in the file is another version.
  text[10] = text[10] == '1' ? '2' : '1';
  write("t.csv", text);
  auto d = load_data(s->data);
  ASSERT_TRUE(d.is_ok());
  EXPECT_NE(d->version_hash, a->version_hash);
  EXPECT_NE(d->table.files_sha256, a->table.files_sha256);
}

TEST_F(CsvDataTest, RefusesATestFileWithOtherColumns) {
  write("train.csv", "f,g,y\n1,2,a\n3,4,b\n");
  write("test.csv", "g,f,y\n1,2,a\n");
  auto s = spec("train = \"train.csv\"\ntest = \"test.csv\"\nlabel = \"y\"\n");
  auto data = load_data(s->data);
  ASSERT_EQ(data.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(data.status().message().find("(g, f)"), std::string::npos) << data.status().message();
}

TEST(CsvDataShippedTest, ThePenguinsTableDropsItsTwelveIncompleteRows) {
  auto s = read_job_file(std::string(CUSTODY_SOURCE_DIR) + "/configs/jobs/penguins_mlp.toml");
  ASSERT_TRUE(s.is_ok());
  s->data.dir = std::string(CUSTODY_SOURCE_DIR) + "/tests/data";
  auto data = load_data(s->data);
  ASSERT_TRUE(data.is_ok()) << data.status().to_string();
  EXPECT_EQ(data->table.dropped, 12);
  EXPECT_EQ(data->train.count + data->test.count, 288);
  EXPECT_EQ(data->test.count, 58);  // round(0.2 * 288)
  EXPECT_EQ(data->table.classes, (std::vector<std::string>{"adelie", "chinstrap", "gentoo"}));
  EXPECT_EQ(data->table.feature_names,
            (std::vector<std::string>{"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}));
  // Standardized training rows: mean 0 and std 1 per feature (to float rounding).
  const std::vector<float> v = floats(data->train);
  for (int f = 0; f < 4; ++f) {
    double sum = 0, sq = 0;
    for (int64_t r = 0; r < data->train.count; ++r) sum += v[static_cast<size_t>(r * 4 + f)];
    for (int64_t r = 0; r < data->train.count; ++r) sq += std::pow(v[static_cast<size_t>(r * 4 + f)] - sum / data->train.count, 2);
    EXPECT_NEAR(sum / data->train.count, 0, 1e-5);
    EXPECT_NEAR(std::sqrt(sq / data->train.count), 1, 1e-4);
  }
}

}  // namespace
}  // namespace custody
