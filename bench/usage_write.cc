// What recording a served prediction costs the coordinator's usage writer, in one process:
// groups of G prediction records (batch 1, one row each, as bench/serving.sh's clients send)
// written through CustodyRecorder::predictions_written into a RocksDB store on this disk,
// each group's sync waited on. For each group size it reports the writer thread's CPU per
// record for the write (JSON, hashes, Merkle tree, index entries, RocksDB's memtable and log
// write) and for the sync (fdatasync's kernel time), and the ratio of the per-record write
// CPU at each size to that at the first size (1): what group commit amortizes. CPU time
// of the thread, not wall time, so that other work on the machine moves it less.
//   build/bin/custody-bench-usage [GROUPS_PER_SIZE] [RECEIPTS 0|1] [SIZES, default 1,2,4,8,16]
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "actors/custody_recorder.h"
#include "core/signing.h"
#include "storage/lineage_vocabulary.h"

using namespace custody;

namespace {
double thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

// A call as ServingState::prepare makes it (actors/serving_state.cc), one row.
actors::ServedCall call(uint64_t n) {
  actors::ServedCall c;
  char token[17];
  std::snprintf(token, sizeof(token), "%016llx", static_cast<unsigned long long>(n * 2654435761u));
  c.call_id = storage::lineage::call_id(token);
  c.checkpoint = std::string(64, 'c');
  c.model = "fashion-mlp@1";
  c.principal = "bench-client";
  c.purpose = "benchmark";
  c.rows = 1;
  c.input_sha256 = std::string(64, 'a');
  c.root_hash = std::string(64, 'r');
  c.prediction_ids = {storage::lineage::prediction_id(token, 0)};
  c.predictions = storage::json::array({{{"id", c.prediction_ids[0]}, {"class", 7}, {"probability", 0.93125f}}});
  return c;
}
}  // namespace

int main(int argc, char** argv) {
  const int groups = argc > 1 ? std::atoi(argv[1]) : 2000;
  const bool receipts = argc > 2 && std::atoi(argv[2]) != 0;
  std::vector<size_t> sizes;
  for (std::string rest = argc > 3 ? argv[3] : "1,2,4,8,16"; !rest.empty();) {
    const size_t comma = rest.find(',');
    sizes.push_back(std::max<size_t>(1, std::strtoul(rest.substr(0, comma).c_str(), nullptr, 10)));
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
  }
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("custody-bench-usage-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto store = storage::CustodyStore::open(dir.string(), storage::OpenMode::kReadWrite);
  if (!store.is_ok()) {
    std::fprintf(stderr, "%s\n", store.status().to_string().c_str());
    return 2;
  }
  auto key = SigningKey::from_seed_hex(std::string(64, '7'));  // a bench's key: receipts cost the same
  if (!key.is_ok()) return 2;
  actors::CustodyRecorder recorder(store.value().get(), &key.value());
  uint64_t n = 0;
  double single_write_us = 0;
  for (size_t size : sizes) {
    double write_us = 0, sync_us = 0;
    for (int g = 0; g < groups; ++g) {
      std::vector<actors::ServedCall> calls;
      for (size_t i = 0; i < size; ++i) calls.push_back(call(++n));
      const double t0 = thread_cpu_us();
      auto pending = recorder.predictions_written(calls, receipts);
      const double t1 = thread_cpu_us();
      if (!pending.is_ok()) {
        std::fprintf(stderr, "%s\n", pending.status().to_string().c_str());
        return 2;
      }
      Status synced = pending->durable->wait();
      const double t2 = thread_cpu_us();
      if (!synced.is_ok()) {
        std::fprintf(stderr, "%s\n", synced.to_string().c_str());
        return 2;
      }
      write_us += t1 - t0;
      sync_us += t2 - t1;
    }
    const double records = static_cast<double>(groups) * static_cast<double>(size);
    if (single_write_us == 0) single_write_us = write_us / records;  // the first size is the baseline
    std::printf(
        "{\"group\": %zu, \"receipts\": %s, \"write_cpu_us_per_record\": %.1f, \"sync_cpu_us_per_record\": %.1f, "
        "\"write_vs_first_size\": %.3f}\n",
        size, receipts ? "true" : "false", write_us / records, sync_us / records,
        write_us / records / single_write_us);
  }
  store.value().reset();
  fs::remove_all(dir);
  return 0;
}
