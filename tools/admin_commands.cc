// custody principal add NAME --role ROLE: an admin creates a principal (a coordinator with
// --auth); its token is printed once.
#include "tools/command.h"

namespace custody::cli {
namespace {

struct AdminArgs {
  std::string name, role;
};

Status add_principal(Session& s, const AdminArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(auto added,
                           s.client.ask<msg::PrincipalAdded>("", msg::AddPrincipal{a.name, a.role}));
  std::fprintf(stderr, "principal %s (%s) added; its token (shown only now):\n", added.name.c_str(),
               added.role.c_str());
  std::printf("%s\n", added.token.c_str());
  return Status::ok();
}

}  // namespace

void add_admin_commands(CommandSet& commands) {
  auto a = std::make_shared<AdminArgs>();
  CLI::App* principal = commands.add_group("principal", "manage principals (admin)");
  auto* add = commands.add(*principal, "add", "create a principal; prints its token once",
                           [a](Session& s) { return add_principal(s, *a); });
  add->add_option("NAME", a->name, "principal name")->required();
  add->add_option("--role", a->role, "submitter, consumer, auditor, admin or node")->required();
}

}  // namespace custody::cli
