#include "protocols/codec.h"

#include <cmath>
#include <capnp/message.h>
#include <capnp/orphan.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <cstdio>
#include <cstring>
#include <string_view>

#include "core/utf8.h"
#include "protocols/custody.capnp.h"

namespace custody::msg {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensors travel as little-endian float32 and are copied as-is");

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

capnp::Text::Reader text(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

// A text field that is not UTF-8: decode() refuses the message (core/utf8.h says why).
struct NotUtf8 {
  size_t offset;
  unsigned char byte;
};
std::string str(capnp::Text::Reader t) {
  const std::string_view v(t.begin(), t.size());
  if (const size_t at = invalid_utf8_at(v); at != v.size()) throw NotUtf8{at, static_cast<unsigned char>(v[at])};
  return std::string(v);
}

capnp::Data::Reader floats(const float* data, size_t n) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(data), n * sizeof(float));
}
capnp::Data::Reader floats(const std::vector<float>& v) { return floats(v.data(), v.size()); }
capnp::Data::Reader floats(const Floats& v) { return floats(v.data(), v.size()); }

// Large float arrays are referenced by the message instead of copied into it: they become
// a segment of their own, which writeMessage then copies once into the output bytes.
// Cap'n Proto writes whole words, so only arrays that end on a word boundary are referenced
// (it would read up to 7 bytes past the end otherwise); the rest are copied.
template <class V>
bool referenced(const V& v) {
  const size_t bytes = v.size() * sizeof(float);
  return bytes >= 4096 && bytes % sizeof(capnp::word) == 0 &&
         reinterpret_cast<uintptr_t>(v.data()) % sizeof(capnp::word) == 0;
}

template <class Builder, class V, class Adopt, class Set>
void put_floats(Builder b, const V& v, Adopt adopt, Set set) {
  auto d = floats(v);
  if (referenced(v)) {
    adopt(capnp::Orphanage::getForMessageContaining(b).referenceExternalData(d));
  } else {
    set(d);
  }
}

Status read_floats(capnp::Data::Reader d, const char* field, std::vector<float>& out) {
  if (d.size() % sizeof(float) != 0) {
    return invalid_argument(std::string("field '") + field + "' holds " + std::to_string(d.size()) +
                            " bytes, not a whole number of float32 values");
  }
  out.resize(d.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), d.begin(), d.size());
  return Status::ok();
}

// A parameter block: shares the received bytes (kept alive by `owner`) instead of copying
// them, when there is an owner and the floats are aligned (they are, in a word-aligned
// message: Cap'n Proto starts every Data on a word). Otherwise, and for a size that is not
// whole floats (which the copying reader reports), the values are copied.
Status read_floats(capnp::Data::Reader d, const char* field, const std::shared_ptr<const void>& owner,
                   Floats& out) {
  if (!owner || reinterpret_cast<uintptr_t>(d.begin()) % alignof(float) != 0 || d.size() % sizeof(float) != 0) {
    std::vector<float> copy;
    CUSTODY_RETURN_IF_ERROR(read_floats(d, field, copy));
    out = Floats(std::move(copy));
    return Status::ok();
  }
  out = Floats::shared(owner, reinterpret_cast<const float*>(d.begin()), d.size() / sizeof(float));
  return Status::ok();
}

// A sealed block: referenced like a float array when its buffer is padded to whole words
// (SharedBytes::make), else copied.
bool referenced(const SharedBytes& v) {
  return v.size() >= 4096 && v.readable() >= (v.size() + 7) / 8 * 8 &&
         reinterpret_cast<uintptr_t>(v.data()) % sizeof(capnp::word) == 0;
}
capnp::Data::Reader bytes_of(const SharedBytes& v) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(v.data()), v.size());
}
template <class Builder, class Adopt, class Set>
void put_bytes(Builder b, const SharedBytes& v, Adopt adopt, Set set) {
  if (referenced(v)) {
    // Its segment is rounded up to whole words: the padding SharedBytes::make provides.
    adopt(capnp::Orphanage::getForMessageContaining(b).referenceExternalData(bytes_of(v)));
  } else {
    set(bytes_of(v));
  }
}
// A sealed block as received: shares the frame when there is an owner, else a copy.
SharedBytes read_bytes(capnp::Data::Reader d, const std::shared_ptr<const void>& owner) {
  if (d.size() == 0) return {};
  if (!owner) return SharedBytes::copy_of(d.begin(), d.size());
  return SharedBytes::shared(owner, d.begin(), d.size());
}
capnp::Data::Reader key_bytes(const AeadKey& key) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(key.data()), kAeadKeyBytes);
}
// A data-plane key: empty is none; anything but 32 bytes is refused by name.
Result<std::optional<AeadKey>> read_key(capnp::Data::Reader d, const std::string& field) {
  if (d.size() == 0) return std::optional<AeadKey>();
  auto key = AeadKey::from_bytes(std::string_view(reinterpret_cast<const char*>(d.begin()), d.size()));
  if (!key.is_ok()) return invalid_argument(field + ": " + key.status().message());
  return std::optional<AeadKey>(std::move(key).value());
}

template <class ListBuilder>
void set_texts(ListBuilder list, const std::vector<std::string>& v) {
  for (size_t i = 0; i < v.size(); ++i) list.set(i, text(v[i]));
}
std::vector<std::string> get_texts(capnp::List<capnp::Text>::Reader list) {
  std::vector<std::string> out;
  for (auto t : list) out.push_back(str(t));
  return out;
}

wire::ErrorCode to_wire(ErrorCode c) { return static_cast<wire::ErrorCode>(static_cast<uint16_t>(c)); }
ErrorCode from_wire(wire::ErrorCode c) {
  auto v = static_cast<uint16_t>(c);
  return v <= static_cast<uint16_t>(ErrorCode::kPermissionDenied) ? static_cast<ErrorCode>(v)
                                                                  : ErrorCode::kInternal;
}
wire::NodeRole to_wire(NodeRole r) {
  return r == NodeRole::kWorker ? wire::NodeRole::WORKER : wire::NodeRole::PARAMETER_SERVER;
}
// An enumerant this build does not know is refused by name: read as the nearest known one,
// a node of a newer or hostile sender would be taken for a role it never claimed.
Result<NodeRole> from_wire(wire::NodeRole r, const char* field) {
  switch (r) {
    case wire::NodeRole::WORKER: return NodeRole::kWorker;
    case wire::NodeRole::PARAMETER_SERVER: return NodeRole::kParameterServer;
  }
  return invalid_argument(std::string(field) + " is " + std::to_string(static_cast<uint16_t>(r)) +
                          ", which is no node role (parameterServer = 0, worker = 1)");
}

