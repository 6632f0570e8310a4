// The messages of the Custody protocol as plain C++ values: one struct per body of the
// Envelope in custody.capnp (see that file for what each field means). codec.h turns them
// into Cap'n Proto bytes and back; nothing else in the project touches Cap'n Proto.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/aead.h"
#include "core/error.h"
#include "core/records_digest.h"
#include "protocols/floats.h"

namespace custody::msg {

// Bumped when a change is not backwards compatible; a node refuses other versions.
inline constexpr uint16_t kProtocolVersion = 1;

enum class NodeRole : uint8_t { kParameterServer, kWorker };
enum class JobState : uint8_t { kPending, kStarting, kRunning, kCompleted, kFailed, kCancelled };
const char* to_string(NodeRole r);
const char* to_string(JobState s);
bool is_terminal(JobState s);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  int32_t rank = -1;        // a trainer's failure: its task's rank
  bool node_local = false;  // that task cannot run on this node; another node may run it
};
struct Register {
  NodeRole role = NodeRole::kWorker;
  std::string address, host;
  uint32_t pid = 0;
  std::string name;
  std::string host_id = {};  // boot id and network namespace (protocols/shared_region.h)
  std::string session = {};  // the same in every retry of one registration (custody.capnp)
};
struct RegisterAck {
  std::string node_id;
  uint32_t heartbeat_interval_ms = 1000;
};
struct Heartbeat {
  bool busy = false;
  bool leaving = false;  // the node is stopping: deregister it now (custody.capnp)
};
struct HeartbeatAck {
  bool known = true;
};
struct SubmitJob {
  std::string spec_text, origin, submitter;
  // An admin's reason to run a job without a privacy guarantee on a data set with a
  // privacy budget (custody.capnp); empty: none.
  std::string budget_override = {};
};
struct JobAccepted {
  std::string job_id, message;
};
struct StatusRequest {
  bool include_nodes = false;
};
struct JobStatus {
  std::string job_id, name;
  JobState state = JobState::kPending;
  std::string message, submitter;
  uint32_t epoch = 0, epochs = 0;
  uint64_t step = 0, total_steps = 0;
  double loss = 0, test_accuracy = -1, test_loss = 0, samples_per_sec = 0;
  int64_t submitted_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
  std::vector<std::string> workers, servers;
  std::string dataset_hash, consistency;
  std::vector<double> accuracy_history;
  std::string last_checkpoint;
  std::vector<std::string> waiting_for;  // "worker-2 (rank 1): no report for 12 s"
  uint32_t recoveries = 0;
  bool data_plane_sealed = false;
  std::string data_plane;  // how the data plane runs and why
};
struct NodeStatus {
  std::string node_id;
  NodeRole role = NodeRole::kWorker;
  std::string address;
  bool alive = false, busy = false;
  int64_t last_seen_ms_ago = 0;
  std::string host;
  uint32_t pid = 0;
  bool left = false;  // not alive because it deregistered, not because it went silent
};
struct StatusReply {
  std::vector<JobStatus> jobs;
  std::vector<NodeStatus> nodes;
  std::string store_path;
};
struct CancelJob {
  std::string reason;
  std::string principal;  // who cancels; a secured coordinator uses the proven caller instead
};
struct AssignKeyRange {
  std::string spec_text;
  uint32_t server_index = 0;
  uint64_t range_begin = 0, range_end = 0, num_parameters = 0;
  uint32_t num_workers = 0;
  uint64_t total_steps = 0;
  uint32_t input_features = 0;
  uint64_t steps_per_epoch = 0, checkpoint_every = 0, start_step = 0;
  std::vector<float> initial_values;
  std::vector<float> optimizer_state = {};  // layout: core/optimizer.h OptimizerState; empty: zeros
  uint64_t optimizer_steps = 0;
  // The data plane's keys of this attempt (protocols/data_plane.h); empty: not sealed.
  std::vector<AeadKey> rank_keys = {};  // by rank
  std::optional<AeadKey> reply_key = {};
  std::vector<std::string> rank_nodes = {};  // by rank: the node it was assigned to
  double noise_std = 0;  // private job: the noise std on each coordinate of a step's mean gradient
};
struct KeyRangeReady {
  uint64_t range_begin = 0, range_end = 0;
};
struct ShardId {
  std::string dataset_hash;
  uint32_t index = 0, num_shards = 0;
  uint64_t begin = 0, end = 0;
};
struct ServerRange {
  std::string node_id, address;
  uint64_t range_begin = 0, range_end = 0;
  bool shared_memory = false;  // reach it through shared memory (protocols/shared_region.h)
};
struct AssignTask {
  std::string spec_text;
  uint32_t rank = 0;
  ShardId shard;
  uint64_t test_begin = 0, test_end = 0, steps_per_epoch = 0;
  std::vector<ServerRange> servers;
  uint64_t num_parameters = 0;
  uint64_t start_step = 0;
  // This rank's data-plane keys of this attempt (protocols/data_plane.h); none: not sealed.
  std::optional<AeadKey> rank_key = {}, replies_key = {};
  // What its records must be (core/dataset.h, records_digest); empty: not checked.
  RecordsDigest train_digest = {}, test_digest = {};
  uint64_t train_records = 0;  // N, the whole training set's records; 0: not said (older coordinator)
  // Retraining: record indices of the shard not to read (sorted; custody.capnp).
  std::vector<uint64_t> excluded = {};
};
struct Progress {
  uint32_t epoch = 0;
  uint64_t step = 0, samples = 0;
  double loss_sum = 0;
  uint64_t elapsed_us = 0;
  uint32_t rank = 0;
};
struct EpochEval {
  uint32_t epoch = 0;
  uint64_t correct = 0, total = 0;
  double loss_sum = 0;
  uint32_t rank = 0;
};
struct TaskDone {
  uint64_t steps = 0, samples = 0;
  uint32_t rank = 0;
};
struct StopJob {
  std::string reason;
};
struct Pull {
  std::string worker;
  uint32_t rank = 0;
  std::string seal = {};  // sealed job: the tag that authenticates the pull
  std::string region = {};  // shared memory: the rank's region at this server
};
struct Push {
  std::string worker;
  uint64_t step = 0;
  Floats gradient;
  uint32_t samples = 0;
  uint64_t base_version = 0;
  uint32_t rank = 0;
  SharedBytes sealed_gradient = {};  // sealed job: the gradient, sealed (gradient is empty)
  std::string region = {};           // shared memory: the gradient is in this region (gradient is empty)
};
struct Params {
  uint64_t version = 0, range_begin = 0;
  Floats values;
  SharedBytes sealed_values = {};  // sealed job: the values, sealed (values is empty)
  bool in_region = false;          // shared memory: the values are in the request's region
};

