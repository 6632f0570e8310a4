// The custody store at scale: builds a real RocksDB store holding a realistic lineage (a
// principal, a data set, a job spec, a run with three checkpoints of the default MLP and
// their contributions, a model version) and N usage records of predictions, written as the
// serving actor writes them but BATCH records per write (one synced write per record would
// take hours for a million; the records, index entries and Merkle nodes are the same).
// Then it times, as medians of REPEATS runs, what an auditor asks of such a store:
// verify() (and the process's peak RSS after it), usage of the model, trace of a
// prediction near the end and one near the start, and impact of the data set. Prints JSON.
//   custody-bench-store build STORE [--records N] [--batch B] [--rows R]
//   custody-bench-store measure STORE [--repeats K]
// bench/store_scale.sh runs both and times the CLI on the same store.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/model.h"
#include "storage/checkpoint.h"
#include "storage/custody_store.h"
#include "storage/queries.h"

using namespace custody;
using storage::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

const char* kModel = "fashion-mlp";
const char* kJob = "job-0000000000bench";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "custody-bench-store: %s\n", what.c_str());
  std::exit(1);
}

void check(const Status& s, const char* what) {
  if (!s.is_ok()) die(std::string(what) + ": " + s.to_string());
}

// The prediction ids of usage record `i` (from 0): as the serving actor names them.
std::string call_hex(uint64_t i) {
  char call[24];
  std::snprintf(call, sizeof(call), "%016llx", static_cast<unsigned long long>(i * 0x9E3779B97F4A7C15ull));
  return call;
}

void build(const std::string& path, uint64_t records, uint64_t batch_size, uint32_t rows) {
  auto opened = storage::CustodyStore::open(path, storage::OpenMode::kReadWrite);
  if (!opened.is_ok()) die(opened.status().to_string());
  auto& store = *opened.value();
  const auto t0 = SteadyClock::now();
  const std::vector<int> layers{784, 256, 128, 10};
  const std::string dataset = "dataset:" + sha256_hex("fashion-mnist bench");
  {
    storage::Batch b("job submitted");
    b.entity("principal", "principal:alice", {{"name", "alice"}});
    b.entity("dataset", dataset,
             {{"name", "fashion-mnist"}, {"sha256", dataset.substr(8)}, {"train_samples", 60000},
              {"test_samples", 10000}, {"source", "idx"}});
    b.entity("jobspec", "jobspec:" + sha256_hex("spec"), {{"sha256", sha256_hex("spec")}, {"text", "[job]\n"}});
    b.entity("run", kJob,
             {{"name", kModel}, {"submitter", "alice"}, {"submitted_at_ms", 1}, {"layer_sizes", layers},
              {"epochs", 3}, {"workers", 2}, {"batch_size", 64}, {"consistency", "bsp"}});
    b.relation("submitted_by", kJob, "principal:alice");
    b.relation("consumed", kJob, dataset,
               {{"train_samples", 60000}, {"name", "fashion-mnist"}, {"license", "MIT"},
                {"consent", json::array({"research"})}, {"declared_by", "principal:alice"}});
    b.relation("specified_by", kJob, "jobspec:" + sha256_hex("spec"));
    check(store.write(b), "lineage");
  }
  Model model(layers);
  std::vector<float> values(model.num_parameters());
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::string parent, final_checkpoint;
  for (uint32_t epoch = 1; epoch <= 3; ++epoch) {
    for (float& v : values) v = normal(rng);
    storage::CheckpointSpec spec{kJob, 0, epoch * 937ull, epoch, parent, epoch == 3};
    storage::Batch b(spec.final ? "final checkpoint" : "checkpoint");
    auto added = storage::add_checkpoint(b, model, values, spec);
    check(added.status(), "checkpoint");
    const std::string id = added.value();
    for (int rank = 0; rank < 2; ++rank) {
      b.relation("contributed", "node:worker-" + std::to_string(rank), id,
                 {{"run", kJob}, {"rank", rank}, {"steps", 937}, {"samples", 937 * 64}, {"accepted", 937},
                  {"rejected", 0}, {"update_norm_sum", 12.5}, {"staleness_max", 0},
                  {"shard", {{"dataset", dataset}, {"index", rank}, {"begin", rank * 30000},
                             {"end", (rank + 1) * 30000}}}});
    }
    check(store.write(b), "checkpoint");
    parent = final_checkpoint = id;
  }
  {
    storage::Batch b("job ended");
    b.event({{"event", "run_ended"}, {"run", kJob}, {"state", "completed"}, {"final_checkpoint", final_checkpoint}});
    const std::string version = std::string("model:") + kModel + "@1";
    b.entity("model_version", version,
             {{"name", kModel}, {"version", 1}, {"checkpoint", final_checkpoint}, {"run", kJob},
              {"test_accuracy", 0.87}});
    b.relation("version_of", version, final_checkpoint);
    check(store.write(b), "model version");
  }
  const std::string root_hash = sha256_hex("weights");
  for (uint64_t i = 0; i < records;) {
    storage::Batch b("predict");
    for (uint64_t n = 0; n < batch_size && i < records; ++n, ++i) {
      const std::string call = call_hex(i);
      json ids = json::array(), predictions = json::array();
      for (uint32_t row = 0; row < rows; ++row) {
        const std::string id = "pred-" + call + "-" + std::to_string(row);
        ids.push_back(id);
        predictions.push_back({{"id", id}, {"class", (i + row) % 10}, {"probability", 0.8125}});
      }
      b.usage({{"call_id", "call-" + call},
               {"action", "predict"},
               {"target", final_checkpoint},
               {"model", std::string("model:") + kModel + "@1"},
               {"principal", "principal:consumer-" + std::to_string(i % 8)},
               {"purpose", "benchmark"},
               {"rows", rows},
               {"input_sha256", sha256_hex(call)},
               {"root_hash", root_hash},
               {"prediction_ids", ids},
               {"predictions", predictions},
               {"success", true}});
    }
    check(store.write(b), "usage");
    if (i % 100000 == 0) std::fprintf(stderr, "  %llu usage records\n", static_cast<unsigned long long>(i));
  }
  std::printf("{\"built\": \"%s\", \"usage_records\": %llu, \"records_per_write\": %llu, \"rows_per_record\": %u, "
              "\"seconds\": %.1f}\n",
              path.c_str(), static_cast<unsigned long long>(records), static_cast<unsigned long long>(batch_size),
              rows, std::chrono::duration<double>(SteadyClock::now() - t0).count());
}

