#include "core/dataset.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/hash.h"
#include "core/job_spec.h"
#include "tests/test_dir.h"

namespace custody {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> b;
  for (auto part : {be32(0x803), be32(n), be32(rows), be32(cols)}) b.insert(b.end(), part.begin(), part.end());
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

std::vector<uint8_t> idx_labels(uint32_t n) {
  std::vector<uint8_t> b;
  for (auto part : {be32(0x801), be32(n)}) b.insert(b.end(), part.begin(), part.end());
  for (uint32_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i % 10));
  return b;
}

class DatasetTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes, bool gzip) {
    std::string path = (dir_ / name).string();
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    return path;
  }
  custody::testing::TestDir dir_{"custody-dataset-test"};
};

TEST_F(DatasetTest, ReadsPlainAndGzippedIdxToTheSameContentHash) {
  auto plain = read_idx(write("i", idx_images(5, 2, 3), false), write("l", idx_labels(5), false));
  auto gz = read_idx(write("i.gz", idx_images(5, 2, 3), true), write("l.gz", idx_labels(5), true));
  ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
  ASSERT_TRUE(gz.is_ok()) << gz.status().to_string();
  EXPECT_EQ(plain->count, 5);
  EXPECT_EQ(plain->features, 6);
  EXPECT_EQ(plain->labels[3], 3);
  EXPECT_EQ(plain->pixels[1], 7);
  EXPECT_EQ(plain->content_hash, gz->content_hash);
  EXPECT_EQ(plain->content_hash.size(), 64u);
}

TEST_F(DatasetTest, OneChangedPixelChangesTheHash) {
  auto images = idx_images(5, 2, 3);
  auto a = read_idx(write("a", images, false), write("l", idx_labels(5), false));
  images.back() ^= 1;
  auto b = read_idx(write("b", images, false), write("l", idx_labels(5), false));
  EXPECT_NE(a->content_hash, b->content_hash);
}

TEST_F(DatasetTest, FeaturesAreScaledColumnsOfSamples) {
  auto set = read_idx(write("i", idx_images(3, 1, 2), false), write("l", idx_labels(3), false)).value();
  Matrix x = features(set, 1, 3);
  ASSERT_EQ(x.rows(), 2);
  ASSERT_EQ(x.cols(), 2);
  EXPECT_FLOAT_EQ(x(0, 0), set.pixels[2] / 255.0f);
  EXPECT_FLOAT_EQ(x(1, 1), set.pixels[5] / 255.0f);
}

