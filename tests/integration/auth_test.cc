// Principals, tokens and roles on a coordinator started with --auth: every request needs a
// token, roles limit what each principal may do, the token decides who acts, and the
// store keeps only tokens' hashes.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

const std::string kJob = synthetic_mlp_job("guarded", 1, 1600);

TEST(AuthTest, TokensAndRolesDecideWhoMayDoWhatAndWhoDidIt) {
  ClusterOptions options;
  options.servers = 1;
  options.auth = true;
  LocalCluster c("auth", options);
  ASSERT_TRUE(fs::exists(c.admin_token()));
  EXPECT_EQ(fs::status(c.admin_token()).permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none)
      << "only its owner may read the admin token";
  const std::string admin = c.admin_token().string();

  // No token, a wrong token: refused, saying why.
  CliResult none = c.cli({"jobs"});
  EXPECT_EQ(none.code, 4);
  EXPECT_NE(none.err.find("requires a token"), std::string::npos) << none.err;
  const fs::path bogus = c.dir() / "bogus.token";
  std::ofstream(bogus) << std::string(64, 'a') << "\n";
  CliResult wrong = c.cli({"--token-file", bogus.string(), "jobs"});
  EXPECT_EQ(wrong.code, 4);
  EXPECT_NE(wrong.err.find("not known"), std::string::npos) << wrong.err;

  // The nodes got a node token and registered.
  ASSERT_TRUE([&] {
    for (int i = 0; i < 100; ++i) {
      CliResult s = c.cli({"--token-file", admin, "status", "--json"});
      if (s.code == 0 && json::parse(s.out)["nodes"].size() == 3u) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }());

  auto add = [&](const std::string& name, const std::string& role) {
    CliResult r = c.cli({"--token-file", admin, "principal", "add", name, "--role", role});
    EXPECT_EQ(r.code, 0) << r.err;
    const fs::path f = c.dir() / (name + ".token");
    std::ofstream(f) << r.out;
    return f.string();
  };
  const std::string alice = add("alice", "submitter");
  const std::string carol = add("carol", "consumer");
  CliResult not_admin = c.cli({"--token-file", alice, "principal", "add", "mallory", "--role", "admin"});
  EXPECT_EQ(not_admin.code, 4);
  EXPECT_NE(not_admin.err.find("may not send 'addPrincipal'"), std::string::npos) << not_admin.err;
  CliResult bad_role = c.cli({"--token-file", admin, "principal", "add", "x", "--role", "overlord"});
  EXPECT_EQ(bad_role.code, 4);
  EXPECT_NE(bad_role.err.find("unknown role 'overlord'"), std::string::npos);

  // A consumer cannot submit; a submitter can, and is recorded as who the token says.
  const fs::path job_file = c.write_job("guarded.toml", kJob);
  CliResult consumer_submit = c.cli({"--token-file", carol, "submit", job_file.string()});
  EXPECT_EQ(consumer_submit.code, 4);
  EXPECT_NE(consumer_submit.err.find("principal carol (consumer) may not send 'submitJob'"), std::string::npos);
  CliResult submitted = c.cli({"--token-file", alice, "submit", job_file.string(), "--as", "mallory"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"--token-file", alice, "wait", job}).code, 0);
  json status = json::parse(c.cli({"--token-file", alice, "status", job, "--json"}).out);
  EXPECT_EQ(status["submitter"], "alice") << "--as cannot override the token";

  // The consumer predicts; the usage names carol whatever --as says.
  const fs::path rows = c.write_job("rows.csv", synthetic_mlp_row());
  CliResult predicted = c.cli({"--token-file", carol, "predict", "guarded", "--input", rows.string(), "--as", "eve"});
  ASSERT_EQ(predicted.code, 0) << predicted.err;
  CliResult forged = c.cli({"--token-file", bogus.string(), "predict", "guarded", "--input", rows.string()});
  EXPECT_EQ(forged.code, 4) << "a wrong token gets no prediction";
  json usage = json::parse(c.cli({"usage", "guarded", "--store", c.store().string(), "--json"}).out);
  ASSERT_EQ(usage["records"].size(), 1u);
  EXPECT_EQ(usage["records"][0]["principal"], "principal:carol");

  // Through the coordinator, a principal sees only its own calls; an auditor sees all.
  const std::string dave = add("dave", "consumer");
  const std::string audrey = add("audrey", "auditor");
  ASSERT_EQ(c.cli({"--token-file", dave, "predict", "guarded", "--input", rows.string()}).code, 0);
  auto usage_as = [&](const std::string& token) {
    CliResult r = c.cli({"--token-file", token, "usage", "guarded", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out);
  };
  json mine = usage_as(carol);
  ASSERT_EQ(mine["records"].size(), 1u);
  EXPECT_EQ(mine["records"][0]["principal"], "principal:carol");
  EXPECT_FALSE(mine["by_principal"].contains("principal:dave")) << mine.dump(2);
  json audited = usage_as(audrey);
  EXPECT_EQ(audited["records"].size(), 2u);
  EXPECT_TRUE(audited["by_principal"].contains("principal:dave"));
  CliResult auditor_predicts = c.cli({"--token-file", audrey, "predict", "guarded", "--input", rows.string()});
  EXPECT_EQ(auditor_predicts.code, 4) << "auditors read; they do not use models";

  // Lineage from any machine: without --store the CLI asks the coordinator (storeQuery),
  // which answers as the store's files do, as each role allows.
  auto query = [&](const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {"--token-file", token});
    return c.cli(args);
  };
  CliResult remote_trace = query(audrey, {"lineage", "trace", "guarded", "--json"});
  ASSERT_EQ(remote_trace.code, 0) << remote_trace.err;
  CliResult local_trace = c.cli({"lineage", "trace", "guarded", "--json", "--store", c.store().string()});
  ASSERT_EQ(local_trace.code, 0) << local_trace.err;
  EXPECT_EQ(json::parse(remote_trace.out), json::parse(local_trace.out)) << "the same answer either way";
  CliResult remote_models = query(carol, {"models", "--json"});
  ASSERT_EQ(remote_models.code, 0) << remote_models.err;
  EXPECT_EQ(json::parse(remote_models.out), json::parse(c.cli({"models", "--json", "--store", c.store().string()}).out));
  EXPECT_EQ(query(alice, {"checkpoints", job}).code, 0) << "a submitter reads the lineage";
  CliResult consumer_trace = query(carol, {"lineage", "trace", "guarded"});
  EXPECT_EQ(consumer_trace.code, 4);
  EXPECT_NE(consumer_trace.err.find("principal carol (consumer) may not ask the store for 'trace'"),
            std::string::npos)
      << consumer_trace.err;
  CliResult submitter_verify = query(alice, {"audit", "verify"});
  EXPECT_EQ(submitter_verify.code, 4) << "verify is for auditors: " << submitter_verify.out << submitter_verify.err;
  CliResult audited_store = query(audrey, {"audit", "verify"});
  EXPECT_EQ(audited_store.code, 0) << audited_store.out << audited_store.err;
  EXPECT_NE(audited_store.out.find("the coordinator's custody store: ok"), std::string::npos) << audited_store.out;
  CliResult nobody = c.cli({"lineage", "trace", "guarded"});
  EXPECT_EQ(nobody.code, 4) << "no token, no lineage";
  CliResult unknown_id = query(audrey, {"lineage", "trace", "ckpt-0000000000000000"});
  EXPECT_EQ(unknown_id.code, 4);
  EXPECT_NE(unknown_id.err.find("ckpt-0000000000000000"), std::string::npos) << unknown_id.err;

  // The store keeps the tokens' hashes, never the tokens.
  c.coordinator().stop();
  const fs::path dump = c.dir() / "dump.txt";
  std::string all;
  for (const char* family : {"default", "lineage", "usage", "audit", "index", "checkpoints"}) {
    const std::string cmd = "ldb --db=" + c.store().string() + " --column_family=" + family + " scan > " +
                            dump.string() + " 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(dump);
    all += read_file(dump);
  }
  std::string carol_token = read_file(carol);
  carol_token.erase(carol_token.find_last_not_of("\n") + 1);
  ASSERT_EQ(carol_token.size(), 64u);
  EXPECT_EQ(all.find(carol_token), std::string::npos) << "a raw token is in the store";
  EXPECT_NE(all.find("credential:"), std::string::npos);
}

TEST(AuthTest, ANodeWithoutATokenIsRefusedAndSaysSo) {
  ClusterOptions options;
  options.servers = options.workers = 0;
  options.auth = true;
  LocalCluster c("auth-node", options);
  Process node({bin("custody-worker"), "--coordinator", c.address()}, c.dir() / "stranger.log");
  ASSERT_TRUE(node.wait_for_exit(15s));
  EXPECT_NE(node.exit_code(), 0);
  const std::string log = read_file(node.log());
  EXPECT_NE(log.find("refused this node"), std::string::npos) << log;
}

}  // namespace
}  // namespace custody::testing
