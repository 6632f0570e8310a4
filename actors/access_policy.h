// Who may do what on a cluster that runs with --auth: the roles a principal's token can
// carry, and which requests each role may send. One table, here, instead of role names
// compared as strings wherever a request is handled. (Roles and what they may do:
// docs/ARCHITECTURE.md, "Principals, keys and roles".)
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "protocols/messages.h"

namespace custody::actors {

enum class Role { kSubmitter, kConsumer, kAuditor, kAdmin, kNode };

const char* to_string(Role role);
// The role a name spells ("submitter", ...); nullopt for anything else.
std::optional<Role> parse_role(std::string_view name);
// "submitter, consumer, auditor, admin or node": for errors that list the choices.
const char* role_names();

// Admin: everything. Node: registration, heartbeats, the reports of servers and
// workers, and fetching the records of their tasks (data shipping). Submitter: submit,
// cancel, resume, set the privacy budget of a data set it owns, and what a consumer may.
// Consumer: predict and export. Everyone: status, usage (filtered, see below) and the
// signed heads.
bool may_send(Role role, const msg::Body& body);
// Auditors and admins see every principal's usage; others their own calls only.
bool sees_everyones_usage(Role role);
// Store queries (storeQuery, storage/store_query.h): auditors and admins ask anything;
// submitters the lineage (models, checkpoints, show, trace, impact, graph, openlineage,
// privacy), not verify; consumers the model list and a model's privacy statement; nodes
// nothing.
bool may_query(Role role, const std::string& query);

}  // namespace custody::actors
