#include "storage/custody_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "core/hash.h"
#include "core/hex.h"
#include "storage/checkpoint.h"
#include "storage/lineage_vocabulary.h"
#include "storage/record_schema.h"
#include "storage/store_key.h"

namespace custody::storage {
namespace {

// The store key versions in use (CustodyStore::key_versions), in the default family.
const char* const kKeyVersionsKey = "store-keys";

// Index keys use '|' between parts; ids never contain it (see Batch).
std::string sanitize(const std::string& id) {
  std::string s = id;
  for (char& c : s)
    if (c == '|') c = '_';
  return s;
}

Result<Record> parse_record(const std::string& log, const std::string& value) {
  json j = json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("seq") || !j.contains("body")) {
    return data_loss("a " + log + " record is not valid JSON of a custody record");
  }
  Record r;
  r.log = log;
  try {
    r.seq = j.at("seq").get<uint64_t>();
    r.prev_hash = j.at("prev").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    r.time_ms = j.at("time_ms").get<int64_t>();
    r.body = j.at("body");
  } catch (const json::exception& e) {
    return data_loss("a " + log + " record lacks a field: " + e.what());
  }
  CUSTODY_RETURN_IF_ERROR(check_record(r));
  return r;
}

// A sequence number as an index entry or key holds it; a damaged one is named.
Result<uint64_t> parse_seq(const std::string& text, const std::string& where) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos) {
    return data_loss(where + " holds '" + text.substr(0, 40) +
                     "', not a record number; run `custody audit verify` for the whole store");
  }
  return std::stoull(text);
}

// Complete subtrees of at least 2^kCachedLevel leaves are kept, so that a proof reads at
// most 2^kCachedLevel - 1 records per proof hash (see core/merkle.h, MerkleNodeReader).
constexpr uint32_t kCachedLevel = 4;

std::string tree_key(const std::string& log) { return "tree/" + log; }
std::string tree_node_key(const std::string& log, uint32_t level, uint64_t index) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "/%02u/%020llu", level, static_cast<unsigned long long>(index));
  return "tree-node/" + log + buf;
}

}  // namespace

const char* const kStoreFormat = "custody-store-v1";

const std::vector<std::string>& merkle_logs() {
  static const std::vector<std::string> kLogs{lineage::kLineageLog, lineage::kUsageLog, lineage::kAuditLog};
  return kLogs;
}

std::string record_leaf_hash(const std::string& record_hash_hex) { return leaf_hash(record_hash_hex); }

std::string seq_key(uint64_t seq) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%020llu", static_cast<unsigned long long>(seq));
  return buf;
}

std::string record_hash(const std::string& log, uint64_t seq, const std::string& prev, int64_t time_ms,
                        const json& body) {
  return record_hash_of_text(log, seq, prev, time_ms, body.dump());
}

std::string record_hash_of_text(const std::string& log, uint64_t seq, const std::string& prev, int64_t time_ms,
                                std::string_view body_text) {
  std::string text = log + "\n" + std::to_string(seq) + "\n" + prev + "\n" + std::to_string(time_ms) + "\n";
  text.append(body_text);
  return sha256_hex(text);
}

std::string stored_record_text(uint64_t seq, const std::string& prev, const std::string& hash, int64_t time_ms,
                               std::string_view body_text) {
  // json's own escaping for the two strings (hex in every record this store writes, but a
  // damaged head read back must not make a record that does not parse).
  const std::string hash_text = json(hash).dump(), prev_text = json(prev).dump();
  std::string out;
  out.reserve(body_text.size() + hash_text.size() + prev_text.size() + 64);
  out.append("{\"body\":").append(body_text);
  out.append(",\"hash\":").append(hash_text);
  out.append(",\"prev\":").append(prev_text);
  out.append(",\"seq\":").append(std::to_string(seq));
  out.append(",\"time_ms\":").append(std::to_string(time_ms));
  out.push_back('}');
  return out;
}

json Record::to_json() const {
  return json{{"log", log}, {"seq", seq}, {"prev", prev_hash}, {"hash", hash}, {"time_ms", time_ms}, {"body", body}};
}

void Batch::entity(const std::string& kind, const std::string& id, json attributes) {
  json body = std::move(attributes);
  body["type"] = lineage::kEntity;
  body["kind"] = kind;
  body["id"] = sanitize(id);
  lineage_.push_back(std::move(body));
}

void Batch::relation(const std::string& rel, const std::string& from, const std::string& to, json attributes) {
  json body = std::move(attributes);
  body["type"] = lineage::kRelation;
  body["rel"] = rel;
  body["from"] = sanitize(from);
  body["to"] = sanitize(to);
  lineage_.push_back(std::move(body));
}

void Batch::event(json body) {
  body["type"] = lineage::kEvent;
  lineage_.push_back(std::move(body));
}

void Batch::usage(json body) {
  body["type"] = lineage::kUsage;
  usage_.push_back(std::move(body));
  usage_texts_.emplace_back();
}

SerializedUsage serialize_usage(json body) {
  body["type"] = lineage::kUsage;
  std::string text = body.dump();
  return {std::move(body), std::move(text)};
}

void Batch::usage(SerializedUsage usage) {
  usage_.push_back(std::move(usage.body));
  usage_texts_.push_back(std::move(usage.text));
}

void Batch::blob(const std::string& sha256, std::string bytes) { blobs_.emplace_back(sha256, std::move(bytes)); }

void Batch::drop_blob(const std::string& sha256) { dropped_blobs_.push_back(sha256); }

void Batch::checkpoint(json manifest) { manifests_.push_back(std::move(manifest)); }

CustodyStore::CustodyStore(std::unique_ptr<KeyValue> kv, const Clock& clock) : kv_(std::move(kv)), clock_(clock) {}

Result<std::unique_ptr<CustodyStore>> CustodyStore::open(const std::string& path, OpenMode mode, const Clock& clock) {
  CUSTODY_ASSIGN_OR_RETURN(auto kv, open_rocksdb(path, mode));
  CUSTODY_ASSIGN_OR_RETURN(auto format, kv->get("default", "format"));
  if (!format) {
    if (mode != OpenMode::kReadWrite) return data_loss("'" + path + "' is a RocksDB database but not a custody store");
    // A new store: is it really empty? A RocksDB database of another program is not ours.
    bool empty = true;
    for (const auto& family : column_families()) {
      CUSTODY_RETURN_IF_ERROR(kv->scan(family, "", [&](const std::string&, const std::string&) {
        empty = false;
        return false;
      }));
    }
    if (!empty) return failed_precondition("'" + path + "' is a RocksDB database of another program, not a custody store");
    CUSTODY_RETURN_IF_ERROR(kv->apply({{"default", "format", kStoreFormat}}));
  } else if (*format != kStoreFormat) {
    return failed_precondition("'" + path + "' is a custody store of format '" + *format +
                               "', which this build does not read (it reads " + kStoreFormat + ")");
  }
  return std::make_unique<CustodyStore>(std::move(kv), clock);
}

std::unique_ptr<CustodyStore> CustodyStore::in_memory(const Clock& clock) {
  auto kv = make_memory_key_value();
  (void)kv->apply({{"default", "format", kStoreFormat}});
  return std::make_unique<CustodyStore>(std::move(kv), clock);
}

Result<std::pair<uint64_t, std::string>> CustodyStore::head(const std::string& log) const {
  CUSTODY_ASSIGN_OR_RETURN(auto h, kv_->get("default", "head/" + log));
  if (!h) return std::make_pair(uint64_t(0), std::string());
  json j = json::parse(*h, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("seq") || !j["seq"].is_number_unsigned() ||
      !j.contains("hash") || !j["hash"].is_string()) {
    return data_loss("the head of the " + log + " log is corrupt; run `custody audit verify`");
  }
  return std::make_pair(j["seq"].get<uint64_t>(), j["hash"].get<std::string>());
}

