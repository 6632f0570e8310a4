#include "actors/attribution_actor.h"

#include <deque>

#include "actors/custody_recorder.h"
#include "core/log.h"
#include "storage/attribution.h"

namespace custody::actors {
namespace {

constexpr char kSelf[] = "coordinator";

struct Context {
  caf::blocking_actor* self;
  SocketPort port;
  storage::CustodyStore* store;
  std::shared_ptr<const WorkerDirectory> workers;
  AttributionOptions options;
  CustodyRecorder* recorder;
  std::deque<Inbound>* queued;  // requests that came while one was being scored
  bool* stopping;
  uint64_t* next_request_id;
};

// Sends the round's requests and waits for its answers (at most options.worker_timeout;
// ranges of workers declared dead fail at once). Requests that arrive meanwhile wait.
void gather(Context& c, ScoringRound& round) {
  for (auto& o : round.requests()) c.port.send(o.peer, std::move(o.envelope));
  const auto deadline = SteadyClock::now() + c.options.worker_timeout;
  while (!round.done() && !*c.stopping) {
    if (SteadyClock::now() >= deadline) {
      round.fail_pending("it did not answer within " + std::to_string(c.options.worker_timeout.count()) + " ms");
      break;
    }
    c.self->receive(
        [&](Inbound& in) {
          if (in.envelope->get<msg::Attribute>()) {
            c.queued->push_back(std::move(in));
          } else {
            round.on_reply(in.peer, *in.envelope);  // false: a late answer of an earlier round
          }
        },
        [&](caf::exit_msg&) { *c.stopping = true; },
        caf::after(std::chrono::milliseconds(200)) >> [] {});
    if (c.workers) round.forget_gone(c.workers->get());
  }
}

Result<msg::AttributionReply> answer(Context& c, const msg::Attribute& m) {
  if (!c.store) {
    return failed_precondition(
        "this coordinator runs without a custody store (--store): it has no runs to attribute");
  }
  if (m.principal.empty()) return invalid_argument("an attribution needs a caller (principal)");
  if (m.prediction_id.empty() == m.self_influence.empty()) {
    return invalid_argument(
        "name either a prediction to attribute or a model for --self-influence, not both");
  }
  if (m.top == 0 || m.top > 10000)
    return invalid_argument("--top must be in [1, 10000]; got " + std::to_string(m.top));
  storage::AttributionRequest r;
  r.prediction_id = m.prediction_id;
  r.inputs = m.inputs;
  r.rows = m.rows;
  r.features = m.features;
  r.batch_rows = m.batch_rows;
  r.label = m.label;
  r.self_influence_model = m.self_influence;
  r.top = m.top;
  r.threads = c.options.threads;
  CUSTODY_ASSIGN_OR_RETURN(storage::AttributionQuestion q, storage::prepare_attribution(*c.store, r));
  ScoringRound round(q, c.workers ? c.workers->get() : std::vector<LiveWorker>{}, *c.next_request_id,
                     m.in_coordinator ? "the caller asked for it (--in-coordinator)" : "");
  *c.next_request_id += 1024;
  gather(c, round);
  if (*c.stopping) return unavailable("the coordinator is shutting down; ask again when it is back");
  storage::json scored_by;
  CUSTODY_ASSIGN_OR_RETURN(RangeRanking merged, round.finish(c.options.threads, &scored_by));
  storage::json result = storage::answer_attribution(q, merged);
  result["scored_by"] = std::move(scored_by);
  AttributionMade made{m.principal, m.purpose, result};
  CUSTODY_ASSIGN_OR_RETURN(auto recorded, c.recorder->attribution_made(made));
  msg::AttributionReply reply;
  reply.usage_id = recorded.first;
  reply.receipt = recorded.second;
  result["usage_id"] = reply.usage_id;
  reply.json = result.dump();
  return reply;
}

void handle(Context& c, const Inbound& in) {
  const auto* request = in.envelope->get<msg::Attribute>();
  if (!request) return;  // a late answer of a round that is over
  auto reply = answer(c, *request);
  if (!reply.is_ok()) {
    log(LogLevel::kInfo, kSelf, "attribution refused: " + reply.status().message());
    c.port.send(in.peer, msg::make_error(*in.envelope, kSelf, reply.status()));
    return;
  }
  c.port.send(in.peer, msg::reply_to(*in.envelope, kSelf, std::move(reply).value()));
}

void attribution_loop(caf::blocking_actor* self, SocketPort port, storage::CustodyStore* store,
                      const SigningKey* key, std::shared_ptr<const WorkerDirectory> workers,
                      AttributionOptions options) {
  CustodyRecorder recorder(store, key);
  std::deque<Inbound> queued;
  bool stopping = false;
  uint64_t next_request_id = 1;
  Context c{self, port, store, std::move(workers), options, &recorder, &queued, &stopping, &next_request_id};
  while (!stopping) {
    if (!queued.empty()) {
      Inbound in = std::move(queued.front());
      queued.pop_front();
      handle(c, in);
      continue;
    }
    self->receive([&](Inbound& in) { handle(c, in); }, [&](caf::exit_msg&) { stopping = true; });
  }
}

}  // namespace

caf::actor spawn_attribution(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                             const SigningKey* key, std::shared_ptr<const WorkerDirectory> workers,
                             AttributionOptions options) {
  return system.spawn<caf::detached>(attribution_loop, port, store, key, std::move(workers), options);
}

}  // namespace custody::actors
