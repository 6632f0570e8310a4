// One `custody attribute`'s scoring spread over the cluster (issue 15: "each worker scores
// the records of its shard against the checkpoints, the coordinator merges the top K"), as
// a plain state machine the attribution actor (actors/attribution_actor.h) drives:
//   - the training set is cut into one range per live worker (partition_range, as the
//     run's shards are cut: with as many workers as the run had, each range is a shard, so
//     a worker that holds only its shard in its records cache can score it);
//   - each worker gets a scoreRecords (the question, the range and the range's digests)
//     and answers with the range's top K (actors/record_scoring.h);
//   - a range whose worker fails, times out, leaves the cluster, or answers something that
//     does not hold up is scored here instead, and the answer says so;
//   - trust: a worker could lie about scores. Each answer is checked: its range and size,
//     its lists' order, and the score of its first proponent and first opponent (or first
//     record), which the coordinator computes itself (two records: microseconds). A range
//     that fails the check is rescored here and the worker named. A worker that leaves a
//     record out of its top K, or gives an honest first entry and false later ones, is not
//     caught (docs/ARCHITECTURE.md, "Training-data attribution", threat model).
// The merged answer is exactly the top K of the whole (core/tracin_ranking.h: equal scores
// by index), whichever node scored which range.
// Thread-safety: none; owned by the attribution actor.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "actors/outgoing.h"
#include "storage/attribution.h"

namespace custody::actors {

// A live worker as the coordinator knows it: its node id and its peer on the ROUTER.
struct LiveWorker {
  std::string id, peer;
};

// The request ids of scoreRecords carry this bit, so the coordinator actor hands their
// replies (recordScores, or an error) to the attribution actor.
constexpr uint64_t kScoringRequestBit = uint64_t{1} << 62;

class ScoringRound {
 public:
  // `workers` empty, or `here` non-empty (why the caller wants it): everything is scored
  // here (finish()), and the answer says why. first_request_id: the round's requests take
  // ids from it on (kScoringRequestBit set).
  ScoringRound(const storage::AttributionQuestion& q, std::vector<LiveWorker> workers, uint64_t first_request_id,
               std::string here = "");

  // The scoreRecords to send, one per worker.
  Outbox requests() const;
  // A reply from `peer`: recordScores or an error about one of this round's requests.
  // Returns false when it is none of this round's (a late answer of an earlier round).
  bool on_reply(const std::string& peer, const msg::Envelope& reply);
  bool done() const;
  // Ranges of workers no longer in `live` (the coordinator declared them dead) fail now.
  void forget_gone(const std::vector<LiveWorker>& live);
  // Every range still unanswered fails with `why` (the deadline passed).
  void fail_pending(const std::string& why);

  // Scores the failed ranges here, checks and merges every range; `scored_by` lists each
  // range: [{begin, end, by ("worker-1" or "coordinator"), records, elapsed_ms, source,
  // and why, for a range the coordinator scored}].
  Result<RangeRanking> finish(unsigned threads, storage::json* scored_by);

 private:
  struct Range {
    KeyRange records;
    LiveWorker worker;  // empty id: the coordinator's from the start
    uint64_t request_id = 0;
    enum class State { kPending, kAnswered, kFailed } state = State::kPending;
    msg::RecordScores answer;
    std::string why;  // kFailed: what went wrong
  };
  Status check(const Range& r) const;  // an answer against the question (see the header)
  const storage::AttributionQuestion& q_;
  std::vector<Range> ranges_;
  std::string no_workers_;  // why no worker was asked (workers empty)
};

}  // namespace custody::actors
