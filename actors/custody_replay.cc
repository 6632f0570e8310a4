#include "actors/custody_replay.h"

#include <algorithm>
#include <map>

#include "storage/lineage_vocabulary.h"

namespace custody::actors {

namespace lineage = storage::lineage;
using storage::json;

namespace {

std::optional<msg::JobState> job_state_named(const std::string& name) {
  for (int i = 0; i <= static_cast<int>(msg::JobState::kCancelled); ++i) {
    if (name == msg::to_string(static_cast<msg::JobState>(i))) return static_cast<msg::JobState>(i);
  }
  return std::nullopt;
}

std::optional<msg::NodeRole> node_role_named(const std::string& name) {
  for (auto role : {msg::NodeRole::kWorker, msg::NodeRole::kParameterServer}) {
    if (name == msg::to_string(role)) return role;
  }
  return std::nullopt;
}

struct Building {
  ReplayedRun run;
  size_t submitted_seq = 0;  // position of its entity record
};

void on_entity(const json& b, size_t seq, std::map<std::string, Building>& runs,
               std::map<std::string, std::string>& specs, Replayed& out) {
  const std::string kind = b.value("kind", ""), id = b.value("id", "");
  if (kind == lineage::kind::kRun) {
    Building& x = runs[id];
    x.run.entity = b;
    if (x.submitted_seq == 0) x.submitted_seq = seq;
  } else if (kind == lineage::kind::kJobSpec) {
    specs[id] = b.value("text", "");
  } else if (kind == lineage::kind::kNode) {
    ReplayedNode n;
    n.id = b.value("node_id", "");
    const std::string role = b.value("role", "");
    auto known = node_role_named(role);
    if (!known) {
      // Not guessed: the node is forgotten, and registers afresh when it comes back.
      out.warnings.push_back("node record " + n.id + " has the unknown role '" + role + "'; not restored");
      return;
    }
    n.role = *known;
    n.host = b.value("host", "");
    n.address = b.value("address", "");
    n.principal = b.value("principal", "");
    if (!n.id.empty()) out.nodes.push_back(std::move(n));
  }
}

void on_event(const json& b, int64_t time_ms, ReplayedRun& x) {
  const std::string event = b.value("event", "");
  if (event == lineage::event::kRunStarted) {
    x.attempts = std::max<uint32_t>(x.attempts, b.value("attempt", 0u) + 1);
  } else if (event == lineage::event::kRunRecovered) {
    x.attempts = std::max<uint32_t>(x.attempts, b.value("next_attempt", 0u));
    ++x.recoveries;
  } else if (event == lineage::event::kRunEnded) {
    ReplayedEnd end;
    end.state = job_state_named(b.value("state", "")).value_or(msg::JobState::kFailed);
    end.message = b.value("message", "");
    end.test_accuracy = b.value("test_accuracy", -1.0);
    end.accuracy_history = b.value("accuracy_history", std::vector<double>());
    end.steps = b.value("steps", uint64_t{0});
    end.final_checkpoint = b.value("final_checkpoint", "");
    end.at_ms = time_ms;
    x.end = std::move(end);
  } else if (event == lineage::event::kRunResumed) {
    x.end.reset();
  } else if (event == lineage::event::kEpochEvaluated) {
    const uint32_t epoch = b.value("epoch", 0u);
    if (epoch == 0) return;
    if (x.accuracy.size() < epoch) x.accuracy.resize(epoch, 0.0);
    x.accuracy[epoch - 1] = b.value("test_accuracy", 0.0);
    x.test_loss = b.value("test_loss", 0.0);
  }
}

}  // namespace

Result<Replayed> replay(const storage::CustodyStore& store) {
  CUSTODY_ASSIGN_OR_RETURN(auto records, store.log(lineage::kLineageLog));
  Replayed out;
  std::map<std::string, Building> runs;
  std::map<std::string, std::string> specs;  // jobspec id -> its text
  std::map<std::string, std::string> spec_of;  // run -> jobspec id
  std::map<std::string, std::pair<int64_t, bool>> node_events;  // node entity -> newest (time, left)
  size_t seq = 0;
  for (const auto& r : records) {
    ++seq;
    const json& b = r.body;
    const std::string type = b.value("type", "");
    if (type == lineage::kEntity) {
      on_entity(b, seq, runs, specs, out);
    } else if (type == lineage::kRelation) {
      const std::string rel = b.value("rel", ""), from = b.value("from", "");
      if (rel == lineage::rel::kSpecifiedBy) spec_of[from] = b.value("to", "");
      if (rel == lineage::rel::kInitializedFrom) runs[from].run.init_from = b.value("to", "");
      if (rel == lineage::rel::kConsumed) {
        runs[from].run.train_samples = b.value("train_samples", uint64_t{0});
        runs[from].run.dataset_hash = lineage::display_name(b.value("to", ""), lineage::prefix::kDataset);
      }
    } else if (type == lineage::kEvent) {
      const std::string run = b.value("run", "");
      if (!run.empty()) on_event(b, r.time_ms, runs[run].run);
      const std::string event = b.value("event", "");
      // (record_schema.h refuses a node event whose node is not a string before this runs.)
      if ((event == lineage::event::kNodeRegistered || event == lineage::event::kNodeDeregistered) &&
          b.contains("node") && b["node"].is_string()) {
        node_events[b["node"].get<std::string>()] = {r.time_ms, event == lineage::event::kNodeDeregistered};
      }
    }
  }
  // What `custody nodes` shows after a restart: when each node was last heard of, and
  // whether it had left, as the log says (not "silent since the restart").
  for (ReplayedNode& n : out.nodes) {
    auto it = node_events.find(lineage::node_entity_id(n.id));
    if (it == node_events.end()) continue;
    n.last_event_ms = it->second.first;
    n.left = it->second.second;
  }
  std::vector<std::pair<size_t, std::string>> order;
  for (auto& [id, x] : runs) {
    if (x.run.entity.is_null()) continue;  // events of a run whose entity is not in the log
    x.run.id = id;
    x.run.spec_text = specs[spec_of[id]];
    CUSTODY_ASSIGN_OR_RETURN(auto checkpoints, store.checkpoints_of(id));
    for (const auto& c : checkpoints) {
      const uint64_t step = c.value("step", uint64_t{0});
      if (x.run.newest_checkpoint.empty() || step >= x.run.newest_step) {
        x.run.newest_step = step;
        x.run.newest_checkpoint = c.value("id", "");
        x.run.newest_final = c.value("final", false);
      }
    }
    order.emplace_back(x.submitted_seq, id);
  }
  // Submission order is the log's order, not the millisecond clock (two jobs submitted in
  // the same millisecond would otherwise swap).
  std::sort(order.begin(), order.end());
  for (const auto& [position, id] : order) out.runs.push_back(std::move(runs[id].run));
  return out;
}

}  // namespace custody::actors