std::vector<std::pair<std::string, std::string>> index_entries(const std::string& log, uint64_t seq,
                                                              const json& body) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string type = body.value("type", "");
  if (log == lineage::kLineageLog && type == lineage::kEntity) {
    out.emplace_back("entity/" + body["id"].get<std::string>(), seq_key(seq));
    if (body.value("kind", "") == lineage::kind::kModelVersion) {
      char version[16];
      std::snprintf(version, sizeof(version), "%010d", body.value("version", 0));
      out.emplace_back("model/" + body.value("name", std::string()) + "|" + version, body["id"]);
    }
  } else if (log == lineage::kLineageLog && type == lineage::kRelation) {
    const std::string rel = body["rel"], from = body["from"], to = body["to"];
    out.emplace_back("out/" + from + "|" + rel + "|" + seq_key(seq), to);
    out.emplace_back("in/" + to + "|" + rel + "|" + seq_key(seq), from);
  } else if (log == lineage::kUsageLog && body.contains("target")) {
    out.emplace_back("usage/" + body["target"].get<std::string>() + "|" + seq_key(seq), "");
    for (const auto& id : body.value("prediction_ids", json::array())) {
      out.emplace_back("prediction/" + id.get<std::string>(), seq_key(seq));
    }
    for (const char* field : {"call_id", "usage_id"}) {
      if (body.contains(field)) out.emplace_back("call/" + body[field].get<std::string>(), seq_key(seq));
    }
  }
  return out;
}

const char* const kUsageSumsKey = "usage-sums";

std::string usage_sum_key(const std::string& log, const json& body) {
  if (log != lineage::kUsageLog || !body.contains("target")) return "";
  return "usage-sum/" + body["target"].get<std::string>() + "|" + sanitize(body.value("principal", std::string())) +
         "|" + sanitize(body.value("action", std::string()));
}

std::string add_to_usage_sum(const std::string& sum, int64_t time_ms, const json& body) {
  json s = sum.empty() ? json::object() : json::parse(sum, nullptr, false);
  if (s.is_discarded() || !s.is_object()) s = json::object();  // verify() names a damaged entry
  add_to_usage_sum(s, time_ms, body);
  return s.dump();
}

void add_to_usage_sum(json& s, int64_t time_ms, const json& body) {
  if (!s.is_object()) s = json::object();
  const bool first = !s.contains("calls");
  const auto rows_field = body.find("rows");
  const int64_t rows = rows_field != body.end() && rows_field->is_number_integer() ? rows_field->get<int64_t>() : 1;
  s["principal"] = body.value("principal", std::string());
  s["action"] = body.value("action", std::string());
  s["calls"] = (first ? 0 : s.value("calls", int64_t(0))) + 1;
  s["rows"] = (first ? 0 : s.value("rows", int64_t(0))) + rows;
  s["first_ms"] = first ? time_ms : std::min(s.value("first_ms", time_ms), time_ms);
  s["last_ms"] = first ? time_ms : std::max(s.value("last_ms", time_ms), time_ms);
}

namespace {
// A reader of the tree as a batch leaves it, for proofs without store reads: the batch's
// own leaves (from `first`) from memory, and the complete subtrees before them as the
// frontier they were appended to holds them. A proof of a leaf at or after `first` asks
// for nothing else (each sibling left of its path is one of those subtrees: RFC 6962's
// split takes the largest power of two below the size, the same cut the frontier makes).
MerkleNodeReader batch_reader(const MerkleFrontier& before, const std::vector<std::string>& leaves) {
  auto subtrees = std::make_shared<std::map<std::pair<uint32_t, uint64_t>, std::string>>();
  uint64_t start = 0;
  size_t next = 0;
  for (int level = 63; level >= 0; --level) {
    const uint64_t span = uint64_t(1) << level;
    if ((before.size() & span) == 0) continue;
    if (next >= before.nodes().size()) break;  // a damaged frontier: the proof names the leaf it lacks
    (*subtrees)[{static_cast<uint32_t>(level), start >> level}] = before.nodes()[next++];
    start += span;
  }
  const uint64_t first = before.size();
  MerkleNodeReader r;
  r.leaf_hash = [subtrees, first, &leaves](uint64_t i) -> Result<std::string> {
    if (i >= first && i - first < leaves.size()) return leaves[static_cast<size_t>(i - first)];
    if (auto it = subtrees->find({0, i}); it != subtrees->end()) return it->second;
    return internal_error("a proof of a batch's record asked for leaf " + std::to_string(i) +
                          ", which is neither in the batch nor a subtree before it");
  };
  r.subtree_hash = [subtrees](uint32_t level, uint64_t index) -> std::optional<std::string> {
    if (auto it = subtrees->find({level, index}); it != subtrees->end()) return it->second;
    return std::nullopt;
  };
  return r;
}
}  // namespace

Status CustodyStore::append(const std::string& log, const std::vector<json>& bodies, int64_t now,
                            std::vector<Put>& puts, std::string& head_hash, uint64_t& head_seq, MerkleFrontier& tree,
                            std::vector<Inclusion>* each, const std::vector<std::string>* texts) const {
  std::vector<MerkleSubtree> completed;
  const size_t first_proved = each ? each->size() : 0;
  std::optional<MerkleFrontier> before;
  std::vector<std::string> leaves;  // of this batch, for the proofs
  if (each) before = tree;
  for (size_t b = 0; b < bodies.size(); ++b) {
    const json& body = bodies[b];
    const uint64_t seq = ++head_seq;
    // The body is serialized once, for its hash and its stored record both (or was, ahead
    // of the write: serialize_usage).
    const bool given = texts && b < texts->size() && !(*texts)[b].empty();
    const std::string dumped = given ? std::string() : body.dump();
    const std::string& body_text = given ? (*texts)[b] : dumped;
    const std::string hash = record_hash_of_text(log, seq, head_hash, now, body_text);
    std::string record_text = stored_record_text(seq, head_hash, hash, now, body_text);
    if (each) {
      Inclusion& proved = each->emplace_back();
      proved.log = log;
      proved.seq = seq;
      proved.record = json{{"seq", seq}, {"prev", head_hash}, {"hash", hash}, {"time_ms", now}, {"body", body}};
      proved.record_text = record_text;
    }
    puts.push_back({log, seq_key(seq), std::move(record_text)});
    head_hash = hash;
    // Entities are indexed once: the first record of an id is the one that counts.
    for (auto& [key, value] : index_entries(log, seq, body)) puts.push_back({"index", std::move(key), std::move(value)});
    const std::string leaf = record_leaf_hash(hash);
    if (each) leaves.push_back(leaf);
    CUSTODY_RETURN_IF_ERROR(tree.append(leaf, &completed));
  }
  if (each && tree.size() > before->size()) {
    // Every record of the batch is proved in the tree as the batch leaves it: one tree
    // head for all, so a group commit's receipts share one signature (as a Certificate
    // Transparency log's entries share a signed tree head), each with its own audit path,
    // computed from the batch's leaves and the frontier before it: no reads at all.
    const MerkleNodeReader reader = batch_reader(*before, leaves);
    const std::string root = tree.root();
    for (size_t i = first_proved; i < each->size(); ++i) {
      Inclusion& proved = (*each)[i];
      CUSTODY_ASSIGN_OR_RETURN(proved.proof, custody::inclusion_proof(reader, proved.seq - 1, tree.size()));
      proved.tree_size = tree.size();
      proved.root = root;
    }
  }
  for (const auto& node : completed) {
    if (node.level >= kCachedLevel) puts.push_back({"default", tree_node_key(log, node.level, node.index), to_hex(node.hash)});
  }
  puts.push_back({"default", tree_key(log), tree.serialize()});
  puts.push_back({"default", "head/" + log, json{{"seq", head_seq}, {"hash", head_hash}}.dump()});
  return Status::ok();
}

