// How a trainer reaches the parameter servers of its task, kept apart from its training
// loop as ps-lite keeps KVWorker's Push/Pull/Wait apart from the application's loop:
//
//   KeySlices          which server holds which contiguous key range of the flat vector
//   ParameterClient    what the trainer's loop talks to: pull or push, then wait
//   ParameterRequests  the protocol every client speaks: the request each server gets
//                      for a pull or a push, and the check of each server's answer; in a
//                      job whose data plane is sealed (protocols/data_plane.h), pushes and
//                      pulls sealed under the rank's keys and answers opened with the
//                      servers' reply keys; for a server on the worker's host whose task
//                      says so, blocks through a shared-memory region instead of the
//                      socket (protocols/shared_region.h)
//
// Implementations: SocketParameterClient (actors/socket_parameter_client.h; one ZeroMQ
// DEALER socket per server) in the worker, and InMemoryParameterClient over
// ParameterServerState in the tests (tests/actors/in_memory_parameter_client.h), so that
// the trainer's loop is tested against the servers' real protocol.
// Thread-safety: none; a client and its requests belong to one trainer.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/outgoing.h"
#include "protocols/bytes.h"
#include "protocols/fork_join.h"
#include "protocols/shared_region.h"

namespace custody::actors {

class KeySlices {
 public:
  // Errors (invalid argument, naming the range): no servers, an empty range, or ranges
  // that do not cover [0, num_parameters) exactly once. The servers may come in any order.
  static Result<KeySlices> make(std::vector<msg::ServerRange> servers, uint64_t num_parameters);

  size_t size() const { return servers_.size(); }
  const msg::ServerRange& server(size_t i) const { return servers_[i]; }
  // Server i's part of a whole vector of num_parameters floats, borrowed from it.
  msg::Floats slice(size_t i, const float* whole) const;

 private:
  explicit KeySlices(std::vector<msg::ServerRange> servers) : servers_(std::move(servers)) {}
  std::vector<msg::ServerRange> servers_;
};

class ParameterClient {
 public:
  virtual ~ParameterClient() = default;

  // Asks every server for its range's values.
  virtual Status pull() = 0;
  // Sends every server its slice of `gradient`: the rank's gradient of `step`, over
  // `samples` samples. The slices are borrowed for the call, not copied.
  // REQUIRES: gradient holds num_parameters floats.
  virtual Status push(uint64_t step, uint32_t samples, const float* gradient) = 0;
  // Waits up to `timeout` for every server's answer to the last pull or push, and writes
  // the values each server sent into its range of `values` (num_parameters floats).
  // Errors: kDeadlineExceeded naming the server that did not answer; a server's refusal,
  // with its code and the server named; kDataLoss for an answer that is not the server's
  // range; kCancelled when the trainer was asked to stop while waiting.
  virtual Status wait(float* values, std::chrono::milliseconds timeout) = 0;

