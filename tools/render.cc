#include "tools/render.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <map>

#include "core/log.h"
#include "storage/lineage_vocabulary.h"

namespace custody::cli {
namespace {

__attribute__((format(printf, 1, 2))) std::string strf(const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, format, again);
  va_end(again);
  return out;
}

// A field of a JSON object as T, or `otherwise` when it is missing or of another type.
template <class T>
T field(const json& j, const char* key, T otherwise) {
  if (!j.is_object()) return otherwise;
  auto it = j.find(key);
  if (it == j.end()) return otherwise;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return otherwise;
  }
}
std::string text(const json& j, const char* key) { return field(j, key, std::string()); }

const json& rows_of(const json& j) {
  static const json kNone = json::array();
  return j.is_array() ? j : kNone;
}

std::string accuracy(const msg::JobStatus& j, const char* unknown) {
  return j.test_accuracy < 0 ? unknown : std::to_string(j.test_accuracy).substr(0, 6);
}

// The index of the most probable class of row r.
int best_class(const msg::PredictReply& p, size_t r) {
  const float* probs = p.probabilities.data() + r * p.classes;
  return static_cast<int>(std::max_element(probs, probs + p.classes) - probs);
}

}  // namespace

json job_json(const msg::JobStatus& j) {
  return json{{"job_id", j.job_id},
              {"name", j.name},
              {"state", msg::to_string(j.state)},
              {"message", j.message},
              {"submitter", j.submitter},
              {"epoch", j.epoch},
              {"epochs", j.epochs},
              {"step", j.step},
              {"total_steps", j.total_steps},
              {"loss", j.loss},
              {"test_accuracy", j.test_accuracy < 0 ? json(nullptr) : json(j.test_accuracy)},
              {"test_loss", j.test_loss},
              {"samples_per_sec", j.samples_per_sec},
              {"submitted_at_ms", j.submitted_at_ms},
              {"started_at_ms", j.started_at_ms},
              {"finished_at_ms", j.finished_at_ms},
              {"workers", j.workers},
              {"servers", j.servers},
              {"dataset_hash", j.dataset_hash},
              {"consistency", j.consistency},
              {"accuracy_history", j.accuracy_history},
              {"last_checkpoint", j.last_checkpoint},
              {"waiting_for", j.waiting_for},
              {"recoveries", j.recoveries},
              {"data_plane_sealed", j.data_plane_sealed},
              {"data_plane", j.data_plane}};
}

// "yes", "left" (it deregistered when stopped) or "no" (it went silent: dead).
static const char* alive_text(const msg::NodeStatus& n) { return n.alive ? "yes" : n.left ? "left" : "no"; }

json node_json(const msg::NodeStatus& n) {
  return json{{"node_id", n.node_id}, {"role", msg::to_string(n.role)},
              {"address", n.address}, {"alive", n.alive},
              {"left", n.left},       {"state", n.alive ? "alive" : n.left ? "left" : "dead"},
              {"busy", n.busy},       {"last_seen_ms_ago", n.last_seen_ms_ago},
              {"host", n.host},       {"pid", n.pid}};
}

json status_json(const msg::StatusReply& r, bool one_job, bool with_nodes) {
  if (one_job && r.jobs.size() == 1) return job_json(r.jobs[0]);
  json out;
  out["jobs"] = json::array();
  for (const auto& j : r.jobs) out["jobs"].push_back(job_json(j));
  if (with_nodes) {
    out["nodes"] = json::array();
    for (const auto& n : r.nodes) out["nodes"].push_back(node_json(n));
  }
  return out;
}

