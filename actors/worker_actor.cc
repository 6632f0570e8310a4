// The worker node: a DEALER socket to the coordinator with its bridge, the worker actor
// (membership, task intake), and for each task a trainer: a detached actor that owns
// one DEALER socket per parameter server and runs the training loop. A task is one rank
// (shard) of a job; after a node dies the coordinator may give one worker several ranks
// of the same job, each run by its own trainer.
//
// The trainer's step: gather a batch of its shard -> gradient (Eigen) -> push each
// server's slice of the gradient -> wait for every server's new values (under BSP they
// come once all workers pushed the step). Each wait has a deadline and names what it
// waited for; between steps and while waiting it checks its mailbox for a stop.
#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <thread>

#include "actors/node_link.h"
#include "actors/node_runtime.h"
#include "actors/runtime_common.h"
#include "actors/socket_bridge.h"
#include "core/dataset.h"
#include "core/job_spec.h"
#include "core/model.h"

namespace custody::actors {
namespace {

struct TrainerArgs {
  msg::AssignTask task;
  std::string job_id, node_id, token;
  uint32_t attempt = 0;
  SocketPort coordinator;
  transport::Context* context;
  std::chrono::milliseconds step_timeout;
};

class Trainer {
 public:
  Trainer(caf::blocking_actor* self, TrainerArgs args) : self_(self), a_(std::move(args)) {}

  Status run();
  bool stop_requested();

 private:
  struct Server {
    msg::ServerRange range;
    std::unique_ptr<transport::Socket> socket;
    uint64_t version = 0;  // of the values last received from it
  };

  void report(msg::Body body);
  // Sends one request per server (bodies[i] to server i) and waits for every reply.
  Status exchange(std::vector<msg::Body> bodies, const char* what);
  Status evaluate(uint32_t epoch);

