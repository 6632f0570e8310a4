// What encryption at rest costs, in one process on a real RocksDB store: writing a
// checkpoint of the default model (784-256-128-10) with Adam's state (three tensors of
// 235,146 floats each, 2.8 MB; one synced batch) and reading it back with every hash
// checked, with its tensors stored in clear and sealed under a store key (AES-256-GCM),
// alternating, CHECKPOINTS times each; `verify()` of the whole store with and without the
// key; and a local backup of the store (RocksDB's BackupEngine), in MB/s.
// Prints JSON: the medians in ms and the ratios sealed / clear.
//   build/bin/custody-bench-at-rest [CHECKPOINTS]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>

#include "storage/checkpoint.h"
#include "storage/store_key.h"

using namespace custody;
using SteadyClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double ms_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void check(const Status& s, const char* what) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.to_string().c_str());
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int checkpoints = argc > 1 ? std::atoi(argv[1]) : 20;
  const Model model({784, 256, 128, 10});
  const fs::path dir = fs::temp_directory_path() / ("custody-bench-at-rest-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto opened = storage::CustodyStore::open((dir / "store").string(), storage::OpenMode::kReadWrite);
  check(opened.status(), "open");
  auto& store = *opened.value();
  auto keys = storage::attach_store_keys(store, (dir / "store.store-key").string());
  check(keys.status(), "store key");
  const std::shared_ptr<const storage::StoreKeys> sealing = keys.value();

  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(model.num_parameters());
  storage::OptimizerCheckpoint adam;
  adam.kind = OptimizerConfig::Kind::kAdam;
  adam.state.values.resize(2 * model.num_parameters());
  std::vector<double> write_ms[2], load_ms[2];
  uint64_t step = 0;
  for (int i = 0; i < checkpoints; ++i) {
    for (int sealed = 0; sealed < 2; ++sealed) {  // alternating: clear, sealed, clear, ...
      for (float& v : values) v = normal(rng);
      for (float& v : adam.state.values) v = normal(rng);
      adam.state.steps = ++step;
      store.set_keys(sealed ? sealing : nullptr);
      auto t0 = SteadyClock::now();
      storage::Batch b("checkpoint");
      auto id = storage::add_checkpoint(b, model, values, {"job-bench", 0, step, 1, "", false}, &adam,
                                        store.keys());
      check(id.status(), "checkpoint");
      check(store.write(b), "write");
      write_ms[sealed].push_back(ms_since(t0));
      t0 = SteadyClock::now();
      storage::json manifest;
      auto loaded = storage::load_checkpoint(store, id.value(), &manifest);
      check(loaded.status(), "load");
      auto state = storage::load_optimizer_state(store, manifest);
      check(state.status(), "load optimizer state");
      load_ms[sealed].push_back(ms_since(t0));
      if (loaded.value() != values) check(internal_error("the weights came back different"), "load");
    }
  }
  store.set_keys(nullptr);
  auto t0 = SteadyClock::now();
  auto without = store.verify();
  const double verify_without_ms = ms_since(t0);
  check(without.status(), "verify");
  store.set_keys(sealing);
  t0 = SteadyClock::now();
  auto with = store.verify();
  const double verify_with_ms = ms_since(t0);
  check(with.status(), "verify");
  if (!with->ok || !without->ok) check(data_loss(with->problem + without->problem), "verify");

  t0 = SteadyClock::now();
  auto backup = store.backup((dir / "backups").string());
  const double backup_ms = ms_since(t0);
  check(backup.status(), "backup");

  const double w0 = median(write_ms[0]), w1 = median(write_ms[1]), l0 = median(load_ms[0]),
               l1 = median(load_ms[1]);
  std::printf(
      "{\"benchmark\": \"store_at_rest\", \"model\": \"784-256-128-10 with adam state\", "
      "\"checkpoints_each\": %d,\n"
      " \"write_ms_clear\": %.2f, \"write_ms_sealed\": %.2f, \"write_ratio_sealed_clear\": %.3f,\n"
      " \"load_ms_clear\": %.2f, \"load_ms_sealed\": %.2f, \"load_ratio_sealed_clear\": %.3f,\n"
      " \"verify_ms_without_key\": %.1f, \"verify_ms_with_key\": %.1f, \"tensors_opened\": %llu,\n"
      " \"backup_mb\": %.1f, \"backup_ms\": %.1f, \"backup_mb_per_s\": %.0f}\n",
      checkpoints, w0, w1, w1 / w0, l0, l1, l1 / l0, verify_without_ms, verify_with_ms,
      static_cast<unsigned long long>(with->tensors_opened), backup->bytes / 1e6, backup_ms,
      backup->bytes / 1e6 / (backup_ms / 1000));
  store.set_keys(nullptr);
  opened.value().reset();
  fs::remove_all(dir);
  return 0;
}
