// The coordinator node: one ROUTER socket (nodes and CLI clients connect to it), its
// bridge actor, the coordinator actor around CoordinatorState, the serving actor
// (actors/serving_actor.h: predict requests are handed to it, so model traffic does not
// queue behind scheduling, nor scheduling behind it), the store's backup actor
// (actors/store_backup.h: storeBackup, copied beside the training) and reader
// (actors/store_reader.h: storeQuery, lineage for a CLI on any machine), and the records
// server (data shipping's fetchRecords), and the attribution actor (actors/attribution_actor.h:
// custody attribute, seconds of TracIn scoring that nothing else waits behind).
#include <sys/stat.h>

#include <cstdio>
#include <random>

#include "core/files.h"
#include "core/hash.h"
#include "core/signing.h"
#include "storage/notary.h"

#include "actors/coordinator_state.h"
#include "actors/http_listener.h"
#include "actors/attribution_actor.h"
#include "actors/records_server.h"
#include "actors/serving_actor.h"
#include "actors/store_backup.h"
#include "actors/store_reader.h"
#include "storage/custody_store.h"
#include "storage/store_key.h"
#include "storage/lineage_vocabulary.h"
#include "actors/node_runtime.h"
#include "actors/runtime_common.h"
#include "actors/socket_bridge.h"

