// The custody store at rest as an operator and a thief meet it, with real processes: the
// files a trained cluster leaves are private and hold no weights in clear; `audit verify`
// checks every byte with the store key and without it; an online backup is taken while
// the coordinator trains, a coordinator killed mid-backup leaves no backup that passes
// for complete, and the last complete one restores and verifies; a rekey killed midway
// leaves a store that opens and verifies, and the next rekey finishes it.
#include <nlohmann/json.hpp>

#include "tests/files_at_rest.h"
#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

json cli_json(LocalCluster& c, std::vector<std::string> args) {
  args.push_back("--json");
  CliResult r = c.cli(args);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  return json::parse(r.out, nullptr, false);
}

std::string submit(LocalCluster& c, const std::string& name, const std::string& text) {
  CliResult r = c.cli({"submit", c.write_job(name + ".toml", text).string(), "--as", "alice"});
  EXPECT_EQ(r.code, 0) << r.err;
  return r.out.substr(0, r.out.find('\n'));
}

// A model large enough that its checkpoints make a store of megabytes: 256-512-4, momentum.
std::string wide_job(const std::string& name, int epochs, int checkpoint_every) {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = 16\nworkers = 2\ncheckpoint_every_steps = " + std::to_string(checkpoint_every) +
         "\n[model]\ntype = \"mlp\"\nhidden = [512]\nclasses = 4\n[optimizer]\ntype = \"momentum\"\n"
         "learning_rate = 0.05\nmomentum = 0.9\n[data]\nkind = \"synthetic\"\n[data.synthetic]\n"
         "train_samples = 3200\ntest_samples = 400\nfeatures = 256\nclasses = 4\n";
}

// 64 bytes from the middle of the exported weights: what someone holding the store's
// files would search them for.
std::string weights_needle(const std::string& exported) { return exported.substr(exported.size() / 3, 64); }

std::string exported(LocalCluster& c, const std::string& model, const std::string& file) {
  CliResult r = c.cli({"export", model, (c.dir() / file).string(), "--as", "auditor"});
  EXPECT_EQ(r.code, 0) << r.err;
  return read_file(c.dir() / file);
}

bool wait_until(const std::function<bool()>& ready, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return ready();
}

TEST(StoreAtRestTest, ATrainedStoreIsPrivateHoldsNoWeightsInClearAndVerifiesWithAndWithoutItsKey) {
  ClusterOptions o;
  o.servers = 1;
  LocalCluster c("at-rest-files", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, "private", synthetic_mlp_job("private", 2, 1600));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string weights = exported(c, "private", "w.f32");
  ASSERT_GT(weights.size(), 1000u);
  c.coordinator().stop();

  EXPECT_EQ(first_public(c.store()), "") << "the store's directory is 0700 and its files 0600";
  for (const char* key : {"store.store-key", "store.signing-key"})
    EXPECT_EQ(mode_of(c.dir() / key), 0600u) << key;
  EXPECT_FALSE(files_hold(c.store(), weights_needle(weights)))
      << "a copy of the store's files reveals the weights";

  CliResult with_key = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(with_key.code, 0) << with_key.out << with_key.err;
  EXPECT_NE(with_key.out.find("sealed tensors opened with the store key"), std::string::npos) << with_key.out;

  // Someone with a copy of the files and not the key: the records and the sealed bytes
  // verify, the tensors cannot be opened, and verify says so.
  const fs::path copy = c.dir() / "stolen";
  fs::copy(c.store(), copy, fs::copy_options::recursive);
  CliResult without = c.cli({"audit", "verify", "--store", copy.string(), "--json"});
  EXPECT_EQ(without.code, 0) << without.out << without.err;
  const json report = json::parse(without.out);
  EXPECT_GT(report["tensors_sealed_not_opened"].get<int>(), 0) << without.out;
  EXPECT_EQ(report["tensors_opened_with_store_key"], 0);
  EXPECT_NE(report["notes"].get<std::string>().find("sealed bytes only"), std::string::npos) << without.out;
  // Lineage still reads: a stolen store reveals who trained what on what, not the weights.
  CliResult lineage = c.cli({"lineage", "show", job, "--store", copy.string()});
  EXPECT_EQ(lineage.code, 0) << lineage.err;
  // RocksDB's own ldb dumps the checkpoints family of the copy: the manifests are there in
  // clear (the root hash of the weights shows), the weights are not.
  const fs::path dump = c.dir() / "ldb.out";
  const std::string cmd =
      "ldb --db=" + copy.string() + " --column_family=checkpoints --hex scan > " + dump.string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(dump) << " (rocksdb-tools installs ldb)";
  const std::string dumped = read_file(dump);
  auto hex = [](const std::string& bytes) {
    static const char* digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char ch : bytes) out += {digits[ch >> 4], digits[ch & 15]};
    return out;
  };
  EXPECT_NE(dumped.find(hex("\"root_hash\":")), std::string::npos) << "the manifests dump in clear";
  EXPECT_EQ(dumped.find(hex(weights_needle(weights))), std::string::npos) << "the weights do not";

  // With the key the coordinator serves the same weights, bit for bit.
  c.start_coordinator("coordinator-2.log");
  EXPECT_EQ(exported(c, "private", "w2.f32"), weights);
  c.coordinator().stop();
  // Without it, it refuses to start rather than seal under a key that cannot open the rest.
  fs::rename(c.dir() / "store.store-key", c.dir() / "moved.store-key");
  c.start_coordinator("coordinator-3.log");
  ASSERT_TRUE(c.coordinator().wait_for_exit(10s));
  EXPECT_EQ(c.coordinator().exit_code(), 2);
  EXPECT_NE(read_file(c.dir() / "coordinator-3.log").find("there is no key file at"), std::string::npos)
      << read_file(c.dir() / "coordinator-3.log");
  EXPECT_FALSE(fs::exists(c.dir() / "store.store-key")) << "no new key was made";
}

