#include "storage/notary.h"

#include <map>
#include <sstream>

#include "core/hex.h"
#include "core/merkle.h"
#include "storage/lineage_vocabulary.h"

namespace custody::storage {
namespace {

json head_json(const TreeHead& h) {
  return {{"log", h.log},         {"size", h.size},         {"root", h.root_hex},
          {"time_ms", h.time_ms}, {"key_id", h.key_id},     {"signature", h.signature_hex}};
}

Result<TreeHead> head_from_json(const json& j) {
  if (!j.is_object()) return invalid_argument("a tree head is not a JSON object");
  TreeHead h;
  auto text = [&](const char* field, std::string& out) -> Status {
    auto it = j.find(field);
    if (it == j.end() || !it->is_string()) return invalid_argument(std::string("a tree head lacks its '") + field + "'");
    out = it->get<std::string>();
    return Status::ok();
  };
  CUSTODY_RETURN_IF_ERROR(text("log", h.log));
  CUSTODY_RETURN_IF_ERROR(text("root", h.root_hex));
  CUSTODY_RETURN_IF_ERROR(text("key_id", h.key_id));
  CUSTODY_RETURN_IF_ERROR(text("signature", h.signature_hex));
  if (!j.contains("size") || !j["size"].is_number_unsigned()) return invalid_argument("a tree head lacks its 'size'");
  if (!j.contains("time_ms") || !j["time_ms"].is_number_integer()) {
    return invalid_argument("a tree head lacks its 'time_ms'");
  }
  h.size = j["size"].get<uint64_t>();
  h.time_ms = j["time_ms"].get<int64_t>();
  return h;
}

std::string describe_head(const TreeHead& h) {
  return "the " + h.log + " log's head of " + std::to_string(h.size) + " records signed at " +
         std::to_string(h.time_ms) + " ms by key " + h.key_id;
}

// The store's log `log` extends the head: same records up to its size (a consistency
// proof from the store's own leaves to its current root, checked against the kept root).
Status store_extends(const CustodyStore& store, const TreeHead& kept) {
  CUSTODY_ASSIGN_OR_RETURN(auto now, store.tree_head(kept.log));
  CUSTODY_ASSIGN_OR_RETURN(auto kept_root, hash_from_hex(kept.root_hex, "the kept root"));
  if (now.size < kept.size) {
    return data_loss("the store's " + kept.log + " log holds " + std::to_string(now.size) + " records, but " +
                     describe_head(kept) + ": records were removed from its end");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto now_root, hash_from_hex(now.root_hex, "the store's root"));
  if (kept.size == 0) return Status::ok();  // the empty log is a prefix of every log
  CUSTODY_ASSIGN_OR_RETURN(auto proof, store.consistency_proof(kept.log, kept.size, now.size));
  Status consistent = verify_consistency(kept.size, now.size, kept_root, now_root, proof);
  if (!consistent.is_ok()) {
    return data_loss("the store's " + kept.log + " log does not extend " + describe_head(kept) +
                     ": among its first " + std::to_string(kept.size) +
                     " records some were changed, reordered or removed since (" + consistent.message() + ")");
  }
  return Status::ok();
}

}  // namespace

Result<json> signed_heads(const CustodyStore& store, const SigningKey& key, int64_t now_ms) {
  json out{{"custody_heads", 1},
           {"public_key", key.public_key_hex()},
           {"key_id", key.key_id()},
           {"time_ms", now_ms},
           {"heads", json::array()}};
  for (const auto& log : merkle_logs()) {
    CUSTODY_ASSIGN_OR_RETURN(auto info, store.tree_head(log));
    TreeHead h{log, info.size, info.root_hex, now_ms, "", ""};
    CUSTODY_RETURN_IF_ERROR(sign_tree_head(key, h));
    out["heads"].push_back(head_json(h));
  }
  return out;
}

Result<json> signed_head_of(const Inclusion& inclusion, const SigningKey& key, int64_t now_ms) {
  TreeHead h{inclusion.log, inclusion.tree_size, to_hex(inclusion.root), now_ms, "", ""};
  Status signed_ok = sign_tree_head(key, h);
  if (!signed_ok.is_ok()) {
    return Status(signed_ok.code(), "the " + inclusion.log + " log's tree head could not be signed for a receipt: " +
                                        signed_ok.message());
  }
  return head_json(h);
}

json make_receipt(Inclusion inclusion, const json& signed_head, const std::string& public_key_hex,
                  const std::string& id) {
  const std::string leaf = to_hex(record_leaf_hash(inclusion.record.value("hash", std::string())));
  return {{"custody_receipt", 1},
          {"id", id},
          {"log", inclusion.log},
          {"leaf_index", inclusion.seq - 1},
          {"record", std::move(inclusion.record)},  // on every predict's path: moved, not copied
          {"leaf_hash", leaf},
          {"inclusion_proof", proof_to_hex(inclusion.proof)},
          {"tree_head", signed_head},
          {"public_key", public_key_hex}};
}

std::string receipt_text(const Inclusion& inclusion, const std::string& signed_head_text,
                         const std::string& public_key_hex, const std::string& id) {
  // The keys in json's own (sorted) order, each value as json would write it.
  std::string out;
  out.reserve(inclusion.record_text.size() + signed_head_text.size() + 80 * inclusion.proof.size() + 400);
  out.append("{\"custody_receipt\":1,\"id\":").append(json(id).dump());
  out.append(",\"inclusion_proof\":[");
  for (size_t i = 0; i < inclusion.proof.size(); ++i) {
    out.append(i ? ",\"" : "\"").append(to_hex(inclusion.proof[i])).push_back('"');
  }
  out.append("],\"leaf_hash\":\"")
      .append(to_hex(record_leaf_hash(inclusion.record.value("hash", std::string()))))
      .append("\",\"leaf_index\":")
      .append(std::to_string(inclusion.seq - 1));
  out.append(",\"log\":").append(json(inclusion.log).dump());
  out.append(",\"public_key\":").append(json(public_key_hex).dump());
  out.append(",\"record\":").append(inclusion.record_text);
  out.append(",\"tree_head\":").append(signed_head_text).push_back('}');
  return out;
}

Result<json> make_receipt(Inclusion inclusion, const SigningKey& key, int64_t now_ms, const std::string& id) {
  CUSTODY_ASSIGN_OR_RETURN(json head, signed_head_of(inclusion, key, now_ms));
  return make_receipt(std::move(inclusion), head, key.public_key_hex(), id);
}

// Exactly these keys: a renamed or added field is a changed receipt, not a default.
static bool has_exactly(const json& j, std::initializer_list<const char*> keys) {
  if (!j.is_object() || j.size() != keys.size()) return false;
  for (const char* k : keys)
    if (!j.contains(k)) return false;
  return true;
}

Result<ReceiptFacts> check_receipt(const json& r, std::string_view public_key) {
  if (!r.is_object() || r.value("custody_receipt", 0) != 1) {
    return invalid_argument("this is not a custody receipt (no \"custody_receipt\": 1)");
  }
  if (!has_exactly(r, {"custody_receipt", "id", "log", "leaf_index", "record", "leaf_hash", "inclusion_proof",
                       "tree_head", "public_key"}) ||
      !has_exactly(r["record"], {"seq", "prev", "hash", "time_ms", "body"}) ||
      !has_exactly(r["tree_head"], {"log", "size", "root", "time_ms", "key_id", "signature"})) {
    return invalid_argument("the receipt's fields are not those of a custody receipt (one is missing, renamed or "
                            "added)");
  }
  const json& record = r.value("record", json());
  if (!record.is_object() || !record.contains("seq") || !record["seq"].is_number_unsigned() ||
      !record.contains("prev") || !record["prev"].is_string() || !record.contains("hash") ||
      !record["hash"].is_string() || !record.contains("time_ms") || !record["time_ms"].is_number_integer() ||
      !record.contains("body")) {
    return invalid_argument("the receipt's record lacks its seq, prev, hash, time_ms or body");
  }
  auto head = head_from_json(r.value("tree_head", json()));
  if (!head.is_ok()) return head.status();
  const std::string log = r.value("log", std::string());
  if (log != head->log) return invalid_argument("the receipt names log '" + log + "' but its head is of " + head->log);
  const uint64_t seq = record["seq"];
  if (!r.contains("leaf_index") || !r["leaf_index"].is_number_unsigned() || r["leaf_index"] != seq - 1) {
    return invalid_argument("the receipt's leaf_index is not its record's position (seq - 1)");
  }
  // Nothing in a receipt may be read two ways: hex is lowercase (a decoder that also
  // takes upper case would let a changed receipt pass), the id and the leaf are the
  // record's own, and the key it names is the one the checker trusts.
  auto lower_hex = [](const json& v) {
    return v.is_string() && v.get<std::string>().find_first_not_of("0123456789abcdef") == std::string::npos;
  };
  const json& body = record["body"];
  const std::string id = r.value("id", std::string());
  const char* id_field = lineage::has_prefix(id, lineage::prefix::kUse) ? "usage_id" : "call_id";
  if (id.empty() || !body.is_object() || body.value(id_field, std::string()) != id) {
    return data_loss("the receipt's id '" + id + "' is not the id of the record it holds");
  }
  if (!lower_hex(r.value("leaf_hash", json())) || r["leaf_hash"] != to_hex(record_leaf_hash(record["hash"]))) {
    return data_loss("the receipt's leaf_hash is not the leaf of its record");
  }
  if (!lower_hex(r.value("public_key", json())) || !lower_hex(r["tree_head"].value("signature", json()))) {
    return invalid_argument("the receipt's public key or signature is not lowercase hex");
  }
  auto named = key_id_of(r["public_key"].get<std::string>());
  CUSTODY_ASSIGN_OR_RETURN(auto given, key_id_of(public_key));
  if (!named.is_ok() || named.value() != given) {
    return data_loss("the receipt names another signing key than the one given (" + given + ")");
  }
  // 1. The record is what its hash says.
  const std::string recomputed = record_hash(log, seq, record["prev"], record["time_ms"], record["body"]);
  if (recomputed != record["hash"]) {
    return data_loss("the receipt's record was changed: its fields hash to " + recomputed.substr(0, 16) +
                     "…, not to the hash it carries");
  }
  // 2. Its leaf is in the signed tree.
  std::vector<std::string> proof_hex;
  const json& proof = r.value("inclusion_proof", json());
  if (!proof.is_array()) return invalid_argument("the receipt has no inclusion_proof list");
  for (const auto& p : proof) {
    if (!lower_hex(p)) return invalid_argument("an element of the receipt's inclusion_proof is not lowercase hex");
    proof_hex.push_back(p.get<std::string>());
  }
  CUSTODY_ASSIGN_OR_RETURN(auto hashes, proof_from_hex(proof_hex));
  CUSTODY_ASSIGN_OR_RETURN(auto root, hash_from_hex(head->root_hex, "the signed root"));
  const std::string leaf = record_leaf_hash(record["hash"].get<std::string>());
  Status included = verify_inclusion(seq - 1, head->size, leaf, hashes, root);
  if (!included.is_ok()) {
    return Status(included.code(), "the receipt's record is not proved into its signed head: " + included.message());
  }
  // 3. The head was signed by the key the checker trusts.
  Status signed_ok = verify_tree_head(head.value(), public_key);
  if (!signed_ok.is_ok()) {
    return Status(signed_ok.code(), "the receipt's tree head is not signed by the key given: " + signed_ok.message());
  }
  ReceiptFacts facts;
  facts.id = r.value("id", std::string());
  facts.log = log;
  facts.key_id = head->key_id;
  facts.seq = seq;
  facts.tree_size = head->size;
  facts.head_time_ms = head->time_ms;
  facts.body = record["body"];
  return facts;
}

Status check_receipt_in_store(const json& receipt, const CustodyStore& store) {
  CUSTODY_ASSIGN_OR_RETURN(auto head, head_from_json(receipt["tree_head"]));
  const json& record = receipt["record"];
  const uint64_t seq = record["seq"];
  CUSTODY_ASSIGN_OR_RETURN(auto logged, store.log_record(head.log, seq));
  if (logged.hash != record["hash"]) {
    return data_loss("the store's " + head.log + " record " + std::to_string(seq) +
                     " is not the one the receipt holds: it was changed");
  }
  return store_extends(store, head);
}

Result<std::vector<std::string>> check_kept_heads(const std::string& text, std::string_view public_key,
                                                  const CustodyStore& store) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  std::string line;
  size_t line_no = 0, heads = 0;
  std::map<std::string, TreeHead> newest;
  while (std::getline(lines, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json doc = json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("heads") || !doc["heads"].is_array()) {
      return invalid_argument("line " + std::to_string(line_no) + " of the head file is not a custody head document");
    }
    const std::string key = public_key.empty() ? doc.value("public_key", std::string()) : std::string(public_key);
    for (const auto& j : doc["heads"]) {
      auto head = head_from_json(j);
      if (!head.is_ok()) return Status(head.status().code(), "line " + std::to_string(line_no) + ": " + head.status().message());
      Status signed_ok = verify_tree_head(head.value(), key);
      if (!signed_ok.is_ok()) {
        // Another key, or a changed head: either way it proves nothing about this store.
        return data_loss("line " + std::to_string(line_no) + ": " + describe_head(head.value()) +
                         " does not verify: " + signed_ok.message());
      }
      Status extends = store_extends(store, head.value());
      if (!extends.is_ok()) return extends;
      ++heads;
      auto& n = newest[head->log];
      if (head->size >= n.size) n = head.value();
    }
  }
  if (heads == 0) return invalid_argument("the head file holds no heads");
  for (const auto& [log, h] : newest) {
    out.push_back("the " + log + " log extends its kept head of " + std::to_string(h.size) + " records (root " +
                  h.root_hex.substr(0, 16) + "…, signed by key " + h.key_id + ")");
  }
  return out;
}

}  // namespace custody::storage
