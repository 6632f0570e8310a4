// A worker's part of `custody attribute` (issue 15: the scoring runs on the cluster): the
// coordinator's scoreRecords names a range of a run's training records, the run's job spec
// and data set, the checkpoints with their TracIn weights and the test point (or
// self-influence); the worker obtains the range's records the way its trainers obtain a
// task's (actors/trainer.h, load_training_range: the job file's paths held to the range's
// digests, else its records cache), scores them (core/tracin_ranking.h) and answers with
// the range's top K (recordScores). The coordinator merges the ranges and may check them
// (actors/attribution_actor.h).
// Thread-safety: score_request holds nothing between calls; it runs on `threads` threads.
#pragma once

#include "actors/records_fetcher.h"
#include "protocols/messages.h"

namespace custody::actors {

// Errors: a spec that does not parse, a request without checkpoints or with K outside
// [1, 10000], records this node cannot obtain or whose bytes differ from the digests
// (naming the file), checkpoints that do not fit the model (invalid argument).
// records: where a node without the job file's paths looks for the range (null: nowhere).
Result<msg::RecordScores> score_request(const msg::ScoreRecords& request, RecordsFetcher* records,
                                        unsigned threads);

}  // namespace custody::actors
