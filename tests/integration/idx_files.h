// A small IDX data set on disk (8x8 images, 4 classes, plain files as a job names them)
// and a job on it, for the tests that need a data set of files: operator and shipping
// tests, on loopback and across network namespaces. Plain functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace custody::testing {

inline std::vector<uint8_t> be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

// A small IDX data set (8x8 images, 4 classes) in `dir`, plain files as the job names them.
inline void write_idx_data(const std::filesystem::path& dir, uint32_t train, uint32_t test) {
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, uint32_t magic, uint32_t n, bool images) {
    std::vector<uint8_t> b;
    for (auto part : images ? std::vector<std::vector<uint8_t>>{be32(magic), be32(n), be32(8), be32(8)}
                            : std::vector<std::vector<uint8_t>>{be32(magic), be32(n)}) {
      b.insert(b.end(), part.begin(), part.end());
    }
    for (uint32_t i = 0; i < n; ++i) {
      if (!images) {
        b.push_back(static_cast<uint8_t>(i % 4));
        continue;
      }
      for (uint32_t p = 0; p < 64; ++p) b.push_back(static_cast<uint8_t>(((i % 4) * 60 + p * 3 + i) % 256));
    }
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
  };
  write("train-images", 0x803, train, true);
  write("train-labels", 0x801, train, false);
  write("test-images", 0x803, test, true);
  write("test-labels", 0x801, test, false);
}

// A job of two workers on the data set in `dir`; job_keys go under [job].
inline std::string idx_job(const std::filesystem::path& dir, int epochs = 2, const std::string& job_keys = "") {
  return "[job]\nname = \"local-files\"\nepochs = " + std::to_string(epochs) + "\nbatch_size = 16\nworkers = 2\n" +
         job_keys + "[model]\ntype = \"mlp\"\n"
         "hidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n[data]\nkind = \"idx\"\n"
         "dir = \"" + dir.string() + "\"\ntrain_images = \"train-images\"\ntrain_labels = \"train-labels\"\n"
         "test_images = \"test-images\"\ntest_labels = \"test-labels\"\n";
}

}  // namespace custody::testing
