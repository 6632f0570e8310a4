// One parameter server's logic as a plain state machine: for each job, the key range
// it holds, the optimizer that updates it, and the consistency protocol.
//
//   BSP: pushes of step t are summed until every worker of the job has pushed step t;
//        then the mean gradient is applied once and every waiting worker gets the new
//        values (version t+1). A push for another step is refused.
//   ASP: each push is applied on arrival and answered with the values after it.
//   SSP: applied on arrival like ASP, but the answer to a worker that would then be more
//        than `staleness` steps ahead of the job's slowest worker is held until the
//        slowest catches up.
//   ASP and SSP meet at each checkpoint (the fence): the answer to a rank's push of the
//        step before a checkpoint is held until every rank has pushed it, so the
//        checkpoint holds exactly that many steps of each rank on every server, and a
//        rollback to it neither repeats nor skips a (rank, step). (Without it a fast
//        rank's steps past the checkpoint were in its values and pushed again after a
//        rollback, a slow rank's missing ones never pushed, and two servers counted a
//        different mix of ranks.)
// An update is named by (rank, step): a rank's shard pushes at most once per step, so a
// repeated (rank, step) is refused and a replayed message is never applied twice.
// Attempts: the coordinator rolls a job back to its last checkpoint when a node dies and
// reassigns the key ranges with a new attempt number (Envelope.attempt); pulls and pushes
// of any other attempt are refused, so nothing from before the rollback is applied.
// Checkpoints and attribution: every `checkpoint_every` steps and at the job's last step
// the server sends the coordinator its range's values and, per worker, what it measured
// since the previous checkpoint (accepted and rejected pushes, samples, the sum of the
// gradients' L2 norms on this range, staleness seen), and the range's optimizer state
// (core/optimizer.h), so that a job resumed from the checkpoint continues the same update;
// an assignKeyRange that carries such state starts the optimizer from it instead of zeros.
// A stopJob is answered with jobReleased: the step and updates the attempt had applied
// here, which the coordinator records as the work a rollback discarded.
// Gradients with NaN or infinite values, of
// the wrong length, or for unknown jobs are refused with an error naming the problem.
// The data plane (protocols/data_plane.h): an assignKeyRange that carries keys makes the
// job's data plane sealed. Then a rank's pull or push is taken only if it is sealed under
// that rank's key for this range and attempt, and binds the step (and the rest the seal
// binds); anything else is refused, logged, and counted as `unauthenticated` against the
// rank it claimed, never as the assigned node's own rejection. Replies are sealed under
// the server's reply key: once per values and step, shared by every reply that carries
// them. Contributions name the node the coordinator assigned each rank to (sealed or
// not), never the name a push gives, with the fingerprint of the key that authenticated
// them. A server whose listener other hosts can reach refuses a job whose data plane is
// not sealed (set_listener_loopback_only).
// Shared memory (protocols/shared_region.h): a worker on this host may name its rank's
// region in a pull or push of a job in clear; the server maps it on first use (checking its
// owner, size and header), takes the push's gradient from it by copying it out (the checks
// and the update see that copy, never memory the worker could still change), and answers a
// request that named the region by writing the values into it before sending the (small)
// answer. A region that cannot be taken is refused with kFailedPrecondition naming why; the
// worker then falls back to its socket. The mappings go with the attempt.
// Thread-safety: none; the parameter-server node uses it under one mutex (its data-plane
// thread and its actor; actors/parameter_server_actor.cc).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "actors/outgoing.h"
#include "core/job_spec.h"
#include "core/metrics.h"
#include "core/optimizer.h"
#include "core/partition.h"
#include "core/secure_random.h"
#include "protocols/fork_join.h"
#include "protocols/shared_region.h"

namespace custody::actors {

class ParameterServerState {
 public:
  explicit ParameterServerState(std::string node_id);
  void set_node_id(std::string id) { node_id_ = std::move(id); }
  // Whether this server's listener is reachable from this host only (a loopback address).
  // If not, it serves no job whose data plane is in clear. Default: true (the tests').
  void set_listener_loopback_only(bool loopback_only, std::string endpoint) {
    listener_loopback_only_ = loopback_only;
    listener_ = std::move(endpoint);
  }
  // Threads that share sealing and opening a block (protocols/fork_join.h); none: this
  // thread alone. The caller keeps it alive while this state is used.
  void set_parallel(ForkJoin* parallel) { parallel_ = parallel; }
  // Whether a BSP step's end (the copies out of and into the regions, the update) is shared
  // with those threads too, or done on the calling thread alone (sealing and opening are
  // shared either way). Default: shared. set_share_step_end_above(n): shared only for key
  // ranges of at least n floats. The node shares it from kShareStepEndAbove: with the
  // doorbell, waking a helper cost more than it saved for the MLP's 235k floats on this
  // 2-core machine, and saves a core's worth for the CNN's 693k (docs/ARCHITECTURE.md,
  // "A step's thread hand-offs" and "Overlap").
  void set_share_step_end(bool share) { share_step_end_above_ = share ? 0 : SIZE_MAX; }
  void set_share_step_end_above(size_t floats) { share_step_end_above_ = floats; }
  static constexpr size_t kShareStepEndAbove = size_t{1} << 18;  // 1 MiB of floats
  // Counts pushes accepted and refused (custody_ps_pushes_total{result, reason}) and the
  // staleness of those accepted (custody_ps_push_staleness_steps). Null: none.
  void set_metrics(MetricsRegistry* metrics) { metrics_ = metrics; }

