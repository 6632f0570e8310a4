#include "storage/custody_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/hash.h"
#include "core/hex.h"
#include "storage/queries.h"
#include "tests/raw_store.h"
#include "tests/test_dir.h"

namespace custody::storage {
namespace {

namespace fs = std::filesystem;

Batch submitted(const std::string& job) {
  Batch b("job submitted");
  b.entity("principal", "principal:alice", {{"name", "alice"}});
  b.entity("dataset", "dataset:abc", {{"sha256", "abc"}, {"license", "MIT"}});
  b.entity("run", job, {{"name", "j"}, {"submitter", "alice"}, {"submitted_at_ms", 1}});
  b.relation("submitted_by", job, "principal:alice");
  b.relation("consumed", job, "dataset:abc");
  return b;
}

Batch checkpointed(const std::string& job, const std::string& id, const std::string& bytes) {
  Batch b("checkpoint");
  const std::string sha = sha256_hex(bytes);
  b.blob(sha, bytes);
  const json manifest{{"id", id},
                      {"job", job},
                      {"step", 10},
                      {"parent", ""},
                      {"layer_sizes", json::array()},
                      {"tensors", json::array({json{{"name", "w"}, {"sha256", sha}, {"shape", {7}}}})},
                      {"root_hash", sha256_hex("w:" + sha + "\n")}};
  b.checkpoint(manifest);
  b.entity("checkpoint", id,
           {{"job", job}, {"step", 10}, {"epoch", 1}, {"final", false}, {"root_hash", manifest["root_hash"]},
            {"manifest_sha256", sha256_hex(manifest.dump())}});
  b.relation("produced", job, id);
  b.relation("contributed", "node:worker-1", id, {{"steps", 5}, {"samples", 80}, {"update_norm_sum", 1.5}});
  return b;
}

class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { reopen(); }
  std::string dir_str() { return dir_.string(); }
  // RocksDB: close and open the files again. Memory: the same store (nothing to reopen).
  void reopen() {
    if (GetParam()) {
      store_.reset();
      auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
      ASSERT_TRUE(s.is_ok()) << s.status().to_string();
      store_ = std::move(s).value();
    } else if (!store_) {
      store_ = CustodyStore::in_memory();
    }
  }
  custody::testing::TestDir dir_{"custody-store-test"};
  std::unique_ptr<CustodyStore> store_;
};

TEST_P(StoreTest, EntitiesAreWrittenOnceAndFoundById) {
  ASSERT_TRUE(store_->write(submitted("job-1")).is_ok());
  ASSERT_TRUE(store_->write(submitted("job-2")).is_ok());
  auto alice = store_->entity("principal:alice");
  ASSERT_TRUE(alice.is_ok() && alice.value());
  EXPECT_EQ(alice.value()->body["name"], "alice");
  auto principals = store_->find({{"type", "entity"}, {"kind", "principal"}});
  EXPECT_EQ(principals->size(), 1u) << "the second submit must not record alice again";
  EXPECT_FALSE(store_->entity("principal:bob").value().has_value());
}

TEST_P(StoreTest, RelationsAreQueriedInBothDirections) {
  ASSERT_TRUE(store_->write(submitted("job-1")).is_ok());
  ASSERT_TRUE(store_->write(submitted("job-2")).is_ok());
  ASSERT_TRUE(store_->write(checkpointed("job-1", "ckpt-1", "weights")).is_ok());
  auto consumers = store_->relations("dataset:abc", CustodyStore::Direction::kIn, "consumed");
  ASSERT_TRUE(consumers.is_ok());
  ASSERT_EQ(consumers->size(), 2u);
  EXPECT_EQ((*consumers)[0].body["from"], "job-1");
  EXPECT_EQ((*consumers)[1].body["from"], "job-2");
  auto out = store_->relations("job-1", CustodyStore::Direction::kOut);
  ASSERT_EQ(out->size(), 3u);  // submitted_by, consumed, produced
  auto produced = store_->relations("job-1", CustodyStore::Direction::kOut, "produced");
  ASSERT_EQ(produced->size(), 1u);
  EXPECT_EQ((*produced)[0].body["to"], "ckpt-1");
  auto contributors = store_->relations("ckpt-1", CustodyStore::Direction::kIn, "contributed");
  ASSERT_EQ(contributors->size(), 1u);
  EXPECT_EQ((*contributors)[0].body["steps"], 5);
}

TEST_P(StoreTest, ReopenKeepsEverything) {
  ASSERT_TRUE(store_->write(submitted("job-1")).is_ok());
  ASSERT_TRUE(store_->write(checkpointed("job-1", "ckpt-1", "weights")).is_ok());
  reopen();
  EXPECT_TRUE(store_->entity("job-1").value().has_value());
  auto ckpts = store_->checkpoints_of("job-1");
  ASSERT_EQ(ckpts->size(), 1u);
  EXPECT_EQ((*ckpts)[0]["id"], "ckpt-1");
  auto blob = store_->blob(sha256_hex(std::string("weights")));
  ASSERT_TRUE(blob.is_ok() && blob.value());
  EXPECT_EQ(*blob.value(), "weights");
  // And appending continues the same chains.
  ASSERT_TRUE(store_->write(submitted("job-2")).is_ok());
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_GT(report->records_checked, 10u);
  EXPECT_EQ(report->blobs_checked, 1u);
}

TEST_P(StoreTest, UsageRecordsAreFoundByTarget) {
  Batch b("export");
  b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "export"}});
  ASSERT_TRUE(store_->write(b).is_ok());
  auto uses = store_->usage_of("ckpt-1");
  ASSERT_EQ(uses->size(), 1u);
  EXPECT_EQ((*uses)[0].body["principal"], "principal:bob");
  EXPECT_TRUE(store_->usage_of("ckpt-2")->empty());
}

