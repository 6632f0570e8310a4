#include "actors/serving_actor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "actors/outgoing.h"
#include "actors/custody_recorder.h"
#include "actors/serving_state.h"

namespace custody::actors {
namespace {

using flush_atom = caf::atom_constant<caf::atom("flush")>;
using group_written_atom = caf::atom_constant<caf::atom("grpwritten")>;
using group_wait_atom = caf::atom_constant<caf::atom("grpwait")>;

// A ZeroMQ caller that called within this window is expected to call again (group wait).
// Far longer than a busy caller's turn-around (about 0.1 to 2 ms here), short enough that
// a caller that stopped delays only the groups of the next few milliseconds, each by at
// most the group wait.
constexpr std::chrono::milliseconds kCallerActiveWindow{20};
// A group waits for at most this many expected calls. Waiting for every caller puts all of
// them in one convoy whose write and sync nobody overlaps: with 32 callers that was 0.92 of
// no wait at all, while groups of at most 16 take turns, one filling while the one before
// is written and synced (quiet machine, 32 clients of batch 1, three alternating runs:
// 9,117, 8,565 and 9,459 calls/s against 6,776, 7,642 and 6,540 without the cap).
constexpr size_t kMaxGroupWaitCalls = 16;

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
  // A group that waited for its expected callers: filled, or sent when the wait ran out.
  void group_wait(bool filled) {
    if (!m_) return;
    m_->counter("custody_prediction_group_waits_total",
                "Groups of recorded calls that waited for the callers expected to join them (group wait), "
                "by outcome: filled, or timed_out (sent with fewer).",
                {{"outcome", filled ? "filled" : "timed_out"}})
        .add();
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

// A group's write on its way to a syncer and back (local only, like UsageGroup).
struct GroupSync {
  uint64_t number = 0;
  std::shared_ptr<storage::PendingWrite> durable;
  Status status;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GroupSync& x) {
  (void)x;
  return f(caf::meta::type_name("group_sync"));
}

// A syncer: waits for one group's write to reach the disk, on a thread of its own, and
// tells the writer. Several wait at once: their syncs overlap in the disk's queue.
caf::behavior syncer(caf::event_based_actor* self) {
  return {
      [=](GroupSync& sync) {
        sync.status = sync.durable->wait();
        sync.durable.reset();
        self->send(caf::actor_cast<caf::actor>(self->current_sender()), std::move(sync));
      },
  };
}

// A group written, waiting for its sync.
struct WrittenGroup {
  uint64_t number = 0;
  std::shared_ptr<std::vector<Waiting>> calls;
  std::vector<std::string> receipts;
  std::optional<Status> synced;  // set when its sync is back (or its write failed): the answer
};

// The usage writer: writes each group's usage records in one batch (not yet synced: the
// next group's write need not wait for this one's sync), hands the sync to an idle syncer,
// and answers the group's calls once its records are on the disk, groups strictly in
// order: a group is answered only after every group before it was (their records come
// first in the log, so this one's proofs and receipts build on them). A failed sync fails
// its group and every group after it (their records chain on its records), and the store
// then refuses further writes (CustodyStore::write_deferred).
// It tells the serving actor when it can take the next group: as soon as a group is
// written, if a syncer is idle for that group's sync; else once one is. So one group at a
// time is being written, and calls that arrive meanwhile join the next group: the busier
// the writer or the slower the disk, the larger the groups, and each write's fixed cost
// (its audit record, the trees' and heads' entries, RocksDB's log write, the sync) is
// shared by more calls. Its own recorder (the store's writes are serialized by the store;
// ServingState is the serving actor's).
struct UsageWriterState {
  std::unique_ptr<CustodyRecorder> recorder;
  ServingOptions options;
  SocketPort port;
  std::unique_ptr<ServingMetrics> metrics;
  caf::actor_addr serving;  // an address, not a handle: the serving actor holds the writer
  std::vector<caf::actor> idle_syncers;
  std::deque<GroupSync> unsent;  // written, waiting for an idle syncer (at most one: see above)
  bool owe_written = false;      // the serving actor waits to hear it may send the next group
  uint64_t next_number = 0;
  std::deque<WrittenGroup> written;  // in order of number
  // Calls answered so far, read by the serving actor: those it sent and not yet answered
  // cannot be expected to call again (group wait).
  std::shared_ptr<std::atomic<uint64_t>> answered;
};

void answer_in_order(caf::stateful_actor<UsageWriterState>* self) {
  auto& st = self->state;
  while (!st.written.empty() && st.written.front().synced) {
    WrittenGroup& group = st.written.front();
    std::vector<Waiting>& calls = *group.calls;
    for (size_t i = 0; i < calls.size(); ++i) {
      if (!group.synced->is_ok()) {
        answer_error(st.port, *st.metrics, calls[i], *group.synced);
        continue;
      }
      calls[i].call.reply.receipt = std::move(group.receipts[i]);
      answer_ok(st.port, *st.metrics, calls[i]);
    }
    st.answered->fetch_add(calls.size(), std::memory_order_relaxed);
    st.written.pop_front();
  }
}

// Starts the syncs that have an idle syncer, then tells the serving actor it may send
// the next group if one is owed and a syncer is left for it.
void start_syncs(caf::stateful_actor<UsageWriterState>* self) {
  auto& st = self->state;
  while (!st.unsent.empty() && !st.idle_syncers.empty()) {
    self->send(st.idle_syncers.back(), std::move(st.unsent.front()));
    st.idle_syncers.pop_back();
    st.unsent.pop_front();
  }
  if (st.owe_written && st.unsent.empty() && !st.idle_syncers.empty()) {
    st.owe_written = false;
    if (auto serving = caf::actor_cast<caf::actor>(st.serving)) self->send(serving, group_written_atom::value);
  }
}

caf::behavior usage_writer(caf::stateful_actor<UsageWriterState>* self, SocketPort port,
                           storage::CustodyStore* store, ServingOptions options, const SigningKey* key,
                           MetricsRegistry* metrics, caf::actor_addr serving,
                           std::shared_ptr<std::atomic<uint64_t>> answered) {
  auto& st = self->state;
  st.answered = std::move(answered);
  st.recorder = std::make_unique<CustodyRecorder>(store, key);
  st.options = options;
  st.port = port;
  st.metrics = std::make_unique<ServingMetrics>(metrics);
  st.serving = serving;
  for (size_t i = 0; i < std::max<uint32_t>(1, options.syncs_in_flight); ++i) {
    st.idle_syncers.push_back(self->spawn<caf::detached + caf::linked>(syncer));
  }
  return {
      [=](UsageGroup& group) {
        auto& st = self->state;
        std::vector<Waiting>& calls = *group.calls;
        std::vector<ServedCall> served;
        served.reserve(calls.size());
        for (Waiting& w : calls) served.push_back(std::move(w.call.served));
        st.metrics->group(calls.size());
        WrittenGroup written;
        written.number = st.next_number++;
        written.calls = group.calls;
        Result<CustodyRecorder::PendingPredictions> pending = internal_error("not written");
        try {
          pending = st.recorder->predictions_written(std::move(served), st.options.receipts);
        } catch (const std::exception& e) {  // as in take(): the group fails, the writer goes on
          pending = internal_error(std::string("the usage records could not be written: ") + e.what());
        }
        if (!pending.is_ok()) {
          written.synced = pending.status();  // answered with the error, in its turn
        } else {
          written.receipts = std::move(pending.value().receipts);
          st.unsent.push_back(GroupSync{written.number, std::move(pending.value().durable), Status::ok()});
        }
        st.written.push_back(std::move(written));
        st.owe_written = true;
        start_syncs(self);
        answer_in_order(self);
      },
      [=](GroupSync& sync) {
        auto& st = self->state;
        st.idle_syncers.push_back(caf::actor_cast<caf::actor>(self->current_sender()));
        const Status outcome = sync.status.is_ok() ? sync.status
                                                   : Status(sync.status.code(),
                                                            "the call could not be recorded, so it was not answered: " +
                                                                sync.status.message());
        for (WrittenGroup& group : st.written) {
          if (group.number == sync.number && !group.synced) group.synced = outcome;
          // Later groups chain on a group whose sync failed: none of them can stand.
          if (!outcome.is_ok() && group.number > sync.number) group.synced = outcome;
        }
        start_syncs(self);
        answer_in_order(self);
      },
  };
}

struct ServingActorState {
  std::unique_ptr<ServingState> logic;
  SocketPort port;
  std::unique_ptr<ServingMetrics> metrics;
  caf::actor writer;
  std::vector<Waiting> group;  // evaluated, waiting for the writer
  bool writer_busy = false;    // a group is with the writer, which has not yet said it may take the next
  bool recording = true;       // ServingOptions::record_usage
  // Group wait (ServingOptions::group_wait): the ZeroMQ callers seen within
  // kCallerActiveWindow, by routing id, and when each was last seen.
  std::chrono::microseconds group_wait{0};
  std::unordered_map<std::string, SteadyClock::time_point> callers;
  SteadyClock::time_point callers_pruned;
  uint64_t sent = 0;  // calls handed to the writer; the writer counts those it answered
  std::shared_ptr<std::atomic<uint64_t>> answered = std::make_shared<std::atomic<uint64_t>>(0);
  bool waiting = false;      // a group waits for its expected callers; a timer will end the wait
  uint64_t wait_number = 0;  // names the current wait: a timer of an ended wait is ignored
};

// How many calls the next group should hold before it goes (group wait): one from each
// caller seen recently whose call is not already with the writer. HTTP calls are not
// counted (the listener's connections do not name a caller), so they never hold a group.
size_t expected_calls(ServingActorState& st) {
  const auto now = SteadyClock::now();
  if (now - st.callers_pruned > kCallerActiveWindow / 4) {
    st.callers_pruned = now;
    for (auto it = st.callers.begin(); it != st.callers.end();) {
      it = now - it->second > kCallerActiveWindow ? st.callers.erase(it) : std::next(it);
    }
  }
  const uint64_t in_flight = st.sent - std::min(st.sent, st.answered->load(std::memory_order_relaxed));
  const size_t active = st.callers.size();
  return std::min<size_t>(kMaxGroupWaitCalls, active > in_flight ? active - in_flight : 1);
}

// Hands the waiting calls to the writer, unless it is still busy with the group before
// (then they go when it says it may take the next, joined by whatever arrives meanwhile).
// With a group wait, a group smaller than the calls expected (expected_calls()) waits for
// them, at most group_wait: each write's fixed cost (its audit record, the trees' and
// heads' entries, RocksDB's log write, the sync: about 280 us of CPU here) is then shared
// by every caller instead of by the two or three that happened to arrive first. One caller
// alone never waits. `wait_over`: the timer ran out, send what there is.
void flush(caf::stateful_actor<ServingActorState>* self, bool wait_over = false) {
  auto& st = self->state;
  if (st.writer_busy || st.group.empty()) return;
  if (st.group_wait.count() > 0) {
    const bool filled = st.group.size() >= expected_calls(st);
    if (!filled && !wait_over) {
      if (!st.waiting) {
        st.waiting = true;
        self->delayed_send(self, st.group_wait, group_wait_atom::value, ++st.wait_number);
      }
      return;
    }
    if (st.waiting) st.metrics->group_wait(filled);
    st.waiting = false;
    ++st.wait_number;  // a timer still running for this wait is now stale
  }
  st.writer_busy = true;
  st.sent += st.group.size();
  self->send(st.writer, UsageGroup{std::make_shared<std::vector<Waiting>>(std::move(st.group))});
  st.group.clear();
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
  // A call that throws (a bug, or an input no check foresaw) fails alone: the actor, the
  // calls waiting in its group and every later caller go on.
  Result<ServingState::PreparedCall> prepared = internal_error("not evaluated");
  try {
    prepared = st.logic->prepare(request);
  } catch (const std::exception& e) {
    prepared = internal_error(std::string("serving failed on this call: ") + e.what());
  }
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
  if (st.group.size() == 1 && !st.writer_busy) self->send(self, flush_atom::value);
  // A group that waits for its expected callers goes as soon as the last of them is in.
  else if (st.waiting) flush(self);
}

caf::behavior serving_actor(caf::stateful_actor<ServingActorState>* self, SocketPort port,
                            storage::CustodyStore* store, ServingOptions options, const SigningKey* key,
                            MetricsRegistry* metrics) {
  self->state.logic = std::make_unique<ServingState>(store, options, key);
  self->state.port = port;
  self->state.metrics = std::make_unique<ServingMetrics>(metrics);
  self->state.recording = options.record_usage;
  self->state.group_wait = options.group_wait;
  // Linked: the writer ends with the serving actor. Its own thread, for the synced writes.
  self->state.writer = self->spawn<caf::detached + caf::linked>(usage_writer, port, store, options, key, metrics,
                                                                self->address(), self->state.answered);
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
        if (self->state.group_wait.count() > 0) self->state.callers[in.peer] = w.started;
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
      [=](group_wait_atom, uint64_t number) {
        if (number == self->state.wait_number && self->state.waiting) flush(self, true);
      },
      [=](group_written_atom) {
        self->state.writer_busy = false;
        // Calls that queued while the group before was written: one write for all of them.
        flush(self);
      },
  };
}

}  // namespace

caf::actor spawn_serving_actor(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                               ServingOptions options, const SigningKey* key, MetricsRegistry* metrics) {
  // Its own thread, so that model traffic never waits behind the coordinator's work.
  return system.spawn<caf::detached>(serving_actor, port, store, options, key, metrics);
}

}  // namespace custody::actors