  // Messages from the coordinator (assignKeyRange, stopJob).
  Outbox handle_control(const std::string& peer, const msg::Envelope& in);
  // Messages from workers (pull, push).
  Outbox handle_data(const std::string& peer, const msg::Envelope& in);

  size_t num_jobs() const { return jobs_.size(); }
  // Forgets every job (the coordinator lost this node; it reassigns what it still wants).
  void clear() { jobs_.clear(); }
  // Workers whose answers the staleness bound holds back (SSP), for status and tests.
  std::vector<std::string> held_workers(const std::string& job_id) const;
  // The current values of a job's range (tests, checkpoints); empty if unknown.
  std::vector<float> values(const std::string& job_id) const;
  uint64_t version(const std::string& job_id) const;
  // The shared-memory region through which `rank` of the job's current attempt reaches
  // this server; null if none (yet, or any more).
  std::shared_ptr<shm::SharedRegion> region(const std::string& job_id, uint32_t rank) const;

 private:
  // A push answered later: BSP's at the end of its step, SSP's within the staleness bound,
  // ASP's and SSP's at the checkpoint fence. The reply is addressed to the push when it
  // comes (msg::reply_to); its body, the values, is set when they are ready.
  struct Deferred {
    std::string peer;
    msg::Envelope reply;
    std::string worker;  // the node assigned the rank
    uint32_t rank;
    uint64_t step;  // of the push answered
    bool in_region = false;  // the push came through the rank's region: answer there
    bool written = false;    // the values are in the region already (write_values)
  };
  struct JobShard {
    std::string id;
    JobSpec spec;
    uint32_t attempt = 0;
    KeyRange range;
    uint32_t num_workers = 0;
    uint64_t total_steps = 0;        // per worker
    uint64_t checkpoint_every = 0;   // steps; 0: only at the end
    uint64_t last_checkpoint = 0;    // step of the last checkpoint sent
    // Since last_checkpoint, by worker and rank.
    std::map<std::pair<std::string, uint32_t>, msg::Contribution> contributions;
    std::vector<std::string> rank_nodes;  // by rank: the node the coordinator assigned it to
    // Sealed data plane: by rank, the key its pushes and pulls are checked with here, and
    // its fingerprint; the key this range's replies are sealed with. Empty: in clear.
    std::vector<AeadKey> rank_keys;
    std::vector<std::string> fingerprints;
    std::optional<AeadKey> reply_key;
    // The values' last seal, and what it answers: every reply of a BSP step shares it.
    msg::SharedBytes sealed_values;
    uint64_t sealed_version = 0, sealed_step = UINT64_MAX;
    // Opened gradients: the one being handled, and BSP's first of the step (first_pending
    // points into it). Kept between steps, so a step allocates nothing.
    std::vector<float> opened, opened_first;
    // A private job: the std of the noise added to each coordinate of each step's mean
    // gradient, its secure source (keyed from the OS, never recorded: the noise of a step
    // must not be reproducible by anyone), and the buffer the noisy mean is formed in.
    double noise_std = 0;
    std::optional<SecureRandom> noise;
    std::vector<float> noisy;
    uint64_t refusals = 0;  // unauthenticated messages refused, for the log's rate
    // Shared memory, by rank: the region its worker named, mapped on first use.
    // Shared: a doorbell thread (actors/parameter_server_core.h) keeps a mapping it waits
    // on until it sees the attempt no longer holds it.
    std::map<uint32_t, std::shared_ptr<shm::SharedRegion>> regions;
    // The range's values; shared with the replies that carry them until they are sent.
    std::shared_ptr<std::vector<float>> params = std::make_shared<std::vector<float>>();
    std::unique_ptr<Optimizer> optimizer;
    uint64_t version = 0;  // updates applied (BSP: completed steps; ASP: pushes)
    // The updates the whole job applies, which the learning-rate schedule spans: a BSP step
    // is one update, while under ASP and SSP every rank's push of a step is one.
    uint64_t total_updates() const {
      return spec.consistency == Consistency::kBsp ? total_steps : total_steps * num_workers;
    }
    // BSP: this step's gradients so far, and which ranks have pushed it. The first is held
    // as received (sharing its frame, no copy); from the second on they are summed into
    // pending_sum. The last one is not added: the update takes the mean in its own pass.
    msg::Floats first_pending;
    std::vector<float> pending_sum;
    std::set<uint32_t> pushed;
    std::vector<Deferred> waiting;
    // ASP and SSP: highest step applied per rank, for duplicate detection.
    std::map<uint32_t, int64_t> last_step;
    // SSP: steps completed per rank, and answers held back by the staleness bound.
    uint64_t start_step = 0;
    std::map<uint32_t, uint64_t> clock;
    std::vector<Deferred> held;
    // ASP and SSP: answers of ranks that reached the next checkpoint before the others.
    std::vector<Deferred> fenced;
  };