Status CustodyStore::add_usage_sums(const std::vector<json>& bodies, int64_t now, uint64_t head_seq_after,
                                    std::vector<Put>& puts, std::map<std::string, json>& sums) const {
  // sums: as they will be after this batch, for the keys it touches.
  bool kept = usage_sums_marked_;  // the marker was written by this object's last usage write
  if (!kept) {
    CUSTODY_ASSIGN_OR_RETURN(auto marker, kv_->get("default", kUsageSumsKey));
    kept = marker.has_value();
  }
  if (!kept && head_seq_after > bodies.size()) {
    // A store written before usage sums: they are summed from the whole log, once.
    Status bad = Status::ok();
    CUSTODY_RETURN_IF_ERROR(kv_->scan(lineage::kUsageLog, "", [&](const std::string&, const std::string& value) {
      auto r = parse_record(lineage::kUsageLog, value);
      if (!r.is_ok()) bad = r.status();
      if (!r.is_ok()) return false;
      const std::string key = usage_sum_key(lineage::kUsageLog, r->body);
      if (!key.empty()) add_to_usage_sum(sums[key], r->time_ms, r->body);
      return true;
    }));
    if (!bad.is_ok()) return bad;
  }
  for (const json& body : bodies) {
    const std::string key = usage_sum_key(lineage::kUsageLog, body);
    if (key.empty()) continue;
    auto it = sums.find(key);
    if (it == sums.end()) {
      // Kept parsed between writes (usage_sums_): read and parsed once per key, not per call.
      if (auto held = usage_sums_.find(key); held != usage_sums_.end()) {
        it = sums.emplace(key, held->second).first;
      } else {
        std::optional<std::string> stored;
        if (kept) {
          CUSTODY_ASSIGN_OR_RETURN(stored, kv_->get("index", key));
        }
        json parsed = stored ? json::parse(*stored, nullptr, false) : json::object();
        if (parsed.is_discarded() || !parsed.is_object()) parsed = json::object();  // verify() names it
        it = sums.emplace(key, std::move(parsed)).first;
      }
    }
    add_to_usage_sum(it->second, now, body);
  }
  for (const auto& [key, value] : sums) puts.push_back({"index", key, value.dump()});
  puts.push_back({"default", kUsageSumsKey, std::to_string(head_seq_after)});
  return Status::ok();
}

Result<CustodyStore::LogState*> CustodyStore::log_state(const std::string& log) {
  auto it = log_states_.find(log);
  if (it != log_states_.end()) return &it->second;
  CUSTODY_ASSIGN_OR_RETURN(auto h, head(log));
  CUSTODY_ASSIGN_OR_RETURN(auto tree, frontier(log, h.first));
  return &(log_states_[log] = LogState{h.first, h.second, std::move(tree)});
}

Result<MerkleFrontier> CustodyStore::frontier(const std::string& log, uint64_t head_seq) const {
  CUSTODY_ASSIGN_OR_RETURN(auto text, kv_->get("default", tree_key(log)));
  if (text) {
    auto tree = MerkleFrontier::parse(*text);
    if (!tree.is_ok()) {
      return data_loss("the Merkle tree of the " + log + " log is damaged (" + tree.status().message() +
                       "); run `custody audit verify`");
    }
    if (tree->size() != head_seq) {
      return data_loss("the Merkle tree of the " + log + " log holds " + std::to_string(tree->size()) +
                       " records but the log holds " + std::to_string(head_seq) + "; run `custody audit verify`");
    }
    return tree;
  }
  // A store written before its logs were Merkle trees: the tree is built from the chain
  // once, by the first write that needs it.
  MerkleFrontier tree;
  Status bad = Status::ok();
  CUSTODY_RETURN_IF_ERROR(kv_->scan(log, "", [&](const std::string&, const std::string& value) {
    auto r = parse_record(log, value);
    if (r.is_ok()) bad = tree.append(record_leaf_hash(r->hash));
    if (!r.is_ok()) bad = r.status();
    return bad.is_ok();
  }));
  if (!bad.is_ok()) return bad;
  return tree;
}

Result<TreeHeadInfo> CustodyStore::tree_head(const std::string& log) const {
  CUSTODY_ASSIGN_OR_RETURN(auto h, head(log));
  CUSTODY_ASSIGN_OR_RETURN(auto tree, frontier(log, h.first));
  return TreeHeadInfo{log, tree.size(), to_hex(tree.root())};
}

Result<uint64_t> CustodyStore::log_size(const std::string& log) const {
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(sizes_mu_);
    auto it = known_sizes_.find(log);
    if (it != known_sizes_.end()) return it->second;
    generation = sizes_generation_;
  }
  CUSTODY_ASSIGN_OR_RETURN(auto h, head(log));
  std::lock_guard<std::mutex> lock(sizes_mu_);
  // A write that landed after the generation was read may have made h stale: do not keep it.
  if (sizes_generation_ == generation) known_sizes_.emplace(log, h.first);
  return h.first;
}

MerkleNodeReader CustodyStore::tree_reader(const std::string& log) const {
  MerkleNodeReader reader;
  reader.leaf_hash = [this, log](uint64_t index) -> Result<std::string> {
    CUSTODY_ASSIGN_OR_RETURN(auto r, load(log, index + 1));
    return record_leaf_hash(r.hash);
  };
  reader.subtree_hash = [this, log](uint32_t level, uint64_t index) -> std::optional<std::string> {
    if (level < kCachedLevel) return std::nullopt;
    auto v = kv_->get("default", tree_node_key(log, level, index));
    if (!v.is_ok() || !v.value()) return std::nullopt;
    auto raw = from_hex(*v.value(), kMerkleHashSize);
    // A damaged cache entry is computed from the records instead; verify() names it.
    if (!raw.is_ok()) return std::nullopt;
    return raw.value();
  };
  return reader;
}

Result<std::vector<std::string>> CustodyStore::inclusion_proof(const std::string& log, uint64_t seq,
                                                               uint64_t tree_size) const {
  if (seq == 0) return invalid_argument("records are numbered from 1");
  return custody::inclusion_proof(tree_reader(log), seq - 1, tree_size);
}

Result<std::vector<std::string>> CustodyStore::consistency_proof(const std::string& log, uint64_t size1,
                                                                 uint64_t size2) const {
  return custody::consistency_proof(tree_reader(log), size1, size2);
}

void CustodyStore::set_metrics(MetricsRegistry* m) {
  if (!m) return;
  const char* help = "Writes to the custody store (each one synced batch), by result.";
  writes_ok_ = &m->counter("custody_store_writes_total", help, {{"result", "ok"}});
  writes_failed_ = &m->counter("custody_store_writes_total", help, {{"result", "failed"}});
  write_seconds_ = &m->histogram("custody_store_write_duration_seconds",
                                 "Time to write one batch to the custody store, sync included.", latency_buckets());
}

Status CustodyStore::write(const Batch& batch, std::vector<Inclusion>* usage_proofs) {
  const auto started = std::chrono::steady_clock::now();
  Status s = write_batch(batch, usage_proofs);
  if (write_seconds_) {
    write_seconds_->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    (s.is_ok() ? writes_ok_ : writes_failed_)->add();
  }
  return s;
}

namespace {
// A deferred write's ticket as the store hands it out: a failed sync stops the store's
// writes, and the write's latency is observed when it is durable.
class StorePendingWrite final : public PendingWrite {
 public:
  StorePendingWrite(std::shared_ptr<PendingWrite> inner, std::function<void(const Status&)> done)
      : inner_(std::move(inner)), done_(std::move(done)) {}
  Status wait() override {
    Status s = inner_->wait();
    done_(s);
    return s;
  }

 private:
  std::shared_ptr<PendingWrite> inner_;
  std::function<void(const Status&)> done_;
};
}  // namespace

