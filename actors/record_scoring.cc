#include "actors/record_scoring.h"

#include "actors/trainer.h"
#include "core/job_spec.h"
#include "core/tracin_ranking.h"

namespace custody::actors {

Result<msg::RecordScores> score_request(const msg::ScoreRecords& m, RecordsFetcher* records, unsigned threads) {
  const auto started = SteadyClock::now();
  if (m.checkpoints.empty()) return invalid_argument("a scoreRecords without checkpoints");
  if (m.top == 0 || m.top > 10000) return invalid_argument("scoreRecords' K must be in [1, 10000]");
  if (m.begin >= m.end) {
    return invalid_argument("scoreRecords names the empty range [" + std::to_string(m.begin) + ", " +
                            std::to_string(m.end) + ")");
  }
  CUSTODY_ASSIGN_OR_RETURN(JobSpec spec, parse_job_spec(m.spec_text, "the run's job spec (scoreRecords)"));
  CUSTODY_ASSIGN_OR_RETURN(TrainingRange range,
                           load_training_range(spec.data, m.begin, m.end, m.digest, m.dataset_hash, records));
  TracinQuestion q;
  for (uint32_t size : m.layer_sizes) q.layer_sizes.push_back(static_cast<int>(size));
  auto activation = parse_activation(m.activation);
  if (!activation) return invalid_argument("scoreRecords names the unknown activation '" + m.activation + "'");
  q.activation = *activation;
  q.architecture = m.architecture;
  for (const auto& c : m.checkpoints) {
    q.params.push_back(c.params);
    q.rates.push_back(c.learning_rate);
  }
  q.self_influence = m.self_influence;
  q.test_input = m.test_input;
  q.test_label = m.test_label;
  q.top = m.top;
  CUSTODY_ASSIGN_OR_RETURN(RangeRanking ranking,
                           score_records(q, range.set, range.begin, range.end, m.begin, threads));
  msg::RecordScores out;
  out.begin = m.begin;
  out.end = m.end;
  for (const auto& s : ranking.highest) out.highest.push_back({s.index, s.score});
  for (const auto& s : ranking.lowest) out.lowest.push_back({s.index, s.score});
  out.records_scored = ranking.scored;
  out.source = msg::to_string(range.obtained.how);
  out.elapsed_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count());
  return out;
}

}  // namespace custody::actors
