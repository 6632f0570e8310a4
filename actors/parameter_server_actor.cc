// The parameter-server node: a ROUTER socket for workers' pushes and pulls, a DEALER
// socket to the coordinator, a bridge actor for each, the server actor around NodeLink,
// and ParameterServerCore (the state machine and the threads that reach it).
//
// Workers' pulls and pushes are handled on the peers bridge's own thread (a DirectHandler,
// actors/socket_bridge.h), which sends the answers as it makes them, or on a doorbell
// thread for a worker through shared memory (actors/parameter_server_core.h): a step's
// request and answer then wake no actor. The coordinator's messages, the heartbeats and
// the deregistration stay on the server actor. The threads share the state machine under
// the core's mutex (the actor takes it only for the coordinator's rare messages and the
// 100 ms tick).
#include <mutex>
#include <optional>

#include "actors/parameter_server_core.h"

#include "actors/node_link.h"
#include "actors/node_runtime.h"
#include "actors/parameter_server_state.h"
#include "actors/runtime_common.h"
#include "actors/socket_bridge.h"
#include "protocols/data_plane.h"
#include "protocols/transport.h"

namespace custody::actors {
namespace {

// The node's name in its log lines and error replies.
const std::string kNode = "parameter-server";

// The data plane, on the peers bridge's thread (see actors/parameter_server_core.h).
DirectHandler data_plane_handler(std::shared_ptr<ParameterServerCore> core, CpuList pin) {
  auto pinned = std::make_shared<bool>(false);  // only the bridge's thread touches it
  return [core, pin, pinned](Inbound& in, const caf::actor&, const BridgeReply& reply) {
    if (!pin.empty() && !*pinned) {
      // The server's compute runs here now: this thread takes the list's first CPU, as the
      // actor's thread does (it only ticks and talks to the coordinator).
      *pinned = true;
      if (Status s = pin_this_thread(pin.cpu_for(0)); !s.is_ok()) log(LogLevel::kWarn, kNode, s.message());
    }
    core->handle(in, reply);
  };
}

struct ServerActorState {
  std::shared_ptr<ParameterServerCore> core;
  std::unique_ptr<NodeLink> link;
  SocketPort coordinator;
  bool pinned = false;  // --pin-cpu applied to this actor's thread
  void to_coordinator(msg::Envelope e) const {
    coordinator.send("", link->to_coordinator(std::move(e)).envelope);
  }
};

// The state machine, made before the bridges (the peers bridge's DirectHandler holds it).
std::shared_ptr<ParameterServerCore> make_server_core(const std::string& listener, MetricsRegistry* metrics,
                                                      const CpuList& pin, msg::DecodeLimits limits) {
  auto crypto = std::make_unique<ForkJoin>(ForkJoin::helpers_for_this_machine());
  if (!pin.empty()) {
    // The server's compute: the data plane's threads (each pinned on its first message, on
    // that thread) and the actor's take the list's first CPU, the sealing helpers the next.
    crypto->for_each_helper([&](size_t i, pthread_t t) {
      if (Status s = pin_thread(t, pin.cpu_for(i + 1)); !s.is_ok()) log(LogLevel::kWarn, kNode, s.message());
    });
  }
  auto logic = std::make_unique<ParameterServerState>("ps");
  logic->set_parallel(crypto.get());
  logic->set_share_step_end_above(ParameterServerState::kShareStepEndAbove);
  logic->set_metrics(metrics);
  // A listener other hosts can reach serves no data plane in clear.
  logic->set_listener_loopback_only(data_plane::is_loopback_endpoint(listener), listener);
  return std::make_shared<ParameterServerCore>(std::move(crypto), std::move(logic), limits, pin);
}

caf::behavior server_actor(caf::stateful_actor<ServerActorState>* self, SocketPort coordinator,
                           msg::Register registration, PeerNodeConfig config, std::shared_ptr<ParameterServerCore> core,
                           std::shared_ptr<NodeExit> exit, CpuList pin) {
  self->state.core = std::move(core);
  self->state.link = std::make_unique<NodeLink>(registration, config.coordinator, config.connect_timeout,
                                                config.token, SteadyClock::now());
  self->state.coordinator = coordinator;
  self->send(self, tick_atom::value);
  return {
      [=](Inbound& in) {
        auto& st = self->state;
        const msg::Envelope& e = *in.envelope;
        // Only the coordinator's socket delivers here: the peers bridge handles workers'
        // messages itself (data_plane_handler).
        if (in.channel != Channel::kCoordinator) return;
        ParameterServerCore& core = *st.core;
        const uint64_t before = st.link->registrations();
        if (st.link->on_message(e, SteadyClock::now())) {
          if (st.link->left()) exit->left = true;
          std::lock_guard<std::mutex> lock(core.mu);
          core.logic->set_node_id(st.link->node_id());
          core.node_id = st.link->node_id();
          if (st.link->registrations() > before && before > 0 && core.logic->num_jobs() > 0) {
            log(LogLevel::kWarn, st.link->node_id(), "registered again: dropping the key ranges held for the "
                                                     "previous coordinator session");
            core.logic->clear();
          }
          return;
        }
        if (e.get<msg::Error>()) {
          log(LogLevel::kWarn, st.link->node_id(), "coordinator: " + e.get<msg::Error>()->message);
          return;
        }
        Outbox out;
        {
          std::lock_guard<std::mutex> lock(core.mu);
          out = core.logic->handle_control(in.peer, e);
        }
        for (auto& o : out) st.to_coordinator(std::move(o.envelope));
      },
      [=](Outbound& o) {
        // A message for the coordinator that the data plane's thread made.
        self->state.to_coordinator(*o.envelope);
      },
      [=](leave_atom) {
        // Stopping: deregister; the workers' pushes meanwhile are refused once the
        // coordinator has rolled the job onto other servers (the attempt fence).
        auto& st = self->state;
        for (auto& o : st.link->leave()) st.coordinator.send("", std::move(o.envelope));
        if (st.link->left()) exit->left = true;
      },
      [=](tick_atom) {
        auto& st = self->state;
        if (!pin.empty() && !st.pinned) {
          st.pinned = true;
          Status s = pin_this_thread(pin.cpu_for(0));
          log(s.is_ok() ? LogLevel::kInfo : LogLevel::kWarn, kNode,
              s.is_ok() ? "pinned to CPUs " + pin.to_string() : s.message());
        }
        bool busy;
        {
          std::lock_guard<std::mutex> lock(st.core->mu);
          busy = st.core->logic->num_jobs() > 0;
        }
        auto due = st.link->on_tick(SteadyClock::now(), busy);
        if (!due.is_ok()) {
          log(LogLevel::kError, kNode, due.status().message());
          exit->fail(3);
          return;
        }
        for (auto& o : due.value()) st.coordinator.send("", std::move(o.envelope));
        self->delayed_send(self, std::chrono::milliseconds(100), tick_atom::value);
      },
  };
}

}  // namespace

int run_parameter_server(const PeerNodeConfig& config, const std::atomic<bool>& stop, transport::Context* shared) {
  MetricsRegistry metrics;  // outlives the actors that update it
  MetricsListener metrics_listener([&metrics] { return metrics.render(); });
  auto pin = pin_cpus(config);
  if (start_failed(kNode, pin.status())) return 2;
  std::optional<transport::Context> own;
  transport::Context& context = shared ? *shared : own.emplace();
  transport::SocketOptions socket_options;
  socket_options.max_message_bytes = static_cast<int64_t>(config.max_message_bytes) * 2;
  auto listener = transport::Socket::bind(context, config.listen, socket_options);
  if (start_failed(kNode, listener.status())) return 2;
  auto to_coordinator = connect_to_coordinator(context, config);
  if (start_failed(kNode, to_coordinator.status())) return 2;
  const std::string bound = listener.value()->endpoint();
  const msg::Register registration = actors::registration(
      msg::NodeRole::kParameterServer, config.name, advertised(listener.value()->endpoint(), config.advertise_host));
  log(LogLevel::kInfo, kNode, "serving keys on " + registration.address);
  sweep_shared_memory(kNode);
  if (shared) {
    if (start_failed(kNode, context.serve_in_process(*listener.value(), registration.address))) return 2;
    log(LogLevel::kInfo, kNode, "workers in this process reach it in-process");
  }

  caf::actor_system_config cfg;
  add_custody_types(cfg);
  quiet_scheduler(cfg);
  caf::actor_system system{cfg};
  auto exit = std::make_shared<NodeExit>();
  BridgeOptions peer_options = bridge_options(Channel::kPeers, kNode, config.max_message_bytes, &metrics);
  auto core = make_server_core(bound, &metrics, pin.value(), peer_options.limits);
  peer_options.direct = data_plane_handler(core, pin.value());
  SocketPort peers = spawn_socket_bridge(system, std::move(listener).value(), std::move(peer_options));
  SocketPort coordinator =
      spawn_socket_bridge(system, std::move(to_coordinator).value(),
                          bridge_options(Channel::kCoordinator, kNode, config.max_message_bytes, &metrics));
  // Detached: it answers the coordinator (assignments before a job's first push) at once.
  // On CAF's shared scheduler an idle worker thread polls with growing sleeps, which
  // delayed messages by milliseconds (seen with perf: a third of the server's time in
  // nanosleep); a thread of its own waits on its mailbox and wakes as a message arrives.
  auto actor = system.spawn<caf::detached>(server_actor, coordinator, registration, config, core, exit,
                                           pin.value());
  core->connect(peers, actor);
  peers.start(actor);
  coordinator.start(actor);
  if (!start_metrics(metrics_listener, config, kNode)) exit->fail(2);
  const int code = run_until_stopped(system, stop, *exit, {actor, peers.actor(), coordinator.actor()}, actor, kNode);
  core->stop();  // the doorbell threads, before the actor system goes
  return code;
}

}  // namespace custody::actors
