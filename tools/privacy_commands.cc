// custody privacy MODEL | DATASET, custody privacy budget set DATASET: a model's privacy
// statement (storage/privacy_statement.h) or a data set's privacy spending
// (storage/privacy_budget.h), read from the store; a data set's budget, set through the
// coordinator, which records it.
#include "storage/lineage_vocabulary.h"
#include "storage/privacy_budget.h"
#include "storage/privacy_statement.h"
#include "storage/queries.h"
#include "tools/command.h"

namespace custody::cli {
namespace {

namespace lineage = storage::lineage;

struct PrivacyArgs {
  std::string id, reason;
  double epsilon = 0, delta = 0;
  bool as_json = false;
};

// A data set as the user named it: resolved through the store when it can be read (a
// hash prefix or a name), else taken as given (dataset:HASH), for the coordinator to check.
std::string dataset_named(Session& s, const std::string& ref) {
  auto store = s.open_store();
  if (!store.is_ok()) return ref;
  auto id = storage::resolve_id(*store.value(), ref);
  return id.is_ok() ? id.value() : ref;
}

Status show(Session& s, const PrivacyArgs& a) {
  if (a.id.empty()) {
    return invalid_argument("name a model (NAME[@VERSION] or a checkpoint) or a data set (dataset:HASH), or use "
                            "`custody privacy budget set`");
  }
  // A model's statement, or a data set's spending (storage/store_query.h, "privacy").
  return print_query(s, a.as_json, "privacy", a.id, [](const storage::json& j) {
    return j.contains("statement") ? j.value("statement", std::string()) : storage::render_spending(j);
  });
}

Status set_budget(Session& s, const PrivacyArgs& a) {
  const std::string dataset = dataset_named(s, a.id);
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::PrivacyBudgetReply>(
                                           "", msg::SetPrivacyBudget{dataset, a.epsilon, a.delta, a.reason, s.principal}));
  auto listing = storage::json::parse(reply.json, nullptr, false);
  if (listing.is_discarded()) return data_loss("the coordinator's answer is not JSON: " + reply.json.substr(0, 80));
  print(a.as_json ? as_json_text(listing) : storage::render_spending(listing));
  return Status::ok();
}

}  // namespace

void add_privacy_commands(CommandSet& commands) {
  auto a = std::make_shared<PrivacyArgs>();
  auto b = std::make_shared<PrivacyArgs>();
  // Set once the subcommand exists, read when the command runs.
  auto budget_set = std::make_shared<CLI::App*>(nullptr);
  auto* privacy = commands.add(
      "privacy",
      "a model's privacy statement (its differential-privacy guarantee, how it was accounted, what it covers "
      "and what not), or a data set's privacy spending (its budget, each job's epsilon, the total, what remains)",
      [a, b, budget_set](Session& s) {
        // `privacy budget set` is parsed under `privacy`, which runs first.
        if (*budget_set && (*budget_set)->parsed()) return set_budget(s, *b);
        return show(s, *a);
      });
  privacy->add_option("ID", a->id, "model (NAME[@VERSION]), checkpoint id, or data set (dataset:HASH, a hash prefix "
                                   "or its name)");
  add_json_flag(privacy, a->as_json);
  CLI::App* budget = privacy->add_subcommand("budget", "a data set's privacy budget");
  budget->require_subcommand(1);
  CLI::App* set = *budget_set = budget->add_subcommand(
      "set", "set a data set's total privacy budget (its owner, who first declared it, or an admin); every private "
             "job on it spends from it, and one that would exceed it is refused");
  set->add_option("DATASET", b->id, "dataset:HASH, a hash prefix or the data set's name")->required();
  set->add_option("--epsilon", b->epsilon, "total epsilon over every job on the data set")->required();
  set->add_option("--delta", b->delta, "the delta the budget is held at (below 1/N)")->required();
  set->add_option("--reason", b->reason, "why (recorded)");
  add_json_flag(set, b->as_json);
  commands.add_as_option(set, "who sets it (a cluster without security)");
}

}  // namespace custody::cli
