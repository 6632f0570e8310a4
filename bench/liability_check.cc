// What the liability check costs a prediction (issue 15): taint and purposes are derived
// from the custody store at every call (storage/liability.h, check_use), never cached, so
// that a revocation takes effect at the next call. Measured in one process on a RocksDB
// store, against the whole recorded call it guards (ServingState::predict: the same check,
// the model's evaluation, and the usage record written in one synced batch), for a model
// at the end of a chain of DEPTH fine-tunings (each run on a data set of its own, one of
// them revoked and overridden for the purpose, the purposes declared on every one: the
// check walks the whole chain). Rounds alternate the two, and the medians of each round's
// ratio are printed with the per-call times. "cached" is what serving pays between lineage
// writes (UseCheckCache: a read of the lineage log's head); "check" what it pays after one.
//   build/bin/custody-bench-liability [CALLS] [ROUNDS]      (defaults 300 and 5)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "actors/custody_recorder.h"
#include "actors/serving_state.h"
#include "storage/liability.h"

using namespace custody;
using SteadyClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// A chain of `depth` runs, each fine-tuned from the previous one's final checkpoint, of a
// 784-64-10 MLP; returns the last model's label.
Result<std::string> record_chain(actors::CustodyRecorder& recorder, int depth, const std::string& prefix) {
  std::string init;
  std::string label;
  for (int i = 0; i < depth; ++i) {
    const std::string name = prefix + std::to_string(i);
    const std::string text = "[job]\nname = \"" + name + "\"\nworkers = 1\n[model]\ntype = \"mlp\"\nhidden = [64]\n"
                             "[data]\nkind = \"synthetic\"\npurposes = [\"research\", \"evaluation\"]\n"
                             "consent_purposes = [\"research\"]\n[data.synthetic]\ntrain_samples = 100\n"
                             "features = 784\nclasses = 10\n";
    CUSTODY_ASSIGN_OR_RETURN(JobSpec spec, parse_job_spec(text, name + ".toml"));
    msg::JobStatus job;
    job.job_id = "job-" + prefix + std::to_string(1000 + i);
    job.name = name;
    job.submitter = "bench";
    char hash[65];
    std::snprintf(hash, sizeof(hash), "%064d", 1000 * depth + i);
    actors::DatasetInfo data{hash, "tr", "te", 100, 10};
    CUSTODY_RETURN_IF_ERROR(recorder.job_submitted(job, spec, data, {784, 64, 10}, init));
    storage::CheckpointSpec c;
    c.job = job.job_id;
    c.step = 10;
    c.final = true;
    c.parent = init;
    CUSTODY_ASSIGN_OR_RETURN(init, recorder.checkpoint(job, {784, 64, 10}, std::vector<float>(784 * 64 + 64 + 64 * 10 + 10, 0.01f), c, {}));
    job.state = msg::JobState::kCompleted;
    CUSTODY_RETURN_IF_ERROR(recorder.job_ended(job, init));
    label = name + "@1";
  }
  return label;
}

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 300;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const fs::path dir = fs::temp_directory_path() / ("custody-bench-liability-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto opened = storage::CustodyStore::open(dir.string(), storage::OpenMode::kReadWrite);
  if (!opened.is_ok()) {
    std::fprintf(stderr, "%s\n", opened.status().to_string().c_str());
    return 2;
  }
  storage::CustodyStore& store = *opened.value();
  actors::CustodyRecorder recorder(&store);
  actors::ServingOptions options;
  options.receipts = false;  // no signing key here; receipts are bench/serving.sh's to measure
  actors::ServingState serving(&store, options);
  std::printf("%-6s %14s %14s %14s %12s %12s\n", "depth", "check us", "cached us", "call us", "check/call",
              "cached/call");
  for (int depth : {1, 4, 16}) {
    auto label = record_chain(recorder, depth, "d" + std::to_string(depth) + "-");
    if (!label.is_ok()) {
      std::fprintf(stderr, "%s\n", label.status().to_string().c_str());
      return 1;
    }
    // One revocation on the chain's first data set, overridden for the purpose the calls give:
    // the check finds the taint, then the override, then every purpose clause.
    const std::string first = "d" + std::to_string(depth) + "-0@1";
    auto checkpoint = storage::resolve_checkpoint(store, *label);
    auto first_checkpoint = storage::resolve_checkpoint(store, first);
    std::string dataset;
    {
      auto consumed = store.relations(store.entity(*first_checkpoint).value()->body.value("job", std::string()),
                                      storage::CustodyStore::Direction::kOut, "consumed");
      dataset = consumed.value().front().body.value("to", std::string());
    }
    auto rev = storage::liability::record_revocation(store, dataset, {1, 2}, "bench", "principal:bench");
    auto o = storage::liability::record_override(store, *checkpoint, *label, rev->value("id", std::string()),
                                                 "research", "bench", "principal:bench");
    if (!o.is_ok()) {
      std::fprintf(stderr, "%s\n", o.status().to_string().c_str());
      return 1;
    }
    msg::Predict p{*label, "bench", 1, 784, std::vector<float>(784, 0.5f), "research"};
    if (auto warm = serving.predict(p); !warm.is_ok()) {
      std::fprintf(stderr, "%s\n", warm.status().to_string().c_str());
      return 1;
    }
    std::vector<double> check_us, cached_us, call_us, ratios, cached_ratios;
    storage::liability::UseCheckCache cache;
    for (int r = 0; r < rounds; ++r) {
      auto t0 = SteadyClock::now();
      for (int i = 0; i < calls; ++i) {
        Status s = storage::liability::check_use(store, *checkpoint, *label, "research", false);
        if (!s.is_ok()) {
          std::fprintf(stderr, "%s\n", s.to_string().c_str());
          return 1;
        }
      }
      auto tc = SteadyClock::now();
      for (int i = 0; i < calls; ++i) {
        if (!cache.check(store, *checkpoint, *label, "research", false).is_ok()) return 1;
      }
      auto t1 = SteadyClock::now();
      cached_us.push_back(std::chrono::duration<double, std::micro>(t1 - tc).count() / calls);
      for (int i = 0; i < calls; ++i) {
        if (auto reply = serving.predict(p); !reply.is_ok()) return 1;
      }
      auto t2 = SteadyClock::now();
      const double check = std::chrono::duration<double, std::micro>(tc - t0).count() / calls;
      const double call = std::chrono::duration<double, std::micro>(t2 - t1).count() / calls;
      check_us.push_back(check);
      call_us.push_back(call);
      ratios.push_back(check / call);
      cached_ratios.push_back(cached_us.back() / call);
    }
    std::printf("%-6d %14.1f %14.1f %14.1f %12.3f %12.4f\n", depth, median(check_us), median(cached_us),
                median(call_us), median(ratios), median(cached_ratios));
  }
  fs::remove_all(dir);
  return 0;
}