  // The job's current values as the body of the reply to a push of `step`: shared, not
  // copied, so every reply of a step carries the same values. Sealed job: sealed once
  // under the reply key for (version, step), and that seal shared.
  Result<msg::Params> values_of(JobShard& job, uint64_t step) const;
  // A push to answer later, with its reply addressed now.
  Deferred defer(const std::string& peer, const msg::Envelope& in, const msg::Push& push, const JobShard& job) const;
  // Sends a deferred reply with the job's current values.
  void answer(Deferred& deferred, JobShard& job, Outbox& out) const;
  Outbox on_pull(const std::string& peer, const msg::Envelope& in, const msg::Pull& pull, JobShard& job);
  // The push's gradient in clear: the message's own, or its seal opened into job.opened
  // (on parallel_'s threads too when `urgent`). An error: it is not authenticated as the
  // rank's (already refused and counted in out).
  Result<const float*> gradient_of(const std::string& peer, const msg::Envelope& in, const msg::Push& push,
                                   JobShard& job, bool urgent, Outbox& out) const;
  // Shared memory (parameter_server_shared_memory.cc). The rank's region named `name`:
  // the one mapped for it, or mapped now. Errors (kFailedPrecondition, naming the region and
  // why): a sealed job, a malformed, missing, foreign or wrongly sized region, or another
  // name than the rank's region of this attempt.
  Result<shm::SharedRegion*> region_of(JobShard& job, uint32_t rank, const std::string& name) const;
  // A push's gradient from its region, copied into job.opened (on parallel_'s threads too
  // when `urgent`).
  Result<const float*> gradient_in_region(JobShard& job, const msg::Push& push, bool urgent) const;
  // The job's values written into `region`'s values block (unless `written` says they are
  // there already), and the answer that says so.
  msg::Params values_in_region(const JobShard& job, shm::SharedRegion& region, bool written = false) const;
  // The job's values written into the regions of every answer in `answers` that goes
  // through one, at once, on parallel_'s threads too (BSP's step end: every worker waits),
  // each marked written.
  void write_values(JobShard& job, std::vector<Deferred>& answers) const;
  // n floats from `from` into each block of `to`; on parallel_'s threads too when `urgent`.
  void copy_block(const float* from, size_t n, const std::vector<float*>& to, bool urgent) const;
  // Refuses a message that claims `rank` but is not sealed under its key: logged (at a
  // bounded rate), counted against the rank as unauthenticated, answered with the error.
  Outbox refuse_unauthenticated(const std::string& peer, const msg::Envelope& in, JobShard& job, uint32_t rank,
                                const Status& why) const;
  // The node credited with a rank's pushes: the one the coordinator assigned it to.
  static const std::string& node_of(const JobShard& job, uint32_t rank) { return job.rank_nodes[rank]; }
  // One update of the job's values: by `grad`, or (given `partial`) by the mean
  // (partial + grad) * scale, formed in the update's pass (Optimizer::apply_mean) and
  // shared with parallel_'s threads (BSP's step end, when every worker waits for it).
  void apply(JobShard& job, const float* grad, const float* partial = nullptr, float scale = 1.0f);
  // Steps per worker that the current values cover.
  static uint64_t step_of(const JobShard& job);
  // A checkpoint shard for the coordinator, if this step is due one.
  void maybe_checkpoint(const std::string& job_id, JobShard& job, Outbox& out) const;
  // SSP: answers every held push whose worker is now within the bound.
  void release_held(JobShard& job, Outbox& out) const;
  Outbox refuse(const std::string& peer, const msg::Envelope& in, JobShard* job, const msg::Push* push,
                Status status) const;

  std::string node_id_;
  bool listener_loopback_only_ = true;
  ForkJoin* parallel_ = nullptr;
  // Key ranges from this many floats share a BSP step's end with parallel_'s threads.
  size_t share_step_end_above_ = 0;
  bool shares_step_end(size_t floats) const { return parallel_ && floats >= share_step_end_above_; }
  MetricsRegistry* metrics_ = nullptr;
  std::string listener_;
  std::map<std::string, JobShard> jobs_;
};

}  // namespace custody::actors