Result<std::shared_ptr<PendingWrite>> CustodyStore::write_deferred(const Batch& batch,
                                                                   std::vector<Inclusion>* usage_proofs) {
  const auto started = std::chrono::steady_clock::now();
  std::shared_ptr<PendingWrite> pending;
  Status s = write_batch(batch, usage_proofs, &pending);
  if (!s.is_ok()) {
    if (writes_failed_) writes_failed_->add();
    return s;
  }
  return std::shared_ptr<PendingWrite>(std::make_shared<StorePendingWrite>(pending, [this, started](const Status& synced) {
    if (!synced.is_ok()) stop_writes(synced);
    if (write_seconds_) {
      write_seconds_->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      (synced.is_ok() ? writes_ok_ : writes_failed_)->add();
    }
  }));
}

void CustodyStore::stop_writes(const Status& why) {
  std::lock_guard<std::mutex> lock(stopped_mu_);
  if (stopped_) return;
  stopped_ = Status(why.code(), "the custody store stopped writing: a write could not be synced to the disk (" +
                                    why.message() +
                                    "); whether it and the writes after it are on the disk is unknown. Restart the "
                                    "coordinator, then run `custody audit verify`");
}

Status CustodyStore::write_batch(const Batch& batch, std::vector<Inclusion>* usage_proofs,
                                 std::shared_ptr<PendingWrite>* deferred) {
  std::lock_guard<std::mutex> lock(write_mu_);
  {
    std::lock_guard<std::mutex> stopped(stopped_mu_);
    if (stopped_) return *stopped_;
  }
  const int64_t now = clock_.wall_ms();
  // Entities are written once: drop those already stored or repeated in this batch.
  std::vector<json> lineage;
  std::set<std::string> new_ids;
  for (const json& body : batch.lineage_) {
    if (body["type"] == lineage::kEntity) {
      const std::string id = body["id"];
      CUSTODY_ASSIGN_OR_RETURN(auto known, kv_->get("index", "entity/" + id));
      if (known || !new_ids.insert(id).second) continue;
    }
    lineage.push_back(body);
  }
  // A record this store's readers would call damaged is a writer's bug: refuse it here,
  // where the stack names the writer, not at the auditor's query months later.
  const std::vector<std::pair<const char*, const std::vector<json>*>> to_check{{lineage::kLineageLog, &lineage},
                                                                              {lineage::kUsageLog, &batch.usage_}};
  for (const auto& [log, bodies] : to_check) {
    for (const json& body : *bodies) {
      if (body_problem(log, body).empty()) continue;
      Record r;  // only to name the record in the error
      r.log = log;
      r.body = body;
      return internal_error("refused to write " + check_record(r).message());
    }
  }
  std::vector<Put> puts;
  json audit{{"event", batch.event_}};
  std::map<std::string, LogState> after;  // each log's state once this write lands
  std::map<std::string, json> sums_after;  // the usage sums this write changes, once it lands
  auto extend = [&](const std::string& log, const std::vector<json>& bodies, std::vector<Inclusion>* each) -> Status {
    auto state = log_state(log);
    if (!state.is_ok()) return state.status();
    LogState next = *state.value();
    const uint64_t first = next.seq + 1;
    const std::vector<std::string>* texts = log == lineage::kUsageLog ? &batch.usage_texts_ : nullptr;
    CUSTODY_RETURN_IF_ERROR(append(log, bodies, now, puts, next.hash, next.seq, next.tree, each, texts));
    if (log == lineage::kUsageLog) CUSTODY_RETURN_IF_ERROR(add_usage_sums(bodies, now, next.seq, puts, sums_after));
    if (log != lineage::kAuditLog) audit[log] = json::array({first, next.seq});
    after[log] = std::move(next);
    return Status::ok();
  };
  if (!lineage.empty()) CUSTODY_RETURN_IF_ERROR(extend(lineage::kLineageLog, lineage, nullptr));
  if (!batch.usage_.empty()) CUSTODY_RETURN_IF_ERROR(extend(lineage::kUsageLog, batch.usage_, usage_proofs));
  for (const auto& [sha, bytes] : batch.blobs_) puts.push_back({"checkpoints", "blob/" + sha, bytes});
  for (const auto& sha : batch.dropped_blobs_) puts.push_back({"checkpoints", "blob/" + sha, "", true});
  for (const json& m : batch.manifests_) {
    const std::string id = m["id"];
    puts.push_back({"checkpoints", "manifest/" + id, m.dump()});
    puts.push_back({"checkpoints", "run/" + m["job"].get<std::string>() + "|" + seq_key(m["step"].get<uint64_t>()), id});
    audit["checkpoint"] = id;
  }
  CUSTODY_RETURN_IF_ERROR(extend(lineage::kAuditLog, {audit}, nullptr));
  Status applied;
  if (deferred) {
    auto pending = kv_->apply_deferred(puts);
    if (pending.is_ok()) *deferred = std::move(pending).value();
    else applied = pending.status();
  } else {
    applied = kv_->apply(puts);
  }
  if (!applied.is_ok()) {
    // A deferred write whose sync failed may have reached RocksDB's log unsynced: a later
    // write would chain on records that may be lost, and its own sync could succeed (Linux
    // reports a failed writeback once per open file), so the store stops writing, as when a
    // ticket's sync fails (StorePendingWrite).
    if (deferred) stop_writes(applied);
    log_states_.clear();  // whether a failed sync landed is unknown: read the store again
    usage_sums_.clear();
    usage_sums_marked_ = false;
    std::lock_guard<std::mutex> sizes(sizes_mu_);
    known_sizes_.clear();
    ++sizes_generation_;
    return applied;
  }
  {
    std::lock_guard<std::mutex> sizes(sizes_mu_);
    for (const auto& [log, state] : after) known_sizes_[log] = state.seq;
    ++sizes_generation_;
  }
  for (auto& [log, state] : after) log_states_[log] = std::move(state);
  if (!batch.usage_.empty()) usage_sums_marked_ = true;
  for (auto& [key, sum] : sums_after) usage_sums_[key] = std::move(sum);
  return Status::ok();
}

Result<Record> CustodyStore::load(const std::string& log, uint64_t seq) const {
  CUSTODY_ASSIGN_OR_RETURN(auto v, kv_->get(log, seq_key(seq)));
  if (!v) {
    return data_loss(log + " record " + std::to_string(seq) +
                     " is missing, though the index names it; run `custody audit verify`");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto r, parse_record(log, *v));
  if (r.seq != seq) {
    return data_loss(log + " record " + std::to_string(seq) + " holds record " + std::to_string(r.seq) +
                     ": records were moved; run `custody audit verify`");
  }
  return r;
}

Result<Record> CustodyStore::load_indexed(const std::string& log, const std::string& index_key,
                                          const std::string& seq_text) const {
  CUSTODY_ASSIGN_OR_RETURN(auto seq, parse_seq(seq_text, "index entry " + index_key));
  return load(log, seq);
}

Result<std::optional<Record>> CustodyStore::entity(const std::string& id) const {
  const std::string key = "entity/" + id;
  CUSTODY_ASSIGN_OR_RETURN(auto seq, kv_->get("index", key));
  if (!seq) return std::optional<Record>();
  CUSTODY_ASSIGN_OR_RETURN(auto r, load_indexed(lineage::kLineageLog, key, *seq));
  // The index is derived, not chained: one re-pointed entry would answer with another
  // record. What it points to must be what it names.
  if (r.body.value("type", "") != lineage::kEntity || r.body.value("id", "") != id) {
    return data_loss("index entry " + key + " points to " + describe(r) +
                     ", which is not that entity; run `custody audit verify`");
  }
  return std::optional<Record>(std::move(r));
}