void encode_job(wire::JobStatus::Builder b, const JobStatus& j) {
  b.setJobId(text(j.job_id));
  b.setName(text(j.name));
  b.setState(static_cast<wire::JobState>(static_cast<uint16_t>(j.state)));
  b.setMessage(text(j.message));
  b.setSubmitter(text(j.submitter));
  b.setEpoch(j.epoch);
  b.setEpochs(j.epochs);
  b.setStep(j.step);
  b.setTotalSteps(j.total_steps);
  b.setLoss(j.loss);
  b.setTestAccuracy(j.test_accuracy);
  b.setTestLoss(j.test_loss);
  b.setSamplesPerSec(j.samples_per_sec);
  b.setSubmittedAtMs(j.submitted_at_ms);
  b.setStartedAtMs(j.started_at_ms);
  b.setFinishedAtMs(j.finished_at_ms);
  set_texts(b.initWorkers(j.workers.size()), j.workers);
  set_texts(b.initServers(j.servers.size()), j.servers);
  b.setDatasetHash(text(j.dataset_hash));
  b.setConsistency(text(j.consistency));
  auto h = b.initAccuracyHistory(j.accuracy_history.size());
  for (size_t i = 0; i < j.accuracy_history.size(); ++i) h.set(i, j.accuracy_history[i]);
  b.setLastCheckpoint(text(j.last_checkpoint));
  set_texts(b.initWaitingFor(j.waiting_for.size()), j.waiting_for);
  b.setRecoveries(j.recoveries);
  b.setDataPlaneSealed(j.data_plane_sealed);
  b.setDataPlane(text(j.data_plane));
}

Result<JobStatus> decode_job(wire::JobStatus::Reader r) {
  JobStatus j;
  j.job_id = str(r.getJobId());
  j.name = str(r.getName());
  auto state = static_cast<uint16_t>(r.getState());
  if (state > static_cast<uint16_t>(JobState::kCancelled)) {
    return invalid_argument("job status has an unknown state " + std::to_string(state));
  }
  j.state = static_cast<JobState>(state);
  j.message = str(r.getMessage());
  j.submitter = str(r.getSubmitter());
  j.epoch = r.getEpoch();
  j.epochs = r.getEpochs();
  j.step = r.getStep();
  j.total_steps = r.getTotalSteps();
  j.loss = r.getLoss();
  j.test_accuracy = r.getTestAccuracy();
  j.test_loss = r.getTestLoss();
  j.samples_per_sec = r.getSamplesPerSec();
  j.submitted_at_ms = r.getSubmittedAtMs();
  j.started_at_ms = r.getStartedAtMs();
  j.finished_at_ms = r.getFinishedAtMs();
  j.workers = get_texts(r.getWorkers());
  j.servers = get_texts(r.getServers());
  j.dataset_hash = str(r.getDatasetHash());
  j.consistency = str(r.getConsistency());
  for (double a : r.getAccuracyHistory()) j.accuracy_history.push_back(a);
  j.last_checkpoint = str(r.getLastCheckpoint());
  j.waiting_for = get_texts(r.getWaitingFor());
  j.recoveries = r.getRecoveries();
  j.data_plane_sealed = r.getDataPlaneSealed();
  j.data_plane = str(r.getDataPlane());
  return j;
}

