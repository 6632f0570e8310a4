#include "storage/queries.h"

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <tuple>
#include <set>

#include "core/dp_accountant.h"
#include "core/hash.h"
#include "core/log.h"
#include "storage/checkpoint.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"
#include "storage/query_guard.h"

namespace custody::storage {
namespace {

using Direction = CustodyStore::Direction;

std::string short_hash(const std::string& h) { return h.size() > 12 ? h.substr(0, 12) : h; }


Result<json> body_of(const CustodyStore& store, const std::string& id) {
  CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(id));
  if (!e) return not_found("nothing with id '" + id + "' in the custody store");
  return e->body;
}

// The relations of one kind from (kOut) or to (kIn) an id: the other ends with the
// relation's attributes.
Result<std::vector<json>> related(const CustodyStore& store, const std::string& id, Direction d,
                                  const std::string& rel) {
  CUSTODY_ASSIGN_OR_RETURN(auto rs, store.relations(id, d, rel));
  std::vector<json> out;
  for (auto& r : rs) out.push_back(r.body);
  return out;
}


// What one submission declared about a data set's bytes (name, licence, consent), from
// its `consumed` relation. Stores written before declarations moved there kept the first
// submitter's on the data set entity: that is what they can answer.
json declaration_of(const json& dataset, const json& consumed) {
  auto pick = [&](const char* field, const json& fallback) {
    return consumed.contains(field) ? consumed[field] : dataset.value(field, fallback);
  };
  return {{"run", consumed.value("from", std::string())},
          {"declared_by", consumed.value("declared_by", std::string())},
          {"name", pick("name", "")},
          {"license", pick("license", "")},
          {"consent", pick("consent", json::array())}};
}

// Every declaration made for a data set, in submission order.
Result<std::vector<json>> declarations_of(const CustodyStore& store, const std::string& dataset_id,
                                          const json& dataset) {
  CUSTODY_ASSIGN_OR_RETURN(auto consumers, store.relations(dataset_id, Direction::kIn, lineage::rel::kConsumed));
  std::vector<json> out;
  for (const auto& c : consumers) out.push_back(declaration_of(dataset, c.body));
  return out;
}

std::string describe_terms(const json& decl) {
  std::string consent;
  for (const auto& c : decl.value("consent", json::array())) {
    consent += (consent.empty() ? "" : ", ") + (c.is_string() ? c.get<std::string>() : c.dump());
  }
  const std::string license = decl.value("license", std::string());
  return "licence: " + (license.empty() ? std::string("none recorded") : license) +
         "; consent: " + (consent.empty() ? std::string("none recorded") : consent);
}

// The declarations that disagree on licence or consent: empty when all agree.
json conflicting(const std::vector<json>& decls) {
  std::set<std::string> terms;
  for (const auto& d : decls) terms.insert(describe_terms(d));
  if (terms.size() < 2) return json::array();
  return json(decls);
}

// A data set as one run declared it (decl), flagged when other submissions declared other
// terms for the same bytes.
json dataset_node(const json& d, const json& decl, const std::vector<json>& all) {
  json entity = d;
  for (const char* field : {"name", "license", "consent"}) entity[field] = decl[field];
  entity["declared_by"] = decl["declared_by"];
  json node{{"label", "data set " + decl.value("name", std::string("?")) + " sha256 " +
                          d.value("sha256", std::string()) + " (" + std::to_string(d.value("train_samples", 0)) +
                          " training samples; " + describe_terms(decl) + ")"},
            {"entity", entity},
            {"declaration", decl},
            {"children", json::array()}};
  json conflicts = conflicting(all);
  if (!conflicts.empty()) {
    node["conflicting_declarations"] = conflicts;
    for (const auto& c : conflicts) {
      if (c["run"] == decl["run"]) continue;  // this run's own terms are on the line above
      node["children"].push_back({{"label", "CONFLICTING declaration for the same bytes: run " +
                                                c.value("run", std::string("?")) + " (" +
                                                lineage::display_name(c.value("declared_by", std::string("?")), lineage::prefix::kPrincipal) +
                                                "): " + describe_terms(c)}});
    }
  }
  return node;
}

// A retraining's data set (the base minus excluded records): what it leaves out, and the
// proof from the run's own records that no worker was given a withdrawn record: every
// revocation it names has all its records excluded, and every rank's assignment (each
// attempt's) excluded each of those records in its shard.
Status add_exclusion_proof(const CustodyStore& store, const std::string& run, const json& dataset, json& node) {
  std::set<uint64_t> excluded;
  for (const auto& i : dataset.value("excluded", json::array())) excluded.insert(i.get<uint64_t>());
  std::set<uint64_t> revoked;
  std::string names;
  for (const auto& id : dataset.value("without", json::array())) {
    CUSTODY_ASSIGN_OR_RETURN(auto rev, body_of(store, id.get<std::string>()));
    for (const auto& i : rev.value("records", json::array())) revoked.insert(i.get<uint64_t>());
    names += (names.empty() ? "" : ", ") + id.get<std::string>();
  }
  uint64_t revoked_kept = 0;
  for (uint64_t i : revoked) revoked_kept += !excluded.count(i);
  CUSTODY_ASSIGN_OR_RETURN(auto assigned, store.relations(run, Direction::kOut, lineage::rel::kAssigned));
  uint64_t ranks = 0, given = 0;  // rank assignments checked; withdrawn records one was given
  for (const auto& a : assigned) {
    const json& shard = a.body.value("shard", json::object());
    if (shard.empty()) continue;  // a parameter server's
    ++ranks;
    std::set<uint64_t> skipped;
    for (const auto& i : shard.value("excluded", json::array())) skipped.insert(i.get<uint64_t>());
    const uint64_t begin = shard.value("begin", uint64_t(0)), end = shard.value("end", uint64_t(0));
    for (auto it = revoked.lower_bound(begin); it != revoked.end() && *it < end; ++it) given += !skipped.count(*it);
  }
  const bool proven = revoked_kept == 0 && given == 0 && ranks > 0;
  json proof{{"excluded", excluded.size()},
             {"revoked", revoked.size()},
             {"revoked_not_excluded", revoked_kept},
             {"rank_assignments_checked", ranks},
             {"revoked_records_assigned", given},
             {"revoked_records_read", proven ? json(0) : json(nullptr)}};
  node["exclusion"] = proof;
  node["children"].push_back(
      {{"label", "retraining's version of data set " +
                     short_hash(lineage::display_name(dataset.value("base", std::string()), lineage::prefix::kDataset)) +
                     "…: " + std::to_string(excluded.size()) + " records excluded (withdrawn by " + names + ")"}});
  node["children"].push_back(
      {{"label", proven ? "no worker trained on a withdrawn record: all " + std::to_string(revoked.size()) +
                              " withdrawn records are excluded, and each of the " + std::to_string(ranks) +
                              " rank assignments excluded those in its shard"
                        : "NOT PROVEN: " + std::to_string(revoked_kept) + " withdrawn records not excluded, " +
                              std::to_string(given) + " given to a rank (" + std::to_string(ranks) +
                              " rank assignments checked)"},
       {"proof", proof}});
  return Status::ok();
}

// Upstream of a run: submitter, data, job spec, fine-tuning origin.
Result<json> trace_run(const CustodyStore& store, const std::string& run, std::set<std::string>& seen, int depth);

Result<json> trace_checkpoint(const CustodyStore& store, const std::string& ckpt, std::set<std::string>& seen,
                              int depth) {
  CUSTODY_ASSIGN_OR_RETURN(auto c, body_of(store, ckpt));
  json node{{"label", "checkpoint " + ckpt + " (run " + c.value("job", std::string("?")) + ", step " +
                          std::to_string(c.value("step", 0)) + (c.value("final", false) ? ", final" : "") +
                          ", root " + short_hash(c.value("root_hash", std::string())) + ")"},
            {"entity", c},
            {"children", json::array()}};
  if (c.contains("privacy") && c["privacy"].is_object()) {
    const json& p = c["privacy"];
    char line[256];
    std::snprintf(line, sizeof(line),
                  "differentially private: (epsilon %.3g, delta %.3g), example-level add/remove, after %llu steps "
                  "(sigma %.4g, C %.4g, q %.4g, %s sampling)",
                  p.value("epsilon", 0.0), p.value("delta", 0.0),
                  static_cast<unsigned long long>(p.value("steps_accounted", uint64_t(0))),
                  p.value("noise_multiplier", 0.0), p.value("clip_norm", 0.0), p.value("sampling_rate", 0.0),
                  p.value("sampling", std::string("?")).c_str());
    node["children"].push_back({{"label", line}, {"privacy", p}});
  }
  if (!seen.insert(ckpt).second || depth > 16) return node;
  const std::string run = c.value("job", std::string());
  // Contributions to the run up to this checkpoint: every interval's counts, summed.
  CUSTODY_ASSIGN_OR_RETURN(auto produced, related(store, run, Direction::kOut, lineage::rel::kProduced));
  const uint64_t step = c.value("step", 0);
  std::map<std::string, json> workers;
  for (const auto& p : produced) {
    auto pc = body_of(store, p["to"]);
    if (!pc.is_ok() || pc->value("step", uint64_t(0)) > step) continue;
    CUSTODY_ASSIGN_OR_RETURN(auto contributed, related(store, p["to"], Direction::kIn, lineage::rel::kContributed));
    for (const auto& k : contributed) {
      // By node and rank: after a failure one node may have run several ranks (shards).
      const std::string key = k.value("from", std::string()) + "|" + std::to_string(k.value("rank", 0));
      json& w = workers[key];
      if (w.is_null()) w = {{"node", k["from"]}, {"rank", k.value("rank", 0)}, {"shard", k.value("shard", json::object())},
                            {"steps", 0}, {"samples", 0}, {"update_norm_sum", 0.0}, {"rejected", 0},
                            {"staleness_max", 0}, {"intervals", 0}};
      w["steps"] = w["steps"].get<uint64_t>() + k.value("steps", uint64_t(0));
      w["samples"] = w["samples"].get<uint64_t>() + k.value("samples", uint64_t(0));
      w["update_norm_sum"] = w["update_norm_sum"].get<double>() + k.value("update_norm_sum", 0.0);
      w["rejected"] = w["rejected"].get<uint64_t>() + k.value("rejected", uint64_t(0));
      w["staleness_max"] = std::max(w["staleness_max"].get<uint64_t>(), k.value("staleness_max", uint64_t(0)));
      w["intervals"] = w["intervals"].get<int>() + 1;
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(auto r, trace_run(store, run, seen, depth + 1));
  node["children"].push_back(r);
  // How each node came by each rank's records (data shipping), the latest attempt's.
  std::map<std::string, json> obtained;
  CUSTODY_ASSIGN_OR_RETURN(auto obtains,
                           store.find({{"type", lineage::kEvent}, {"event", lineage::event::kShardObtained}, {"run", run}}));
  for (const auto& o : obtains) {
    obtained[o.body.value("node", std::string()) + "|" + std::to_string(o.body.value("rank", 0))] = o.body;
  }
  json contributors{{"label", "contributing workers (measured at the parameter servers, steps 0-" +
                                  std::to_string(step) + ")"},
                    {"contributors", json::array()},
                    {"children", json::array()}};
  for (auto& [key, w] : workers) {
    const json& s = w["shard"];
    char norm[32];
    std::snprintf(norm, sizeof(norm), "%.1f", w["update_norm_sum"].get<double>());
    const std::string dataset = s.value("dataset", std::string());
    const std::string shard = s.empty() ? "no shard (held no rank)"
                                        : "shard " + std::to_string(s.value("index", 0)) + " records [" +
                                              std::to_string(s.value("begin", 0)) + ", " +
                                              std::to_string(s.value("end", 0)) + ") of " +
                                              short_hash(lineage::display_name(dataset, lineage::prefix::kDataset));
    std::string records;
    if (auto o = obtained.find(key); o != obtained.end()) {
      const json& e = o->second;
      const std::string how = e.value("how", std::string());
      const uint64_t bytes = e.value("bytes_fetched", uint64_t(0));
      records = how == "fetched" ? "records fetched from " + e.value("source", std::string()) + " (" +
                                       std::to_string(bytes) + " bytes)"
                : how == "cache" ? "records from " + e.value("source", std::string())
                                 : "records read from " + e.value("source", std::string());
      records += ", verified against the submitted SHA-256s; ";
      w["obtained"] = e;
    }
    contributors["children"].push_back(
        {{"label", w["node"].get<std::string>() + ": " + shard + "; " + records + std::to_string(w["steps"].get<uint64_t>()) +
                       " steps, " + std::to_string(w["samples"].get<uint64_t>()) + " samples, update norm sum " +
                       norm + ", " + std::to_string(w["rejected"].get<uint64_t>()) + " rejected, staleness max " +
                       std::to_string(w["staleness_max"].get<uint64_t>())}});
    contributors["contributors"].push_back(w);
  }
  node["children"].push_back(contributors);
  // Fine-tuning origins appear under the run ("initialised from"); earlier checkpoints of
  // the same run are its history, listed by `custody checkpoints`.
  return node;
}

Result<json> trace_run(const CustodyStore& store, const std::string& run, std::set<std::string>& seen, int depth) {
  CUSTODY_ASSIGN_OR_RETURN(auto r, body_of(store, run));
  json node{{"label", "run " + run + " '" + r.value("name", std::string()) + "' (" +
                          r.value("consistency", std::string()) + ", " + std::to_string(r.value("workers", 0)) +
                          " workers, submitted " + iso8601_utc(r.value("submitted_at_ms", int64_t(0))) + ")"},
            {"entity", r},
            {"children", json::array()}};
  for (const std::string rel : {lineage::rel::kSubmittedBy, lineage::rel::kSpecifiedBy, lineage::rel::kConsumed,
                                lineage::rel::kInitializedFrom}) {
    CUSTODY_ASSIGN_OR_RETURN(auto targets, related(store, run, Direction::kOut, rel));
    for (const auto& t : targets) {
      const std::string to = t["to"];
      CUSTODY_ASSIGN_OR_RETURN(auto b, body_of(store, to));
      if (rel == lineage::rel::kSubmittedBy) {
        node["children"].push_back({{"label", "submitted by " + b.value("name", to)}, {"entity", b}});
      } else if (rel == lineage::rel::kSpecifiedBy) {
        node["children"].push_back({{"label", "job spec " + to}, {"entity", b}});
      } else if (rel == lineage::rel::kConsumed) {
        CUSTODY_ASSIGN_OR_RETURN(auto all, declarations_of(store, to, b));
        json d = dataset_node(b, declaration_of(b, t), all);
        if (b.contains("base")) CUSTODY_RETURN_IF_ERROR(add_exclusion_proof(store, run, b, d));
        node["children"].push_back(std::move(d));
      } else if (depth < 16) {
        CUSTODY_ASSIGN_OR_RETURN(auto up, trace_checkpoint(store, to, seen, depth + 1));
        node["children"].push_back({{"label", "initialised from (fine-tuning)"}, {"children", json::array({up})}});
      }
    }
  }
  return node;
}

Result<std::string> resolve_id_impl(const CustodyStore& store, const std::string& ref) {
  if (lineage::has_prefix(ref, lineage::prefix::kPrediction)) {
    CUSTODY_ASSIGN_OR_RETURN(auto p, store.prediction(ref));
    if (!p) return not_found("no prediction '" + ref + "' in the usage log");
    return ref;
  }
  if (lineage::is_usage_id(ref)) {  // a call or a use (a prediction was answered above)
    CUSTODY_ASSIGN_OR_RETURN(auto c, store.call(ref));
    if (!c) return not_found("no call '" + ref + "' in the usage log");
    return ref;
  }
  CUSTODY_ASSIGN_OR_RETURN(auto direct, store.entity(ref));
  if (direct) return ref;
  for (const char* prefix : {lineage::prefix::kModel, lineage::prefix::kDataset, lineage::prefix::kPrincipal,
                             lineage::prefix::kNode, lineage::prefix::kJobSpec}) {
    CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(prefix + ref));
    if (e) return std::string(prefix) + ref;
  }
  // A model name without a version: its newest version.
  auto version = next_model_version(store, ref);
  if (version.is_ok() && version.value() > 1) return lineage::model_id(ref, version.value() - 1);
  // A prefix of a data set hash, or a data set name.
  CUSTODY_ASSIGN_OR_RETURN(auto datasets, store.find({{"type", lineage::kEntity}, {"kind", lineage::kind::kDataset}}));
  std::vector<std::string> matches;
  for (const auto& d : datasets) {
    const std::string sha = d.body.value("sha256", std::string());
    // By name, the submitted bytes: a retraining's version (it minus withdrawn records) shares
    // their name and is reached by its hash.
    const bool by_name = d.body.value("name", std::string()) == ref && !d.body.contains("base");
    if ((ref.size() >= 6 && sha.rfind(ref, 0) == 0) || by_name) {
      matches.push_back(d.body["id"]);
    }
  }
  if (matches.size() == 1) return matches[0];
  if (matches.size() > 1) {
    return invalid_argument("'" + ref + "' names " + std::to_string(matches.size()) +
                            " data set versions; give more of the hash");
  }
  return not_found("nothing with id '" + ref + "' in the custody store (ids look like ckpt-..., job-..., "
                   "NAME@VERSION, or a data set hash)");
}

// A prediction, call or use: its usage record, and the checkpoint it used.
Result<json> show_usage(const CustodyStore& store, const std::string& id) {
  const lineage::IdKind kind = lineage::kind_of(id);
  CUSTODY_ASSIGN_OR_RETURN(auto u, kind == lineage::IdKind::kPrediction ? store.prediction(id) : store.call(id));
  if (!u) return not_found("no '" + id + "' in the usage log");
  json out = u->to_json();
  out["kind"] = kind == lineage::IdKind::kPrediction ? "prediction" : kind == lineage::IdKind::kCall ? "call" : "use";
  if (out["kind"] == "prediction") {
    for (const auto& p : u->body.value("predictions", json::array()))
      if (p["id"] == id) out["prediction"] = p;
  }
  return out;
}

Result<json> show_impl(const CustodyStore& store, const std::string& ref) {
  auto id = resolve_id(store, ref);
  if (!id.is_ok()) return id.status();
  if (lineage::is_usage_id(id.value())) return show_usage(store, id.value());
  CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(id.value()));
  if (!e) return not_found("nothing with id '" + id.value() + "' in the custody store");
  json out = e->to_json();
  if (e->body.value("kind", "") == lineage::kind::kDataset) {
    CUSTODY_ASSIGN_OR_RETURN(auto all, declarations_of(store, id.value(), e->body));
    out["declarations"] = all;
    out["conflicting_declarations"] = conflicting(all);
  }
  for (auto [name, d] : {std::make_pair("outgoing", Direction::kOut), std::make_pair("incoming", Direction::kIn)}) {
    CUSTODY_ASSIGN_OR_RETURN(auto rs, store.relations(id.value(), d));
    out[name] = json::array();
    for (const auto& r : rs) out[name].push_back(r.to_json());
  }
  if (lineage::has_prefix(id.value(), lineage::prefix::kCheckpoint)) {
    auto m = store.checkpoint(id.value());
    if (m.is_ok() && m.value()) out["manifest"] = *m.value();
  }
  if (e && e->body.value("kind", "") == lineage::kind::kRun) {
    // A run's history: started (per attempt), recovered, resumed, ended.
    CUSTODY_ASSIGN_OR_RETURN(auto events, store.find({{"type", lineage::kEvent}, {"run", id.value()}}));
    out["events"] = json::array();
    for (const auto& r : events) out["events"].push_back(r.to_json());
  }
  return out;
}

// What liability says about a checkpoint, derived now (storage/liability.h): the
// revocations that taint it with the overrides recorded for it, and the purposes it may be
// used for. Added to `node` as "taint", "overrides" and "permissions", and as its last
// children.
Status add_liability(const CustodyStore& store, const std::string& ckpt, json& node) {
  CUSTODY_ASSIGN_OR_RETURN(auto taints, liability::taint_of(store, ckpt));
  CUSTODY_ASSIGN_OR_RETURN(auto overrides, liability::overrides_of(store, ckpt));
  CUSTODY_ASSIGN_OR_RETURN(auto perms, liability::permissions_of(store, ckpt));
  json lines = json::array();
  for (const auto& t : taints) {
    std::string path;
    for (const auto& p : t.value("path", json::array())) path += (path.empty() ? "" : " <- ") + p.get<std::string>();
    json n{{"label", "TAINTED by revocation " + liability::describe_revocation(t)},
           {"revocation", t},
           {"children", json::array({json{{"label", "reached through: " + path + " <- " + t.value("dataset", std::string())}}})}};
    for (const auto& o : overrides) {
      if (o.value("revocation", std::string()) != t.value("id", std::string())) continue;
      n["children"].push_back({{"label", "allowed despite it for purpose '" + o.value("purpose", std::string()) +
                                             "' only, by " +
                                             lineage::display_name(o.value("by", std::string("?")), lineage::prefix::kPrincipal) +
                                             " at " + iso8601_utc(o.value("time_ms", int64_t(0))) + " (" +
                                             o.value("id", std::string()) + "): \"" + o.value("reason", std::string()) + "\""}});
    }
    lines.push_back(std::move(n));
  }
  std::string allowed;
  for (const auto& a : perms.value("allowed", json::array())) allowed += (allowed.empty() ? "" : ", ") + a.get<std::string>();
  json p{{"label", !perms.value("restricted", false)
                       ? std::string("permitted purposes: any (no upstream licence or consent declares purposes)")
                       : "permitted purposes: " + (allowed.empty() ? std::string("NONE (the upstream declarations have no purpose in common)") : allowed) +
                             " (the intersection of every upstream declaration)"},
         {"permissions", perms},
         {"children", json::array()}};
  for (const auto& c : perms.value("clauses", json::array())) {
    std::string these;
    for (const auto& a : c.value("allowed", json::array())) these += (these.empty() ? "" : ", ") + a.get<std::string>();
    const std::string spdx = c.value("spdx", std::string());
    p["children"].push_back(
        {{"label", c.value("clause", std::string()) + (spdx.empty() ? std::string() : " " + spdx) + " of data set " +
                       c.value("dataset_name", std::string("?")) + " (run " + c.value("run", std::string()) + ", declared by " +
                       lineage::display_name(c.value("declared_by", std::string("?")), lineage::prefix::kPrincipal) +
                       "): " + (these.empty() ? std::string("nothing") : these)}});
  }
  lines.push_back(std::move(p));
  node["taint"] = taints;
  node["tainted"] = !taints.empty();
  node["overrides"] = overrides;
  node["permissions"] = perms;
  // After the lineage, so that readers that index the tree (children[0] is the checkpoint
  // of a model) read it as before; the root's label says TAINTED.
  for (auto& l : lines) node["children"].push_back(std::move(l));
  return Status::ok();
}

Result<json> trace_impl(const CustodyStore& store, const std::string& ref) {
  CUSTODY_ASSIGN_OR_RETURN(auto id, resolve_id(store, ref));
  std::set<std::string> seen;
  const std::string& what = id;
  if (lineage::has_prefix(what, lineage::prefix::kModel)) {
    CUSTODY_ASSIGN_OR_RETURN(auto m, body_of(store, what));
    CUSTODY_ASSIGN_OR_RETURN(auto c, trace_checkpoint(store, m.value("checkpoint", std::string()), seen, 0));
    json node{{"label", "model " + m.value("name", std::string()) + "@" + std::to_string(m.value("version", 0)) +
                            " (test accuracy " + std::to_string(m.value("test_accuracy", 0.0)).substr(0, 6) + ")"},
              {"entity", m},
              {"children", json::array({c})}};
    CUSTODY_RETURN_IF_ERROR(add_liability(store, m.value("checkpoint", std::string()), node));
    if (node["tainted"].get<bool>()) node["label"] = node["label"].get<std::string>() + " TAINTED";
    // Retraining: which version this one replaces, and which replaced it.
    for (auto [d, word] : {std::pair{Direction::kOut, "replaces "}, std::pair{Direction::kIn, "replaced by "}}) {
      CUSTODY_ASSIGN_OR_RETURN(auto rs, store.relations(what, d, lineage::rel::kReplaces));
      for (const auto& r : rs) {
        const std::string other = r.body.value(d == Direction::kOut ? "to" : "from", std::string());
        node[d == Direction::kOut ? "replaces" : "replaced_by"].push_back(other);
        node["children"].push_back({{"label", word + lineage::display_name(other, lineage::prefix::kModel) +
                                                  " (retrained without withdrawn records)"}});
      }
    }
    return node;
  }
  if (lineage::has_prefix(what, lineage::prefix::kCheckpoint)) {
    CUSTODY_ASSIGN_OR_RETURN(auto node, trace_checkpoint(store, what, seen, 0));
    CUSTODY_RETURN_IF_ERROR(add_liability(store, what, node));
    if (node["tainted"].get<bool>()) node["label"] = node["label"].get<std::string>() + " TAINTED";
    return node;
  }
  if (lineage::is_usage_id(what)) {
    const bool one_prediction = lineage::kind_of(what) == lineage::IdKind::kPrediction;
    CUSTODY_ASSIGN_OR_RETURN(auto call, one_prediction ? store.prediction(what) : store.call(what));
    if (!call) return not_found("no '" + what + "' in the usage log");
    const json& u = call->body;
    json prediction = json::object();
    for (const auto& p : u.value("predictions", json::array()))
      if (p["id"] == what) prediction = p;
    char prob[16];
    std::snprintf(prob, sizeof(prob), "%.4f", prediction.value("probability", 0.0));
    const std::string action = u.value("action", std::string("use"));
    json node{{"label", one_prediction ? "prediction " + what + ": class " + std::to_string(prediction.value("class", -1)) +
                                             " (p=" + prob + ")"
                                       : action + " " + what + " (" + std::to_string(u.value("rows", 1)) + " rows)"},
              {"usage", call->to_json()},
              {"children", json::array()}};
    node["children"].push_back(
        {{"label", "called by " + lineage::display_name(u.value("principal", std::string("?")), lineage::prefix::kPrincipal) + " at " + iso8601_utc(call->time_ms) +
                       " (call " + u.value("call_id", std::string()) + ", purpose: " +
                       (u.value("purpose", std::string()).empty() ? "none given" : u["purpose"].get<std::string>()) +
                       ", input sha256 " + short_hash(u.value("input_sha256", std::string())) + ")"}});
    CUSTODY_ASSIGN_OR_RETURN(auto c, trace_checkpoint(store, u.value("target", std::string()), seen, 0));
    const std::string model = u.value("model", std::string());
    if (!model.empty()) {
      node["children"].push_back({{"label", "answered by model " + lineage::display_name(model, lineage::prefix::kModel) + ", weights root " +
                                                short_hash(u.value("root_hash", std::string()))},
                                  {"children", json::array({c})}});
    } else {
      node["children"].push_back(c);
    }
    // Taint is of the model as it stands now; whether the call came before the revocation
    // is on each revocation's time against the call's.
    CUSTODY_RETURN_IF_ERROR(add_liability(store, u.value("target", std::string()), node));
    for (auto& t : node["taint"]) {
      t["after_call"] = t.value("time_ms", int64_t(0)) > call->time_ms;
    }
    if (!u.value("taint_overrides", json::array()).empty()) {
      node["children"].push_back({{"label", "answered although tainted, under override(s) " +
                                                u["taint_overrides"].dump()}});
    }
    return node;
  }
  if (lineage::has_prefix(what, lineage::prefix::kRun)) return trace_run(store, what, seen, 0);
  return invalid_argument("trace follows a model, a checkpoint or a run; '" + ref + "' is " + what +
                          " (use `custody lineage show` for it)");
}

Result<json> impact_impl(const CustodyStore& store, const std::string& ref) {
  CUSTODY_ASSIGN_OR_RETURN(auto id, resolve_id(store, ref));
  if (!lineage::has_prefix(id, lineage::prefix::kDataset)) {
    return invalid_argument("impact starts from a data set (a hash, its prefix or its name); '" + ref + "' is " + id);
  }
  CUSTODY_ASSIGN_OR_RETURN(auto d, body_of(store, id));
  CUSTODY_ASSIGN_OR_RETURN(auto all, declarations_of(store, id, d));
  json first = all.empty() ? declaration_of(d, json::object()) : all.front();
  json root = dataset_node(d, first, all);
  root["label"] = "data set " + d.value("name", std::string("?")) + " sha256 " + d.value("sha256", std::string()) +
                  " (" + std::to_string(d.value("train_samples", 0)) + " training samples)";
  root["declarations"] = all;
  std::map<std::string, json> declared;  // run -> its declaration
  for (const auto& x : all) declared[x["run"]] = x;
  // Revocations of this data set: everything below is tainted by them (derived now).
  CUSTODY_ASSIGN_OR_RETURN(auto revokes, store.relations(id, Direction::kIn, lineage::rel::kRevokes));
  json revocations = json::array();
  for (const auto& r : revokes) {
    CUSTODY_ASSIGN_OR_RETURN(auto rev, body_of(store, r.body.value("from", std::string())));
    root["children"].push_back({{"label", "REVOKED: " + liability::describe_revocation(rev)}, {"revocation", rev}});
    revocations.push_back(std::move(rev));
  }
  root["revocations"] = revocations;
  // Taint of each checkpoint below, derived as serving derives it (a retraining's version
  // of this data set is tainted only by revocations of records it kept).
  json affected_checkpoints = json::array(), affected_models = json::array(), tainted_models = json::array();
  auto taint_mark = [&](const std::string& ckpt) -> Result<std::string> {
    if (revocations.empty()) return std::string();
    CUSTODY_ASSIGN_OR_RETURN(auto t, liability::taint_of(store, ckpt));
    return std::string(t.empty() ? "" : " TAINTED");
  };
  std::set<std::string> seen_runs;
  // Runs that consumed the data, and, transitively, runs fine-tuned from their checkpoints.
  std::function<Status(const std::string&, json&)> add_run = [&](const std::string& run, json& parent) -> Status {
    if (!seen_runs.insert(run).second) return Status::ok();
    CUSTODY_ASSIGN_OR_RETURN(auto r, body_of(store, run));
    std::string terms;
    if (auto x = declared.find(run); x != declared.end()) terms = " (" + describe_terms(x->second) + ")";
    json node{{"label", "run " + run + " '" + r.value("name", std::string()) + "'" + terms},
              {"children", json::array()}};
    CUSTODY_ASSIGN_OR_RETURN(auto produced, related(store, run, Direction::kOut, lineage::rel::kProduced));
    std::string run_mark;
    for (const auto& p : produced) {
      const std::string ckpt = p["to"];
      affected_checkpoints.push_back(ckpt);
      CUSTODY_ASSIGN_OR_RETURN(const std::string tainted, taint_mark(ckpt));
      if (!tainted.empty()) run_mark = tainted;
      json cnode{{"label", "checkpoint " + ckpt + " (step " + std::to_string(p.value("step", 0)) + ")" + tainted},
                 {"children", json::array()}};
      CUSTODY_ASSIGN_OR_RETURN(auto models, related(store, ckpt, Direction::kIn, lineage::rel::kVersionOf));
      for (const auto& m : models) {
        affected_models.push_back(m["from"]);
        if (!tainted.empty()) tainted_models.push_back(m["from"]);
        // Its uses so far, from the usage sums (`custody usage MODEL` lists them).
        CUSTODY_ASSIGN_OR_RETURN(auto sums, store.usage_sums(ckpt));
        uint64_t calls = 0, exports = 0;
        for (const auto& u : sums) (u.action == lineage::action::kExport ? exports : calls) += u.calls;
        cnode["children"].push_back({{"label", "model " + lineage::display_name(m.value("from", std::string()), lineage::prefix::kModel) +
                                                   tainted + " (" + std::to_string(calls) + " prediction calls, " +
                                                   std::to_string(exports) + " exports)"}});
      }
      CUSTODY_ASSIGN_OR_RETURN(auto tuned, related(store, ckpt, Direction::kIn, lineage::rel::kInitializedFrom));
      for (const auto& t : tuned) CUSTODY_RETURN_IF_ERROR(add_run(t["from"], cnode));
      node["children"].push_back(cnode);
    }
    node["label"] = node["label"].get<std::string>() + run_mark;
    parent["children"].push_back(node);
    return Status::ok();
  };
  CUSTODY_ASSIGN_OR_RETURN(auto consumers, related(store, id, Direction::kIn, lineage::rel::kConsumed));
  for (const auto& c : consumers) CUSTODY_RETURN_IF_ERROR(add_run(c["from"], root));
  // Retrainings' versions of this data set (it minus withdrawn records), and their runs.
  CUSTODY_ASSIGN_OR_RETURN(auto subsets, related(store, id, Direction::kIn, lineage::rel::kSubsetOf));
  for (const auto& sub : subsets) {
    json snode{{"label", "version without " + std::to_string(sub.value("excluded", 0)) + " withdrawn records: " +
                             sub.value("from", std::string())},
               {"children", json::array()}};
    CUSTODY_ASSIGN_OR_RETURN(auto users, related(store, sub["from"], Direction::kIn, lineage::rel::kConsumed));
    for (const auto& c : users) CUSTODY_RETURN_IF_ERROR(add_run(c["from"], snode));
    root["children"].push_back(std::move(snode));
  }
  root["affected_checkpoints"] = affected_checkpoints;
  root["affected_models"] = affected_models;
  root["tainted_models"] = tainted_models;
  return root;
}

Result<json> usage_impl(const CustodyStore& store, const std::string& ref, const std::string& only,
                        int64_t since_ms, int64_t until_ms, size_t limit) {
  CUSTODY_ASSIGN_OR_RETURN(auto id, resolve_id(store, ref));
  // A model name covers all its versions; a version or checkpoint just itself.
  std::vector<std::pair<std::string, std::string>> targets;  // checkpoint, label
  if (lineage::has_prefix(id, lineage::prefix::kModel)) {
    CUSTODY_ASSIGN_OR_RETURN(auto m, body_of(store, id));
    const std::string name = m.value("name", std::string());
    const bool all_versions = ref.find('@') == std::string::npos;
    CUSTODY_ASSIGN_OR_RETURN(auto versions, store.find({{"type", lineage::kEntity}, {"kind", lineage::kind::kModelVersion}, {"name", name}}));
    for (const auto& v : versions) {
      if (!all_versions && v.body["id"] != id) continue;
      targets.emplace_back(v.body["checkpoint"], lineage::display_name(v.body["id"].get<std::string>(), lineage::prefix::kModel));
    }
  } else if (lineage::has_prefix(id, lineage::prefix::kCheckpoint)) {
    targets.emplace_back(id, id);
  } else {
    return invalid_argument("usage is kept for models and checkpoints; '" + ref + "' is " + id);
  }
  json out{{"target", id}, {"records", json::array()}, {"by_principal", json::object()}};
  std::map<std::tuple<std::string, std::string, std::string>, json> rows;  // principal, version, action
  auto add = [&](const std::string& label, const std::string& who, const std::string& action, uint64_t calls,
                 uint64_t nrows, int64_t first_ms, int64_t last_ms) {
    json& p = out["by_principal"][who];
    if (p.is_null()) p = {{"calls", 0}, {"first_ms", first_ms}, {"last_ms", last_ms}, {"by_version", json::object()}};
    p["calls"] = p["calls"].get<uint64_t>() + calls;
    p["first_ms"] = std::min(p["first_ms"].get<int64_t>(), first_ms);
    p["last_ms"] = std::max(p["last_ms"].get<int64_t>(), last_ms);
    p["by_version"][label + " " + action] = p["by_version"].value(label + " " + action, uint64_t(0)) + calls;
    json& row = rows[{who, label, action}];
    if (row.is_null()) {
      row = {{"principal", who}, {"version", label}, {"action", action}, {"calls", 0}, {"rows", 0},
             {"first_ms", first_ms}, {"last_ms", last_ms}};
    }
    row["calls"] = row["calls"].get<uint64_t>() + calls;
    row["rows"] = row["rows"].get<uint64_t>() + nrows;
    row["first_ms"] = std::min(row["first_ms"].get<int64_t>(), first_ms);
    row["last_ms"] = std::max(row["last_ms"].get<int64_t>(), last_ms);
  };
  // The newest `limit` records listed (0: all), oldest first; the summary covers all.
  std::vector<std::pair<uint64_t, json>> listed;  // seq, record
  auto list = [&](const Record& u, const std::string& label) {
    json rec = u.body;
    rec["version"] = label;
    rec["seq"] = u.seq;
    listed.emplace_back(u.seq, std::move(rec));
  };
  auto by_only = [&](const Record& u) { return only.empty() || u.body.value("principal", std::string()) == only; };
  uint64_t total = 0;
  const bool bounded = since_ms > 0 || until_ms > 0;
  uint64_t from_seq = 0;
  if (since_ms > 0) {
    CUSTODY_ASSIGN_OR_RETURN(auto first, store.first_usage_at(since_ms));
    from_seq = first;
  }
  for (const auto& [ckpt, label] : targets) {
    const size_t before = listed.size();
    if (!bounded) {
      // The summary from the kept sums; the records from the newest back.
      CUSTODY_ASSIGN_OR_RETURN(auto sums, store.usage_sums(ckpt));
      for (const auto& s : sums) {
        if (!only.empty() && s.principal != only) continue;
        add(label, s.principal, s.action, s.calls, s.rows, s.first_ms, s.last_ms);
        total += s.calls;
      }
      CUSTODY_RETURN_IF_ERROR(store.visit_usage_of(ckpt, 0, true, [&](const Record& u) {
        if (limit > 0 && listed.size() - before >= limit) return false;
        if (by_only(u)) list(u, label);
        return true;
      }));
    } else {
      // Only the records in range are read: from the first at or after `since` on.
      CUSTODY_RETURN_IF_ERROR(store.visit_usage_of(ckpt, from_seq, false, [&](const Record& u) {
        if (until_ms > 0 && u.time_ms > until_ms) return false;
        if (u.time_ms < since_ms || !by_only(u)) return true;
        add(label, u.body.value("principal", std::string("?")), u.body.value("action", std::string("?")), 1,
            u.body.value("rows", int64_t(1)), u.time_ms, u.time_ms);
        ++total;
        list(u, label);
        if (limit > 0 && listed.size() - before > limit) listed.erase(listed.begin() + before);
        return true;
      }));
    }
  }
  std::sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (limit > 0 && listed.size() > limit) listed.erase(listed.begin(), listed.end() - limit);
  for (auto& [seq, rec] : listed) out["records"].push_back(std::move(rec));
  out["records_total"] = total;
  out["records_limit"] = limit;
  out["summary"] = json::array();
  for (auto& [key, row] : rows) {
    row["first"] = iso8601_utc(row["first_ms"].get<int64_t>());
    row["last"] = iso8601_utc(row["last_ms"].get<int64_t>());
    row.erase("first_ms");
    row.erase("last_ms");
    out["summary"].push_back(row);
  }
  return out;
}

Result<json> models_impl(const CustodyStore& store) {
  CUSTODY_ASSIGN_OR_RETURN(auto versions, store.find({{"type", lineage::kEntity}, {"kind", lineage::kind::kModelVersion}}));
  json out = json::array();
  for (const auto& v : versions) {
    json m = v.body;
    m["created_at"] = iso8601_utc(v.time_ms);
    out.push_back(m);
  }
  return out;
}

Result<json> checkpoints_impl(const CustodyStore& store, const std::string& job) {
  CUSTODY_ASSIGN_OR_RETURN(auto run, store.entity(job));
  if (!run) return not_found("no job '" + job + "' in the custody store");
  CUSTODY_ASSIGN_OR_RETURN(auto list, store.checkpoints_of(job));
  json out = json::array();
  for (auto& m : list) {
    m.erase("tensors");
    out.push_back(m);
  }
  return out;
}

// OpenLineage 2-0-2 (https://openlineage.io/spec/2-0-2/OpenLineage.json): a run's whole
// history as RunEvents, one JSON object a line. docs/ARCHITECTURE.md ("OpenLineage export")
// explains the choices; tests/openlineage/validate.py checks every event against the spec.
//
// A custody run becomes one OpenLineage run per *segment*: the submission, and each
// `custody resume` of it. Within a segment a rollback (run_recovered: a lost node, a
// coordinator restart) is not an end, so it is a RUNNING event of the same run. A
// cancelled or failed segment ends with ABORT or FAIL, and that end is final: OpenLineage
// allows one terminal event per run, and consumers such as Marquez close a run's state on
// it. So a resume starts a new run (its own runId, START) whose `parent` facet names the
// submission's run, the way a retried task is a new run under its parent; the checkpoint
// it resumes from is among its inputs. A fine-tuned run's `parent` names the run (segment)
// that produced the checkpoint it started from, which is also among its inputs.
constexpr const char* kOlProducer = "https://github.com/custody/custody";
constexpr const char* kOlRunEventSchema =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
constexpr const char* kOlParentSchema =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
constexpr const char* kOlErrorSchema =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
// Custody's own facets; their schemas are docs/facets/*.json.
constexpr const char* kOlDatasetFacetSchema =
    "https://github.com/custody/custody/blob/main/docs/facets/CustodyDatasetFacet.json#/$defs/"
    "CustodyDatasetFacet";
constexpr const char* kOlRunFacetSchema =
    "https://github.com/custody/custody/blob/main/docs/facets/CustodyRunFacet.json#/$defs/CustodyRunFacet";
constexpr const char* kOlPrivacyFacetSchema =
    "https://github.com/custody/custody/blob/main/docs/facets/CustodyPrivacyRunFacet.json#/$defs/"
    "CustodyPrivacyRunFacet";
// Run ids are name-based (UUID version 5) in this namespace, itself
// uuid_v5(RFC 4122's URL namespace, "https://github.com/custody/custody/openlineage/run"):
// the same store exports the same ids every time.
constexpr const char* kOlRunNamespace = "3a3636cd-ff11-5681-8893-701464d54fee";

// Segment 0 is the submission (named by the job id alone); segment k its k-th resume.
Result<std::string> ol_run_id(const std::string& job, size_t segment) {
  return uuid_v5(kOlRunNamespace, segment == 0 ? job : job + "/resume/" + std::to_string(segment));
}

json ol_facet(const char* schema_url, json fields) {
  fields["_producer"] = kOlProducer;
  fields["_schemaURL"] = schema_url;
  return fields;
}

json ol_dataset(const std::string& name) { return {{"namespace", "custody"}, {"name", name}}; }

// A job's run_resumed events, in order: each begins a segment.
Result<std::vector<Record>> ol_resumes(const CustodyStore& store, const std::string& job) {
  return store.find({{"type", lineage::kEvent}, {"event", lineage::event::kRunResumed}, {"run", job}});
}

// The OpenLineage run (id, job name) of the segment of `job` that wrote lineage record `seq`.
Result<json> ol_run_at(const CustodyStore& store, const std::string& job, uint64_t seq) {
  CUSTODY_ASSIGN_OR_RETURN(auto resumes, ol_resumes(store, job));
  size_t segment = 0;
  while (segment < resumes.size() && resumes[segment].seq < seq) ++segment;
  CUSTODY_ASSIGN_OR_RETURN(auto id, ol_run_id(job, segment));
  CUSTODY_ASSIGN_OR_RETURN(auto body, body_of(store, job));
  return json{{"run", {{"runId", id}}},
              {"job", {{"namespace", "custody"}, {"name", body.value("name", job)}}}};
}

// A private run's guarantee as the custody_privacy facet carries it: planned (its charge at
// acceptance, the epsilon of the whole plan) on START; reached (the newest checkpoint's
// recorded guarantee among `checkpoints`) on an end. Null for a run without [privacy].
Result<json> ol_privacy_planned(const CustodyStore& store, const std::string& job) {
  CUSTODY_ASSIGN_OR_RETURN(auto charges, store.relations(job, Direction::kOut, lineage::rel::kPrivacyCharged));
  for (const auto& c : charges) {
    if (c.body.value("why", std::string()) != "planned") continue;
    const double q = c.body["sampling_rate"], sigma = c.body["noise_multiplier"], delta = c.body.value("delta", 0.0);
    const uint64_t steps = c.body["steps"];
    if (!(delta > 0)) return json();
    CUSTODY_ASSIGN_OR_RETURN(auto eps, dp_sgd_epsilon(q, sigma, static_cast<int64_t>(steps), delta));
    return json{{"status", "planned"}, {"epsilon", eps.epsilon}, {"delta", delta}, {"noise_multiplier", sigma},
                {"sampling_rate", q}, {"steps_accounted", steps}, {"adjacency", "example-level add/remove"}};
  }
  return json();
}

Result<json> ol_privacy_reached(const CustodyStore& store, const json& checkpoints) {
  json best;
  uint64_t best_step = 0;
  for (const auto& d : checkpoints) {
    const std::string id = d.value("name", std::string());
    if (!lineage::has_prefix(id, lineage::prefix::kCheckpoint)) continue;
    CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(id));
    if (!e || !e->body.contains("privacy") || !e->body["privacy"].is_object()) continue;
    const uint64_t step = e->body.value("step", uint64_t{0});
    if (best.is_null() || step >= best_step) {
      best = e->body["privacy"];
      best["status"] = "reached";
      best["checkpoint"] = id;
      best_step = step;
    }
  }
  return best;
}

