// What the custody record says about the cluster, read back for a coordinator that
// restarts: the runs in submission order, with how far each got, and the nodes that had
// registered. It reads exactly what actors/custody_recorder.cc writes, with the names of
// storage/lineage_vocabulary.h, and lives beside the recorder so that writer and reader
// change together (tests/actors/custody_replay_test.cc writes through the recorder and
// reads back through here). CoordinatorState::restore turns the result into jobs.
// Records of unknown kinds are passed over; a record of a known kind that is damaged is a
// data-loss error (the store checks each record's schema as it reads it).
// Thread-safety: a pure function of the store's contents.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "protocols/messages.h"
#include "storage/custody_store.h"

namespace custody::actors {

struct ReplayedNode {
  std::string id, host, address;
  std::string principal;  // who registered it (security curve or token), or empty
  msg::NodeRole role = msg::NodeRole::kWorker;
  // Its newest registration or deregistration: when (the record's time, wall ms; 0 if
  // none is recorded), and whether it was a deregistration (the node left the cluster).
  int64_t last_event_ms = 0;
  bool left = false;
};

// How a run ended (its last run_ended, unless it was resumed after that).
struct ReplayedEnd {
  msg::JobState state = msg::JobState::kFailed;  // an unknown state name reads as failed
  std::string message, final_checkpoint;
  double test_accuracy = -1;
  std::vector<double> accuracy_history;  // as the end record lists it
  uint64_t steps = 0;
  int64_t at_ms = 0;
};

struct ReplayedRun {
  std::string id;
  storage::json entity;  // the run's entity record body (name, submitter, epochs, ...)
  std::string spec_text;  // the job file it was submitted with
  std::string init_from;  // the checkpoint it was fine-tuned from, if any
  std::string dataset_hash;    // of the data set it consumed (its id without "dataset:")
  uint64_t train_samples = 0;  // of the data set it consumed
  // Attempts started (the next attempt's number) and rollbacks recorded.
  uint32_t attempts = 0, recoveries = 0;
  std::vector<double> accuracy;  // by epoch - 1, the newest evaluation of each epoch
  double test_loss = 0;          // of the newest evaluation
  std::optional<ReplayedEnd> end;
  // Its newest checkpoint (highest step), if any.
  std::string newest_checkpoint;
  uint64_t newest_step = 0;
  bool newest_final = false;
};

struct Replayed {
  std::vector<ReplayedRun> runs;  // in submission order (the log's, not the clock's)
  std::vector<ReplayedNode> nodes;
  std::vector<std::string> warnings;  // what was passed over, and why
};

Result<Replayed> replay(const storage::CustodyStore& store);

}  // namespace custody::actors