struct Contribution {
  std::string worker;
  uint64_t accepted = 0, rejected = 0, samples = 0;
  double update_norm_sum = 0;
  uint64_t staleness_max = 0, staleness_sum = 0;
  uint32_t rank = 0;
  std::string key_fingerprint = {};  // of the key that authenticated the pushes; empty: in clear
  uint64_t unauthenticated = 0;      // refused: claimed this rank without its key
};
struct CheckpointShard {
  uint64_t step = 0, range_begin = 0;
  std::vector<float> values;
  std::vector<Contribution> contributions;
  bool final = false;
  std::vector<float> optimizer_state = {};  // layout: core/optimizer.h OptimizerState
  uint64_t optimizer_steps = 0;
};
struct JobReleased {
  uint64_t applied_step = 0, updates = 0, range_begin = 0, range_end = 0;
};
struct ResumeJob {
  std::string principal;
};
struct ExportRequest {
  std::string checkpoint, principal, purpose;
};
struct ExportReply {
  std::string checkpoint, root_hash;
  std::vector<uint32_t> layer_sizes;
  std::vector<float> values;
  std::string usage_id;
  std::string receipt;  // JSON, see custody.capnp
  std::string model_card;  // JSON, storage/model_card.h
  std::string architecture;  // Model::architecture() of a model with conv layers; empty: dense
};

