// What tests of the store at rest check of files, as someone holding a copy of them
// would: their modes, and whether any file under a directory holds given bytes (a known
// tensor's, searched for in the raw RocksDB files). Plain functions; not thread-safe only
// as the file system is not.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace custody::testing {

inline mode_t mode_of(const std::filesystem::path& p) {
  struct stat st;
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// "" if `dir` is 0700 and everything under it 0600 (files) or 0700 (directories); else the
// first path that is not, with its mode.
inline std::string first_public(const std::filesystem::path& dir) {
  if (mode_of(dir) != 0700) return dir.string();
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const mode_t want = e.is_directory() ? 0700 : 0600;
    if (mode_of(e.path()) != want)
      return e.path().string() + " (mode " + std::to_string(mode_of(e.path())) + ")";
  }
  return "";
}

// True if any regular file under `dir` holds `bytes`.
inline bool files_hold(const std::filesystem::path& dir, const std::string& bytes) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str().find(bytes) != std::string::npos) return true;
  }
  return false;
}

}  // namespace custody::testing
