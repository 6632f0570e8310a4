#include "actors/serving_actor.h"

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "actors/outgoing.h"
#include "actors/custody_recorder.h"
#include "actors/serving_state.h"

namespace custody::actors {
namespace {

using flush_atom = caf::atom_constant<caf::atom("flush")>;

// What serving answered, for the metrics: calls by route and result, rows predicted,
// and each call's time in the serving actor (its share of the group's synced write
// included).
class ServingMetrics {
 public:
  explicit ServingMetrics(MetricsRegistry* m) : m_(m) {}
  void record(const char* route, const Status& s, uint32_t rows, SteadyClock::time_point started) {
    if (!m_) return;
    const std::string result = s.is_ok() ? "ok" : error_label(s.code());
    m_->counter("custody_prediction_calls_total", "Prediction calls served, by route (zmq, http) and result.",
                {{"route", route}, {"result", result}})
        .add();
    if (!s.is_ok()) return;
    m_->counter("custody_predictions_total", "Rows predicted (and recorded) by successful calls.").add(rows);
    m_->histogram("custody_prediction_duration_seconds",
                  "Time to answer one prediction call: checks, evaluation and its usage record.", latency_buckets(),
                  {{"route", route}})
        .observe(std::chrono::duration<double>(SteadyClock::now() - started).count());
  }
  void group(size_t calls) {
    if (!m_) return;
    m_->histogram("custody_prediction_group_calls",
                  "Calls recorded together by one synced write of the usage log (group commit).",
                  {1, 2, 4, 8, 16, 32, 64, 128, 256})
        .observe(static_cast<double>(calls));
  }

