// Parameter servers in memory, and a ParameterClient that reaches them: the trainer's
// loop runs against the servers' real protocol (ParameterServerState) without sockets,
// threads or a clock, as LevelDB's tests run against its in-memory Env.
//
// Every request and answer goes through the codec, as it would over the wire. The
// servers answer when a request arrives; an answer that has not come by the time a
// client waits cannot come later (one thread), so the wait ends at once with the
// deadline error that names the server.
// Thread-safety: none; one test thread.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "actors/data_plane_policy.h"
#include "actors/parameter_client.h"
#include "actors/parameter_server_state.h"
#include "core/partition.h"
#include "protocols/codec.h"

namespace custody::actors {

class InMemoryServers {
 public:
  // One server per part of `parts`, named ps-1, ps-2, ..., each holding its part of
  // [0, num_parameters) for the jobs assigned to it.
  InMemoryServers(uint64_t num_parameters, uint32_t parts)
      : ranges_(partition_range(num_parameters, parts).value()) {
    for (size_t i = 0; i < ranges_.size(); ++i) {
      servers_.push_back(std::make_unique<ParameterServerState>("ps-" + std::to_string(i + 1)));
    }
  }

  // Gives every server its range of the job, as the coordinator does (`key_range` is the
  // assignment without its range; rank r runs on "worker-<r+1>" unless it names the
  // nodes); returns the first refusal. With `resume_from` (a checkpoint shard of each
  // server's range), each server starts from its shard: values, optimizer state and step,
  // as after a rollback or a resume. With `keys` (made for ranges()), the job's data plane
  // is sealed.
  Status assign(const std::string& job_id, msg::AssignKeyRange key_range, uint32_t attempt = 0,
                const std::vector<msg::CheckpointShard>& resume_from = {}, const AttemptKeys* keys = nullptr) {
    for (uint32_t r = static_cast<uint32_t>(key_range.rank_nodes.size()); r < key_range.num_workers; ++r) {
      key_range.rank_nodes.push_back("worker-" + std::to_string(r + 1));
    }
    for (size_t i = 0; i < servers_.size(); ++i) {
      msg::AssignKeyRange a = key_range;
      a.server_index = static_cast<uint32_t>(i);
      a.range_begin = ranges_[i].begin;
      a.range_end = ranges_[i].end;
      if (keys) keys->fill(a, i);
      for (const msg::CheckpointShard& shard : resume_from) {
        if (shard.range_begin != ranges_[i].begin) continue;
        a.initial_values = shard.values;
        a.optimizer_state = shard.optimizer_state;
        a.optimizer_steps = shard.optimizer_steps;
        a.start_step = shard.step;
      }
      msg::Envelope e;
      e.job_id = job_id;
      e.attempt = attempt;
      e.body = std::move(a);
      for (const Outgoing& o : servers_[i]->handle_control("coordinator", e)) {
        if (auto* err = o.envelope.get<msg::Error>()) return Status(err->code, err->message);
      }
    }
    return Status::ok();
  }

  const std::vector<KeyRange>& ranges() const { return ranges_; }
  // The servers as a task names them (AssignTask.servers).
  std::vector<msg::ServerRange> task_servers() const {
    std::vector<msg::ServerRange> out;
    for (size_t i = 0; i < ranges_.size(); ++i) {
      out.push_back({"ps-" + std::to_string(i + 1), "mem://ps-" + std::to_string(i + 1), ranges_[i].begin,
                     ranges_[i].end});
    }
    return out;
  }

  // The index of the server a task names `node_id`.
  size_t index(const std::string& node_id) const { return std::stoul(node_id.substr(3)) - 1; }

  // A request from `peer` to server i; its answers wait for take().
  void deliver(size_t server, const std::string& peer, const msg::Envelope& request) {
    for (Outgoing& o : servers_[server]->handle_data(peer, wire(request))) {
      if (o.to_coordinator) {
        to_coordinator_.push_back(wire(o.envelope));
      } else {
        answers_[{server, o.peer}].push_back(wire(o.envelope));
      }
    }
  }
  std::optional<msg::Envelope> take(size_t server, const std::string& peer) {
    auto& queue = answers_[{server, peer}];
    if (queue.empty()) return std::nullopt;
    msg::Envelope e = std::move(queue.front());
    queue.pop_front();
    return e;
  }

  // What the servers sent the coordinator (checkpoint shards), in order.
  const std::vector<msg::Envelope>& to_coordinator() const { return to_coordinator_; }

 private:
  // The envelope as the receiver decodes it from the bytes the sender encoded.
  static msg::Envelope wire(const msg::Envelope& e) { return msg::decode(msg::encode(e)).value(); }

  std::vector<KeyRange> ranges_;
  std::vector<std::unique_ptr<ParameterServerState>> servers_;
  std::map<std::pair<size_t, std::string>, std::deque<msg::Envelope>> answers_;
  std::vector<msg::Envelope> to_coordinator_;
};

class InMemoryParameterClient final : public ParameterClient {
 public:
  // `peer`: the routing id the servers see this client's requests come from.
  InMemoryParameterClient(InMemoryServers& servers, ParameterRequests requests, std::string peer)
      : servers_(servers), requests_(std::move(requests)), peer_(std::move(peer)) {}

  Status pull() override { return deliver(requests_.pull()); }
  // The messages the worker's client sends, as the servers decode them.
  Status push(uint64_t step, uint32_t samples, const float* gradient) override {
    CUSTODY_ASSIGN_OR_RETURN(std::vector<Bytes> messages, requests_.push_messages(step, samples, gradient));
    std::vector<msg::Envelope> requests;
    for (const Bytes& m : messages) requests.push_back(msg::decode(m).value());
    return deliver(requests);
  }
  Status wait(float* values, std::chrono::milliseconds timeout) override {
    for (size_t i = 0; i < requests_.servers().size(); ++i) {
      for (bool answered = false; !answered;) {
        std::optional<msg::Envelope> answer = servers_.take(server(i), peer_);
        if (!answer) return requests_.no_answer(i, timeout);
        CUSTODY_ASSIGN_OR_RETURN(answered, requests_.accept(i, *answer, values));
      }
    }
    return Status::ok();
  }
  float* gradient_block() override { return requests_.gradient_block(); }
  float* values_block() override { return requests_.values_block(); }

 private:
  Status deliver(const std::vector<msg::Envelope>& requests) {
    for (size_t i = 0; i < requests.size(); ++i) servers_.deliver(server(i), peer_, requests[i]);
    return Status::ok();
  }
  size_t server(size_t i) const { return servers_.index(requests_.servers().server(i).node_id); }

  InMemoryServers& servers_;
  ParameterRequests requests_;
  std::string peer_;
};

}  // namespace custody::actors
