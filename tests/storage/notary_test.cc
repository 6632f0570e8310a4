// The store's logs as Merkle trees, signed heads and receipts, on real RocksDB files:
// what an auditor who kept a head, or a consumer who kept a receipt, can prove.
#include "storage/notary.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/hex.h"
#include "tests/raw_store.h"
#include "tests/test_dir.h"

namespace custody::storage {
namespace {

namespace fs = std::filesystem;

// A fixed key: RFC 8032 section 7.1, TEST 1.
SigningKey test_key() {
  return SigningKey::from_seed_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").value();
}

Batch use(int i) {
  Batch b("predict");
  b.usage({{"call_id", "call-" + std::to_string(i)},
           {"action", "predict"},
           {"target", "ckpt-1"},
           {"principal", "principal:dave"},
           {"rows", 1},
           {"prediction_ids", {"pred-" + std::to_string(i) + "-0"}},
           {"predictions", {{{"id", "pred-" + std::to_string(i) + "-0"}, {"class", i % 3}, {"probability", 0.5}}}}});
  return b;
}

class NotaryTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = CustodyStore::open(dir_.string(), OpenMode::kReadWrite).value(); }
  // Writes n usage records; returns the receipt of the last.
  json write_uses(int n) {
    json receipt;
    for (int i = 0; i < n; ++i) {
      std::vector<Inclusion> inclusion;
      EXPECT_TRUE(store_->write(use(i), &inclusion).is_ok());
      if (inclusion.size() != 1u) ADD_FAILURE() << "one usage record, one inclusion";
      else receipt = make_receipt(inclusion[0], key_, 1700000000000 + i, "call-" + std::to_string(i)).value();
    }
    return receipt;
  }
  // As an intruder with file access: one raw RocksDB put, the store closed meanwhile.
  void raw_put(const std::string& family, const std::string& key, const std::string& value) {
    store_.reset();
    custody::testing::RawStore(dir_.string()).put(family, key, value);
    store_ = CustodyStore::open(dir_.string(), OpenMode::kReadWrite).value();
  }
  SigningKey key_ = test_key();
  custody::testing::TestDir dir_{"custody-notary-test"};
  std::unique_ptr<CustodyStore> store_;
};

// Group commit (actors/serving_actor.h): several calls' usage records in one synced
// write. Each caller still gets a receipt that proves its own record, offline and
// against the store; all of the group's receipts are under one tree head, the tree as the
// write leaves it (one signature for the group). The logs before the groups have sizes
// whose frontiers differ in shape (5: subtrees of 4 and 1; 16: one kept subtree; 29:
// 16, 8, 4 and 1), and groups of 7 and 13 cross a kept subtree's boundary.
TEST_F(NotaryTest, OneWriteOfManyUsageRecordsGivesEveryRecordItsOwnReceipt) {
  for (const auto& [before, size] : std::vector<std::pair<int, int>>{{5, 7}, {16, 1}, {29, 13}}) {
    write_uses(before - static_cast<int>(store_->log_size("usage").value()));
    Batch group("predict");
    for (int i = 0; i < size; ++i) {
      const std::string id = "pred-h" + std::to_string(before) + "-" + std::to_string(i);
      group.usage({{"call_id", "call-h" + std::to_string(before) + "-" + std::to_string(i)}, {"action", "predict"}, {"target", "ckpt-1"},
                   {"principal", "principal:alice"}, {"rows", 1}, {"prediction_ids", {id}},
                   {"predictions", {{{"id", id}, {"class", i % 3}, {"probability", 0.5}}}}});
    }
    std::vector<Inclusion> proved;
    ASSERT_TRUE(store_->write(group, &proved).is_ok());
    ASSERT_EQ(proved.size(), size_t(size));
    const json head = signed_head_of(proved[0], key_, 1700000001000).value();
    for (int i = 0; i < size; ++i) {
      EXPECT_EQ(proved[i].seq, uint64_t(before + 1 + i));
      EXPECT_EQ(proved[i].tree_size, uint64_t(before + size)) << "the tree as the write leaves it";
      const json receipt = make_receipt(proved[i], head, key_.public_key_hex(), "call-h" + std::to_string(before) + "-" + std::to_string(i));
      EXPECT_EQ(receipt_text(proved[i], head.dump(), key_.public_key_hex(), receipt["id"]), receipt.dump())
          << "the serving path's receipt, spliced from stored text, is the same bytes";
      auto facts = check_receipt(receipt, key_.public_key_hex());
      ASSERT_TRUE(facts.is_ok()) << before << " + " << i << ": " << facts.status().to_string();
      EXPECT_TRUE(check_receipt_in_store(receipt, *store_).is_ok()) << before << " + " << i;
      EXPECT_EQ(facts->body["call_id"], "call-h" + std::to_string(before) + "-" + std::to_string(i));
      EXPECT_EQ(proved[i].proof, store_->inclusion_proof("usage", proved[i].seq, before + size).value())
          << "the same audit path as the store's own";
    }
    if (size < 2) continue;
    // A receipt moved onto another call's record of the same group does not check.
    json swapped = make_receipt(proved[0], head, key_.public_key_hex(), "call-0");
    swapped["record"] = make_receipt(proved[1], head, key_.public_key_hex(), "call-1")["record"];
    EXPECT_FALSE(check_receipt(swapped, key_.public_key_hex()).is_ok());
  }
}

