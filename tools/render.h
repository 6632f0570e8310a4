// How the `custody` CLI shows what it got: the JSON that --json prints and the tables and
// lines printed otherwise, for job status, the store's models, checkpoints and usage, and
// predictions. Each returns text (no printing), so the formats are tested on their own.
// Rendering never throws on a field that is missing or of another type; it shows a default.
// Thread-safety: plain functions of their arguments.
#pragma once

#include <cstdint>
#include <string>

#include "protocols/messages.h"
#include "storage/custody_store.h"

namespace custody::cli {

using storage::json;

json job_json(const msg::JobStatus& job);
json node_json(const msg::NodeStatus& node);
// `status --json` and `jobs --json`: one job's object when one job was asked for (and
// found), else {"jobs": [...]} with "nodes" when with_nodes.
json status_json(const msg::StatusReply& reply, bool one_job, bool with_nodes);
// `status` and `jobs`: the jobs table, each job's rollbacks and what it waits for, then the
// nodes table if the reply has nodes.
std::string status_text(const msg::StatusReply& reply);
// `custody nodes`: every node the coordinator knows, with the running job it works for
// (taken from the jobs' worker and server lists), as JSON or as a table.
json nodes_json(const msg::StatusReply& reply);
std::string nodes_text(const msg::StatusReply& reply);
// `wait`'s progress line: state, epoch, step, loss, test accuracy, throughput.
std::string progress_line(const msg::JobStatus& job);

// The tables of `models`, `checkpoints` and `usage` (the JSON their queries return).
std::string models_table(const json& models);
std::string checkpoints_table(const json& checkpoints);
std::string usage_table(const json& usage);

// `audit head`: who signed the heads, when, and each log's size and root.
std::string signed_heads_text(const json& heads);
// "1 record", "3 records".
std::string records(uint64_t n);

// Row r of a prediction reply (first: the row's index in the input), as `predict` prints
// it and as its --json object. The most probable class is the prediction.
// REQUIRES: r < reply.prediction_ids.size(), reply.probabilities holds its row.
std::string prediction_line(const msg::PredictReply& reply, size_t r, int64_t first);
json prediction_json(const msg::PredictReply& reply, size_t r, int64_t first);
// "model NAME (CHECKPOINT, weights ROOT)": which model answered.
std::string answered_by(const msg::PredictReply& reply);

}  // namespace custody::cli
