// The coordinator's online backups of its custody store (`custody store backup DIR`: a
// storeBackup request, admin only). The coordinator holds the store's RocksDB lock, so a
// backup while it trains and serves has to be taken by it: the coordinator's actor
// authorizes the request and hands it to this actor, which copies the store with
// RocksDB's BackupEngine (storage/key_value.h: one consistent moment, listed only when
// complete) on a blocking actor of its own thread, and replies when the backup is whole.
// Training, serving and the store's writes go on meanwhile; the copy may be rate-limited.
// One backup at a time: a request while one runs is refused at once, naming it.
// The backup holds the records and the sealed tensors, never the store key.
// Thread-safety: the actor's state is its own; the store allows a backup beside writes.
#pragma once

#include <atomic>
#include <string>

#include "actors/caf_types.h"
#include "actors/socket_bridge.h"
#include "storage/custody_store.h"

namespace custody::actors {

// `store` (null: the coordinator keeps none, and says so to each request) outlives the
// actor system. `stop`: the node's stop flag; a backup running when it turns true stops
// at its next chunk of files (its partial files are never listed as a backup).
caf::actor spawn_store_backup(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                              std::string store_path, const std::atomic<bool>* stop);

}  // namespace custody::actors