// The writer keeps each log's head and Merkle frontier between writes: what it writes
// must be what a fresh reading of the store gives.
TEST_P(StoreTest, ManyWritesThroughOneStoreVerifyAndShowTheirNewestRecordsFirst) {
  for (int i = 0; i < 40; ++i) {
    Batch b("predict");
    b.usage({{"target", "ckpt-1"}, {"principal", i % 2 ? "principal:bob" : "principal:carol"}, {"action", "predict"},
             {"call_id", "call-" + std::to_string(i)}});
    std::vector<Inclusion> inc;
    ASSERT_TRUE(store_->write(b, &inc).is_ok());
    ASSERT_EQ(inc.size(), 1u);
    EXPECT_EQ(inc[0].tree_size, uint64_t(i + 1));
    EXPECT_EQ(to_hex(inc[0].root), store_->tree_head("usage")->root_hex);
  }
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << report->problem;
  std::vector<uint64_t> newest;
  ASSERT_TRUE(store_->visit_usage_of("ckpt-1", 0, true, [&](const Record& r) {
    newest.push_back(r.seq);
    return newest.size() < 3;
  }).is_ok());
  EXPECT_EQ(newest, (std::vector<uint64_t>{40, 39, 38}));
  auto sums = store_->usage_sums("ckpt-1");
  ASSERT_EQ(sums->size(), 2u);
  EXPECT_EQ((*sums)[0].calls + (*sums)[1].calls, 40u);
  EXPECT_EQ(store_->first_usage_at(0).value(), 1u);
  EXPECT_EQ(store_->first_usage_at(INT64_MAX).value(), 41u);
}