void encode_body(wire::Envelope::Body::Builder b, const Body& body) {
  std::visit(
      overloaded{
          [&](const Error& m) {
            auto e = b.initError();
            e.setCode(to_wire(m.code));
            e.setMessage(text(m.message));
            e.setRank(m.rank);
            e.setNodeLocal(m.node_local);
          },
          [&](const Register& m) {
            auto e = b.initRegister();
            e.setRole(to_wire(m.role));
            e.setAddress(text(m.address));
            e.setHost(text(m.host));
            e.setPid(m.pid);
            e.setName(text(m.name));
            e.setHostId(text(m.host_id));
            e.setSession(text(m.session));
          },
          [&](const RegisterAck& m) {
            auto e = b.initRegisterAck();
            e.setNodeId(text(m.node_id));
            e.setHeartbeatIntervalMs(m.heartbeat_interval_ms);
          },
          [&](const Heartbeat& m) {
            auto e = b.initHeartbeat();
            e.setBusy(m.busy);
            e.setLeaving(m.leaving);
          },
          [&](const HeartbeatAck& m) { b.initHeartbeatAck().setKnown(m.known); },
          [&](const SubmitJob& m) {
            auto e = b.initSubmitJob();
            e.setSpecText(text(m.spec_text));
            e.setOrigin(text(m.origin));
            e.setSubmitter(text(m.submitter));
            e.setBudgetOverride(text(m.budget_override));
          },
          [&](const JobAccepted& m) {
            auto e = b.initJobAccepted();
            e.setJobId(text(m.job_id));
            e.setMessage(text(m.message));
          },
          [&](const StatusRequest& m) { b.initStatusRequest().setIncludeNodes(m.include_nodes); },
          [&](const StatusReply& m) {
            auto e = b.initStatusReply();
            auto jobs = e.initJobs(m.jobs.size());
            for (size_t i = 0; i < m.jobs.size(); ++i) encode_job(jobs[i], m.jobs[i]);
            auto nodes = e.initNodes(m.nodes.size());
            for (size_t i = 0; i < m.nodes.size(); ++i) {
              const NodeStatus& n = m.nodes[i];
              nodes[i].setNodeId(text(n.node_id));
              nodes[i].setRole(to_wire(n.role));
              nodes[i].setAddress(text(n.address));
              nodes[i].setAlive(n.alive);
              nodes[i].setBusy(n.busy);
              nodes[i].setLastSeenMsAgo(n.last_seen_ms_ago);
              nodes[i].setHost(text(n.host));
              nodes[i].setPid(n.pid);
              nodes[i].setLeft(n.left);
            }
            e.setStorePath(text(m.store_path));
          },
          [&](const CancelJob& m) {
            auto e = b.initCancelJob();
            e.setReason(text(m.reason));
            e.setPrincipal(text(m.principal));
          },
          [&](const AssignKeyRange& m) {
            auto e = b.initAssignKeyRange();
            e.setSpecText(text(m.spec_text));
            e.setServerIndex(m.server_index);
            e.setRangeBegin(m.range_begin);
            e.setRangeEnd(m.range_end);
            e.setNumParameters(m.num_parameters);
            e.setNumWorkers(m.num_workers);
            e.setTotalSteps(m.total_steps);
            e.setInputFeatures(m.input_features);
            e.setStepsPerEpoch(m.steps_per_epoch);
            e.setCheckpointEvery(m.checkpoint_every);
            e.setStartStep(m.start_step);
            put_floats(e, m.initial_values, [&](auto o) { e.adoptInitialValues(kj::mv(o)); }, [&](auto d) { e.setInitialValues(d); });
            put_floats(e, m.optimizer_state, [&](auto o) { e.adoptOptimizerState(kj::mv(o)); },
                       [&](auto d) { e.setOptimizerState(d); });
            e.setOptimizerSteps(m.optimizer_steps);
            auto keys = e.initRankKeys(static_cast<unsigned>(m.rank_keys.size()));
            for (size_t i = 0; i < m.rank_keys.size(); ++i) keys.set(static_cast<unsigned>(i), key_bytes(m.rank_keys[i]));
            if (m.reply_key) e.setReplyKey(key_bytes(*m.reply_key));
            set_texts(e.initRankNodes(static_cast<unsigned>(m.rank_nodes.size())), m.rank_nodes);
            e.setNoiseStd(m.noise_std);
          },
          [&](const KeyRangeReady& m) {
            auto e = b.initKeyRangeReady();
            e.setRangeBegin(m.range_begin);
            e.setRangeEnd(m.range_end);
          },
          [&](const AssignTask& m) {
            auto e = b.initAssignTask();
            e.setSpecText(text(m.spec_text));
            e.setRank(m.rank);
            auto s = e.initShard();
            s.setDatasetHash(text(m.shard.dataset_hash));
            s.setIndex(m.shard.index);
            s.setNumShards(m.shard.num_shards);
            s.setBegin(m.shard.begin);
            s.setEnd(m.shard.end);
            e.setTestBegin(m.test_begin);
            e.setTestEnd(m.test_end);
            e.setStepsPerEpoch(m.steps_per_epoch);
            auto servers = e.initServers(m.servers.size());
            for (size_t i = 0; i < m.servers.size(); ++i) {
              servers[i].setNodeId(text(m.servers[i].node_id));
              servers[i].setAddress(text(m.servers[i].address));
              servers[i].setRangeBegin(m.servers[i].range_begin);
              servers[i].setRangeEnd(m.servers[i].range_end);
              servers[i].setSharedMemory(m.servers[i].shared_memory);
            }
            e.setNumParameters(m.num_parameters);
            e.setStartStep(m.start_step);
            if (m.rank_key) e.setRankKey(key_bytes(*m.rank_key));
            if (m.replies_key) e.setRepliesKey(key_bytes(*m.replies_key));
            e.setTrainImagesSha256(text(m.train_digest.images_sha256));
            e.setTrainLabelsSha256(text(m.train_digest.labels_sha256));
            e.setTestImagesSha256(text(m.test_digest.images_sha256));
            e.setTestLabelsSha256(text(m.test_digest.labels_sha256));
            e.setTrainRecords(m.train_records);
            auto excluded = e.initExcluded(static_cast<unsigned>(m.excluded.size()));
            for (size_t i = 0; i < m.excluded.size(); ++i) excluded.set(static_cast<unsigned>(i), m.excluded[i]);
          },
          [&](const Progress& m) {
            auto e = b.initProgress();
            e.setEpoch(m.epoch);
            e.setStep(m.step);
            e.setSamples(m.samples);
            e.setLossSum(m.loss_sum);
            e.setElapsedUs(m.elapsed_us);
            e.setRank(m.rank);
          },
          [&](const EpochEval& m) {
            auto e = b.initEpochEval();
            e.setEpoch(m.epoch);
            e.setCorrect(m.correct);
            e.setTotal(m.total);
            e.setLossSum(m.loss_sum);
            e.setRank(m.rank);
          },
          [&](const TaskDone& m) {
            auto e = b.initTaskDone();
            e.setSteps(m.steps);
            e.setSamples(m.samples);
            e.setRank(m.rank);
          },
          [&](const StopJob& m) { b.initStopJob().setReason(text(m.reason)); },
          [&](const Pull& m) {
            auto e = b.initPull();
            e.setWorker(text(m.worker));
            e.setRank(m.rank);
            if (!m.seal.empty()) {
              e.setSeal(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(m.seal.data()), m.seal.size()));
            }
            if (!m.region.empty()) e.setRegion(text(m.region));
          },
          [&](const Push& m) {
            auto e = b.initPush();
            e.setWorker(text(m.worker));
            e.setStep(m.step);
            put_floats(e, m.gradient, [&](auto o) { e.adoptGradient(kj::mv(o)); }, [&](auto d) { e.setGradient(d); });
            e.setSamples(m.samples);
            e.setBaseVersion(m.base_version);
            e.setRank(m.rank);
            if (!m.region.empty()) e.setRegion(text(m.region));
            if (!m.sealed_gradient.empty()) {
              put_bytes(e, m.sealed_gradient, [&](auto o) { e.adoptSealedGradient(kj::mv(o)); },
                        [&](auto d) { e.setSealedGradient(d); });
            }
          },
          [&](const Params& m) {
            auto e = b.initParams();
            e.setVersion(m.version);
            e.setRangeBegin(m.range_begin);
            put_floats(e, m.values, [&](auto o) { e.adoptValues(kj::mv(o)); }, [&](auto d) { e.setValues(d); });
            e.setInRegion(m.in_region);
            if (!m.sealed_values.empty()) {
              put_bytes(e, m.sealed_values, [&](auto o) { e.adoptSealedValues(kj::mv(o)); },
                        [&](auto d) { e.setSealedValues(d); });
            }
          },
          [&](const CheckpointShard& m) {
            auto e = b.initCheckpointShard();
            e.setStep(m.step);
            e.setRangeBegin(m.range_begin);
            put_floats(e, m.values, [&](auto o) { e.adoptValues(kj::mv(o)); }, [&](auto d) { e.setValues(d); });
            auto list = e.initContributions(m.contributions.size());
            for (size_t i = 0; i < m.contributions.size(); ++i) {
              const Contribution& c = m.contributions[i];
              list[i].setWorker(text(c.worker));
              list[i].setAccepted(c.accepted);
              list[i].setRejected(c.rejected);
              list[i].setSamples(c.samples);
              list[i].setUpdateNormSum(c.update_norm_sum);
              list[i].setStalenessMax(c.staleness_max);
              list[i].setStalenessSum(c.staleness_sum);
              list[i].setRank(c.rank);
              list[i].setKeyFingerprint(text(c.key_fingerprint));
              list[i].setUnauthenticated(c.unauthenticated);
            }
            e.setFinal(m.final);
            put_floats(e, m.optimizer_state, [&](auto o) { e.adoptOptimizerState(kj::mv(o)); },
                       [&](auto d) { e.setOptimizerState(d); });
            e.setOptimizerSteps(m.optimizer_steps);
          },
          [&](const ResumeJob& m) { b.initResumeJob().setPrincipal(text(m.principal)); },
          [&](const ExportRequest& m) {
            auto e = b.initExportRequest();
            e.setCheckpoint(text(m.checkpoint));
            e.setPrincipal(text(m.principal));
            e.setPurpose(text(m.purpose));
          },
          [&](const ExportReply& m) {
            auto e = b.initExportReply();
            e.setCheckpoint(text(m.checkpoint));
            e.setRootHash(text(m.root_hash));
            auto sizes = e.initLayerSizes(m.layer_sizes.size());
            for (size_t i = 0; i < m.layer_sizes.size(); ++i) sizes.set(i, m.layer_sizes[i]);
            put_floats(e, m.values, [&](auto o) { e.adoptValues(kj::mv(o)); }, [&](auto d) { e.setValues(d); });
            e.setUsageId(text(m.usage_id));
            e.setReceipt(text(m.receipt));
            e.setModelCard(text(m.model_card));
            e.setArchitecture(text(m.architecture));
          },
          [&](const Predict& m) {
            auto e = b.initPredict();
            e.setModel(text(m.model));
            e.setPrincipal(text(m.principal));
            e.setRows(m.rows);
            e.setFeatures(m.features);
            e.setInputs(floats(m.inputs));
            e.setPurpose(text(m.purpose));
          },
          [&](const PredictReply& m) {
            auto e = b.initPredictReply();
            e.setCheckpoint(text(m.checkpoint));
            e.setModel(text(m.model));
            e.setRootHash(text(m.root_hash));
            e.setClasses(m.classes);
            e.setProbabilities(floats(m.probabilities));
            set_texts(e.initPredictionIds(m.prediction_ids.size()), m.prediction_ids);
            e.setCallId(text(m.call_id));
            e.setReceipt(text(m.receipt));
          },
          [&](const AddPrincipal& m) {
            auto e = b.initAddPrincipal();
            e.setName(text(m.name));
            e.setRole(text(m.role));
            e.setPublicKey(text(m.public_key));
            e.setRotate(m.rotate);
            e.setBearerToken(m.bearer_token);
          },
          [&](const PrincipalAdded& m) {
            auto e = b.initPrincipalAdded();
            e.setName(text(m.name));
            e.setRole(text(m.role));
            e.setToken(text(m.token));
            e.setPublicKey(text(m.public_key));
            e.setSecretKey(text(m.secret_key));
          },
          [&](const PrincipalsRequest&) { b.initPrincipalsRequest(); },
          [&](const PrincipalsReply& m) { b.initPrincipalsReply().setJson(text(m.json)); },
          [&](const RevokePrincipal& m) {
            auto e = b.initRevokePrincipal();
            e.setName(text(m.name));
            e.setReason(text(m.reason));
          },
          [&](const UsageRequest& m) {
            auto e = b.initUsageRequest();
            e.setModel(text(m.model));
            e.setSinceMs(m.since_ms);
            e.setUntilMs(m.until_ms);
            e.setLimit(m.limit);
          },
          [&](const UsageReply& m) { b.initUsageReply().setJson(text(m.json)); },
          [&](const AuditHeadRequest&) { b.initAuditHeadRequest(); },
          [&](const AuditHeadReply& m) { b.initAuditHeadReply().setJson(text(m.json)); },
          [&](const JobReleased& m) {
            auto e = b.initJobReleased();
            e.setAppliedStep(m.applied_step);
            e.setUpdates(m.updates);
            e.setRangeBegin(m.range_begin);
            e.setRangeEnd(m.range_end);
          },
          [&](const StoreBackup& m) {
            auto e = b.initStoreBackup();
            e.setDir(text(m.dir));
            e.setRateLimitBytesPerSec(m.rate_limit_bytes_per_s);
          },
          [&](const StoreBackupReply& m) {
            auto e = b.initStoreBackupReply();
            e.setDir(text(m.dir));
            e.setBackupId(m.backup_id);
            e.setTakenAtS(m.taken_at_s);
            e.setBytes(m.bytes);
            e.setFiles(m.files);
            e.setStorePath(text(m.store_path));
            set_texts(e.initStoreKeys(m.store_keys.size()), m.store_keys);
            e.setElapsedMs(m.elapsed_ms);
          },
          [&](const StoreQuery& m) {
            auto e = b.initStoreQuery();
            e.setQuery(text(m.query));
            e.setArgument(text(m.argument));
          },
          [&](const StoreQueryReply& m) { b.initStoreQueryReply().setJson(text(m.json)); },
          [&](const SetPrivacyBudget& m) {
            auto e = b.initSetPrivacyBudget();
            e.setDataset(text(m.dataset));
            e.setEpsilon(m.epsilon);
            e.setDelta(m.delta);
            e.setReason(text(m.reason));
            e.setPrincipal(text(m.principal));
          },
          [&](const PrivacyBudgetReply& m) { b.initPrivacyBudgetReply().setJson(text(m.json)); },
          [&](const FetchRecords& m) {
            auto e = b.initFetchRecords();
            e.setSha256(text(m.sha256));
            e.setOffset(m.offset);
            e.setLength(m.length);
          },
          [&](const RecordsChunk& m) {
            auto e = b.initRecordsChunk();
            e.setSha256(text(m.sha256));
            e.setOffset(m.offset);
            e.setTotalBytes(m.total_bytes);
            e.setData(capnp::Data::Reader(m.data.data(), m.data.size()));
          },
          [&](const ShardObtained& m) {
            auto e = b.initShardObtained();
            e.setRank(m.rank);
            e.setHow(text(to_string(m.how)));
            e.setSource(text(m.source));
            e.setBytesFetched(m.bytes_fetched);
            e.setElapsedMs(m.elapsed_ms);
          },
          [&](const LiabilityRequest& m) {
            auto e = b.initLiabilityRequest();
            e.setAction(m.action == LiabilityRequest::Action::kAllow ? wire::LiabilityRequest::Action::ALLOW
                                                                      : wire::LiabilityRequest::Action::REVOKE);
            e.setPrincipal(text(m.principal));
            e.setReason(text(m.reason));
            e.setDataset(text(m.dataset));
            auto list = e.initRecords(static_cast<unsigned>(m.records.size()));
            for (size_t i = 0; i < m.records.size(); ++i) list.set(static_cast<unsigned>(i), m.records[i]);
            e.setModel(text(m.model));
            e.setRevocation(text(m.revocation));
            e.setPurpose(text(m.purpose));
          },
          [&](const LiabilityReply& m) { b.initLiabilityReply().setJson(text(m.json)); },
          [&](const Attribute& m) {
            auto e = b.initAttribute();
            e.setPredictionId(text(m.prediction_id));
            e.setPrincipal(text(m.principal));
            e.setRows(m.rows);
            e.setFeatures(m.features);
            e.setInputs(floats(m.inputs));
            e.setTop(m.top);
            e.setLabel(m.label);
            e.setSelfInfluence(text(m.self_influence));
            e.setPurpose(text(m.purpose));
            e.setBatchRows(m.batch_rows);
            e.setInCoordinator(m.in_coordinator);
          },
          [&](const AttributionReply& m) {
            auto e = b.initAttributionReply();
            e.setJson(text(m.json));
            e.setUsageId(text(m.usage_id));
            e.setReceipt(text(m.receipt));
          },
          [&](const ScoreRecords& m) {
            auto e = b.initScoreRecords();
            e.setSpecText(text(m.spec_text));
            e.setDatasetHash(text(m.dataset_hash));
            e.setBegin(m.begin);
            e.setEnd(m.end);
            e.setImagesSha256(text(m.digest.images_sha256));
            e.setLabelsSha256(text(m.digest.labels_sha256));
            e.setTrainRecords(m.train_records);
            auto sizes = e.initLayerSizes(static_cast<unsigned>(m.layer_sizes.size()));
            for (size_t i = 0; i < m.layer_sizes.size(); ++i) sizes.set(static_cast<unsigned>(i), m.layer_sizes[i]);
            e.setActivation(text(m.activation));
            e.setArchitecture(text(m.architecture));
            auto cps = e.initCheckpoints(static_cast<unsigned>(m.checkpoints.size()));
            for (size_t i = 0; i < m.checkpoints.size(); ++i) {
              cps[static_cast<unsigned>(i)].setParams(floats(m.checkpoints[i].params));
              cps[static_cast<unsigned>(i)].setLearningRate(m.checkpoints[i].learning_rate);
            }
            e.setSelfInfluence(m.self_influence);
            e.setTestInput(floats(m.test_input));
            e.setTestLabel(m.test_label);
            e.setTop(m.top);
          },
          [&](const RecordScores& m) {
            auto e = b.initRecordScores();
            e.setBegin(m.begin);
            e.setEnd(m.end);
            auto put = [](auto list, const std::vector<ScoredRecord>& v) {
              for (size_t i = 0; i < v.size(); ++i) {
                list[static_cast<unsigned>(i)].setIndex(v[i].index);
                list[static_cast<unsigned>(i)].setScore(v[i].score);
              }
            };
            put(e.initHighest(static_cast<unsigned>(m.highest.size())), m.highest);
            put(e.initLowest(static_cast<unsigned>(m.lowest.size())), m.lowest);
            e.setRecordsScored(m.records_scored);
            e.setElapsedMs(m.elapsed_ms);
            e.setSource(text(m.source));
          },
      },
      body);
}