TEST_F(NotaryTest, EachLogIsAnRfc6962TreeOfItsRecordsAndProvesEveryRecord) {
  write_uses(37);  // not a power of two, and past the kept subtrees of 16
  auto records = store_->log("usage").value();
  ASSERT_EQ(records.size(), 37u);
  std::vector<std::string> leaves;
  for (const auto& r : records) leaves.push_back(record_leaf_hash(r.hash));
  auto head = store_->tree_head("usage");
  ASSERT_TRUE(head.is_ok()) << head.status().to_string();
  EXPECT_EQ(head->size, 37u);
  EXPECT_EQ(head->root_hex, to_hex(merkle_root(leaves)));
  for (uint64_t seq = 1; seq <= 37; ++seq) {
    for (uint64_t size : {seq, uint64_t{37}}) {
      auto proof = store_->inclusion_proof("usage", seq, size);
      ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
      std::vector<std::string> prefix(leaves.begin(), leaves.begin() + static_cast<long>(size));
      EXPECT_TRUE(verify_inclusion(seq - 1, size, leaves[seq - 1], proof.value(), merkle_root(prefix)).is_ok());
    }
    auto consistency = store_->consistency_proof("usage", seq, 37);
    ASSERT_TRUE(consistency.is_ok());
    std::vector<std::string> prefix(leaves.begin(), leaves.begin() + static_cast<long>(seq));
    EXPECT_TRUE(verify_consistency(seq, 37, merkle_root(prefix), merkle_root(leaves), consistency.value()).is_ok());
  }
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << report->problem;
  ASSERT_EQ(report->heads.size(), 3u);
  EXPECT_EQ(report->heads[1].root_hex, head->root_hex);
}

TEST_F(NotaryTest, AReceiptVerifiesOfflineAndOneFlippedBitAnywhereFailsIt) {
  const json receipt = write_uses(21);
  auto facts = check_receipt(receipt, key_.public_key_hex());
  ASSERT_TRUE(facts.is_ok()) << facts.status().to_string();
  EXPECT_EQ(facts->id, "call-20");
  EXPECT_EQ(facts->seq, 21u);
  EXPECT_EQ(facts->tree_size, 21u);
  EXPECT_TRUE(check_receipt(receipt, key_.public_key_pem()).is_ok()) << "the key as PEM too";
  EXPECT_TRUE(check_receipt_in_store(receipt, *store_).is_ok());
  // Another key does not vouch for it.
  auto other = SigningKey::from_seed_hex(std::string(64, '1')).value();
  EXPECT_FALSE(check_receipt(receipt, other.public_key_hex()).is_ok());
  // Every bit of the receipt as it travels.
  const std::string text = receipt.dump();
  size_t flips = 0, parsed = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string changed = text;
      changed[i] = static_cast<char>(changed[i] ^ (1 << bit));
      ++flips;
      json j = json::parse(changed, nullptr, false);
      if (j.is_discarded()) continue;  // not even a receipt any more
      ++parsed;
      EXPECT_FALSE(check_receipt(j, key_.public_key_hex()).is_ok())
          << "byte " << i << " bit " << bit << " of the receipt changed and it still verified: "
          << changed.substr(i > 20 ? i - 20 : 0, 40);
    }
  }
  EXPECT_GT(parsed, flips / 4) << "most flips leave valid JSON: the check must catch them, not the parser";
}

