#include "actors/parameter_client.h"

#include <algorithm>
#include <numeric>

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

std::vector<msg::Envelope> ParameterRequests::pull() {
  ++request_id_;
  what_ = "a pull";
  std::vector<msg::Envelope> out;
  for (size_t i = 0; i < servers_.size(); ++i) out.push_back(envelope(msg::Pull{worker_}));
  return out;
}

std::vector<msg::Envelope> ParameterRequests::push(uint64_t step, uint32_t samples, const float* gradient) {
  ++request_id_;
  what_ = "a push";
  std::vector<msg::Envelope> out;
  for (size_t i = 0; i < servers_.size(); ++i) {
    msg::Push p;
    p.worker = worker_;
    p.step = step;
    p.samples = samples;
    p.base_version = versions_[i];
    p.rank = rank_;
    p.gradient = servers_.slice(i, gradient);
    out.push_back(envelope(std::move(p)));
  }
  return out;
}

Result<bool> ParameterRequests::accept(size_t server, const msg::Envelope& answer, float* values) {
  const msg::ServerRange& s = servers_.server(server);
  if (answer.request_id != request_id_) return false;
  if (auto* err = answer.get<msg::Error>())
    return Status(err->code, "parameter server " + s.node_id + ": " + err->message);
  auto* p = answer.get<msg::Params>();
  if (!p || p->values.size() != s.range_end - s.range_begin || p->range_begin != s.range_begin) {
    return data_loss("parameter server " + s.node_id + " answered " + what_ +
                     " with something other than the values of its key range");
  }
  std::copy(p->values.begin(), p->values.end(), values + s.range_begin);
  versions_[server] = p->version;
  return true;
}

Status ParameterRequests::no_answer(size_t server, std::chrono::milliseconds timeout) const {
  const msg::ServerRange& s = servers_.server(server);
  return deadline_exceeded("no reply to " + std::string(what_) + " from parameter server " + s.node_id +
                           " at " + s.address + " within " + std::to_string(timeout.count() / 1000) + " s");
}

}  // namespace custody::actors
