// The parameter-server node: a ROUTER socket for workers' pushes and pulls, a DEALER
// socket to the coordinator, a bridge actor for each, and the server actor around
// ParameterServerState and NodeLink.
#include <optional>

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

// Data-plane requests refused for want of the rank's key (permission denied) are an
// attack or a misconfiguration: the operator learns where they came from. The first 20 are
// logged, then one in 1000, so a flood cannot fill the disk.
void log_refusals(const std::string& node, const Inbound& in, const Outbox& out) {
  static uint64_t refused = 0;
  for (const auto& o : out) {
    const auto* error = o.envelope.get<msg::Error>();
    if (!error || error->code != ErrorCode::kPermissionDenied) continue;
    if (++refused > 20 && refused % 1000 != 0) continue;
    log(LogLevel::kWarn, node.empty() ? kNode : node,
        "refused a '" + std::string(msg::body_name(in.envelope->body)) + "' for " + in.envelope->job_id + " from " +
            (in.address.empty() ? "this process" : in.address) + " (" + std::to_string(refused) +
            " refused so far): " + error->message);
  }
}

struct ServerActorState {
  // Sealing and opening a step's blocks on the cores its workers leave idle while they
  // wait for it (declared first: the state machine uses it until it is gone).
  std::unique_ptr<ForkJoin> crypto;
  std::unique_ptr<ParameterServerState> logic;
  std::unique_ptr<NodeLink> link;
  SocketPort coordinator, peers;
  bool pinned = false;  // --pin-cpu applied to this actor's thread
  void to_coordinator(msg::Envelope e) const {
    coordinator.send("", link->to_coordinator(std::move(e)).envelope);
  }
};

caf::behavior server_actor(caf::stateful_actor<ServerActorState>* self, SocketPort coordinator, SocketPort peers,
                           msg::Register registration, PeerNodeConfig config, std::string listener,
                           std::shared_ptr<NodeExit> exit, MetricsRegistry* metrics, CpuList pin) {
  self->state.crypto = std::make_unique<ForkJoin>(ForkJoin::helpers_for_this_machine());
  if (!pin.empty()) {
    // The server's compute: its actor's thread (pinned on its first tick, on that thread)
    // takes the list's first CPU, the sealing helpers the next ones in turn.
    self->state.crypto->for_each_helper([&](size_t i, pthread_t t) {
      if (Status s = pin_thread(t, pin.cpu_for(i + 1)); !s.is_ok()) log(LogLevel::kWarn, kNode, s.message());
    });
  }
  self->state.logic = std::make_unique<ParameterServerState>("ps");
  self->state.logic->set_parallel(self->state.crypto.get());
  self->state.logic->set_metrics(metrics);
  // A listener other hosts can reach serves no data plane in clear.
  self->state.logic->set_listener_loopback_only(data_plane::is_loopback_endpoint(listener), listener);
  self->state.link = std::make_unique<NodeLink>(registration, config.coordinator, config.connect_timeout,
                                                config.token, SteadyClock::now());
  self->state.coordinator = coordinator;
  self->state.peers = peers;
  self->send(self, tick_atom::value);
  return {
      [=](Inbound& in) {
        auto& st = self->state;
        const msg::Envelope& e = *in.envelope;
        if (in.channel == Channel::kCoordinator) {
          const uint64_t before = st.link->registrations();
          if (st.link->on_message(e, SteadyClock::now())) {
            if (st.link->left()) exit->left = true;
            st.logic->set_node_id(st.link->node_id());
            if (st.link->registrations() > before && before > 0 && st.logic->num_jobs() > 0) {
              log(LogLevel::kWarn, st.link->node_id(), "registered again: dropping the key ranges held for the "
                                                       "previous coordinator session");
              st.logic->clear();
            }
            return;
          }
          if (e.get<msg::Error>()) {
            log(LogLevel::kWarn, st.link->node_id(), "coordinator: " + e.get<msg::Error>()->message);
            return;
          }
          for (auto& o : st.logic->handle_control(in.peer, e)) st.to_coordinator(std::move(o.envelope));
          return;
        }
        Outbox out = st.logic->handle_data(in.peer, e);
        log_refusals(st.link->node_id(), in, out);
        remote_peers_first(out, transport::Context::is_in_process_peer);
        for (auto& o : out) {
          if (o.to_coordinator) {
            st.to_coordinator(std::move(o.envelope));
          } else {
            st.peers.send(o.peer, std::move(o.envelope));
          }
        }
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
        auto due = st.link->on_tick(SteadyClock::now(), st.logic->num_jobs() > 0);
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
  SocketPort peers = spawn_socket_bridge(system, std::move(listener).value(),
                                         bridge_options(Channel::kPeers, kNode, config.max_message_bytes, &metrics));
  SocketPort coordinator =
      spawn_socket_bridge(system, std::move(to_coordinator).value(),
                          bridge_options(Channel::kCoordinator, kNode, config.max_message_bytes, &metrics));
  // Detached: the server is on every step's critical path. On CAF's shared scheduler an
  // idle worker thread polls with growing sleeps, which delayed pushes by milliseconds
  // (seen with perf: a third of the server's time in nanosleep); a thread of its own
  // waits on its mailbox and wakes as a message arrives.
  auto actor =
      system.spawn<caf::detached>(server_actor, coordinator, peers, registration, config, bound, exit, &metrics,
                                  pin.value());
  peers.start(actor);
  coordinator.start(actor);
  if (!start_metrics(metrics_listener, config, kNode)) exit->fail(2);
  return run_until_stopped(system, stop, *exit, {actor, peers.actor(), coordinator.actor()}, actor, kNode);
}

}  // namespace custody::actors