// Deferred writes (the serving actor's pipelined group commit): each is readable when
// write_deferred returns, the tickets are waited on from several threads at once and in
// any order, and the store read again afterwards holds every record in order and verifies.
TEST_P(StoreTest, DeferredWritesWaitedOnFromSeveralThreadsAllLandInOrderAndVerify) {
  constexpr int kWrites = 64;
  std::vector<std::shared_ptr<PendingWrite>> tickets;
  for (int i = 0; i < kWrites; ++i) {
    Batch b("predict");
    b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "predict"},
             {"call_id", "call-" + std::to_string(i)}});
    std::vector<Inclusion> inc;
    auto ticket = store_->write_deferred(b, &inc);
    ASSERT_TRUE(ticket.is_ok()) << ticket.status().to_string();
    ASSERT_EQ(inc.size(), 1u);
    EXPECT_EQ(inc[0].tree_size, uint64_t(i + 1)) << "the next write chains on this one before its sync";
    EXPECT_TRUE(store_->call("call-" + std::to_string(i)).value().has_value()) << "readable at once";
    tickets.push_back(std::move(ticket).value());
  }
  std::vector<std::thread> waiters;
  std::atomic<int> failed{0};
  for (int t = 0; t < 4; ++t) {
    waiters.emplace_back([&, t] {
      for (int i = kWrites - 1 - t; i >= 0; i -= 4) failed += !tickets[i]->wait().is_ok();  // newest first
    });
  }
  for (auto& w : waiters) w.join();
  EXPECT_EQ(failed.load(), 0);
  tickets.clear();
  reopen();
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(store_->tree_head("usage")->size, uint64_t(kWrites));
  ASSERT_TRUE(store_->write(submitted("job-1")).is_ok()) << "synced writes go on after deferred ones";
}

// log_size (serving's per-call check that the lineage has not grown) answers from memory,
// and is never older than the store: read while another thread writes, each answer lies
// between the sizes before and after, and once the writes are done every reader sees the
// last size, equal to the tree head's.
TEST_P(StoreTest, LogSizeReadWhileAnotherThreadWritesIsNeverOlderThanTheStore) {
  ASSERT_EQ(store_->log_size("lineage").value(), 0u);
  constexpr int kWrites = 40;
  std::atomic<bool> done{false};
  std::atomic<int> went_back{0};
  std::thread reader([&] {
    uint64_t last = 0;
    while (!done.load()) {
      auto size = store_->log_size("lineage");
      ASSERT_TRUE(size.is_ok()) << size.status().to_string();
      went_back += size.value() < last;
      last = size.value();
    }
  });
  for (int i = 0; i < kWrites; ++i) ASSERT_TRUE(store_->write(submitted("job-" + std::to_string(i))).is_ok());
  done = true;
  reader.join();
  EXPECT_EQ(went_back.load(), 0) << "a size read after a larger one was smaller";
  const uint64_t head = store_->tree_head("lineage")->size;
  EXPECT_GT(head, uint64_t(kWrites));
  EXPECT_EQ(store_->log_size("lineage").value(), head);
  reopen();  // read from the store, then kept
  EXPECT_EQ(store_->log_size("lineage").value(), head);
  ASSERT_TRUE(store_->write(submitted("job-last")).is_ok());
  EXPECT_EQ(store_->log_size("lineage").value(), store_->tree_head("lineage")->size);
}

// A usage record serialized ahead of its write (serialize_usage: the serving actor's, while
// a group fills) is stored as the same bytes, with the same chained hash, as one the writer
// serializes.
TEST(SerializedUsageTest, APreSerializedUsageRecordIsStoredAsTheSameBytesAndHash) {
  ManualClock clock;
  auto plain = CustodyStore::in_memory(clock), serialized = CustodyStore::in_memory(clock);
  const json body{{"call_id", "call-1"}, {"action", "predict"}, {"target", "ckpt-1"}, {"principal", "principal:bob"},
                  {"rows", 1}, {"prediction_ids", {"pred-1-0"}},
                  {"predictions", {{{"id", "pred-1-0"}, {"class", 2}, {"probability", 0.125}}}}};
  Batch a("predict"), b("predict");
  a.usage(body);
  b.usage(serialize_usage(body));
  ASSERT_TRUE(plain->write(a).is_ok());
  ASSERT_TRUE(serialized->write(b).is_ok());
  const Record x = plain->log_record("usage", 1).value(), y = serialized->log_record("usage", 1).value();
  EXPECT_EQ(x.hash, y.hash);
  EXPECT_EQ(x.body, y.body);
  EXPECT_EQ(plain->tree_head("usage")->root_hex, serialized->tree_head("usage")->root_hex);
  EXPECT_TRUE(serialized->verify()->ok);
}

