// --pin-cpu's list and the pinning itself, on this machine's CPUs.
#include "core/cpu_affinity.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <thread>

namespace custody {
namespace {

// The CPUs this process may use, as numbers.
std::vector<int> usable() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof(set), &set);
  std::vector<int> out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

TEST(CpuAffinityTest, AListParsesInTheKernelsNotation) {
  const auto cpus = usable();
  ASSERT_FALSE(cpus.empty());
  const std::string first = std::to_string(cpus[0]);
  auto one = CpuList::parse(first);
  ASSERT_TRUE(one.is_ok()) << one.status().message();
  EXPECT_EQ(one->cpus(), std::vector<int>{cpus[0]});
  EXPECT_EQ(one->cpu_for(5), cpus[0]);
  if (cpus.size() >= 2 && cpus[1] == cpus[0] + 1) {
    auto range = CpuList::parse(first + "-" + std::to_string(cpus[1]) + "," + first);
    ASSERT_TRUE(range.is_ok()) << range.status().message();
    EXPECT_EQ(range->cpus(), (std::vector<int>{cpus[0], cpus[1], cpus[0]}));
    EXPECT_EQ(range->cpu_for(1), cpus[1]);
    EXPECT_EQ(range->cpu_for(3), cpus[0]) << "in turn";
  }
  EXPECT_TRUE(CpuList().empty());
}

TEST(CpuAffinityTest, BadListsAreRefusedNamingWhatWasWrong) {
  for (const char* bad : {"", "a", "1-", "-1", "0,", "3-1", "1.5", "0 1", "99999"}) {
    auto r = CpuList::parse(bad);
    ASSERT_FALSE(r.is_ok()) << "'" << bad << "'";
    EXPECT_NE(r.status().message().find(std::string("CPU list '") + bad + "'"), std::string::npos)
        << r.status().message();
  }
  // A CPU this process may not run on: named, with the ones it may.
  const auto cpus = usable();
  auto r = CpuList::parse(std::to_string(cpus.back() + 1));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("allowed: " + allowed_cpus()), std::string::npos) << r.status().message();
}

TEST(CpuAffinityTest, APinnedThreadRunsOnlyOnItsCpu) {
  const int cpu = usable().back();
  int seen = -1;
  cpu_set_t after;
  std::thread t([&] {
    ASSERT_TRUE(pin_this_thread(cpu).is_ok());
    CPU_ZERO(&after);
    pthread_getaffinity_np(pthread_self(), sizeof(after), &after);
    seen = sched_getcpu();
  });
  t.join();
  EXPECT_EQ(seen, cpu);
  EXPECT_EQ(CPU_COUNT(&after), 1);
  EXPECT_TRUE(CPU_ISSET(cpu, &after));
}

}  // namespace
}  // namespace custody
