#include "storage/privacy_budget.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "storage/lineage_vocabulary.h"
#include "storage/query_guard.h"
#include "storage/queries.h"

namespace custody::storage {
namespace {

using Direction = CustodyStore::Direction;

std::string number(double v) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.4g", v);
  return b;
}

// A relation as the listing shows it: its fields, with when and where it was recorded.
json as_entry(const Record& r) {
  json e = r.body;
  e["time_ms"] = r.time_ms;
  e["seq"] = r.seq;
  return e;
}

Result<PrivacyLedger> ledger_impl(const CustodyStore& store, const std::string& dataset_id) {
  PrivacyLedger ledger;
  ledger.dataset = dataset_id;
  CUSTODY_ASSIGN_OR_RETURN(auto budgets, store.relations(dataset_id, Direction::kIn, lineage::rel::kPrivacyBudget));
  if (!budgets.empty()) {  // in log order: the newest is in force
    const Record& r = budgets.back();
    ledger.budget = DatasetBudget{r.body["epsilon"].get<double>(), r.body["delta"].get<double>(), r.body["from"],
                                  r.body.value("reason", std::string()), r.time_ms};
  }
  CUSTODY_ASSIGN_OR_RETURN(auto charged, store.relations(dataset_id, Direction::kIn, lineage::rel::kPrivacyCharged));
  std::map<std::string, size_t> by_run;
  for (const Record& r : charged) {
    const std::string run = r.body["from"];
    auto [it, first] = by_run.emplace(run, ledger.runs.size());
    if (first) {
      RunSpending s;
      s.run = run;
      s.q = r.body["sampling_rate"].get<double>();
      s.sigma = r.body["noise_multiplier"].get<double>();
      ledger.runs.push_back(s);
    }
    RunSpending& s = ledger.runs[it->second];
    const uint64_t steps = r.body["steps"].get<uint64_t>();
    if (r.body["why"] == "planned") {
      s.steps_planned += steps;
    } else {
      s.steps_repeated += steps;
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(auto overrides, store.relations(dataset_id, Direction::kIn, lineage::rel::kPrivacyOverride));
  for (const Record& r : overrides) ledger.overrides.push_back(as_entry(r));
  CUSTODY_ASSIGN_OR_RETURN(auto refusals, store.relations(dataset_id, Direction::kIn, lineage::rel::kPrivacyRefused));
  for (const Record& r : refusals) ledger.refusals.push_back(as_entry(r));
  return ledger;
}

Result<json> spending_impl(const CustodyStore& store, const std::string& ref) {
  std::string id = ref;
  CUSTODY_ASSIGN_OR_RETURN(auto direct, store.entity(ref));
  if (!direct) {
    auto resolved = resolve_id(store, ref);
    // A budget may be set on a data set before any job has consumed it: dataset:HASH is
    // then taken as given.
    if (resolved.is_ok()) {
      id = resolved.value();
    } else if (!lineage::has_prefix(ref, lineage::prefix::kDataset)) {
      return resolved.status();
    }
  }
  if (!lineage::has_prefix(id, lineage::prefix::kDataset)) {
    return invalid_argument("'" + ref + "' is " + id + ", not a data set; `custody privacy MODEL` gives a model's "
                            "privacy statement, `custody privacy dataset:HASH` a data set's spending");
  }
  CUSTODY_ASSIGN_OR_RETURN(PrivacyLedger ledger, ledger_impl(store, id));
  json out{{"dataset", id}, {"budget", nullptr}};
  CUSTODY_ASSIGN_OR_RETURN(auto entity, store.entity(id));
  if (entity) out["name"] = entity->body.value("name", std::string());
  // Epsilon at the budget's delta; without a budget, at the smallest delta a run asked for
  // (each run's own recorded delta is in its checkpoints' guarantee).
  double delta = ledger.budget ? ledger.budget->delta : 0;
  json runs = json::array();
  for (const RunSpending& s : ledger.runs) {
    CUSTODY_ASSIGN_OR_RETURN(auto run, store.entity(s.run));
    json r{{"run", s.run},
           {"name", run ? run->body.value("name", std::string()) : std::string()},
           {"submitter", run ? run->body.value("submitter", std::string()) : std::string()},
           {"sampling_rate", s.q},
           {"noise_multiplier", s.sigma},
           {"steps_planned", s.steps_planned},
           {"steps_repeated", s.steps_repeated}};
    runs.push_back(std::move(r));
  }
  if (delta == 0) {
    CUSTODY_ASSIGN_OR_RETURN(auto charged, store.relations(id, Direction::kIn, lineage::rel::kPrivacyCharged));
    for (const Record& r : charged) {
      const double d = r.body.value("delta", 0.0);
      if (d > 0 && (delta == 0 || d < delta)) delta = d;
    }
  }
  double total = 0;
  if (delta > 0) {
    for (size_t i = 0; i < ledger.runs.size(); ++i) {
      CUSTODY_ASSIGN_OR_RETURN(auto curve, compose_charges({{ledger.runs[i].q, ledger.runs[i].sigma,
                                                             static_cast<int64_t>(ledger.runs[i].steps())}}));
      CUSTODY_ASSIGN_OR_RETURN(runs[i]["epsilon"], epsilon_of(curve, delta));
    }
    CUSTODY_ASSIGN_OR_RETURN(auto all, compose_charges(ledger.charges()));
    CUSTODY_ASSIGN_OR_RETURN(total, epsilon_of(all, delta));
  }
  out["runs"] = runs;
  out["delta"] = delta;
  out["spent_epsilon"] = total;
  if (ledger.budget) {
    const DatasetBudget& b = *ledger.budget;
    out["budget"] = {{"epsilon", b.epsilon}, {"delta", b.delta}, {"set_by", b.set_by}, {"reason", b.reason},
                     {"time_ms", b.time_ms}};
    out["remaining_epsilon"] = b.epsilon > total ? b.epsilon - total : 0.0;
  }
  out["overrides"] = ledger.overrides;
  out["refusals"] = ledger.refusals;
  out["composition"] = "RDP curves of every charge added order by order (Mironov, Talwar, Zhang 2019), "
                       "converted at the budget's delta (Canonne, Kamath, Steinke 2020)";
  return out;
}

}  // namespace

std::vector<PrivacyCharge> PrivacyLedger::charges() const {
  std::vector<PrivacyCharge> out;
  for (const RunSpending& s : runs) out.push_back({s.q, s.sigma, static_cast<int64_t>(s.steps())});
  return out;
}

Result<PrivacyLedger> privacy_ledger(const CustodyStore& store, const std::string& dataset_id) {
  return guarded("privacy ledger", [&] { return ledger_impl(store, dataset_id); });
}

Result<std::string> dataset_owner(const CustodyStore& store, const std::string& dataset_id) {
  return guarded("privacy budget", [&]() -> Result<std::string> {
    CUSTODY_ASSIGN_OR_RETURN(auto consumed, store.relations(dataset_id, Direction::kIn, lineage::rel::kConsumed));
    if (consumed.empty()) return std::string();
    return consumed.front().body.value("declared_by", std::string());
  });
}

Result<json> privacy_spending(const CustodyStore& store, const std::string& ref) {
  return guarded("privacy", [&] { return spending_impl(store, ref); });
}

std::string render_spending(const json& s) {
  std::ostringstream o;
  const std::string name = s.value("name", std::string());
  o << "data set " << s["dataset"].get<std::string>() << (name.empty() ? "" : " (" + name + ")") << "\n";
  const json& b = s["budget"];
  if (b.is_null()) {
    o << "budget: none set (private jobs are charged all the same; set one with `custody privacy budget set`)\n";
  } else {
    o << "budget: epsilon " << number(b["epsilon"]) << " at delta " << number(b["delta"]) << ", set by "
      << lineage::display_name(b.value("set_by", std::string()), lineage::prefix::kPrincipal)
      << (b.value("reason", std::string()).empty() ? "" : " (" + b["reason"].get<std::string>() + ")") << "\n";
  }
  const json& runs = s["runs"];
  if (runs.empty()) o << "no private job has spent from it\n";
  for (const json& r : runs) {
    o << "  " << r["run"].get<std::string>() << " '" << r.value("name", std::string()) << "' by "
      << r.value("submitter", std::string()) << ": epsilon " << (r.contains("epsilon") ? number(r["epsilon"]) : "?")
      << " alone (" << r["steps_planned"].get<uint64_t>() << " steps planned";
    if (r["steps_repeated"].get<uint64_t>() > 0) {
      o << " + " << r["steps_repeated"].get<uint64_t>() << " computed twice";
    }
    o << ", sigma " << number(r["noise_multiplier"]) << ", q " << number(r["sampling_rate"]) << ")\n";
  }
  o << "spent: epsilon " << number(s["spent_epsilon"]) << " at delta " << number(s["delta"])
    << " (the runs composed: RDP curves added, not epsilons)\n";
  if (s.contains("remaining_epsilon")) o << "remaining: epsilon " << number(s["remaining_epsilon"]) << "\n";
  for (const json& v : s["overrides"]) {
    o << "override: " << v.value("from", std::string()) << ", a job without a privacy guarantee, let through by "
      << lineage::display_name(v.value("by", std::string()), lineage::prefix::kPrincipal) << ": "
      << v.value("reason", std::string()) << "\n";
  }
  for (const json& v : s["refusals"]) {
    o << "refused: a job of " << lineage::display_name(v.value("from", std::string()), lineage::prefix::kPrincipal)
      << ": " << v.value("reason", std::string()) << "\n";
  }
  return o.str();
}

}  // namespace custody::storage
