// The coordinator's answers to `custody attribute` (an attribute request): which training
// records of the run behind a prediction explain it, or a model's records by
// self-influence (storage/attribution.h, TracInCP). The coordinator's actor authorizes
// the request and hands it here, one request at a time, on a detached actor of its own, so
// neither predictions nor scheduling queue behind it.
//
// What runs where: this actor prepares the question from the store (the prediction, the
// input's hash, the checkpoints and their weights, the data set read again and checked),
// then the scoring runs on the cluster (actors/attribution_scatter.h): each live worker
// scores one range of the training set (actors/record_scoring.h) and answers with its top
// K; this actor merges them. A range whose worker fails, times out or is declared dead, or
// whose answer fails the coordinator's check, is scored here; with no worker alive,
// everything is, on two threads. The answer's "scored_by" names who scored which range and
// why the coordinator did, if it did; the usage record keeps the answer, scored_by included.
// Each answer is recorded in the usage log (who asked, for what purpose, about which
// prediction and input hash, and the answer's proponents and opponents) before it is sent;
// an answer that cannot be recorded is not sent.
// Thread-safety: the actor's state is its own; the store serializes writes and allows
// reads beside them; WorkerDirectory is shared with the coordinator actor under a mutex.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "actors/attribution_scatter.h"
#include "actors/caf_types.h"
#include "actors/socket_bridge.h"
#include "core/signing.h"
#include "storage/custody_store.h"

namespace custody::actors {

// The live workers, as the coordinator actor last saw them (it sets them every tick and
// before it hands over a request).
class WorkerDirectory {
 public:
  void set(std::vector<LiveWorker> workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    workers_ = std::move(workers);
  }
  std::vector<LiveWorker> get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return workers_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<LiveWorker> workers_;
};

struct AttributionOptions {
  // The longest wait for the workers' answers; then the ranges still unanswered are scored
  // here. Default: 60 s (Fashion-MNIST's 60,000 records take a worker about a second).
  std::chrono::milliseconds worker_timeout{60000};
  unsigned threads = 2;  // the coordinator's own scoring threads
};

// `store` (null: the coordinator keeps none, and says so to each request) and `key`
// (signs each answer's receipt; null: none) outlive the actor system. `workers` null: the
// coordinator scores everything itself.
caf::actor spawn_attribution(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                             const SigningKey* key, std::shared_ptr<const WorkerDirectory> workers = nullptr,
                             AttributionOptions options = {});

}  // namespace custody::actors