namespace custody::actors {
namespace {

// The actors that read or copy the store beside the coordinator's own work.
struct StoreActors {
  caf::actor backup;  // storeBackup
  caf::actor reader;  // storeQuery
  caf::actor records;  // fetchRecords (data shipping): the records kept at admission
  caf::actor attribution;  // attribute (TracIn, actors/attribution_actor.h): seconds of scoring
};

struct CoordinatorActorState {
  std::shared_ptr<CoordinatorState> logic;
  SocketPort port;
  caf::actor serving;
  StoreActors store_actors;
  SteadyClock::time_point next_head;  // when the head file gets its next line
  uint64_t recoveries_counted = 0;    // of logic->recoveries_total(), in the metrics
};

// Appends one signed-heads document to the head file and syncs it: the copy of the
// history that lives outside the store.
Status append_heads(const std::string& path, const CoordinatorState& logic) {
  CUSTODY_ASSIGN_OR_RETURN(auto heads, logic.signed_heads());
  return append_line_synced(path, heads.dump());
}

// The coordinator's gauges, refreshed each tick: jobs by state, and the recoveries counter.
void update_job_metrics(MetricsRegistry* m, const CoordinatorState& logic, uint64_t& recoveries_counted) {
  if (!m) return;
  const auto counts = logic.jobs_by_state();
  using msg::JobState;
  for (auto state : {JobState::kPending, JobState::kStarting, JobState::kRunning, JobState::kCompleted,
                     JobState::kFailed, JobState::kCancelled}) {
    auto it = counts.find(state);
    m->gauge("custody_jobs", "Jobs the coordinator holds, by state (finished ones until evicted).",
             {{"state", msg::to_string(state)}})
        .set(it == counts.end() ? 0 : static_cast<double>(it->second));
  }
  const uint64_t now = logic.recoveries_total();
  m->counter("custody_job_recoveries_total", "Rollbacks of jobs to a checkpoint after a failure.")
      .add(static_cast<double>(now - recoveries_counted));
  recoveries_counted = now;
}

caf::behavior coordinator_actor(caf::stateful_actor<CoordinatorActorState>* self, CoordinatorOptions options,
                                SocketPort port, std::shared_ptr<CoordinatorState> logic, caf::actor serving,
                                StoreActors store_actors, std::string head_file, std::chrono::milliseconds head_interval,
                                MetricsRegistry* metrics, std::shared_ptr<WorkerDirectory> workers) {
  self->state.logic = std::move(logic);
  self->state.next_head = SteadyClock::now() + head_interval;
  self->state.port = port;
  self->state.serving = serving;
  self->state.store_actors = store_actors;
  self->delayed_send(self, std::max(std::chrono::milliseconds(50), options.heartbeat_interval / 2),
                     tick_atom::value);
  auto period = std::max(std::chrono::milliseconds(50), options.heartbeat_interval / 2);
  auto send_all = [self](Outbox out) {
    for (auto& o : out) self->state.port.send(o.peer, std::move(o.envelope));
  };
  return {
      [=](Inbound& in) {
        if (in.envelope->get<msg::FetchRecords>()) {  // a worker's own connection: no node report
          if (Status s = self->state.logic->authorize_fetch(*in.envelope, in.identity); !s.is_ok()) {
            self->state.port.send(in.peer, msg::make_error(*in.envelope, "coordinator", s));
          } else {
            self->send(self->state.store_actors.records, std::move(in));
          }
          return;
        }
        if (in.envelope->get<msg::StoreBackup>()) {  // admin only (access_policy.h)
          auto caller = self->state.logic->authorize(*in.envelope);
          if (!caller.is_ok()) {
            self->state.port.send(in.peer, msg::make_error(*in.envelope, "coordinator", caller.status()));
            return;
          }
          self->send(self->state.store_actors.backup, std::move(in));
          return;
        }
        if (const auto* query = in.envelope->get<msg::StoreQuery>()) {  // by role and query name
          auto caller = self->state.logic->authorize(*in.envelope, in.identity);
          Status allowed = caller.is_ok() ? Status::ok() : caller.status();
          if (caller.is_ok() && !may_query(caller->role, query->query)) {
            allowed = Status(ErrorCode::kPermissionDenied,
                             std::string("principal ") + caller->principal + " (" + to_string(caller->role) +
                                 ") may not ask the store for '" + query->query.substr(0, 40) +
                                 "'; an auditor may (ask an admin for an auditor's credential)");
          }
          if (!allowed.is_ok()) {
            self->state.port.send(in.peer, msg::make_error(*in.envelope, "coordinator", allowed));
            return;
          }
          self->send(self->state.store_actors.reader, std::move(in));
          return;
        }
        // A worker's answer to the attribution actor's scoreRecords (its request id says so).
        if ((in.envelope->request_id & kScoringRequestBit) &&
            (in.envelope->get<msg::RecordScores>() || in.envelope->get<msg::Error>())) {
          auto caller = self->state.logic->authorize(*in.envelope, in.identity);
          if (caller.is_ok()) self->send(self->state.store_actors.attribution, std::move(in));
          return;
        }
        const bool predict = in.envelope->get<msg::Predict>(), attribute = in.envelope->get<msg::Attribute>();
        if (attribute) workers->set(self->state.logic->live_workers());
        if (predict || attribute) {  // to the serving actor, or the attribution actor
          auto caller = self->state.logic->authorize(*in.envelope, in.identity);
          if (!caller.is_ok()) {
            self->state.port.send(in.peer, msg::make_error(*in.envelope, "coordinator", caller.status()));
            return;
          }
          if (options.security != Security::kNone) {  // the key or token, not the request, names the caller
            auto copy = std::make_shared<msg::Envelope>(*in.envelope);
            if (predict) std::get<msg::Predict>(copy->body).principal = caller->principal;
            if (attribute) std::get<msg::Attribute>(copy->body).principal = caller->principal;
            in.envelope = std::move(copy);
          }
          self->send(predict ? self->state.serving : self->state.store_actors.attribution, std::move(in));
          return;
        }
        send_all(self->state.logic->handle(in.peer, *in.envelope, SteadyClock::now(), in.identity));
      },
      [=](LocalCall& call) {
        // HTTP calls: the bearer token proves the caller; then the same serving path.
        bool authenticated = false;
        auto caller = self->state.logic->access_control()->authorize_bearer(*call.envelope, &authenticated);
        if (!caller.is_ok()) {
          log(LogLevel::kWarn, "coordinator", "refused an HTTP call: " + caller.status().message());
          ServingAnswer refused;
          refused.status = caller.status();
          refused.authenticated = authenticated;
          call.answer->set_value(std::move(refused));
          return;
        }
        if (options.security != Security::kNone) {
          auto copy = std::make_shared<msg::Envelope>(*call.envelope);
          std::get<msg::Predict>(copy->body).principal = caller->principal;
          call.envelope = std::move(copy);
        }
        self->send(self->state.serving, std::move(call));
      },
      [=](tick_atom) {
        const auto now = SteadyClock::now();
        if (!head_file.empty() && now >= self->state.next_head) {
          Status s = append_heads(head_file, *self->state.logic);
          if (!s.is_ok()) log(LogLevel::kError, "coordinator", "could not append to the head file: " + s.message());
          self->state.next_head = now + head_interval;
        }
        send_all(self->state.logic->tick(now));
        workers->set(self->state.logic->live_workers());  // the attribution actor's, for its next round
        update_job_metrics(metrics, *self->state.logic, self->state.recoveries_counted);
        self->delayed_send(self, period, tick_atom::value);
      },
  };
}

// Reads the admin token from its file, or creates both; makes sure the store knows it.
Status bootstrap_admin(storage::CustodyStore* store, const std::string& path) {
  if (!store) return failed_precondition("--auth keeps principals in the custody store: drop --no-store");
  std::string token;
  if (std::ifstream in{path}) {
    std::getline(in, token);
  } else {
    CUSTODY_ASSIGN_OR_RETURN(auto made, random_token());
    token = made;
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp);
      out << token << "\n";
      if (!out) return unavailable("cannot write the admin token to '" + path + "'");
    }
    chmod(tmp.c_str(), 0600);
    std::rename(tmp.c_str(), path.c_str());
    log(LogLevel::kInfo, "coordinator", "created the admin token in " + path + " (keep it secret)");
  }
  if (token.size() < 32) return invalid_argument("'" + path + "' does not hold a token");
  CUSTODY_ASSIGN_OR_RETURN(auto known, store->entity(storage::lineage::credential_id(sha256_hex(token))));
  if (known) return Status::ok();
  return CustodyRecorder(store).principal_added("admin", "admin", sha256_hex(token), "coordinator start");
}

