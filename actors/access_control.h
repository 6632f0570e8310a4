// Who is calling, and may they: with auth on, a request's token is looked up among the
// credentials the custody store keeps (only each token's SHA-256, written by
// `custody principal add`), cached after the first lookup, and the caller's role is checked
// against what the request asks (access_policy.h). With auth off (a single-user local
// cluster), the request names its caller, who may do everything. Threat model:
// docs/ARCHITECTURE.md, "Principals, tokens and roles".
// Thread-safety: none; owned by the coordinator's state machine.
#pragma once

#include <map>
#include <string>

#include "actors/access_policy.h"
#include "core/error.h"
#include "protocols/messages.h"
#include "storage/custody_store.h"

namespace custody::actors {

// Who sent a request, as its token says (with auth on).
struct Caller {
  std::string principal;
  Role role = Role::kConsumer;  // what it may do: actors/access_policy.h
};

class AccessControl {
 public:
  // store: where credentials are kept; null: none (auth then refuses every token).
  AccessControl(bool auth, storage::CustodyStore* store);

  // With auth on: the caller its token names, if the role may send this request. Without
  // auth: a caller named by the request itself, with every right.
  Result<Caller> authorize(const msg::Envelope& in);
  // Records a new credential of `name` (only the token's SHA-256), made by `by`.
  Status add_credential(const std::string& name, Role role, const std::string& token, const std::string& by);

 private:
  bool auth_;
  storage::CustodyStore* store_;
  std::map<std::string, Caller> credentials_;  // token SHA-256 -> caller, read through
};

}  // namespace custody::actors
