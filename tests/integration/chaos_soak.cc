// chaos_soak: the randomized kill trials of tests/integration/chaos.h over many seeds,
// outside CI (scripts/soak.sh). Seed N runs scenario N % 7, so consecutive seeds cover
// every scenario; one seed replays one trial.
//   chaos_soak [--trials N] [--first-seed S]   seeds S, S+1, ..., S+N-1 (default 20 from 1000)
//   chaos_soak --seeds 3,17,1004               just these (to replay failures)
// GoogleTest flags (--gtest_repeat, --gtest_break_on_failure, ...) work as usual. Ends with
// one line: "chaos soak: N trials, F failed, failed seeds: ...", and exits 1 if any failed.
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/chaos.h"

namespace {

class SoakTrial : public ::testing::Test {
 public:
  explicit SoakTrial(uint32_t seed) : seed_(seed) {}
  void TestBody() override { custody::testing::chaos::Trial(seed_).run(); }

 private:
  uint32_t seed_;
};

int usage(const char* problem) {
  std::cerr << "chaos_soak: " << problem << "\nusage: chaos_soak [--trials N] [--first-seed S] | --seeds A,B,...\n";
  return 2;
}

bool parse_number(const std::string& text, uint32_t& out) {
  char* end = nullptr;
  const unsigned long v = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);  // takes the --gtest_ flags out of argv
  uint32_t trials = 20, first = 1000;
  std::vector<uint32_t> seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return usage(("a value must follow " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--trials") {
      if (!parse_number(value, trials)) return usage("--trials takes a number");
    } else if (flag == "--first-seed") {
      if (!parse_number(value, first)) return usage("--first-seed takes a number");
    } else if (flag == "--seeds") {
      std::istringstream list(value);
      std::string item;
      while (std::getline(list, item, ',')) {
        uint32_t seed = 0;
        if (!parse_number(item, seed)) return usage("--seeds takes numbers separated by commas");
        seeds.push_back(seed);
      }
    } else {
      return usage(("unknown flag " + flag).c_str());
    }
  }
  if (seeds.empty())
    for (uint32_t i = 0; i < trials; ++i) seeds.push_back(first + i);
  for (uint32_t seed : seeds) {
    const std::string name = std::string(custody::testing::chaos::scenario_name(
                                 custody::testing::chaos::scenario_of(seed))) + "_seed_" + std::to_string(seed);
    // GoogleTest owns the tests its factories make.
    ::testing::RegisterTest("ChaosSoak", name.c_str(), nullptr, std::to_string(seed).c_str(), __FILE__, __LINE__,
                            [seed]() -> ::testing::Test* { return new SoakTrial(seed); });
  }
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  int ran = 0, failed = 0;
  std::string failed_seeds;
  for (int s = 0; s < unit.total_test_suite_count(); ++s) {
    const ::testing::TestSuite& suite = *unit.GetTestSuite(s);
    for (int t = 0; t < suite.total_test_count(); ++t) {
      const ::testing::TestInfo& info = *suite.GetTestInfo(t);
      if (!info.should_run()) continue;
      ++ran;
      if (!info.result()->Failed()) continue;
      ++failed;
      failed_seeds += (failed_seeds.empty() ? "" : ",") + std::string(info.value_param());
    }
  }
  std::cout << "chaos soak: " << ran << " trials, " << failed << " failed, failed seeds: "
            << (failed_seeds.empty() ? "none" : failed_seeds) << std::endl;
  return rc == 0 ? 0 : 1;
}
