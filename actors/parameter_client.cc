#include "actors/parameter_client.h"

#include <algorithm>
#include <atomic>
#include <numeric>

#include "core/log.h"

#include "protocols/codec.h"
#include "protocols/data_plane.h"

namespace custody::actors {

namespace {

std::string range_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

}  // namespace

Result<KeySlices> KeySlices::make(std::vector<msg::ServerRange> servers, uint64_t num_parameters) {
  if (servers.empty()) return invalid_argument("the task names no parameter servers");
  std::vector<size_t> by_begin(servers.size());
  std::iota(by_begin.begin(), by_begin.end(), 0);
  std::stable_sort(by_begin.begin(), by_begin.end(),
                   [&](size_t a, size_t b) { return servers[a].range_begin < servers[b].range_begin; });
  uint64_t covered = 0;  // keys [0, covered) have a server
  for (size_t i : by_begin) {
    const msg::ServerRange& s = servers[i];
    const std::string named =
        "parameter server " + s.node_id + "'s keys " + range_text(s.range_begin, s.range_end);
    if (s.range_begin >= s.range_end) return invalid_argument(named + " are an empty range");
    if (s.range_end > num_parameters) {
      return invalid_argument(named + " reach past the model's " + std::to_string(num_parameters) +
                              " parameters");
    }
    if (s.range_begin < covered) return invalid_argument(named + " overlap another server's");
    if (s.range_begin > covered) {
      return invalid_argument("keys " + range_text(covered, s.range_begin) +
                              " are held by no parameter server");
    }
    covered = s.range_end;
  }
  if (covered < num_parameters) {
    return invalid_argument("keys " + range_text(covered, num_parameters) +
                            " are held by no parameter server");
  }
  return KeySlices(std::move(servers));
}

msg::Floats KeySlices::slice(size_t i, const float* whole) const {
  const msg::ServerRange& s = servers_[i];
  return msg::Floats::borrowed(whole + s.range_begin, s.range_end - s.range_begin);
}

ParameterRequests::ParameterRequests(KeySlices servers, std::string worker, std::string job_id,
                                     uint32_t attempt, uint32_t rank)
    : servers_(std::move(servers)),
      worker_(std::move(worker)),
      job_id_(std::move(job_id)),
      attempt_(attempt),
      rank_(rank),
      versions_(servers_.size(), 0) {}

msg::Envelope ParameterRequests::envelope(msg::Body body) const {
  msg::Envelope e;
  e.sender = worker_;
  e.job_id = job_id_;
  e.request_id = request_id_;
  e.attempt = attempt_;
  e.body = std::move(body);
  return e;
}

Status ParameterRequests::seal_with(const std::optional<AeadKey>& rank_key,
                                    const std::optional<AeadKey>& replies_key, ForkJoin* parallel) {
  if (!rank_key && !replies_key) return Status::ok();
  if (!rank_key || !replies_key) {
    return invalid_argument("the task for rank " + std::to_string(rank_) + " of " + job_id_ + " carries a " +
                            (rank_key ? "rank key but no replies key" : "replies key but no rank key") +
                            "; a sealed data plane needs both");
  }
  std::vector<AeadKey> push_keys, reply_keys;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const msg::ServerRange& s = servers_.server(i);
    CUSTODY_ASSIGN_OR_RETURN(AeadKey push, data_plane::server_key(*rank_key, s.range_begin, s.range_end));
    CUSTODY_ASSIGN_OR_RETURN(AeadKey reply, data_plane::server_key(*replies_key, s.range_begin, s.range_end));
    push_keys.push_back(std::move(push));
    reply_keys.push_back(std::move(reply));
  }
  push_keys_ = std::move(push_keys);
  reply_keys_ = std::move(reply_keys);
  parallel_ = parallel;
  return Status::ok();
}