TEST_P(StoreTest, EveryWriteLeavesOneAuditRecordNamingItsRecords) {
  ASSERT_TRUE(store_->write(submitted("job-1")).is_ok());
  auto audit = store_->log("audit");
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].body["event"], "job submitted");
  EXPECT_EQ((*audit)[0].body["lineage"], json::array({1, 5}));
}

INSTANTIATE_TEST_SUITE_P(MemoryAndRocksDb, StoreTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "RocksDb" : "Memory"; });

// --- Tampering, found by verify() ------------------------------------------------------

class TamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    ASSERT_TRUE(s.is_ok());
    ASSERT_TRUE(s.value()->write(submitted("job-1")).is_ok());
    ASSERT_TRUE(s.value()->write(checkpointed("job-1", "ckpt-1", "weights")).is_ok());
    ASSERT_TRUE(s.value()->verify()->ok);
  }
  // Edits the RocksDB files directly, as an intruder with file access would.
  void raw_put(const std::string& family, const std::string& key, const std::string* value) {
    custody::testing::RawStore db(dir_.string());
    if (value) {
      db.put(family, key, *value);
    } else {
      db.erase(family, key);
    }
  }
  std::string raw_get(const std::string& family, const std::string& key) {
    return custody::testing::RawStore(dir_.string()).get(family, key);
  }
  VerifyReport verify() {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    return s.value()->verify().value();
  }
  // Whether verify() finds the change and its problem names every one of `parts`.
  ::testing::AssertionResult verify_names(std::initializer_list<std::string> parts) {
    const VerifyReport r = verify();
    if (r.ok) return ::testing::AssertionFailure() << "verify() said ok";
    for (const auto& part : parts) {
      if (r.problem.find(part) == std::string::npos) {
        return ::testing::AssertionFailure() << "the problem does not name '" << part << "': " << r.problem;
      }
    }
    return ::testing::AssertionSuccess();
  }
  custody::testing::TestDir dir_{"custody-tamper-test"};
};

TEST_F(TamperTest, AnEditedLineageRecordIsNamed) {
  std::string v = raw_get("lineage", seq_key(2));
  json j = json::parse(v);
  j["body"]["license"] = "proprietary";  // record 2 is the data set's entity
  std::string edited = j.dump();
  raw_put("lineage", seq_key(2), &edited);
  EXPECT_TRUE(verify_names({"lineage record 2", "dataset:abc", "changed"}));
}

TEST_F(TamperTest, ARemovedRecordIsNamed) {
  raw_put("lineage", seq_key(3), nullptr);
  EXPECT_TRUE(verify_names({"lineage record 3 is missing"}));
}

TEST_F(TamperTest, SwappedRecordsAreFound) {
  std::string a = raw_get("lineage", seq_key(4)), b = raw_get("lineage", seq_key(5));
  raw_put("lineage", seq_key(4), &b);
  raw_put("lineage", seq_key(5), &a);
  EXPECT_TRUE(verify_names({"reordered"}));
}

TEST_F(TamperTest, ARemovedLastRecordIsFoundThroughTheHead) {
  auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
  const uint64_t last = s.value()->log("lineage")->back().seq;
  s.value().reset();
  raw_put("lineage", seq_key(last), nullptr);
  EXPECT_TRUE(verify_names({"removed from its end"}));
}

TEST_F(TamperTest, AnEditedCheckpointTensorIsNamed) {
  const std::string other = "weightz";
  raw_put("checkpoints", "blob/" + sha256_hex(std::string("weights")), &other);
  EXPECT_TRUE(verify_names({"tensor w of checkpoint ckpt-1 was changed"}));
}

