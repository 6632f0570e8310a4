// ParameterServerState: the data plane's sealing (protocols/data_plane.h). How a sealed
// job's pushes and pulls are authenticated and its replies sealed; the update protocol is
// in parameter_server_state.cc.
#include "actors/parameter_server_state.h"
#include "core/hex.h"
#include "core/log.h"
#include "protocols/data_plane.h"

namespace custody::actors {

using msg::Envelope;

namespace {
Status denied(std::string message) { return Status(ErrorCode::kPermissionDenied, std::move(message)); }
}  // namespace

Result<msg::Params> ParameterServerState::values_of(JobShard& job, uint64_t step) const {
  if (!job.reply_key) return msg::Params{job.version, job.range.begin, msg::Floats(job.params)};
  if (job.sealed_values.empty() || job.sealed_version != job.version || job.sealed_step != step) {
    CUSTODY_ASSIGN_OR_RETURN(
        job.sealed_values,
        data_plane::seal_floats(
            *job.reply_key, job.params->data(), job.params->size(),
            data_plane::params_aad(job.id, job.attempt, job.range.begin, job.range.end, job.version, step),
            parallel_));
    job.sealed_version = job.version;
    job.sealed_step = step;
  }
  msg::Params p{job.version, job.range.begin, {}};
  p.sealed_values = job.sealed_values;
  return p;
}

Outbox ParameterServerState::refuse_unauthenticated(const std::string& peer, const Envelope& in,
                                                    JobShard& job, uint32_t rank, const Status& why) const {
  const std::string& node = node_of(job, rank);
  auto& c = job.contributions[{node, rank}];
  c.worker = node;
  c.rank = rank;
  if (!job.fingerprints.empty()) c.key_fingerprint = job.fingerprints[rank];
  ++c.unauthenticated;
  // Each one is logged until a flood would drown the log; then every thousandth, counted.
  if (++job.refusals <= 20 || job.refusals % 1000 == 0) {
    log(LogLevel::kWarn, node_id_,
        "refused a " + std::string(msg::body_name(in.body)) + " claiming rank " + std::to_string(rank) +
            " of " + job.id + " (attempt " + std::to_string(job.attempt) + ", assigned to " + node +
            ") from connection " + to_hex(peer) + ": " + why.message() + " [" + std::to_string(job.refusals) +
            " refused so far]");
  }
  return {{peer, msg::make_error(in, node_id_, why)}};
}

Outbox ParameterServerState::on_pull(const std::string& peer, const Envelope& in, const msg::Pull& pull,
                                     JobShard& job) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, node_id_, s)}}; };
  if (!pull.region.empty()) {  // shared memory (parameter_server_shared_memory.cc): in clear only
    if (pull.rank >= job.num_workers) {
      return error(invalid_argument("pull for rank " + std::to_string(pull.rank) + " but the job has " +
                                    std::to_string(job.num_workers) + " ranks"));
    }
    auto region = region_of(job, pull.rank, pull.region);
    if (!region.is_ok()) return error(region.status());
    return {{peer, msg::reply_to(in, node_id_, values_in_region(job, *region.value()))}};
  }
  if (!job.reply_key) {
    if (!pull.seal.empty()) {
      return error(invalid_argument("the data plane of " + in.job_id + " is in clear (attempt " +
                                    std::to_string(job.attempt) +
                                    " has no keys); a sealed pull is not taken"));
    }
    return {{peer, msg::reply_to(in, node_id_, values_of(job, 0).value())}};
  }
  if (pull.rank >= job.num_workers) {
    return error(invalid_argument("pull for rank " + std::to_string(pull.rank) + " but the job has " +
                                  std::to_string(job.num_workers) + " ranks"));
  }
  const AeadKey& key = job.rank_keys[pull.rank];
  Status authentic =
      pull.seal.empty()
          ? Status(ErrorCode::kPermissionDenied, "it is in clear")
          : data_plane::open_pull(key, pull.seal,
                                  data_plane::pull_aad(job.id, job.attempt, pull.rank, job.range.begin,
                                                       job.range.end, in.request_id));
  if (!authentic.is_ok()) {
    return refuse_unauthenticated(
        peer, in, job, pull.rank,
        denied("the data plane of " + job.id +
               " is sealed, and this pull is not sealed under the key of "
               "rank " +
               std::to_string(pull.rank) + " for attempt " + std::to_string(job.attempt) +
               " on this server's keys (" + authentic.message() + ")"));
  }
  auto sealed =
      data_plane::seal_floats(*job.reply_key, job.params->data(), job.params->size(),
                              data_plane::pull_params_aad(job.id, job.attempt, job.range.begin, job.range.end,
                                                          job.version, pull.rank, in.request_id),
                              parallel_);
  if (!sealed.is_ok()) return error(sealed.status());
  msg::Params p{job.version, job.range.begin, {}};
  p.sealed_values = std::move(sealed).value();
  return {{peer, msg::reply_to(in, node_id_, std::move(p))}};
}

Result<const float*> ParameterServerState::gradient_of(const std::string& peer, const Envelope& in,
                                                       const msg::Push& push, JobShard& job, bool urgent,
                                                       Outbox& out) const {
  const size_t n = job.params->size();
  if (job.rank_keys.empty()) {
    Status wrong = Status::ok();
    if (!push.sealed_gradient.empty()) {
      wrong = invalid_argument("the data plane of " + job.id + " is in clear (attempt " +
                               std::to_string(job.attempt) +
                               " has no keys); a sealed push cannot be opened here");
    } else if (!push.region.empty()) {
      auto in_region = gradient_in_region(job, push, urgent);
      if (in_region.is_ok()) return in_region;
      wrong = in_region.status();
    } else if (push.gradient.size() != n) {
      wrong = invalid_argument("gradient of " + std::to_string(push.gradient.size()) +
                               " values for a key range of " + std::to_string(n));
    }
    if (wrong.is_ok()) return push.gradient.data();
    out = refuse(peer, in, &job, &push, wrong);
    return wrong;
  }
  Status opened =
      push.sealed_gradient.empty() ? Status(ErrorCode::kPermissionDenied, "it is in clear") : Status::ok();
  if (opened.is_ok()) {
    job.opened.resize(n);
    opened = data_plane::open_floats(
        job.rank_keys[push.rank], push.sealed_gradient, n,
        data_plane::push_aad(job.id, job.attempt, push.rank, push.step, job.range.begin, job.range.end,
                             push.samples, push.base_version),
        job.opened.data(), urgent ? parallel_ : nullptr);
  }
  if (opened.is_ok()) return static_cast<const float*>(job.opened.data());
  Status refused =
      denied("the data plane of " + job.id + " is sealed, and this push of step " +
             std::to_string(push.step) + " is not sealed under the key of rank " + std::to_string(push.rank) +
             " for attempt " + std::to_string(job.attempt) + " on this server's keys (" + opened.message() +
             "): it does not come from the node assigned the rank, or was altered, or replayed from another "
             "step, attempt "
             "or server; it was not applied");
  out = refuse_unauthenticated(peer, in, job, push.rank, refused);
  return refused;
}

}  // namespace custody::actors
