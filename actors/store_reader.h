// The coordinator's store reader: answers storeQuery requests (storage/store_query.h) from
// the coordinator's custody store, so that `custody models`, `lineage …`, `privacy` and
// `audit verify` give a CLI on any machine the same answer as one beside the store. The
// coordinator actor authenticates each request and checks the caller's role
// (access_policy.h, may_query) before it hands the request here. Queries run on a thread of
// their own, one at a time, so that a long `audit verify` never delays heartbeats or
// scheduling; the store allows reads beside its writer.
// Thread-safety: the actor's state is its own.
#pragma once

#include "actors/caf_types.h"
#include "actors/socket_bridge.h"
#include "storage/custody_store.h"

namespace custody::actors {

// `store` (null: the coordinator keeps none, and says so to each request) outlives the
// actor system.
caf::actor spawn_store_reader(caf::actor_system& system, SocketPort port, const storage::CustodyStore* store);

}  // namespace custody::actors
