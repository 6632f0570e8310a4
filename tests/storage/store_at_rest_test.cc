// The custody store at rest, on real RocksDB files: private file modes, checkpoint tensors
// sealed under the store key (and bound to their records), key files, key rotation with a
// crash at every step, and backups taken while the store is written, restored and verified.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/hash.h"
#include "storage/checkpoint.h"
#include "storage/custody_store.h"
#include "storage/lineage_vocabulary.h"
#include "storage/store_key.h"
#include "storage/store_rekey.h"
#include "tests/files_at_rest.h"
#include "tests/test_dir.h"

namespace custody::storage {
namespace {

namespace fs = std::filesystem;
using testing::files_hold;
using testing::first_public;
using testing::mode_of;
using testing::TestDir;

const Model kModel({8, 16, 4});

// Weights that look like trained ones (random, so that no compression hides them from a
// search of the files) and differ per seed.
std::vector<float> weights(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// The bytes of 16 floats from the middle of the first tensor: what a thief would search for.
std::string needle(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data() + 40), 16 * sizeof(float));
}

std::unique_ptr<CustodyStore> open_store(const fs::path& path, OpenMode mode = OpenMode::kReadWrite) {
  auto s = CustodyStore::open(path.string(), mode);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

// Checkpoint `step` of job-1 with momentum state, sealed under the store's keys if it has them.
std::string write_checkpoint(CustodyStore& store, uint64_t step, const std::vector<float>& values,
                             const std::vector<float>& velocity) {
  Batch b("checkpoint");
  if (step == 1)
    b.entity(lineage::kind::kRun, "job-1", {{"name", "j"}, {"submitter", "alice"}, {"submitted_at_ms", 1}});
  OptimizerCheckpoint optimizer;
  optimizer.kind = OptimizerConfig::Kind::kMomentum;
  optimizer.state.values = velocity;
  optimizer.state.steps = step;
  CheckpointSpec spec{"job-1", 0, step, 1, step > 1 ? checkpoint_id("job-1", 0, step - 1) : "", false};
  auto id = add_checkpoint(b, kModel, values, spec, &optimizer, store.keys());
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  EXPECT_TRUE(store.write(b).is_ok());
  return id.value();
}

struct Written {
  std::vector<std::string> ids;
  std::vector<std::vector<float>> values, velocities;
};

Written write_checkpoints(CustodyStore& store, int n, uint32_t seed = 1) {
  Written w;
  for (int i = 1; i <= n; ++i) {
    w.values.push_back(weights(kModel.num_parameters(), seed * 100 + i));
    w.velocities.push_back(weights(kModel.num_parameters(), seed * 100 + 50 + i));
    w.ids.push_back(write_checkpoint(store, i, w.values.back(), w.velocities.back()));
  }
  return w;
}

// Every checkpoint loads with its weights and optimizer state bit for bit.
void expect_loads(const CustodyStore& store, const Written& w) {
  for (size_t i = 0; i < w.ids.size(); ++i) {
    json manifest;
    auto values = load_checkpoint(store, w.ids[i], &manifest);
    ASSERT_TRUE(values.is_ok()) << values.status().to_string();
    EXPECT_EQ(std::memcmp(values->data(), w.values[i].data(), w.values[i].size() * sizeof(float)), 0);
    auto optimizer = load_optimizer_state(store, manifest);
    ASSERT_TRUE(optimizer.is_ok() && optimizer.value()) << optimizer.status().to_string();
    EXPECT_EQ((*optimizer)->state.values, w.velocities[i]);
  }
}

VerifyReport verified(const CustodyStore& store) {
  auto r = store.verify();
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->ok) << r->problem;
  return r.value();
}

class AtRestTest : public ::testing::Test {
 protected:
  TestDir dir_{"custody-at-rest"};
  fs::path store_path() const { return dir_ / "store"; }
  std::string key_file() const { return default_store_key_path(store_path().string()); }
};

TEST_F(AtRestTest, ANewStoreIsPrivateWhateverTheUmask) {
  const mode_t old = ::umask(022);
  {
    auto store = open_store(store_path());
    write_checkpoints(*store, 2);
    ASSERT_TRUE(store->compact().is_ok());  // SST files as well as the WAL
  }
  ::umask(old);
  EXPECT_EQ(first_public(store_path()), "");
  EXPECT_TRUE(fs::exists(store_path() / "LOG"));
}

TEST_F(AtRestTest, AStoreWithLooserModesIsTightenedWhenItsWriterOpensItButNotByAReader) {
  { write_checkpoints(*open_store(store_path()), 1); }
  fs::permissions(store_path(), fs::perms(0755));
  for (const auto& e : fs::directory_iterator(store_path())) fs::permissions(e.path(), fs::perms(0644));
  { auto reader = open_store(store_path(), OpenMode::kReadShadow); }
  EXPECT_EQ(mode_of(store_path()), 0755u) << "a reader may be a user the owner let in: it changes nothing";
  { auto writer = open_store(store_path()); }
  EXPECT_EQ(first_public(store_path()), "");
}

TEST_F(AtRestTest, AKeyFileIsCreatedPrivateAndRefusedOnceOthersMayReadIt) {
  const std::string path = (dir_ / "k.store-key").string();
  auto made = StoreKeys::create(path);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  EXPECT_EQ(mode_of(path), 0600u);
  auto again = StoreKeys::load(path);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->current_version(), made->current_version());
  EXPECT_EQ(made->current_version().size(), 16u);
  EXPECT_EQ(StoreKeys::create(path).status().code(), ErrorCode::kFailedPrecondition) << "never replaced";