// Regression: removing a usage record from the log's end and rewriting the head to match
// passed verify, although the audit record of that write still named it.
TEST_F(TamperTest, AUsageRecordRemovedFromTheEndWithItsHeadRewrittenIsFoundThroughTheAuditLog) {
  {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    for (const char* who : {"principal:bob", "principal:carol"}) {
      Batch b("export");
      b.usage({{"target", "ckpt-1"}, {"principal", who}, {"action", "export"}});
      ASSERT_TRUE(s.value()->write(b).is_ok());
    }
    ASSERT_TRUE(s.value()->verify()->ok);
  }
  json second = json::parse(raw_get("usage", seq_key(2)));
  json first = json::parse(raw_get("usage", seq_key(1)));
  raw_put("usage", seq_key(2), nullptr);
  const std::string head = json{{"seq", 1}, {"hash", first["hash"]}}.dump();
  raw_put("default", "head/usage", &head);
  // A careful intruder rebuilds the log's Merkle tree too.
  MerkleFrontier tree;
  ASSERT_TRUE(tree.append(record_leaf_hash(first["hash"])).is_ok());
  const std::string frontier = tree.serialize();
  raw_put("default", "tree/usage", &frontier);
  EXPECT_TRUE(verify_names({"the audit log says the usage log holds 2 records, but it holds 1"}));
}

// A Merkle frontier cut short behind the store's back (a subtree hash removed): the next
// write, which proves its records from that frontier (receipts), is refused with an error
// naming the frontier instead of proving against a wrong tree or crashing; nothing is
// written, the records before stay readable, and verify() names the change.
TEST_F(TamperTest, AFrontierCutShortIsRefusedByTheNextWriteAndNamedByVerify) {
  auto usage = [](int i) {
    Batch b("predict");
    b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "predict"},
             {"call_id", "call-" + std::to_string(i)}});
    return b;
  };
  {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(s.value()->write(usage(i)).is_ok());
  }
  std::string frontier = raw_get("default", "tree/usage");
  ASSERT_FALSE(frontier.empty());
  const std::string cut = frontier.substr(0, frontier.rfind(' '));  // 3 records: two subtrees, one dropped
  ASSERT_NE(cut, frontier);
  raw_put("default", "tree/usage", &cut);
  {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    std::vector<Inclusion> proofs;
    Status refused = s.value()->write(usage(3), &proofs);
    EXPECT_EQ(refused.code(), ErrorCode::kDataLoss) << refused.to_string();
    EXPECT_NE(refused.message().find("a stored Merkle frontier of size 3 has 1 subtree hashes, not 2"),
              std::string::npos)
        << refused.to_string();
    EXPECT_TRUE(proofs.empty());
    EXPECT_EQ(s.value()->usage_of("ckpt-1")->size(), 3u) << "the records before are all still there";
  }
  EXPECT_TRUE(verify_names({"the Merkle tree of the usage log does not match its records", "it was changed"}));
}

// Regression: re-pointing an index entry made `lineage show` answer with another record,
// and verify said ok.
TEST_F(TamperTest, ARepointedIndexEntryIsNamedAndAnswersNothingWrong) {
  const std::string other = raw_get("index", "entity/job-1");
  raw_put("index", "entity/ckpt-1", &other);
  EXPECT_TRUE(verify_names({"index entry entity/ckpt-1", "re-pointed"}));
  auto s = CustodyStore::open(dir_.string(), OpenMode::kReadShadow);
  auto e = s.value()->entity("ckpt-1");
  EXPECT_EQ(e.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(e.status().message().find("not that entity"), std::string::npos) << e.status().message();
}

// Regression: a manifest's parent or step could be changed and verify said ok.
TEST_F(TamperTest, AChangedCheckpointManifestIsNamed) {
  json m = json::parse(raw_get("checkpoints", "manifest/ckpt-1"));
  m["parent"] = "ckpt-0";
  const std::string edited = m.dump();
  raw_put("checkpoints", "manifest/ckpt-1", &edited);
  EXPECT_TRUE(verify_names({"the manifest of checkpoint ckpt-1 was changed"}));
}

// The usage sums are derived entries like the index: verify rebuilds and compares them.
TEST_F(TamperTest, AChangedUsageSumIsNamed) {
  {
    auto s = CustodyStore::open(dir_.string(), OpenMode::kReadWrite);
    for (int i = 0; i < 3; ++i) {
      Batch b("predict");
      b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "predict"}, {"rows", 4}});
      ASSERT_TRUE(s.value()->write(b).is_ok());
    }
    auto sums = s.value()->usage_sums("ckpt-1");
    ASSERT_TRUE(sums.is_ok());
    ASSERT_EQ(sums->size(), 1u);
    EXPECT_EQ((*sums)[0].calls, 3u);
    EXPECT_EQ((*sums)[0].rows, 12u);
    ASSERT_TRUE(s.value()->verify()->ok);
  }
  const std::string key = "usage-sum/ckpt-1|principal:bob|predict";
  json sum = json::parse(raw_get("index", key));
  sum["calls"] = 1;  // hide two calls from `custody usage`
  const std::string edited = sum.dump();
  raw_put("index", key, &edited);
  EXPECT_TRUE(verify_names({"index entry " + key, "it was changed"}));
}