Result<std::vector<Record>> CustodyStore::relations(const std::string& id, Direction direction,
                                                    const std::string& rel) const {
  const std::string prefix = (direction == Direction::kOut ? "out/" : "in/") + id + "|" + (rel.empty() ? "" : rel + "|");
  CUSTODY_ASSIGN_OR_RETURN(auto records, indexed(lineage::kLineageLog, prefix));
  for (const Record& r : records) {
    const char* end = direction == Direction::kOut ? "from" : "to";
    if (r.body.value("type", "") != lineage::kRelation || r.body.value(end, "") != id ||
        (!rel.empty() && r.body.value("rel", "") != rel)) {
      return data_loss("an index entry under " + prefix + " points to " + describe(r) +
                       ", which is not such a relation; run `custody audit verify`");
    }
  }
  return records;
}

Result<std::vector<Record>> CustodyStore::log(const std::string& name) const {
  std::vector<Record> out;
  Status bad = Status::ok();
  CUSTODY_RETURN_IF_ERROR(kv_->scan(name, "", [&](const std::string& key, const std::string& value) {
    auto r = parse_record(name, value);
    if (!r.is_ok()) {
      bad = Status(r.status().code(), r.status().message() + " (at key " + key + ")");
      return false;
    }
    out.push_back(std::move(r).value());
    return true;
  }));
  if (!bad.is_ok()) return bad;
  return out;
}

Result<std::vector<Record>> CustodyStore::find(const json& filter) const {
  CUSTODY_ASSIGN_OR_RETURN(auto all, log(lineage::kLineageLog));
  std::vector<Record> out;
  for (auto& r : all) {
    bool match = true;
    for (auto it = filter.begin(); it != filter.end() && match; ++it) {
      match = r.body.contains(it.key()) && r.body[it.key()] == it.value();
    }
    if (match) out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<Record>> CustodyStore::usage_of(const std::string& target) const {
  std::vector<Record> out;
  CUSTODY_RETURN_IF_ERROR(visit_usage_of(target, 0, false, [&](const Record& r) {
    out.push_back(r);
    return true;
  }));
  return out;
}

Status CustodyStore::visit_usage_of(const std::string& target, uint64_t from_seq, bool newest_first,
                                    const std::function<bool(const Record&)>& visit) const {
  const std::string prefix = "usage/" + target + "|";
  Status bad = Status::ok();
  CUSTODY_RETURN_IF_ERROR(kv_->scan_from(
      "index", prefix, from_seq == 0 ? "" : prefix + seq_key(from_seq), newest_first,
      [&](const std::string& key, const std::string&) {
        auto seq = parse_seq(key.substr(prefix.size()), "index key " + key);
        auto r = seq.is_ok() ? load(lineage::kUsageLog, seq.value()) : Result<Record>(seq.status());
        if (!r.is_ok()) {
          bad = r.status();
          return false;
        }
        if (r->body.value("target", "") != target) {
          bad = data_loss("index entry " + key + " points to " + describe(r.value()) +
                          ", a use of another target; run `custody audit verify`");
          return false;
        }
        return visit(r.value());
      }));
  return bad;
}

Result<uint64_t> CustodyStore::first_usage_at(int64_t time_ms) const {
  CUSTODY_ASSIGN_OR_RETURN(auto h, head(lineage::kUsageLog));
  uint64_t lo = 1, hi = h.first + 1;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    CUSTODY_ASSIGN_OR_RETURN(auto r, load(lineage::kUsageLog, mid));
    if (r.time_ms >= time_ms) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

Result<std::vector<UsageSum>> CustodyStore::usage_sums(const std::string& target) const {
  std::map<std::string, std::string> sums;  // key -> value, as the index holds them
  CUSTODY_ASSIGN_OR_RETURN(auto marker, kv_->get("default", kUsageSumsKey));
  if (marker) {
    CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "usage-sum/" + target + "|", [&](const std::string& k, const std::string& v) {
      sums[k] = v;
      return true;
    }));
  } else {
    CUSTODY_RETURN_IF_ERROR(visit_usage_of(target, 0, false, [&](const Record& r) {
      const std::string key = usage_sum_key(lineage::kUsageLog, r.body);
      sums[key] = add_to_usage_sum(sums[key], r.time_ms, r.body);
      return true;
    }));
  }
  std::vector<UsageSum> out;
  for (const auto& [key, value] : sums) {
    json j = json::parse(value, nullptr, false);
    UsageSum u;
    try {
      u.principal = j.at("principal").get<std::string>();
      u.action = j.at("action").get<std::string>();
      u.calls = j.at("calls").get<uint64_t>();
      u.rows = j.at("rows").get<uint64_t>();
      u.first_ms = j.at("first_ms").get<int64_t>();
      u.last_ms = j.at("last_ms").get<int64_t>();
    } catch (const json::exception&) {
      return data_loss("index entry " + key + " is not a usage sum; run `custody audit verify`");
    }
    out.push_back(std::move(u));
  }
  return out;
}

Result<std::vector<Record>> CustodyStore::indexed(const std::string& log, const std::string& prefix) const {
  // Index keys end in "|<seq>": the position of the record in its log.
  std::vector<uint64_t> seqs;
  Status bad = Status::ok();
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", prefix, [&](const std::string& key, const std::string&) {
    auto seq = parse_seq(key.substr(key.rfind('|') + 1), "index key " + key);
    if (!seq.is_ok()) {
      bad = seq.status();
      return false;
    }
    seqs.push_back(seq.value());
    return true;
  }));
  if (!bad.is_ok()) return bad;
  std::sort(seqs.begin(), seqs.end());
  std::vector<Record> out;
  for (uint64_t seq : seqs) {
    CUSTODY_ASSIGN_OR_RETURN(auto r, load(log, seq));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::optional<Record>> CustodyStore::usage_record(const std::string& index_key, const std::string& id,
                                                         const char* field) const {
  CUSTODY_ASSIGN_OR_RETURN(auto seq, kv_->get("index", index_key));
  if (!seq) return std::optional<Record>();
  CUSTODY_ASSIGN_OR_RETURN(auto r, load_indexed(lineage::kUsageLog, index_key, *seq));
  bool names_it = false;
  if (const auto it = r.body.find(field); it != r.body.end()) {
    if (it->is_array()) {
      for (const auto& x : *it) names_it = names_it || x == id;
    } else {
      names_it = *it == id;
    }
  }
  if (!names_it) {
    return data_loss("index entry " + index_key + " points to " + describe(r) +
                     ", which does not hold it; run `custody audit verify`");
  }
  return std::optional<Record>(std::move(r));
}

Result<std::optional<Record>> CustodyStore::prediction(const std::string& prediction_id) const {
  return usage_record("prediction/" + prediction_id, prediction_id, "prediction_ids");
}

Result<std::optional<Record>> CustodyStore::call(const std::string& id) const {
  return usage_record("call/" + id, id, lineage::has_prefix(id, lineage::prefix::kUse) ? "usage_id" : "call_id");
}

Result<int> CustodyStore::newest_model_version(const std::string& name) const {
  std::string last;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "model/" + name + "|", [&](const std::string& key, const std::string&) {
    last = key;
    return true;
  }));
  if (last.empty()) return 0;
  CUSTODY_ASSIGN_OR_RETURN(auto version, parse_seq(last.substr(last.rfind('|') + 1), "index key " + last));
  return static_cast<int>(version);
}

