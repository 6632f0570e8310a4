// The worker node: a DEALER socket to the coordinator with its bridge; the worker actor,
// which feeds WorkerState (membership, task intake, reports; actors/worker_state.h) the
// coordinator's messages, ticks and its trainers' reports and ends, sends what it returns
// and starts and stops trainers as it says; and for each task a trainer: a detached
// actor that runs the training loop (actors/trainer.h) and owns one DEALER socket per
// parameter server (actors/socket_parameter_client.h). A task is one rank (shard) of a
// job; after a node dies the coordinator may give one worker several ranks of the same
// job, each run by its own trainer. A trainer checks its mailbox for a stop between steps
// and while it waits for the servers. A trainer whose node lacks the job's data files
// fetches its records first (actors/records_fetcher.h) and reports how it came by them.
// The coordinator's scoreRecords (custody attribute's scoring, actors/record_scoring.h) is
// answered by a detached scorer of its own, beside any training: its answer comes back to
// the worker actor, which sends it.
#include <map>
#include <optional>
#include <thread>

#include "actors/node_runtime.h"
#include "actors/record_scoring.h"
#include "actors/runtime_common.h"
#include "actors/socket_bridge.h"
#include "actors/socket_parameter_client.h"
#include "actors/trainer.h"
#include "actors/worker_state.h"