  fs::permissions(path, fs::perms(0640));
  auto loose = StoreKeys::load(path);
  EXPECT_EQ(loose.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(loose.status().message().find("has mode 0640"), std::string::npos) << loose.status().message();
  EXPECT_NE(loose.status().message().find("chmod 600"), std::string::npos);

  std::ofstream((dir_ / "bad").string()) << "{\"format\":\"custody-store-key-v1\",\"current\":\"12zz\"}";
  fs::permissions(dir_ / "bad", fs::perms(0600));
  auto bad = StoreKeys::load((dir_ / "bad").string());
  EXPECT_EQ(bad.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("is not a store key file"), std::string::npos)
      << bad.status().message();
  EXPECT_EQ(StoreKeys::load((dir_ / "none").string()).status().code(), ErrorCode::kNotFound);
}

TEST_F(AtRestTest, WithoutTheKeyTheStoreFilesDoNotHoldTheWeightsAndWithItTheyLoadBitForBit) {
  Written w;
  {
    auto store = open_store(store_path());
    ASSERT_TRUE(attach_store_keys(*store, key_file()).is_ok());
    w = write_checkpoints(*store, 3);
  }
  for (size_t i = 0; i < w.ids.size(); ++i) {
    EXPECT_FALSE(files_hold(store_path(), needle(w.values[i]))) << "the weights of " << w.ids[i];
    EXPECT_FALSE(files_hold(store_path(), needle(w.velocities[i]))) << "the optimizer state of " << w.ids[i];
  }
  {
    // A copy of the files alone: the manifests and lineage still read, the tensors do not.
    auto thief = open_store(store_path(), OpenMode::kReadShadow);
    ASSERT_TRUE(thief->checkpoint(w.ids[0]).is_ok());
    auto stolen = load_checkpoint(*thief, w.ids[0], nullptr);
    EXPECT_EQ(stolen.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(stolen.status().message().find("no store key was given"), std::string::npos)
        << stolen.status().message();
    thief->set_keys(std::make_shared<const StoreKeys>(StoreKeys::of(AeadKey::random().value())));
    auto wrong = load_checkpoint(*thief, w.ids[0], nullptr);
    EXPECT_EQ(wrong.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(wrong.status().message().find("does not hold"), std::string::npos) << wrong.status().message();
    thief->set_keys(nullptr);
    const VerifyReport r = verified(*thief);
    EXPECT_EQ(r.tensors_sealed_unopened, 3u * 2u * kModel.tensors().size());
    EXPECT_EQ(r.tensors_opened, 0u);
    EXPECT_NE(r.notes.find("checked by their sealed bytes only"), std::string::npos) << r.notes;
  }
  auto reader = open_store(store_path(), OpenMode::kReadShadow);
  auto keys = load_store_keys_if_present(key_file());
  ASSERT_TRUE(keys.is_ok() && keys.value());
  reader->set_keys(keys.value());
  expect_loads(*reader, w);
  const VerifyReport r = verified(*reader);
  EXPECT_EQ(r.tensors_opened, 3u * 2u * kModel.tensors().size());
  EXPECT_EQ(r.tensors_sealed_unopened, 0u);
}

TEST_F(AtRestTest, TheSameSearchFindsTheWeightsOfATensorStoredInClear) {
  // The search above can fail: written without keys, the weights are in the files.
  Written w;
  { w = write_checkpoints(*open_store(store_path()), 1); }
  EXPECT_TRUE(files_hold(store_path(), needle(w.values[0])));
}

TEST_F(AtRestTest, ASealedTensorOpensOnlyAsTheTensorOfTheCheckpointAndKeyItWasSealedFor) {
  auto store = CustodyStore::in_memory();
  store->set_keys(std::make_shared<const StoreKeys>(StoreKeys::of(AeadKey::random().value())));
  const Written w = write_checkpoints(*store, 2);
  const json m1 = store->checkpoint(w.ids[0]).value().value(),
             m2 = store->checkpoint(w.ids[1]).value().value();
  const json& w1 = m1["tensors"][0];
  const std::string sealed = store->blob(tensor_address(w1)).value().value();
  EXPECT_TRUE(open_tensor(store->keys(), w.ids[0], w1, sealed, "W1").is_ok());
  // Another checkpoint's record pointing at this blob (its entry copied over), another
  // tensor's name, another key version: none opens.
  auto moved = open_tensor(store->keys(), w.ids[1], w1, sealed, "W1");
  EXPECT_EQ(moved.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(moved.status().message().find("does not open"), std::string::npos) << moved.status().message();
  json renamed = w1;
  renamed["name"] = m1["tensors"][1]["name"];
  EXPECT_EQ(open_tensor(store->keys(), w.ids[0], renamed, sealed, "b1").status().code(),
            ErrorCode::kDataLoss);
  json other_key = w1;
  other_key["store_key"] = "0123456789abcdef";
  EXPECT_EQ(open_tensor(store->keys(), w.ids[0], other_key, sealed, "W1").status().code(),
            ErrorCode::kFailedPrecondition);
  // A flipped bit of the sealed bytes does not open either.
  std::string flipped = sealed;
  flipped[20] ^= 1;
  auto changed = open_tensor(store->keys(), w.ids[0], w1, flipped, "W1");
  EXPECT_EQ(changed.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(changed.status().message().find("is corrupt"), std::string::npos) << changed.status().message();
  // Sealing draws a fresh nonce: the same weights sealed twice are two different blobs.
  EXPECT_NE(tensor_address(m1["tensors"][0]), tensor_address(m2["tensors"][0]));
}

TEST_F(AtRestTest, AStoreWrittenBeforeEncryptionStillLoadsAndItsRekeySealsItAndRemovesTheClearBytes) {
  Written w;
  { w = write_checkpoints(*open_store(store_path()), 2); }  // no keys: in clear, as before this change
  auto store = open_store(store_path());
  bool created = false;
  ASSERT_TRUE(attach_store_keys(*store, key_file(), &created).is_ok());
  EXPECT_TRUE(created) << "a store without sealed tensors gets its first key";
  expect_loads(*store, w);
  VerifyReport before = verified(*store);
  EXPECT_EQ(before.tensors_in_clear, 2u * 2u * kModel.tensors().size());
  EXPECT_NE(before.notes.find("stored in clear"), std::string::npos);
  const Written after_key = [&] {
    Written more;
    more.values.push_back(weights(kModel.num_parameters(), 999));
    more.velocities.push_back(weights(kModel.num_parameters(), 998));
    more.ids.push_back(write_checkpoint(*store, 3, more.values[0], more.velocities[0]));
    return more;
  }();

  auto r = rekey_store(*store, key_file(), RekeyOptions{"admin", nullptr});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->finished);
  EXPECT_EQ(r->checkpoints_resealed, 3u);
  EXPECT_GE(r->blobs_dropped, 2u * 2u * kModel.tensors().size());
  store.reset();
  EXPECT_FALSE(files_hold(store_path(), needle(w.values[0]))) << "the clear bytes left the files";
  EXPECT_FALSE(files_hold(store_path(), needle(w.velocities[1])));
  auto reader = open_store(store_path(), OpenMode::kReadShadow);
  reader->set_keys(load_store_keys_if_present(key_file()).value());
  expect_loads(*reader, w);
  expect_loads(*reader, after_key);
  const VerifyReport v = verified(*reader);
  EXPECT_EQ(v.tensors_in_clear, 0u);
  EXPECT_EQ(v.tensors_opened, 3u * 2u * kModel.tensors().size());
}

TEST_F(AtRestTest, AWriterWithoutTheKeyFileOrWithAnotherKeyIsRefusedInsteadOfSealingUnderANewKey) {
  std::string version;
  {
    auto store = open_store(store_path());
    auto keys = attach_store_keys(*store, key_file());
    ASSERT_TRUE(keys.is_ok());
    version = keys.value()->current_version();
    write_checkpoints(*store, 1);
  }
  fs::rename(key_file(), dir_ / "elsewhere");
  auto store = open_store(store_path());
  auto missing = attach_store_keys(*store, key_file());
  EXPECT_EQ(missing.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("sealed under store key " + version), std::string::npos)
      << missing.status().message();
  EXPECT_FALSE(fs::exists(key_file())) << "no new key was made";
  ASSERT_TRUE(StoreKeys::create(key_file()).is_ok());
  auto other = attach_store_keys(*store, key_file());
  EXPECT_EQ(other.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("does not hold"), std::string::npos) << other.status().message();
  EXPECT_TRUE(attach_store_keys(*store, (dir_ / "elsewhere").string()).is_ok());
}

TEST_F(AtRestTest, ARekeySealsEverythingUnderANewKeyRecordsItAndTheOldKeyOpensNothing) {
  Written w;
  std::shared_ptr<const StoreKeys> old;
  {
    auto store = open_store(store_path());
    old = attach_store_keys(*store, key_file()).value();
    w = write_checkpoints(*store, 3);
    auto r = rekey_store(*store, key_file(), RekeyOptions{"admin", nullptr});
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->retired, std::vector<std::string>{old->current_version()});
    EXPECT_NE(r->store_key, old->current_version());
    EXPECT_EQ(r->checkpoints_resealed, 3u);
    EXPECT_EQ(r->tensors_resealed, 3u * 2u * kModel.tensors().size());
    EXPECT_EQ(r->blobs_dropped, r->tensors_resealed) << "every old sealed blob, and nothing else";
    auto resealed = store->find({{"type", "event"}, {"event", lineage::event::kCheckpointResealed}});
    EXPECT_EQ(resealed->size(), 3u);
    EXPECT_EQ(store->find({{"type", "event"}, {"event", lineage::event::kStoreRekeyed}})->size(), 1u);
  }
  auto file = StoreKeys::load(key_file());
  ASSERT_TRUE(file.is_ok());
  EXPECT_FALSE(file->rotating()) << "the retired key left the key file";
  auto reader = open_store(store_path(), OpenMode::kReadShadow);
  reader->set_keys(old);
  EXPECT_EQ(load_checkpoint(*reader, w.ids[0], nullptr).status().code(), ErrorCode::kFailedPrecondition);
  reader->set_keys(std::make_shared<const StoreKeys>(std::move(file).value()));
  expect_loads(*reader, w);
  verified(*reader);
  // The store's own record of what is needed now names the new key only.
  EXPECT_EQ(reader->key_versions().value(), reader->keys()->versions());
}

// A crash (here: the rekey stopped where a kill could land) after every step of a rekey:
// the store opens with the key file as it is, verifies, loads bit for bit; a second rekey
// finishes it.
TEST_F(AtRestTest, ARekeyCutShortAfterAnyStepLeavesAStoreThatOpensVerifiesAndFinishesOnTheNextRekey) {
  for (int stop_after = 1;; ++stop_after) {
    SCOPED_TRACE("stopped after step " + std::to_string(stop_after));
    fs::remove_all(store_path());
    fs::remove(key_file());
    Written w;
    bool finished = false;
    {
      auto store = open_store(store_path());
      ASSERT_TRUE(attach_store_keys(*store, key_file()).is_ok());
      w = write_checkpoints(*store, 3);
      int steps = 0;
      auto r = rekey_store(*store, key_file(),
                           RekeyOptions{"admin", [&](const std::string&) { return ++steps < stop_after; }});
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      finished = r->finished;
    }
    {
      // What a coordinator does at start, then what an auditor does.
      auto store = open_store(store_path());
      auto keys = attach_store_keys(*store, key_file());
      ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
      EXPECT_EQ(keys.value()->rotating(), !finished);
      expect_loads(*store, w);
      verified(*store);
      auto r = rekey_store(*store, key_file(), RekeyOptions{"admin", nullptr});
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      EXPECT_EQ(r->resumed, !finished);
      expect_loads(*store, w);
      verified(*store);
    }
    EXPECT_FALSE(StoreKeys::load(key_file())->rotating());
    if (finished) break;  // every step boundary was a stopping point
  }
}

TEST_F(AtRestTest, ABackupTakenWhileTheStoreIsWrittenRestoresToAStoreThatVerifiesAndLoads) {
  auto store = open_store(store_path());
  ASSERT_TRUE(attach_store_keys(*store, key_file()).is_ok());
  Written w = write_checkpoints(*store, 2);
  const fs::path backups = dir_ / "backups";
  // A writer keeps writing (usage records, as serving does) while the backup is taken.
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; !done; ++i) {
      Batch b("prediction");
      b.usage({{"target", w.ids[0]}, {"principal", "principal:dave"}, {"action", "predict"}, {"rows", 1}});
      ASSERT_TRUE(store->write(b).is_ok());
    }
  });
  auto first = store->backup(backups.string());
  auto second = store->backup(backups.string());
  done = true;
  writer.join();
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(second->id, first->id + 1);
  EXPECT_EQ(json::parse(second->metadata)["store_keys"], json(store->key_versions().value()));
  EXPECT_EQ(first_public(backups), "") << "backups are as private as the store";
  EXPECT_FALSE(fs::exists(backups / fs::path(key_file()).filename())) << "the key is never in a backup";
  for (const auto& v : w.values) EXPECT_FALSE(files_hold(backups, needle(v)));

