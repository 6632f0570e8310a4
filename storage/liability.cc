#include "storage/liability.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <set>

#include "core/hash.h"
#include "core/log.h"
#include "storage/lineage_vocabulary.h"

namespace custody::storage::liability {
namespace {

using Direction = CustodyStore::Direction;

// Lineage walks stop here: a fine-tuning chain deeper than this is a damaged or hostile store.
constexpr int kMaxDepth = 64;

std::string short_hash(const std::string& h) { return h.size() > 12 ? h.substr(0, 12) : h; }

std::string join(const json& list) {
  std::string out;
  for (const auto& v : list) out += (out.empty() ? "" : ", ") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

Result<json> entity_body(const CustodyStore& store, const std::string& id) {
  CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(id));
  if (!e) return not_found("nothing with id '" + id + "' in the custody store");
  return e->body;
}

// One data set a checkpoint's lineage read: the run that consumed it, that run's `consumed`
// relation (the declaration), and the checkpoints and runs between (nearest first).
struct Upstream {
  std::string run, dataset;
  json consumed;
  json path;
};

Status walk(const CustodyStore& store, const std::string& checkpoint, json path, std::set<std::string>& seen,
            std::vector<Upstream>& out, int depth) {
  if (depth > kMaxDepth) {
    return data_loss("the lineage of " + checkpoint + " is more than " + std::to_string(kMaxDepth) +
                     " fine-tunings deep; run `custody audit verify`");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto c, entity_body(store, checkpoint));
  const std::string run = c.value("job", std::string());
  path.push_back(checkpoint);
  path.push_back(run);
  if (!seen.insert(run).second) return Status::ok();
  CUSTODY_ASSIGN_OR_RETURN(auto consumed, store.relations(run, Direction::kOut, lineage::rel::kConsumed));
  for (const auto& r : consumed) out.push_back({run, r.body.value("to", std::string()), r.body, path});
  CUSTODY_ASSIGN_OR_RETURN(auto init, store.relations(run, Direction::kOut, lineage::rel::kInitializedFrom));
  for (const auto& r : init) {
    CUSTODY_RETURN_IF_ERROR(walk(store, r.body.value("to", std::string()), path, seen, out, depth + 1));
  }
  return Status::ok();
}

Result<std::vector<Upstream>> upstream(const CustodyStore& store, const std::string& checkpoint) {
  std::vector<Upstream> out;
  std::set<std::string> seen;
  CUSTODY_RETURN_IF_ERROR(walk(store, checkpoint, json::array(), seen, out, 0));
  return out;
}

// The revocations of a data set that still cover records a reader of it read: every
// revocation recorded on it, and, for a data set that is another minus some records (a
// retraining: "base" and "excluded"), the base's revocations that withdraw a record it kept.
Result<std::vector<json>> revocations_reaching(const CustodyStore& store, const std::string& dataset_id, int depth = 0) {
  std::vector<json> out;
  if (depth > kMaxDepth) return out;
  CUSTODY_ASSIGN_OR_RETURN(auto revokes, store.relations(dataset_id, Direction::kIn, lineage::rel::kRevokes));
  for (const auto& r : revokes) {
    CUSTODY_ASSIGN_OR_RETURN(auto rev, entity_body(store, r.body.value("from", std::string())));
    out.push_back(std::move(rev));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto d, store.entity(dataset_id));
  if (d && d->body.contains("base") && d->body["base"].is_string()) {
    std::set<uint64_t> excluded;
    for (const auto& i : d->body.value("excluded", json::array()))
      if (i.is_number_unsigned()) excluded.insert(i.get<uint64_t>());
    CUSTODY_ASSIGN_OR_RETURN(auto inherited, revocations_reaching(store, d->body["base"], depth + 1));
    for (auto& rev : inherited) {
      const json records = rev.value("records", json::array());
      const bool whole = rev.value("scope", std::string()) == "dataset";
      const bool kept_one = whole || std::any_of(records.begin(), records.end(), [&](const json& i) {
                              return !i.is_number_unsigned() || !excluded.count(i.get<uint64_t>());
                            });
      if (kept_one) out.push_back(std::move(rev));
    }
  }
  return out;
}

std::string label_of(const std::string& checkpoint, const std::string& label) {
  return label.empty() || label == checkpoint ? checkpoint : "model " + label + " (" + checkpoint + ")";
}

}  // namespace

Result<std::vector<uint64_t>> parse_record_list(const std::string& text, const std::string& origin) {
  std::set<uint64_t> out;
  size_t line = 1;
  size_t i = 0;
  auto number = [&](uint64_t& v) -> bool {
    if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i]))) return false;
    v = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (v > (UINT64_MAX - 9) / 10) return false;
      v = v * 10 + static_cast<uint64_t>(text[i++] - '0');
    }
    return true;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == ',') {
      ++i;
    } else if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
    } else {
      uint64_t a = 0, b = 0;
      const size_t start = i;
      if (!number(a)) {
        size_t end = text.find_first_of(" \t\r\n,", start);
        return invalid_argument(origin + ":" + std::to_string(line) + ": '" +
                                text.substr(start, end == std::string::npos ? std::string::npos : end - start) +
                                "' is not a record index (whole numbers from 0, or A-B for a range)");
      }
      b = a;
      if (i < text.size() && text[i] == '-') {
        ++i;
        if (!number(b) || b < a) {
          return invalid_argument(origin + ":" + std::to_string(line) + ": a range is A-B with A <= B");
        }
      }
      if (b - a >= 100'000'000) return invalid_argument(origin + ":" + std::to_string(line) + ": a range of more than 100000000 records");
      for (uint64_t k = a; k <= b; ++k) out.insert(k);
    }
  }
  if (out.empty()) {
    return invalid_argument(origin + " lists no record index; to withdraw the whole data set, leave out --records");
  }
  return std::vector<uint64_t>(out.begin(), out.end());
}

