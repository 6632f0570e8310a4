#include "storage/custody_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "core/hash.h"

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
  return r;
}

std::string describe(const Record& r) {
  std::string what = r.body.value("type", "record");
  if (r.body.contains("kind")) what += " " + r.body["kind"].get<std::string>();
  if (r.body.contains("rel")) what += " " + r.body["rel"].get<std::string>();
  if (r.body.contains("id")) what += " " + r.body["id"].get<std::string>();
  if (r.body.contains("from")) what += " " + r.body["from"].get<std::string>() + " -> " + r.body["to"].get<std::string>();
  return r.log + " record " + std::to_string(r.seq) + " (" + what + ")";
}

}  // namespace

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
  if (j.is_discarded() || !j.contains("seq") || !j.contains("hash")) {
    return data_loss("the head of the " + log + " log is corrupt");
  }
  return std::make_pair(j["seq"].get<uint64_t>(), j["hash"].get<std::string>());
}

Result<uint64_t> CustodyStore::append(const std::string& log, const std::vector<json>& bodies, int64_t now,
                                      std::vector<Put>& puts, std::string& head_hash, uint64_t& head_seq) const {
  const uint64_t first = head_seq + 1;
  for (const json& body : bodies) {
    const uint64_t seq = ++head_seq;
    const std::string hash = record_hash(log, seq, head_hash, now, body);
    json stored{{"seq", seq}, {"prev", head_hash}, {"hash", hash}, {"time_ms", now}, {"body", body}};
    puts.push_back({log, seq_key(seq), stored.dump()});
    head_hash = hash;
    const std::string type = body.value("type", "");
    if (log == "lineage" && type == "entity") {
      puts.push_back({"index", "entity/" + body["id"].get<std::string>(), seq_key(seq)});
      if (body.value("kind", "") == "model_version") {
        char version[16];
        std::snprintf(version, sizeof(version), "%010d", body.value("version", 0));
        puts.push_back({"index", "model/" + body.value("name", std::string()) + "|" + version, body["id"]});
      }
    } else if (log == "lineage" && type == "relation") {
      const std::string rel = body["rel"], from = body["from"], to = body["to"];
      puts.push_back({"index", "out/" + from + "|" + rel + "|" + seq_key(seq), to});
      puts.push_back({"index", "in/" + to + "|" + rel + "|" + seq_key(seq), from});
    } else if (log == "usage" && body.contains("target")) {
      puts.push_back({"index", "usage/" + body["target"].get<std::string>() + "|" + seq_key(seq), ""});
      for (const auto& id : body.value("prediction_ids", json::array())) {
        puts.push_back({"index", "prediction/" + id.get<std::string>(), seq_key(seq)});
      }
    }
  }
  puts.push_back({"default", "head/" + log, json{{"seq", head_seq}, {"hash", head_hash}}.dump()});
  return first;
}

Status CustodyStore::write(const Batch& batch) {
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
    auto first = append(log, *bodies, now, puts, hash, seq);
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
  if (!v.value()) return not_found(log + " record " + std::to_string(seq) + " is missing");
  return parse_record(log, *v.value());
}

Result<std::optional<Record>> CustodyStore::entity(const std::string& id) const {
  auto seq = kv_->get("index", "entity/" + id);
  if (!seq.is_ok()) return seq.status();
  if (!seq.value()) return std::optional<Record>();
  auto r = load("lineage", std::stoull(*seq.value()));
  if (!r.is_ok()) return r.status();
  return std::optional<Record>(std::move(r).value());
}

Result<std::vector<Record>> CustodyStore::relations(const std::string& id, Direction direction,
                                                    const std::string& rel) const {
  const std::string prefix = (direction == Direction::kOut ? "out/" : "in/") + id + "|" + (rel.empty() ? "" : rel + "|");
  return indexed("lineage", prefix);
}