  auto listing = list_backups(backups.string());
  ASSERT_TRUE(listing.is_ok());
  ASSERT_EQ(listing->backups.size(), 2u);
  EXPECT_EQ(listing->unfinished_files, 0u);

  const fs::path restored = dir_ / "restored";
  std::string aside;
  auto r = restore_backup(backups.string(), first->id, restored.string(), false, &aside);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->id, first->id);
  EXPECT_EQ(first_public(restored), "");
  {
    auto copy = open_store(restored, OpenMode::kReadShadow);
    copy->set_keys(store->keys() ? load_store_keys_if_present(key_file()).value() : nullptr);
    expect_loads(*copy, w);
    verified(*copy);
  }
  auto taken = restore_backup(backups.string(), 0, restored.string(), false, &aside);
  EXPECT_EQ(taken.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(taken.status().message().find("--force"), std::string::npos) << taken.status().message();
  auto replaced = restore_backup(backups.string(), 0, restored.string(), true, &aside);
  ASSERT_TRUE(replaced.is_ok()) << replaced.status().to_string();
  EXPECT_EQ(replaced->id, second->id) << "0: the newest";
  EXPECT_TRUE(fs::exists(fs::path(aside) / "CURRENT")) << "the replaced store was moved aside, not deleted";
  auto in_use = restore_backup(backups.string(), 0, store_path().string(), true, &aside);
  EXPECT_EQ(in_use.status().code(), ErrorCode::kUnavailable) << "never over a store that is open";
  EXPECT_EQ(restore_backup(backups.string(), 77, (dir_ / "x").string(), false, &aside).status().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(list_backups((dir_ / "nothing").string()).status().code(), ErrorCode::kNotFound);
}

TEST_F(AtRestTest, ABackupStoppedMidwayIsNeverListedAndTheNextBackupRemovesWhatItLeft) {
  auto store = open_store(store_path());
  ASSERT_TRUE(attach_store_keys(*store, key_file()).is_ok());
  // Enough bytes that a copy at 1 MiB/s takes seconds: a large model's checkpoints.
  const Model big({512, 512, 10});
  for (int i = 1; i <= 4; ++i) {
    Batch b("checkpoint");
    CheckpointSpec spec{"job-2", 0, static_cast<uint64_t>(i), 1, "", false};
    ASSERT_TRUE(
        add_checkpoint(b, big, weights(big.num_parameters(), i), spec, nullptr, store->keys()).is_ok());
    ASSERT_TRUE(store->write(b).is_ok());
  }
  ASSERT_TRUE(store->compact().is_ok());  // table files, which a backup copies at the rate limit
  const fs::path backups = dir_ / "backups";
  ASSERT_TRUE(store->backup(backups.string()).is_ok());
  write_checkpoints(*store, 1, 7);
  ASSERT_TRUE(store->compact().is_ok());

  std::atomic<bool> stop{false};
  BackupOptions slow;
  slow.rate_limit_bytes_per_s = 1 << 20;
  slow.stop = &stop;
  Result<BackupInfo> cut = unavailable("not run");
  std::thread backup([&] { cut = store->backup(backups.string(), slow); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // Meanwhile a second backup into the same directory is refused, not interleaved.
  auto second = store->backup(backups.string());
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.status().message().find("another backup"), std::string::npos) << second.status().message();
  stop = true;
  backup.join();
  EXPECT_EQ(cut.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(cut.status().message().find("was stopped"), std::string::npos) << cut.status().message();

  auto listing = list_backups(backups.string());
  ASSERT_TRUE(listing.is_ok());
  ASSERT_EQ(listing->backups.size(), 1u) << "the cut copy is not a backup";
  // (A stopped backup removes its own partial files; one cut by a kill leaves them, and
  // tests/integration/store_at_rest_test.cc kills the coordinator mid-backup.)
  auto next = store->backup(backups.string());
  ASSERT_TRUE(next.is_ok()) << next.status().to_string();
  listing = list_backups(backups.string());
  EXPECT_EQ(listing->backups.size(), 2u);
  EXPECT_EQ(listing->unfinished_files, 0u);
  std::string aside;
  ASSERT_TRUE(restore_backup(backups.string(), 0, (dir_ / "restored").string(), false, &aside).is_ok());
  auto copy = open_store(dir_ / "restored", OpenMode::kReadShadow);
  copy->set_keys(load_store_keys_if_present(key_file()).value());
  verified(*copy);
}

}  // namespace
}  // namespace custody::storage