Result<std::vector<std::string>> CustodyStore::key_versions() const {
  CUSTODY_ASSIGN_OR_RETURN(auto text, kv_->get("default", kKeyVersionsKey));
  if (!text) return std::vector<std::string>();
  json j = json::parse(*text, nullptr, false);
  std::vector<std::string> out;
  for (const auto& v : j.is_array() ? j : json::array({nullptr})) {
    if (!v.is_string()) return data_loss("the store's list of store key versions is damaged ('" + text->substr(0, 60) + "')");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Status CustodyStore::record_key_versions(const std::vector<std::string>& versions) {
  return kv_->apply({{"default", kKeyVersionsKey, json(versions).dump()}});
}

Result<BackupInfo> CustodyStore::backup(const std::string& dir, const BackupOptions& options) const {
  CUSTODY_ASSIGN_OR_RETURN(auto versions, key_versions());
  const json metadata{{"format", kStoreFormat}, {"store_keys", versions}, {"taken_at_ms", clock_.wall_ms()}};
  return kv_->backup(dir, metadata.dump(), options);
}

Result<std::vector<std::string>> CustodyStore::manifest_ids() const { return checkpoint_keys("manifest/"); }

Result<std::vector<std::string>> CustodyStore::blob_addresses() const { return checkpoint_keys("blob/"); }

Result<std::vector<std::string>> CustodyStore::checkpoint_keys(const std::string& prefix) const {
  std::vector<std::string> out;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("checkpoints", prefix, [&](const std::string& key, const std::string&) {
    out.push_back(key.substr(prefix.size()));
    return true;
  }));
  return out;
}

Result<std::optional<std::string>> CustodyStore::blob(const std::string& sha256) const {
  return kv_->get("checkpoints", "blob/" + sha256);
}

Result<std::optional<json>> CustodyStore::checkpoint(const std::string& id) const {
  CUSTODY_ASSIGN_OR_RETURN(auto v, kv_->get("checkpoints", "manifest/" + id));
  if (!v) return std::optional<json>();
  json j = json::parse(*v, nullptr, false);
  const std::string problem = j.is_discarded() ? "is not JSON" : check_manifest(j);
  if (!problem.empty()) {
    return data_loss("the manifest of checkpoint " + id + " is damaged: " + problem +
                     "; run `custody audit verify`");
  }
  if (j["id"] != id) {
    return data_loss("the manifest stored for checkpoint " + id + " is that of " + j["id"].get<std::string>() +
                     "; run `custody audit verify`");
  }
  return std::optional<json>(std::move(j));
}

Result<std::vector<json>> CustodyStore::checkpoints_of(const std::string& job_id) const {
  std::vector<std::string> ids;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("checkpoints", "run/" + job_id + "|", [&](const std::string&, const std::string& v) {
    ids.push_back(v);
    return true;
  }));
  std::vector<json> out;
  for (const auto& id : ids) {
    CUSTODY_ASSIGN_OR_RETURN(auto m, checkpoint(id));
    if (!m) {
      return data_loss("checkpoint " + id + " of " + job_id + " has no manifest; run `custody audit verify`");
    }
    if (m->value("job", "") != job_id) {
      return data_loss("the checkpoint list of " + job_id + " names " + id + ", a checkpoint of " +
                       m->value("job", "") + "; run `custody audit verify`");
    }
    out.push_back(*m);
  }
  return out;
}

std::string check_manifest(const json& m) {
  if (!m.is_object()) return "it is not an object";
  auto need = [&](const char* field, bool ok) { return ok ? std::string() : "field '" + std::string(field) + "' is missing or of the wrong type"; };
  for (const auto& problem :
       {need("id", m.contains("id") && m["id"].is_string()), need("job", m.contains("job") && m["job"].is_string()),
        need("step", m.contains("step") && m["step"].is_number_unsigned()),
        need("root_hash", m.contains("root_hash") && m["root_hash"].is_string()),
        need("parent", m.contains("parent") && m["parent"].is_string()),
        need("layer_sizes", m.contains("layer_sizes") && m["layer_sizes"].is_array()),
        need("tensors", m.contains("tensors") && m["tensors"].is_array())}) {
    if (!problem.empty()) return problem;
  }
  for (const auto& s : m["layer_sizes"]) {
    if (!s.is_number_unsigned() || s.get<uint64_t>() > (1u << 24)) return "a layer size is not a size";
  }
  // The optimizer state (checkpoint.h), optional: manifests from before it have none.
  if (m.contains("optimizer_state") && !m["optimizer_state"].is_array()) {
    return "field 'optimizer_state' is not a list";
  }
  for (const char* list : {"tensors", "optimizer_state"}) {
    for (const auto& t : m.value(list, json::array())) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("sha256") ||
          !t["sha256"].is_string() || !t.contains("shape") || !t["shape"].is_array()) {
        return "a tensor entry lacks its name, sha256 or shape";
      }
      // A sealed tensor (checkpoint.h) names its blob and the key version that sealed it.
      if (t.contains("sealed_sha256") &&
          (!t["sealed_sha256"].is_string() || !t.contains("store_key") || !t["store_key"].is_string())) {
        return "a sealed tensor entry lacks its sealed_sha256 or store_key";
      }
      for (const auto& d : t["shape"]) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > (1u << 28)) return "a tensor's shape is not a shape";
      }
    }
  }
  return "";
}

namespace {

// verify()'s walk over one chained log: order, links, hashes, head.
struct ChainCheck {
  std::string problem;
  uint64_t last_seq = 0;
  std::string last_hash;
};

}  // namespace