  caf::blocking_actor* self_;
  TrainerArgs a_;
  std::vector<Server> servers_;
  // The values the next gradient is computed at, copied out of each reply into memory
  // aligned for Eigen's widest vectors. Computing at the received frame itself (tried:
  // it saves a 0.9 MB copy a step) made the result depend, in the last bits, on where
  // the frame happened to lie (three runs of one job gave three models; copying made
  // them one again), most likely because Eigen splits its loops at aligned addresses.
  // Gradients are written to aligned memory too.
  using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;
  AlignedFloats params_;
  std::unique_ptr<Model> model_;
  Matrix test_x_;
  std::vector<uint8_t> test_y_;
  Workspace ws_;
  uint64_t next_request_ = 1;
  bool stopped_ = false;
};

bool Trainer::stop_requested() {
  if (stopped_) return true;
  bool more = true;
  while (more && !stopped_) {
    self_->receive([&](stop_atom) { stopped_ = true; }, [&](caf::exit_msg&) { stopped_ = true; },
                   caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  }
  return stopped_;
}

void Trainer::report(msg::Body body) {
  msg::Envelope e;
  e.job_id = a_.job_id;
  e.body = std::move(body);
  e.sender = a_.node_id;
  e.token = a_.token;
  e.attempt = a_.attempt;
  a_.coordinator.send("", std::move(e));
}

Status Trainer::exchange(std::vector<msg::Body> bodies, const char* what) {
  const uint64_t request = next_request_++;
  for (size_t i = 0; i < servers_.size(); ++i) {
    msg::Envelope e;
    e.sender = a_.node_id;
    e.job_id = a_.job_id;
    e.request_id = request;
    e.attempt = a_.attempt;
    e.body = std::move(bodies[i]);
    CUSTODY_RETURN_IF_ERROR(servers_[i].socket->send("", msg::encode(e)));
  }
  const auto deadline = Clock::now() + a_.step_timeout;
  for (auto& server : servers_) {
    for (;;) {
      if (stop_requested()) return Status(ErrorCode::kCancelled, "stopped");
      if (Clock::now() > deadline) {
        return deadline_exceeded("no reply to " + std::string(what) + " from parameter server " +
                                 server.range.node_id + " at " + server.range.address + " within " +
                                 std::to_string(a_.step_timeout.count() / 1000) + " s");
      }
      auto in = server.socket->receive(std::chrono::milliseconds(100));
      if (!in.is_ok()) return in.status();
      if (!in.value()) continue;
      const transport::Frame& frame = in.value()->bytes;
      auto e = msg::decode(frame.data(), frame.size(), {}, frame.owner());
      if (!e.is_ok()) {
        return data_loss("parameter server " + server.range.node_id + " sent a bad reply: " + e.status().message());
      }
      if (e->request_id != request) continue;  // a late reply to an abandoned request
      if (auto* err = e->get<msg::Error>()) {
        return Status(err->code, "parameter server " + server.range.node_id + ": " + err->message);
      }
      auto* p = e->get<msg::Params>();
      const uint64_t size = server.range.range_end - server.range.range_begin;
      if (!p || p->values.size() != size || p->range_begin != server.range.range_begin) {
        return data_loss("parameter server " + server.range.node_id + " answered " + what +
                         " with something other than the values of its key range");
      }
      std::copy(p->values.begin(), p->values.end(),
                params_.begin() + static_cast<std::ptrdiff_t>(server.range.range_begin));
      server.version = p->version;
      break;
    }
  }
  return Status::ok();
}

Status Trainer::evaluate(uint32_t epoch) {
  MatrixView view(test_x_.data(), test_x_.rows(), test_x_.cols());
  BatchStats s = model_->evaluate(params_.data(), view, test_y_.data(), ws_);
  report(msg::EpochEval{epoch, static_cast<uint64_t>(s.correct), static_cast<uint64_t>(s.samples), s.loss_sum,
                        a_.task.rank});
  return Status::ok();
}

Status Trainer::run() {
  const msg::AssignTask& t = a_.task;
  auto spec = parse_job_spec(t.spec_text, "job " + a_.job_id);
  if (!spec.is_ok()) return spec.status();
  auto data = load_data(spec->data);
  if (!data.is_ok()) return data.status();
  if (data->version_hash != t.shard.dataset_hash) {
    return failed_precondition("the data set this worker read (" + data->version_hash.substr(0, 16) +
                               "...) is not the version the job was submitted with (" +
                               t.shard.dataset_hash.substr(0, 16) + "...); the files differ between machines");
  }
  if (t.shard.end > static_cast<uint64_t>(data->train.count) || t.shard.begin >= t.shard.end ||
      t.test_end > static_cast<uint64_t>(data->test.count) || t.test_begin >= t.test_end) {
    return invalid_argument("the assigned shard or test range lies outside the data set");
  }
  auto model = Model::make(spec->layer_sizes(data->train.features));
  if (!model.is_ok()) return model.status();
  if (model->num_parameters() != t.num_parameters) {
    return invalid_argument("the job's model has " + std::to_string(model->num_parameters()) +
                            " parameters, the assignment says " + std::to_string(t.num_parameters));
  }
  if (t.steps_per_epoch == 0 || t.steps_per_epoch * uint64_t(spec->batch_size) > t.shard.end - t.shard.begin) {
    return invalid_argument(std::to_string(t.steps_per_epoch) + " steps of " + std::to_string(spec->batch_size) +
                            " samples do not fit the assigned shard of " + std::to_string(t.shard.end - t.shard.begin));
  }
  model_ = std::make_unique<Model>(model.value());
  const int64_t begin = static_cast<int64_t>(t.shard.begin), end = static_cast<int64_t>(t.shard.end);
  Matrix shard = features(data->train, begin, end);
  std::vector<uint8_t> labels(data->train.labels.begin() + begin, data->train.labels.begin() + end);
  test_x_ = features(data->test, static_cast<int64_t>(t.test_begin), static_cast<int64_t>(t.test_end));
  test_y_.assign(data->test.labels.begin() + static_cast<int64_t>(t.test_begin),
                 data->test.labels.begin() + static_cast<int64_t>(t.test_end));
  data = Status(ErrorCode::kOk, "");  // the raw bytes are no longer needed

  for (const auto& r : t.servers) {
    auto socket = transport::Socket::connect(*a_.context, r.address);
    if (!socket.is_ok()) return socket.status();
    if (socket.value()->endpoint().rfind("inproc://", 0) == 0) {
      log(LogLevel::kInfo, a_.node_id, "reaches parameter server " + r.node_id + " in-process (" + r.address + ")");
    }
    servers_.push_back({r, std::move(socket).value()});
  }
  params_.assign(t.num_parameters, 0.0f);
  std::vector<msg::Body> pulls(servers_.size(), msg::Body(msg::Pull{a_.node_id}));
  CUSTODY_RETURN_IF_ERROR(exchange(std::move(pulls), "the first pull"));

  const int batch = spec->batch_size;
  std::vector<int64_t> order(static_cast<size_t>(end - begin));
  Matrix x(shard.rows(), batch);
  std::vector<uint8_t> y(batch);
  AlignedFloats grad(t.num_parameters);
  // A resumed task starts inside the epoch of its checkpoint; each epoch's order depends
  // only on (seed, rank, epoch), so the resumed run sees the batches the first would have.
  uint64_t step = t.start_step, samples_total = 0;
  const uint32_t first_epoch = static_cast<uint32_t>(t.start_step / t.steps_per_epoch) + 1;
  uint64_t report_samples = 0;
  double report_loss = 0;
  auto report_start = Clock::now();
  for (uint32_t epoch = first_epoch; epoch <= static_cast<uint32_t>(spec->epochs); ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(spec->seed * 1000003 + t.rank * 7919 + epoch);
    std::shuffle(order.begin(), order.end(), rng);
    const uint64_t first_step = epoch == first_epoch ? t.start_step % t.steps_per_epoch : 0;
    for (uint64_t s = first_step; s < t.steps_per_epoch; ++s) {
      for (int i = 0; i < batch; ++i) {
        const int64_t idx = order[s * batch + i];
        x.col(i) = shard.col(idx);
        y[i] = labels[idx];
      }
      MatrixView view(x.data(), x.rows(), x.cols());
      BatchStats st = model_->gradient(params_.data(), view, y.data(), grad.data(), ws_);
      std::vector<msg::Body> pushes;
      for (const auto& server : servers_) {
        msg::Push p;
        p.worker = a_.node_id;
        p.step = step;
        p.samples = static_cast<uint32_t>(batch);
        p.base_version = server.version;
        p.rank = t.rank;
        // Borrowed, not copied: exchange() encodes it before `grad` changes.
        p.gradient = msg::Floats::borrowed(grad.data() + server.range.range_begin,
                                           server.range.range_end - server.range.range_begin);
        pushes.push_back(std::move(p));
      }
      CUSTODY_RETURN_IF_ERROR(exchange(std::move(pushes), "a push"));
      ++step;
      samples_total += batch;
      report_samples += batch;
      report_loss += st.loss_sum;
      const auto now = Clock::now();
      if (now - report_start > std::chrono::milliseconds(500)) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - report_start).count();
        report(msg::Progress{epoch, step, report_samples, report_loss, static_cast<uint64_t>(us), t.rank});
        report_samples = 0;
        report_loss = 0;
        report_start = now;
      }
    }
    CUSTODY_RETURN_IF_ERROR(evaluate(epoch));
  }
  report(msg::TaskDone{step, samples_total, t.rank});
  return Status::ok();
}

void trainer_loop(caf::blocking_actor* self, TrainerArgs args, caf::actor node) {
  const std::string job = args.job_id, who = args.node_id;
  const uint32_t rank = args.task.rank;
  Trainer trainer(self, args);
  Status s = trainer.run();
  // A server that already released a stopped job answers with an error; that is the stop
  // arriving by another path, not a failure.
  if (!s.is_ok() && trainer.stop_requested()) s = Status(ErrorCode::kCancelled, "stopped");
  if (!s.is_ok() && s.code() != ErrorCode::kCancelled) {
    log(LogLevel::kError, who, job + " rank " + std::to_string(rank) + ": " + s.to_string());
    msg::Envelope e;
    e.sender = who;
    e.job_id = job;
    e.attempt = args.attempt;
    e.body = msg::Error{s.code(), s.message()};
    e.token = args.token;
    args.coordinator.send("", std::move(e));
  } else {
    log(LogLevel::kInfo, who, job + " rank " + std::to_string(rank) + (s.is_ok() ? ": task finished" : ": task stopped"));
  }
  self->send(node, done_atom::value, job, rank);
}

struct WorkerActorState {
  std::unique_ptr<NodeLink> link;
  std::string job;  // the job whose ranks this worker runs, if any
  uint32_t attempt = 0;
  std::map<uint32_t, caf::actor> trainers;  // by rank
  bool stopping = false;  // the trainers of `job` are winding down
  // Tasks that arrived while the previous ones were winding down; they start when all are done.
  std::vector<msg::Envelope> next_tasks;
};

caf::behavior worker_actor(caf::stateful_actor<WorkerActorState>* self, SocketPort coordinator,
                           msg::Register registration, PeerNodeConfig config, transport::Context* context,
                           std::shared_ptr<NodeExit> exit) {
  self->state.link = std::make_unique<NodeLink>(coordinator, registration, config.coordinator,
                                                config.connect_timeout, config.token);
  self->send(self, tick_atom::value);
  auto start = [=](const msg::Envelope& e) {
    auto& st = self->state;
    const auto& task = *e.get<msg::AssignTask>();
    if (st.trainers.count(task.rank)) return;  // a repeated assignment
    st.job = e.job_id;
    st.attempt = e.attempt;
    log(LogLevel::kInfo, st.link->node_id(), "task for " + e.job_id + " (attempt " + std::to_string(e.attempt) +
                                                 "): rank " + std::to_string(task.rank) + ", records [" +
                                                 std::to_string(task.shard.begin) + ", " +
                                                 std::to_string(task.shard.end) + "), from step " +
                                                 std::to_string(task.start_step));
    TrainerArgs args{task, e.job_id, st.link->node_id(), config.token, e.attempt, coordinator, context,
                     config.step_timeout};
    // Linked: a trainer dies with its worker actor (the exit on shutdown reaches it).
    st.trainers[task.rank] = self->spawn<caf::detached + caf::linked>(trainer_loop, args, caf::actor(self));
  };
  auto stop_all = [=] {
    auto& st = self->state;
    if (st.trainers.empty()) return;
    st.stopping = true;
    for (auto& [rank, trainer] : st.trainers) caf::anon_send(trainer, stop_atom::value);
  };
  return {
      [=](Inbound& in) {
        auto& st = self->state;
        const msg::Envelope& e = *in.envelope;
        const uint64_t before = st.link->registrations();
        if (st.link->on_message(e, Clock::now())) {
          if (st.link->registrations() > before && before > 0 && !st.trainers.empty()) {
            log(LogLevel::kWarn, st.link->node_id(), "registered again: stopping the tasks of the previous "
                                                     "coordinator session (it reassigns them)");
            st.next_tasks.clear();
            stop_all();
          }
          return;
        }
        if (e.get<msg::AssignTask>()) {
          if (st.job.empty()) {
            start(e);
          } else if (st.stopping) {
            st.next_tasks.push_back(e);
          } else if (e.job_id == st.job && e.attempt == st.attempt) {
            start(e);  // one more rank of the same job
          } else if (e.job_id == st.job && e.attempt > st.attempt) {
            stop_all();  // a newer attempt replaces the running one
            st.next_tasks.push_back(e);
          } else {
            st.link->send(msg::make_error(e, st.link->node_id(), failed_precondition("busy with " + st.job)));
          }
          return;
        }
        if (e.get<msg::StopJob>()) {
          if (!st.trainers.empty() && e.job_id == st.job && e.attempt >= st.attempt) stop_all();
          auto& q = st.next_tasks;
          q.erase(std::remove_if(q.begin(), q.end(),
                                 [&](const msg::Envelope& t) { return t.job_id == e.job_id && t.attempt <= e.attempt; }),
                  q.end());
          return;
        }
        if (auto* err = e.get<msg::Error>()) {
          log(LogLevel::kWarn, st.link->node_id(), "coordinator: " + err->message);
        }
      },
      [=](done_atom, const std::string& job, uint32_t rank) {
        auto& st = self->state;
        if (job != st.job) return;
        st.trainers.erase(rank);
        if (!st.trainers.empty()) return;
        st.job.clear();
        st.stopping = false;
        std::vector<msg::Envelope> next = std::move(st.next_tasks);
        st.next_tasks.clear();
        for (const auto& task : next) {
          if (st.job.empty() || (task.job_id == st.job && task.attempt == st.attempt)) start(task);
        }
      },
      [=](tick_atom) {
        auto& st = self->state;
        Status s = st.link->on_tick(Clock::now(), !st.job.empty());
        if (!s.is_ok()) {
          log(LogLevel::kError, "worker", s.message());
          exit->fail(3);
          return;
        }
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
  std::optional<transport::Context> own;
  transport::Context& context = shared ? *shared : own.emplace();
  auto to_coordinator = transport::Socket::connect(context, config.coordinator);
  if (!to_coordinator.is_ok()) {
    log(LogLevel::kError, "worker", to_coordinator.status().message());
    return 2;
  }
  const msg::Register registration = actors::registration(msg::NodeRole::kWorker, config.name);

  caf::actor_system_config cfg;
  add_custody_types(cfg);
  caf::actor_system system{cfg};
  auto exit = std::make_shared<NodeExit>();
  BridgeOptions bridge;
  bridge.channel = Channel::kCoordinator;
  bridge.node_name = "worker";
  bridge.limits.max_bytes = config.max_message_bytes;
  SocketPort coordinator = spawn_socket_bridge(system, std::move(to_coordinator).value(), bridge);
  auto actor = system.spawn(worker_actor, coordinator, registration, config, &context, exit);
  coordinator.start(actor);
  wait_for_stop(stop, *exit);
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(coordinator.actor(), caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  return exit->code;
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