Result<Body> decode_body(wire::Envelope::Body::Reader b, const std::shared_ptr<const void>& owner) {
  using W = wire::Envelope::Body;
  switch (b.which()) {
    case W::ERROR: {
      auto r = b.getError();
      return Body(Error{from_wire(r.getCode()), str(r.getMessage()), r.getRank(), r.getNodeLocal()});
    }
    case W::REGISTER: {
      auto r = b.getRegister();
      CUSTODY_ASSIGN_OR_RETURN(auto role, from_wire(r.getRole(), "register.role"));
      return Body(
          Register{role, str(r.getAddress()), str(r.getHost()), r.getPid(), str(r.getName()), str(r.getHostId()),
                   str(r.getSession())});
    }
    case W::REGISTER_ACK: {
      auto r = b.getRegisterAck();
      return Body(RegisterAck{str(r.getNodeId()), r.getHeartbeatIntervalMs()});
    }
    case W::HEARTBEAT: return Body(Heartbeat{b.getHeartbeat().getBusy(), b.getHeartbeat().getLeaving()});
    case W::HEARTBEAT_ACK: return Body(HeartbeatAck{b.getHeartbeatAck().getKnown()});
    case W::SUBMIT_JOB: {
      auto r = b.getSubmitJob();
      return Body(SubmitJob{str(r.getSpecText()), str(r.getOrigin()), str(r.getSubmitter()), str(r.getBudgetOverride())});
    }
    case W::JOB_ACCEPTED: {
      auto r = b.getJobAccepted();
      return Body(JobAccepted{str(r.getJobId()), str(r.getMessage())});
    }
    case W::STATUS_REQUEST: return Body(StatusRequest{b.getStatusRequest().getIncludeNodes()});
    case W::STATUS_REPLY: {
      auto r = b.getStatusReply();
      StatusReply m;
      for (auto j : r.getJobs()) {
        CUSTODY_ASSIGN_OR_RETURN(auto job, decode_job(j));
        m.jobs.push_back(std::move(job));
      }
      for (auto n : r.getNodes()) {
        CUSTODY_ASSIGN_OR_RETURN(auto role, from_wire(n.getRole(), "statusReply.nodes[].role"));
        m.nodes.push_back(NodeStatus{str(n.getNodeId()), role, str(n.getAddress()),
                                     n.getAlive(), n.getBusy(), n.getLastSeenMsAgo(), str(n.getHost()),
                                     n.getPid(), n.getLeft()});
      }
      m.store_path = str(r.getStorePath());
      return Body(std::move(m));
    }
    case W::CANCEL_JOB: return Body(CancelJob{str(b.getCancelJob().getReason()), str(b.getCancelJob().getPrincipal())});
    case W::ASSIGN_KEY_RANGE: {
      auto r = b.getAssignKeyRange();
      AssignKeyRange m{str(r.getSpecText()), r.getServerIndex(), r.getRangeBegin(), r.getRangeEnd(),
                       r.getNumParameters(),  r.getNumWorkers(),  r.getTotalSteps(),  r.getInputFeatures(),
                       r.getStepsPerEpoch(),  r.getCheckpointEvery(), r.getStartStep(), {}};
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getInitialValues(), "assignKeyRange.initialValues", m.initial_values));
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getOptimizerState(), "assignKeyRange.optimizerState", m.optimizer_state));
      m.optimizer_steps = r.getOptimizerSteps();
      unsigned index = 0;
      for (auto k : r.getRankKeys()) {
        CUSTODY_ASSIGN_OR_RETURN(auto key, read_key(k, "assignKeyRange.rankKeys[" + std::to_string(index++) + "]"));
        if (!key) return invalid_argument("assignKeyRange.rankKeys[" + std::to_string(index - 1) + "] is empty");
        m.rank_keys.push_back(std::move(*key));
      }
      CUSTODY_ASSIGN_OR_RETURN(m.reply_key, read_key(r.getReplyKey(), "assignKeyRange.replyKey"));
      m.rank_nodes = get_texts(r.getRankNodes());
      m.noise_std = r.getNoiseStd();
      if (!(m.noise_std >= 0 && std::isfinite(m.noise_std))) {
        return invalid_argument("assignKeyRange.noiseStd must be a finite number >= 0");
      }
      return Body(std::move(m));
    }
    case W::KEY_RANGE_READY: {
      auto r = b.getKeyRangeReady();
      return Body(KeyRangeReady{r.getRangeBegin(), r.getRangeEnd()});
    }
    case W::ASSIGN_TASK: {
      auto r = b.getAssignTask();
      AssignTask m;
      m.spec_text = str(r.getSpecText());
      m.rank = r.getRank();
      auto s = r.getShard();
      m.shard = ShardId{str(s.getDatasetHash()), s.getIndex(), s.getNumShards(), s.getBegin(), s.getEnd()};
      m.test_begin = r.getTestBegin();
      m.test_end = r.getTestEnd();
      m.steps_per_epoch = r.getStepsPerEpoch();
      for (auto sr : r.getServers()) {
        m.servers.push_back(ServerRange{str(sr.getNodeId()), str(sr.getAddress()), sr.getRangeBegin(),
                                        sr.getRangeEnd(), sr.getSharedMemory()});
      }
      m.num_parameters = r.getNumParameters();
      m.start_step = r.getStartStep();
      CUSTODY_ASSIGN_OR_RETURN(m.rank_key, read_key(r.getRankKey(), "assignTask.rankKey"));
      CUSTODY_ASSIGN_OR_RETURN(m.replies_key, read_key(r.getRepliesKey(), "assignTask.repliesKey"));
      m.train_digest = {str(r.getTrainImagesSha256()), str(r.getTrainLabelsSha256())};
      m.test_digest = {str(r.getTestImagesSha256()), str(r.getTestLabelsSha256())};
      m.train_records = r.getTrainRecords();
      for (uint64_t i : r.getExcluded()) m.excluded.push_back(i);
      return Body(std::move(m));
    }
    case W::PROGRESS: {
      auto r = b.getProgress();
      return Body(Progress{r.getEpoch(), r.getStep(), r.getSamples(), r.getLossSum(), r.getElapsedUs(), r.getRank()});
    }
    case W::EPOCH_EVAL: {
      auto r = b.getEpochEval();
      return Body(EpochEval{r.getEpoch(), r.getCorrect(), r.getTotal(), r.getLossSum(), r.getRank()});
    }
    case W::TASK_DONE: {
      auto r = b.getTaskDone();
      return Body(TaskDone{r.getSteps(), r.getSamples(), r.getRank()});
    }
    case W::STOP_JOB: return Body(StopJob{str(b.getStopJob().getReason())});
    case W::PULL: {
      auto r = b.getPull();
      auto seal = r.getSeal();
      return Body(Pull{str(r.getWorker()), r.getRank(), std::string(reinterpret_cast<const char*>(seal.begin()), seal.size()),
                       str(r.getRegion())});
    }
    case W::PUSH: {
      auto r = b.getPush();
      Push m{str(r.getWorker()), r.getStep(), {}, r.getSamples(), r.getBaseVersion(), r.getRank()};
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getGradient(), "push.gradient", owner, m.gradient));
      m.sealed_gradient = read_bytes(r.getSealedGradient(), owner);
      m.region = str(r.getRegion());
      return Body(std::move(m));
    }
    case W::PARAMS: {
      auto r = b.getParams();
      Params m{r.getVersion(), r.getRangeBegin(), {}};
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getValues(), "params.values", owner, m.values));
      m.sealed_values = read_bytes(r.getSealedValues(), owner);
      m.in_region = r.getInRegion();
      return Body(std::move(m));
    }
    case W::CHECKPOINT_SHARD: {
      auto r = b.getCheckpointShard();
      CheckpointShard m;
      m.step = r.getStep();
      m.range_begin = r.getRangeBegin();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getValues(), "checkpointShard.values", m.values));
      for (auto c : r.getContributions()) {
        m.contributions.push_back(Contribution{str(c.getWorker()), c.getAccepted(), c.getRejected(), c.getSamples(),
                                               c.getUpdateNormSum(), c.getStalenessMax(), c.getStalenessSum(), c.getRank(),
                                               str(c.getKeyFingerprint()), c.getUnauthenticated()});
      }
      m.final = r.getFinal();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getOptimizerState(), "checkpointShard.optimizerState", m.optimizer_state));
      m.optimizer_steps = r.getOptimizerSteps();
      return Body(std::move(m));
    }
    case W::RESUME_JOB: return Body(ResumeJob{str(b.getResumeJob().getPrincipal())});
    case W::EXPORT_REQUEST: {
      auto r = b.getExportRequest();
      return Body(ExportRequest{str(r.getCheckpoint()), str(r.getPrincipal()), str(r.getPurpose())});
    }
    case W::EXPORT_REPLY: {
      auto r = b.getExportReply();
      ExportReply m;
      m.checkpoint = str(r.getCheckpoint());
      m.root_hash = str(r.getRootHash());
      for (uint32_t v : r.getLayerSizes()) m.layer_sizes.push_back(v);
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getValues(), "exportReply.values", m.values));
      m.usage_id = str(r.getUsageId());
      m.receipt = str(r.getReceipt());
      m.model_card = str(r.getModelCard());
      m.architecture = str(r.getArchitecture());
      return Body(std::move(m));
    }
    case W::PREDICT: {
      auto r = b.getPredict();
      Predict m;
      m.model = str(r.getModel());
      m.principal = str(r.getPrincipal());
      m.rows = r.getRows();
      m.features = r.getFeatures();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getInputs(), "predict.inputs", m.inputs));
      m.purpose = str(r.getPurpose());
      return Body(std::move(m));
    }
    case W::PREDICT_REPLY: {
      auto r = b.getPredictReply();
      PredictReply m;
      m.checkpoint = str(r.getCheckpoint());
      m.model = str(r.getModel());
      m.root_hash = str(r.getRootHash());
      m.classes = r.getClasses();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getProbabilities(), "predictReply.probabilities", m.probabilities));
      m.prediction_ids = get_texts(r.getPredictionIds());
      m.call_id = str(r.getCallId());
      m.receipt = str(r.getReceipt());
      return Body(std::move(m));
    }
    case W::ADD_PRINCIPAL: {
      auto r = b.getAddPrincipal();
      return Body(
          AddPrincipal{str(r.getName()), str(r.getRole()), str(r.getPublicKey()), r.getRotate(), r.getBearerToken()});
    }
    case W::PRINCIPAL_ADDED: {
      auto r = b.getPrincipalAdded();
      return Body(PrincipalAdded{str(r.getName()), str(r.getRole()), str(r.getToken()), str(r.getPublicKey()),
                                 str(r.getSecretKey())});
    }
    case W::PRINCIPALS_REQUEST: return Body(PrincipalsRequest{});
    case W::PRINCIPALS_REPLY: return Body(PrincipalsReply{str(b.getPrincipalsReply().getJson())});
    case W::REVOKE_PRINCIPAL: {
      auto r = b.getRevokePrincipal();
      return Body(RevokePrincipal{str(r.getName()), str(r.getReason())});
    }
    case W::USAGE_REQUEST: {
      auto r = b.getUsageRequest();
      return Body(UsageRequest{str(r.getModel()), r.getSinceMs(), r.getUntilMs(), r.getLimit()});
    }
    case W::USAGE_REPLY: return Body(UsageReply{str(b.getUsageReply().getJson())});
    case W::AUDIT_HEAD_REQUEST: return Body(AuditHeadRequest{});
    case W::AUDIT_HEAD_REPLY: return Body(AuditHeadReply{str(b.getAuditHeadReply().getJson())});
    case W::JOB_RELEASED: {
      auto r = b.getJobReleased();
      return Body(JobReleased{r.getAppliedStep(), r.getUpdates(), r.getRangeBegin(), r.getRangeEnd()});
    }
    case W::STORE_BACKUP: {
      auto r = b.getStoreBackup();
      return Body(StoreBackup{str(r.getDir()), r.getRateLimitBytesPerSec()});
    }
    case W::STORE_BACKUP_REPLY: {
      auto r = b.getStoreBackupReply();
      return Body(StoreBackupReply{str(r.getDir()), r.getBackupId(), r.getTakenAtS(), r.getBytes(), r.getFiles(),
                                   str(r.getStorePath()), get_texts(r.getStoreKeys()), r.getElapsedMs()});
    }
    case W::STORE_QUERY: {
      auto r = b.getStoreQuery();
      return Body(StoreQuery{str(r.getQuery()), str(r.getArgument())});
    }
    case W::STORE_QUERY_REPLY: return Body(StoreQueryReply{str(b.getStoreQueryReply().getJson())});
    case W::SET_PRIVACY_BUDGET: {
      auto r = b.getSetPrivacyBudget();
      return Body(SetPrivacyBudget{str(r.getDataset()), r.getEpsilon(), r.getDelta(), str(r.getReason()),
                                   str(r.getPrincipal())});
    }
    case W::PRIVACY_BUDGET_REPLY: return Body(PrivacyBudgetReply{str(b.getPrivacyBudgetReply().getJson())});
    case W::FETCH_RECORDS: {
      auto r = b.getFetchRecords();
      if (r.getLength() == 0 || r.getLength() > kMaxRecordsChunk) {
        return invalid_argument("fetchRecords.length must be 1 to " + std::to_string(kMaxRecordsChunk) + " bytes, not " +
                                std::to_string(r.getLength()));
      }
      return Body(FetchRecords{str(r.getSha256()), r.getOffset(), r.getLength()});
    }
    case W::RECORDS_CHUNK: {
      auto r = b.getRecordsChunk();
      auto d = r.getData();
      return Body(RecordsChunk{str(r.getSha256()), r.getOffset(), r.getTotalBytes(),
                               std::vector<uint8_t>(d.begin(), d.end())});
    }
    case W::SHARD_OBTAINED: {
      auto r = b.getShardObtained();
      const std::string how = str(r.getHow());
      ShardObtained m{r.getRank(), ShardSource::kLocal, str(r.getSource()), r.getBytesFetched(), r.getElapsedMs()};
      if (how == "cache") m.how = ShardSource::kCache;
      else if (how == "fetched") m.how = ShardSource::kFetched;
      else if (how != "local") return invalid_argument("shardObtained.how is '" + how + "'; local, cache or fetched");
      return Body(std::move(m));
    }
    case W::LIABILITY_REQUEST: {
      auto r = b.getLiabilityRequest();
      LiabilityRequest m;
      m.action = r.getAction() == wire::LiabilityRequest::Action::ALLOW ? LiabilityRequest::Action::kAllow
                                                                        : LiabilityRequest::Action::kRevoke;
      m.principal = str(r.getPrincipal());
      m.reason = str(r.getReason());
      m.dataset = str(r.getDataset());
      for (uint64_t i : r.getRecords()) m.records.push_back(i);
      m.model = str(r.getModel());
      m.revocation = str(r.getRevocation());
      m.purpose = str(r.getPurpose());
      return Body(std::move(m));
    }
    case W::LIABILITY_REPLY: return Body(LiabilityReply{str(b.getLiabilityReply().getJson())});
    case W::ATTRIBUTE: {
      auto r = b.getAttribute();
      Attribute m;
      m.prediction_id = str(r.getPredictionId());
      m.principal = str(r.getPrincipal());
      m.rows = r.getRows();
      m.features = r.getFeatures();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getInputs(), "attribute.inputs", m.inputs));
      m.top = r.getTop();
      m.label = r.getLabel();
      m.self_influence = str(r.getSelfInfluence());
      m.purpose = str(r.getPurpose());
      m.batch_rows = r.getBatchRows();
      m.in_coordinator = r.getInCoordinator();
      return Body(std::move(m));
    }
    case W::ATTRIBUTION_REPLY: {
      auto r = b.getAttributionReply();
      return Body(AttributionReply{str(r.getJson()), str(r.getUsageId()), str(r.getReceipt())});
    }
    case W::SCORE_RECORDS: {
      auto r = b.getScoreRecords();
      ScoreRecords m;
      m.spec_text = str(r.getSpecText());
      m.dataset_hash = str(r.getDatasetHash());
      m.begin = r.getBegin();
      m.end = r.getEnd();
      m.digest = RecordsDigest{str(r.getImagesSha256()), str(r.getLabelsSha256())};
      m.train_records = r.getTrainRecords();
      for (uint32_t size : r.getLayerSizes()) m.layer_sizes.push_back(size);
      m.activation = str(r.getActivation());
      m.architecture = str(r.getArchitecture());
      for (auto c : r.getCheckpoints()) {
        ScoringCheckpoint cp;
        CUSTODY_RETURN_IF_ERROR(read_floats(c.getParams(), "scoreRecords.checkpoints.params", cp.params));
        cp.learning_rate = c.getLearningRate();
        m.checkpoints.push_back(std::move(cp));
      }
      m.self_influence = r.getSelfInfluence();
      CUSTODY_RETURN_IF_ERROR(read_floats(r.getTestInput(), "scoreRecords.testInput", m.test_input));
      m.test_label = r.getTestLabel();
      m.top = r.getTop();
      return Body(std::move(m));
    }
    case W::RECORD_SCORES: {
      auto r = b.getRecordScores();
      RecordScores m;
      m.begin = r.getBegin();
      m.end = r.getEnd();
      for (auto s : r.getHighest()) m.highest.push_back({s.getIndex(), s.getScore()});
      for (auto s : r.getLowest()) m.lowest.push_back({s.getIndex(), s.getScore()});
      m.records_scored = r.getRecordsScored();
      m.elapsed_ms = r.getElapsedMs();
      m.source = str(r.getSource());
      return Body(std::move(m));
    }
  }
  return invalid_argument("unknown message body (union field " +
                          std::to_string(static_cast<unsigned>(b.which())) +
                          "); the sender speaks a newer protocol or sent garbage");
}

}  // namespace

