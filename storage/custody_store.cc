#include "storage/custody_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "core/hash.h"
#include "core/hex.h"
#include "storage/record_schema.h"

namespace custody::storage {
namespace {

const char* kFormat = "custody-store-v1";

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

const std::vector<std::string>& merkle_logs() {
  static const std::vector<std::string> kLogs{"lineage", "usage", "audit"};
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
  return sha256_hex(log + "\n" + std::to_string(seq) + "\n" + prev + "\n" + std::to_string(time_ms) + "\n" +
                    body.dump());
}

json Record::to_json() const {
  return json{{"log", log}, {"seq", seq}, {"prev", prev_hash}, {"hash", hash}, {"time_ms", time_ms}, {"body", body}};
}

void Batch::entity(const std::string& kind, const std::string& id, json attributes) {
  json body = std::move(attributes);
  body["type"] = "entity";
  body["kind"] = kind;
  body["id"] = sanitize(id);
  lineage_.push_back(std::move(body));
}

void Batch::relation(const std::string& rel, const std::string& from, const std::string& to, json attributes) {
  json body = std::move(attributes);
  body["type"] = "relation";
  body["rel"] = rel;
  body["from"] = sanitize(from);
  body["to"] = sanitize(to);
  lineage_.push_back(std::move(body));
}

void Batch::event(json body) {
  body["type"] = "event";
  lineage_.push_back(std::move(body));
}

void Batch::usage(json body) {
  body["type"] = "usage";
  usage_.push_back(std::move(body));
}

void Batch::blob(const std::string& sha256, std::string bytes) { blobs_.emplace_back(sha256, std::move(bytes)); }

void Batch::checkpoint(json manifest) { manifests_.push_back(std::move(manifest)); }

CustodyStore::CustodyStore(std::unique_ptr<KeyValue> kv) : kv_(std::move(kv)) {}

Result<std::unique_ptr<CustodyStore>> CustodyStore::open(const std::string& path, OpenMode mode) {
  auto kv = open_rocksdb(path, mode);
  if (!kv.is_ok()) return kv.status();
  auto format = kv.value()->get("default", "format");
  if (!format.is_ok()) return format.status();
  if (!format.value()) {
    if (mode != OpenMode::kReadWrite) return data_loss("'" + path + "' is a RocksDB database but not a custody store");
    // A new store: is it really empty? A RocksDB database of another program is not ours.
    bool empty = true;
    for (const auto& family : column_families()) {
      CUSTODY_RETURN_IF_ERROR(kv.value()->scan(family, "", [&](const std::string&, const std::string&) {
        empty = false;
        return false;
      }));
    }
    if (!empty) return failed_precondition("'" + path + "' is a RocksDB database of another program, not a custody store");
    CUSTODY_RETURN_IF_ERROR(kv.value()->apply({{"default", "format", kFormat}}));
  } else if (*format.value() != kFormat) {
    return failed_precondition("'" + path + "' is a custody store of format '" + *format.value() +
                               "', which this build does not read (it reads " + kFormat + ")");
  }
  return std::make_unique<CustodyStore>(std::move(kv).value());
}

std::unique_ptr<CustodyStore> CustodyStore::in_memory() {
  auto kv = make_memory_key_value();
  (void)kv->apply({{"default", "format", kFormat}});
  return std::make_unique<CustodyStore>(std::move(kv));
}

Result<std::pair<uint64_t, std::string>> CustodyStore::head(const std::string& log) const {
  auto h = kv_->get("default", "head/" + log);
  if (!h.is_ok()) return h.status();
  if (!h.value()) return std::make_pair(uint64_t(0), std::string());
  json j = json::parse(*h.value(), nullptr, false);
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
  if (log == "lineage" && type == "entity") {
    out.emplace_back("entity/" + body["id"].get<std::string>(), seq_key(seq));
    if (body.value("kind", "") == "model_version") {
      char version[16];
      std::snprintf(version, sizeof(version), "%010d", body.value("version", 0));
      out.emplace_back("model/" + body.value("name", std::string()) + "|" + version, body["id"]);
    }
  } else if (log == "lineage" && type == "relation") {
    const std::string rel = body["rel"], from = body["from"], to = body["to"];
    out.emplace_back("out/" + from + "|" + rel + "|" + seq_key(seq), to);
    out.emplace_back("in/" + to + "|" + rel + "|" + seq_key(seq), from);
  } else if (log == "usage" && body.contains("target")) {
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

Result<uint64_t> CustodyStore::append(const std::string& log, const std::vector<json>& bodies, int64_t now,
                                      std::vector<Put>& puts, std::string& head_hash, uint64_t& head_seq,
                                      Inclusion* last) const {
  auto tree = frontier(log, head_seq);
  if (!tree.is_ok()) return tree.status();
  const uint64_t first = head_seq + 1;
  std::vector<MerkleSubtree> completed;
  for (const json& body : bodies) {
    const uint64_t seq = ++head_seq;
    const std::string hash = record_hash(log, seq, head_hash, now, body);
    json stored{{"seq", seq}, {"prev", head_hash}, {"hash", hash}, {"time_ms", now}, {"body", body}};
    puts.push_back({log, seq_key(seq), stored.dump()});
    head_hash = hash;
    // Entities are indexed once: the first record of an id is the one that counts.
    for (auto& [key, value] : index_entries(log, seq, body)) puts.push_back({"index", std::move(key), std::move(value)});
    if (last && seq == first + bodies.size() - 1) {
      // The newest leaf's audit path is the frontier before it, smallest subtree first
      // (RFC 6962 PATH(n-1, D[n]) takes MTH(D[0:k]) at each split): no reads at all.
      last->log = log;
      last->seq = seq;
      last->record = stored;
      last->proof.assign(tree->nodes().rbegin(), tree->nodes().rend());
    }
    CUSTODY_RETURN_IF_ERROR(tree->append(record_leaf_hash(hash), &completed));
  }
  for (const auto& node : completed) {
    if (node.level >= kCachedLevel) puts.push_back({"default", tree_node_key(log, node.level, node.index), to_hex(node.hash)});
  }
  puts.push_back({"default", tree_key(log), tree->serialize()});
  puts.push_back({"default", "head/" + log, json{{"seq", head_seq}, {"hash", head_hash}}.dump()});
  if (last && last->log == log) {
    last->tree_size = tree->size();
    last->root = tree->root();
  }
  return first;
}

Result<MerkleFrontier> CustodyStore::frontier(const std::string& log, uint64_t head_seq) const {
  auto text = kv_->get("default", tree_key(log));
  if (!text.is_ok()) return text.status();
  if (text.value()) {
    auto tree = MerkleFrontier::parse(*text.value());
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
  auto h = head(log);
  if (!h.is_ok()) return h.status();
  auto tree = frontier(log, h->first);
  if (!tree.is_ok()) return tree.status();
  return TreeHeadInfo{log, tree->size(), to_hex(tree->root())};
}

MerkleNodeReader CustodyStore::tree_reader(const std::string& log) const {
  MerkleNodeReader reader;
  reader.leaf_hash = [this, log](uint64_t index) -> Result<std::string> {
    auto r = load(log, index + 1);
    if (!r.is_ok()) return r.status();
    return record_leaf_hash(r->hash);
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

Status CustodyStore::write(const Batch& batch, Inclusion* last_usage) {
  std::lock_guard<std::mutex> lock(write_mu_);
  const int64_t now = wall_ms();
  // Entities are written once: drop those already stored or repeated in this batch.
  std::vector<json> lineage;
  std::set<std::string> new_ids;
  for (const json& body : batch.lineage_) {
    if (body["type"] == "entity") {
      const std::string id = body["id"];
      auto known = kv_->get("index", "entity/" + id);
      if (!known.is_ok()) return known.status();
      if (known.value() || !new_ids.insert(id).second) continue;
    }
    lineage.push_back(body);
  }
  // A record this store's readers would call damaged is a writer's bug: refuse it here,
  // where the stack names the writer, not at the auditor's query months later.
  const std::vector<std::pair<const char*, const std::vector<json>*>> to_check{{"lineage", &lineage},
                                                                              {"usage", &batch.usage_}};
  for (const auto& [log, bodies] : to_check) {
    for (const json& body : *bodies) {
      Record r;
      r.log = log;
      r.body = body;
      Status shape = check_record(r);
      if (!shape.is_ok()) return internal_error("refused to write " + shape.message());
    }
  }
  std::vector<Put> puts;
  json audit{{"event", batch.event_}};
  const std::vector<std::pair<std::string, const std::vector<json>*>> logs{{"lineage", &lineage},
                                                                           {"usage", &batch.usage_}};
  for (const auto& [log, bodies] : logs) {
    if (bodies->empty()) continue;
    auto h = head(log);
    if (!h.is_ok()) return h.status();
    uint64_t seq = h->first;
    std::string hash = h->second;
    auto first = append(log, *bodies, now, puts, hash, seq, log == "usage" ? last_usage : nullptr);
    if (!first.is_ok()) return first.status();
    audit[log] = json::array();
    audit[log].push_back(first.value());
    audit[log].push_back(seq);
  }
  for (const auto& [sha, bytes] : batch.blobs_) puts.push_back({"checkpoints", "blob/" + sha, bytes});
  for (const json& m : batch.manifests_) {
    const std::string id = m["id"];
    puts.push_back({"checkpoints", "manifest/" + id, m.dump()});
    puts.push_back({"checkpoints", "run/" + m["job"].get<std::string>() + "|" + seq_key(m["step"].get<uint64_t>()), id});
    audit["checkpoint"] = id;
  }
  auto h = head("audit");
  if (!h.is_ok()) return h.status();
  uint64_t seq = h->first;
  std::string hash = h->second;
  auto first = append("audit", {audit}, now, puts, hash, seq);
  if (!first.is_ok()) return first.status();
  return kv_->apply(puts);
}

Result<Record> CustodyStore::load(const std::string& log, uint64_t seq) const {
  auto v = kv_->get(log, seq_key(seq));
  if (!v.is_ok()) return v.status();
  if (!v.value()) {
    return data_loss(log + " record " + std::to_string(seq) +
                     " is missing, though the index names it; run `custody audit verify`");
  }
  auto r = parse_record(log, *v.value());
  if (!r.is_ok()) return r.status();
  if (r->seq != seq) {
    return data_loss(log + " record " + std::to_string(seq) + " holds record " + std::to_string(r->seq) +
                     ": records were moved; run `custody audit verify`");
  }
  return r;
}

Result<Record> CustodyStore::load_indexed(const std::string& log, const std::string& index_key,
                                          const std::string& seq_text) const {
  auto seq = parse_seq(seq_text, "index entry " + index_key);
  if (!seq.is_ok()) return seq.status();
  return load(log, seq.value());
}

Result<std::optional<Record>> CustodyStore::entity(const std::string& id) const {
  const std::string key = "entity/" + id;
  auto seq = kv_->get("index", key);
  if (!seq.is_ok()) return seq.status();
  if (!seq.value()) return std::optional<Record>();
  auto r = load_indexed("lineage", key, *seq.value());
  if (!r.is_ok()) return r.status();
  // The index is derived, not chained: one re-pointed entry would answer with another
  // record. What it points to must be what it names.
  if (r->body.value("type", "") != "entity" || r->body.value("id", "") != id) {
    return data_loss("index entry " + key + " points to " + describe(r.value()) +
                     ", which is not that entity; run `custody audit verify`");
  }
  return std::optional<Record>(std::move(r).value());
}

Result<std::vector<Record>> CustodyStore::relations(const std::string& id, Direction direction,
                                                    const std::string& rel) const {
  const std::string prefix = (direction == Direction::kOut ? "out/" : "in/") + id + "|" + (rel.empty() ? "" : rel + "|");
  auto records = indexed("lineage", prefix);
  if (!records.is_ok()) return records.status();
  for (const Record& r : records.value()) {
    const char* end = direction == Direction::kOut ? "from" : "to";
    if (r.body.value("type", "") != "relation" || r.body.value(end, "") != id ||
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
  auto all = log("lineage");
  if (!all.is_ok()) return all.status();
  std::vector<Record> out;
  for (auto& r : all.value()) {
    bool match = true;
    for (auto it = filter.begin(); it != filter.end() && match; ++it) {
      match = r.body.contains(it.key()) && r.body[it.key()] == it.value();
    }
    if (match) out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<Record>> CustodyStore::usage_of(const std::string& target) const {
  auto records = indexed("usage", "usage/" + target + "|");
  if (!records.is_ok()) return records.status();
  for (const Record& r : records.value()) {
    if (r.body.value("target", "") != target) {
      return data_loss("an index entry under usage/" + target + " points to " + describe(r) +
                       ", a use of another target; run `custody audit verify`");
    }
  }
  return records;
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
    auto r = load(log, seq);
    if (!r.is_ok()) return r.status();
    out.push_back(std::move(r).value());
  }
  return out;
}

Result<std::optional<Record>> CustodyStore::usage_record(const std::string& index_key, const std::string& id,
                                                         const char* field) const {
  auto seq = kv_->get("index", index_key);
  if (!seq.is_ok()) return seq.status();
  if (!seq.value()) return std::optional<Record>();
  auto r = load_indexed("usage", index_key, *seq.value());
  if (!r.is_ok()) return r.status();
  bool names_it = false;
  if (const auto it = r->body.find(field); it != r->body.end()) {
    if (it->is_array()) {
      for (const auto& x : *it) names_it = names_it || x == id;
    } else {
      names_it = *it == id;
    }
  }
  if (!names_it) {
    return data_loss("index entry " + index_key + " points to " + describe(r.value()) +
                     ", which does not hold it; run `custody audit verify`");
  }
  return std::optional<Record>(std::move(r).value());
}

Result<std::optional<Record>> CustodyStore::prediction(const std::string& prediction_id) const {
  return usage_record("prediction/" + prediction_id, prediction_id, "prediction_ids");
}

Result<std::optional<Record>> CustodyStore::call(const std::string& id) const {
  return usage_record("call/" + id, id, id.rfind("use-", 0) == 0 ? "usage_id" : "call_id");
}

Result<int> CustodyStore::newest_model_version(const std::string& name) const {
  std::string last;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "model/" + name + "|", [&](const std::string& key, const std::string&) {
    last = key;
    return true;
  }));
  if (last.empty()) return 0;
  auto version = parse_seq(last.substr(last.rfind('|') + 1), "index key " + last);
  if (!version.is_ok()) return version.status();
  return static_cast<int>(version.value());
}

Result<std::optional<std::string>> CustodyStore::blob(const std::string& sha256) const {
  return kv_->get("checkpoints", "blob/" + sha256);
}

Result<std::optional<json>> CustodyStore::checkpoint(const std::string& id) const {
  auto v = kv_->get("checkpoints", "manifest/" + id);
  if (!v.is_ok()) return v.status();
  if (!v.value()) return std::optional<json>();
  json j = json::parse(*v.value(), nullptr, false);
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
    auto m = checkpoint(id);
    if (!m.is_ok()) return m.status();
    if (!m.value()) {
      return data_loss("checkpoint " + id + " of " + job_id + " has no manifest; run `custody audit verify`");
    }
    if (m.value()->value("job", "") != job_id) {
      return data_loss("the checkpoint list of " + job_id + " names " + id + ", a checkpoint of " +
                       m.value()->value("job", "") + "; run `custody audit verify`");
    }
    out.push_back(*m.value());
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
  // What the chained logs say the derived families must hold.
  std::map<std::string, std::string> expected_index;
  std::map<std::string, json> checkpoint_entities;  // id -> entity body
  std::map<std::string, uint64_t> log_ends;
  std::vector<Record> audit_records;
  std::map<std::string, std::string> expected_tree_nodes;  // "tree-node/..." -> hex
  for (const std::string name : {"lineage", "usage", "audit"}) {
    uint64_t expected = 1;
    std::string prev;
    std::string problem;
    MerkleFrontier tree;
    std::vector<MerkleSubtree> completed;
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
      // As the writer's puts landed: a later entry under the same key replaces the earlier.
      for (auto& [k, v] : index_entries(name, rec.seq, rec.body)) expected_index[std::move(k)] = std::move(v);
      if (name == "lineage" && rec.body["type"] == "entity" && rec.body["kind"] == "checkpoint") {
        checkpoint_entities.emplace(rec.body["id"].get<std::string>(), rec.body);
      }
      if (name == "audit") audit_records.push_back(rec);
      completed.clear();
      (void)tree.append(record_leaf_hash(rec.hash), &completed);  // a 32-byte hash: cannot fail
      for (const auto& node : completed) {
        if (node.level >= kCachedLevel) expected_tree_nodes[tree_node_key(name, node.level, node.index)] = to_hex(node.hash);
      }
      prev = rec.hash;
      ++expected;
      ++report.records_checked;
      return true;
    }));
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
    auto stored_tree = kv_->get("default", tree_key(name));
    if (!stored_tree.is_ok()) return stored_tree.status();
    if (!stored_tree.value()) {
      if (tree.size() > 0) {
        report.notes += "the " + name + " log has no Merkle tree yet (a store written before Merkle logs; the next "
                        "write builds it). ";
      }
    } else if (*stored_tree.value() != tree.serialize()) {
      return fail("the Merkle tree of the " + name + " log does not match its records (it says '" +
                  stored_tree.value()->substr(0, 60) + "…'): it was changed");
    }
    report.heads.push_back(TreeHeadInfo{name, tree.size(), to_hex(tree.root())});
  }

  // The audit log names, write by write, the records each write appended: together they
  // must cover each other log exactly, in order. A record removed from a log's end with
  // its head rewritten still leaves the audit record that named it.
  std::map<std::string, uint64_t> next{{"lineage", 1}, {"usage", 1}};
  std::set<std::string> audited_checkpoints;
  for (const Record& a : audit_records) {
    for (auto& [log, expected_first] : next) {
      if (!a.body.contains(log)) continue;
      const json& range = a.body[log];
      if (range.size() != 2 || !range[0].is_number_unsigned() || !range[1].is_number_unsigned()) {
        return fail(describe(a) + " names its " + log + " records in a damaged form");
      }
      const uint64_t first = range[0], last = range[1];
      if (first != expected_first || last < first) {
        return fail(describe(a) + " says write '" + a.body.value("event", "") + "' appended " + log + " records " +
                    std::to_string(first) + "-" + std::to_string(last) + ", but the " + log +
                    " log's records before it end at " + std::to_string(expected_first - 1) +
                    ": the audit log and the " + log + " log disagree");
      }
      expected_first = last + 1;
    }
    if (a.body.contains("checkpoint")) audited_checkpoints.insert(a.body["checkpoint"].get<std::string>());
  }
  for (const auto& [log, expected_first] : next) {
    if (expected_first - 1 != log_ends[log]) {
      return fail("the audit log says the " + log + " log holds " + std::to_string(expected_first - 1) +
                  " records, but it holds " + std::to_string(log_ends[log]) +
                  (expected_first - 1 > log_ends[log] ? ": records were removed from its end"
                                                      : ": records were added without an audit record"));
    }
  }

  // The index: rebuilt from the logs and compared entry by entry. A re-pointed entry
  // would make `lineage show` answer with another record.
  std::string problem;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "", [&](const std::string& key, const std::string& value) {
    auto it = expected_index.find(key);
    if (it == expected_index.end()) {
      problem = "index entry " + key + " is backed by no record of the logs: it was added behind the store's back";
      return false;
    }
    if (it->second != value) {
      problem = "index entry " + key + " says '" + value.substr(0, 60) + "' but the logs say '" + it->second +
                "': it was re-pointed";
      return false;
    }
    expected_index.erase(it);
    ++report.index_entries_checked;
    return true;
  }));
  if (!problem.empty()) return fail(problem);
  if (!expected_index.empty()) {
    return fail("index entry " + expected_index.begin()->first + " is missing (the logs hold its record; " +
                std::to_string(expected_index.size()) + " entries missing in all)");
  }

  // The kept subtree roots that proofs read.
  CUSTODY_RETURN_IF_ERROR(kv_->scan("default", "tree-node/", [&](const std::string& key, const std::string& value) {
    auto it = expected_tree_nodes.find(key);
    if (it == expected_tree_nodes.end() || it->second != value) {
      problem = "Merkle tree entry " + key + " " +
                (it == expected_tree_nodes.end() ? std::string("is backed by no records") : "does not match its records") +
                ": it was changed";
      return false;
    }
    expected_tree_nodes.erase(it);
    return true;
  }));
  if (!problem.empty()) return fail(problem);
  if (!expected_tree_nodes.empty() && report.notes.empty()) {
    return fail("Merkle tree entry " + expected_tree_nodes.begin()->first + " is missing");
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
    if (entity.contains("manifest_sha256") && sha256_hex(value) != entity["manifest_sha256"]) {
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
    for (const auto& t : m["tensors"]) {
      const std::string sha = t["sha256"], name = t["name"];
      auto bytes = kv_->get("checkpoints", "blob/" + sha);
      if (!bytes.is_ok() || !bytes.value()) {
        problem = "tensor " + name + " of checkpoint " + id + " is missing";
        return false;
      }
      if (sha256_hex(*bytes.value()) != sha) {
        problem = "tensor " + name + " of checkpoint " + id + " was changed: its bytes do not match their SHA-256";
        return false;
      }
      roots += name + ":" + sha + "\n";
      ++report.blobs_checked;
    }
    // The optimizer state's blobs, like the weights'; outside the root hash (checkpoint.h).
    for (const auto& t : m.value("optimizer_state", json::array())) {
      const std::string sha = t["sha256"], name = t["name"];
      auto bytes = kv_->get("checkpoints", "blob/" + sha);
      if (!bytes.is_ok() || !bytes.value() || sha256_hex(*bytes.value()) != sha) {
        problem = "optimizer tensor " + name + " of checkpoint " + id + " is " +
                  (!bytes.is_ok() || !bytes.value() ? "missing" : "changed: its bytes do not match their SHA-256");
        return false;
      }
      ++report.blobs_checked;
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
  return report;
}

}  // namespace custody::storage
