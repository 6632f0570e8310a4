#include "actors/coordinator_state.h"

// CoordinatorState: membership (registration, heartbeats, liveness), requests that are not
// about one job's attempts (principals, usage, exports, audit heads), and status. Admission
// is in coordinator_admission.cc, attempts in coordinator_attempts.cc.
#include <algorithm>

#include "core/hash.h"
#include "core/log.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"

namespace custody::actors {

using msg::Envelope;
using msg::JobState;
namespace lineage = storage::lineage;

CoordinatorState::CoordinatorState(CoordinatorOptions options, storage::CustodyStore* store,
                                   std::string store_path, const SigningKey* key, const Clock& clock)
    : options_(options),
      recorder_(store, key, clock),
      store_path_(std::move(store_path)),
      access_(std::make_shared<AccessControl>(options.security, store)) {
  // The credentials are needed before the first message (the authenticator asks by key).
  if (Status s = access_->load(); !s.is_ok()) {
    log(LogLevel::kError, kSelf, "could not read the credentials from the custody store: " + s.message());
  }
}

Result<std::string> CoordinatorState::new_job_id() const {
  // Short, unique across coordinator restarts without coordination: 8 random hex digits
  // from the one secure source (core/hash.h), drawn again on the rare collision.
  for (;;) {
    CUSTODY_ASSIGN_OR_RETURN(const std::string hex, random_token(4));
    std::string id = storage::lineage::prefix::kRun + hex;
    if (!jobs_.count(id)) return id;
  }
}

Envelope CoordinatorState::envelope(const std::string& job_id, msg::Body body, uint32_t attempt) const {
  Envelope e;
  e.sender = kSelf;
  e.job_id = job_id;
  e.attempt = attempt;
  e.body = std::move(body);
  return e;
}

CoordinatorState::Node* CoordinatorState::node_by_peer(const std::string& peer) {
  for (auto& [id, n] : nodes_)
    if (n.peer == peer && n.alive) return &n;
  return nullptr;
}

CoordinatorState::Node* CoordinatorState::node_by_id(const std::string& id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

Outbox CoordinatorState::handle(const std::string& peer, const Envelope& in, SteadyClock::time_point now,
                                const std::string& authenticated) {
  now_ = now;
  just_submitted_.clear();
  Outbox out = dispatch(peer, in, now, authenticated);
  // Scheduling runs once per event, after the event has changed the queue or the nodes.
  Outbox scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  if (!just_submitted_.empty() && !out.empty()) {
    auto* ack = std::get_if<msg::JobAccepted>(&out.front().envelope.body);
    const msg::JobStatus& job = jobs_.at(just_submitted_).status;
    if (ack) ack->message = job.state == JobState::kPending ? job.message : "starting";
  }
  return out;
}

Outbox CoordinatorState::dispatch(const std::string& peer, const Envelope& in, SteadyClock::time_point now,
                                  const std::string& authenticated) {
  auto reply = [&](msg::Body body) { return Outbox{{peer, msg::reply_to(in, kSelf, std::move(body))}}; };
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  auto authorized = authorize(in, authenticated);
  if (!authorized.is_ok()) {
    log(LogLevel::kWarn, kSelf, std::string("refused a '") + msg::body_name(in.body) + "' from " +
                                    (authenticated.empty() ? "an unauthenticated caller"
                                                           : "the session of credential " + authenticated.substr(0, 16)) +
                                    ": " +
                                    authorized.status().message());
    return error(authorized.status());
  }
  Caller caller = std::move(authorized).value();
  if (secured()) {
    // The key or token, not the request, says who is acting.
    if (auto* m = in.get<msg::SubmitJob>()) {
      msg::SubmitJob as_caller = *m;
      as_caller.submitter = caller.principal;
      return on_submit(in, as_caller, peer, caller);
    }
    if (auto* m = in.get<msg::ExportRequest>()) {
      msg::ExportRequest as_caller = *m;
      as_caller.principal = caller.principal;
      return handle_export(peer, in, as_caller);
    }
  } else {
    // A single-user cluster: whoever the request names (the CLI's --as).
    if (auto* m = in.get<msg::ResumeJob>()) caller.principal = m->principal;
    if (auto* m = in.get<msg::CancelJob>()) caller.principal = m->principal;
    if (auto* m = in.get<msg::SetPrivacyBudget>()) caller.principal = m->principal;
    if (auto* m = in.get<msg::SubmitJob>()) caller.principal = m->submitter;
  }
  if (auto* m = in.get<msg::SetPrivacyBudget>()) return on_set_privacy_budget(in, *m, peer, caller);
  if (auto* m = in.get<msg::AddPrincipal>()) return on_add_principal(in, *m, peer, caller);
  if (auto* m = in.get<msg::RevokePrincipal>()) return on_revoke_principal(in, *m, peer, caller);
  if (auto* m = in.get<msg::LiabilityRequest>()) return on_liability(in, *m, peer, caller);
  if (in.get<msg::PrincipalsRequest>()) return reply(msg::PrincipalsReply{credentials_json("")});
  if (in.get<msg::AuditHeadRequest>()) {
    auto heads = recorder_.signed_heads();
    if (!heads.is_ok()) return error(heads.status());
    return reply(msg::AuditHeadReply{heads->dump()});
  }
  if (auto* m = in.get<msg::UsageRequest>()) {
    if (!recorder_.enabled()) return error(failed_precondition("this coordinator keeps no custody store (--store)"));
    // Others' usage is for auditors and admins; everyone else sees their own calls.
    const bool all = !secured() || sees_everyones_usage(caller.role);
    auto summary = storage::usage(*recorder_.store(), m->model, all ? "" : lineage::principal_id(caller.principal),
                                  m->since_ms, m->until_ms, m->limit);
    if (!summary.is_ok()) return error(summary.status());
    return reply(msg::UsageReply{summary->dump()});
  }
  if (auto* m = in.get<msg::Register>()) return on_register(peer, in, *m, now, caller);
  if (auto* m = in.get<msg::Heartbeat>()) {
    Node* n = node_by_peer(peer);
    if (n) n->last_seen = now;
    if (n && m->leaving) {
      if (secured() && n->principal != caller.principal) {
        return error(Status(ErrorCode::kPermissionDenied, "node " + n->id + " registered as principal " +
                                                              n->principal + ", not " + caller.principal));
      }
      return on_leaving(*n, in, peer);
    }
    return reply(msg::HeartbeatAck{n != nullptr});
  }
  if (auto* m = in.get<msg::SubmitJob>()) return on_submit(in, *m, peer, caller);
  if (auto* m = in.get<msg::StatusRequest>()) {
    if (!in.job_id.empty() && !jobs_.count(in.job_id)) {
      return error(not_found("no job '" + in.job_id + "' (list the jobs with `custody jobs`)"));
    }
    return reply(status(in.job_id, m->include_nodes, now));
  }
  if (auto* m = in.get<msg::CancelJob>()) return on_cancel(in, *m, peer, caller);
  if (auto* m = in.get<msg::ResumeJob>()) return on_resume(in, *m, peer, caller);
  if (auto* m = in.get<msg::ExportRequest>()) return handle_export(peer, in, *m);

  // Everything else comes from registered nodes about their jobs.
  Node* node = node_by_peer(peer);
  if (!node) {
    return error(failed_precondition(std::string("a '") + msg::body_name(in.body) +
                                     "' message from a node that has not registered; register first"));
  }
  if (secured() && node->principal != caller.principal) {
    // A connection is one principal's (its key); a node's reports come from its connection.
    return error(Status(ErrorCode::kPermissionDenied, "node " + node->id + " registered as principal " +
                                                          node->principal + ", not " + caller.principal));
  }
  node->last_seen = now;
  return on_node_report(*node, in, now);
}

Outbox CoordinatorState::handle_export(const std::string& peer, const Envelope& in, const msg::ExportRequest& m) {
  auto exported = recorder_.export_checkpoint(m);
  if (!exported.is_ok()) return {{peer, msg::make_error(in, kSelf, exported.status())}};
  log(LogLevel::kInfo, kSelf, "exported " + exported->checkpoint + " to " + m.principal + " (" + exported->usage_id + ")");
  return {{peer, msg::reply_to(in, kSelf, std::move(exported).value())}};
}



Outbox CoordinatorState::on_add_principal(const Envelope& in, const msg::AddPrincipal& m, const std::string& peer,
                                          const Caller& caller) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  // Rotation keeps the role: the CLI need not know it.
  const auto role = m.rotate && m.role.empty() ? access_->role_of(m.name) : parse_role(m.role);
  if (!role) {
    if (m.rotate && m.role.empty()) return error(not_found("no principal '" + m.name + "' with an active credential"));
    return error(invalid_argument("unknown role '" + m.role + "' (" + role_names() + ")"));
  }
  if (m.name.empty() || m.name.size() > 64 || m.name.find_first_of("|:/ \"\t\n") != std::string::npos) {
    return error(invalid_argument("a principal's name is 1 to 64 characters, without '|', ':', '/', quotes or spaces"));
  }
  auto issued = access_->add(m.name, *role, m.public_key, m.rotate, caller.principal, m.bearer_token);
  if (!issued.is_ok()) return error(issued.status());
  log(LogLevel::kInfo, kSelf, std::string(m.rotate ? "rotated the credential of principal " : "added principal ") +
                                  m.name + " (" + to_string(*role) + ", " + issued->credential.kind + ") for " + caller.principal);
  msg::PrincipalAdded added{m.name, to_string(*role), issued->token, issued->credential.public_key,
                           issued->secret_key};
  return {{peer, msg::reply_to(in, kSelf, std::move(added))}};
}

Outbox CoordinatorState::on_revoke_principal(const Envelope& in, const msg::RevokePrincipal& m,
                                             const std::string& peer, const Caller& caller) {
  if (Status s = access_->revoke(m.name, m.reason, caller.principal); !s.is_ok()) {
    return {{peer, msg::make_error(in, kSelf, s)}};
  }
  log(LogLevel::kInfo, kSelf, "revoked every credential of principal " + m.name + " for " + caller.principal +
                                  (m.reason.empty() ? "" : ": " + m.reason));
  return {{peer, msg::reply_to(in, kSelf, msg::PrincipalsReply{credentials_json(m.name)})}};
}

std::string CoordinatorState::credentials_json(const std::string& principal) const {
  storage::json out = storage::json::array();
  for (const auto& c : access_->list()) {
    if (!principal.empty() && c.principal != principal) continue;
    storage::json j = {{"principal", c.principal}, {"role", to_string(c.role)}, {"kind", c.kind},
                       {"credential", c.id}, {"created_by", c.created_by}, {"created_at_ms", c.created_at_ms},
                       {"revoked", c.revoked}};
    if (!c.public_key.empty()) j["public_key"] = c.public_key;
    if (c.revoked) {
      j["revoked_by"] = c.revoked_by;
      j["revoke_reason"] = c.revoke_reason;
    }
    out.push_back(std::move(j));
  }
  return out.dump();
}

Outbox CoordinatorState::on_register(const std::string& peer, const Envelope& in, const msg::Register& m,
                                     SteadyClock::time_point now, const Caller& caller) {
  auto printable = [](const std::string& s, size_t max) {
    return s.size() <= max && std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; });
  };
  if (!printable(m.name, 64) || !printable(m.host, 255) || !printable(m.address, 255) ||
      !(m.host_id.empty() || printable(m.host_id, 255))) {
    // Names and addresses end up in logs, records and status: no spaces, control characters
    // or megabytes of them.
    return {{peer, msg::make_error(in, kSelf, invalid_argument("a node name is at most 64, a host and an address at "
                                                               "most 255 printable characters without spaces"))}};
  }
  if (m.role == msg::NodeRole::kParameterServer && m.address.empty()) {
    return {{peer, msg::make_error(in, kSelf, invalid_argument("a parameter server must register "
                                                               "with the address workers reach it at"))}};
  }
  Outbox out;
  std::string id = m.name;
  if (id.empty()) {
    // The same peer registering again keeps its id (a retried register).
    if (Node* known = node_by_peer(peer)) id = known->id;
  }
  if (id.empty()) {
    do {
      id = m.role == msg::NodeRole::kWorker ? "worker-" + std::to_string(next_worker_++)
                                            : "ps-" + std::to_string(next_ps_++);
    } while (nodes_.count(id));
  }
  Node* existing = node_by_id(id);
  if (secured() && existing && !existing->principal.empty() && existing->principal != caller.principal) {
    // A node id is its first registrant's: another key may not take over its jobs.
    return {{peer, msg::make_error(in, kSelf, Status(ErrorCode::kPermissionDenied,
                                                     "node " + id + " belongs to principal " + existing->principal +
                                                         "; register under another name"))}};
  }
  if (existing && existing->alive && !m.session.empty() && existing->session == m.session &&
      existing->pid == m.pid && existing->host == m.host && existing->role == m.role) {
    // A repeat of the registration it holds (the node retries once a second until it hears
    // back; behind a partition the retries queue and arrive together): the same
    // registration, so one record, and nothing it holds is rolled back.
    existing->last_seen = now;
    existing->peer = peer;
    return {{peer, msg::reply_to(in, kSelf,
                                 msg::RegisterAck{id, static_cast<uint32_t>(options_.heartbeat_interval.count())})}};
  }
  if (existing && existing->alive && existing->peer != peer) {
    // A node restarted under the same name: the old incarnation is gone.
    log(LogLevel::kWarn, kSelf, "node " + id + " registered again from a new connection; "
                                "replacing the old one");
  }
  // Its new incarnation holds nothing of the job it had: the job is rolled back below,
  // once the node's record names the new connection (the rollback may reassign to it).
  // (Servers are shared by jobs, so every job it serves is involved.)
  std::vector<std::string> lost_jobs;
  if (existing) {
    for (auto& [job_id, job] : jobs_) {
      if (msg::is_terminal(job.status.state) || job.status.state == JobState::kPending) continue;
      if (std::count(job.attempt.workers.begin(), job.attempt.workers.end(), id) + std::count(job.attempt.servers.begin(), job.attempt.servers.end(), id)) {
        lost_jobs.push_back(job_id);
      }
    }
  }
  Status recorded = recorder_.node_registered(id, m, secured() ? caller.principal : "");
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "node " + id + ": " + recorded.message());
  Node n;
  n.id = id;
  n.peer = peer;
  n.address = m.address;
  n.host = m.host;
  n.host_id = m.host_id;
  n.principal = secured() ? caller.principal : "";
  n.role = m.role;
  n.pid = m.pid;
  n.session = m.session;
  n.last_seen = now;
  nodes_[id] = n;
  log(LogLevel::kInfo, kSelf, std::string("registered ") + msg::to_string(m.role) + " " + id +
                                  (m.address.empty() ? "" : " at " + m.address) + " (pid " +
                                  std::to_string(m.pid) + " on " + m.host + ")");
  out.push_back(
      {peer, msg::reply_to(in, kSelf, msg::RegisterAck{id, static_cast<uint32_t>(options_.heartbeat_interval.count())})});
  for (const auto& job_id : lost_jobs) {
    auto more = recover(jobs_.at(job_id), std::string(msg::to_string(m.role)) + " " + id +
                                              " registered again (restarted) during the job");
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

Outbox CoordinatorState::lose_node(Node& n, const std::string& why) {
  Outbox out;
  for (auto& [job_id, job] : jobs_) {
    if (msg::is_terminal(job.status.state) || job.status.state == JobState::kPending) continue;
    bool involved = std::count(job.attempt.workers.begin(), job.attempt.workers.end(), n.id) +
                    std::count(job.attempt.servers.begin(), job.attempt.servers.end(), n.id);
    if (!involved) continue;
    auto more = recover(job, std::string(msg::to_string(n.role)) + " " + n.id + " " + why);
    out.insert(out.end(), more.begin(), more.end());
  }
  n.job.clear();
  return out;
}

Outbox CoordinatorState::on_leaving(Node& n, const Envelope& in, const std::string& peer) {
  // Recorded before it takes effect, as every event; a store that refuses it is logged and
  // the node still goes (it is stopping whatever the store says).
  Status recorded = recorder_.node_deregistered(n.id, n.session, secured() ? n.principal : "");
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "node " + n.id + ": " + recorded.message());
  n.alive = false;
  n.left = true;
  log(LogLevel::kInfo, kSelf, std::string(msg::to_string(n.role)) + " " + n.id + " deregistered (stopping)");
  Outbox out{{peer, msg::reply_to(in, kSelf, msg::HeartbeatAck{false})}};
  auto more = lose_node(n, "left the cluster (stopped)");
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

Outbox CoordinatorState::tick(SteadyClock::time_point now) {
  now_ = now;
  Outbox out;
  for (auto& [id, n] : nodes_) {
    if (!n.alive || now - n.last_seen <= options_.heartbeat_timeout) continue;
    n.alive = false;
    const double ago = std::chrono::duration<double>(now - n.last_seen).count();
    log(LogLevel::kWarn, kSelf, id + " missed its heartbeats for " + fixed(ago, 1) + " s; marked dead");
    auto more = lose_node(n, "stopped sending heartbeats (" + fixed(ago, 1) + " s)");
    out.insert(out.end(), more.begin(), more.end());
  }
  for (auto& [job_id, job] : jobs_) {
    // Servers that never answered a rollback's stop (they died, or lost the job): record
    // what the others said.
    for (auto d = job.discards.begin(); d != job.discards.end();) {
      const uint32_t attempt = d->first;
      const bool late = now - d->second.since > options_.heartbeat_timeout;
      ++d;
      if (late) record_discard(job, attempt);
    }
  }
  for (auto& [job_id, job] : jobs_) {
    if (job.status.state != JobState::kStarting || now - job.attempt.starting_since <= options_.start_timeout) continue;
    std::string missing;
    for (const auto& id : job.attempt.servers)
      if (!job.attempt.servers_ready.count(id)) missing += (missing.empty() ? "" : ", ") + id;
    auto more = recover(job, "parameter servers " + missing + " did not confirm their key ranges within " +
                                 fixed(std::chrono::duration<double>(options_.start_timeout).count(), 0) + " s");
    out.insert(out.end(), more.begin(), more.end());
  }
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

std::vector<std::string> CoordinatorState::waiting_for(const Job& job, SteadyClock::time_point now) const {
  std::vector<std::string> out;
  auto secs = [&](SteadyClock::duration d) { return fixed(std::chrono::duration<double>(d).count(), 1); };
  auto silent = [&](const std::string& id) -> std::string {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return "unknown node";
    if (!it->second.alive) return "dead (no heartbeat for " + secs(now - it->second.last_seen) + " s)";
    if (now - it->second.last_seen > 2 * options_.heartbeat_interval) {
      return "silent: no heartbeat for " + secs(now - it->second.last_seen) + " s";
    }
    return "";
  };
  if (job.status.state == JobState::kStarting) {
    for (const auto& id : job.attempt.servers) {
      if (job.attempt.servers_ready.count(id)) continue;
      std::string why = silent(id);
      out.push_back(id + ": has not confirmed its key range for " + secs(now - job.attempt.starting_since) + " s" +
                    (why.empty() ? "" : "; " + why));
    }
    return out;
  }
  if (job.status.state != JobState::kRunning) return out;
  SteadyClock::time_point last_step_at{};
  uint64_t slowest = UINT64_MAX;
  for (const auto& [rank, p] : job.attempt.progress) {
    if (p.done) continue;
    last_step_at = std::max(last_step_at, p.last_step_at);
    slowest = std::min(slowest, p.step);
  }
  if (slowest == UINT64_MAX || now - last_step_at < options_.stall_after) return out;  // moving, or done
  const std::string stalled = "no step for " + secs(now - last_step_at) + " s";
  // First the nodes that went quiet; if none did, the ranks that are furthest behind.
  for (const auto& id : job.attempt.servers) {
    std::string why = silent(id);
    if (!why.empty()) out.push_back(id + " (parameter server): " + why);
  }
  for (const auto& [rank, p] : job.attempt.progress) {
    const std::string& id = job.attempt.workers[rank];
    std::string why = silent(id);
    if (!why.empty()) out.push_back(id + " (rank " + std::to_string(rank) + ", step " + std::to_string(p.step) + "): " + why);
  }
  if (out.empty()) {
    for (const auto& [rank, p] : job.attempt.progress) {
      if (p.done || p.step != slowest) continue;
      out.push_back(job.attempt.workers[rank] + " (rank " + std::to_string(rank) + "): at step " + std::to_string(p.step) +
                    ", " + stalled);
    }
  } else {
    out.insert(out.begin(), stalled);
  }
  return out;
}

msg::StatusReply CoordinatorState::status(const std::string& job_id, bool include_nodes,
                                          SteadyClock::time_point now) const {
  msg::StatusReply r;
  r.store_path = store_path_;
  for (const auto& id : order_) {
    if (!job_id.empty() && id != job_id) continue;
    const Job& job = jobs_.at(id);
    r.jobs.push_back(job.status);
    r.jobs.back().waiting_for = waiting_for(job, now);
  }
  if (include_nodes) {
    for (const auto& [id, n] : nodes_) {
      r.nodes.push_back({id, n.role, n.address, n.alive, !n.job.empty(),
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - n.last_seen).count(),
                         n.host, n.pid, n.left});
    }
  }
  return r;
}

std::map<msg::JobState, size_t> CoordinatorState::jobs_by_state() const {
  std::map<msg::JobState, size_t> counts;
  for (const auto& [id, job] : jobs_) ++counts[job.status.state];
  return counts;
}

std::vector<LiveWorker> CoordinatorState::live_workers() const {
  std::vector<LiveWorker> out;
  for (const auto& [id, n] : nodes_) {
    if (n.alive && n.role == msg::NodeRole::kWorker) out.push_back({n.id, n.peer});
  }
  return out;
}

}  // namespace custody::actors