namespace {
// The float payload of a body, so the builder can hold the whole message in its first
// segment instead of growing (and copying) segment by segment.
size_t payload_bytes(const Body& body) {
  auto inline_bytes = [](const auto& v) -> size_t {
    return referenced(v) ? 0 : v.size() * sizeof(float);  // referenced arrays are a segment of their own
  };
  auto inline_sealed = [](const SharedBytes& v) -> size_t { return referenced(v) ? 0 : v.size(); };
  if (auto* m = std::get_if<Push>(&body)) return inline_bytes(m->gradient) + inline_sealed(m->sealed_gradient);
  if (auto* m = std::get_if<Params>(&body)) return inline_bytes(m->values) + inline_sealed(m->sealed_values);
  if (auto* m = std::get_if<CheckpointShard>(&body)) return inline_bytes(m->values) + inline_bytes(m->optimizer_state);
  if (auto* m = std::get_if<AssignKeyRange>(&body)) {
    return inline_bytes(m->initial_values) + inline_bytes(m->optimizer_state);
  }
  if (auto* m = std::get_if<ExportReply>(&body)) return inline_bytes(m->values);
  if (auto* m = std::get_if<RecordsChunk>(&body)) return m->data.size();
  if (auto* m = std::get_if<ScoreRecords>(&body)) {
    size_t n = m->test_input.size() * sizeof(float);
    for (const auto& c : m->checkpoints) n += c.params.size() * sizeof(float);
    return n;
  }
  return 0;
}
}  // namespace

