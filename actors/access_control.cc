#include "actors/access_control.h"

#include "actors/custody_recorder.h"
#include "core/hash.h"
#include "storage/lineage_vocabulary.h"

namespace custody::actors {

namespace lineage = storage::lineage;

AccessControl::AccessControl(bool auth, storage::CustodyStore* store) : auth_(auth), store_(store) {}

Result<Caller> AccessControl::authorize(const msg::Envelope& in) {
  if (!auth_) return Caller{in.sender, Role::kAdmin};
  if (in.token.empty()) {
    return Status(ErrorCode::kPermissionDenied, "this cluster requires a token (--token-file, or token_file in the "
                                                "CLI config); an admin creates one with `custody principal add`");
  }
  const std::string hash = sha256_hex(in.token);
  auto it = credentials_.find(hash);
  if (it == credentials_.end()) {
    if (!store_) return Status(ErrorCode::kPermissionDenied, "the token is not known to this cluster");
    CUSTODY_ASSIGN_OR_RETURN(auto e, store_->entity(lineage::credential_id(hash)));
    if (!e) return Status(ErrorCode::kPermissionDenied, "the token is not known to this cluster");
    const std::string principal = e->body["principal"], role_name = e->body["role"];
    const auto role = parse_role(role_name);
    if (!role) {
      return Status(ErrorCode::kPermissionDenied, "the token's credential (principal " + principal +
                                                      ") has the unknown role '" + role_name + "'");
    }
    it = credentials_.emplace(hash, Caller{principal, *role}).first;
  }
  if (!may_send(it->second.role, in.body)) {
    return Status(ErrorCode::kPermissionDenied, "principal " + it->second.principal + " (" +
                                                    to_string(it->second.role) + ") may not send '" +
                                                    msg::body_name(in.body) + "'");
  }
  return it->second;
}

Status AccessControl::add_credential(const std::string& name, Role role, const std::string& token,
                                     const std::string& by) {
  const std::string hash = sha256_hex(token);
  CUSTODY_RETURN_IF_ERROR(CustodyRecorder(store_).principal_added(name, to_string(role), hash, by));
  credentials_[hash] = Caller{name, role};
  return Status::ok();
}

}  // namespace custody::actors
