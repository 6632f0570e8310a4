// What a parameter-server node's threads share: the state machine (ParameterServerState,
// under `mu`), and the threads that deliver workers' messages to it and their answers back.
//
//  * Workers' messages on the server's socket are handled on its bridge's own thread
//    (actors/socket_bridge.h, DirectHandler), which sends the socket answers at once.
//  * A worker on this host that reaches the server through a shared-memory region sends
//    its pulls and pushes through the region's doorbell (protocols/shared_region.h) once
//    the server has answered through the region: the server runs one doorbell thread per
//    such region, which waits on its futex, handles each request and posts the answer into
//    the region's reply slot. A step's request and answer then wake only the server's
//    doorbell thread and the worker's trainer.
//  * Messages for the coordinator go to the server actor, which owns the link to it.
// Answers go where their peer is: a doorbell peer ("\0shm:" and its region's name, which no
// ZeroMQ routing id can be: ids starting with a zero byte are ZeroMQ's own, five bytes
// long) into its region, any other peer through the socket (from the bridge's thread at
// once, from a doorbell thread through the bridge's mailbox).
// A doorbell thread ends when the state machine no longer holds its region (a new attempt,
// the job's end: checked after each message and every 100 ms) or on stop().
// Thread-safety: handle() and start/stop from any thread; `logic` only under `mu`.
#pragma once

#include <caf/all.hpp>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "actors/caf_types.h"
#include "actors/parameter_server_state.h"
#include "actors/socket_bridge.h"
#include "core/cpu_affinity.h"

namespace custody::actors {

class ParameterServerCore {
 public:
  ParameterServerCore(std::unique_ptr<ForkJoin> crypto, std::unique_ptr<ParameterServerState> logic,
                      msg::DecodeLimits limits, CpuList pin)
      : crypto_(std::move(crypto)), logic(std::move(logic)), limits_(limits), pin_(std::move(pin)) {}
  ~ParameterServerCore() { stop(); }

  // Where answers to socket peers and the coordinator go; set once, before any message.
  void connect(SocketPort peers, caf::actor server) {
    peers_ = std::move(peers);
    server_ = std::move(server);
  }
  // A worker's message: handled under `mu`, its answers sent where their peers are.
  // `to_socket` sends on the server's socket (the bridge's own thread: at once).
  void handle(const Inbound& in, const BridgeReply& to_socket);
  // The doorbell threads end (each within 100 ms) and are joined. Idempotent.
  void stop();

  std::mutex mu;
  std::string node_id;  // for log lines; set once registered (under mu)

 private:
  struct Doorbell {
    std::shared_ptr<shm::SharedRegion> region;
    std::string job_id;
    uint32_t rank = 0;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  // REQUIRES: mu held.
  void dispatch(const Inbound& in, Outbox out, const BridgeReply& to_socket);
  void start_doorbell(const msg::Envelope& request);
  void ring(Doorbell* d, std::string peer);

  std::unique_ptr<ForkJoin> crypto_;  // declared first: the state machine uses it until it is gone

 public:
  std::unique_ptr<ParameterServerState> logic;

 private:
  msg::DecodeLimits limits_;
  CpuList pin_;
  SocketPort peers_;
  caf::actor server_;
  std::map<std::string, std::unique_ptr<Doorbell>> doorbells_;  // by peer; under mu
  std::atomic<bool> stopping_{false};
};

}  // namespace custody::actors
