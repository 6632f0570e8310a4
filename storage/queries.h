// The auditor's questions, answered from the custody store alone (used by the CLI on the
// store's files, and by the coordinator for token-checked usage queries): show, trace (upstream),
// impact (downstream), usage, models, checkpoints, and OpenLineage export. Each returns
// JSON (what --json prints); render_tree() turns a trace or impact into the readable tree.
#pragma once

#include <string>

#include "storage/custody_store.h"

namespace custody::storage {

// An id as users type it: "ckpt-...", "job-...", a model "NAME@V" or "NAME" (newest),
// "dataset:HASH", a hash or a unique prefix of a data set hash, "principal:NAME", ...
Result<std::string> resolve_id(const CustodyStore& store, const std::string& ref);

Result<json> show(const CustodyStore& store, const std::string& id);
// Upstream: data (hashes, licences, consent), job spec, run, submitter, contributing
// workers and shards with their counts, and the checkpoints it derives from.
Result<json> trace(const CustodyStore& store, const std::string& id);
// Downstream of a data set: runs that consumed it, their checkpoints and models, and
// everything fine-tuned from those.
Result<json> impact(const CustodyStore& store, const std::string& dataset);
// principal: if not empty, only that principal's records ("principal:NAME"); since/until
// (ms since the epoch, 0: open) bound the time range. "summary" has one row per principal,
// version and action: calls, rows, first and last call; "by_principal" the same per
// principal. "records" lists the newest `limit` records (0: all), oldest first;
// "records_total" says how many there are in all. Without a time range the summary comes
// from the store's usage sums and only the listed records are read, so the answer costs
// the same for a thousand calls or a million; with one, only the records in range are read.
constexpr size_t kUsageListedByDefault = 100;
Result<json> usage(const CustodyStore& store, const std::string& model_or_checkpoint,
                   const std::string& principal = "", int64_t since_ms = 0, int64_t until_ms = 0,
                   size_t limit = kUsageListedByDefault);
Result<json> models(const CustodyStore& store);
Result<json> checkpoints(const CustodyStore& store, const std::string& job);
// OpenLineage 2-0-2 RunEvents (START, then COMPLETE/FAIL/ABORT), one JSON object per line.
Result<std::string> openlineage(const CustodyStore& store, const std::string& job);

std::string render_tree(const json& node);

}  // namespace custody::storage