namespace custody::actors {
namespace {

// A trainer's report for the coordinator, and its end, as messages to its worker actor.
struct TrainerReport {
  TaskKey task;
  std::shared_ptr<const msg::Body> body;
};
struct TrainerEnded {
  TaskKey task;
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  bool node_local = false;  // Trainer::load's data_failure
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TrainerReport& x) {
  return f(caf::meta::type_name("trainer_report"), x.task.job_id, x.task.attempt, x.task.rank);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TrainerEnded& x) {
  return f(caf::meta::type_name("trainer_ended"), x.task.job_id, x.task.attempt, x.task.rank, x.message, x.node_local);
}

// A scorer's answer to the coordinator's scoreRecords (recordScores or an error).
struct ScoringDone {
  std::shared_ptr<const msg::Envelope> reply;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ScoringDone& x) {
  return f(caf::meta::type_name("scoring_done"), x.reply->request_id);
}

struct TrainerArgs {
  msg::AssignTask task;
  TaskKey key;
  std::string node_id;
  transport::Context* context;
  std::chrono::milliseconds step_timeout;
  MetricsRegistry* metrics;
  PeerNodeConfig config;  // the coordinator's address and this node's credentials: records are fetched with them
  int cpu = -1;           // --pin-cpu: the CPU this trainer's thread runs on; -1: not pinned
};

// Whether the trainer was told to stop, by its worker actor or by the node's shutdown
// (an exit message; trainers are linked to the worker actor). Does not wait.
class StopCheck {
 public:
  explicit StopCheck(caf::blocking_actor* self) : self_(self) {}
  bool operator()() {
    for (bool more = true; more && !stopped_;) {
      self_->receive([&](stop_atom) { stopped_ = true; }, [&](caf::exit_msg&) { stopped_ = true; },
                     caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    }
    return stopped_;
  }

 private:
  caf::blocking_actor* self_;
  bool stopped_ = false;
};

Status train(caf::blocking_actor* self, const TrainerArgs& a, StopCheck& stopped, const caf::actor& node,
             bool* node_local) {
  TrainerOptions options;
  options.step_timeout = a.step_timeout;
  options.metrics = a.metrics;
  // Used only when the node lacks the job file's paths (data shipping): its own connection
  // to the coordinator, opened on the first fetch, so the trainer waits for no actor.
  RecordsFetcherOptions fetch;
  fetch.cache_dir = a.config.data_cache;
  fetch.cache_max_bytes = a.config.data_cache_max_bytes;
  fetch.coordinator = a.config.coordinator;
  fetch.node_id = a.node_id;
  fetch.token = a.config.token;
  fetch.job_id = a.key.job_id;
  fetch.attempt = a.key.attempt;
  fetch.timeout = a.step_timeout;
  RecordsFetcher records(
      fetch, [&] { return connect_to_coordinator(*a.context, a.config); }, [&] { return stopped(); });
  options.records = &records;
  CUSTODY_ASSIGN_OR_RETURN(Trainer trainer, Trainer::load(a.task, a.key.job_id, options, node_local));
  records.close();
  // Recorded by the coordinator (shard_obtained): how this rank's records reached the node.
  self->send(node, TrainerReport{a.key, std::make_shared<const msg::Body>(trainer.obtained())});
  CUSTODY_ASSIGN_OR_RETURN(KeySlices servers, KeySlices::make(a.task.servers, a.task.num_parameters));
  ParameterRequests requests(std::move(servers), a.node_id, a.key.job_id, a.key.attempt, a.key.rank);
  // A worker seals and opens on its own thread: while it does, the job's other workers
  // compute or open too (as many as cores, when packed), so a helper would only take a
  // core from them. (The server, which the workers wait for, uses helpers.)
  CUSTODY_RETURN_IF_ERROR(requests.seal_with(a.task.rank_key, a.task.replies_key));
  requests.share_memory();  // for servers on this host, as the task says
  CUSTODY_ASSIGN_OR_RETURN(
      SocketParameterClient client,
      SocketParameterClient::connect(*a.context, std::move(requests), [&] { return stopped(); }, a.metrics));
  return trainer.run(client, [&](msg::Body body) {
    self->send(node, TrainerReport{a.key, std::make_shared<const msg::Body>(std::move(body))});
  });
}

// Scores one scoreRecords. The node's records cache is looked in, but nothing is fetched:
// the coordinator ships records only to a job's running ranks (authorize_fetch), and a
// range this node cannot read is scored by the coordinator instead.
void scorer(caf::blocking_actor* self, msg::Envelope request, std::string node_id, PeerNodeConfig config,
            caf::actor node) {
  StopCheck stopped(self);
  RecordsFetcherOptions fetch;
  fetch.cache_dir = config.data_cache;
  fetch.coordinator = config.coordinator;
  fetch.node_id = node_id;
  RecordsFetcher cache(
      fetch,
      []() -> Result<std::unique_ptr<transport::Socket>> {
        return failed_precondition("this node holds neither the data set's files nor a cached copy of the range");
      },
      [&] { return stopped(); });
  auto scored = score_request(*request.get<msg::ScoreRecords>(), config.data_cache.empty() ? nullptr : &cache,
                               std::max(1u, std::thread::hardware_concurrency() / 2));
  msg::Envelope reply = scored.is_ok() ? msg::reply_to(request, node_id, std::move(scored).value())
                                       : msg::make_error(request, node_id, scored.status());
  self->send(node, ScoringDone{std::make_shared<const msg::Envelope>(std::move(reply))});
}

void trainer_loop(caf::blocking_actor* self, TrainerArgs args, caf::actor node) {
  if (args.cpu >= 0) {
    // The gradient's GEMMs run on this (detached) thread: it is the worker's compute.
    Status pinned = pin_this_thread(args.cpu);
    log(pinned.is_ok() ? LogLevel::kInfo : LogLevel::kWarn, args.node_id,
        args.key.job_id + " rank " + std::to_string(args.key.rank) +
            (pinned.is_ok() ? ": trainer pinned to CPU " + std::to_string(args.cpu) : ": " + pinned.message()));
  }
  StopCheck stopped(self);
  bool node_local = false;
  Status s = train(self, args, stopped, node, &node_local);
  // A server that already released a stopped job answers with an error; that is the stop
  // arriving by another path, not a failure.
  if (!s.is_ok() && stopped()) s = Status(ErrorCode::kCancelled, "stopped");
  self->send(node, TrainerEnded{args.key, s.code(), s.message(), node_local});
}

struct WorkerActorState {
  std::unique_ptr<WorkerState> logic;
  std::map<uint32_t, caf::actor> trainers;  // by rank
  size_t trainers_started = 0;              // the next trainer takes the next CPU of --pin-cpu
};

caf::behavior worker_actor(caf::stateful_actor<WorkerActorState>* self, SocketPort coordinator,
                           msg::Register registration, PeerNodeConfig config, transport::Context* context,
                           std::shared_ptr<NodeExit> exit, MetricsRegistry* metrics, CpuList pin) {
  self->state.logic = std::make_unique<WorkerState>(
      NodeLink(registration, config.coordinator, config.connect_timeout, config.token, SteadyClock::now()));
  self->send(self, tick_atom::value);
  auto act = [=](WorkerActions actions) {
    auto& st = self->state;
    for (auto& o : actions.outbox) coordinator.send("", std::move(o.envelope));
    if (actions.stop_trainers) {
      for (auto& [rank, trainer] : st.trainers) caf::anon_send(trainer, stop_atom::value);
    }
    for (const msg::Envelope& e : actions.start) {
      const auto& task = *e.get<msg::AssignTask>();
      TrainerArgs args{
          task, {e.job_id, e.attempt, task.rank}, st.logic->node_id(), context, config.step_timeout, metrics, config};
      if (!pin.empty()) args.cpu = pin.cpu_for(st.trainers_started);
      ++st.trainers_started;
      // Linked: a trainer dies with its worker actor (the exit on shutdown reaches it).
      st.trainers[task.rank] = self->spawn<caf::detached + caf::linked>(trainer_loop, args, caf::actor(self));
    }
  };
  return {
      [=](Inbound& in) {
        // Only the coordinator reaches this socket (CurveZMQ proves its key when secured).
        if (in.envelope->get<msg::ScoreRecords>() && in.envelope->sender == "coordinator") {
          self->spawn<caf::detached + caf::linked>(scorer, *in.envelope, self->state.logic->node_id(), config,
                                                   caf::actor(self));
          return;
        }
        act(self->state.logic->handle(*in.envelope, SteadyClock::now()));
        if (self->state.logic->left()) exit->left = true;
      },
      [=](leave_atom) {
        act(self->state.logic->leave());
        if (self->state.logic->left()) exit->left = true;
      },
      [=](const ScoringDone& d) {
        coordinator.send("", self->state.logic->to_coordinator(*d.reply).envelope);
      },
      [=](const TrainerReport& r) { act(self->state.logic->on_report(r.task, *r.body)); },
      [=](const TrainerEnded& e) {
        auto& st = self->state;
        auto it = st.trainers.find(e.task.rank);
        if (it != st.trainers.end() && it->second.address() == self->current_sender()) st.trainers.erase(it);
        act(st.logic->on_trainer_end(e.task, Status(e.code, e.message), e.node_local));
      },
      [=](tick_atom) {
        auto due = self->state.logic->tick(SteadyClock::now());
        if (!due.is_ok()) {
          log(LogLevel::kError, "worker", due.status().message());
          exit->fail(3);
          return;
        }
        act(std::move(due).value());
        self->delayed_send(self, std::chrono::milliseconds(100), tick_atom::value);
      },
      [=](const caf::exit_msg& m) {
        for (auto& [rank, trainer] : self->state.trainers) caf::anon_send(trainer, stop_atom::value);
        self->quit(m.reason);
      },
  };
}

}  // namespace

int run_worker(const PeerNodeConfig& config, const std::atomic<bool>& stop, transport::Context* shared) {
  MetricsRegistry metrics;  // outlives the actors that update it
  training_samples_metric(metrics);
  training_step_metric(metrics);
  network_bytes_metric(metrics, Channel::kPeers);  // the trainers' sockets to the servers: 0 before a job
  MetricsListener metrics_listener([&metrics] { return metrics.render(); });
  auto pin = pin_cpus(config);
  if (start_failed("worker", pin.status())) return 2;
  std::optional<transport::Context> own;
  transport::Context& context = shared ? *shared : own.emplace();
  auto to_coordinator = connect_to_coordinator(context, config);
  if (start_failed("worker", to_coordinator.status())) return 2;
  const msg::Register registration = actors::registration(msg::NodeRole::kWorker, config.name);
  sweep_shared_memory("worker");

  caf::actor_system_config cfg;
  add_custody_types(cfg);
  cfg.add_message_type<TrainerReport>("custody_trainer_report");
  cfg.add_message_type<TrainerEnded>("custody_trainer_ended");
  cfg.add_message_type<ScoringDone>("custody_scoring_done");
  quiet_scheduler(cfg);
  caf::actor_system system{cfg};
  auto exit = std::make_shared<NodeExit>();
  SocketPort coordinator =
      spawn_socket_bridge(system, std::move(to_coordinator).value(),
                          bridge_options(Channel::kCoordinator, "worker", config.max_message_bytes, &metrics));
  auto actor = system.spawn(worker_actor, coordinator, registration, config, &context, exit, &metrics, pin.value());
  coordinator.start(actor);
  if (!start_metrics(metrics_listener, config, "worker")) exit->fail(2);
  return run_until_stopped(system, stop, *exit, {actor, coordinator.actor()}, actor, "worker");
}

int run_worker_with_parameter_server(const PeerNodeConfig& worker, const PeerNodeConfig& server,
                                     const std::atomic<bool>& stop) {
  transport::Context context;  // shared: the worker finds the server's address served in it
  std::atomic<bool> done{false};
  int server_code = 0;
  std::thread server_thread([&] {
    server_code = run_parameter_server(server, done, &context);
    done = true;
  });
  std::thread watch([&] {
    while (!stop && !done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = true;
  });
  const int worker_code = run_worker(worker, done, &context);
  done = true;
  server_thread.join();
  watch.join();
  return worker_code != 0 ? worker_code : server_code;
}

}  // namespace custody::actors