TEST(StoreAtRestTest, AnOnlineBackupIsTakenWhileTrainingAndABackupCutByKillingTheCoordinatorIsNeverRestored) {
  ClusterOptions o;
  o.servers = 1;
  o.fixed_port = true;
  LocalCluster c("at-rest-backup", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const fs::path backups = c.dir() / "backups";
  const std::string job = submit(c, "wide", wide_job("wide", 24, 25));  // long enough to outlast backup 1
  ASSERT_TRUE(wait_until([&] { return cli_json(c, {"status", job})["step"].get<int>() > 50; }, 60s));

  // Backup 1, taken by the coordinator while the job trains; slowed down (two checkpoints
  // and the WAL are some megabytes: seconds at 2 MiB/s, several progress reports), so that
  // the job visibly goes on meanwhile.
  const int step_before = cli_json(c, {"status", job})["step"];
  const json first = cli_json(c, {"store", "backup", backups.string(), "--max-mib-per-s", "2"});
  const json during = cli_json(c, {"status", job});
  EXPECT_EQ(first["backup"], 1) << first;
  EXPECT_TRUE(first["online"].get<bool>()) << first;
  EXPECT_FALSE(first["holds_store_key"].get<bool>());
  EXPECT_EQ(first["store_keys"].size(), 1u) << first;
  EXPECT_GT(during["step"].get<int>(), step_before) << "training went on while the backup was taken";
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  EXPECT_EQ(first_public(backups), "");
  EXPECT_FALSE(fs::exists(backups / "store.store-key"));

  // Backup 2, slow enough to be cut: the coordinator is killed while it copies.
  Process second({bin("custody"), "--coordinator", c.address(), "store", "backup", backups.string(),
                  "--max-mib-per-s", "1"},
                 c.dir() / "backup-2.log");
  // BackupEngine copies a backup's own files into private/2 and lists it (meta/2) last.
  ASSERT_TRUE(wait_until([&] { return fs::exists(backups / "private" / "2"); }, 30s))
      << "backup 2 never started: " << read_file(c.dir() / "backup-2.log");
  std::this_thread::sleep_for(500ms);  // some of its bytes copied, not all
  ASSERT_FALSE(fs::exists(backups / "meta" / "2")) << "backup 2 completed before the kill";
  // The coordinator serves while it copies.
  std::string row;
  for (int f = 0; f < 256; ++f) row += (f ? "," : "") + std::to_string(f % 5);
  const fs::path rows = c.write_job("rows.csv", row + "\n");
  CliResult predicted = c.cli({"predict", "wide", "--input", rows.string(), "--as", "dave"});
  EXPECT_EQ(predicted.code, 0) << predicted.err;
  ASSERT_FALSE(fs::exists(backups / "meta" / "2")) << "backup 2 completed before the kill";
  c.coordinator().kill_hard();
  second.stop();

  const json listing = cli_json(c, {"store", "backups", backups.string()});
  ASSERT_EQ(listing["backups"].size(), 1u) << "the cut backup is not listed: " << listing;
  EXPECT_EQ(listing["backups"][0]["backup"], 1);
  EXPECT_GT(listing["unfinished_files"].get<int>(), 0) << listing;

  // The last complete backup restores, and the restored store verifies with the store key
  // (copied from the original store's, since no backup holds it).
  const fs::path restored = c.dir() / "restored";
  CliResult r = c.cli({"store", "restore", backups.string(), "--store", restored.string(), "--store-key",
                       (c.dir() / "store.store-key").string()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("restored backup 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("audit verify: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the sealed ones opened with the store key"), std::string::npos) << r.out;
  EXPECT_EQ(first_public(restored), "");
  CliResult verify = c.cli({"audit", "verify", "--store", restored.string(), "--store-key",
                            (c.dir() / "store.store-key").string()});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
  // Its checkpoints are the ones the job had recorded when backup 1 was taken.
  const json checkpoints = cli_json(c, {"checkpoints", job, "--store", restored.string()});
  EXPECT_GE(checkpoints.size(), 1u);
  EXPECT_LT(checkpoints.size(), cli_json(c, {"checkpoints", job, "--store", c.store().string()}).size());
  // Restoring over it again is refused unless told.
  CliResult again = c.cli({"store", "restore", backups.string(), "--store", restored.string()});
  EXPECT_EQ(again.code, 4) << again.out;
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;

  // The killed coordinator's own store survived it, and backs up again; the next backup
  // clears what the cut one left.
  c.start_coordinator("coordinator-2.log");
  CliResult original = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(original.code, 0) << original.out << original.err;
  const json third = cli_json(c, {"store", "backup", backups.string()});
  EXPECT_EQ(third["backup"], 2) << third;
  const json after = cli_json(c, {"store", "backups", backups.string()});
  EXPECT_EQ(after["backups"].size(), 2u);
  EXPECT_EQ(after["unfinished_files"], 0);
}

TEST(StoreAtRestTest, AnAdminOnlyBackupIsRefusedToOthersAndALocalBackupNeedsNoCoordinator) {
  ClusterOptions o;
  o.servers = 1;
  o.auth = true;
  LocalCluster c("at-rest-auth", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  CliResult bob =
      c.cli({"--token-file", c.admin_token().string(), "principal", "add", "bob", "--role", "submitter"});
  ASSERT_EQ(bob.code, 0) << bob.err;
  std::ofstream(c.dir() / "bob.token") << bob.out;
  CliResult refused =
      c.cli({"--token-file", (c.dir() / "bob.token").string(), "store", "backup", (c.dir() / "b").string()});
  EXPECT_EQ(refused.code, 4) << refused.out;
  EXPECT_NE(refused.err.find("may not send 'storeBackup'"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(c.dir() / "b"));
  CliResult relative = c.cli({"--token-file", c.admin_token().string(), "store", "backup", "b"});
  EXPECT_EQ(relative.code, 0) << relative.err << "a relative DIR is made absolute by the CLI";
  CliResult inside =
      c.cli({"--token-file", c.admin_token().string(), "store", "backup", (c.store() / "b").string()});
  EXPECT_EQ(inside.code, 4);
  EXPECT_NE(inside.err.find("inside the custody store"), std::string::npos) << inside.err;
  CliResult admin =
      c.cli({"--token-file", c.admin_token().string(), "store", "backup", (c.dir() / "b").string()});
  EXPECT_EQ(admin.code, 0) << admin.err;
  c.coordinator().stop();
  // No coordinator: the CLI opens the store itself.
  CliResult local =
      c.cli({"store", "backup", (c.dir() / "b").string(), "--store", c.store().string(), "--json"});
  ASSERT_EQ(local.code, 0) << local.err;
  EXPECT_FALSE(json::parse(local.out)["online"].get<bool>());
  EXPECT_EQ(json::parse(local.out)["backup"], 2);
}

TEST(StoreAtRestTest, ARekeyKilledMidwayLeavesAStoreThatOpensAndVerifiesAndTheNextRekeyFinishesIt) {
  ClusterOptions o;
  o.servers = 1;
  LocalCluster c("at-rest-rekey", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  // A checkpoint every step: a hundred checkpoints to reseal.
  const std::string job = submit(c, "rotated", synthetic_mlp_job("rotated", 2, 1600, "") + "");
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string many =
      submit(c, "many",
             "[job]\nname = \"many\"\nepochs = 2\nbatch_size = 16\nworkers = 2\ncheckpoint_every_steps = 1\n"
             "[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n[optimizer]\ntype = "
             "\"momentum\"\nlearning_rate = 0.1\n"
             "momentum = 0.9\n[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = "
             "1600\ntest_samples = 200\n"
             "features = 32\nclasses = 4\n");
  ASSERT_EQ(c.cli({"wait", many}).code, 0);
  const std::string weights = exported(c, "rotated", "before.f32");
  const fs::path key = c.dir() / "store.store-key";
  fs::copy_file(key, c.dir() / "old.store-key");

  CliResult busy = c.cli({"store", "rekey", "--store", c.store().string()});
  EXPECT_EQ(busy.code, 4);
  EXPECT_NE(busy.err.find("stop it first"), std::string::npos) << busy.err;
  c.coordinator().stop();

  Process rekey({bin("custody"), "store", "rekey", "--store", c.store().string()}, c.dir() / "rekey-1.log");
  ASSERT_TRUE(wait_until(
      [&] { return read_file(c.dir() / "rekey-1.log").find("resealed") != std::string::npos; }, 30s))
      << read_file(c.dir() / "rekey-1.log");
  rekey.kill_hard();
  const std::string cut = read_file(c.dir() / "rekey-1.log");
  ASSERT_EQ(cut.find("done"), std::string::npos) << "the kill landed after the rekey had finished: " << cut;
  EXPECT_NE(read_file(key).find("retiring\":[\""), std::string::npos) << "both keys are kept until the end";

  // The store as the kill left it: it verifies, and the coordinator starts on it and
  // serves the same weights.
  CliResult verify = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
  c.start_coordinator("coordinator-2.log");
  EXPECT_EQ(exported(c, "rotated", "during.f32"), weights);
  EXPECT_NE(read_file(c.dir() / "coordinator-2.log").find("a rekey has not finished"), std::string::npos);
  c.coordinator().stop();

  CliResult finish = c.cli({"store", "rekey", "--store", c.store().string(), "--json"});
  ASSERT_EQ(finish.code, 0) << finish.out << finish.err;
  const json r = json::parse(finish.out);
  EXPECT_TRUE(r["resumed"].get<bool>()) << r;
  EXPECT_GT(r["checkpoints_resealed"].get<int>(), 0) << r;
  EXPECT_LT(r["checkpoints_resealed"].get<int>(), r["checkpoints"].get<int>())
      << "the first run's work was kept";
  EXPECT_NE(read_file(key).find("retiring\":[]"), std::string::npos) << read_file(key).size();
  EXPECT_EQ(mode_of(key), 0600u);
  verify = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
  // The retired key opens nothing any more.
  CliResult old = c.cli({"audit", "verify", "--store", c.store().string(), "--store-key",
                         (c.dir() / "old.store-key").string()});
  EXPECT_EQ(old.code, 5) << old.out;
  EXPECT_NE(old.out.find("does not hold"), std::string::npos) << old.out;
  c.start_coordinator("coordinator-3.log");
  EXPECT_EQ(exported(c, "rotated", "after.f32"), weights);
}

}  // namespace
}  // namespace custody::testing