// The input contract (core/input_contract.h): a raw pixel sent as a float32 (serving)
// becomes the same bits as the byte training read (features()), for every byte value, and
// the same as one scalar float32 multiply by kInputScale (what the ONNX graph's Mul and
// NumPy compute). check() refuses what is outside 0..255 or not finite, naming row, column
// and range; a table model takes any finite value and names the column.
TEST(InputContractTest, RawPixelsScaleToTheBitsTrainingUsesAndOutOfRangeValuesAreRefused) {
  LabeledSet set;
  set.count = 256;
  set.features = 1;
  for (int b = 0; b < 256; ++b) set.pixels.push_back(static_cast<uint8_t>(b));
  const Matrix trained = features(set, 0, 256);
  std::vector<float> raw(256);
  for (int b = 0; b < 256; ++b) raw[b] = static_cast<float>(b);
  InputContract pixels;
  ASSERT_TRUE(pixels.check(raw.data(), 256, 1, "m@1").is_ok());
  pixels.apply(raw);
  for (int b = 0; b < 256; ++b) {
    volatile float scalar = static_cast<float>(b) * kInputScale;  // one rounding, not fused or folded
    EXPECT_EQ(raw[b], trained(0, b)) << b;
    EXPECT_EQ(raw[b], scalar) << b;
  }
  const std::vector<float> rows = {0, 255, 12, 255.5f};
  Status above = pixels.check(rows.data(), 2, 2, "m@1");
  EXPECT_EQ(above.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(above.message(),
            "row 1, column 1: 255.5 is outside the range model m@1 accepts: " + pixels.expected());
  const std::vector<float> nan = {std::nanf("")};
  EXPECT_NE(pixels.check(nan.data(), 1, 1, "m@1").message().find("row 0, column 0: nan is not a finite number"),
            std::string::npos);
  InputContract table;
  table.table.feature_names = {"mass", "bill"};
  table.table.standardization = {{1.0f, 2.0f}, {2.0f, 4.0f}};
  const std::vector<float> any = {-1000, 1e30f};
  EXPECT_TRUE(table.check(any.data(), 1, 2, "t@1").is_ok());
  const std::vector<float> inf = {0, INFINITY};
  EXPECT_NE(table.check(inf.data(), 1, 2, "t@1").message().find("row 0, column 1 (bill): inf is not a finite"),
            std::string::npos);
  std::vector<float> standardized = {3, 10};
  table.apply(standardized);
  EXPECT_EQ(standardized, (std::vector<float>{1, 2}));
}

TEST_F(DatasetTest, RefusesMissingTruncatedAndForeignFilesNamingThem) {
  auto missing = read_idx((dir_ / "nope").string(), (dir_ / "nope2").string());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);

  auto images = idx_images(5, 2, 3);
  images.resize(images.size() - 1);
  auto truncated = read_idx(write("t", images, true), write("l", idx_labels(5), false));
  EXPECT_EQ(truncated.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos);

  auto swapped = read_idx(write("l1", idx_labels(5), false), write("l2", idx_labels(5), false));
  EXPECT_EQ(swapped.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(swapped.status().message().find("IDX3"), std::string::npos);

  auto fewer_labels = read_idx(write("i", idx_images(5, 2, 3), false), write("l", idx_labels(4), false));
  EXPECT_EQ(fewer_labels.status().code(), ErrorCode::kDataLoss);
}

TEST(SyntheticDataTest, IsDeterministicPerSeed) {
  EXPECT_EQ(make_synthetic(50, 8, 3, 1).content_hash, make_synthetic(50, 8, 3, 1).content_hash);
  EXPECT_NE(make_synthetic(50, 8, 3, 1).content_hash, make_synthetic(50, 8, 3, 2).content_hash);
}

// The real data set of the project's default job (Debian's dataset-fashion-mnist).
TEST(FashionMnistTest, LoadsSixtyThousandTrainingAndTenThousandTestImages) {
  DataSpec spec;  // defaults name /usr/share/datasets/fashion-mnist
  if (!fs::exists(spec.path(spec.train_images))) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto split = load_data(spec);
  ASSERT_TRUE(split.is_ok()) << split.status().to_string();
  EXPECT_EQ(split->train.count, 60000);
  EXPECT_EQ(split->test.count, 10000);
  EXPECT_EQ(split->train.features, 784);
  EXPECT_EQ(*std::max_element(split->train.labels.begin(), split->train.labels.end()), 9);
  EXPECT_EQ(split->version_hash.size(), 64u);
}

TEST(RecordsDigestTest, NamesWhatARangeOfRecordsIsFileByFileAndOneByteChangesOnlyItsFile) {
  LabeledSet set = make_synthetic(20, 6, 3, 1);
  const RecordsDigest all = records_digest(set, 0, 20), part = records_digest(set, 5, 10);
  EXPECT_EQ(part.images_sha256, sha256_hex(set.pixels.data() + 5 * 6, 5 * 6)) << "the pixel bytes as stored";
  EXPECT_EQ(part.labels_sha256, sha256_hex(set.labels.data() + 5, 5));
  EXPECT_NE(part.images_sha256, all.images_sha256);
  set.pixels[7 * 6 + 2] ^= 1;  // one bit of record 7
  const RecordsDigest changed = records_digest(set, 5, 10);
  EXPECT_NE(changed.images_sha256, part.images_sha256);
  EXPECT_EQ(changed.labels_sha256, part.labels_sha256) << "the labels file is not blamed";
  EXPECT_EQ(records_digest(set, 0, 5).images_sha256, sha256_hex(set.pixels.data(), 5 * 6)) << "records outside are not covered";
}

}  // namespace
}  // namespace custody