struct Predict {
  std::string model, principal;
  uint32_t rows = 0, features = 0;
  std::vector<float> inputs;
  std::string purpose;
};
struct PredictReply {
  std::string checkpoint, model, root_hash;
  uint32_t classes = 0;
  std::vector<float> probabilities;
  std::vector<std::string> prediction_ids;
  std::string call_id;
  std::string receipt;  // JSON, see custody.capnp
};

struct AddPrincipal {
  std::string name, role;
  std::string public_key;  // curve: the principal's own key; empty: the coordinator makes a pair
  bool rotate = false;
  bool bearer_token = false;  // curve: a token for the HTTPS listener instead of a key pair
};
struct PrincipalAdded {
  std::string name, role, token;
  std::string public_key, secret_key;  // curve mode; the secret only when the coordinator made it
};
struct PrincipalsRequest {};
struct PrincipalsReply {
  std::string json;
};
struct RevokePrincipal {
  std::string name, reason;
};

struct UsageRequest {
  std::string model;
  int64_t since_ms = 0, until_ms = 0;
  uint32_t limit = 100;  // newest records listed; 0: all (the summary always covers all)
};
struct UsageReply {
  std::string json;
};
struct AuditHeadRequest {};
struct AuditHeadReply {
  std::string json;
};
// A data set's privacy budget (custody.capnp).
struct SetPrivacyBudget {
  std::string dataset;
  double epsilon = 0, delta = 0;
  std::string reason, principal;
};
struct PrivacyBudgetReply {
  std::string json;
};
// A backup of the custody store, taken by the coordinator while it runs (custody.capnp).
struct StoreBackup {
  std::string dir;  // absolute, on the coordinator's machine
  uint64_t rate_limit_bytes_per_s = 0;  // 0: unlimited
};
struct StoreBackupReply {
  std::string dir;
  uint32_t backup_id = 0;
  int64_t taken_at_s = 0;
  uint64_t bytes = 0;
  uint32_t files = 0;
  std::string store_path;
  std::vector<std::string> store_keys;  // key versions its tensors are sealed under
  uint64_t elapsed_ms = 0;
};
// Data shipping (custody.capnp): records fetched from the coordinator by their SHA-256.
inline constexpr uint32_t kMaxRecordsChunk = uint32_t(4) << 20;
struct FetchRecords {
  std::string sha256;
  uint64_t offset = 0;
  uint32_t length = 0;  // at most kMaxRecordsChunk
};
struct RecordsChunk {
  std::string sha256;
  uint64_t offset = 0, total_bytes = 0;
  std::vector<uint8_t> data;
};
// How a worker came by a task's records (custody.capnp ShardObtained.how).
enum class ShardSource : uint8_t { kLocal, kCache, kFetched };
const char* to_string(ShardSource s);  // "local", "cache", "fetched"
struct ShardObtained {
  uint32_t rank = 0;
  ShardSource how = ShardSource::kLocal;
  std::string source;
  uint64_t bytes_fetched = 0, elapsed_ms = 0;
};

// A read-only query of the coordinator's custody store (custody.capnp, StoreQuery).
struct StoreQuery {
  std::string query, argument;
};
struct StoreQueryReply {
  std::string json;
};

// Withdrawal of data and exceptions to its taint (custody.capnp, issue 15).
struct LiabilityRequest {
  enum class Action { kRevoke, kAllow };
  Action action = Action::kRevoke;
  std::string principal, reason;
  std::string dataset;              // revoke
  std::vector<uint64_t> records;    // revoke; empty: the whole data set
  std::string model, revocation, purpose;  // allow
};
struct LiabilityReply {
  std::string json;
};

