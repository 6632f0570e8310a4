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
// {"type":"event",...}. Relations: submitted_by (run -> principal), consumed (run ->
// dataset), specified_by (run -> job spec), produced (run -> checkpoint), derived_from
// (checkpoint -> checkpoint), contributed (node -> checkpoint, with counts), version_of
// (model version -> checkpoint).
//
// Batches. Everything one event writes (records, index entries, blobs, heads, one audit
// record) goes into one atomic write: all of it lands, or none.
//
// Thread-safety: write() is serialized by a mutex (the coordinator and its serving actor
// both write); reads are safe alongside.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "storage/key_value.h"

namespace custody::storage {

using nlohmann::json;

struct Record {
  std::string log;
  uint64_t seq = 0;
  std::string prev_hash, hash;
  int64_t time_ms = 0;
  json body;
  json to_json() const;
};

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
  void blob(const std::string& sha256, std::string bytes);
  void checkpoint(json manifest);  // manifest["id"], ["job"], ["step"], ...

 private:
  friend class CustodyStore;
  std::string event_;
  std::vector<json> lineage_, usage_, manifests_;
  std::vector<std::pair<std::string, std::string>> blobs_;
};

struct VerifyReport {
  bool ok = true;
  uint64_t records_checked = 0, blobs_checked = 0, index_entries_checked = 0;
  std::string problem;  // the first problem found, naming the record
};

class CustodyStore {
 public:
  explicit CustodyStore(std::unique_ptr<KeyValue> kv);
  static Result<std::unique_ptr<CustodyStore>> open(const std::string& path, OpenMode mode);
  static std::unique_ptr<CustodyStore> in_memory();

  // REQUIRES: a single writer.
  Status write(const Batch& batch);

  Result<std::optional<Record>> entity(const std::string& id) const;
  enum class Direction { kOut, kIn };
  // Relation records touching id (out: id is "from"; in: id is "to"); rel "" = any.
  Result<std::vector<Record>> relations(const std::string& id, Direction direction,
                                        const std::string& rel = "") const;
  // Every record of a log, in order.
  Result<std::vector<Record>> log(const std::string& name) const;
  // Lineage records whose body matches every field of `filter` (a linear scan).
  Result<std::vector<Record>> find(const json& filter) const;
  // Usage records of a target (checkpoint or model id).
  Result<std::vector<Record>> usage_of(const std::string& target) const;
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
  Result<uint64_t> append(const std::string& log, const std::vector<json>& bodies, int64_t now,
                          std::vector<Put>& puts, std::string& head_hash, uint64_t& head_seq) const;
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
  std::mutex write_mu_;
};

// The index entries (key, value) that record `seq` of `log` has: written with the record,
// and rebuilt by verify() to compare. Shared by writer and verifier so they cannot drift.
std::vector<std::pair<std::string, std::string>> index_entries(const std::string& log, uint64_t seq, const json& body);
// "" if a checkpoint manifest has the fields readers rely on; else what is wrong.
std::string check_manifest(const json& manifest);

// "00000000000000000042"
std::string seq_key(uint64_t seq);
std::string record_hash(const std::string& log, uint64_t seq, const std::string& prev, int64_t time_ms,
                        const json& body);

}  // namespace custody::storage