Result<VerifyReport> CustodyStore::verify() const {
  VerifyReport report;
  auto fail = [&](std::string problem) {
    report.ok = false;
    report.problem = std::move(problem);
    return report;
  };
  // Memory must not grow with the logs (a store of millions of records is verified in a
  // bounded footprint): every derived entry a record implies is looked up as the record is
  // read, and entries that nothing implies are found by counting afterwards. Only what is
  // small is held: checkpoint entities, usage sums (one per target, principal and action),
  // entries whose check must wait for a later record, and the first problem of each kind.
  std::map<std::string, json> checkpoint_entities;  // id -> entity body
  // id -> the SHA-256 its manifest must have: the entity's, or the last reseal event's.
  std::map<std::string, std::string> manifest_shas;
  std::map<std::string, uint64_t> log_ends;
  std::map<std::string, std::string> expected_sums;   // "usage-sum/..." -> value
  std::map<std::string, std::string> repointed;       // index key -> value the logs say, so far
  uint64_t index_matched = 0, tree_nodes_matched = 0;
  std::string first_missing, first_missing_node;
  uint64_t missing = 0;
  std::string kv_problem;
  // The audit log names, write by write, the records each write appended: together they
  // must cover each other log exactly, in order. A record removed from a log's end with
  // its head rewritten still leaves the audit record that named it.
  std::map<std::string, uint64_t> next{{lineage::kLineageLog, 1}, {lineage::kUsageLog, 1}};
  std::set<std::string> audited_checkpoints;
  auto check_audit = [&](const Record& a) -> std::string {
    for (auto& [log, expected_first] : next) {
      if (!a.body.contains(log)) continue;
      const json& range = a.body[log];
      if (range.size() != 2 || !range[0].is_number_unsigned() || !range[1].is_number_unsigned()) {
        return describe(a) + " names its " + log + " records in a damaged form";
      }
      const uint64_t first = range[0], last = range[1];
      if (first != expected_first || last < first) {
        return describe(a) + " says write '" + a.body.value("event", "") + "' appended " + log + " records " +
               std::to_string(first) + "-" + std::to_string(last) + ", but the " + log +
               " log's records before it end at " + std::to_string(expected_first - 1) +
               ": the audit log and the " + log + " log disagree";
      }
      expected_first = last + 1;
    }
    if (a.body.contains("checkpoint")) audited_checkpoints.insert(a.body["checkpoint"].get<std::string>());
    return "";
  };
  for (const std::string name : {lineage::kLineageLog, lineage::kUsageLog, lineage::kAuditLog}) {
    uint64_t expected = 1;
    std::string prev;
    std::string problem;
    MerkleFrontier tree;
    std::vector<MerkleSubtree> completed;
    CUSTODY_ASSIGN_OR_RETURN(auto stored_tree, kv_->get("default", tree_key(name)));
    CUSTODY_RETURN_IF_ERROR(kv_->scan(name, "", [&](const std::string& key, const std::string& value) {
      auto r = parse_record(name, value);
      if (!r.is_ok()) {
        problem = name + " record at key " + key + " is unreadable: " + r.status().message();
        return false;
      }
      const Record& rec = r.value();
      if (key != seq_key(rec.seq)) {
        problem = describe(rec) + " is stored under key " + key + ": records were reordered";
        return false;
      }
      if (rec.seq != expected) {
        problem = name + " record " + std::to_string(expected) + " is missing (the log jumps from " +
                  std::to_string(expected - 1) + " to " + std::to_string(rec.seq) + "): a record was removed";
        return false;
      }
      if (rec.prev_hash != prev) {
        problem = describe(rec) + " does not chain to record " + std::to_string(expected - 1) +
                  ": records were reordered or replaced";
        return false;
      }
      if (record_hash(name, rec.seq, rec.prev_hash, rec.time_ms, rec.body) != rec.hash) {
        problem = describe(rec) + " was changed: its content does not match its hash";
        return false;
      }
      auto entries = index_entries(name, rec.seq, rec.body);
      std::sort(entries.begin(), entries.end());
      entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
      for (auto& [k, v] : entries) {
        auto stored = kv_->get("index", k);
        if (!stored.is_ok()) {
          kv_problem = stored.status().message();
          return false;
        }
        if (!stored.value()) {
          if (missing++ == 0) first_missing = k;
        } else if (*stored.value() != v) {
          repointed[k] = v;  // unless a later record puts this key as stored (the later put wins)
        } else {
          repointed.erase(k);
          ++index_matched;
        }
      }
      if (const std::string sum = usage_sum_key(name, rec.body); !sum.empty()) {
        expected_sums[sum] = add_to_usage_sum(expected_sums[sum], rec.time_ms, rec.body);
      }
      if (name == lineage::kLineageLog && rec.body["type"] == lineage::kEntity && rec.body["kind"] == lineage::kind::kCheckpoint) {
        checkpoint_entities.emplace(rec.body["id"].get<std::string>(), rec.body);
        if (rec.body.contains("manifest_sha256")) manifest_shas[rec.body["id"]] = rec.body["manifest_sha256"];
      }
      if (name == lineage::kLineageLog && rec.body["type"] == lineage::kEvent &&
          rec.body["event"] == lineage::event::kCheckpointResealed) {
        // A rekey wrote the manifest again (its tensors sealed under a new key): from here
        // on the manifest must be the one this chained record names.
        const std::string id = rec.body["checkpoint"];
        if (!checkpoint_entities.count(id)) {
          problem = describe(rec) + " reseals checkpoint " + id + ", which the lineage log has not recorded before it";
          return false;
        }
        manifest_shas[id] = rec.body["manifest_sha256"];
      }
      if (name == lineage::kAuditLog) {
        problem = check_audit(rec);
        if (!problem.empty()) return false;
      }
      completed.clear();
      (void)tree.append(record_leaf_hash(rec.hash), &completed);  // a 32-byte hash: cannot fail
      for (const auto& node : completed) {
        if (node.level < kCachedLevel) continue;
        // The kept subtree roots that proofs read.
        const std::string node_key = tree_node_key(name, node.level, node.index);
        auto stored = kv_->get("default", node_key);
        if (!stored.is_ok()) {
          kv_problem = stored.status().message();
          return false;
        }
        if (stored.value() && *stored.value() != to_hex(node.hash)) {
          problem = "Merkle tree entry " + node_key + " does not match its records: it was changed";
          return false;
        }
        if (stored.value()) {
          ++tree_nodes_matched;
        } else if (stored_tree && first_missing_node.empty()) {
          first_missing_node = node_key;  // a store written before Merkle logs has none yet
        }
      }
      prev = rec.hash;
      ++expected;
      ++report.records_checked;
      return true;
    }));
    if (!kv_problem.empty()) return data_loss(kv_problem);
    if (!problem.empty()) return fail(problem);
    auto h = head(name);
    if (!h.is_ok()) return fail(h.status().message());
    if (h->first != expected - 1 || h->second != prev) {
      return fail("the " + name + " log ends at record " + std::to_string(expected - 1) + " but its head says " +
                  std::to_string(h->first) + ": records were removed from its end");
    }
    log_ends[name] = expected - 1;
    // The log's Merkle tree, as stored, must be the one its records make: proofs and
    // signed heads are computed from it.
    if (!stored_tree) {
      if (tree.size() > 0) {
        report.notes += "the " + name + " log has no Merkle tree yet (a store written before Merkle logs; the next "
                        "write builds it). ";
      }
    } else if (*stored_tree != tree.serialize()) {
      return fail("the Merkle tree of the " + name + " log does not match its records (it says '" +
                  stored_tree->substr(0, 60) + "…'): it was changed");
    }
    report.heads.push_back(TreeHeadInfo{name, tree.size(), to_hex(tree.root())});
  }

  for (const auto& [log, expected_first] : next) {
    if (expected_first - 1 != log_ends[log]) {
      return fail("the audit log says the " + log + " log holds " + std::to_string(expected_first - 1) +
                  " records, but it holds " + std::to_string(log_ends[log]) +
                  (expected_first - 1 > log_ends[log] ? ": records were removed from its end"
                                                      : ": records were added without an audit record"));
    }
  }

  // The index, rebuilt from the logs: every entry a record implies is stored as the writer
  // put it (a re-pointed entry would make `lineage show` answer with another record), and
  // nothing else is there.
  if (missing > 0) {
    return fail("index entry " + first_missing + " is missing (the logs hold its record; " + std::to_string(missing) +
                " entries missing in all)");
  }
  for (const auto& [key, value] : repointed) {
    CUSTODY_ASSIGN_OR_RETURN(auto stored, kv_->get("index", key));
    return fail("index entry " + key + " says '" + stored.value_or("").substr(0, 60) + "' but the logs say '" +
                value + "': it was re-pointed");
  }
  // An entry the logs do not imply: named by finding the one whose record does not imply it.
  auto backed = [&](const std::string& key, const std::string& value) {
    auto starts = [&](const char* p) { return key.rfind(p, 0) == 0; };
    std::string log = lineage::kLineageLog, seq_text = value;
    if (starts("out/") || starts("in/") || starts("usage/")) {
      seq_text = key.substr(key.rfind('|') + 1);
      if (starts("usage/")) log = lineage::kUsageLog;
    } else if (starts("prediction/") || starts("call/")) {
      log = lineage::kUsageLog;
    } else if (starts("model/")) {
      auto e = kv_->get("index", "entity/" + value);
      if (!e.is_ok() || !e.value()) return false;
      seq_text = *e.value();
    } else if (!starts("entity/")) {
      return false;
    }
    auto seq = parse_seq(seq_text, key);
    if (!seq.is_ok() || seq.value() == 0 || seq.value() > log_ends[log]) return false;
    auto r = load(log, seq.value());
    if (!r.is_ok()) return false;
    for (const auto& [k, v] : index_entries(log, r->seq, r->body))
      if (k == key && v == value) return true;
    return false;
  };
  std::string problem;
  uint64_t stored_entries = 0;
  auto is_sum = [](const std::string& key) { return key.rfind("usage-sum/", 0) == 0; };
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "", [&](const std::string& key, const std::string&) {
    if (!is_sum(key)) ++stored_entries;
    return true;
  }));
  if (stored_entries != index_matched) {
    CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "", [&](const std::string& key, const std::string& value) {
      if (is_sum(key) || backed(key, value)) return true;
      problem = "index entry " + key + " is backed by no record of the logs: it was added behind the store's back";
      return false;
    }));
    if (problem.empty()) {
      problem = "the index holds " + std::to_string(stored_entries) + " entries but the logs imply " +
                std::to_string(index_matched) + ": an entry was added behind the store's back";
    }
    return fail(problem);
  }
  report.index_entries_checked = index_matched;

  // The usage sums, rebuilt from the usage log (a store written before them has none yet).
  CUSTODY_ASSIGN_OR_RETURN(auto marker, kv_->get("default", kUsageSumsKey));
  if (!marker) {
    if (log_ends[lineage::kUsageLog] > 0) {
      report.notes += "the usage log has no usage sums yet (a store written before them; the next write builds "
                      "them). ";
    }
    expected_sums.clear();
  } else if (*marker != std::to_string(log_ends[lineage::kUsageLog])) {
    return fail("the usage sums say they cover " + marker->substr(0, 20) + " usage records, but the log holds " +
                std::to_string(log_ends[lineage::kUsageLog]) + ": they were changed");
  }
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "usage-sum/", [&](const std::string& key, const std::string& value) {
    auto it = expected_sums.find(key);
    if (it == expected_sums.end()) {
      problem = "index entry " + key + " is backed by no record of the logs: it was added behind the store's back";
      return false;
    }
    if (it->second != value) {
      problem = "index entry " + key + " says '" + value.substr(0, 80) + "' but the usage log sums to '" + it->second +
                "': it was changed";
      return false;
    }
    expected_sums.erase(it);
    ++report.index_entries_checked;
    return true;
  }));
  if (!problem.empty()) return fail(problem);
  if (!expected_sums.empty()) return fail("index entry " + expected_sums.begin()->first + " is missing");

  // The kept subtree roots: each one the logs imply was found above; none is extra.
  if (!first_missing_node.empty()) return fail("Merkle tree entry " + first_missing_node + " is missing");
  uint64_t stored_nodes = 0;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("default", "tree-node/", [&](const std::string&, const std::string&) {
    ++stored_nodes;
    return true;
  }));
  if (stored_nodes != tree_nodes_matched) {
    // Every implied entry was found, so an extra one names a subtree the logs do not have.
    std::string extra;
    CUSTODY_RETURN_IF_ERROR(kv_->scan("default", "tree-node/", [&](const std::string& key, const std::string&) {
      // "tree-node/<log>/<level>/<index>": a subtree of 2^level leaves from index * 2^level.
      const size_t a = key.find('/', 10), b = key.rfind('/');
      const std::string log = key.substr(10, a - 10);
      const uint64_t level = std::strtoull(key.c_str() + a + 1, nullptr, 10);
      const uint64_t index = std::strtoull(key.c_str() + b + 1, nullptr, 10);
      const auto end = log_ends.find(log);
      if (end == log_ends.end() || level >= 64 || (index + 1) > (end->second >> level) ||
          key != tree_node_key(log, static_cast<uint32_t>(level), index)) {
        extra = key;
        return false;
      }
      return true;
    }));
    return fail("Merkle tree entry " + (extra.empty() ? std::string("under tree-node/") : extra) +
                " is backed by no records: it was changed");
  }

  // Checkpoints: each manifest is the one its chained entity describes, the run lists name
  // them, every tensor's bytes still hash to its address, and the root covers the tensors.
  std::map<std::string, std::string> expected_runs;  // "run/<job>|<step>" -> id
  for (const auto& [id, e] : checkpoint_entities) {
    expected_runs["run/" + e["job"].get<std::string>() + "|" + seq_key(e["step"].get<uint64_t>())] = id;
  }
  std::set<std::string> manifests_seen;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("checkpoints", "", [&](const std::string& key, const std::string& value) {
    if (key.rfind("blob/", 0) == 0) return true;  // checked through the manifests that name them
    if (key.rfind("run/", 0) == 0) {
      auto it = expected_runs.find(key);
      if (it == expected_runs.end() || it->second != value) {
        problem = "checkpoint list entry " + key + " names '" + value.substr(0, 40) + "', but the lineage log " +
                  (it == expected_runs.end() ? "records no checkpoint there" : "says it is " + it->second) +
                  ": it was changed";
        return false;
      }
      expected_runs.erase(it);
      return true;
    }
    if (key.rfind("manifest/", 0) != 0) {
      problem = "checkpoints entry " + key + " is of no kind the store writes";
      return false;
    }
    const std::string id = key.substr(9);
    json m = json::parse(value, nullptr, false);
    std::string bad = m.is_discarded() ? "is not JSON" : check_manifest(m);
    if (!bad.empty()) {
      problem = "the manifest of checkpoint " + id + " is damaged: " + bad;
      return false;
    }
    auto e = checkpoint_entities.find(id);
    if (e == checkpoint_entities.end() || !audited_checkpoints.count(id)) {
      problem = "the manifest of checkpoint " + id + " belongs to no checkpoint of the lineage and audit logs: " +
                "it was added behind the store's back";
      return false;
    }
    const json& entity = e->second;
    if (auto sha = manifest_shas.find(id); sha != manifest_shas.end() && sha256_hex(value) != sha->second) {
      problem = "the manifest of checkpoint " + id + " was changed: it does not match the SHA-256 its lineage record " +
                "keeps";
      return false;
    }
    for (const char* field : {"id", "job", "step", "root_hash"}) {
      const json expected = std::string(field) == "id" ? json(id) : entity[field];
      if (m[field] != expected) {
        problem = "the manifest of checkpoint " + id + " says " + field + " " + m[field].dump() +
                  " but its lineage record says " + expected.dump() + ": it was changed";
        return false;
      }
    }
    manifests_seen.insert(id);
    std::string roots;
    // Every tensor, weights and optimizer state: its stored bytes hash to their address
    // (for a sealed tensor the sealed bytes: checkable without the key); with the key,
    // it also opens as the tensor of this checkpoint (the aad) and its plaintext hashes
    // to the manifest's sha256, which the root hash covers.
    auto check_tensor = [&](const json& t, const std::string& what) {
      const std::string name = t["name"];
      auto bytes = kv_->get("checkpoints", "blob/" + tensor_address(t));
      if (!bytes.is_ok() || !bytes.value()) {
        problem = what + " " + name + " of checkpoint " + id + " is missing";
        return false;
      }
      if (sha256_hex(*bytes.value()) != tensor_address(t)) {
        problem = what + " " + name + " of checkpoint " + id + " was changed: its bytes do not match their SHA-256";
        return false;
      }
      ++report.blobs_checked;
      if (!is_sealed(t)) {
        ++report.tensors_in_clear;
      } else if (!keys_) {
        ++report.tensors_sealed_unopened;
      } else {
        auto plain = open_tensor(keys_.get(), id, t, *bytes.value(), what + " " + name);
        if (!plain.is_ok()) {
          problem = plain.status().message();
          return false;
        }
        ++report.tensors_opened;
      }
      return true;
    };
    for (const auto& t : m["tensors"]) {
      if (!check_tensor(t, "tensor")) return false;
      roots += t["name"].get<std::string>() + ":" + t["sha256"].get<std::string>() + "\n";
    }
    // The optimizer state's tensors, like the weights'; outside the root hash (checkpoint.h).
    for (const auto& t : m.value("optimizer_state", json::array())) {
      if (!check_tensor(t, "optimizer tensor")) return false;
    }
    if (sha256_hex(roots) != m["root_hash"]) {
      problem = "checkpoint " + id + " has a root hash that does not cover its tensors";
      return false;
    }
    return true;
  }));
  if (!problem.empty()) return fail(problem);
  for (const auto& [id, e] : checkpoint_entities) {
    if (!manifests_seen.count(id)) return fail("the manifest of checkpoint " + id + " is missing");
  }
  if (!expected_runs.empty()) {
    return fail("checkpoint list entry " + expected_runs.begin()->first + " (" + expected_runs.begin()->second +
                ") is missing");
  }
  if (report.tensors_sealed_unopened > 0) {
    report.notes += std::to_string(report.tensors_sealed_unopened) +
                    " sealed tensors were checked by their sealed bytes only: without the store key they cannot be "
                    "opened to check their plaintext against the root hashes (give --store-key). ";
  }
  if (report.tensors_in_clear > 0) {
    report.notes += std::to_string(report.tensors_in_clear) +
                    " tensors are stored in clear (written before encryption at rest); `custody store rekey` seals "
                    "them. ";
  }
  return report;
}

}  // namespace custody::storage