TEST_F(NotaryTest, AReceiptFailsAgainstAStoreWhoseRecordWasChangedBehindIt) {
  const json receipt = write_uses(5);
  auto records = store_->log("usage").value();
  json stored = records[4].to_json();
  stored.erase("log");
  stored["body"]["purpose"] = "rewritten";
  stored["hash"] = record_hash("usage", 5, stored["prev"], stored["time_ms"], stored["body"]);
  raw_put("usage", seq_key(5), stored.dump());
  EXPECT_TRUE(check_receipt(receipt, key_.public_key_hex()).is_ok()) << "the receipt itself is intact";
  Status s = check_receipt_in_store(receipt, *store_);
  EXPECT_EQ(s.code(), ErrorCode::kDataLoss) << s.to_string();
  EXPECT_NE(s.message().find("usage record 5 is not the one the receipt holds"), std::string::npos) << s.message();
}

// The attack a hash chain alone cannot see: a record rewritten with every later hash, the
// head, the Merkle tree and the audit log recomputed. Only a head kept outside the store
// shows it.
TEST_F(NotaryTest, AKeptHeadFindsARewriteWhoseHashesWereAllRecomputed) {
  write_uses(10);
  const json kept = signed_heads(*store_, key_, 1700000000000).value();
  write_uses(3);  // the log grows after the head was kept: still consistent
  auto ok = check_kept_heads(kept.dump() + "\n", "", *store_);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->size(), 3u);

  // Rebuild the whole store from a rewritten history, as a writer of its files could.
  std::vector<json> bodies;
  const std::vector<Record> history = store_->log("usage").value();
  for (const auto& r : history) bodies.push_back(r.body);
  bodies[3]["principal"] = "principal:mallory";
  store_.reset();
  fs::remove_all(dir_.path());
  store_ = CustodyStore::open(dir_.string(), OpenMode::kReadWrite).value();
  for (const auto& body : bodies) {
    Batch b("predict");
    b.usage(body);
    Status written = store_->write(b);
    ASSERT_TRUE(written.is_ok()) << written.to_string();
  }
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << "every hash inside the store agrees with the rewrite: " << report->problem;
  auto found = check_kept_heads(kept.dump() + "\n", "", *store_);
  ASSERT_FALSE(found.is_ok());
  EXPECT_EQ(found.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(found.status().message().find("does not extend the usage log's head of 10 records"), std::string::npos)
      << found.status().message();
}

TEST_F(NotaryTest, AKeptHeadFindsATruncatedLogAndAForgedHeadIsRefused) {
  write_uses(6);
  json kept = signed_heads(*store_, key_, 1700000000000).value();
  // A forged head (another key) does not count, whatever it says.
  auto forged = check_kept_heads(kept.dump() + "\n", SigningKey::from_seed_hex(std::string(64, '2')).value().public_key_hex(),
                                 *store_);
  EXPECT_FALSE(forged.is_ok());
  store_.reset();
  fs::remove_all(dir_.path());
  store_ = CustodyStore::open(dir_.string(), OpenMode::kReadWrite).value();
  write_uses(4);
  auto truncated = check_kept_heads(kept.dump() + "\n", key_.public_key_hex(), *store_);
  ASSERT_FALSE(truncated.is_ok());
  EXPECT_NE(truncated.status().message().find("holds 4 records"), std::string::npos) << truncated.status().message();
}

}  // namespace
}  // namespace custody::storage