namespace {

void build(capnp::MessageBuilder& builder, const Envelope& envelope) {
  auto root = builder.initRoot<wire::Envelope>();
  root.setVersion(envelope.version);
  root.setSender(text(envelope.sender));
  root.setJobId(text(envelope.job_id));
  root.setRequestId(envelope.request_id);
  root.setAttempt(envelope.attempt);
  if (!envelope.token.empty()) root.setToken(text(envelope.token));
  encode_body(root.getBody(), envelope.body);
}

// Where a block written in place is referenced: Cap'n Proto only records an external
// segment's address, and writeMessage hands it to InPlaceStream, which leaves its room in
// the output instead of copying from it. Never read.
alignas(8) const kj::byte kInPlace[8] = {};

class InPlaceStream final : public kj::OutputStream {
 public:
  explicit InPlaceStream(Bytes& out) : out_(out) {}
  void write(const void* buffer, size_t size) override {
    if (buffer == kInPlace) {
      block_ = at_;
    } else if (size > 0) {
      std::memcpy(out_.data() + at_, buffer, size);
    }
    at_ += size;
  }
  size_t block() const { return block_; }

 private:
  Bytes& out_;
  size_t at_ = 0, block_ = SIZE_MAX;
};

}  // namespace

Bytes encode(const Envelope& envelope) {
  capnp::MallocMessageBuilder builder(static_cast<unsigned>(payload_bytes(envelope.body) / sizeof(capnp::word) + 1024));
  build(builder, envelope);
  // Written once, straight into the bytes handed to the transport.
  Bytes bytes(capnp::computeSerializedSizeInWords(builder) * sizeof(capnp::word));
  kj::ArrayOutputStream out(kj::arrayPtr(bytes.data(), bytes.size()));
  capnp::writeMessage(out, builder);
  return bytes;
}

