// The custody store: checkpoints (content-addressed tensors), lineage, usage and an
// audit log, kept so that every model can be traced to its data, job, people and workers.
//
// Logs. "lineage", "usage" and "audit" are append-only logs of JSON records, each in its
// own column family under keys "<seq>" (20 digits, from 1). Every record carries the hash
// of its predecessor and its own hash,
//   hash = SHA-256(log "\n" seq "\n" prev_hash "\n" time_ms "\n" body.dump()),
// and the "default" family keeps each log's head (last seq and hash). verify() recomputes
// every chain, so a record that was changed, reordered or removed is found and named; it
// checks the audit log's account of every write against the other logs (a record removed
// from a log's end, head rewritten, is still named by its audit record), rebuilds the
// index from the logs and compares it entry by entry, and checks every checkpoint
// manifest against the SHA-256 its chained entity keeps and every tensor against its
// address. What verify() cannot see without a copy kept outside the store (a rewrite of a
// record with every later hash recomputed): docs/ARCHITECTURE.md, "Trust model".
//
// Lineage bodies are entities {"type":"entity","kind":K,"id":ID,...attributes} (written
// once per id), relations {"type":"relation","rel":R,"from":ID,"to":ID,...} and events
// {"type":"event",...}. Every kind, relation, event and id prefix is named in
// storage/lineage_vocabulary.h, with what each relation links.
//
// Batches. Everything one event writes (records, index entries, blobs, heads, one audit
// record) goes into one atomic write: all of it lands, or none.
//
// At rest: checkpoint tensors are sealed under the store keys (storage/store_key.h,
// storage/checkpoint.h) that the writer attaches with set_keys(); every reader of this
// object opens them with the same keys. verify() checks the sealed bytes against their
// addresses without a key, and with one also opens every tensor and checks its plaintext.
// backup() copies the store's files, which hold sealed tensors only: never the key.
//
// Thread-safety: write() is serialized by a mutex (the coordinator and its serving actor
// both write); reads are safe alongside.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/merkle.h"
#include "core/metrics.h"
#include "storage/key_value.h"

namespace custody::storage {

using nlohmann::json;

class StoreKeys;

struct Record {
  std::string log;
  uint64_t seq = 0;
  std::string prev_hash, hash;
  int64_t time_ms = 0;
  json body;
  json to_json() const;
};

// A usage record's body and its JSON text (body.dump()), serialized ahead of its write by
// a thread that would otherwise wait (the serving actor, while a group fills), so that the
// single writer stores the text as given instead of serializing it on its critical path.
struct SerializedUsage {
  json body;
  std::string text;
};
SerializedUsage serialize_usage(json body);  // the body as Batch::usage(json) would write it

// What one event writes. Build it, then CustodyStore::write() it.
class Batch {
 public:
  explicit Batch(std::string event) : event_(std::move(event)) {}
  // An entity is recorded once; writing a known id again is a no-op.
  void entity(const std::string& kind, const std::string& id, json attributes = json::object());
  void relation(const std::string& rel, const std::string& from, const std::string& to,
                json attributes = json::object());
  void event(json body);  // a lineage event record
  void usage(json body);  // a usage record; body["target"] names the checkpoint or model used
  void usage(SerializedUsage usage);  // the same, already serialized (serialize_usage)
  void blob(const std::string& sha256, std::string bytes);
  // Deletes a blob: only one that no manifest names any more (a rekey's sweep).
  void drop_blob(const std::string& sha256);
  void checkpoint(json manifest);  // manifest["id"], ["job"], ["step"], ...