// Training-data attribution (custody.capnp's Attribute, storage/attribution.h).
struct Attribute {
  std::string prediction_id, principal;
  uint32_t rows = 0, features = 0;
  std::vector<float> inputs;
  uint32_t top = 10;
  int32_t label = -1;
  std::string self_influence;
  std::string purpose;
  uint32_t batch_rows = 0;  // rows per predict call the input was sent in; 0: one call
  bool in_coordinator = false;  // score in the coordinator, not on the workers
};
struct AttributionReply {
  std::string json, usage_id, receipt;
};
// Attribution's scoring on the workers (custody.capnp's ScoreRecords, RecordScores).
struct ScoringCheckpoint {
  std::vector<float> params;
  float learning_rate = 0;
};
struct ScoreRecords {
  std::string spec_text, dataset_hash;
  uint64_t begin = 0, end = 0;
  RecordsDigest digest = {};
  uint64_t train_records = 0;
  std::vector<uint32_t> layer_sizes = {};
  std::string activation = {};
  std::vector<ScoringCheckpoint> checkpoints = {};
  bool self_influence = false;
  std::vector<float> test_input = {};
  uint8_t test_label = 0;
  uint32_t top = 10;
  std::string architecture = {};  // a model with conv layers (Model::architecture()); empty: layer_sizes
};
struct ScoredRecord {
  uint64_t index = 0;
  float score = 0;
};
struct RecordScores {
  uint64_t begin = 0, end = 0;
  std::vector<ScoredRecord> highest = {}, lowest = {};
  uint64_t records_scored = 0, elapsed_ms = 0;
  std::string source = {};
};

using Body = std::variant<Error, Register, RegisterAck, Heartbeat, HeartbeatAck, SubmitJob,
                          JobAccepted, StatusRequest, StatusReply, CancelJob, AssignKeyRange,
                          KeyRangeReady, AssignTask, Progress, EpochEval, TaskDone, StopJob, Pull,
                          Push, Params, CheckpointShard, ResumeJob, ExportRequest, ExportReply,
                          Predict, PredictReply, AddPrincipal, PrincipalAdded, UsageRequest, UsageReply,
                          AuditHeadRequest, AuditHeadReply,
                          JobReleased, PrincipalsRequest, PrincipalsReply, RevokePrincipal, StoreBackup,
                          StoreBackupReply, StoreQuery, StoreQueryReply, SetPrivacyBudget, PrivacyBudgetReply,
                          FetchRecords, RecordsChunk, ShardObtained, LiabilityRequest, LiabilityReply, Attribute,
                          AttributionReply, ScoreRecords, RecordScores>;

struct Envelope {
  uint16_t version = kProtocolVersion;
  std::string sender, job_id;
  uint64_t request_id = 0;
  Body body;
  std::string token;  // the caller's secret (--auth); empty when none was given
  // Which run of the job (0, then +1 per recovery). A node drops job messages of another
  // attempt, so a message from before a rollback cannot change the rolled-back state.
  uint32_t attempt = 0;

  template <class T>
  const T* get() const { return std::get_if<T>(&body); }
};

// The body's name as in custody.capnp ("push", "statusReply"), for logs and errors.
const char* body_name(const Body& body);

// A reply to `request` from `sender`: it carries what the caller matches replies by and
// what fences them, all from the request: the job id, the request id and the attempt. Not
// the token: a reply never carries a caller's secret.
inline Envelope reply_to(const Envelope& request, std::string sender, Body body) {
  Envelope e;
  e.sender = std::move(sender);
  e.job_id = request.job_id;
  e.request_id = request.request_id;
  e.attempt = request.attempt;
  e.body = std::move(body);
  return e;
}

inline Envelope make_error(const Envelope& request, const std::string& sender, const Status& s) {
  return reply_to(request, sender, Error{s.code(), s.message()});
}

}  // namespace custody::msg
