// A job's checkpoint chain as the custody store records it, added up: from the final
// checkpoint back through its parents, the pushes the servers accepted in each interval.
// The kill tests (recovery_test.cc, chaos_test.cc) check with it that every (rank, step)
// of a job was applied exactly once: updates of a rolled-back attempt after its checkpoint
// are discarded as a whole, never counted.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/cluster.h"

namespace custody::testing {

struct Updates {
  uint64_t accepted = 0, samples = 0, checkpoints = 0;
  std::map<uint32_t, uint64_t> per_rank;
  std::set<std::string> contributors;  // "worker-1 rank 0"
  bool contiguous = true;              // each interval begins where its parent's ended
};

// Follows the chain from `checkpoint` to the first, reading each with `custody lineage
// show` (`store` names the store, e.g. {"--store", DIR}). Cluster: LocalCluster, or any
// cluster whose cli(args) runs the CLI (NetnsCluster).
template <class Cluster>
Updates count_updates(Cluster& c, std::string checkpoint, const std::vector<std::string>& store) {
  Updates u;
  uint64_t expected_end = UINT64_MAX;
  while (!checkpoint.empty()) {
    std::vector<std::string> args = store;
    args.insert(args.end(), {"lineage", "show", checkpoint, "--json"});
    CliResult r = c.cli(args);
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) break;
    const nlohmann::json shown = nlohmann::json::parse(r.out);
    ++u.checkpoints;
    const uint64_t step = shown["manifest"]["step"];
    if (expected_end != UINT64_MAX && step != expected_end) u.contiguous = false;
    uint64_t begin = step;
    for (const auto& rel : shown["incoming"]) {
      const nlohmann::json& b = rel["body"];
      if (b["rel"] != "contributed") continue;
      u.accepted += b["accepted"].get<uint64_t>();
      u.samples += b["samples"].get<uint64_t>();
      u.per_rank[b["rank"].get<uint32_t>()] += b["accepted"].get<uint64_t>();
      u.contributors.insert(b["from"].get<std::string>().substr(5) + " rank " + std::to_string(b["rank"].get<int>()));
      begin = b["interval"][0].get<uint64_t>();
      if (b["interval"][1].get<uint64_t>() != step) u.contiguous = false;
    }
    expected_end = begin;
    checkpoint = shown["manifest"].value("parent", "");
  }
  if (expected_end != 0) u.contiguous = false;  // the chain reaches back to step 0
  return u;
}

// The exactly-once accounting of a completed job of `ranks` ranks and `batch` samples a step.
inline void expect_every_update_once(const Updates& u, uint64_t total_steps, uint32_t ranks, uint64_t batch,
                                     const std::string& job) {
  EXPECT_EQ(u.accepted, total_steps * ranks) << job << ": every (rank, step) applied exactly once";
  EXPECT_EQ(u.samples, total_steps * ranks * batch) << job;
  for (uint32_t r = 0; r < ranks; ++r) EXPECT_EQ(u.per_rank.count(r) ? u.per_rank.at(r) : 0, total_steps) << job << " rank " << r;
  EXPECT_EQ(u.per_rank.size(), ranks) << job << ": no rank the job does not have";
  EXPECT_TRUE(u.contiguous) << job << ": the checkpoint intervals tile [0, " << total_steps << ")";
}

}  // namespace custody::testing
