// The streaming reads (core/dataset.h "Streaming") against the whole-file reads: the same
// records, the same hashes and digests, the same refusals, for plain and gzipped files.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/dataset.h"
#include "core/hash.h"
#include "core/job_spec.h"
#include "core/partition.h"
#include "tests/test_dir.h"

namespace custody {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

// Pixels and labels that differ record by record, so a shifted range shows.
std::vector<uint8_t> images(uint32_t n, uint32_t features) {
  std::vector<uint8_t> b;
  for (auto part : {be32(0x803), be32(n), be32(1), be32(features)}) b.insert(b.end(), part.begin(), part.end());
  for (uint32_t i = 0; i < n * features; ++i) b.push_back(static_cast<uint8_t>((i * 131 + i / features) % 251));
  return b;
}

std::vector<uint8_t> labels(uint32_t n, uint32_t classes) {
  std::vector<uint8_t> b;
  for (auto part : {be32(0x801), be32(n)}) b.insert(b.end(), part.begin(), part.end());
  for (uint32_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>((i * 7) % classes));
  return b;
}

class DatasetStreamTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const bool gzip = gzip_;
    std::string path = (dir_ / (name + (gzip ? ".gz" : ""))).string();
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    return path;
  }
  DataSpec spec() {
    DataSpec d;
    d.dir = dir_.path().string();
    d.train_images = fs::path(write("train-images", images(2003, 37))).filename();
    d.train_labels = fs::path(write("train-labels", labels(2003, 10))).filename();
    d.test_images = fs::path(write("test-images", images(501, 37))).filename();
    d.test_labels = fs::path(write("test-labels", labels(501, 10))).filename();
    return d;
  }
  bool gzip_ = false;  // each test runs on plain files, then on gzipped ones
  custody::testing::TestDir dir_{"custody-dataset-stream-test"};
};

TEST_F(DatasetStreamTest, APartHoldsExactlyItsRecordsAndTheWholeSetsHash) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    gzip_ = gzip;
    // Ranges starting and ending mid-file, at 0 and at the end, and empty (ranges across
    // the 1 MiB chunks: the Fashion-MNIST test below).
    const std::string im = write("i", images(2003, 37)), lb = write("l", labels(2003, 10));
    const LabeledSet whole = read_idx(im, lb).value();
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 2003}, {0, 1}, {1000, 1500}, {2002, 2003}, {17, 17}}) {
      for (bool hash_whole : {false, true}) {
        auto part = read_idx_part(im, lb, b, e, hash_whole);
        ASSERT_TRUE(part.is_ok()) << part.status().to_string();
        EXPECT_EQ(part->total, 2003);
        EXPECT_EQ(part->records.count, e - b);
        EXPECT_EQ(part->records.features, 37);
        const LabeledSet expected = slice(whole, b, e);
        EXPECT_EQ(part->records.pixels, expected.pixels) << b << ".." << e;
        EXPECT_EQ(part->records.labels, expected.labels) << b << ".." << e;
        EXPECT_EQ(part->content_hash, hash_whole ? whole.content_hash : "") << "the identity is the whole set's";
      }
    }
    auto outside = read_idx_part(im, lb, 2000, 2004, false);
    ASSERT_TRUE(outside.is_ok());
    EXPECT_EQ(outside->total, 2003);
    EXPECT_EQ(outside->records.count, 0) << "the caller names a range outside the files";
  }}

TEST_F(DatasetStreamTest, RefusesTruncatedTooLongAndForeignFilesWhateverTheRange) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    gzip_ = gzip;
    auto short_images = images(100, 5);
    short_images.resize(short_images.size() - 3);  // the last record is cut
    const std::string lb = write("l", labels(100, 10));
    for (bool hash_whole : {false, true}) {
      auto cut = read_idx_part(write("cut", short_images), lb, 0, 10, hash_whole);  // the range itself is whole
      EXPECT_EQ(cut.status().code(), ErrorCode::kDataLoss) << hash_whole;
      EXPECT_NE(cut.status().message().find("truncated"), std::string::npos) << cut.status().to_string();
      EXPECT_NE(cut.status().message().find("cut"), std::string::npos) << "names the file";
      auto long_images = images(100, 5);
      long_images.push_back(0);
      auto extra = read_idx_part(write("long", long_images), lb, 10, 20, hash_whole);
      EXPECT_EQ(extra.status().code(), ErrorCode::kDataLoss) << hash_whole;
      auto swapped = read_idx_part(lb, lb, 0, 10, hash_whole);
      EXPECT_NE(swapped.status().message().find("IDX3"), std::string::npos);
      auto fewer = read_idx_part(write("i", images(100, 5)), write("l99", labels(99, 10)), 0, 10, hash_whole);
      EXPECT_EQ(fewer.status().code(), ErrorCode::kDataLoss);
      auto missing = read_idx_part((dir_ / "nope").string(), lb, 0, 10, hash_whole);
      EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound) << "a worker falls back to shipping on not found";
    }
  }}