 private:
  friend class CustodyStore;
  std::string event_;
  std::vector<json> lineage_, usage_, manifests_;
  std::vector<std::string> usage_texts_;  // usage_[i].dump(), or "" if not serialized yet
  std::vector<std::pair<std::string, std::string>> blobs_;
  std::vector<std::string> dropped_blobs_;
};

// A log's Merkle tree head as the store holds it (unsigned: see core/signing.h).
struct TreeHeadInfo {
  std::string log;
  uint64_t size = 0;
  std::string root_hex;
};

// What a write proves about the newest record it appended to a log: the stored record
// (whose chained hash is the leaf's data), and its RFC 6962 audit path in the log's tree
// right after the write. With a signed head of that tree it is a receipt.
struct Inclusion {
  std::string log;
  uint64_t seq = 0;  // the leaf index is seq - 1
  json record;       // as stored: seq, prev, hash, time_ms, body
  std::string record_text;  // the same, as the store holds it: record.dump(), byte for byte
  uint64_t tree_size = 0;
  std::string root;                // raw 32 bytes
  std::vector<std::string> proof;  // raw 32-byte hashes, lowest first
};

// A target's use by one principal and action, summed: derived from the usage log like the
// index, kept under "usage-sum/<target>|<principal>|<action>" in the index family, updated
// in the batch of every usage record and rebuilt by verify(), so that `custody usage`
// answers without reading every record.
struct UsageSum {
  std::string principal, action;
  uint64_t calls = 0, rows = 0;
  int64_t first_ms = 0, last_ms = 0;
};

struct VerifyReport {
  bool ok = true;
  uint64_t records_checked = 0, blobs_checked = 0, index_entries_checked = 0;
  // Of blobs_checked: sealed tensors opened with the store key and their plaintext hash
  // checked; sealed tensors checked by their sealed bytes only (no key given); tensors
  // stored in clear (written before encryption at rest).
  uint64_t tensors_opened = 0, tensors_sealed_unopened = 0, tensors_in_clear = 0;
  std::vector<TreeHeadInfo> heads;  // each log's Merkle tree head, recomputed from its records
  std::string notes;                // what verify could not check, and why
  std::string problem;  // the first problem found, naming the record
};

class CustodyStore {
 public:
  // clock: stamps each record's time_ms.
  explicit CustodyStore(std::unique_ptr<KeyValue> kv, const Clock& clock = Clock::system());
  static Result<std::unique_ptr<CustodyStore>> open(const std::string& path, OpenMode mode,
                                                    const Clock& clock = Clock::system());
  static std::unique_ptr<CustodyStore> in_memory(const Clock& clock = Clock::system());
  // The clock that stamps records (for records that also keep their time as a field).
  const Clock& clock() const { return clock_; }

  // The keys that seal and open checkpoint tensors (storage/store_key.h; the writer's
  // come from attach_store_keys). Null: none (tensors are written in clear, and sealed
  // ones cannot be read). REQUIRES: set before the store is shared between threads.
  void set_keys(std::shared_ptr<const StoreKeys> keys) { keys_ = std::move(keys); }
  // Counts each write (one synced batch) and times it: custody_store_writes_total{result},
  // custody_store_write_duration_seconds. REQUIRES: set before the store is shared.
  void set_metrics(MetricsRegistry* metrics);
  const StoreKeys* keys() const { return keys_.get(); }
  // The store key versions the store's tensors may be sealed under, as its writer last
  // recorded them (an advisory list kept beside the logs, so that a coordinator started
  // without its key file refuses instead of sealing under a new key).
  Result<std::vector<std::string>> key_versions() const;
  Status record_key_versions(const std::vector<std::string>& versions);

  // A consistent online copy of the store into the backup directory `dir` (KeyValue::backup),
  // recorded with the store's format and the key versions its tensors need (the key
  // itself is never in a backup). REQUIRES: a store opened for writing.
  Result<BackupInfo> backup(const std::string& dir, const BackupOptions& options = BackupOptions()) const;
  // Rewrites the store's files without what was deleted (KeyValue::compact).
  Status compact() {
    std::lock_guard<std::mutex> lock(write_mu_);  // a flush switches RocksDB's log: not amid a write
    return kv_->compact();
  }
  // Every checkpoint manifest's id, and every blob's address, in key order.
  Result<std::vector<std::string>> manifest_ids() const;
  Result<std::vector<std::string>> blob_addresses() const;

  // REQUIRES: a single writer. usage_proofs (optional): one Inclusion per usage record of
  // the batch, in order, each proved in the log's tree as the batch leaves it (tree size =
  // the seq of the batch's last usage record), at no extra reads: the serving actor's
  // receipts, one per call of a group commit, all under one tree head (one signature).
  Status write(const Batch& batch, std::vector<Inclusion>* usage_proofs = nullptr);
  // As write(), but returns once the batch is written and readable, before it is synced
  // (KeyValue::apply_deferred), so that the next write can begin while this one syncs:
  // the serving actor's pipelined group commit. Nothing that depends on the batch being
  // durable (an answer to a caller) may happen before the ticket's wait() returns ok. A
  // failed wait() stops this store's writes: whether that batch, and those chained after
  // it, reached the disk is unknown, so every later write fails naming the first failure
  // until the store is opened again (`custody audit verify` then checks what it holds).
  Result<std::shared_ptr<PendingWrite>> write_deferred(const Batch& batch, std::vector<Inclusion>* usage_proofs);

