// custody principal add | rotate | list | revoke: an admin manages who may use the cluster
// (a coordinator with security token or curve). A token is printed once; with CurveZMQ the
// coordinator makes the key pair (written to --key-out, mode 0600) unless the principal
// made its own and gives only its public key (--public-key), which keeps the secret off
// the wire altogether.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "protocols/curve_key_file.h"
#include "core/log.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

struct AdminArgs {
  std::string name, role, public_key, key_out, reason;
  bool json = false;
  bool bearer_token = false;
};

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status issue(Session& s, const AdminArgs& a, bool rotate) {
  std::string public_key;
  if (!a.public_key.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(public_key, bad_input(transport::read_public_key(a.public_key)));
  }
  const std::string key_out = a.key_out.empty() ? a.name + ".key" : a.key_out;
  if (public_key.empty() && !a.bearer_token && !s.coordinator_key.empty() &&
      (exists(key_out) || exists(key_out + ".pub"))) {
    // A key file is someone's secret: never overwrite one, not even the old key on rotation
    // (keep it until the new one is in use; delete it yourself).
    return bad_input(invalid_argument("'" + key_out + "' (or its .pub) exists; give --key-out FILE for the new key pair"));
  }
  msg::AddPrincipal request{a.name, a.role, public_key, rotate, a.bearer_token};
  CUSTODY_ASSIGN_OR_RETURN(auto added, s.client.ask<msg::PrincipalAdded>("", request));
  const char* done = rotate ? "rotated" : "added";
  if (!added.token.empty()) {
    std::fprintf(stderr, "principal %s (%s) %s; its token (shown only now):\n", added.name.c_str(),
                 added.role.c_str(), done);
    std::printf("%s\n", added.token.c_str());
    return Status::ok();
  }
  if (!added.secret_key.empty()) {
    transport::CurveIdentity identity{added.name, {added.public_key, added.secret_key}};
    Status written = transport::write_key_file(key_out, identity);
    if (!written.is_ok()) {
      return refused(Status(written.code(), "the coordinator issued the key pair, but it could not be saved: " +
                                                written.message() + ". Revoke it (`custody principal revoke " +
                                                added.name + "`) and try again"));
    }
    std::fprintf(stderr, "principal %s (%s) %s; its key pair is in %s (mode 0600; hand it over privately), its "
                 "public key in %s.pub\n",
                 added.name.c_str(), added.role.c_str(), done, key_out.c_str(), key_out.c_str());
  } else {
    std::fprintf(stderr, "principal %s (%s) %s with the public key it made\n", added.name.c_str(), added.role.c_str(),
                 done);
  }
  std::printf("%s\n", added.public_key.c_str());
  return Status::ok();
}

void print_credentials(const std::string& text, bool as_json) {
  if (as_json) {
    std::printf("%s\n", text.c_str());
    return;
  }
  const auto list = nlohmann::json::parse(text, nullptr, false);
  if (!list.is_array()) return;
  std::printf("%-16s %-10s %-6s %-8s %-20s %s\n", "PRINCIPAL", "ROLE", "KIND", "STATE", "CREATED", "KEY");
  for (const auto& c : list) {
    std::string state = c.value("revoked", false) ? "revoked" : "active";
    std::printf("%-16s %-10s %-6s %-8s %-20s %s\n", c.value("principal", "").c_str(), c.value("role", "").c_str(),
                c.value("kind", "").c_str(), state.c_str(),
                iso8601_utc(c.value("created_at_ms", int64_t(0))).substr(0, 19).c_str(),
                c.value("public_key", "-").c_str());
    if (c.value("revoked", false)) {
      std::printf("%16s revoked by %s: %s\n", "", c.value("revoked_by", "").c_str(),
                  c.value("revoke_reason", "").c_str());
    }
  }
}

}  // namespace

void add_admin_commands(CommandSet& commands) {
  auto a = std::make_shared<AdminArgs>();
  CLI::App* key = commands.add_group("key", "CurveZMQ key pairs, made on this machine");
  auto* generate = commands.add(*key, "generate", "make your own key pair; give an admin only FILE.pub",
                                [a](Session&) -> Status {
                                  if (exists(a->key_out)) {
                                    return bad_input(invalid_argument("'" + a->key_out + "' exists; choose another file"));
                                  }
                                  CUSTODY_ASSIGN_OR_RETURN(auto keys, transport::make_curve_key_pair());
                                  CUSTODY_RETURN_IF_ERROR(
                                      transport::write_key_file(a->key_out, transport::CurveIdentity{a->name, keys}));
                                  std::fprintf(stderr, "wrote your key pair to %s (mode 0600, keep it) and its public "
                                               "key to %s.pub (for `custody principal add NAME --public-key`)\n",
                                               a->key_out.c_str(), a->key_out.c_str());
                                  std::printf("%s\n", keys.public_key.c_str());
                                  return Status::ok();
                                });
  generate->add_option("FILE", a->key_out, "where to write the key pair")->required();
  generate->add_option("--name", a->name, "the principal name to note in the file");
  CLI::App* principal = commands.add_group("principal", "manage principals and their keys or tokens (admin)");
  auto* add = commands.add(*principal, "add", "create a principal; prints its token, or issues its key pair",
                           [a](Session& s) { return issue(s, *a, false); });
  add->add_option("NAME", a->name, "principal name")->required();
  add->add_option("--role", a->role, "submitter, consumer, auditor, admin or node")->required();
  add->add_option("--public-key", a->public_key,
                  "curve: register this public key (or .pub file) the principal made, instead of issuing a pair");
  add->add_option("--key-out", a->key_out, "curve: where to write the issued key pair (default NAME.key)");
  add->add_flag("--bearer-token", a->bearer_token,
                "curve: issue a bearer token for the HTTPS listener instead of a key pair (printed once)");
  auto* rotate = commands.add(*principal, "rotate", "give a principal a new key or token; the old ones stop working",
                              [a](Session& s) { return issue(s, *a, true); });
  rotate->add_option("NAME", a->name, "principal name")->required();
  rotate->add_option("--public-key", a->public_key, "curve: the principal's new public key (or .pub file)");
  rotate->add_option("--key-out", a->key_out, "curve: where to write the new key pair (default NAME.key)");
  rotate->add_flag("--bearer-token", a->bearer_token, "curve: a new bearer token for the HTTPS listener");
  auto* list = commands.add(*principal, "list", "every principal's credentials, active and revoked",
                            [a](Session& s) -> Status {
                              CUSTODY_ASSIGN_OR_RETURN(auto reply,
                                                       s.client.ask<msg::PrincipalsReply>("", msg::PrincipalsRequest{}));
                              print_credentials(reply.json, a->json);
                              return Status::ok();
                            });
  list->add_flag("--json", a->json, "print JSON");
  auto* revoke = commands.add(*principal, "revoke", "withdraw every credential of a principal, at once",
                              [a](Session& s) -> Status {
                                CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::PrincipalsReply>(
                                                                         "", msg::RevokePrincipal{a->name, a->reason}));
                                print_credentials(reply.json, a->json);
                                return Status::ok();
                              });
  revoke->add_option("NAME", a->name, "principal name")->required();
  revoke->add_option("--reason", a->reason, "why (recorded)");
  revoke->add_flag("--json", a->json, "print JSON");
}

}  // namespace custody::cli