// Reads the admin's CurveZMQ key pair from its file, or creates both; makes sure the store
// knows its public key.
Status bootstrap_admin_key(storage::CustodyStore* store, const std::string& path) {
  if (!store) return failed_precondition("security = \"curve\" keeps principals in the custody store: drop --no-store");
  bool created = false;
  CUSTODY_ASSIGN_OR_RETURN(auto admin, transport::load_or_create_key_file(path, "admin", &created));
  if (created) log(LogLevel::kInfo, "coordinator", "created the admin's key pair in " + path + " (keep it secret)");
  const std::string hash = key_credential_sha256(admin.keys.public_key);
  CUSTODY_ASSIGN_OR_RETURN(auto known, store->entity(storage::lineage::credential_id(hash)));
  if (known) return Status::ok();
  return CustodyRecorder(store).principal_added("admin", "admin", hash, "coordinator start", "curve",
                                                admin.keys.public_key);
}

std::string beside_store(const std::string& store, const std::string& suffix) {
  std::string base = store;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + suffix;
}

// How the HTTP listener's threads call into the actors: a LocalCall to the coordinator
// actor, then a wait for its promise (at most `timeout`; then the caller gets 503).
ServingDispatch local_dispatch(caf::actor coordinator, std::chrono::milliseconds timeout) {
  return [coordinator, timeout](ServingCallKind kind, msg::Envelope envelope) {
    auto promise = std::make_shared<std::promise<ServingAnswer>>();
    auto answered = promise->get_future();
    caf::anon_send(coordinator, LocalCall{kind, std::make_shared<const msg::Envelope>(std::move(envelope)), promise});
    promise.reset();  // the actors hold it now: if they drop the call, the future says so
    ServingAnswer a;
    if (answered.wait_for(timeout) != std::future_status::ready) {
      a.status = unavailable("the coordinator did not answer within " + std::to_string(timeout.count()) +
                             " ms; try again");
      return a;
    }
    try {
      return answered.get();
    } catch (const std::future_error&) {
      a.status = unavailable("the coordinator is shutting down; try again when it is back");
      return a;
    }
  };
}

}  // namespace

