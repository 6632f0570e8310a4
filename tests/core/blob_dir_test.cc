// The records directories of data shipping (core/blob_dir.h): a name is a promise about
// the bytes, kept on every way in and out.
#include "core/blob_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/hash.h"
#include "tests/test_dir.h"

namespace custody {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> bytes_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + seed);
  return b;
}

size_t files_in(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(BlobDirTest, BytesWrittenInChunksAreKeptUnderTheirHashAndReadBackWhole) {
  testing::TestDir tmp("blob-dir");
  auto dir = BlobDir::open((tmp.path() / "records").string());
  ASSERT_TRUE(dir.is_ok()) << dir.status().to_string();
  EXPECT_EQ(fs::status(tmp.path() / "records").permissions() & fs::perms::all, fs::perms::owner_all);
  const auto data = bytes_of(3 * 1000 + 7, 1);
  const std::string sha = sha256_hex(data.data(), data.size());
  auto w = dir->write(sha, data.size(), "the test");
  ASSERT_TRUE(w.is_ok());
  for (size_t at = 0; at < data.size(); at += 1000) {
    ASSERT_TRUE(w->append(data.data() + at, std::min<size_t>(1000, data.size() - at)).is_ok());
  }
  EXPECT_FALSE(dir->has(sha).value()) << "not there before the commit";
  ASSERT_TRUE(w->commit().is_ok());
  auto read = dir->read(sha);
  ASSERT_TRUE(read.is_ok() && read->has_value());
  EXPECT_EQ(**read, data);
  uint64_t total = 0;
  auto range = dir->read_range(sha, 2990, 100, &total);
  ASSERT_TRUE(range.is_ok());
  EXPECT_EQ(total, data.size());
  EXPECT_EQ(*range, std::vector<uint8_t>(data.begin() + 2990, data.end())) << "clipped at the end";
  EXPECT_EQ(files_in(tmp.path() / "records"), 1u) << "no temporary file left";
}

TEST(BlobDirTest, BytesOfAnotherHashAreRefusedNamingTheirSourceAndNothingIsKept) {
  testing::TestDir tmp("blob-dir");
  auto dir = BlobDir::open((tmp.path() / "records").string()).value();
  const auto data = bytes_of(4096, 2);
  const std::string sha = sha256_hex(data.data(), data.size());
  auto altered = data;
  altered[1234] ^= 1;  // one bit
  {
    auto w = dir.write(sha, altered.size(), "the coordinator at tcp://10.0.0.1:5555").value();
    ASSERT_TRUE(w.append(altered.data(), altered.size()).is_ok());
    Status s = w.commit();
    EXPECT_EQ(s.code(), ErrorCode::kDataLoss);
    EXPECT_NE(s.message().find("the records from the coordinator at tcp://10.0.0.1:5555 hash to"), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find(sha.substr(0, 16)), std::string::npos) << s.message();
  }
  EXPECT_FALSE(dir.has(sha).value());
  EXPECT_EQ(files_in(dir.dir()), 0u) << "the refused bytes are not kept";
  // Too many bytes are refused as they come, too few at the commit.
  auto w = dir.write(sha, data.size(), "the coordinator").value();
  EXPECT_EQ(w.append(data.data(), data.size() - 1).code(), ErrorCode::kOk);
  EXPECT_EQ(w.commit().code(), ErrorCode::kDataLoss);
  auto longer = dir.write(sha, data.size(), "the coordinator").value();
  ASSERT_TRUE(longer.append(data.data(), data.size()).is_ok());
  EXPECT_EQ(longer.append(data.data(), 1).code(), ErrorCode::kDataLoss);
}

TEST(BlobDirTest, ABlobWhoseBytesNoLongerMatchItsNameIsRemovedAndReportedAbsent) {
  testing::TestDir tmp("blob-dir");
  auto dir = BlobDir::open((tmp.path() / "records").string()).value();
  const auto data = bytes_of(500, 3);
  const std::string sha = sha256_hex(data.data(), data.size());
  ASSERT_TRUE(dir.put(sha, data.data(), data.size(), "the test").is_ok());
  {
    std::fstream f(dir.path_of(sha), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(17);
    f.put('\x55');
  }
  bool damaged = false;
  auto read = dir.read(sha, &damaged);
  ASSERT_TRUE(read.is_ok());
  EXPECT_FALSE(read->has_value());
  EXPECT_TRUE(damaged);
  EXPECT_FALSE(fs::exists(dir.path_of(sha))) << "removed, so the next fetch replaces it";
  ASSERT_TRUE(dir.put(sha, data.data(), data.size(), "the test").is_ok());
  EXPECT_TRUE(dir.has(sha).value());
}

TEST(BlobDirTest, NamesThatAreNotSha256AreRefused) {
  testing::TestDir tmp("blob-dir");
  auto dir = BlobDir::open((tmp.path() / "records").string()).value();
  for (const std::string& bad : std::vector<std::string>{"", "../../etc/passwd", std::string(64, 'g'), std::string(63, 'a'),
                                std::string(64, 'A')}) {
    EXPECT_EQ(dir.read(bad).status().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_EQ(dir.write(bad, 1, "x").status().code(), ErrorCode::kInvalidArgument) << bad;
    uint64_t total = 0;
    EXPECT_EQ(dir.read_range(bad, 0, 1, &total).status().code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(dir.read_range(std::string(64, 'a'), 0, 1, nullptr).status().code(), ErrorCode::kNotFound);
}

// Sets a blob's last use to `seconds` after the epoch (what a read at that time would).
void used_at(const BlobDir& dir, const std::string& sha, int64_t seconds) {
  const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, dir.path_of(sha).c_str(), times, 0), 0);
}

TEST(BlobDirTest, TrimmingRemovesTheLeastRecentlyUsedBlobsFirstAndNeverOnesInUse) {
  testing::TestDir tmp("blob-dir");
  auto dir = BlobDir::open((tmp.path() / "records").string());
  ASSERT_TRUE(dir.is_ok());
  std::vector<std::string> sha;
  for (uint8_t i = 0; i < 4; ++i) {
    const auto data = bytes_of(1000, i);
    sha.push_back(sha256_hex(data.data(), data.size()));
    ASSERT_TRUE(dir->put(sha.back(), data.data(), data.size(), "the test").is_ok());
  }
  // Written in order 0..3; blob 0 then read (used) after the others were written.
  for (int i = 0; i < 4; ++i) used_at(*dir, sha[i], 1000 + i);
  ASSERT_TRUE(dir->read(sha[0]).is_ok());
  std::ofstream(tmp.path() / "records" / (sha[3] + ".tmp-123")) << std::string(5000, 'x');  // a writer's

  auto same = dir->trim(4000, {});
  ASSERT_TRUE(same.is_ok()) << same.status().to_string();
  EXPECT_EQ(same->bytes_before, 4000u) << "a temporary file does not count";
  EXPECT_TRUE(same->removed.empty()) << "within the limit: nothing goes";

  // Over the limit by two blobs: the least recently used go (1, then 2), blob 0 stays
  // because it was read last, and blob 1 stays because it is in use.
  auto trimmed = dir->trim(2000, {sha[1]});
  ASSERT_TRUE(trimmed.is_ok());
  EXPECT_EQ(trimmed->removed, (std::vector<std::string>{sha[2], sha[3]}));
  EXPECT_EQ(trimmed->bytes_after, 2000u);
  EXPECT_TRUE(dir->has(sha[0]).value());
  EXPECT_TRUE(dir->has(sha[1]).value());
  EXPECT_FALSE(dir->has(sha[2]).value());
  EXPECT_TRUE(fs::exists(tmp.path() / "records" / (sha[3] + ".tmp-123"))) << "a writer's file is left alone";

  // Blobs in use stay even when they alone exceed the limit.
  auto over = dir->trim(500, {sha[0], sha[1]});
  ASSERT_TRUE(over.is_ok());
  EXPECT_TRUE(over->removed.empty());
  EXPECT_EQ(over->bytes_after, 2000u);
  // No limit: nothing goes.
  EXPECT_TRUE(dir->trim(0, {})->removed.empty());
}

}  // namespace
}  // namespace custody