  // Merkle logs. Each of the logs lineage, usage and audit is also an RFC 6962 Merkle tree
  // whose leaf i is leaf_hash(the chained hash of record i + 1, 64 lowercase hex digits).
  // The store keeps each tree's frontier ("tree/<log>" in the default family) and the
  // roots of its complete subtrees of 16 or more leaves ("tree-node/<log>/<level>/<index>"),
  // both written in the batch of the records they cover and rebuilt by verify().
  Result<TreeHeadInfo> tree_head(const std::string& log) const;
  // How many records the log holds: tree_head(log).size without the store reads and hashing
  // of the root, answered from memory once this object has written or read it (serving's
  // per-call check that the lineage has not grown since its cached answers). Thread-safe
  // against a concurrent write(): a size read from the store while a write lands is not
  // kept, so memory never holds a size older than the store's.
  Result<uint64_t> log_size(const std::string& log) const;
  // Audit path of record `seq` (from 1) in the log's tree of `tree_size` leaves.
  Result<std::vector<std::string>> inclusion_proof(const std::string& log, uint64_t seq, uint64_t tree_size) const;
  // RFC 6962 PROOF(size1, D[size2]) of the log's tree.
  Result<std::vector<std::string>> consistency_proof(const std::string& log, uint64_t size1, uint64_t size2) const;

  Result<std::optional<Record>> entity(const std::string& id) const;
  enum class Direction { kOut, kIn };
  // Relation records touching id (out: id is "from"; in: id is "to"); rel "" = any.
  Result<std::vector<Record>> relations(const std::string& id, Direction direction,
                                        const std::string& rel = "") const;
  // Record `seq` (from 1) of a log, checked (see load()).
  Result<Record> log_record(const std::string& log, uint64_t seq) const { return load(log, seq); }
  // Every record of a log, in order.
  Result<std::vector<Record>> log(const std::string& name) const;
  // Lineage records whose body matches every field of `filter` (a linear scan).
  Result<std::vector<Record>> find(const json& filter) const;
  // Usage records of a target (checkpoint or model id).
  Result<std::vector<Record>> usage_of(const std::string& target) const;
  // Visits a target's usage records in log order from record from_seq on (0: the first),
  // or with newest_first from the newest backwards; visit returns false to stop. Reads
  // only the records visited.
  Status visit_usage_of(const std::string& target, uint64_t from_seq, bool newest_first,
                        const std::function<bool(const Record&)>& visit) const;
  // The first usage record written at or after time_ms, or the log's size + 1 if none: a
  // binary search of about log2(size) reads (the writer stamps records in seq order with
  // the wall clock, so times rise with seq unless the clock was set back).
  Result<uint64_t> first_usage_at(int64_t time_ms) const;
  // A target's usage sums, one per (principal, action). A store written before sums were
  // kept has none until its next write; until then they are summed here from the records.
  Result<std::vector<UsageSum>> usage_sums(const std::string& target) const;
  // The usage record holding a prediction id (body["prediction_ids"] lists them).
  Result<std::optional<Record>> prediction(const std::string& prediction_id) const;
  // The usage record of a call ("call-…", a prediction call) or a use ("use-…", an export).
  Result<std::optional<Record>> call(const std::string& id) const;
  // A model's newest version number, 0 if the name is unknown (an index lookup).
  Result<int> newest_model_version(const std::string& name) const;

  Result<std::optional<std::string>> blob(const std::string& sha256) const;
  Result<std::optional<json>> checkpoint(const std::string& id) const;
  Result<std::vector<json>> checkpoints_of(const std::string& job_id) const;

  Result<VerifyReport> verify() const;

 private:
  // Appends bodies to the log in `puts`, extending `tree` (the log's frontier at head_seq).
  Status append(const std::string& log, const std::vector<json>& bodies, int64_t now, std::vector<Put>& puts,
                std::string& head_hash, uint64_t& head_seq, MerkleFrontier& tree,
                std::vector<Inclusion>* each = nullptr, const std::vector<std::string>* texts = nullptr) const;
  // The usage-sum entries of the batch's usage records, and the marker saying which
  // records the sums cover (built from the whole log once for a store written before sums).
  Status add_usage_sums(const std::vector<json>& bodies, int64_t now, uint64_t head_seq_after,
                        std::vector<Put>& puts, std::map<std::string, json>& sums) const;
  // The log's tree as stored (built from the records for a store written before trees).
  Result<MerkleFrontier> frontier(const std::string& log, uint64_t head_seq) const;
  // The keys under `prefix` of the checkpoints family, the prefix cut off, in order.
  Result<std::vector<std::string>> checkpoint_keys(const std::string& prefix) const;
  // What the writer holds between writes instead of reading and parsing it again: each
  // log's head (seq, hash) and Merkle frontier as of the last write this object made. The
  // store has a single writer (this object), so nothing else can change them; a write
  // that fails leaves them as they were. Guarded by write_mu_.
  struct LogState {
    uint64_t seq = 0;
    std::string hash;
    MerkleFrontier tree;
  };
  Result<LogState*> log_state(const std::string& log);
  MerkleNodeReader tree_reader(const std::string& log) const;
  Result<std::pair<uint64_t, std::string>> head(const std::string& log) const;
  // Every read checks what it got: a record is checked against its schema
  // (record_schema.h), and a record reached through the index must be the one the index
  // entry names. Damage is data loss naming the record, never a wrong answer or an abort.
  Result<Record> load(const std::string& log, uint64_t seq) const;
  Result<Record> load_indexed(const std::string& log, const std::string& index_key, const std::string& seq_text) const;
  Result<std::optional<Record>> usage_record(const std::string& index_key, const std::string& id,
                                             const char* field) const;
  // The records of `log` named by the index keys under prefix, in log order.
  Result<std::vector<Record>> indexed(const std::string& log, const std::string& prefix) const;

