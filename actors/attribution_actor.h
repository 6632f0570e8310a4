// The coordinator's answers to `custody attribute` (an attribute request): which training
// records of the run behind a prediction explain it, or a model's records by
// self-influence (storage/attribution.h, TracInCP). The coordinator's actor authorizes
// the request and hands it here: scoring a training set takes seconds (Fashion-MNIST
// against 5 checkpoints: bench/attribution.sh), so it runs on a detached actor of its own
// (its scoring on two threads of its own), one request at a time, and neither predictions
// nor scheduling queue behind it. Each answer is recorded in the usage log (who asked,
// for what purpose, about which prediction and input hash, and the answer's proponents
// and opponents) before it is sent; an answer that cannot be recorded is not sent.
// Thread-safety: the actor's state is its own; the store serializes writes and allows
// reads beside them.
#pragma once

#include "actors/caf_types.h"
#include "actors/socket_bridge.h"
#include "core/signing.h"
#include "storage/custody_store.h"

namespace custody::actors {

// `store` (null: the coordinator keeps none, and says so to each request) and `key`
// (signs each answer's receipt; null: none) outlive the actor system.
caf::actor spawn_attribution(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                             const SigningKey* key);

}  // namespace custody::actors