Result<std::vector<Record>> CustodyStore::log(const std::string& name) const {
  std::vector<Record> out;
  Status bad = Status::ok();
  CUSTODY_RETURN_IF_ERROR(kv_->scan(name, "", [&](const std::string&, const std::string& value) {
    auto r = parse_record(name, value);
    if (!r.is_ok()) {
      bad = r.status();
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
  return indexed("usage", "usage/" + target + "|");
}

Result<std::vector<Record>> CustodyStore::indexed(const std::string& log, const std::string& prefix) const {
  // Index keys end in "|<seq>": the position of the record in its log.
  std::vector<uint64_t> seqs;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", prefix, [&](const std::string& key, const std::string&) {
    seqs.push_back(std::stoull(key.substr(key.rfind('|') + 1)));
    return true;
  }));
  std::sort(seqs.begin(), seqs.end());
  std::vector<Record> out;
  for (uint64_t seq : seqs) {
    auto r = load(log, seq);
    if (!r.is_ok()) return r.status();
    out.push_back(std::move(r).value());
  }
  return out;
}

Result<std::optional<Record>> CustodyStore::prediction(const std::string& prediction_id) const {
  auto seq = kv_->get("index", "prediction/" + prediction_id);
  if (!seq.is_ok()) return seq.status();
  if (!seq.value()) return std::optional<Record>();
  auto r = load("usage", std::stoull(*seq.value()));
  if (!r.is_ok()) return r.status();
  return std::optional<Record>(std::move(r).value());
}

Result<int> CustodyStore::newest_model_version(const std::string& name) const {
  std::string last;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("index", "model/" + name + "|", [&](const std::string& key, const std::string&) {
    last = key;
    return true;
  }));
  if (last.empty()) return 0;
  return std::stoi(last.substr(last.rfind('|') + 1));
}

Result<std::optional<std::string>> CustodyStore::blob(const std::string& sha256) const {
  return kv_->get("checkpoints", "blob/" + sha256);
}

Result<std::optional<json>> CustodyStore::checkpoint(const std::string& id) const {
  auto v = kv_->get("checkpoints", "manifest/" + id);
  if (!v.is_ok()) return v.status();
  if (!v.value()) return std::optional<json>();
  json j = json::parse(*v.value(), nullptr, false);
  if (j.is_discarded()) return data_loss("the manifest of checkpoint " + id + " is corrupt");
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
    if (m.value()) out.push_back(*m.value());
  }
  return out;
}

Result<VerifyReport> CustodyStore::verify() const {
  VerifyReport report;
  auto fail = [&](std::string problem) {
    report.ok = false;
    report.problem = std::move(problem);
    return report;
  };
  for (const std::string name : {"lineage", "usage", "audit"}) {
    uint64_t expected = 1;
    std::string prev;
    std::string problem;
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
  }
  // Checkpoints: every tensor's bytes still hash to its address, and the root still
  // covers the tensors.
  std::string problem;
  CUSTODY_RETURN_IF_ERROR(kv_->scan("checkpoints", "manifest/", [&](const std::string& key, const std::string& value) {
    json m = json::parse(value, nullptr, false);
    if (m.is_discarded() || !m.contains("tensors")) {
      problem = "checkpoint manifest " + key + " is corrupt";
      return false;
    }
    std::string roots;
    for (const auto& t : m["tensors"]) {
      const std::string sha = t["sha256"];
      auto bytes = kv_->get("checkpoints", "blob/" + sha);
      if (!bytes.is_ok() || !bytes.value()) {
        problem = "tensor " + t["name"].get<std::string>() + " of checkpoint " + m["id"].get<std::string>() +
                  " is missing";
        return false;
      }
      if (sha256_hex(*bytes.value()) != sha) {
        problem = "tensor " + t["name"].get<std::string>() + " of checkpoint " + m["id"].get<std::string>() +
                  " was changed: its bytes do not match their SHA-256";
        return false;
      }
      roots += t["name"].get<std::string>() + ":" + sha + "\n";
      ++report.blobs_checked;
    }
    if (sha256_hex(roots) != m["root_hash"]) {
      problem = "checkpoint " + m["id"].get<std::string>() + " has a root hash that does not cover its tensors";
      return false;
    }
    return true;
  }));
  if (!problem.empty()) return fail(problem);
  return report;
}

}  // namespace custody::storage
