#include "actors/attribution_scatter.h"

#include <cmath>

#include "core/dataset.h"
#include "core/partition.h"

namespace custody::actors {
namespace {

constexpr char kSelf[] = "coordinator";

std::string range_name(const KeyRange& r) {
  return "records [" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")";
}

bool close_enough(float reported, float computed) {
  // The same float operations in another order (chunking, threads) differ in the last bits.
  return std::abs(reported - computed) <= 1e-4f * std::max(1.0f, std::abs(computed));
}

}  // namespace

ScoringRound::ScoringRound(const storage::AttributionQuestion& q, std::vector<LiveWorker> workers,
                           uint64_t first_request_id, std::string here)
    : q_(q), no_workers_(std::move(here)) {
  const auto n = static_cast<uint64_t>(q.data.train.count);
  if (!no_workers_.empty()) {
  } else if (workers.empty()) {
    no_workers_ = "no worker is alive";
  } else if (n < workers.size()) {
    no_workers_ = "the training set has fewer records than there are workers";
  }
  if (!no_workers_.empty() || n == 0) {
    Range all;
    all.records = {0, n};
    all.state = Range::State::kFailed;
    all.why = no_workers_;
    ranges_.push_back(std::move(all));
    return;
  }
  auto cut = partition_range(n, static_cast<uint32_t>(workers.size()));
  for (size_t i = 0; i < workers.size(); ++i) {
    Range r;
    r.records = cut.value()[i];
    r.worker = std::move(workers[i]);
    r.request_id = kScoringRequestBit | (first_request_id + i);
    ranges_.push_back(std::move(r));
  }
}

Outbox ScoringRound::requests() const {
  Outbox out;
  const TracinQuestion& question = q_.question;
  for (const Range& r : ranges_) {
    if (r.worker.id.empty()) continue;
    msg::ScoreRecords m;
    m.spec_text = q_.spec_text;
    m.dataset_hash = q_.data.version_hash;
    m.begin = r.records.begin;
    m.end = r.records.end;
    m.digest = records_digest(q_.data.train, static_cast<int64_t>(r.records.begin), static_cast<int64_t>(r.records.end));
    m.train_records = static_cast<uint64_t>(q_.data.train.count);
    for (int size : question.layer_sizes) m.layer_sizes.push_back(static_cast<uint32_t>(size));
    m.activation = to_string(question.activation);
    m.architecture = question.architecture;
    for (size_t c = 0; c < question.params.size(); ++c) m.checkpoints.push_back({question.params[c], question.rates[c]});
    m.self_influence = question.self_influence;
    m.test_input = question.test_input;
    m.test_label = question.test_label;
    m.top = question.top;
    msg::Envelope e;
    e.sender = kSelf;
    e.job_id = q_.run;
    e.request_id = r.request_id;
    e.body = std::move(m);
    out.push_back({r.worker.peer, std::move(e)});
  }
  return out;
}

bool ScoringRound::on_reply(const std::string& peer, const msg::Envelope& reply) {
  for (Range& r : ranges_) {
    if (r.worker.id.empty() || r.request_id != reply.request_id) continue;
    // Only the worker asked may answer for its range.
    if (r.worker.peer != peer || r.state != Range::State::kPending) return true;
    if (const auto* scores = reply.get<msg::RecordScores>()) {
      r.answer = *scores;
      r.state = Range::State::kAnswered;
      if (Status s = check(r); !s.is_ok()) {
        r.state = Range::State::kFailed;
        r.why = "its answer was refused: " + s.message();
      }
    } else if (const auto* err = reply.get<msg::Error>()) {
      r.state = Range::State::kFailed;
      r.why = "it failed: " + err->message;
    } else {
      r.state = Range::State::kFailed;
      r.why = std::string("it answered with a ") + msg::body_name(reply.body);
    }
    return true;
  }
  return false;
}

bool ScoringRound::done() const {
  for (const Range& r : ranges_)
    if (r.state == Range::State::kPending) return false;
  return true;
}

void ScoringRound::forget_gone(const std::vector<LiveWorker>& live) {
  for (Range& r : ranges_) {
    if (r.state != Range::State::kPending) continue;
    bool alive = false;
    for (const auto& w : live) alive = alive || (w.id == r.worker.id && w.peer == r.worker.peer);
    if (!alive) {
      r.state = Range::State::kFailed;
      r.why = "it left the cluster (declared dead) before it answered";
    }
  }
}

void ScoringRound::fail_pending(const std::string& why) {
  for (Range& r : ranges_) {
    if (r.state != Range::State::kPending) continue;
    r.state = Range::State::kFailed;
    r.why = why;
  }
}

Status ScoringRound::check(const Range& r) const {
  const msg::RecordScores& a = r.answer;
  const uint32_t k = q_.question.top;
  const uint64_t size = r.records.size();
  if (a.begin != r.records.begin || a.end != r.records.end || a.records_scored != size) {
    return data_loss("it answered for " + std::to_string(a.records_scored) + " records [" + std::to_string(a.begin) +
                     ", " + std::to_string(a.end) + "), not " + range_name(r.records));
  }
  const size_t expected = std::min<uint64_t>(k, size);
  const size_t expected_lowest = q_.question.self_influence ? 0 : expected;
  if (a.highest.size() != expected || a.lowest.size() != expected_lowest) {
    return data_loss("it listed " + std::to_string(a.highest.size()) + " and " + std::to_string(a.lowest.size()) +
                     " records, not " + std::to_string(expected) + " and " + std::to_string(expected_lowest));
  }
  for (const auto* list : {&a.highest, &a.lowest}) {
    const bool highest = list == &a.highest;
    for (size_t i = 0; i < list->size(); ++i) {
      const auto& s = (*list)[i];
      if (s.index < r.records.begin || s.index >= r.records.end) {
        return data_loss("it listed record " + std::to_string(s.index) + ", outside its range");
      }
      if (i > 0 && !ranks_before({(*list)[i - 1].index, (*list)[i - 1].score}, {s.index, s.score}, highest)) {
        return data_loss("its list is not in order at record " + std::to_string(s.index));
      }
    }
  }
  // The spot check: the first entry of each list, computed here.
  for (const auto* list : {&a.highest, &a.lowest}) {
    if (list->empty()) continue;
    const auto& s = list->front();
    const auto i = static_cast<int64_t>(s.index);
    CUSTODY_ASSIGN_OR_RETURN(RangeRanking here, score_records(q_.question, q_.data.train, i, i + 1, s.index, 1));
    const float computed = here.highest.front().score;
    if (!close_enough(s.score, computed)) {
      return data_loss("it gave record " + std::to_string(s.index) + " the score " + std::to_string(s.score) +
                       "; the coordinator computes " + std::to_string(computed));
    }
  }
  return Status::ok();
}

Result<RangeRanking> ScoringRound::finish(unsigned threads, storage::json* scored_by) {
  std::vector<RangeRanking> parts;
  storage::json listed = storage::json::array();
  for (Range& r : ranges_) {
    storage::json entry = {{"begin", r.records.begin}, {"end", r.records.end}};
    if (r.state == Range::State::kAnswered) {
      RangeRanking part;
      for (const auto& s : r.answer.highest) part.highest.push_back({s.index, s.score});
      for (const auto& s : r.answer.lowest) part.lowest.push_back({s.index, s.score});
      part.scored = r.answer.records_scored;
      parts.push_back(std::move(part));
      entry["by"] = r.worker.id;
      entry["elapsed_ms"] = r.answer.elapsed_ms;
      entry["source"] = r.answer.source;
    } else {
      const auto started = std::chrono::steady_clock::now();
      CUSTODY_ASSIGN_OR_RETURN(RangeRanking part,
                               score_records(q_.question, q_.data.train, static_cast<int64_t>(r.records.begin),
                                             static_cast<int64_t>(r.records.end), r.records.begin, threads));
      parts.push_back(std::move(part));
      entry["by"] = "coordinator";
      entry["elapsed_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - started)
                                .count();
      entry["source"] = "local";
      entry["why"] = r.worker.id.empty() ? r.why : "worker " + r.worker.id + " was asked, but " + r.why;
    }
    entry["records"] = r.records.size();
    listed.push_back(std::move(entry));
  }
  if (scored_by) *scored_by = std::move(listed);
  return merge_rankings(parts, q_.question.top);
}

}  // namespace custody::actors
