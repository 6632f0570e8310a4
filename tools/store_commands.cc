// custody models | checkpoints JOB | usage MODEL: the custody store's models, a job's
// checkpoints, and who used a model. Read from the store (storage/queries.h); usage goes
// through the coordinator instead when a token is given and no store is named, so that a
// caller sees only what its role may see.
#include <ctime>

#include "storage/queries.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

// usage --limit
constexpr IntRange kUsageLimitRange{0, UINT32_MAX};

struct StoreArgs {
  std::string id, since, until;
  int64_t usage_limit = storage::kUsageListedByDefault;
  bool as_json = false;
};

// "2026-11-24" or "2026-11-24T10:15:00" (UTC) as ms since the epoch; "" as 0 (open).
Result<int64_t> parse_utc(const std::string& text) {
  if (text.empty()) return int64_t{0};
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end) {
    tm = std::tm{};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (!end || *end)
    return invalid_argument("'" + text + "' is not a UTC time like 2026-11-24 or 2026-11-24T10:15:00");
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

Status usage(Session& s, const StoreArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(const int64_t since_ms, parse_utc(a.since));
  CUSTODY_ASSIGN_OR_RETURN(const int64_t until_ms, parse_utc(a.until));
  const auto limit = static_cast<uint32_t>(a.usage_limit);
  if (s.client.token.empty() || !s.store_path.empty()) {
    return print_query(
        s, a.as_json,
        [&](const storage::CustodyStore& st) {
          return storage::usage(st, a.id, "", since_ms, until_ms, limit);
        },
        usage_table);
  }
  // The coordinator shows a caller only its own calls, unless it is an auditor or an admin.
  CUSTODY_ASSIGN_OR_RETURN(
      auto reply, s.client.ask<msg::UsageReply>("", msg::UsageRequest{a.id, since_ms, until_ms, limit}));
  const json answer = json::parse(reply.json, nullptr, false);
  if (answer.is_discarded())
    return no_answer(data_loss("the coordinator sent usage this client cannot read"));
  return print_answer(answer, a.as_json, usage_table);
}

}  // namespace

void add_store_commands(CommandSet& commands) {
  auto a = std::make_shared<StoreArgs>();

  auto* models = commands.add("models", "list model versions", [a](Session& s) {
    return print_query(s, a->as_json, storage::models, models_table);
  });
  add_json_flag(models, a->as_json);

  auto* checkpoints = commands.add("checkpoints", "list a job's checkpoints", [a](Session& s) {
    return print_query(
        s, a->as_json, [&](const storage::CustodyStore& st) { return storage::checkpoints(st, a->id); },
        checkpoints_table);
  });
  checkpoints->add_option("JOB", a->id, "job id")->required();
  add_json_flag(checkpoints, a->as_json);

  auto* usage_cmd = commands.add("usage", "who used a model (all versions) or checkpoint, and when",
                                 [a](Session& s) { return usage(s, *a); });
  usage_cmd->add_option("MODEL", a->id, "NAME, NAME@VERSION or a checkpoint id")->required();
  add_json_flag(usage_cmd, a->as_json);
  usage_cmd->add_option("--since", a->since,
                        "only calls from then on (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)");
  usage_cmd->add_option("--until", a->until, "only calls up to then (same forms)");
  add_ranged_option(usage_cmd, "--limit", a->usage_limit, kUsageLimitRange,
                    "list the newest N calls (0: all); the summary covers all");
}

}  // namespace custody::cli
