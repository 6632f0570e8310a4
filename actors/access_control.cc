#include "actors/access_control.h"

#include "actors/custody_recorder.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "protocols/transport.h"
#include "storage/lineage_vocabulary.h"

namespace custody::actors {

namespace lineage = storage::lineage;

std::string key_credential_sha256(const std::string& public_key) { return sha256_hex("curve:" + public_key); }

AccessControl::AccessControl(Security security, storage::CustodyStore* store) : security_(security), store_(store) {}

Status AccessControl::load() {
  if (!store_) return Status::ok();
  CUSTODY_ASSIGN_OR_RETURN(auto entities, store_->find({{"type", lineage::kEntity}, {"kind", lineage::kind::kCredential}}));
  CUSTODY_ASSIGN_OR_RETURN(auto revocations, store_->find({{"event", lineage::event::kCredentialRevoked}}));
  std::lock_guard<std::mutex> lock(mutex_);
  credentials_.clear();
  by_hash_.clear();
  for (const auto& r : entities) {
    const auto& b = r.body;
    const std::string id = b.value("id", "");
    const auto role = parse_role(b.value("role", ""));
    if (!role) {
      // Never guess a role: a credential whose role this version does not know grants nothing.
      log(LogLevel::kWarn, "coordinator", "credential " + id + " has the unknown role '" + b.value("role", "") +
                                              "'; it is not honoured");
      continue;
    }
    Credential c;
    c.id = id;
    c.principal = b.value("principal", "");
    c.role = *role;
    c.kind = b.value("credential_kind", "token");
    c.public_key = b.value("public_key", "");
    c.created_by = b.value("created_by", "");
    c.created_at_ms = r.time_ms;
    const std::string hash = id.substr(std::min(id.size(), std::string(lineage::prefix::kCredential).size()));
    if (by_hash_.count(hash)) continue;  // recorded twice (an admin bootstrap): the first counts
    by_hash_[hash] = credentials_.size();
    credentials_.push_back(std::move(c));
  }
  for (const auto& r : revocations) {
    const std::string id = r.body.value("credential", "");
    for (auto& c : credentials_) {
      if (c.id != id) continue;
      c.revoked = true;
      c.revoked_by = lineage::display_name(r.body.value("by", ""), lineage::prefix::kPrincipal);
      c.revoke_reason = r.body.value("reason", "");
    }
  }
  return Status::ok();
}

std::optional<std::string> AccessControl::credential_of_key(const std::string& public_key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string hash = key_credential_sha256(public_key);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  const Credential& c = credentials_[it->second];
  if (c.revoked || c.kind != "curve") return std::nullopt;
  return hash;
}

std::optional<std::string> AccessControl::principal_of_key(const std::string& public_key) const {
  if (!credential_of_key(public_key)) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  return credentials_[by_hash_.at(key_credential_sha256(public_key))].principal;
}

Result<Caller> AccessControl::authorize(const msg::Envelope& in, const std::string& authenticated) const {
  if (security_ == Security::kNone) return Caller{in.sender, Role::kAdmin};
  std::optional<Caller> caller;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (security_ == Security::kCurve) {
      if (authenticated.empty()) {
        // Only a socket without CURVE delivers messages without a proven principal: never
        // the coordinator's, but refuse rather than trust such a message.
        return Status(ErrorCode::kPermissionDenied, "this cluster proves callers by CurveZMQ key; the message "
                                                    "came without one");
      }
      // The session's own credential, not any of its principal's: a session opened with a
      // key that was rotated or revoked since is cut off, even if the name has a new key.
      auto it = by_hash_.find(authenticated);
      if (it == by_hash_.end() || credentials_[it->second].kind != "curve") {
        return Status(ErrorCode::kPermissionDenied, "the session's credential is not known to this cluster");
      }
      const Credential& c = credentials_[it->second];
      if (c.revoked) {
        return Status(ErrorCode::kPermissionDenied, "the key of principal " + c.principal + " was revoked (" +
                                                        (c.revoke_reason.empty() ? "no reason given" : c.revoke_reason) +
                                                        "); connect with its current key");
      }
      caller = Caller{c.principal, c.role};
    } else {
      if (in.token.empty()) {
        return Status(ErrorCode::kPermissionDenied, "this cluster requires a token (--token-file, or token_file in "
                                                    "the CLI config); an admin creates one with `custody principal add`");
      }
      caller = token_caller_locked(in.token);
      if (!caller) return Status(ErrorCode::kPermissionDenied, "the token is not known to this cluster (or was revoked)");
    }
  }
  return permitted(*caller, in);
}

std::optional<Caller> AccessControl::token_caller_locked(const std::string& token) const {
  auto it = by_hash_.find(sha256_hex(token));
  if (it == by_hash_.end() || credentials_[it->second].revoked || credentials_[it->second].kind != "token") {
    return std::nullopt;
  }
  return Caller{credentials_[it->second].principal, credentials_[it->second].role};
}

