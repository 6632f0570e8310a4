// Key rotation at rest (`custody store rekey`): a new store key, every sealed tensor
// sealed again under it, and the old key kept only until nothing needs it. Also how a
// store written before encryption at rest gets its tensors sealed.
//
// The steps, each safe to be cut short by a crash (kill -9) at any point:
//  1. The key file gets a fresh current key; the old one stays in it as retiring (one
//     atomic rename). From here both open what they sealed. (A key file that is already
//     rotating is an unfinished rekey: it is resumed with its current key.)
//  2. Each checkpoint with a tensor not sealed under the current key (under an older key,
//     or in clear) is written again in one atomic batch: its tensors opened and sealed
//     anew, its manifest, and a chained `checkpoint_resealed` event naming the new
//     manifest's SHA-256 (which verify() then holds the manifest to). A checkpoint is
//     resealed wholly or not at all.
//  3. One batch deletes every blob no manifest names any more (the old sealed bytes, the
//     tensors stored in clear) and records `store_rekeyed`.
//  4. The store's files are compacted, so the deleted values leave them.
//  5. The store records that only the new key is in use; then the key file drops the
//     retiring keys (in this order, so that a key file never lacks a key the store
//     says it needs).
// After a crash the store opens (the coordinator finds every key it needs in the key
// file) and verifies; running the rekey again finishes it.
//
// What a rekey does not reach: copies made before it (backups hold tensors sealed under
// the old key: keep that key as long as you keep them), and the disk blocks the deleted
// files occupied (not scrubbed).
//
// Thread-safety: REQUIRES the store's only writer (opened read-write, so no coordinator
// runs on it); one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "storage/custody_store.h"

namespace custody::storage {

struct RekeyOptions {
  std::string by;  // who rekeys (recorded in the events)
  // Told each step as it is done ("key file rotated", "resealed ckpt-… (3 of 40)",
  // "swept", "compacted", "done"); returning false stops the rekey there, as a crash
  // would (tests).
  std::function<bool(const std::string& step)> progress;
};

struct RekeyReport {
  bool resumed = false;              // an earlier rekey had not finished; its key was kept
  bool new_key_file = false;         // the store had no key file (a store from before encryption)
  bool finished = false;             // false: progress stopped it
  std::string store_key;             // the current key version afterwards
  std::vector<std::string> retired;  // the versions the key file no longer holds
  uint64_t checkpoints = 0, checkpoints_resealed = 0, tensors_resealed = 0, blobs_dropped = 0;
};

// Rotates the store key in `key_path` and reseals `store`'s tensors (see above).
// Errors: the key file's (storage/store_key.h), a tensor that does not open (data loss,
// naming it: the store stays as it was before that checkpoint, and verifies), I/O.
Result<RekeyReport> rekey_store(CustodyStore& store, const std::string& key_path,
                                const RekeyOptions& options);

}  // namespace custody::storage
