// What the operator tests (operator_test.cc, shipping_test.cc) share: reading a job's state
// and the store's events as a user would (the data set and its job: idx_files.h).
// Not thread-safe; for one test at a time.
#pragma once

#include <nlohmann/json.hpp>

#include <set>

#include "tests/integration/cluster.h"
#include "tests/integration/idx_files.h"
#include "tests/raw_store.h"

namespace custody::testing {

using nlohmann::json;

inline json status_of(LocalCluster& c, const std::string& job) {
  CliResult r = c.cli({"status", job, "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? json::parse(r.out) : json();
}

inline std::string submit(LocalCluster& c, const std::string& text) {
  CliResult r = c.cli({"submit", c.write_job("job.toml", text).string(), "--as", "alice"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  return id;
}

// Waits until the job's state is one of `states`; returns its status.
inline json wait_for_state(LocalCluster& c, const std::string& job, const std::set<std::string>& states,
                    std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  json s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = status_of(c, job);
    if (s.is_object() && states.count(s.value("state", ""))) return s;
    std::this_thread::sleep_for(100ms);
  }
  ADD_FAILURE() << job << " did not reach the state in time: " << s.dump(2);
  return s;
}

// The lineage records of one event, read from the store's files (coordinator stopped).
inline std::vector<json> events(const fs::path& store, const std::string& event) {
  RawStore raw(store.string());
  std::vector<json> out;
  for (const auto& [key, value] : raw.scan("lineage")) {
    json record = json::parse(value, nullptr, false);
    if (record.is_discarded()) continue;
    const json body = record.contains("body") ? record["body"] : record;
    if (body.value("event", "") == event) out.push_back(body);
  }
  return out;
}

}  // namespace custody::testing
