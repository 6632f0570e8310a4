// A cluster with security = "curve": every connection to the coordinator is a CurveZMQ
// session, every caller is proven by its key at the handshake, and what a caller may do
// and is recorded as follows from the key, never from a name it typed. Principals are
// issued key pairs (or register their own public key), rotated and revoked.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

bool private_file(const fs::path& p) {
  return fs::exists(p) &&
         (fs::status(p).permissions() & (fs::perms::group_all | fs::perms::others_all)) == fs::perms::none;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

class CurveTest : public ::testing::Test {
 protected:
  static ClusterOptions options() {
    ClusterOptions o;
    o.servers = 1;
    o.curve = true;
    return o;
  }
  LocalCluster c{"curve", options()};

  std::vector<std::string> as(const fs::path& key, std::vector<std::string> args) {
    std::vector<std::string> all = c.curve_args(key);
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
  fs::path add(const std::string& name, const std::string& role) {
    const fs::path key = c.dir() / (name + ".key");
    CliResult r = c.cli(as(c.admin_key(), {"principal", "add", name, "--role", role, "--key-out", key.string()}));
    EXPECT_EQ(r.code, 0) << r.err;
    return key;
  }
};

TEST_F(CurveTest, KeysDecideWhoMayConnectWhoActsAndWhoMayCancel) {
  // The coordinator made its key pair and the admin's on first start, outside the store.
  EXPECT_TRUE(private_file(c.dir() / "coordinator.key"));
  EXPECT_TRUE(fs::exists(c.dir() / "coordinator.key.pub"));
  EXPECT_TRUE(private_file(c.admin_key()));
  const std::string coordinator_log = read_file(c.dir() / "coordinator.log");
  EXPECT_NE(coordinator_log.find("its public key"), std::string::npos) << coordinator_log;
  ASSERT_TRUE(c.wait_for_nodes(3)) << "the nodes did not register with their key";

  // No key, or a key the coordinator does not know: no message gets through at all.
  CliResult plain = c.cli({"--timeout-ms", "1500", "jobs"});
  EXPECT_EQ(plain.code, 3) << plain.err;
  const fs::path stranger = c.dir() / "stranger.key";
  ASSERT_EQ(c.cli({"key", "generate", stranger.string()}).code, 0);
  EXPECT_TRUE(private_file(stranger));
  CliResult unknown = c.cli(as(stranger, {"--timeout-ms", "1500", "jobs"}));
  EXPECT_EQ(unknown.code, 3) << unknown.err;
  EXPECT_NE(unknown.err.find("refused key looks the same"), std::string::npos) << unknown.err;
  EXPECT_NE(read_file(c.dir() / "coordinator.log").find("belongs to no principal"), std::string::npos);

  // Principals: issued a key pair, or registering the public key they made themselves.
  const fs::path alice = add("alice", "submitter");
  const fs::path sam = add("sam", "submitter");
  EXPECT_TRUE(private_file(alice));
  ASSERT_EQ(c.cli({"key", "generate", (c.dir() / "carol.key").string(), "--name", "carol"}).code, 0);
  CliResult carol_added = c.cli(as(c.admin_key(), {"principal", "add", "carol", "--role", "consumer",
                                                   "--public-key", (c.dir() / "carol.key.pub").string()}));
  ASSERT_EQ(carol_added.code, 0) << carol_added.err;
  const fs::path carol = c.dir() / "carol.key";
  // An existing name is refused: `principal add bob --role admin` must not promote bob.
  CliResult again = c.cli(as(c.admin_key(), {"principal", "add", "carol", "--role", "admin", "--key-out",
                                             (c.dir() / "carol-admin.key").string()}));
  EXPECT_EQ(again.code, 4);
  EXPECT_NE(again.err.find("already exists (consumer)"), std::string::npos) << again.err;
  EXPECT_FALSE(fs::exists(c.dir() / "carol-admin.key"));
  CliResult not_admin = c.cli(as(alice, {"principal", "add", "mallory", "--role", "admin"}));
  EXPECT_EQ(not_admin.code, 4);
  EXPECT_NE(not_admin.err.find("may not send 'addPrincipal'"), std::string::npos) << not_admin.err;

  // Alice submits; --as cannot make it someone else's.
  const fs::path quick = c.write_job("quick.toml", synthetic_mlp_job("keyed", 1, 1600));
  CliResult submitted = c.cli(as(alice, {"submit", quick.string(), "--as", "mallory"}));
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = first_line(submitted.out);
  ASSERT_EQ(c.cli(as(alice, {"wait", job})).code, 0);
  json status = json::parse(c.cli(as(alice, {"status", job, "--json"})).out);
  EXPECT_EQ(status["submitter"], "alice");
  EXPECT_EQ(status["state"], "completed");

  // Only the submitter (or an admin) may cancel; the record names the proven caller.
  const fs::path slow = c.write_job("slow.toml", synthetic_mlp_job("slow", 200, 16000));
  CliResult long_job = c.cli(as(alice, {"submit", slow.string()}));
  ASSERT_EQ(long_job.code, 0) << long_job.err;
  const std::string job2 = first_line(long_job.out);
  CliResult sams_cancel = c.cli(as(sam, {"cancel", job2}));
  EXPECT_EQ(sams_cancel.code, 4);
  EXPECT_NE(sams_cancel.err.find("only alice"), std::string::npos) << sams_cancel.err;
  ASSERT_EQ(c.cli(as(alice, {"cancel", job2})).code, 0);
  status = json::parse(c.cli(as(alice, {"status", job2, "--json"})).out);
  EXPECT_EQ(status["state"], "cancelled");
  EXPECT_EQ(status["message"], "cancelled by alice");

  // Carol predicts with the key she made; the usage names her.
  const fs::path rows = c.write_job("rows.csv", synthetic_mlp_row());
  CliResult predicted = c.cli(as(carol, {"predict", "keyed", "--input", rows.string(), "--as", "eve"}));
  ASSERT_EQ(predicted.code, 0) << predicted.err;

  // Revoked: refused at the handshake from then on.
  CliResult revoked = c.cli(as(c.admin_key(), {"principal", "revoke", "carol", "--reason", "left", "--json"}));
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_TRUE(json::parse(revoked.out)[0]["revoked"].get<bool>());
  CliResult after = c.cli(as(carol, {"--timeout-ms", "1500", "predict", "keyed", "--input", rows.string()}));
  EXPECT_EQ(after.code, 3) << after.out;

  // Rotated: the old key stops working, the new one works with the same role.
  CliResult rotated = c.cli(as(c.admin_key(), {"principal", "rotate", "sam", "--key-out",
                                               (c.dir() / "sam2.key").string()}));
  ASSERT_EQ(rotated.code, 0) << rotated.err;
  EXPECT_EQ(c.cli(as(sam, {"--timeout-ms", "1500", "jobs"})).code, 3);
  EXPECT_EQ(c.cli(as(c.dir() / "sam2.key", {"jobs"})).code, 0);

  json listed = json::parse(c.cli(as(c.admin_key(), {"principal", "list", "--json"})).out);
  int active = 0, withdrawn = 0;
  for (const auto& cred : listed) (cred["revoked"].get<bool>() ? withdrawn : active)++;
  EXPECT_EQ(withdrawn, 2) << listed.dump(2);  // carol's, sam's first
  EXPECT_EQ(active, 4) << listed.dump(2);  // admin, nodes, alice, and sam's new key
  // Revoking the nodes' key cuts off their open sessions: their heartbeats are refused and
  // the coordinator declares them dead (heartbeat timeout 2 s).
  ASSERT_EQ(c.cli(as(c.admin_key(), {"principal", "revoke", "nodes", "--reason", "stolen"})).code, 0);
  bool all_dead = false;
  for (int i = 0; i < 100 && !all_dead; ++i) {
    std::this_thread::sleep_for(100ms);
    json nodes = json::parse(c.cli(as(c.admin_key(), {"status", "--json"})).out)["nodes"];
    all_dead = !nodes.empty();
    for (const auto& n : nodes) all_dead = all_dead && !n["alive"].get<bool>();
  }
  EXPECT_TRUE(all_dead) << "nodes whose key was revoked are still taken as alive";
  EXPECT_NE(read_file(c.dir() / "coordinator.log").find("was revoked (stolen)"), std::string::npos);

  // The usage record and the nodes' registrations name proven principals; the store holds
  // public keys only, never a secret one.
  c.coordinator().stop();
  std::string all;
  const fs::path dump = c.dir() / "dump.txt";
  for (const char* family : {"default", "lineage", "usage", "audit", "index", "checkpoints"}) {
    const std::string cmd = "ldb --db=" + c.store().string() + " --column_family=" + family + " scan > " +
                            dump.string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(dump);
    all += read_file(dump);
  }
  EXPECT_NE(all.find("principal:carol"), std::string::npos);
  EXPECT_NE(all.find("\"principal\":\"principal:nodes\""), std::string::npos) << "node registrations name the key";
  for (const fs::path& f : {alice, sam, carol, c.admin_key(), c.dir() / "node.key"}) {
    const std::string text = read_file(f);
    const auto at = text.find("secret_key = \"");
    ASSERT_NE(at, std::string::npos) << f;
    EXPECT_EQ(all.find(text.substr(at + 14, 40)), std::string::npos) << "a secret key is in the store: " << f;
  }
}

TEST(CurveNodeTest, ANodeWithoutAKnownKeyNeverRegisters) {
  ClusterOptions o;
  o.servers = o.workers = 0;
  o.curve = true;
  LocalCluster c("curve-node", o);
  ASSERT_EQ(c.cli({"key", "generate", (c.dir() / "rogue.key").string()}).code, 0);
  Process rogue({bin("custody-worker"), "--coordinator", c.address(), "--connect-timeout-ms", "2000", "--key-file",
                 (c.dir() / "rogue.key").string(), "--coordinator-key", (c.dir() / "coordinator.key.pub").string()},
                c.dir() / "rogue.log");
  Process plain({bin("custody-worker"), "--coordinator", c.address(), "--connect-timeout-ms", "2000"},
                c.dir() / "plain.log");
  ASSERT_TRUE(rogue.wait_for_exit(15s));
  ASSERT_TRUE(plain.wait_for_exit(15s));
  EXPECT_NE(rogue.exit_code(), 0);
  EXPECT_NE(plain.exit_code(), 0);
  std::vector<std::string> args = c.admin_args();
  args.insert(args.end(), {"status", "--json"});
  CliResult s = c.cli(args);
  ASSERT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["nodes"].size(), 0u);
  EXPECT_EQ(read_file(c.dir() / "coordinator.log").find("registered worker"), std::string::npos);
}

}  // namespace
}  // namespace custody::testing