 private:
  MetricsRegistry* m_;
};

// A call evaluated and waiting for its group's write; it answers either a socket peer
// (ZeroMQ) or a promise (HTTP).
struct Waiting {
  ServingState::PreparedCall call;
  std::shared_ptr<const msg::Envelope> request;
  std::optional<std::string> peer;                       // ZeroMQ
  std::shared_ptr<std::promise<ServingAnswer>> promise;  // HTTP
  SteadyClock::time_point started;
};

// A group of calls on its way to the usage writer and back: shared, so that the message
// copies a pointer, not the calls.
struct UsageGroup {
  std::shared_ptr<std::vector<Waiting>> calls;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, UsageGroup& x) {
  (void)x;  // local only (never serialized): the name is all CAF's inspection needs
  return f(caf::meta::type_name("usage_group"));
}

const char* route(const Waiting& w) { return w.peer ? "zmq" : "http"; }

// Answers one call that will not be recorded: refused before evaluation, or its group's
// write failed.
void answer_error(SocketPort& port, ServingMetrics& metrics, const Waiting& w, const Status& s) {
  const auto& request = std::get<msg::Predict>(w.request->body);
  metrics.record(route(w), s, request.rows, w.started);
  if (w.peer) {
    port.send(*w.peer, msg::make_error(*w.request, "coordinator", s));
  } else {
    ServingAnswer answer;
    answer.status = s;
    w.promise->set_value(std::move(answer));
  }
}

// Answers one call with its prediction (recorded first, unless recording is off).
void answer_ok(SocketPort& port, ServingMetrics& metrics, Waiting& w) {
  const auto& request = std::get<msg::Predict>(w.request->body);
  metrics.record(route(w), Status::ok(), request.rows, w.started);
  if (w.peer) {
    port.send(*w.peer, msg::reply_to(*w.request, "coordinator", std::move(w.call.reply)));
  } else {
    ServingAnswer answer;
    answer.prediction = std::move(w.call.reply);
    w.promise->set_value(std::move(answer));
  }
}

// The usage writer: writes a group's usage records in one synced batch, answers every
// call of it, and tells the serving actor it may send the next group. Its own recorder
// (the store's writes are serialized by the store; ServingState is the serving actor's).
struct UsageWriterState {
  std::unique_ptr<CustodyRecorder> recorder;
  ServingOptions options;
  SocketPort port;
  std::unique_ptr<ServingMetrics> metrics;
};

caf::behavior usage_writer(caf::stateful_actor<UsageWriterState>* self, SocketPort port,
                           storage::CustodyStore* store, ServingOptions options, const SigningKey* key,
                           MetricsRegistry* metrics) {
  self->state.recorder = std::make_unique<CustodyRecorder>(store, key);
  self->state.options = options;
  self->state.port = port;
  self->state.metrics = std::make_unique<ServingMetrics>(metrics);
  return {
      [=](UsageGroup& group) -> done_atom {
        auto& st = self->state;
        std::vector<Waiting>& calls = *group.calls;
        std::vector<ServedCall> served;
        served.reserve(calls.size());
        for (Waiting& w : calls) served.push_back(std::move(w.call.served));
        auto receipts = st.recorder->predictions_served(served, st.options.receipts);
        st.metrics->group(calls.size());
        for (size_t i = 0; i < calls.size(); ++i) {
          if (!receipts.is_ok()) {
            answer_error(st.port, *st.metrics, calls[i], receipts.status());
            continue;
          }
          calls[i].call.reply.receipt = std::move(receipts.value()[i]);
          answer_ok(st.port, *st.metrics, calls[i]);
        }
        return done_atom::value;
      },
  };
}

struct ServingActorState {
  std::unique_ptr<ServingState> logic;
  SocketPort port;
  std::unique_ptr<ServingMetrics> metrics;
  caf::actor writer;
  std::vector<Waiting> group;  // evaluated, waiting for the writer
  bool writing = false;        // a group is with the writer
  bool recording = true;       // ServingOptions::record_usage
};

// Hands the waiting calls to the writer, unless it is still writing the previous group
// (then they go when it is done, joined by whatever arrives meanwhile).
void flush(caf::stateful_actor<ServingActorState>* self) {
  auto& st = self->state;
  if (st.writing || st.group.empty()) return;
  st.writing = true;
  UsageGroup group{std::make_shared<std::vector<Waiting>>(std::move(st.group))};
  st.group.clear();
  self->request(st.writer, caf::infinite, std::move(group)).then([=](done_atom) {
    self->state.writing = false;
    // Calls that queued while the writer synced are in the group (or in the mailbox,
    // ahead of this flush): one more write for all of them.
    if (!self->state.group.empty()) self->send(self, flush_atom::value);
  });
}

// Evaluates a call and adds it to the group, or answers it at once if it is refused.
void take(caf::stateful_actor<ServingActorState>* self, Waiting w) {
  auto& st = self->state;
  if (st.group.size() >= kMaxWaitingCalls) {
    answer_error(st.port, *st.metrics, w,
                 unavailable(std::to_string(st.group.size()) +
                             " calls are waiting for the usage log's write; retry in a moment"));
    return;
  }
  const auto& request = std::get<msg::Predict>(w.request->body);
  auto prepared = st.logic->prepare(request);
  if (!prepared.is_ok()) {
    answer_error(st.port, *st.metrics, w, prepared.status());
    return;
  }
  w.call = std::move(prepared).value();
  if (!st.recording) {  // --no-usage-recording: nothing to wait for
    answer_ok(st.port, *st.metrics, w);
    return;
  }
  st.group.push_back(std::move(w));
  // The flush is queued behind every call already waiting in the mailbox: they join.
  if (st.group.size() == 1 && !st.writing) self->send(self, flush_atom::value);
}

caf::behavior serving_actor(caf::stateful_actor<ServingActorState>* self, SocketPort port,
                            storage::CustodyStore* store, ServingOptions options, const SigningKey* key,
                            MetricsRegistry* metrics) {
  self->state.logic = std::make_unique<ServingState>(store, options, key);
  self->state.port = port;
  self->state.metrics = std::make_unique<ServingMetrics>(metrics);
  self->state.recording = options.record_usage;
  // Linked: the writer ends with the serving actor. Its own thread, for the synced writes.
  self->state.writer =
      self->spawn<caf::detached + caf::linked>(usage_writer, port, store, options, key, metrics);
  return {
      [=](Inbound& in) {
        Waiting w;
        w.started = SteadyClock::now();
        w.request = in.envelope;
        w.peer = in.peer;
        if (!in.envelope->get<msg::Predict>()) {
          const Status refused = invalid_argument(std::string("serving answers predict, not '") +
                                                  msg::body_name(in.envelope->body) + "'");
          self->state.port.send(in.peer, msg::make_error(*in.envelope, "coordinator", refused));
          return;
        }
        take(self, std::move(w));
      },
      [=](LocalCall& call) {  // from the HTTP listener, authorized by the coordinator actor
        const auto& request = std::get<msg::Predict>(call.envelope->body);
        if (call.kind == ServingCallKind::kDescribe) {
          ServingAnswer answer;
          auto info = self->state.logic->describe(request.model);
          if (info.is_ok()) answer.model = std::move(info).value();
          else answer.status = info.status();
          call.answer->set_value(std::move(answer));
          return;
        }
        Waiting w;
        w.started = SteadyClock::now();
        w.request = call.envelope;
        w.promise = call.answer;
        take(self, std::move(w));
      },
      [=](flush_atom) { flush(self); },
  };
}

}  // namespace

caf::actor spawn_serving_actor(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                               ServingOptions options, const SigningKey* key, MetricsRegistry* metrics) {
  // Its own thread, so that model traffic never waits behind the coordinator's work.
  return system.spawn<caf::detached>(serving_actor, port, store, options, key, metrics);
}

}  // namespace custody::actors