std::string status_text(const msg::StatusReply& r) {
  std::string out = strf("%-13s %-16s %-10s %-7s %-9s %-8s %s\n", "JOB", "NAME", "STATE", "EPOCH", "TEST ACC",
                         "SUBMITTER", "MESSAGE");
  for (const auto& j : r.jobs) {
    const std::string epoch = std::to_string(j.epoch) + "/" + std::to_string(j.epochs);
    out += strf("%-13s %-16s %-10s %-7s %-9s %-8s %s\n", j.job_id.c_str(), j.name.c_str(),
                msg::to_string(j.state), epoch.c_str(), accuracy(j, "-").c_str(), j.submitter.c_str(),
                j.message.c_str());
  }
  for (const auto& j : r.jobs) {
    if (j.recoveries > 0)
      out += strf("%s: rolled back %u times after node failures\n", j.job_id.c_str(), j.recoveries);
    if (r.jobs.size() == 1 && !j.data_plane.empty()) out += j.job_id + " data plane: " + j.data_plane + "\n";
    if (j.waiting_for.empty()) continue;
    out += j.job_id + " waits for:\n";
    for (const auto& w : j.waiting_for) out += "  " + w + "\n";
  }
  if (r.nodes.empty()) return out;
  out += strf("\n%-12s %-17s %-6s %-5s %-28s %s\n", "NODE", "ROLE", "ALIVE", "BUSY", "ADDRESS", "LAST SEEN");
  for (const auto& n : r.nodes) {
    out +=
        strf("%-12s %-17s %-6s %-5s %-28s %.1f s ago\n", n.node_id.c_str(), msg::to_string(n.role),
             alive_text(n), n.busy ? "yes" : "no", n.address.c_str(), n.last_seen_ms_ago / 1000.0);
  }
  return out;
}

namespace {

// node id -> the id of the non-terminal job whose workers or servers name it.
std::map<std::string, std::string> job_of_each_node(const msg::StatusReply& r) {
  std::map<std::string, std::string> out;
  for (const auto& j : r.jobs) {
    if (msg::is_terminal(j.state)) continue;
    for (const auto& w : j.workers) out[w] = j.job_id;
    for (const auto& s : j.servers) out[s] = j.job_id;
  }
  return out;
}

}  // namespace

json nodes_json(const msg::StatusReply& r) {
  const auto jobs = job_of_each_node(r);
  json out = json::array();
  for (const auto& n : r.nodes) {
    json row = node_json(n);
    auto it = jobs.find(n.node_id);
    row["job"] = it == jobs.end() ? json(nullptr) : json(it->second);
    out.push_back(row);
  }
  return out;
}

std::string nodes_text(const msg::StatusReply& r) {
  const auto jobs = job_of_each_node(r);
  std::string out = strf("%-12s %-17s %-6s %-28s %-13s %-16s %s\n", "NODE", "ROLE", "ALIVE", "ADDRESS", "JOB", "HOST",
                         "LAST HEARTBEAT");
  for (const auto& n : r.nodes) {
    auto it = jobs.find(n.node_id);
    out += strf("%-12s %-17s %-6s %-28s %-13s %-16s %.1f s ago\n", n.node_id.c_str(), msg::to_string(n.role),
                alive_text(n), n.address.empty() ? "-" : n.address.c_str(),
                it == jobs.end() ? "-" : it->second.c_str(), (n.host + ":" + std::to_string(n.pid)).c_str(),
                n.last_seen_ms_ago / 1000.0);
  }
  return out;
}

std::string progress_line(const msg::JobStatus& j) {
  return strf("%s %-9s epoch %u/%u  step %llu/%llu  loss %.4f  test acc %s  %.0f samples/s", j.job_id.c_str(),
              msg::to_string(j.state), j.epoch, j.epochs, static_cast<unsigned long long>(j.step),
              static_cast<unsigned long long>(j.total_steps), j.loss < 0 ? 0.0 : j.loss,
              accuracy(j, "  -   ").c_str(), j.samples_per_sec);
}

