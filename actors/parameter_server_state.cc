#include "actors/parameter_server_state.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include <Eigen/Core>

#include "core/dataset.h"
#include "core/float_env.h"
#include "core/log.h"
#include "core/model.h"

namespace custody::actors {

using msg::Envelope;


ParameterServerState::ParameterServerState(std::string node_id) : node_id_(std::move(node_id)) {}

ParameterServerState::Deferred ParameterServerState::defer(const std::string& peer, const Envelope& in,
                                                           const msg::Push& push, const JobShard& job) const {
  return {peer, msg::reply_to(in, node_id_, msg::Params{}), node_of(job, push.rank), push.rank, push.step,
          !push.region.empty()};
}

void ParameterServerState::answer(Deferred& deferred, JobShard& job, Outbox& out) const {
  if (deferred.in_region) {  // its push was taken from the region, which is mapped
    deferred.reply.body = values_in_region(job, *job.regions.at(deferred.rank), deferred.written);
    out.push_back({deferred.peer, std::move(deferred.reply)});
    return;
  }
  auto values = values_of(job, deferred.step);
  if (values.is_ok()) {
    deferred.reply.body = std::move(values).value();
  } else {
    deferred.reply.body = msg::Error{values.status().code(), values.status().message()};
  }
  out.push_back({deferred.peer, std::move(deferred.reply)});
}

void ParameterServerState::apply(JobShard& job, const float* grad, const float* partial, float scale) {
  // Replies built before this update may still share the values (queued for encoding on
  // the bridge's thread): they keep theirs and the update goes to a copy. Usually they
  // have been sent by now and the values are updated in place.
  if (job.params.use_count() > 1) {
    job.params = std::make_shared<std::vector<float>>(*job.params);
  } else {
    std::atomic_thread_fence(std::memory_order_acquire);  // the other holders' reads are done
  }
  job.optimizer->set_learning_rate(scheduled_learning_rate(
      job.spec.optimizer, static_cast<int64_t>(job.version), static_cast<int64_t>(job.total_updates())));
  if (partial && shares_step_end(job.params->size())) {
    // The step's workers all wait for this update: the cores they leave share it, in
    // pieces of 128 KiB (the same values to the bit as one pass: Optimizer::apply_mean_split).
    constexpr size_t kPiece = size_t{1} << 15;
    const size_t pieces = (job.params->size() + kPiece - 1) / kPiece;
    job.optimizer->apply_mean_split(
        job.params->data(), partial, grad, scale, pieces,
        [this](size_t n, const std::function<void(size_t)>& task) { parallel_->run(n, task); });
  } else if (partial) {
    job.optimizer->apply_mean(job.params->data(), partial, grad, scale);
  } else {
    job.optimizer->apply(job.params->data(), grad);
  }
  ++job.version;
}

Outbox ParameterServerState::handle_control(const std::string& peer, const Envelope& in) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, node_id_, s)}}; };
  if (auto* m = in.get<msg::AssignKeyRange>()) {
    auto spec = parse_job_spec(m->spec_text, "job " + in.job_id);
    if (!spec.is_ok()) return error(spec.status());
    auto model = spec->make_model(static_cast<int>(m->input_features));
    if (!model.is_ok()) return error(model.status());
    if (model->num_parameters() != m->num_parameters || m->range_begin >= m->range_end ||
        m->range_end > m->num_parameters || m->num_workers == 0) {
      return error(invalid_argument("key range [" + std::to_string(m->range_begin) + ", " +
                                    std::to_string(m->range_end) + ") does not fit a model of " +
                                    std::to_string(model->num_parameters()) + " parameters"));
    }
    if (m->rank_nodes.size() != m->num_workers) {
      return error(invalid_argument("assignKeyRange names the nodes of " + std::to_string(m->rank_nodes.size()) +
                                    " ranks for a job of " + std::to_string(m->num_workers) +
                                    " ranks (rankNodes: the node assigned each rank, credited with its pushes)"));
    }
    const bool sealed = !m->rank_keys.empty() || m->reply_key;
    if (sealed && (m->rank_keys.size() != m->num_workers || !m->reply_key)) {
      return error(invalid_argument("assignKeyRange carries data-plane keys of " + std::to_string(m->rank_keys.size()) +
                                    " of " + std::to_string(m->num_workers) + " ranks and " +
                                    (m->reply_key ? "a" : "no") + " reply key; a sealed job needs all of them"));
    }
    if (!sealed && !listener_loopback_only_) {
      return error(failed_precondition(
          "parameter server " + node_id_ + " listens on " + listener_ + ", which other hosts can reach, and the data "
          "plane of " + in.job_id + " is not sealed: it serves a data plane in clear only on a loopback address. Set "
          "data_plane_sealing = \"on\" (or \"auto\") at the coordinator, or listen on 127.0.0.1"));
    }
    // A private job's noise is this server's to add: a spec and a noise that disagree would
    // train without the guarantee the job file asked for (or with noise nobody asked for).
    if (spec->privacy.enabled != (m->noise_std > 0)) {
      return error(invalid_argument(std::string("assignKeyRange for ") + in.job_id + ": the job is " +
                                    (spec->privacy.enabled ? "private but carries no noise (noiseStd = 0)"
                                                           : "not private but carries a noiseStd") +
                                    "; this server will not train it"));
    }
    JobShard job;
    job.id = in.job_id;
    job.noise_std = m->noise_std;
    if (job.noise_std > 0) {
      auto source = SecureRandom::from_os();
      if (!source.is_ok()) return error(source.status());
      job.noise.emplace(std::move(source).value());
    }
    job.rank_nodes = m->rank_nodes;
    job.rank_keys = m->rank_keys;
    for (const AeadKey& k : job.rank_keys) job.fingerprints.push_back(k.fingerprint());
    job.reply_key = m->reply_key;
    job.spec = spec.value();
    job.attempt = in.attempt;
    job.range = {m->range_begin, m->range_end};
    job.num_workers = m->num_workers;
    job.total_steps = m->total_steps;
    job.checkpoint_every = m->checkpoint_every;
    job.last_checkpoint = m->start_step;
    const bool bsp = job.spec.consistency == Consistency::kBsp;
    job.version = bsp ? m->start_step : m->start_step * m->num_workers;
    job.start_step = m->start_step;
    if (!m->initial_values.empty()) {
      if (m->initial_values.size() != m->range_end - m->range_begin) {
        return error(invalid_argument("initial values of " + std::to_string(m->initial_values.size()) +
                                      " floats for a range of " + std::to_string(m->range_end - m->range_begin)));
      }
      job.params = std::make_shared<std::vector<float>>(m->initial_values);  // resumed or fine-tuned from a checkpoint
    } else {
      // Every server draws the same full initial vector and keeps its own range of it.
      std::vector<float> all = model->initial_parameters(job.spec.seed);
      job.params = std::make_shared<std::vector<float>>(all.begin() + static_cast<std::ptrdiff_t>(m->range_begin),
                        all.begin() + static_cast<std::ptrdiff_t>(m->range_end));
    }
    job.optimizer = make_optimizer(job.spec.optimizer, job.params->size());
    // Resumed from a checkpoint that kept the optimizer state: continue it, so the run goes
    // on as if it had not been interrupted. Without one (a new job, sgd, or a checkpoint
    // from before the state was kept) the optimizer starts from zeros.
    const bool saved_state = !m->optimizer_state.empty();
    if (saved_state) {
      Status imported = job.optimizer->import_state({m->optimizer_state, m->optimizer_steps});
      if (!imported.is_ok()) {
        return error(invalid_argument("optimizer state for keys [" + std::to_string(m->range_begin) + ", " +
                                      std::to_string(m->range_end) + "): " + imported.message()));
      }
    }
    log(LogLevel::kInfo, node_id_, "holding keys [" + std::to_string(m->range_begin) + ", " +
                                       std::to_string(m->range_end) + ") of " + in.job_id + " (" +
                                       to_string(job.spec.optimizer.kind) + ", " +
                                       to_string(job.spec.consistency) + ", attempt " +
                                       std::to_string(in.attempt) + ", from step " + std::to_string(m->start_step) +
                                       (saved_state ? ", optimizer state of the checkpoint"
                                                    : m->start_step > 0 ? ", optimizer state from zeros" : "") +
                                       (sealed ? ", data plane sealed" : ", data plane in clear") + ")");
    jobs_[in.job_id] = std::move(job);
    return {{peer, msg::reply_to(in, node_id_, msg::KeyRangeReady{m->range_begin, m->range_end})}};
  }
  if (in.get<msg::StopJob>()) {
    auto it = jobs_.find(in.job_id);
    // A stop of an older attempt does not end the attempt that replaced it.
    if (it == jobs_.end() || in.attempt < it->second.attempt) return {};
    const JobShard& job = it->second;
    log(LogLevel::kInfo, node_id_, "released " + in.job_id + " after " + std::to_string(job.version) + " updates");
    // What this attempt had applied when it ended: after a rollback, the coordinator records
    // it as the work discarded (its workers' progress reports lag behind it).
    Envelope released =
        msg::reply_to(in, node_id_, msg::JobReleased{step_of(job), job.version, job.range.begin, job.range.end});
    released.attempt = job.attempt;  // the attempt let go of; a stop of a later one ends it too
    jobs_.erase(it);
    return {{peer, std::move(released)}};
  }
  return error(invalid_argument(std::string("a parameter server does not handle '") +
                                msg::body_name(in.body) + "' from the coordinator"));
}