  // When one server holds the whole model and is reached through shared memory: its
  // region's gradient and values blocks (num_parameters floats each, 64-byte aligned), where
  // the trainer may compute its gradient and read the values from, so that neither is
  // copied on the worker's side (push() given the gradient block and wait() given the
  // values block copy nothing). The protocol keeps them apart from the server's writes: the
  // worker writes the gradient block and reads the values block only between an answer and
  // its next request (protocols/shared_region.h). Null: the trainer's own buffers. Ask
  // after the first pull's answer (a server may refuse the region then); valid from then
  // on for the client's life. The trainer only reads the values block (wait() given it
  // writes nothing there).
  virtual float* gradient_block() { return nullptr; }
  virtual float* values_block() { return nullptr; }
};

class ParameterRequests {
 public:
  // `worker`: the node id of the trainer's worker; the requests are of `rank`'s task of
  // the job's attempt.
  ParameterRequests(KeySlices servers, std::string worker, std::string job_id, uint32_t attempt,
                    uint32_t rank);
  // Seals every request from now on, and takes only sealed answers: the task's rank key
  // and the attempt's replies key (msg::AssignTask). Errors: kInvalidArgument when the task
  // carries only one of the two; kUnavailable when a key cannot be derived.
  // `parallel`: threads that share sealing and opening each block (kept alive by the
  // caller); none: this thread alone.
  Status seal_with(const std::optional<AeadKey>& rank_key, const std::optional<AeadKey>& replies_key,
                   ForkJoin* parallel = nullptr);
  bool sealed() const { return !push_keys_.empty(); }
  // Makes a shared-memory region for each server that the task marks shared_memory (the
  // coordinator found it on this host, in another process, with the job in clear); a region
  // that cannot be made is logged and that server reached by socket. Not in a sealed job.
  // Returns how many servers are reached through memory. Call before the first request.
  size_t share_memory();
  bool through_memory(size_t server) const { return server < regions_.size() && regions_[server] != nullptr; }
  // Server i's region once the server has answered through it (so it holds the region):
  // from then on a client may send server i's requests and take its answers through the
  // region's doorbell (protocols/shared_region.h) instead of the socket. Null: not (yet).
  shm::SharedRegion* doorbell(size_t server) const {
    return server < answered_.size() && answered_[server] ? regions_[server].get() : nullptr;
  }
  // ParameterClient::gradient_block and values_block: the region's blocks when the one
  // server holds every key and is reached through memory; else null.
  float* gradient_block() const { return whole_region() ? regions_[0]->gradient() : nullptr; }
  float* values_block() const { return whole_region() ? regions_[0]->values() : nullptr; }
  // Server i's answer refused its region (kFailedPrecondition to a pull that named it: the
  // server is not on this host after all, or the region is unusable): the region is
  // dropped, the server reached by socket from now on, and the pull to send it again is
  // returned. Nothing: the answer is not such a refusal.
  std::optional<msg::Envelope> fall_back(size_t server, const msg::Envelope& answer);

  const KeySlices& servers() const { return servers_; }
  const std::string& worker() const { return worker_; }

  // A new request: one envelope for each server, in the servers' order.
  std::vector<msg::Envelope> pull();
  std::vector<msg::Envelope> push(uint64_t step, uint32_t samples, const float* gradient);
  // The same push as the messages the clients send, encoded: in a sealed job each slice is
  // sealed straight into its message (msg::encode_in_place), read once and written once.
  // Errors: sealing failed (the random source); nothing is then sent in clear.
  Result<std::vector<Bytes>> push_messages(uint64_t step, uint32_t samples, const float* gradient);

  // Server i's answer. True: it answered the current request, and its values are in its
  // range of `values`. False: it answers an earlier request (a late reply to one that was
  // abandoned) and is to be ignored. An error: the server refused the request, or sent
  // something other than its range's values (kDataLoss; in a sealed job also an answer
  // that is not sealed for this request under the server's reply key).
  Result<bool> accept(size_t server, const msg::Envelope& answer, float* values);
  // The error of a wait for server i that ran out after `timeout`.
  Status no_answer(size_t server, std::chrono::milliseconds timeout) const;

 private:
  bool whole_region() const { return servers_.size() == 1 && through_memory(0); }
  msg::Envelope envelope(msg::Body body) const;
  msg::Envelope pull_to(size_t i) const;
  // Server i's push of the current request, without its seal in a sealed job; and what
  // that seal binds.
  msg::Envelope push_to(size_t i, uint64_t step, uint32_t samples, const float* gradient) const;
  std::string push_aad(size_t i, uint64_t step, uint32_t samples) const;

  KeySlices servers_;
  std::string worker_, job_id_;
  uint32_t attempt_, rank_;
  std::vector<uint64_t> versions_;  // of the values last received from each server
  uint64_t request_id_ = 0;         // of the current request
  const char* what_ = "";           // "a pull" or "a push", for errors
  uint64_t step_ = 0;               // of the current push
  // Sealed: by server, the rank's push key and the server's reply key there.
  std::vector<AeadKey> push_keys_, reply_keys_;
  ForkJoin* parallel_ = nullptr;
  // By server: the shared-memory region it is reached through; null: its socket.
  std::vector<std::unique_ptr<shm::SharedRegion>> regions_;
  std::vector<bool> answered_;  // by server: it has answered through its region
};

}  // namespace custody::actors
