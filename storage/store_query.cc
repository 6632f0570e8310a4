#include "storage/store_query.h"

#include <functional>
#include <map>

#include "storage/lineage_vocabulary.h"
#include "storage/notary.h"
#include "storage/privacy_budget.h"
#include "storage/privacy_statement.h"
#include "storage/queries.h"

namespace custody::storage {
namespace {

using Query = std::function<Result<json>(const CustodyStore&, const std::string&)>;

Result<json> verify_json(const CustodyStore& store, const std::string& argument) {
  std::string kept_heads, public_key;
  if (!argument.empty()) {
    const json a = json::parse(argument, nullptr, false);
    if (!a.is_object() || !a.value("kept_heads", json()).is_string()) {
      return invalid_argument("verify takes {\"kept_heads\": TEXT, \"public_key\": HEX}, not '" +
                              argument.substr(0, 80) + "'");
    }
    kept_heads = a["kept_heads"];
    public_key = a.value("public_key", std::string());
  }
  CUSTODY_ASSIGN_OR_RETURN(const VerifyReport report, store.verify());
  std::vector<std::string> extended;
  std::string since_problem;
  if (report.ok && !kept_heads.empty()) {
    auto checked = check_kept_heads(kept_heads, public_key, store);
    if (!checked.is_ok()) {
      if (checked.status().code() == ErrorCode::kInvalidArgument) return checked.status();
      since_problem = "against the kept heads: " + checked.status().message();
    } else {
      extended = checked.value();
    }
  }
  json heads = json::array();
  for (const auto& h : report.heads) heads.push_back({{"log", h.log}, {"size", h.size}, {"root", h.root_hex}});
  return json{{"ok", report.ok && since_problem.empty()},
              {"records_checked", report.records_checked},
              {"tensors_checked", report.blobs_checked},
              {"tensors_opened_with_store_key", report.tensors_opened},
              {"tensors_sealed_not_opened", report.tensors_sealed_unopened},
              {"tensors_in_clear", report.tensors_in_clear},
              {"index_entries_checked", report.index_entries_checked},
              {"heads", heads},
              {"extends_kept_heads", extended},
              {"notes", report.notes},
              {"problem", report.ok ? since_problem : report.problem}};
}

Result<json> graph(const CustodyStore& store, const std::string& ref) {
  CUSTODY_ASSIGN_OR_RETURN(const std::string id, resolve_id(store, ref));
  const bool dataset = id.rfind(lineage::prefix::kDataset, 0) == 0;
  CUSTODY_ASSIGN_OR_RETURN(json tree, dataset ? impact(store, ref) : trace(store, ref));
  return json{{"id", id}, {"dataset", dataset}, {"tree", std::move(tree)}};
}

const std::vector<std::pair<std::string, Query>>& table() {
  static const std::vector<std::pair<std::string, Query>> kQueries{
      {"models", [](const CustodyStore& s, const std::string&) { return models(s); }},
      {"checkpoints", checkpoints},
      {"show", show},
      {"trace", trace},
      {"impact", impact},
      {"graph", graph},
      {"openlineage",
       [](const CustodyStore& s, const std::string& job) -> Result<json> {
         CUSTODY_ASSIGN_OR_RETURN(std::string lines, openlineage(s, job));
         return json{{"lines", std::move(lines)}};
       }},
      {"privacy",
       [](const CustodyStore& s, const std::string& ref) -> Result<json> {
         auto id = resolve_id(s, ref);
         const bool dataset = lineage::has_prefix(ref, lineage::prefix::kDataset) ||
                              (id.is_ok() && lineage::has_prefix(id.value(), lineage::prefix::kDataset));
         return dataset ? privacy_spending(s, ref) : privacy_statement(s, ref);
       }},
      {"verify", verify_json},
  };
  return kQueries;
}

}  // namespace

const std::vector<std::string>& query_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& [name, query] : table()) names.push_back(name);
    return names;
  }();
  return kNames;
}

Result<json> run_query(const CustodyStore& store, const std::string& query, const std::string& argument) {
  for (const auto& [name, run] : table()) {
    if (name == query) return run(store, argument);
  }
  std::string known;
  for (const auto& name : query_names()) known += (known.empty() ? "" : ", ") + name;
  return invalid_argument("no store query '" + query.substr(0, 40) + "': the store answers " + known +
                          " (a newer CLI than this coordinator?)");
}

std::string verify_argument(const std::string& kept_heads_text, const std::string& public_key) {
  if (kept_heads_text.empty()) return "";
  return json{{"kept_heads", kept_heads_text}, {"public_key", public_key}}.dump();
}

}  // namespace custody::storage