uint64_t ParameterServerState::step_of(const JobShard& job) {
  return job.spec.consistency == Consistency::kBsp ? job.version : job.version / job.num_workers;
}

void ParameterServerState::maybe_checkpoint(const std::string& job_id, JobShard& job, Outbox& out) const {
  if (job.spec.consistency != Consistency::kBsp && job.version % job.num_workers != 0) return;
  const uint64_t step = step_of(job);
  const bool final = step >= job.total_steps;
  const bool due = job.checkpoint_every > 0 && step % job.checkpoint_every == 0;
  if ((!final && !due) || step == job.last_checkpoint) return;
  msg::CheckpointShard c;
  c.step = step;
  c.range_begin = job.range.begin;
  c.values = *job.params;
  for (auto& [who, counts] : job.contributions) c.contributions.push_back(counts);
  c.final = final;
  OptimizerState state = job.optimizer->export_state();
  c.optimizer_state = std::move(state.values);
  c.optimizer_steps = state.steps;
  job.contributions.clear();
  job.last_checkpoint = step;
  Envelope e;
  e.sender = node_id_;
  e.job_id = job_id;
  e.attempt = job.attempt;
  e.body = std::move(c);
  out.push_back({"", std::move(e), true});
}

void ParameterServerState::release_held(JobShard& job, Outbox& out) const {
  // Ranks that have not pushed yet are at the job's first step.
  uint64_t slowest = job.clock.size() < job.num_workers ? job.start_step : UINT64_MAX;
  for (const auto& [rank, steps] : job.clock) slowest = std::min(slowest, steps);
  const uint64_t bound = static_cast<uint64_t>(job.spec.staleness);
  auto held = job.held.begin();
  while (held != job.held.end()) {
    if (job.clock[held->rank] - slowest <= bound) {
      answer(*held, job, out);
      held = job.held.erase(held);
    } else {
      ++held;
    }
  }
}

