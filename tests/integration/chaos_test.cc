// Randomized kill trials in CI: one fixed seed per scenario (tests/integration/chaos.h),
// each a few seconds of training with SIGKILLs of workers, parameter servers and the
// coordinator. A failing seed is replayed with `build/bin/chaos_soak --seeds SEED`;
// scripts/soak.sh runs many more.
#include "tests/integration/chaos.h"

namespace custody::testing::chaos {
namespace {

class ChaosTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ChaosTest, EveryJobEndsAsExpectedWithEveryUpdateCountedOnce) { Trial(GetParam()).run(); }

// Seeds 0..6 are one of each scenario, in the order of Scenario.
INSTANTIATE_TEST_SUITE_P(FixedSeeds, ChaosTest, ::testing::Range<uint32_t>(0, kScenarios),
                         [](const ::testing::TestParamInfo<uint32_t>& info) {
                           return std::string(scenario_name(scenario_of(info.param))) + "_seed_" +
                                  std::to_string(info.param);
                         });

}  // namespace
}  // namespace custody::testing::chaos