int run_coordinator(const CoordinatorNodeConfig& config, const std::atomic<bool>& stop) {
  // The metrics outlive everything that updates them (declared first).
  MetricsRegistry metrics;
  // The context outlives the actor system, and so every socket (STACK.md, pitfall 5).
  transport::Context context;
  const bool curve = config.options.security == Security::kCurve;
  if (start_failed("coordinator", check_http_options(config.http, config.options.security))) return 2;
  std::unique_ptr<storage::CustodyStore> store;
  if (!config.store.empty()) {
    auto opened = storage::CustodyStore::open(config.store, storage::OpenMode::kReadWrite);
    if (!opened.is_ok()) {
      log(LogLevel::kError, "coordinator", opened.status().message());
      return 2;
    }
    store = std::move(opened).value();
    store->set_metrics(&metrics);
    log(LogLevel::kInfo, "coordinator",
        "custody store at " + config.store +
            (config.store_is_default ? " (the default; --store DIR chooses another, --no-store runs without one)"
                                     : ""));
    // The store key: outside the store, like the signing key; it seals every tensor written
    // and opens every tensor read (restores, resumes, serving, exports).
    const std::string key_file =
        config.store_key.empty() ? storage::default_store_key_path(config.store) : config.store_key;
    bool created = false;
    auto keys = storage::attach_store_keys(*store, key_file, &created);
    if (!keys.is_ok()) {
      log(LogLevel::kError, "coordinator", "the store key: " + keys.status().message());
      return 2;
    }
    log(LogLevel::kInfo, "coordinator",
        std::string(created ? "created" : "loaded") + " the store key " + keys.value()->current_version() + " at " +
            key_file + " (it seals the checkpoint tensors; the store and its backups do not hold it)" +
            (keys.value()->rotating() ? "; a rekey has not finished: run `custody store rekey` with the "
                                        "coordinator stopped"
                                      : ""));
  } else if (config.options.security != Security::kNone) {
    log(LogLevel::kError, "coordinator",
        "a secured coordinator keeps its principals in the custody store: drop --no-store (or give --store DIR)");
    return 2;
  } else {
    // Loud, and more than once in the log's first lines: nothing this coordinator does can
    // be answered for afterwards.
    for (const char* line :
         {"RUNNING WITHOUT A CUSTODY STORE (--no-store): NOTHING IS RECORDED",
          "  no lineage, no checkpoints, no audit log, no usage records; a failed job restarts from its "
          "beginning and no job survives a coordinator restart",
          "  drop --no-store to record into the default store, or give --store DIR"}) {
      log(LogLevel::kWarn, "coordinator", line);
    }
  }
  // The notary's key: outside the store, so that a copy of the store is not a copy of it.
  std::unique_ptr<SigningKey> key;
  std::string key_file;
  if (store) {
    key_file = config.signing_key.empty() ? beside_store(config.store, ".signing-key") : config.signing_key;
    bool created = false;
    auto loaded = SigningKey::load_or_create(key_file, &created);
    if (!loaded.is_ok()) {
      log(LogLevel::kError, "coordinator", "the signing key: " + loaded.status().message());
      return 2;
    }
    key = std::make_unique<SigningKey>(std::move(loaded).value());
    const std::string pub = key_file + ".pub";
    if (Status s = write_file_atomically(pub, key->public_key_pem(), 0644); !s.is_ok()) {
      log(LogLevel::kWarn, "coordinator", "could not write " + pub + ": " + s.message());
    }
    log(LogLevel::kInfo, "coordinator",
        std::string(created ? "created" : "loaded") + " the signing key " + key->key_id() + " at " + key_file +
            " (public key " + key->public_key_hex() + ", also in " + pub + ")");
  }
  if (config.options.security == Security::kToken && !config.admin_token_file.empty()) {
    if (start_failed("coordinator", bootstrap_admin(store.get(), config.admin_token_file))) return 2;
  }
  if (curve && !config.admin_key_file.empty()) {
    if (start_failed("coordinator", bootstrap_admin_key(store.get(), config.admin_key_file))) return 2;
  }
  // The state machine reads the credentials now: the authenticator asks it from the first
  // handshake on.
  auto logic = std::make_shared<CoordinatorState>(config.options, store.get(), config.store, key.get());
  if (config.options.security != Security::kNone) {
    // Serving with credentials it could not read would strand every node: stop instead.
    if (start_failed("coordinator", logic->access_control()->load())) return 2;
  }
  transport::SocketOptions socket_options;
  socket_options.max_message_bytes = static_cast<int64_t>(config.max_message_bytes) * 4;
  if (curve) {
    const std::string curve_file = config.key_file.empty() ? beside_store(config.store, ".coordinator-key") : config.key_file;
    bool created = false;
    auto identity = transport::load_or_create_key_file(curve_file, "", &created);
    if (!identity.is_ok()) {
      log(LogLevel::kError, "coordinator", "the coordinator's CurveZMQ key: " + identity.status().message());
      return 2;
    }
    socket_options.curve_secret_key = identity->keys.secret_key;
    std::shared_ptr<AccessControl> access = logic->access_control();
    Status s = context.start_authenticator(
        [access](const std::string& public_key, const std::string&) { return access->credential_of_key(public_key); });
    if (start_failed("coordinator", s)) return 2;
    log(LogLevel::kInfo, "coordinator",
        std::string(created ? "created" : "loaded") + " the coordinator's CurveZMQ key pair at " + curve_file +
            "; its public key (nodes' coordinator_key, the CLI's --coordinator-key) is " + identity->keys.public_key +
            " (also in " + curve_file + ".pub)");
  }
  auto socket = transport::Socket::bind(context, config.listen, socket_options);
  if (!socket.is_ok()) {
    log(LogLevel::kError, "coordinator", socket.status().message());
    return 2;
  }
  const std::string endpoint = socket.value()->endpoint();
  caf::actor_system_config cfg;
  add_custody_types(cfg);
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system system{cfg};
  BridgeOptions bridge;
  bridge.channel = Channel::kPeers;
  bridge.node_name = "coordinator";
  bridge.limits.max_bytes = config.max_message_bytes;
  bridge.metrics = &metrics;
  SocketPort port = spawn_socket_bridge(system, std::move(socket).value(), bridge);
  if (config.options.security == Security::kToken) {
    log(LogLevel::kInfo, "coordinator", "every request needs a token (security = \"token\"; tokens travel in clear)");
  } else if (curve) {
    log(LogLevel::kInfo, "coordinator", "every connection is CurveZMQ, every caller proven by key (security = \"curve\")");
  }
  // The store outlives the actor system (declared before it), so no actor sees it closed.
  // Both write the store (synced RocksDB batches): blocking I/O, so each gets its own thread.
  auto serving =
      spawn_serving_actor(system, port, store.get(), config.serving, key.get(), &metrics);
  auto stop_early = [&] {  // before the coordinator actor starts
    for (const auto& a : {port.actor(), serving}) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    system.await_all_actors_done();
    return 2;
  };
  // After a restart: the jobs that had not ended, the known nodes and their ids.
  if (Status s = logic->restore(SteadyClock::now()); !s.is_ok()) {
    log(LogLevel::kError, "coordinator", "could not restore the jobs from the custody store: " + s.message());
    return stop_early();
  }
  if (Status s = logic->signing_key_in_use(key_file); !s.is_ok()) {
    log(LogLevel::kError, "coordinator", "could not record the signing key: " + s.message());
  }
  if (!config.head_file.empty()) {
    if (Status s = append_heads(config.head_file, *logic); !s.is_ok()) {
      log(LogLevel::kError, "coordinator", "cannot write the head file: " + s.message());
      return stop_early();
    }
    log(LogLevel::kInfo, "coordinator", "appending signed heads to " + config.head_file + " every " +
                                            std::to_string(config.head_interval.count()) + " ms");
  }
  auto workers = std::make_shared<WorkerDirectory>();  // the live workers, for attribution's scoring
  AttributionOptions attribution;
  attribution.worker_timeout = config.attribution_worker_timeout;
  const StoreActors store_actors{spawn_store_backup(system, port, store.get(), config.store, &stop),
                                 spawn_store_reader(system, port, store.get()),
                                 spawn_records_server(system, port, config.options.records_dir),
                                 spawn_attribution(system, port, store.get(), key.get(), workers, attribution)};
  auto actor = system.spawn<caf::detached>(coordinator_actor, config.options, port, logic, serving, store_actors,
                                           config.head_file, config.head_interval, &metrics, workers);
  auto stop_actors = [&] {
    for (const auto& a : {port.actor(), actor, serving, store_actors.backup, store_actors.reader,
                          store_actors.records, store_actors.attribution}) {
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
    system.await_all_actors_done();
  };
  port.start(actor);
  log(LogLevel::kInfo, "coordinator", "listening on " + endpoint);
  if (!config.port_file.empty()) {
    // Written via a temporary file and a rename, so a reader never sees half of it.
    std::string tmp = config.port_file + ".tmp";
    { std::ofstream(tmp) << endpoint << "\n"; }
    std::rename(tmp.c_str(), config.port_file.c_str());
  }
  std::unique_ptr<HttpListener> http;
  MetricsListener metrics_listener([&metrics] { return metrics.render(); });
  if (!config.http.listen.empty() || !config.metrics_listen.empty()) {
    Status s = Status::ok();
    if (!config.http.listen.empty()) {
      http = std::make_unique<HttpListener>(config.http, config.options.security, config.serving.max_rows,
                                            local_dispatch(actor, config.http.call_timeout),
                                            [&metrics] { return metrics.render(); });
      s = http->start();
    }
    if (s.is_ok() && !config.metrics_listen.empty()) {
      s = metrics_listener.start(config.metrics_listen, config.metrics_port_file);
      if (s.is_ok()) {
        log(LogLevel::kInfo, "coordinator", "Prometheus metrics at http://" + metrics_listener.address() + "/metrics");
      }
    }
    if (!s.is_ok()) {
      log(LogLevel::kError, "coordinator", "the HTTP listener: " + s.message());
      stop_actors();
      return 2;
    }
  }
  if (http) {
    log(LogLevel::kInfo, "coordinator",
        std::string("serving the Open Inference Protocol and POST /predict on ") + (http->tls() ? "https://" : "http://") +
            http->address());
    if (!config.http.port_file.empty()) {
      if (Status w = write_file_atomically(config.http.port_file, http->address() + "\n", 0644); !w.is_ok()) {
        log(LogLevel::kWarn, "coordinator", "could not write " + config.http.port_file + ": " + w.message());
      }
    }
  }
  NodeExit exit;
  wait_for_stop(stop, exit);
  log(LogLevel::kInfo, "coordinator", "shutting down");
  metrics_listener.stop();
  if (http) http->stop();  // its calls in progress are answered before the actors go
  stop_actors();
  return exit.code;
}

}  // namespace custody::actors