TEST_F(DatasetStreamTest, TheCoordinatorsSummaryIsWhatTheWholeSetGives) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    gzip_ = gzip;
    const DataSpec d = spec();
    const DataSplit whole = load_data(d).value();
    std::map<std::string, std::vector<uint8_t>> kept;
    auto summary = summarize_data(d, 3, [&](const std::string& sha, const std::vector<uint8_t>& bytes) {
      kept[sha] = bytes;
      return Status::ok();
    });
    ASSERT_TRUE(summary.is_ok()) << summary.status().to_string();
    EXPECT_EQ(summary->version_hash, whole.version_hash);
    EXPECT_EQ(summary->train.content_hash, whole.train.content_hash);
    EXPECT_EQ(summary->test.content_hash, whole.test.content_hash);
    EXPECT_EQ(summary->train.count, 2003);
    EXPECT_EQ(summary->test.count, 501);
    EXPECT_EQ(summary->train.features, 37);
    EXPECT_EQ(summary->train.max_label, 9);
    auto ranges = partition_range(2003, 3).value();
    ASSERT_EQ(summary->train.digests.size(), 3u);
    for (size_t r = 0; r < 3; ++r) {
      const RecordsDigest expected = records_digest(whole.train, static_cast<int64_t>(ranges[r].begin),
                                                    static_cast<int64_t>(ranges[r].end));
      EXPECT_EQ(summary->train.digests[r].images_sha256, expected.images_sha256) << r;
      EXPECT_EQ(summary->train.digests[r].labels_sha256, expected.labels_sha256) << r;
    }
    EXPECT_EQ(kept.size(), 12u) << "pixels and labels of 3 ranks, training and test";
    for (const auto& [sha, bytes] : kept) EXPECT_EQ(sha256_hex(bytes.data(), bytes.size()), sha);
    auto many = summarize_data(d, 600);  // more ranks than test records
    ASSERT_TRUE(many.is_ok());
    EXPECT_TRUE(many->test.digests.empty()) << "the coordinator refuses the job, naming the test set";
    EXPECT_EQ(many->train.digests.size(), 600u);
  }}

TEST_F(DatasetStreamTest, AKeepersFailureStopsThePassWithItsError) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    gzip_ = gzip;
    auto summary = summarize_data(spec(), 2, [](const std::string&, const std::vector<uint8_t>&) {
      return unavailable("disk full");
    });
    EXPECT_EQ(summary.status().code(), ErrorCode::kUnavailable);
  }}


TEST(DatasetStreamFashionMnistTest, StreamingGivesTheSameIdentityAndDigestsAsTheWholeFiles) {
  DataSpec d;  // the default: /usr/share/datasets/fashion-mnist, gzipped
  if (!fs::exists(d.path(d.train_images))) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const DataSplit whole = load_data(d).value();
  const DataSummary summary = summarize_data(d, 2).value();
  EXPECT_EQ(summary.version_hash, whole.version_hash);
  const RecordsDigest rank1 = records_digest(whole.train, 30000, 60000);
  EXPECT_EQ(summary.train.digests[1].images_sha256, rank1.images_sha256);
  auto part = read_idx_part(d.path(d.train_images), d.path(d.train_labels), 30000, 60000, false).value();
  EXPECT_EQ(records_digest(part.records, 0, part.records.count).images_sha256, rank1.images_sha256);
}

TEST(DatasetStreamSyntheticTest, ASyntheticSetsSummaryAndPartsAreWhatTheWholeDrawGives) {
  DataSpec d;
  d.kind = DataSpec::Kind::kSynthetic;
  d.synthetic_train = 101;
  d.synthetic_test = 13;
  const DataSplit whole = load_data(d).value();
  const DataSummary summary = summarize_data(d, 3).value();
  EXPECT_EQ(summary.version_hash, whole.version_hash);
  ASSERT_EQ(summary.train.digests.size(), 3u);
  const auto ranges = partition_range(101, 3).value();
  EXPECT_EQ(summary.train.digests[2].images_sha256,
            records_digest(whole.train, static_cast<int64_t>(ranges[2].begin), 101).images_sha256);
  EXPECT_EQ(summary.train.max_label, 3);
  const DataParts parts = load_data_parts(d, 34, 68, 5, 9, false).value();
  EXPECT_EQ(parts.train.total, 101);
  EXPECT_EQ(parts.train.records.pixels, slice(whole.train, 34, 68).pixels);
  EXPECT_EQ(parts.test.records.labels, slice(whole.test, 5, 9).labels);
  EXPECT_EQ(parts.version_hash, whole.version_hash);
}

TEST(Sha256Test, PieceByPieceIsTheWhole) {
  std::string text(100000, 'x');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i * 31);
  Sha256 h;
  for (size_t at = 0; at < text.size(); at += 7777) h.update(text.data() + at, std::min<size_t>(7777, text.size() - at));
  EXPECT_EQ(h.hex(), sha256_hex(text));
  EXPECT_EQ(h.hex(), sha256_hex("")) << "starts over after hex()";
}

}  // namespace
}  // namespace custody
