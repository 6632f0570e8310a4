// The coordinator's records server (data shipping, docs/ARCHITECTURE.md "Data shipping"):
// answers a worker's fetchRecords with a chunk of the records it names, read from the
// records directory (core/blob_dir.h) where admission kept each rank's records by their
// SHA-256. The coordinator actor authorizes each request first
// (CoordinatorState::authorize_fetch) and hands it here, so file reads never hold up
// scheduling; the reply goes straight to the worker's connection through the socket's
// port. The first request for a blob in this process checks the whole blob against its
// name; a damaged one is removed and refused, naming it, so no worker is sent bytes that
// do not match the digests of submission (the worker checks them again on its side).
// Memory: one chunk per request (at most msg::kMaxRecordsChunk), never a whole blob.
// Thread-safety: the actor's state is its own (a detached actor: file reads block).
#pragma once

#include <string>

#include "actors/caf_types.h"
#include "actors/socket_bridge.h"

namespace custody::actors {

// `records_dir`: CoordinatorOptions::records_dir; empty: every request is refused, saying so.
caf::actor spawn_records_server(caf::actor_system& system, SocketPort port, std::string records_dir);

}  // namespace custody::actors