std::vector<std::string> ParameterServerState::held_workers(const std::string& job_id) const {
  std::vector<std::string> out;
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) {
    for (const auto& h : it->second.held) out.push_back(h.worker);
  }
  return out;
}

Outbox ParameterServerState::refuse(const std::string& peer, const Envelope& in, JobShard* job,
                                    const msg::Push* push, Status status) const {
  // Counted against the node that holds the rank (a rank the job does not have is no one's).
  if (job && push && push->rank < job->num_workers) {
    const std::string& node = node_of(*job, push->rank);
    auto& c = job->contributions[{node, push->rank}];
    c.worker = node;
    c.rank = push->rank;
    ++c.rejected;
  }
  if (metrics_) {
    metrics_->counter("custody_ps_pushes_total", "Pushes a parameter server received, by result and reason.",
                      {{"result", "refused"}, {"reason", error_label(status.code())}})
        .add();
  }
  return {{peer, msg::make_error(in, node_id_, status)}};
}

Outbox ParameterServerState::handle_data(const std::string& peer, const Envelope& in) {
  const FlushDenormals flush;  // the sums and the update, as the workers compute (core/float_env.h)
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, node_id_, s)}}; };
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end()) {
    return error(not_found("parameter server " + node_id_ + " holds no keys of job '" + in.job_id +
                           "' (never assigned, or the job has ended)"));
  }
  JobShard& job = it->second;
  if (in.attempt != job.attempt) {
    return error(failed_precondition("attempt " + std::to_string(in.attempt) + " of " + in.job_id +
                                     " was replaced by attempt " + std::to_string(job.attempt) +
                                     " (the job was rolled back to a checkpoint); this message is not applied"));
  }
  if (auto* pull = in.get<msg::Pull>()) return on_pull(peer, in, *pull, job);
  const auto* push = in.get<msg::Push>();
  if (!push) {
    return error(invalid_argument(std::string("a parameter server does not handle '") +
                                  msg::body_name(in.body) + "' from a worker"));
  }
  auto reject = [&](Status s) { return refuse(peer, in, &job, push, std::move(s)); };
  if (push->rank >= job.num_workers) {
    return reject(invalid_argument("push for rank " + std::to_string(push->rank) + " but the job has " +
                                   std::to_string(job.num_workers) + " ranks"));
  }
  // A BSP step's last push is opened on every thread the server has: the step's workers
  // wait for it. Any other is opened on this thread alone, leaving the other cores to the
  // workers still computing (ASP and SSP workers never all wait).
  const bool completes_step = job.spec.consistency == Consistency::kBsp && push->step == job.version &&
                              job.pushed.size() + 1 == job.num_workers && !job.pushed.count(push->rank);
  Outbox refused;
  auto opened = gradient_of(peer, in, *push, job, completes_step, refused);
  if (!opened.is_ok()) return refused;
  const float* gradient = opened.value();
  const size_t n = job.params->size();
  const std::string& node = node_of(job, push->rank);
  // One vectorized pass gives the norm (attribution) and, as NaN and infinity spread into
  // it, tells whether any value is not finite; only then is the gradient scanned for which.
  const Eigen::Map<const Eigen::VectorXf> g(gradient, static_cast<Eigen::Index>(n));
  double squared_norm = g.squaredNorm();
  if (!std::isfinite(squared_norm)) {
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(gradient[i])) {
        return reject(invalid_argument("gradient from " + node + " at step " + std::to_string(push->step) +
                                      " holds a non-finite value at key " + std::to_string(job.range.begin + i) +
                                      "; the update was not applied"));
      }
    }
    squared_norm = g.cast<double>().squaredNorm();  // finite values whose squares overflow a float
  }
  // Measured here, not reported by the worker: what this server accepted from whom.
  auto account = [&] {
    auto& c = job.contributions[{node, push->rank}];
    c.worker = node;
    c.rank = push->rank;
    if (!job.fingerprints.empty()) c.key_fingerprint = job.fingerprints[push->rank];
    ++c.accepted;
    c.samples += push->samples;
    // A private job's pushes are unnoised clipped sums: their norms are not recorded.
    if (!job.noise) c.update_norm_sum += std::sqrt(squared_norm);
    const uint64_t staleness = job.version > push->base_version ? job.version - push->base_version : 0;
    c.staleness_max = std::max(c.staleness_max, staleness);
    c.staleness_sum += staleness;
    if (metrics_) {
      metrics_->counter("custody_ps_pushes_total", "Pushes a parameter server received, by result and reason.",
                        {{"result", "accepted"}, {"reason", ""}})
          .add();
      metrics_->histogram("custody_ps_push_staleness_steps",
                          "How many versions behind the server's values an accepted push was computed.",
                          {0, 1, 2, 4, 8, 16, 32})
          .observe(static_cast<double>(staleness));
    }
  };
  if (job.spec.consistency != Consistency::kBsp) {
    auto last = job.last_step.find(push->rank);
    if (last != job.last_step.end() && static_cast<int64_t>(push->step) <= last->second) {
      return reject(failed_precondition("step " + std::to_string(push->step) + " of rank " +
                                       std::to_string(push->rank) + " (" + node +
                                       ") was already applied; a replayed push is not applied twice"));
    }
    job.last_step[push->rank] = static_cast<int64_t>(push->step);
    account();
    apply(job, gradient);
    Outbox out;
    job.clock[push->rank] = push->step + 1;
    const uint64_t every = job.checkpoint_every;
    const uint64_t cut = every > 0 ? (job.last_checkpoint / every + 1) * every : job.total_steps;
    if (push->step + 1 == cut && cut < job.total_steps) {
      job.fenced.push_back(defer(peer, in, *push, job));
    } else if (job.spec.consistency == Consistency::kSsp) {
      job.held.push_back(defer(peer, in, *push, job));
      release_held(job, out);
    } else {
      Deferred now = defer(peer, in, *push, job);
      answer(now, job, out);
    }
    const uint64_t checkpointed = job.last_checkpoint;
    maybe_checkpoint(in.job_id, job, out);
    if (job.last_checkpoint != checkpointed) {  // every rank reached the cut: all go on
      for (Deferred& deferred : job.fenced) answer(deferred, job, out);
      job.fenced.clear();
      if (job.spec.consistency == Consistency::kSsp) release_held(job, out);
    }
    return out;
  }
  // BSP
  if (push->step != job.version) {
    return reject(failed_precondition("push for step " + std::to_string(push->step) + " from " + node +
                                     " but this server is at step " + std::to_string(job.version) +
                                     " (BSP takes each step's gradients in order)"));
  }
  if (!job.pushed.insert(push->rank).second) {
    return reject(failed_precondition("step " + std::to_string(push->step) + " of rank " +
                                     std::to_string(push->rank) + " (" + node +
                                     ") was already received; a replayed push is not applied twice"));
  }
  account();
  const bool last = job.pushed.size() == job.num_workers;
  job.waiting.push_back(defer(peer, in, *push, job));
  if (!last) {
    if (job.first_pending.empty() && job.pending_sum.empty()) {
      if (gradient == job.opened.data()) {
        // Opened from its seal: kept in the job's buffer for it, not copied.
        std::swap(job.opened, job.opened_first);
        job.first_pending = msg::Floats::borrowed(job.opened_first.data(), n);
      } else {
        job.first_pending = push->gradient.keep();
      }
    } else if (job.pending_sum.empty()) {
      job.pending_sum.resize(g.size());
      Eigen::Map<Eigen::VectorXf>(job.pending_sum.data(), g.size()) =
          Eigen::Map<const Eigen::VectorXf>(job.first_pending.data(), g.size()) + g;
      job.first_pending = {};
    } else {
      Eigen::Map<Eigen::VectorXf>(job.pending_sum.data(), g.size()) += g;
    }
    return {};
  }
  const float* partial = !job.pending_sum.empty() ? job.pending_sum.data() : job.first_pending.data();
  if (job.noise) {
    // DP-SGD: the step's mean of clipped sums (each worker pushed its clipped sum over the
    // expected batch's share) plus N(0, noise_std^2) on every coordinate, drawn here from
    // the secure source, once per step; only then does the optimizer see it.
    job.noisy.resize(n);
    Eigen::Map<Eigen::VectorXf> noisy(job.noisy.data(), static_cast<Eigen::Index>(n));
    if (partial) {
      noisy = (Eigen::Map<const Eigen::VectorXf>(partial, static_cast<Eigen::Index>(n)) + g) *
              (1.0f / static_cast<float>(job.num_workers));
    } else {
      noisy = g;
    }
    job.noise->add_gaussian(job.noisy.data(), n, job.noise_std);
    apply(job, job.noisy.data());
  } else if (partial) {
    apply(job, g.data(), partial, 1.0f / static_cast<float>(job.num_workers));
  } else {
    apply(job, g.data());  // the step's only gradient is its mean
  }
  job.first_pending = {};
  job.pending_sum.clear();
  job.pushed.clear();
  Outbox out;
  write_values(job, job.waiting);
  for (Deferred& deferred : job.waiting) answer(deferred, job, out);
  job.waiting.clear();
  maybe_checkpoint(in.job_id, job, out);
  return out;
}

std::vector<float> ParameterServerState::values(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? std::vector<float>() : *it->second.params;
}

uint64_t ParameterServerState::version(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.version;
}

}  // namespace custody::actors
