// A real store, written by a real cluster, changed behind the program's back through
// RocksDB itself, one change per copy, as an intruder with the files would: `custody audit
// verify` must exit 5 and name what was changed (with a head kept outside the store where
// nothing inside it can tell), and the untouched copy must verify.
#include <map>
#include <nlohmann/json.hpp>

#include "core/hash.h"
#include "core/hex.h"
#include "core/merkle.h"
#include "tests/integration/cluster.h"
#include "tests/raw_store.h"

namespace custody::testing {
namespace {

using nlohmann::json;

const std::string kJob = synthetic_mlp_job("guarded", 1, 1600);

using Raw = RawStore;

std::string seq_key(uint64_t seq) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%020llu", static_cast<unsigned long long>(seq));
  return buf;
}

// The documented record hash (docs/ARCHITECTURE.md): what an intruder who read the docs
// recomputes.
std::string record_hash(const std::string& log, const json& r) {
  return sha256_hex(log + "\n" + std::to_string(r["seq"].get<uint64_t>()) + "\n" + r["prev"].get<std::string>() +
                    "\n" + std::to_string(r["time_ms"].get<int64_t>()) + "\n" + r["body"].dump());
}

// Rewrites a log's chain from record `from` on, with its head and Merkle tree: every hash
// inside the store agrees with the change afterwards.
void rechain(Raw& db, const std::string& log) {
  std::string prev;
  MerkleFrontier tree;
  uint64_t last = 0;
  for (auto& [key, value] : db.scan(log)) {
    json r = json::parse(value);
    r["prev"] = prev;
    r["hash"] = record_hash(log, r);
    prev = r["hash"];
    last = r["seq"];
    db.put(log, key, r.dump());
    EXPECT_TRUE(tree.append(leaf_hash(prev)).is_ok());
  }
  db.put("default", "head/" + log, json{{"seq", last}, {"hash", prev}}.dump());
  db.put("default", "tree/" + log, tree.serialize());
  if (log != "usage") return;
  // The usage sums (docs/ARCHITECTURE.md) are derived from the usage log: rebuilt too.
  for (auto& [key, value] : db.scan("index", "usage-sum/")) db.erase("index", key);
  std::map<std::string, json> sums;
  for (auto& [key, value] : db.scan("usage")) {
    const json r = json::parse(value);
    const json& b = r["body"];
    json& sum = sums["usage-sum/" + b["target"].get<std::string>() + "|" + b["principal"].get<std::string>() + "|" +
                     b["action"].get<std::string>()];
    const int64_t t = r["time_ms"];
    if (sum.is_null()) sum = {{"principal", b["principal"]}, {"action", b["action"]}, {"calls", 0}, {"rows", 0},
                              {"first_ms", t}, {"last_ms", t}};
    sum["calls"] = sum["calls"].get<int64_t>() + 1;
    sum["rows"] = sum["rows"].get<int64_t>() + b.value("rows", int64_t{1});
    sum["first_ms"] = std::min(sum["first_ms"].get<int64_t>(), t);
    sum["last_ms"] = std::max(sum["last_ms"].get<int64_t>(), t);
  }
  for (auto& [key, sum] : sums) db.put("index", key, sum.dump());
}

struct Case {
  std::string name;
  std::function<void(Raw&)> change;
  std::string expected;  // in verify's output
  bool needs_kept_head = false;
};

TEST(TamperTest, EveryChangeToARealStoreIsNamedByVerifyAndTheUntouchedCopyVerifies) {
  fs::path kept, receipts, public_key, store;
  std::string final_ckpt;
  ClusterOptions o;
  o.servers = 1;
  LocalCluster c("tamper", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  CliResult submitted = c.cli({"submit", c.write_job("guarded.toml", kJob).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  final_ckpt = json::parse(c.cli({"status", job, "--json"}).out)["last_checkpoint"];
  const fs::path rows = c.write_job("rows.csv", synthetic_mlp_row());
  receipts = c.dir() / "receipts.jsonl";
  kept = c.dir() / "kept.jsonl";
  for (int call = 0; call < 3; ++call) {
    ASSERT_EQ(c.cli({"predict", "guarded", "--input", rows.string(), "--as", "dave", "--receipt", receipts.string()})
                  .code,
              0);
    // The auditor keeps the heads after two calls: the third is after them.
    if (call == 1) {
      ASSERT_EQ(c.cli({"audit", "head", "--out", kept.string()}).code, 0);
    }
  }
  public_key = c.dir() / "store.signing-key.pub";
  store = c.store();
  c.coordinator().stop();  // the store's files are closed; copies of them are taken below

  auto verify = [&](const fs::path& copy, bool since) {
    std::vector<std::string> args{"audit", "verify", "--store", copy.string()};
    if (since) args.insert(args.end(), {"--since", kept.string(), "--public-key", public_key.string()});
    return run_cli(c.dir(), args, 60s);
  };
  std::vector<Case> cases{
      {"a lineage field (a checkpoint's step)",
       [&](Raw& db) {
         const std::string seq = db.get("index", "entity/" + final_ckpt);
         json r = json::parse(db.get("lineage", seq));
         r["body"]["step"] = 7;
         db.put("lineage", seq, r.dump());
       },
       "(entity checkpoint " + final_ckpt + ") was changed: its content does not match its hash"},
      {"a usage record (a prediction's class)",
       [&](Raw& db) {
         json r = json::parse(db.get("usage", seq_key(2)));
         r["body"]["predictions"][0]["class"] = (r["body"]["predictions"][0]["class"].get<int>() + 1) % 4;
         db.put("usage", seq_key(2), r.dump());
       },
       "usage record 2 (usage ckpt-"},
      {"a tensor byte",
       [&](Raw& db) {
         auto blobs = db.scan("checkpoints", "blob/");
         std::string bytes = blobs[0].second;
         bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 1);
         db.put("checkpoints", blobs[0].first, bytes);
       },
       "was changed: its bytes do not match their SHA-256"},
      {"a checkpoint manifest (its parent)",
       [&](Raw& db) {
         json m = json::parse(db.get("checkpoints", "manifest/" + final_ckpt));
         m["parent"] = "ckpt-0000000000000000";
         db.put("checkpoints", "manifest/" + final_ckpt, m.dump());
       },
       "the manifest of checkpoint " + final_ckpt + " was changed"},
      {"an index entry (re-pointed)",
       [&](Raw& db) { db.put("index", "entity/" + final_ckpt, db.get("index", "entity/" + job)); },
       "index entry entity/" + final_ckpt + " says"},
      {"the last usage record removed, its head and Merkle tree rewritten",
       [&](Raw& db) {
         db.erase("usage", seq_key(3));
         rechain(db, "usage");
       },
       "the audit log says the usage log holds 3 records, but it holds 2: records were removed from its end"},
      {"two lineage records swapped",
       [&](Raw& db) {
         const std::string a = db.get("lineage", seq_key(4)), b = db.get("lineage", seq_key(5));
         db.put("lineage", seq_key(4), b);
         db.put("lineage", seq_key(5), a);
       },
       "records were reordered"},
      {"a usage record rewritten (the caller) with every later hash, the head and the tree recomputed",
       [&](Raw& db) {
         json r = json::parse(db.get("usage", seq_key(1)));
         r["body"]["principal"] = "principal:mallory";
         db.put("usage", seq_key(1), r.dump());
         rechain(db, "usage");
       },
       "does not extend the usage log's head of 2 records", true},
  };
  // The untouched copy verifies, with and without the kept heads.
  {
    const fs::path copy = c.dir() / "copy-untouched";
    fs::copy(store, copy, fs::copy_options::recursive);
    CliResult r = verify(copy, true);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    std::cerr << "[untouched] custody audit verify --since KEPT: " << r.out;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    const fs::path copy = c.dir() / ("copy-" + std::to_string(i));
    fs::copy(store, copy, fs::copy_options::recursive);
    {
      Raw db(copy.string());
      k.change(db);
    }
    CliResult plain = verify(copy, false);
    CliResult with_head = verify(copy, true);
    const CliResult& r = k.needs_kept_head ? with_head : plain;
    EXPECT_EQ(r.code, 5) << k.name << ": " << r.out << r.err;
    EXPECT_NE(r.out.find(k.expected), std::string::npos) << k.name << ": " << r.out << r.err;
    EXPECT_EQ(with_head.code, 5) << k.name << " (with the kept heads): " << with_head.out;
    if (k.needs_kept_head) {
      EXPECT_EQ(plain.code, 0) << "nothing inside the store can tell: " << plain.out;
    }
    std::cerr << "[" << k.name << "] custody audit verify" << (k.needs_kept_head ? " --since KEPT" : "") << ": "
              << r.out;
  }
  // A receipt of a call whose record was rewritten no longer matches the store behind it.
  const fs::path rewritten = c.dir() / ("copy-" + std::to_string(cases.size() - 1));
  CliResult proved = run_cli(c.dir(),
                             {"audit", "prove", receipts.string(), "--public-key", public_key.string(), "--store",
                              rewritten.string()},
                             60s);
  EXPECT_EQ(proved.code, 5) << proved.out << proved.err;
  EXPECT_NE(proved.out.find("usage record 1 is not the one the receipt holds"), std::string::npos) << proved.out;
  CliResult offline = run_cli(c.dir(), {"audit", "prove", receipts.string(), "--public-key", public_key.string()}, 60s);
  EXPECT_EQ(offline.code, 0) << "the receipts themselves are intact: " << offline.out << offline.err;
}

}  // namespace
}  // namespace custody::testing