  std::unique_ptr<KeyValue> kv_;
  const Clock& clock_;
  std::shared_ptr<const StoreKeys> keys_;
  std::mutex write_mu_;
  // write() and write_deferred() but the metrics; `deferred` null: synced before it returns.
  Status write_batch(const Batch& batch, std::vector<Inclusion>* usage_proofs,
                     std::shared_ptr<PendingWrite>* deferred = nullptr);
  // Set by the first deferred write whose sync failed; every write after fails with it.
  void stop_writes(const Status& why);
  mutable std::mutex stopped_mu_;
  std::optional<Status> stopped_;  // guarded by stopped_mu_
  Counter* writes_ok_ = nullptr;
  Counter* writes_failed_ = nullptr;
  Histogram* write_seconds_ = nullptr;
  std::map<std::string, LogState> log_states_;  // guarded by write_mu_
  // Each log's size as of the last write (or read, see log_size()), for readers that must
  // not wait for write_mu_ while a write holds it. sizes_generation_ counts the writes that
  // changed or cleared the map: a reader keeps a size it read from the store only if no
  // write landed meanwhile.
  mutable std::mutex sizes_mu_;
  mutable std::map<std::string, uint64_t> known_sizes_;  // guarded by sizes_mu_
  mutable uint64_t sizes_generation_ = 0;                // guarded by sizes_mu_
  // The usage sums as of this object's last write, parsed, for the keys it has touched; and
  // whether that write left the marker saying the sums are kept. Like log_states_: nothing
  // else writes the store, and a failed write clears both. Guarded by write_mu_.
  std::map<std::string, json> usage_sums_;
  bool usage_sums_marked_ = false;
};

// The index entries (key, value) that record `seq` of `log` has: written with the record,
// and rebuilt by verify() to compare. Shared by writer and verifier so they cannot drift.
std::vector<std::pair<std::string, std::string>> index_entries(const std::string& log, uint64_t seq, const json& body);
// The derived entries that sum records rather than point at one (UsageSum): the key a
// record adds to ("" if none), and the entry's value with the record written at time_ms
// added to `sum` ("" for a key not yet written). Shared by writer and verifier, as above.
std::string usage_sum_key(const std::string& log, const json& body);
std::string add_to_usage_sum(const std::string& sum, int64_t time_ms, const json& body);
// The same, on a sum already parsed (an empty object for a key not yet written): the writer
// keeps its sums parsed between writes and serializes each once per batch.
void add_to_usage_sum(json& sum, int64_t time_ms, const json& body);
// The key under which the default family records how many usage records the sums cover.
extern const char* const kUsageSumsKey;
// "" if a checkpoint manifest has the fields readers rely on; else what is wrong.
std::string check_manifest(const json& manifest);
// The store's format, as its "default"/"format" key holds it.
extern const char* const kStoreFormat;

// The logs kept as Merkle trees: lineage, usage, audit.
const std::vector<std::string>& merkle_logs();
// A record's leaf in its log's tree: RFC 6962 leaf_hash of its chained hash (hex text).
std::string record_leaf_hash(const std::string& record_hash_hex);

// "00000000000000000042"
std::string seq_key(uint64_t seq);
std::string record_hash(const std::string& log, uint64_t seq, const std::string& prev, int64_t time_ms,
                        const json& body);
// The same hash of a body already serialized (body_text == body.dump()): the writer
// serializes each body once, for the hash and the stored record both.
std::string record_hash_of_text(const std::string& log, uint64_t seq, const std::string& prev, int64_t time_ms,
                                std::string_view body_text);
// A record as the store keeps it, byte for byte what
// json{{"seq", seq}, {"prev", prev}, {"hash", hash}, {"time_ms", time_ms}, {"body", body}}.dump()
// gives (keys in order: body, hash, prev, seq, time_ms), built around body_text == body.dump()
// without a second serialization of the body.
std::string stored_record_text(uint64_t seq, const std::string& prev, const std::string& hash, int64_t time_ms,
                               std::string_view body_text);

}  // namespace custody::storage