std::optional<uint64_t> readable_request_id(const uint8_t* data, size_t size, const DecodeLimits& limits) {
  if (size == 0 || size > limits.max_bytes || size % sizeof(capnp::word) != 0) return std::nullopt;
  kj::Array<capnp::word> copy = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(copy.begin(), data, size);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 1024;  // the envelope's own fields only
  options.nestingLimit = limits.nesting_limit;
  try {
    capnp::FlatArrayMessageReader reader(copy.asPtr(), options);
    return reader.getRoot<wire::Envelope>().getRequestId();
  } catch (...) {
    return std::nullopt;
  }
}

Result<Bytes> encode_in_place(const Envelope& envelope, size_t size, const std::function<Status(uint8_t*)>& write) {
  const auto* push = std::get_if<Push>(&envelope.body);
  const auto* params = std::get_if<Params>(&envelope.body);
  if ((!push && !params) || (push && !push->sealed_gradient.empty()) || (params && !params->sealed_values.empty())) {
    return invalid_argument(std::string("a ") + body_name(envelope.body) +
                            " has no sealed block to write in place (only a push or params without one)");
  }
  capnp::MallocMessageBuilder builder(static_cast<unsigned>(payload_bytes(envelope.body) / sizeof(capnp::word) + 1024));
  build(builder, envelope);
  auto body = builder.getRoot<wire::Envelope>().getBody();
  auto block = capnp::Orphanage::getForMessageContaining(body).referenceExternalData(capnp::Data::Reader(kInPlace, size));
  if (push) {
    body.getPush().adoptSealedGradient(kj::mv(block));
  } else {
    body.getParams().adoptSealedValues(kj::mv(block));
  }
  Bytes bytes(capnp::computeSerializedSizeInWords(builder) * sizeof(capnp::word));
  InPlaceStream out(bytes);
  capnp::writeMessage(out, builder);
  if (out.block() == SIZE_MAX) return internal_error("the block's room was not found in the encoded message");
  uint8_t* room = bytes.data() + out.block();
  std::memset(room + size, 0, (size + 7) / 8 * 8 - size);  // the segment's padding to whole words
  CUSTODY_RETURN_IF_ERROR(write(room));
  return bytes;
}

