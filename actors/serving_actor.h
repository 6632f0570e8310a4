// The coordinator's serving actor: answers predict calls from the coordinator's socket
// (ZeroMQ, from `custody predict`) and from its HTTP listener (LocalCall, authorized by the
// coordinator actor) with ServingState, on a thread of its own (each call ends in a synced
// write of the store).
//
// Group commit. A call is recorded before it is answered, and a synced write costs more
// than evaluating a small batch, so calls that arrive together share one write, and the
// write overlaps the next calls' evaluation. The serving actor checks and evaluates each
// call as it takes it from the mailbox and adds it, unanswered, to the waiting group; a
// "flush" message, queued behind the calls already in the mailbox when the group's first
// call came, hands the group to the usage writer (an actor on a thread of its own).
// Pipelined: the writer writes a group's usage records in one batch without waiting for
// the disk (CustodyStore::write_deferred) and hands the sync to one of
// ServingOptions::syncs_in_flight syncers, so the next group's write, and its sync, need
// not wait for this one's sync: syncs in flight together share the disk's queue, where
// RocksDB's own synced writes go one at a time, and with 8 callers half of them would wait
// for the other half's sync. Each call is answered (with its own receipt) once its group's
// records are on the disk, groups strictly in order. One group at a time is with the
// writer: the next goes when the writer has written this one and a syncer is idle for it,
// and calls that arrive meanwhile join it, so groups grow with the writer's load and the
// disk's latency and each write's fixed cost is shared by more calls. Group wait
// (ServingOptions::group_wait, default 500 us): a group smaller than the calls expected
// (one from each ZeroMQ caller seen in the last 20 ms whose call is not already with the
// writer; at most 16) waits for them, at most that long, so synchronous callers fall into step and
// share each write instead of splitting into groups of two or three. One caller alone
// waits for nothing extra; a caller that stopped costs one wait before it is forgotten.
// Each call's usage record is serialized here, as the call is evaluated, so the writer
// only hashes and stores it; the receipts of a group share one signed tree head. At most kMaxWaitingCalls wait: more are refused (unavailable,
// "retry"), so a flood cannot grow memory without bound. A write or sync that fails
// answers every call of its group, and of every group after it, with the error: none of
// them is known to be recorded (and the store refuses further writes until restarted).
// Without usage recording calls are answered at once.
// Thread-safety: the actor's state is its own.
#pragma once

#include <cstddef>

#include "actors/caf_types.h"
#include "actors/node_config.h"
#include "actors/socket_bridge.h"
#include "core/metrics.h"
#include "core/signing.h"
#include "storage/custody_store.h"

namespace custody::actors {

inline constexpr size_t kMaxWaitingCalls = 1024;

// `store` and `key` (null: no receipts) outlive the actor system; `metrics` may be null.
caf::actor spawn_serving_actor(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                               ServingOptions options, const SigningKey* key, MetricsRegistry* metrics);

}  // namespace custody::actors