// Verify holds no map of the index: an entry nothing implies is found by counting and
// then named; a removed one is named as the record that implies it is read.
TEST_F(TamperTest, AnAddedIndexEntryIsNamed) {
  const std::string seq = seq_key(1);
  raw_put("index", "prediction/pred-forged-0", &seq);
  EXPECT_TRUE(verify_names({"index entry prediction/pred-forged-0 is backed by no record"}));
}

TEST_F(TamperTest, ARemovedIndexEntryIsNamed) {
  raw_put("index", "entity/dataset:abc", nullptr);
  EXPECT_TRUE(verify_names({"index entry entity/dataset:abc is missing"}));
}

TEST_F(TamperTest, AnAddedMerkleSubtreeEntryIsNamed) {
  const std::string hex(64, 'a');
  raw_put("default", "tree-node/usage/04/00000000000000000000", &hex);
  EXPECT_TRUE(
      verify_names({"Merkle tree entry tree-node/usage/04/00000000000000000000 is backed by no records"}));
}

// `custody usage` on a large store: the summary covers every call (from the usage sums),
// the list only the newest --limit, and a time range reads only the records in it.
// A deferred write whose sync fails (a disk error, here from a key-value layer that
// reports one) stops the store: whether that write and the ones after it reached the disk
// is unknown, so every later write is refused, naming the failure and what to do.
TEST(DeferredWriteTest, AFailedSyncStopsEveryLaterWriteWithAnErrorNamingIt) {
  class FailingSync final : public PendingWrite {
   public:
    Status wait() override { return unavailable("fdatasync: Input/output error"); }
  };
  class DiskThatFailsToSync final : public KeyValue {
   public:
    DiskThatFailsToSync() : inner_(make_memory_key_value()) {}
    Status apply(const std::vector<Put>& puts) override { return inner_->apply(puts); }
    Result<std::shared_ptr<PendingWrite>> apply_deferred(const std::vector<Put>& puts) override {
      CUSTODY_RETURN_IF_ERROR(inner_->apply(puts));
      return std::shared_ptr<PendingWrite>(std::make_shared<FailingSync>());
    }
    Result<std::optional<std::string>> get(const std::string& family, const std::string& key) const override {
      return inner_->get(family, key);
    }
    Status scan(const std::string& family, const std::string& prefix,
                const std::function<bool(const std::string&, const std::string&)>& visit) const override {
      return inner_->scan(family, prefix, visit);
    }
    Status scan_from(const std::string& family, const std::string& prefix, const std::string& from, bool newest_first,
                     const std::function<bool(const std::string&, const std::string&)>& visit) const override {
      return inner_->scan_from(family, prefix, from, newest_first, visit);
    }

   private:
    std::unique_ptr<KeyValue> inner_;
  };
  CustodyStore store(std::make_unique<DiskThatFailsToSync>());
  ASSERT_TRUE(store.write(submitted("job-1")).is_ok());
  Batch b("predict");
  b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "predict"}, {"call_id", "call-1"}});
  auto ticket = store.write_deferred(b, nullptr);
  ASSERT_TRUE(ticket.is_ok());
  auto second = store.write_deferred(b, nullptr);  // chained on the first before its sync
  ASSERT_TRUE(second.is_ok());
  const Status synced = ticket.value()->wait();
  EXPECT_EQ(synced.code(), ErrorCode::kUnavailable);
  const Status later = store.write(submitted("job-2"));
  EXPECT_FALSE(later.is_ok());
  EXPECT_NE(later.message().find("Input/output error"), std::string::npos) << later.message();
  EXPECT_NE(later.message().find("custody audit verify"), std::string::npos) << later.message();
  EXPECT_FALSE(store.write_deferred(b, nullptr).is_ok());
}