std::string models_table(const json& models) {
  std::string out = strf("%-24s %-8s %-22s %-13s %-9s %s\n", "MODEL", "VERSION", "CHECKPOINT", "RUN",
                         "TEST ACC", "CREATED");
  for (const auto& m : rows_of(models)) {
    out += strf("%-24s %-8d %-22s %-13s %-9.4f %s\n", text(m, "name").c_str(), field(m, "version", 0),
                text(m, "checkpoint").c_str(), text(m, "run").c_str(), field(m, "test_accuracy", 0.0),
                text(m, "created_at").c_str());
  }
  return out;
}

std::string checkpoints_table(const json& checkpoints) {
  std::string out =
      strf("%-22s %-8s %-6s %-6s %-18s %s\n", "CHECKPOINT", "STEP", "EPOCH", "FINAL", "ROOT HASH", "PARENT");
  for (const auto& c : rows_of(checkpoints)) {
    out += strf("%-22s %-8llu %-6d %-6s %-18s %s\n", text(c, "id").c_str(),
                static_cast<unsigned long long>(field(c, "step", uint64_t{0})), field(c, "epoch", 0),
                field(c, "final", false) ? "yes" : "no", text(c, "root_hash").substr(0, 16).c_str(),
                text(c, "parent").c_str());
  }
  return out;
}

std::string usage_table(const json& usage) {
  std::string out = strf("%-20s %-20s %-8s %-7s %-8s %-25s %s\n", "PRINCIPAL", "VERSION", "ACTION", "CALLS",
                         "ROWS", "FIRST", "LAST");
  const json summary = field(usage, "summary", json::array());
  for (const auto& r : rows_of(summary)) {
    std::string principal = text(r, "principal");
    principal = storage::lineage::display_name(principal, storage::lineage::prefix::kPrincipal);
    out += strf("%-20s %-20s %-8s %-7d %-8lld %-25s %s\n", principal.c_str(), text(r, "version").c_str(),
                text(r, "action").c_str(), field(r, "calls", 0),
                static_cast<long long>(field(r, "rows", int64_t{0})), text(r, "first").c_str(),
                text(r, "last").c_str());
  }
  return out;
}

std::string signed_heads_text(const json& heads) {
  std::string out =
      strf("signed by key %s (public key %s) at %s\n", text(heads, "key_id").c_str(),
           text(heads, "public_key").c_str(), iso8601_utc(field(heads, "time_ms", int64_t{0})).c_str());
  const json logs = field(heads, "heads", json::array());
  for (const auto& h : rows_of(logs)) {
    out += strf("  %-8s %s, root %s\n", text(h, "log").c_str(),
                records(field(h, "size", uint64_t{0})).c_str(), text(h, "root").c_str());
  }
  return out;
}

std::string records(uint64_t n) { return std::to_string(n) + (n == 1 ? " record" : " records"); }

std::string prediction_line(const msg::PredictReply& p, size_t r, int64_t first) {
  const int best = best_class(p, r);
  const float* probs = p.probabilities.data() + r * p.classes;
  std::string out = strf("%s  row %lld  class %d  p=%.4f  [", p.prediction_ids[r].c_str(),
                         static_cast<long long>(first + static_cast<int64_t>(r)), best, probs[best]);
  for (uint32_t k = 0; k < p.classes; ++k) out += strf("%s%.4f", k ? " " : "", probs[k]);
  return out + "]\n";
}

json prediction_json(const msg::PredictReply& p, size_t r, int64_t first) {
  const float* probs = p.probabilities.data() + r * p.classes;
  return {{"prediction_id", p.prediction_ids[r]},
          {"row", first + static_cast<int64_t>(r)},
          {"class", best_class(p, r)},
          {"probabilities", std::vector<float>(probs, probs + p.classes)},
          {"model", p.model},
          {"checkpoint", p.checkpoint}};
}

std::string answered_by(const msg::PredictReply& p) {
  return "model " + (p.model.empty() ? p.checkpoint : p.model) + " (" + p.checkpoint + ", weights " +
         p.root_hash.substr(0, 16) + ")";
}

}  // namespace custody::cli