size_t ParameterRequests::share_memory() {
  regions_.resize(servers_.size());
  size_t shared = 0;
  for (size_t i = 0; i < servers_.size() && !sealed(); ++i) {
    const msg::ServerRange& s = servers_.server(i);
    if (!s.shared_memory) continue;
    auto region = shm::SharedRegion::create(job_id_, attempt_, rank_, s.range_end - s.range_begin);
    if (!region.is_ok()) {
      log(LogLevel::kWarn, worker_, "reaches parameter server " + s.node_id + " by socket: " +
                                        region.status().message());
      continue;
    }
    regions_[i] = std::make_unique<shm::SharedRegion>(std::move(region).value());
    log(LogLevel::kInfo, worker_, "reaches parameter server " + s.node_id + " through shared memory (rank " +
                                      std::to_string(rank_) + " of " + job_id_ + ")");
    ++shared;
  }
  return shared;
}

std::optional<msg::Envelope> ParameterRequests::fall_back(size_t server, const msg::Envelope& answer) {
  const auto* err = answer.get<msg::Error>();
  if (!through_memory(server) || answer.request_id != request_id_ || std::string(what_) != "a pull" || !err ||
      err->code != ErrorCode::kFailedPrecondition) {
    return std::nullopt;
  }
  log(LogLevel::kWarn, worker_, "parameter server " + servers_.server(server).node_id +
                                    " did not take the shared-memory region, so blocks go by socket: " + err->message);
  regions_[server].reset();  // unmapped and unlinked
  return pull_to(server);
}

msg::Envelope ParameterRequests::pull_to(size_t i) const {
  msg::Pull p{worker_, rank_};
  if (through_memory(i)) p.region = regions_[i]->name();
  return envelope(std::move(p));
}

std::vector<msg::Envelope> ParameterRequests::pull() {
  ++request_id_;
  what_ = "a pull";
  std::vector<msg::Envelope> out;
  for (size_t i = 0; i < servers_.size(); ++i) {
    msg::Pull p{worker_, rank_};
    if (through_memory(i)) p.region = regions_[i]->name();
    if (sealed()) {
      const msg::ServerRange& s = servers_.server(i);
      auto seal = data_plane::seal_pull(
          push_keys_[i], data_plane::pull_aad(job_id_, attempt_, rank_, s.range_begin, s.range_end, request_id_));
      // Only the random source can fail here: the server then refuses the pull, by name.
      if (seal.is_ok()) p.seal = std::move(seal).value();
    }
    out.push_back(envelope(std::move(p)));
  }
  return out;
}

msg::Envelope ParameterRequests::push_to(size_t i, uint64_t step, uint32_t samples, const float* gradient) const {
  msg::Push p;
  p.worker = worker_;
  p.step = step;
  p.samples = samples;
  p.base_version = versions_[i];
  p.rank = rank_;
  if (through_memory(i)) {
    // Written before the push that names it is sent, and not again until its answer has
    // come (protocols/shared_region.h): the server reads a whole block.
    const msg::ServerRange& s = servers_.server(i);
    // A trainer that computed into the block itself (gradient_block()) leaves nothing to copy.
    if (gradient + s.range_begin != regions_[i]->gradient()) {
      std::copy(gradient + s.range_begin, gradient + s.range_end, regions_[i]->gradient());
    }
    std::atomic_thread_fence(std::memory_order_release);
    p.region = regions_[i]->name();
  } else if (!sealed()) {
    p.gradient = servers_.slice(i, gradient);  // never in clear when sealed
  }
  return envelope(std::move(p));
}

std::string ParameterRequests::push_aad(size_t i, uint64_t step, uint32_t samples) const {
  const msg::ServerRange& s = servers_.server(i);
  return data_plane::push_aad(job_id_, attempt_, rank_, step, s.range_begin, s.range_end, samples, versions_[i]);
}

