// Training-data attribution from the custody store: which training records of the run that
// produced a model explain one of its predictions (TracInCP, core/tracin.h), and which
// records have the largest self-influence (mislabelled or anomalous ones).
//
// Everything comes from the store and the data set's files, each checked: the prediction's
// usage record (its call's input SHA-256, which the caller's input must match: the store
// keeps only the hash, so the caller supplies the input again), the answering checkpoint
// and the run that produced it, the run's checkpoints up to that one (each loaded with its
// tensors' hashes checked), its job spec (model, optimizer, learning-rate schedule, epochs,
// workers, batch size, data files), the data set (read again from the files the job named;
// refused unless its content hash is the one the run consumed), and which workers were
// assigned each shard (the `assigned` relations of every attempt).
//
// The checkpoints weighed are the run's checkpoints at or before the answering one's step
// (the later ones did not shape it), one per step (the newest attempt's, when a rollback
// repeated a step). Each is weighed by the mean learning rate the job's schedule gave the
// updates since the checkpoint before it (core/tracin.h, interval_learning_rate).
// A fine-tuned run is scored against its own checkpoints only: the influence of the run it
// started from is not traced.
//
// The work is split in three so that the scoring can run where the records are (issue 15:
// each worker scores its shard): prepare_attribution() asks the store everything above and
// gives the question (core/tracin_ranking.h's TracinQuestion: checkpoints, weights, test
// point) with the run's data set, shards and workers; core's score_records() scores any
// range of records against it, on a worker or here; answer_attribution() turns the merged
// top-K lists (core's merge_rankings) into the answer. attribute() does all three here.
// Thread-safety: the functions read the store (a const CustodyStore is safe to share) and
// hold nothing between calls; the scoring runs on `threads` threads of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <map>
#include <set>

#include "core/dataset.h"
#include "core/job_spec.h"
#include "core/partition.h"
#include "core/tracin_ranking.h"
#include "storage/custody_store.h"

namespace custody::storage {

struct AttributionRequest {
  // Explain a prediction: its id ("pred-…") and the input again (rows x features,
  // row-major, model-scaled: what `custody predict` read). `custody predict` sends an input
  // in calls of batch_rows rows (--batch): the call is the batch [k * batch_rows, + its
  // rows) whose SHA-256 is the one recorded; batch_rows 0: the input is the call's whole.
  std::string prediction_id;
  std::vector<float> inputs;
  uint32_t rows = 0, features = 0, batch_rows = 0;
  // The label the test gradient is taken for; -1: the class the model answered.
  int label = -1;
  // Or, with prediction_id empty: rank the training records of this model's run
  // (NAME, NAME@V or a checkpoint id) by self-influence.
  std::string self_influence_model;
  uint32_t top = 10;     // proponents and opponents listed (self-influence: records)
  unsigned threads = 2;  // scoring threads; 0: one
};

// The answer as JSON (what `custody attribute --json` prints and the usage record keeps):
//   kind ("prediction" | "self_influence"), prediction, call, checkpoint, model, run,
//   dataset, method, test_label and label_source (prediction only), checkpoints
//   [{id, step, learning_rate}], records_scored, elapsed_ms, and
//   proponents / opponents (prediction) or records (self-influence), each entry
//   {dataset, index, label, score, shard, workers}; a record of a CSV table also names its
//   row: file, line (the header is line 1), row ("FILE:LINE") and class (the label's text).
//   For a CSV-trained model the input is raw rows (as sent to predict), standardized here
//   with the run's training statistics before the gradient is taken.
// Errors: an unknown prediction or model (not found); an input whose SHA-256 differs from
// the call's, or of another shape, or a label out of range (invalid argument, naming both
// hashes); a data set whose files no longer hold the bytes the run consumed (failed
// precondition, naming the file set and both hashes); damaged records (data loss).
Result<json> attribute(const CustodyStore& store, const AttributionRequest& request);

// An attribution request prepared from the store, before any record is scored.
struct AttributionQuestion {
  TracinQuestion question;     // what any scorer needs
  json answer;                 // the answer's fields known before scoring
  std::string run, spec_text;  // the run and its job spec's text (its data files)
  JobSpec spec;
  std::string dataset;                                // "dataset:HASH" the run consumed
  DataSplit data;                                     // read again here, its hash checked
  std::vector<KeyRange> shards;                       // the run's shards, by rank
  std::map<uint64_t, std::set<std::string>> workers;  // shard index -> nodes assigned it
  std::chrono::steady_clock::time_point started;      // for elapsed_ms
};
// The checks and errors of attribute(), without the scoring.
Result<AttributionQuestion> prepare_attribution(const CustodyStore& store, const AttributionRequest& request);
// The answer from the merged top-K lists: proponents/opponents or records (each entry with
// its label, shard and workers), records_scored, elapsed_ms.
json answer_attribution(const AttributionQuestion& q, const RangeRanking& merged);

}  // namespace custody::storage