Result<std::string> dataset_owner(const CustodyStore& store, const std::string& dataset_id) {
  CUSTODY_ASSIGN_OR_RETURN(auto consumed, store.relations(dataset_id, Direction::kIn, lineage::rel::kConsumed));
  for (const auto& c : consumed) {
    const std::string by = c.body.value("declared_by", std::string());
    if (!by.empty()) return by;
  }
  return std::string();
}

Result<json> record_revocation(CustodyStore& store, const std::string& dataset_id, const std::vector<uint64_t>& records,
                               const std::string& reason, const std::string& by) {
  CUSTODY_ASSIGN_OR_RETURN(auto d, store.entity(dataset_id));
  if (!d || d->body.value("kind", std::string()) != lineage::kind::kDataset) {
    return not_found("no data set '" + dataset_id + "' in the custody store (`custody lineage impact` lists what one reached)");
  }
  if (reason.empty()) return invalid_argument("a revocation needs a reason (--reason TEXT): it is what a dispute reads");
  const int64_t samples = d->body.value("train_samples", int64_t(0));
  for (uint64_t r : records) {
    if (samples > 0 && r >= static_cast<uint64_t>(samples)) {
      return invalid_argument("record index " + std::to_string(r) + " is beyond the data set's " +
                              std::to_string(samples) + " training records (indices 0 to " +
                              std::to_string(samples - 1) + ")");
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::string hex, random_token(8));
  const std::string id = lineage::revocation_id(hex);
  json rev{{"dataset", dataset_id},
           {"dataset_name", d->body.value("name", std::string())},
           {"scope", records.empty() ? "dataset" : "records"},
           {"records", records},
           {"record_count", records.empty() ? static_cast<uint64_t>(std::max<int64_t>(samples, 0)) : records.size()},
           {"reason", reason},
           {"by", by},
           {"time_ms", store.clock().wall_ms()}};
  Batch b("data set revoked");
  b.entity(lineage::kind::kRevocation, id, rev);
  b.relation(lineage::rel::kRevokes, id, dataset_id, {{"scope", rev["scope"]}, {"record_count", rev["record_count"]}});
  b.relation(lineage::rel::kRevokedBy, id, by);
  CUSTODY_RETURN_IF_ERROR(store.write(b));
  rev["id"] = id;
  rev["kind"] = lineage::kind::kRevocation;
  return rev;
}

Status record_revocation_refused(CustodyStore& store, const std::string& dataset_ref, const std::vector<uint64_t>& records,
                                 const std::string& by, const std::string& why) {
  Batch b("revocation refused");
  b.event({{"event", lineage::event::kRevocationRefused},
           {"dataset", dataset_ref},
           {"record_count", records.size()},
           {"principal", by},
           {"why", why},
           {"time_ms", store.clock().wall_ms()}});
  return store.write(b);
}

Result<json> record_override(CustodyStore& store, const std::string& checkpoint, const std::string& label,
                             const std::string& revocation, const std::string& purpose, const std::string& reason,
                             const std::string& by) {
  if (purpose.empty() || purpose == kUnspecifiedPurpose) {
    return invalid_argument("an override is for one stated purpose (--purpose): none was given");
  }
  if (reason.empty()) return invalid_argument("an override needs a reason (--reason TEXT)");
  CUSTODY_ASSIGN_OR_RETURN(auto taints, taint_of(store, checkpoint));
  const bool taints_it = std::any_of(taints.begin(), taints.end(), [&](const json& t) { return t["id"] == revocation; });
  if (!taints_it) {
    std::string which;
    for (const auto& t : taints) which += (which.empty() ? "" : ", ") + t["id"].get<std::string>();
    return invalid_argument(revocation + " does not taint " + label_of(checkpoint, label) + " (" +
                            (which.empty() ? "nothing does" : "it is tainted by " + which) + ")");
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::string hex, random_token(8));
  const std::string id = lineage::override_id(hex);
  json o{{"checkpoint", checkpoint}, {"model", label}, {"revocation", revocation}, {"purpose", purpose},
         {"reason", reason},         {"by", by},       {"time_ms", store.clock().wall_ms()}};
  Batch b("taint overridden");
  b.entity(lineage::kind::kTaintOverride, id, o);
  b.relation(lineage::rel::kAllows, id, checkpoint, {{"purpose", purpose}});
  b.relation(lineage::rel::kOverrides, id, revocation);
  CUSTODY_RETURN_IF_ERROR(store.write(b));
  o["id"] = id;
  o["kind"] = lineage::kind::kTaintOverride;
  return o;
}

Status record_use_refused(CustodyStore& store, json refusal) {
  refusal["event"] = lineage::event::kUseRefused;
  refusal["time_ms"] = store.clock().wall_ms();
  Batch b("use refused");
  b.event(std::move(refusal));
  return store.write(b);
}

namespace {

Result<std::vector<json>> taint_over(const CustodyStore& store, const std::vector<Upstream>& ups) {
  std::vector<json> out;
  std::set<std::string> seen;
  for (const auto& u : ups) {
    CUSTODY_ASSIGN_OR_RETURN(auto revs, revocations_reaching(store, u.dataset));
    for (auto& rev : revs) {
      if (!seen.insert(rev.value("id", std::string())).second) continue;
      rev["run"] = u.run;
      rev["path"] = u.path;
      out.push_back(std::move(rev));
    }
  }
  return out;
}

json permissions_over(const std::vector<Upstream>& ups) {
  json clauses = json::array();
  std::set<std::string> allowed;
  bool restricted = false;
  for (const auto& u : ups) {
    const json& c = u.consumed;
    for (const auto& [field, clause] : {std::pair<const char*, const char*>{"purposes", "licence"},
                                        std::pair<const char*, const char*>{"consent_purposes", "consent"}}) {
      if (!c.contains(field) || !c[field].is_array()) continue;
      std::set<std::string> these;
      for (const auto& p : c[field])
        if (p.is_string()) these.insert(p.get<std::string>());
      if (!restricted) {
        allowed = these;
      } else {
        std::set<std::string> both;
        std::set_intersection(allowed.begin(), allowed.end(), these.begin(), these.end(), std::inserter(both, both.end()));
        allowed = std::move(both);
      }
      restricted = true;
      clauses.push_back({{"dataset", u.dataset},
                         {"dataset_name", c.value("name", std::string())},
                         {"run", u.run},
                         {"declared_by", c.value("declared_by", std::string())},
                         {"clause", clause},
                         {"spdx", c.value("spdx", std::string())},
                         {"license", c.value("license", std::string())},
                         {"allowed", std::vector<std::string>(these.begin(), these.end())}});
    }
  }
  json out{{"restricted", restricted}, {"clauses", clauses}};
  if (restricted) out["allowed"] = std::vector<std::string>(allowed.begin(), allowed.end());
  return out;
}

}  // namespace

Result<std::vector<json>> taint_of(const CustodyStore& store, const std::string& checkpoint) {
  CUSTODY_ASSIGN_OR_RETURN(auto ups, upstream(store, checkpoint));
  return taint_over(store, ups);
}

Result<std::vector<json>> overrides_of(const CustodyStore& store, const std::string& checkpoint) {
  CUSTODY_ASSIGN_OR_RETURN(auto allows, store.relations(checkpoint, Direction::kIn, lineage::rel::kAllows));
  std::vector<json> out;
  for (const auto& a : allows) {
    CUSTODY_ASSIGN_OR_RETURN(auto o, entity_body(store, a.body.value("from", std::string())));
    out.push_back(std::move(o));
  }
  return out;
}

Result<json> permissions_of(const CustodyStore& store, const std::string& checkpoint) {
  CUSTODY_ASSIGN_OR_RETURN(auto ups, upstream(store, checkpoint));
  return permissions_over(ups);
}

std::string describe_revocation(const json& r) {
  const std::string scope = r.value("scope", std::string()) == "dataset"
                                ? "the whole data set"
                                : std::to_string(r.value("record_count", uint64_t(0))) + " records";
  return r.value("id", std::string("?")) + " of data set " + r.value("dataset_name", std::string("?")) + " (" +
         short_hash(lineage::display_name(r.value("dataset", std::string()), lineage::prefix::kDataset)) + "…; " +
         scope + ") by " + lineage::display_name(r.value("by", std::string("?")), lineage::prefix::kPrincipal) +
         " at " + iso8601_utc(r.value("time_ms", int64_t(0))) + ": \"" + r.value("reason", std::string()) + "\"";
}

Status check_use(const CustodyStore& store, const std::string& checkpoint, const std::string& label,
                 const std::string& purpose, bool named_by_newest, std::vector<std::string>* overrides_used) {
  const std::string what = label_of(checkpoint, label);
  // The CLI's default purpose when none is given says just that.
  const bool no_purpose = purpose.empty() || purpose == kUnspecifiedPurpose;
  // One walk of the lineage serves both questions: it is the check's cost (bench/liability_check.cc).
  CUSTODY_ASSIGN_OR_RETURN(auto ups, upstream(store, checkpoint));
  CUSTODY_ASSIGN_OR_RETURN(auto taints, taint_over(store, ups));
  if (!taints.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(auto overrides, overrides_of(store, checkpoint));
    for (const auto& t : taints) {
      const std::string rev = t.value("id", std::string());
      auto o = std::find_if(overrides.begin(), overrides.end(), [&](const json& x) {
        return x.value("revocation", std::string()) == rev && !no_purpose && x.value("purpose", std::string()) == purpose;
      });
      if (o != overrides.end()) {
        if (overrides_used) overrides_used->push_back(o->value("id", std::string()));
        continue;
      }
      std::string via;
      if (t.value("run", std::string()) != checkpoint) via = " (through run " + t.value("run", std::string()) + ")";
      std::string more;
      if (taints.size() > 1) more = " (" + std::to_string(taints.size()) + " revocations taint it; `custody lineage trace` lists them)";
      std::string newest;
      if (named_by_newest) {
        newest = " It is the newest version of the name you gave; Custody never answers with an older version in its "
                 "place: name one explicitly (NAME@VERSION) if you accept it.";
      }
      return failed_precondition(what + kTaintRefusal + describe_revocation(t) + via + more +
                                 ". Serving and export refuse a tainted model version." + newest +
                                 " Retrain without the revoked records (`custody retrain " +
                                 (label.empty() ? checkpoint : label) + " --without " + rev +
                                 "`), or an admin may allow this version for one stated purpose (`custody allow " +
                                 (label.empty() ? checkpoint : label) + " --despite " + rev +
                                 " --purpose P --reason TEXT`).");
    }
  }
  json perms = permissions_over(ups);
  if (!perms.value("restricted", false)) return Status::ok();
  if (no_purpose) {
    return Status(ErrorCode::kPermissionDenied,
                  what + " may be used only for a purpose its data allows (" +
                      (perms["allowed"].empty() ? std::string("none: its licences and consents have no purpose in common")
                                                : join(perms["allowed"])) +
                      "); say which with --purpose (HTTP: parameters.purpose)");
  }
  for (const auto& c : perms["clauses"]) {
    const json& allowed = c["allowed"];
    if (std::find(allowed.begin(), allowed.end(), purpose) != allowed.end()) continue;
    const std::string spdx = c.value("spdx", std::string());
    const std::string license = c.value("license", std::string());
    const std::string clause =
        c["clause"] == "licence"
            ? "the licence" + (spdx.empty() ? std::string() : " " + spdx) +
                  (license.empty() || license == spdx ? std::string() : " (" + license + ")")
            : std::string("the consent of its data subjects");
    return Status(ErrorCode::kPermissionDenied,
                  "purpose '" + purpose + "' is not allowed for " + what + ": " + clause + " of data set " +
                      c.value("dataset_name", std::string("?")) + " (" +
                      short_hash(lineage::display_name(c.value("dataset", std::string()), lineage::prefix::kDataset)) +
                      "…, declared by " +
                      lineage::display_name(c.value("declared_by", std::string("?")), lineage::prefix::kPrincipal) +
                      " for run " + c.value("run", std::string("?")) + ") allows only: " +
                      (allowed.empty() ? std::string("nothing") : join(allowed)) +
                      (perms["allowed"].empty() ? std::string(". No purpose is allowed by every upstream declaration.")
                                                : ". Every upstream declaration allows: " + join(perms["allowed"]) + "."));
  }
  return Status::ok();
}

Status UseCheckCache::check(const CustodyStore& store, const std::string& checkpoint, const std::string& label,
                            const std::string& purpose, bool named_by_newest, std::vector<std::string>* overrides_used) {
  CUSTODY_ASSIGN_OR_RETURN(const uint64_t lineage_size, store.log_size(lineage::kLineageLog));
  const std::string key = checkpoint + "|" + label + "|" + purpose + "|" + (named_by_newest ? "1" : "0");
  auto it = answers_.find(key);
  if (it == answers_.end() || it->second.lineage_size != lineage_size) {
    if (answers_.size() >= 4096) answers_.clear();  // bounded; refilled from the store
    Answer a;
    a.lineage_size = lineage_size;
    a.status = check_use(store, checkpoint, label, purpose, named_by_newest, &a.overrides);
    // A read that failed is not an answer to keep.
    if (a.status.code() != ErrorCode::kOk && a.status.code() != ErrorCode::kFailedPrecondition &&
        a.status.code() != ErrorCode::kPermissionDenied) {
      return a.status;
    }
    it = answers_.insert_or_assign(key, std::move(a)).first;
  }
  if (overrides_used) *overrides_used = it->second.overrides;
  return it->second.status;
}

}  // namespace custody::storage::liability