double median_ms(int repeats, const std::function<void()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = SteadyClock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

void measure(const std::string& path, int repeats) {
  auto opened = storage::CustodyStore::open(path, storage::OpenMode::kReadShadow);
  if (!opened.is_ok()) die(opened.status().to_string());
  const auto& store = *opened.value();
  auto head = store.tree_head("usage");
  if (!head.is_ok()) die(head.status().to_string());
  const uint64_t n = head->size;
  if (n == 0) die("the store holds no usage records: run `custody-bench-store build` first");
  auto first = store.log_record("usage", 1), last = store.log_record("usage", n);
  if (!first.is_ok() || !last.is_ok()) die("cannot read the first and last usage records");
  const std::string early = first->body["prediction_ids"][0], late = last->body["prediction_ids"][0];
  const std::string dataset = "dataset:" + sha256_hex("fashion-mnist bench");

  // verify() first, so that the peak RSS read after it is verify's (plus opening).
  const int verify_repeats = std::max(1, std::min(repeats, 3));
  uint64_t checked = 0;
  const double verify_ms = median_ms(verify_repeats, [&] {
    auto r = store.verify();
    if (!r.is_ok() || !r->ok) die("verify failed: " + (r.is_ok() ? r->problem : r.status().to_string()));
    checked = r->records_checked + r->index_entries_checked;
  });
  const long verify_rss = peak_rss_mb();
  json answer;
  const double usage_ms = median_ms(repeats, [&] {
    auto r = storage::usage(store, kModel);
    if (!r.is_ok()) die("usage: " + r.status().to_string());
    answer = std::move(r).value();
  });
  const size_t listed = answer["records"].size();
  const double trace_late_ms = median_ms(repeats, [&] {
    if (!storage::trace(store, late).is_ok()) die("trace " + late);
  });
  const double trace_early_ms = median_ms(repeats, [&] {
    if (!storage::trace(store, early).is_ok()) die("trace " + early);
  });
  const double impact_ms = median_ms(repeats, [&] {
    if (!storage::impact(store, dataset).is_ok()) die("impact " + dataset);
  });
  std::printf("{\"usage_records\": %llu, \"repeats\": %d, \"verify_repeats\": %d, \"verify_ms\": %.1f, "
              "\"verify_entries_checked\": %llu, \"peak_rss_mb_after_verify\": %ld, \"usage_ms\": %.2f, "
              "\"usage_records_listed\": %zu, \"trace_newest_prediction_ms\": %.2f, "
              "\"trace_oldest_prediction_ms\": %.2f, \"impact_ms\": %.2f, \"newest_prediction\": \"%s\", "
              "\"oldest_prediction\": \"%s\", \"dataset\": \"%s\"}\n",
              static_cast<unsigned long long>(n), repeats, verify_repeats, verify_ms,
              static_cast<unsigned long long>(checked), verify_rss, usage_ms, listed, trace_late_ms, trace_early_ms,
              impact_ms, late.c_str(), early.c_str(), dataset.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || (std::strcmp(argv[1], "build") != 0 && std::strcmp(argv[1], "measure") != 0)) {
    std::fprintf(stderr,
                 "usage: custody-bench-store build STORE [--records N] [--batch B] [--rows R]\n"
                 "       custody-bench-store measure STORE [--repeats K]\n");
    return 2;
  }
  uint64_t records = 1000000, batch = 1000;
  uint32_t rows = 1;
  int repeats = 5;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const uint64_t v = std::stoull(argv[i + 1]);
    if (flag == "--records") records = v;
    else if (flag == "--batch") batch = std::max<uint64_t>(1, v);
    else if (flag == "--rows") rows = static_cast<uint32_t>(std::max<uint64_t>(1, v));
    else if (flag == "--repeats") repeats = static_cast<int>(std::max<uint64_t>(1, v));
    else die("unknown option " + flag);
  }
  if (std::strcmp(argv[1], "build") == 0) build(argv[2], records, batch, rows);
  else measure(argv[2], repeats);
  return 0;
}
