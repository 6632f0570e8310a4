// Who is calling, and may they. Three settings (coordinator `security`, node_config.h):
//   none   a single-user local cluster: a request names its caller, who may do everything.
//   token  every request carries a secret token; the store keeps only its SHA-256. Tokens
//          travel in clear: for loopback, or behind a network the operator trusts.
//   curve  every connection is a CurveZMQ session whose client key the authenticator
//          (credential_of_key, asked by the transport's ZAP handler during the handshake)
//          maps to the key's credential; an unknown or revoked key never gets a message
//          through. Every message of the session carries that credential, so rotating or
//          revoking it also cuts off sessions opened before. The credential's principal is
//          who acts, never a name the request gave.
// In both secured modes the principal's role is checked against the request
// (access_policy.h). Credentials live in the custody store (a `credential:` entity per
// token or key, a `credential_revoked` event per revocation) and are read into memory once,
// at construction; add/revoke write the store first, then memory.
// Threat model: docs/ARCHITECTURE.md, "Principals, keys and roles".
// Thread-safety: credential_of_key may run on any thread (the ZAP handler's); every other
// method belongs to the coordinator's state machine. A mutex guards the credentials.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/access_policy.h"
#include "actors/node_config.h"
#include "core/error.h"
#include "protocols/messages.h"
#include "storage/custody_store.h"

namespace custody::actors {

// Who sent a request, as its token or key proves (in a secured mode).
struct Caller {
  std::string principal;
  Role role = Role::kConsumer;  // what it may do: actors/access_policy.h
};

// One credential of a principal, as recorded.
struct Credential {
  std::string id;          // "credential:<sha256>" (of the token, or of "curve:" + the key)
  std::string principal;
  Role role = Role::kConsumer;
  std::string kind;        // "token" or "curve"
  std::string public_key;  // curve: the principal's public key (Z85)
  std::string created_by;
  int64_t created_at_ms = 0;
  bool revoked = false;
  std::string revoked_by, revoke_reason;
};

// What add() issued: the secret is shown to the caller once and never kept.
struct Issued {
  Credential credential;
  std::string token;       // token mode
  std::string secret_key;  // curve mode, when the coordinator made the key pair
};

class AccessControl {
 public:
  // store: where credentials are kept; null: none (a secured mode then refuses everyone).
  AccessControl(Security security, storage::CustodyStore* store);

  // Reads every credential and revocation from the store. Call once before serving.
  Status load();
  Security security() const { return security_; }

  // The ZAP handler's question (curve): the active credential (its SHA-256, the session's
  // identity) of this public key, or nullopt. Thread-safe.
  std::optional<std::string> credential_of_key(const std::string& public_key) const;
  // The principal of an active credential of this public key, or nullopt.
  std::optional<std::string> principal_of_key(const std::string& public_key) const;

  // The caller of `in`, if its role may send it. `authenticated`: the identity of the
  // sender's session (curve: credential_of_key's answer at the handshake), empty otherwise.
  Result<Caller> authorize(const msg::Envelope& in, const std::string& authenticated) const;
  // The caller of a request that came over HTTP (actors/http_listener.h), proven by the
  // bearer token it carries (`in.token`): a token credential, in token and curve mode alike
  // (curve-mode tokens are for HTTPS only). `authenticated`: set when the token is known,
  // so a refusal is about the role (403), not the credential (401). Thread-safe.
  Result<Caller> authorize_bearer(const msg::Envelope& in, bool* authenticated) const;

  // A new credential for `name`: refused (failed_precondition) if `name` has an active one,
  // unless `rotate`, which then revokes the old ones once the new one is recorded (a crash
  // in between leaves both valid, never neither). `public_key`: curve, a key the principal
  // made itself; empty makes a key pair (curve) or a token (token mode).
  // `bearer_token` (curve): a token credential for the HTTPS listener instead of a key;
  // authorize() never accepts it on the ZeroMQ socket, authorize_bearer() does.
  Result<Issued> add(const std::string& name, Role role, const std::string& public_key, bool rotate,
                     const std::string& by, bool bearer_token = false);
  // Revokes every active credential of `name`; not_found if there is none.
  Status revoke(const std::string& name, const std::string& reason, const std::string& by);
  // Every credential, oldest first.
  std::vector<Credential> list() const;
  // The role `name` holds through an active credential, if any.
  std::optional<Role> role_of(const std::string& name) const;

 private:
  Status record(const Credential& c, const std::string& credential_sha256);
  // REQUIRES: mutex_ held. The caller an active token credential names, if any.
  std::optional<Caller> token_caller_locked(const std::string& token) const;
  // `caller`, if its role may send `in`.
  Result<Caller> permitted(Caller caller, const msg::Envelope& in) const;
  // Revokes the active credentials of `name` but `keep`.
  Status revoke_except(const std::string& name, const std::string& keep, const std::string& reason,
                       const std::string& by);

  const Security security_;
  storage::CustodyStore* store_;
  mutable std::mutex mutex_;
  std::vector<Credential> credentials_;              // in the order recorded
  std::map<std::string, size_t> by_hash_;            // credential sha256 -> index (tokens and keys)
};

// The credential hash of a CurveZMQ public key, as recorded.
std::string key_credential_sha256(const std::string& public_key);

}  // namespace custody::actors