Result<Caller> AccessControl::authorize_bearer(const msg::Envelope& in, bool* authenticated) const {
  *authenticated = false;
  if (security_ == Security::kNone) {
    *authenticated = true;
    return Caller{in.sender, Role::kAdmin};
  }
  if (in.token.empty()) {
    return Status(ErrorCode::kPermissionDenied,
                  "this cluster requires a bearer token (the header 'Authorization: Bearer TOKEN'); an admin "
                  "issues one with `custody principal add NAME --role consumer" +
                      std::string(security_ == Security::kCurve ? " --bearer-token`" : "`"));
  }
  std::optional<Caller> caller;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    caller = token_caller_locked(in.token);
  }
  if (!caller) return Status(ErrorCode::kPermissionDenied, "the bearer token is not known to this cluster (or was revoked)");
  *authenticated = true;
  return permitted(*caller, in);
}

Result<Caller> AccessControl::permitted(Caller caller, const msg::Envelope& in) const {
  if (!may_send(caller.role, in.body)) {
    return Status(ErrorCode::kPermissionDenied, "principal " + caller.principal + " (" + to_string(caller.role) +
                                                    ") may not send '" + msg::body_name(in.body) + "'");
  }
  return caller;
}

std::optional<Role> AccessControl::role_of(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = credentials_.rbegin(); it != credentials_.rend(); ++it) {
    if (it->principal == name && !it->revoked) return it->role;
  }
  return std::nullopt;
}

Result<Issued> AccessControl::add(const std::string& name, Role role, const std::string& public_key, bool rotate,
                                  const std::string& by, bool bearer_token) {
  if (security_ == Security::kNone) {
    return failed_precondition("this coordinator runs with security = \"none\", so credentials would not be "
                               "checked; start it with --security curve (or token) to use principals");
  }
  if (!store_) return failed_precondition("principals are kept in the custody store: start with --store");
  const auto current = role_of(name);
  if (current && !rotate) {
    return failed_precondition(
                  "principal " + name + " already exists (" + to_string(*current) +
                      "); `custody principal rotate " + name + "` gives it a new credential, `custody principal "
                      "revoke " + name + "` withdraws it");
  }
  if (!current && rotate) return not_found("no principal '" + name + "' with an active credential to rotate");
  if (rotate && role != *current) {
    return invalid_argument("rotating keeps the role (" + std::string(to_string(*current)) +
                            "); to change it, revoke the principal and add it again");
  }
  Issued issued;
  Credential& c = issued.credential;
  c.principal = name;
  c.role = role;
  c.created_by = by;
  c.created_at_ms = Clock::system().wall_ms();
  std::string hash;
  if (bearer_token && !public_key.empty()) {
    return invalid_argument("a bearer token and a public key are two kinds of credential: ask for one");
  }
  if (security_ == Security::kCurve && !bearer_token) {
    c.kind = "curve";
    if (public_key.empty()) {
      CUSTODY_ASSIGN_OR_RETURN(auto pair, transport::make_curve_key_pair());
      c.public_key = pair.public_key;
      issued.secret_key = pair.secret_key;
    } else {
      if (!transport::is_curve_key(public_key)) {
        return invalid_argument("a CurveZMQ public key is 40 characters of Z85 text");
      }
      c.public_key = public_key;
    }
    hash = key_credential_sha256(c.public_key);
    std::lock_guard<std::mutex> lock(mutex_);
    if (by_hash_.count(hash)) return failed_precondition("that public key is already registered");
  } else {
    if (!public_key.empty()) return invalid_argument("public keys need security = \"curve\"; this cluster uses tokens");
    c.kind = "token";
    CUSTODY_ASSIGN_OR_RETURN(issued.token, random_token());
    hash = sha256_hex(issued.token);
  }
  c.id = lineage::credential_id(hash);
  CUSTODY_RETURN_IF_ERROR(record(c, hash));
  if (rotate) {
    // The old credentials stop working once the new one is recorded: a crash between the
    // two leaves both valid, never neither.
    Status s = revoke_except(name, c.id, "rotated", by);
    if (!s.is_ok()) return s;
  }
  return issued;
}

Status AccessControl::record(const Credential& c, const std::string& credential_sha256) {
  CUSTODY_RETURN_IF_ERROR(CustodyRecorder(store_).principal_added(c.principal, to_string(c.role), credential_sha256,
                                                                  c.created_by, c.kind, c.public_key));
  std::lock_guard<std::mutex> lock(mutex_);
  by_hash_[credential_sha256] = credentials_.size();
  credentials_.push_back(c);
  return Status::ok();
}

Status AccessControl::revoke(const std::string& name, const std::string& reason, const std::string& by) {
  if (!role_of(name)) return not_found("no principal '" + name + "' with an active credential to revoke");
  return revoke_except(name, "", reason, by);
}

Status AccessControl::revoke_except(const std::string& name, const std::string& keep, const std::string& reason,
                                    const std::string& by) {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& c : credentials_)
      if (c.principal == name && !c.revoked && c.id != keep) ids.push_back(c.id);
  }
  for (const auto& id : ids) {
    CUSTODY_RETURN_IF_ERROR(CustodyRecorder(store_).credential_revoked(id, name, by, reason));
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& c : credentials_) {
      if (c.id != id) continue;
      c.revoked = true;
      c.revoked_by = by;
      c.revoke_reason = reason;
    }
  }
  return Status::ok();
}

std::vector<Credential> AccessControl::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return credentials_;
}

}  // namespace custody::actors
