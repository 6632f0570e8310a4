// custody revoke | allow | retrain: withdraw a data set (or some of its records); as an
// admin, allow one tainted model version for one stated purpose; retrain a tainted model
// without the withdrawn records. Both are requests to the
// coordinator, which records them (and refusals) in the custody store; what they taint is
// derived from the store when asked (storage/liability.h; `custody lineage trace|impact`).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/job_spec.h"
#include "core/log.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

using nlohmann::json;

struct LiabilityArgs {
  std::string dataset, records_file, reason, model, revocation, purpose;
  std::vector<std::string> without;
  bool json = false;
};

Result<std::vector<uint64_t>> read_records(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("cannot read the record list '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return storage::liability::parse_record_list(text.str(), path);
}

Status revoke(Session& s, const LiabilityArgs& a) {
  if (a.reason.empty()) return bad_input(invalid_argument("--reason TEXT is required: it is what a dispute reads"));
  msg::LiabilityRequest request;
  request.action = msg::LiabilityRequest::Action::kRevoke;
  request.principal = s.principal;
  request.reason = a.reason;
  request.dataset = a.dataset;
  if (!a.records_file.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(request.records, bad_input(read_records(a.records_file)));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::LiabilityReply>("", request));
  if (a.json) {
    std::printf("%s\n", reply.json.c_str());
    return Status::ok();
  }
  const json r = json::parse(reply.json, nullptr, false);
  if (!r.is_object()) return internal_error("the coordinator's reply is not JSON");
  std::printf("%s\n", r.value("id", std::string()).c_str());
  std::fprintf(stderr, "recorded revocation %s\n", storage::liability::describe_revocation(r).c_str());
  const json models = r.value("tainted_models", json::array());
  if (models.empty()) {
    std::fprintf(stderr, "no model version was trained on it (yet); any that is will be tainted\n");
  } else {
    std::fprintf(stderr, "tainted now (serving and export refuse them):\n");
    for (const auto& m : models) std::fprintf(stderr, "  %s\n", m.get<std::string>().c_str());
  }
  return Status::ok();
}

Status allow(Session& s, const LiabilityArgs& a) {
  if (a.reason.empty()) return bad_input(invalid_argument("--reason TEXT is required"));
  if (a.purpose.empty()) return bad_input(invalid_argument("--purpose is required: an override is for one purpose"));
  msg::LiabilityRequest request;
  request.action = msg::LiabilityRequest::Action::kAllow;
  request.principal = s.principal;
  request.reason = a.reason;
  request.model = a.model;
  request.revocation = a.revocation;
  request.purpose = a.purpose;
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::LiabilityReply>("", request));
  if (a.json) {
    std::printf("%s\n", reply.json.c_str());
    return Status::ok();
  }
  const json o = json::parse(reply.json, nullptr, false);
  std::printf("%s\n", o.value("id", std::string()).c_str());
  std::fprintf(stderr, "recorded: %s may be used despite %s, for purpose '%s' only\n", a.model.c_str(),
               a.revocation.c_str(), a.purpose.c_str());
  return Status::ok();
}