// The writer builds each stored record around its body's one serialization; what it
// builds must be the record's JSON byte for byte (readers, verify and `ldb` see JSON), and
// hash like the body serialized again, whatever the body holds.
TEST(StoredRecordTest, TheRecordBuiltAroundTheBodyIsItsJsonByteForByte) {
  const std::vector<json> bodies{
      json::object(),
      {{"target", "ckpt-\"quoted\"\\back"}, {"principal", "principal:zo\u00eb"}, {"rows", 3}},
      {{"predictions", json::array({{{"id", "pred-1-0"}, {"class", 7}, {"probability", 0.93125f}}})},
       {"nested", {{"a", json::array({1, 2.5, nullptr, true})}}},
       {"control", std::string("tab\there\nnewline\x01")}}};
  const std::vector<std::string> prevs{"", std::string(64, 'f'), "not \"hex\""};
  for (const json& body : bodies) {
    for (const std::string& prev : prevs) {
      const std::string hash = record_hash("usage", 42, prev, 1700000000123, body);
      EXPECT_EQ(hash, record_hash_of_text("usage", 42, prev, 1700000000123, body.dump()));
      const json stored{{"seq", 42}, {"prev", prev}, {"hash", hash}, {"time_ms", 1700000000123}, {"body", body}};
      EXPECT_EQ(stored_record_text(42, prev, hash, 1700000000123, body.dump()), stored.dump()) << body.dump();
    }
  }
}

// The writer keeps the usage sums parsed between writes: through synced and deferred
// writes, several targets and principals, and a store opened again (the sums then read
// from the store), they stay what the log sums to.
TEST(UsageSumTest, SumsKeptBetweenWritesStayWhatTheLogSumsTo) {
  custody::testing::TestDir dir("custody-usage-sums");
  for (int opening = 0; opening < 2; ++opening) {
    auto s = CustodyStore::open(dir.path().string(), OpenMode::kReadWrite);
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    for (int i = 0; i < 12; ++i) {
      Batch b("predict");
      for (int k = 0; k <= i % 3; ++k) {
        b.usage({{"target", i % 2 ? "ckpt-1" : "ckpt-2"},
                 {"principal", k == 1 ? "principal:carol" : "principal:bob"},
                 {"action", "predict"},
                 {"rows", k + 1}});
      }
      if (i % 4 == 3) {
        auto ticket = s.value()->write_deferred(b, nullptr);
        ASSERT_TRUE(ticket.is_ok());
        ASSERT_TRUE(ticket.value()->wait().is_ok());
      } else {
        ASSERT_TRUE(s.value()->write(b).is_ok());
      }
    }
    // Per opening: writes i = 0..11 with i % 3 + 1 records each (k = 0, 1, 2; bob for k 0
    // and 2, carol for k 1; rows k + 1); odd i to ckpt-1.
    auto sums = s.value()->usage_sums("ckpt-1");
    ASSERT_TRUE(sums.is_ok());
    uint64_t bob_calls = 0, bob_rows = 0, carol_calls = 0;
    for (const auto& sum : *sums) {
      if (sum.principal == "principal:bob") bob_calls = sum.calls, bob_rows = sum.rows;
      if (sum.principal == "principal:carol") carol_calls = sum.calls;
    }
    // Odd i: 1, 3, 5, 7, 9, 11 -> i % 3 = 1, 0, 2, 1, 0, 2 -> records k 0..1, 0, 0..2, ...
    const uint64_t openings = static_cast<uint64_t>(opening) + 1;
    EXPECT_EQ(bob_calls, 8 * openings);   // k = 0 six times, k = 2 twice
    EXPECT_EQ(bob_rows, 12 * openings);   // 6 x 1 + 2 x 3
    EXPECT_EQ(carol_calls, 4 * openings); // k = 1 when i % 3 >= 1: four of the six
    auto report = s.value()->verify();
    ASSERT_TRUE(report.is_ok());
    EXPECT_TRUE(report->ok) << report->problem;
  }
}