Result<std::string> openlineage_impl(const CustodyStore& store, const std::string& job) {
  CUSTODY_ASSIGN_OR_RETURN(auto run, store.entity(job));
  if (!run) return not_found("no job '" + job + "' in the custody store");
  const json& r = run->body;
  const std::string job_name = r.value("name", job);

  CUSTODY_ASSIGN_OR_RETURN(auto datasets, related(store, job, Direction::kOut, lineage::rel::kConsumed));
  json data_inputs = json::array();
  for (const auto& d : datasets) {
    CUSTODY_ASSIGN_OR_RETURN(auto b, body_of(store, d["to"]));
    const json decl = declaration_of(b, d);
    json in = ol_dataset(d["to"]);
    in["facets"] = {
        {"custody_dataset", ol_facet(kOlDatasetFacetSchema, {{"name", decl["name"]},
                                                             {"sha256", b.value("sha256", std::string())},
                                                             {"license", decl["license"]},
                                                             {"consent", decl["consent"]},
                                                             {"declared_by", decl["declared_by"]}})}};
    data_inputs.push_back(in);
  }
  // Fine-tuning: the origin checkpoint is an input of the first segment, and the run that
  // produced it its parent.
  json init_parent;
  std::string init_checkpoint;
  CUSTODY_ASSIGN_OR_RETURN(auto init, related(store, job, Direction::kOut, lineage::rel::kInitializedFrom));
  if (!init.empty()) {
    init_checkpoint = init.front().value("to", std::string());
    CUSTODY_ASSIGN_OR_RETURN(auto producers, store.relations(init_checkpoint, Direction::kIn, lineage::rel::kProduced));
    if (!producers.empty()) {
      auto parent =
          ol_run_at(store, producers.front().body.value("from", std::string()), producers.front().seq);
      if (!parent.is_ok()) return parent.status();
      init_parent = parent.value();
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(auto produced, store.relations(job, Direction::kOut, lineage::rel::kProduced));
  CUSTODY_ASSIGN_OR_RETURN(auto history, store.find({{"type", lineage::kEvent}, {"run", job}}));

  CUSTODY_ASSIGN_OR_RETURN(const json planned, ol_privacy_planned(store, job));
  std::string lines;
  size_t segment = 0;
  bool open = false;
  uint64_t segment_begin = 0;  // the lineage seq the open segment started after
  std::string run_id;
  json inputs, parent;
  auto emit = [&](const std::string& type, int64_t ms, json run_facets, const json& outputs,
                  json custody = json::object()) {
    custody["job"] = job;
    custody["resume"] = segment;
    run_facets["custody_run"] = ol_facet(kOlRunFacetSchema, std::move(custody));
    if (!parent.is_null()) run_facets["parent"] = ol_facet(kOlParentSchema, parent);
    lines += json{{"eventType", type},
                  {"eventTime", iso8601_utc(ms)},
                  {"producer", kOlProducer},
                  {"schemaURL", kOlRunEventSchema},
                  {"run", {{"runId", run_id}, {"facets", run_facets}}},
                  {"job", {{"namespace", "custody"}, {"name", job_name}}},
                  {"inputs", inputs},
                  {"outputs", outputs}}
                 .dump() +
             "\n";
  };
  auto start = [&](int64_t ms, const std::string& from_checkpoint) -> Status {
    auto id = ol_run_id(job, segment);
    if (!id.is_ok()) return id.status();
    run_id = id.value();
    inputs = data_inputs;
    if (!from_checkpoint.empty()) inputs.push_back(ol_dataset(from_checkpoint));
    open = true;
    json facets = json::object();
    if (!planned.is_null()) facets["custody_privacy"] = ol_facet(kOlPrivacyFacetSchema, planned);
    emit("START", ms, std::move(facets), json::array());
    return Status::ok();
  };
  parent = init_parent;
  CUSTODY_RETURN_IF_ERROR(start(r.value("submitted_at_ms", int64_t(0)), init_checkpoint));
  for (const auto& e : history) {
    const std::string kind = e.body.value("event", std::string());
    if (kind == lineage::event::kRunRecovered && open) {
      json rollback = e.body;
      for (const char* field : {"type", "event", "run"}) rollback.erase(field);
      emit("RUNNING", e.time_ms, json::object(), json::array(), {{"rollback", rollback}});
    } else if (kind == lineage::event::kRunEnded && open) {
      const std::string state = e.body.value("state", std::string());
      json outputs = json::array();
      for (const auto& p : produced) {
        if (p.seq > segment_begin && p.seq < e.seq)
          outputs.push_back(ol_dataset(p.body.value("to", std::string())));
      }
      json facets = json::object();
      CUSTODY_ASSIGN_OR_RETURN(json reached, ol_privacy_reached(store, outputs));
      if (!reached.is_null()) facets["custody_privacy"] = ol_facet(kOlPrivacyFacetSchema, std::move(reached));
      const std::string final_checkpoint = e.body.value("final_checkpoint", std::string());
      if (state == "completed" && !final_checkpoint.empty()) {
        CUSTODY_ASSIGN_OR_RETURN(auto versions, store.relations(final_checkpoint, Direction::kIn, lineage::rel::kVersionOf));
        for (const auto& v : versions)
          outputs.push_back(ol_dataset(v.body.value("from", std::string())));
      }
      const std::string message = e.body.value("message", std::string());
      if (state == "failed" && !message.empty()) {
        facets["errorMessage"] =
            ol_facet(kOlErrorSchema, {{"message", message}, {"programmingLanguage", "C++"}});
      }
      emit(state == "completed"   ? "COMPLETE"
           : state == "cancelled" ? "ABORT"
                                  : "FAIL",
           e.time_ms, facets, outputs);
      open = false;
      segment_begin = e.seq;
    } else if (kind == lineage::event::kRunResumed) {
      // Numbered as ol_run_at numbers them: every resume begins a segment (a segment still
      // open here never recorded its end, and has none in the export either).
      ++segment;
      CUSTODY_ASSIGN_OR_RETURN(auto first, ol_run_id(job, 0));
      parent = {{"run", {{"runId", first}}}, {"job", {{"namespace", "custody"}, {"name", job_name}}}};
      CUSTODY_RETURN_IF_ERROR(start(e.time_ms, e.body.value("from_checkpoint", std::string())));
      segment_begin = e.seq;
    }
  }
  return lines;
}

}  // namespace

Result<std::string> resolve_id(const CustodyStore& store, const std::string& ref) {
  return guarded("lineage", [&] { return resolve_id_impl(store, ref); });
}
Result<json> show(const CustodyStore& store, const std::string& id) {
  return guarded("lineage show", [&] { return show_impl(store, id); });
}
Result<json> trace(const CustodyStore& store, const std::string& id) {
  return guarded("lineage trace", [&] { return trace_impl(store, id); });
}
Result<json> impact(const CustodyStore& store, const std::string& dataset) {
  return guarded("lineage impact", [&] { return impact_impl(store, dataset); });
}
Result<json> usage(const CustodyStore& store, const std::string& target, const std::string& principal,
                   int64_t since_ms, int64_t until_ms, size_t limit) {
  return guarded("usage", [&] { return usage_impl(store, target, principal, since_ms, until_ms, limit); });
}
Result<json> models(const CustodyStore& store) {
  return guarded("models", [&] { return models_impl(store); });
}
Result<json> checkpoints(const CustodyStore& store, const std::string& job) {
  return guarded("checkpoints", [&] { return checkpoints_impl(store, job); });
}
Result<std::string> openlineage(const CustodyStore& store, const std::string& job) {
  return guarded("lineage export", [&] { return openlineage_impl(store, job); });
}

std::string render_tree(const json& node) {
  std::string out;
  std::function<void(const json&, const std::string&, bool, bool)> walk = [&](const json& n, const std::string& indent,
                                                                               bool last, bool root) {
    out += root ? "" : indent + (last ? "└─ " : "├─ ");
    out += n.value("label", std::string("?")) + "\n";
    const json children = n.value("children", json::array());
    for (size_t i = 0; i < children.size(); ++i) {
      walk(children[i], root ? "" : indent + (last ? "   " : "│  "), i + 1 == children.size(), false);
    }
  };
  walk(node, "", true, true);
  return out;
}

}  // namespace custody::storage