// The job file of the run behind `model`, again, without the withdrawn records: the
// revocations must reach the model through the data its own run read (a model fine-tuned
// from a tainted one is retrained after its origin, by naming the replacement in init_from).
Status retrain(Session& s, const LiabilityArgs& a) {
  namespace lineage = storage::lineage;
  CUSTODY_ASSIGN_OR_RETURN(auto store, s.open_store());
  CUSTODY_ASSIGN_OR_RETURN(const std::string id, refused(storage::resolve_id(*store, a.model)));
  if (!lineage::has_prefix(id, lineage::prefix::kModel)) {
    return bad_input(invalid_argument("retrain takes a model (NAME or NAME@VERSION); '" + a.model + "' is " + id));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto version, refused(store->entity(id)));
  if (!version) return refused(not_found("no model version " + id + " in the custody store"));
  const std::string label = lineage::display_name(id, lineage::prefix::kModel);
  const std::string run = version->body.value("run", std::string());
  CUSTODY_ASSIGN_OR_RETURN(auto specs, refused(store->relations(run, storage::CustodyStore::Direction::kOut,
                                                                lineage::rel::kSpecifiedBy)));
  if (specs.empty()) return refused(not_found("run " + run + " of " + label + " has no job spec in the custody store"));
  CUSTODY_ASSIGN_OR_RETURN(auto spec_entity, refused(store->entity(specs.front().body.value("to", std::string()))));
  const std::string text = spec_entity ? spec_entity->body.value("text", std::string()) : "";
  if (text.empty()) return refused(not_found("the custody store keeps no text of " + label + "'s job file"));
  CUSTODY_ASSIGN_OR_RETURN(auto taints, refused(storage::liability::taint_of(*store, version->body.value("checkpoint", std::string()))));
  CUSTODY_ASSIGN_OR_RETURN(JobSpec old, bad_input(parse_job_spec(text, label + "'s job file")));
  std::vector<std::string> without = old.data.without;  // a retraining retrained again keeps its exclusions
  for (const auto& r : a.without) {
    auto t = std::find_if(taints.begin(), taints.end(), [&](const json& x) { return x.value("id", std::string()) == r; });
    if (t == taints.end()) {
      return bad_input(invalid_argument(r + " does not taint " + label + " (`custody lineage trace " + label +
                                        "` lists what does)"));
    }
    if (t->value("run", std::string()) != run) {
      return refused(failed_precondition(
          r + " reaches " + label + " through the model it was fine-tuned from (run " +
          t->value("run", std::string()) + " read the data): retrain that model first, then fine-tune from its "
          "replacement (job.init_from)"));
    }
    if (std::find(without.begin(), without.end(), r) == without.end()) without.push_back(r);
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::string spec, bad_input(retraining_spec(text, without, label, label + "'s job file")));
  CUSTODY_ASSIGN_OR_RETURN(auto accepted, s.client.ask<msg::JobAccepted>(
                                              "", msg::SubmitJob{spec, "retrain " + label, s.principal}));
  std::printf("%s\n", accepted.job_id.c_str());
  std::fprintf(stderr, "retraining %s without the records of %zu revocation(s) as %s (%s); its model becomes the "
               "next version of '%s' and replaces %s\n",
               label.c_str(), without.size(), accepted.job_id.c_str(), accepted.message.c_str(), old.name.c_str(),
               label.c_str());
  return Status::ok();
}

}  // namespace

void add_liability_commands(CommandSet& commands) {
  auto a = std::make_shared<LiabilityArgs>();
  auto* revoke_cmd = commands.add("revoke",
                                  "withdraw a data set, or some of its records (admin or the data set's owner); "
                                  "every model trained on it is tainted",
                                  [a](Session& s) { return revoke(s, *a); });
  revoke_cmd->add_option("DATASET", a->dataset, "dataset:HASH, a unique prefix of the hash, or the data set's name")
      ->required();
  revoke_cmd->add_option("--records", a->records_file,
                         "a file of training record indices (from 0; white space or commas; A-B ranges; # comments); "
                         "default: the whole data set");
  revoke_cmd->add_option("--reason", a->reason, "why (recorded; required)");
  commands.add_as_option(revoke_cmd, "who revokes (a cluster without security)");
  add_json_flag(revoke_cmd, a->json);
  auto* allow_cmd = commands.add("allow",
                                 "admin: let one tainted model version be used despite one revocation, for one purpose",
                                 [a](Session& s) { return allow(s, *a); });
  allow_cmd->add_option("MODEL", a->model, "NAME@VERSION or a checkpoint id")->required();
  allow_cmd->add_option("--despite", a->revocation, "the revocation (revocation:…)")->required();
  allow_cmd->add_option("--purpose", a->purpose, "the one purpose allowed (calls must give it)")->required();
  allow_cmd->add_option("--reason", a->reason, "why (recorded; required)");
  commands.add_as_option(allow_cmd, "who allows (a cluster without security)");
  add_json_flag(allow_cmd, a->json);
  auto* retrain_cmd = commands.add("retrain",
                                   "submit a model's job again without the records of revocations that taint it; "
                                   "its model replaces the tainted version",
                                   [a](Session& s) { return retrain(s, *a); });
  retrain_cmd->add_option("MODEL", a->model, "NAME or NAME@VERSION")->required();
  retrain_cmd->add_option("--without", a->without, "a revocation (revocation:…); may be repeated")->required();
  commands.add_as_option(retrain_cmd, "who submits (a cluster without security)");
}

}  // namespace custody::cli