Result<Envelope> decode(const uint8_t* data, size_t size, const DecodeLimits& limits,
                        std::shared_ptr<const void> owner) {
  if (size == 0) return invalid_argument("empty message");
  if (size > limits.max_bytes) {
    return invalid_argument("message of " + std::to_string(size) + " bytes exceeds the limit of " +
                            std::to_string(limits.max_bytes) + " bytes");
  }
  if (size % sizeof(capnp::word) != 0) {
    return invalid_argument("message of " + std::to_string(size) +
                            " bytes is not a whole number of 8-byte Cap'n Proto words "
                            "(truncated or not Cap'n Proto)");
  }
  // ZeroMQ frames need not be 8-byte aligned; Cap'n Proto reads words in place.
  kj::Array<capnp::word> copy;
  const capnp::word* words = reinterpret_cast<const capnp::word*>(data);
  const size_t count = size / sizeof(capnp::word);
  if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) != 0) {
    copy = kj::heapArray<capnp::word>(count);
    std::memcpy(copy.begin(), data, size);
    words = copy.begin();
    // Parameter blocks then share the aligned copy.
    if (owner) owner = std::make_shared<const kj::Array<capnp::word>>(kj::mv(copy));
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords =
      limits.traversal_words ? limits.traversal_words : (limits.max_bytes / sizeof(capnp::word)) * 2;
  options.nestingLimit = limits.nesting_limit;
  try {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, count), options);
    if (reader.getEnd() != words + count) {
      return invalid_argument("message has " +
                              std::to_string((words + count - reader.getEnd()) * sizeof(capnp::word)) +
                              " bytes of trailing garbage after the Cap'n Proto message");
    }
    auto root = reader.getRoot<wire::Envelope>();
    if (root.getVersion() != kProtocolVersion) {
      return invalid_argument("protocol version " + std::to_string(root.getVersion()) +
                              " is not supported (this node speaks version " +
                              std::to_string(kProtocolVersion) + "); upgrade the older side");
    }
    CUSTODY_ASSIGN_OR_RETURN(auto body, decode_body(root.getBody(), owner));
    Envelope e;
    e.version = root.getVersion();
    e.sender = str(root.getSender());
    e.job_id = str(root.getJobId());
    e.request_id = root.getRequestId();
    e.attempt = root.getAttempt();
    e.token = str(root.getToken());
    e.body = std::move(body);
    return e;
  } catch (const kj::Exception& ex) {
    return invalid_argument(std::string("malformed Cap'n Proto message: ") + ex.getDescription().cStr());
  } catch (const NotUtf8& bad) {
    char byte[8];
    std::snprintf(byte, sizeof(byte), "0x%02x", bad.byte);
    return invalid_argument("malformed message: a text field is not UTF-8 (byte " + std::string(byte) + " at offset " +
                            std::to_string(bad.offset) + "); every text of the protocol is UTF-8: send it encoded so");
  }
}

const char* body_name(const Body& body) {
  static const char* kNames[] = {"error",        "register",     "registerAck", "heartbeat",
                                 "heartbeatAck", "submitJob",    "jobAccepted", "statusRequest",
                                 "statusReply",  "cancelJob",    "assignKeyRange", "keyRangeReady",
                                 "assignTask",   "progress",     "epochEval",   "taskDone",
                                 "stopJob",      "pull",         "push",        "params",
                                 "checkpointShard", "resumeJob", "exportRequest", "exportReply",
                                 "predict",      "predictReply", "addPrincipal", "principalAdded",
                                 "usageRequest", "usageReply", "auditHeadRequest", "auditHeadReply",
                                 "jobReleased", "principalsRequest", "principalsReply", "revokePrincipal",
                                 "storeBackup",  "storeBackupReply", "storeQuery", "storeQueryReply",
                                 "setPrivacyBudget", "privacyBudgetReply", "fetchRecords", "recordsChunk",
                                 "shardObtained", "liabilityRequest", "liabilityReply",
                                 "attribute",    "attributionReply", "scoreRecords", "recordScores"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == std::variant_size_v<Body>);
  return kNames[body.index()];
}

const char* to_string(ShardSource s) {
  switch (s) {
    case ShardSource::kLocal: return "local";
    case ShardSource::kCache: return "cache";
    case ShardSource::kFetched: return "fetched";
  }
  return "?";
}

const char* to_string(NodeRole r) { return r == NodeRole::kWorker ? "worker" : "parameter-server"; }

const char* to_string(JobState s) {
  switch (s) {
    case JobState::kPending: return "pending";
    case JobState::kStarting: return "starting";
    case JobState::kRunning: return "running";
    case JobState::kCompleted: return "completed";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "?";
}

bool is_terminal(JobState s) {
  return s == JobState::kCompleted || s == JobState::kFailed || s == JobState::kCancelled;
}

}  // namespace custody::msg