TEST(UsageQueryTest, ListsTheNewestRecordsAndSumsThemAll) {
  auto store = CustodyStore::in_memory();
  ASSERT_TRUE(store->write(submitted("job-1")).is_ok());
  ASSERT_TRUE(store->write(checkpointed("job-1", "ckpt-1", "weights")).is_ok());
  for (int i = 0; i < 5; ++i) {
    Batch b("predict");
    b.usage({{"target", "ckpt-1"}, {"principal", "principal:bob"}, {"action", "predict"}, {"rows", 2}});
    ASSERT_TRUE(store->write(b).is_ok());
  }
  auto u = usage(*store, "ckpt-1", "", 0, 0, 2);
  ASSERT_TRUE(u.is_ok()) << u.status().to_string();
  ASSERT_EQ((*u)["records"].size(), 2u);
  EXPECT_EQ((*u)["records"][0]["seq"], 4);  // the newest two, oldest first
  EXPECT_EQ((*u)["records"][1]["seq"], 5);
  EXPECT_EQ((*u)["records_total"], 5);
  ASSERT_EQ((*u)["summary"].size(), 1u);
  EXPECT_EQ((*u)["summary"][0]["calls"], 5);
  EXPECT_EQ((*u)["summary"][0]["rows"], 10);
  EXPECT_EQ((*u)["by_principal"]["principal:bob"]["calls"], 5);
  auto all = usage(*store, "ckpt-1", "", 0, 0, 0);
  EXPECT_EQ((*all)["records"].size(), 5u);
  auto ranged = usage(*store, "ckpt-1", "", 1, INT64_MAX, 3);
  ASSERT_TRUE(ranged.is_ok());
  EXPECT_EQ((*ranged)["records_total"], 5);
  EXPECT_EQ((*ranged)["records"].size(), 3u);
  EXPECT_EQ((*ranged)["summary"][0]["calls"], 5);
  EXPECT_TRUE(usage(*store, "ckpt-1", "principal:carol").value()["records"].empty());
}

TEST(StoreOpenTest, APathThatIsNotAStoreIsRefusedAndLeftAlone) {
  const fs::path dir = fs::temp_directory_path() / ("custody-notastore-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "thesis.txt") << "precious";
  auto s = CustodyStore::open(dir.string(), OpenMode::kReadWrite);
  EXPECT_EQ(s.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("something other than a custody store"), std::string::npos);
  EXPECT_EQ(std::ifstream(dir / "thesis.txt").rdbuf()->sgetc(), 'p');
  EXPECT_EQ(CustodyStore::open((dir / "thesis.txt").string(), OpenMode::kReadWrite).status().code(),
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(CustodyStore::open((dir / "nothing").string(), OpenMode::kReadShadow).status().code(),
            ErrorCode::kNotFound);
  fs::remove_all(dir);
}

TEST(StoreOpenTest, AShadowReaderSeesTheWritersRecords) {
  const fs::path dir = fs::temp_directory_path() / ("custody-shadow-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto writer = CustodyStore::open(dir.string(), OpenMode::kReadWrite);
  ASSERT_TRUE(writer.is_ok());
  ASSERT_TRUE(writer.value()->write(submitted("job-1")).is_ok());
  auto reader = CustodyStore::open(dir.string(), OpenMode::kReadShadow);
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  EXPECT_TRUE(reader.value()->entity("job-1").value().has_value());
  EXPECT_TRUE(reader.value()->verify()->ok);
  auto second = CustodyStore::open(dir.string(), OpenMode::kReadWrite);
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable) << second.status().to_string();
  reader.value().reset();
  writer.value().reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace custody::storage