std::vector<msg::Envelope> ParameterRequests::push(uint64_t step, uint32_t samples, const float* gradient) {
  ++request_id_;
  what_ = "a push";
  step_ = step;
  std::vector<msg::Envelope> out;
  for (size_t i = 0; i < servers_.size(); ++i) {
    msg::Envelope e = push_to(i, step, samples, gradient);
    if (sealed()) {
      const msg::ServerRange& s = servers_.server(i);
      auto sealed = data_plane::seal_floats(push_keys_[i], gradient + s.range_begin, s.range_end - s.range_begin,
                                            push_aad(i, step, samples), parallel_);
      // Only the random source can fail here: the push then goes without its gradient,
      // and the server refuses it by name. Never in clear.
      if (sealed.is_ok()) std::get<msg::Push>(e.body).sealed_gradient = std::move(sealed).value();
    }
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<Bytes>> ParameterRequests::push_messages(uint64_t step, uint32_t samples, const float* gradient) {
  if (!sealed()) {
    std::vector<Bytes> out;
    for (const msg::Envelope& e : push(step, samples, gradient)) out.push_back(msg::encode(e));
    return out;
  }
  ++request_id_;
  what_ = "a push";
  step_ = step;
  std::vector<Bytes> out;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const msg::ServerRange& s = servers_.server(i);
    const size_t n = s.range_end - s.range_begin;
    CUSTODY_ASSIGN_OR_RETURN(
        Bytes bytes, msg::encode_in_place(push_to(i, step, samples, gradient), data_plane::sealed_size(n * sizeof(float)),
                                          [&](uint8_t* room) {
                                            return data_plane::seal_floats_into(push_keys_[i], gradient + s.range_begin,
                                                                                n, push_aad(i, step, samples), room,
                                                                                parallel_);
                                          }));
    out.push_back(std::move(bytes));
  }
  return out;
}

Result<bool> ParameterRequests::accept(size_t server, const msg::Envelope& answer, float* values) {
  const msg::ServerRange& s = servers_.server(server);
  if (answer.request_id != request_id_) return false;
  if (auto* err = answer.get<msg::Error>())
    return Status(err->code, "parameter server " + s.node_id + ": " + err->message);
  auto* p = answer.get<msg::Params>();
  const size_t n = s.range_end - s.range_begin;
  if (p && p->in_region) {
    if (!through_memory(server) || !p->values.empty() || p->range_begin != s.range_begin) {
      return data_loss("parameter server " + s.node_id + " answered " + what_ +
                       " with values in a shared-memory region that this request did not name");
    }
    // The answer came after the server wrote the block (acquire pairs with its release),
    // and the next request leaves after this copy.
    std::atomic_thread_fence(std::memory_order_acquire);
    const float* in = regions_[server]->values();
    if (values + s.range_begin != in) std::copy(in, in + n, values + s.range_begin);  // else read in place
    regions_[server]->unlink();  // the server has it mapped: the name has done its work
    answered_.resize(servers_.size());
    answered_[server] = true;
    versions_[server] = p->version;
    return true;
  }
  if (!p || p->range_begin != s.range_begin || (sealed() ? !p->values.empty() : p->values.size() != n)) {
    return data_loss("parameter server " + s.node_id + " answered " + what_ +
                     " with something other than the " + (sealed() ? "sealed " : "") + "values of its key range");
  }
  if (sealed()) {
    // Opened straight into the trainer's values: the copy out of the frame is the decryption.
    const std::string aad =
        std::string(what_) == "a pull"
            ? data_plane::pull_params_aad(job_id_, attempt_, s.range_begin, s.range_end, p->version, rank_, request_id_)
            : data_plane::params_aad(job_id_, attempt_, s.range_begin, s.range_end, p->version, step_);
    Status opened =
        data_plane::open_floats(reply_keys_[server], p->sealed_values, n, aad, values + s.range_begin, parallel_);
    if (!opened.is_ok()) {
      return data_loss("parameter server " + s.node_id + "'s answer to " + what_ +
                       " is not sealed for it under the server's reply key of this attempt (" + opened.message() +
                       "): altered or replayed on the way, or not from the server");
    }
  } else {
    std::copy(p->values.begin(), p->values.end(), values + s.range_begin);
  }
  versions_[server] = p->version;
  return true;
}

Status ParameterRequests::no_answer(size_t server, std::chrono::milliseconds timeout) const {
  const msg::ServerRange& s = servers_.server(server);
  return deadline_exceeded("no reply to " + std::string(what_) + " from parameter server " + s.node_id +
                           " at " + s.address + " within " + std::to_string(timeout.count() / 1000) + " s");
}

}  // namespace custody::actors
