#include "core/merkle.h"

#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <utility>

#include "core/hex.h"

namespace custody {
namespace {

// ---------------------------------------------------------------------------------------
// Published RFC 6962 test vectors, vendored from github.com/transparency-dev/merkle at
// commit 417fb0c314750d94e53942e9f92e79b6d35915db:
//   testonly/constants.go        LeafInputs, NodeHashes, RootHashes
//   testonly/reference_test.go   TestRefInclusionProof, TestRefConsistencyProof
//   testdata/inclusion/*/happy-path.json, testdata/consistency/*/happy-path.json, and
//   testdata/inclusion/{single-entry,additional}, testdata/consistency/additional
// (the JSON files' base64 turned into hex).

const char* const kLeafInputsHex[] = {
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
};

// [level][index]: every complete subtree of the eight-leaf tree.
const std::vector<std::vector<const char*>> kNodeHashes = {
    {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"},
    {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"},
    {"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"},
    {"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"},
};

// [size]: the root of the first `size` leaves.
const char* const kRootHashes[] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct InclusionVector {
  uint64_t index;
  uint64_t size;
  std::vector<const char*> proof;
};

const std::vector<InclusionVector> kInclusionVectors = {
    {0, 1, {}},
    {0, 2, {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"}},
    {1, 2, {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"}},
    {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {0,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

struct ConsistencyVector {
  uint64_t size1;
  uint64_t size2;
  std::vector<const char*> proof;
};

const std::vector<ConsistencyVector> kConsistencyVectors = {
    {1, 1, {}},
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {2,
     5,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     8,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {6,
     7,  // testdata/consistency/4/happy-path.json
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

// testdata/inclusion/{single-entry,additional} and testdata/consistency/additional, with
// their wantErr. Hashes that are not 32 bytes there are spelled "LEN<n>:<hex>"; "" is a
// zero-length value. The single-entry tree's leaf and root are SHA-256("") with the
// leaf prefix, 0d3aed02...
const char* const kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const char* const kRandom = "abacaba000000000000000000000000000000000000000000060061e00123456";
const char* const kSingle = "0d3aed023148ffd2a259fbd0cdc7fb3cf975658760d3775b82af6f90aacc2dfc";
const char* const kDontCare1 = "646f6e277420636172652031";  // "don't care 1", 12 bytes
const char* const kDontCare2 = "646f6e277420636172652032";

struct InclusionProbe {
  const char* desc;
  uint64_t index;
  uint64_t size;
  const char* root;
  const char* leaf;
  bool want_error;
};

const std::vector<InclusionProbe> kInclusionProbes = {
    {"single-entry/empty-leaf", 0, 1, kSingle, "", true},
    {"single-entry/empty-root-and-leaf", 0, 1, "", "", true},
    {"single-entry/empty-root", 0, 1, "", kSingle, true},
    {"single-entry/matching-root-and-leaf", 0, 1, kSingle, kSingle, false},
    {"additional/0/empty-root-and-random-leaf", 0, 0, kEmpty, kRandom, true},
    {"additional/0/empty-root", 0, 0, kEmpty, "", true},
    {"additional/0/random-leaf", 0, 0, "", kRandom, true},
    {"additional/1/empty-root-and-random-leaf", 0, 1, kEmpty, kRandom, true},
    {"additional/1/empty-root", 0, 1, kEmpty, "", true},
    {"additional/1/random-leaf", 0, 1, "", kRandom, true},
    {"additional/2/empty-root-and-random-leaf", 1, 0, kEmpty, kRandom, true},
    {"additional/2/empty-root", 1, 0, kEmpty, "", true},
    {"additional/2/random-leaf", 1, 0, "", kRandom, true},
    {"additional/3/empty-root-and-random-leaf", 2, 1, kEmpty, kRandom, true},
    {"additional/3/empty-root", 2, 1, kEmpty, "", true},
    {"additional/3/random-leaf", 2, 1, "", kRandom, true},
};

struct ConsistencyProbe {
  const char* desc;
  uint64_t size1;
  uint64_t size2;
  const char* root1;
  const char* root2;
  std::vector<const char*> proof;
  bool want_error;
};

// One deliberate difference: "sizes-are-equal-one-and-proof-is-empty" passes there
// (wantErr false) with two equal 12-byte "roots"; here every root must be 32 bytes, so it
// is an error. Its expectation is marked below.
const std::vector<ConsistencyProbe> kConsistencyProbes = {
    {"consistency-check-on-empty-tree-size1-is-zero-is-useless", 0, 1, kEmpty, kEmpty, {kEmpty}, true},
    {"roots-do-not-match-and-sizes-are-zero", 0, 0, kEmpty, kDontCare2, {}, true},
    {"roots-do-not-not-match-and-sizes-are-one", 1, 1, kEmpty, kDontCare2, {}, true},
    {"size1-is-greater-than-size2-again", 2, 1, kDontCare1, kDontCare2, {}, true},
    {"size1-is-greater-than-size2", 1, 0, kDontCare1, kDontCare2, {}, true},
    {"size1-is-zero-and-does-not-equal-size2", 0, 1, kDontCare1, kDontCare2, {}, true},
    {"size1-is-zero-and-size2-is-not-zero", 0, 1, kEmpty, kDontCare2, {}, true},
    {"sizes-are-equal-one-and-proof-is-empty (32-byte roots required here)",
     1,
     1,
     kDontCare2,
     kDontCare2,
     {},
     true},
    {"sizes-are-equal-one-but-roots-are-not", 1, 1, kDontCare1, kDontCare2, {}, true},
    {"sizes-are-equal-zero-and-proof-is-empty", 0, 0, kDontCare1, kDontCare1, {}, true},
    {"sizes-are-equal-zero-but-roots-are-not", 0, 0, kDontCare1, kDontCare2, {}, true},
    {"sizes-do-not-watch-and-proof-is-empty", 1, 2, kDontCare1, kDontCare2, {}, true},
    {"sizes-match-but-proof-is-not-empty-and-sizes-are-one", 1, 1, kEmpty, kEmpty, {kEmpty}, true},
    {"sizes-match-but-proof-is-not-empty-and-sizes-are-zero", 0, 0, kEmpty, kEmpty, {kEmpty}, true},
};

// ---------------------------------------------------------------------------------------

std::string raw(const char* hex) {
  auto r = from_hex(hex);
  EXPECT_TRUE(r.is_ok()) << hex;
  return r.is_ok() ? r.value() : std::string();
}

std::vector<std::string> raw_all(const std::vector<const char*>& hex) {
  std::vector<std::string> out;
  for (const char* h : hex) out.push_back(raw(h));
  return out;
}

std::vector<std::string> published_leaf_hashes() {
  std::vector<std::string> out;
  for (const char* in : kLeafInputsHex) out.push_back(leaf_hash(raw(in)));
  return out;
}

std::string root_of(uint64_t size) { return raw(kRootHashes[size]); }

std::string flip_bit(std::string s, size_t bit) {
  s[bit / 8] = static_cast<char>(s[bit / 8] ^ (1 << (bit % 8)));
  return s;
}

// Leaves that differ from each other: the hash of the index's decimal text.
std::vector<std::string> numbered_leaves(uint64_t count) {
  std::vector<std::string> out;
  for (uint64_t i = 0; i < count; ++i) out.push_back(leaf_hash(std::to_string(i)));
  return out;
}

std::vector<std::string> prefix(const std::vector<std::string>& v, uint64_t size) {
  return std::vector<std::string>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(size));
}

// ---------------------------------------------------------------------------------------
// Published vectors

TEST(MerkleTest, LeafAndNodeHashesReproduceEveryPublishedSubtree) {
  const auto leaves = published_leaf_hashes();
  MerkleNodeReader reader = reader_over(leaves);
  for (size_t level = 0; level < kNodeHashes.size(); ++level) {
    for (size_t index = 0; index < kNodeHashes[level].size(); ++index) {
      const uint64_t begin = uint64_t{index} << level, end = uint64_t{index + 1} << level;
      auto h = subtree_root(reader, begin, end);
      ASSERT_TRUE(h.is_ok()) << h.status().to_string();
      EXPECT_EQ(to_hex(h.value()), kNodeHashes[level][index]) << "level " << level << " index " << index;
    }
  }
  EXPECT_EQ(to_hex(node_hash(raw(kNodeHashes[0][0]), raw(kNodeHashes[0][1]))), kNodeHashes[1][0]);
}

TEST(MerkleTest, EveryPublishedRootIsReproducedByTheDefinitionAndTheFrontier) {
  const auto leaves = published_leaf_hashes();
  EXPECT_EQ(to_hex(empty_tree_root()), kRootHashes[0]);
  MerkleFrontier frontier;
  EXPECT_EQ(to_hex(frontier.root()), kRootHashes[0]);
  for (uint64_t size = 1; size <= 8; ++size) {
    EXPECT_EQ(to_hex(merkle_root(prefix(leaves, size))), kRootHashes[size]) << "size " << size;
    ASSERT_TRUE(frontier.append(leaves[size - 1]).is_ok());
    EXPECT_EQ(to_hex(frontier.root()), kRootHashes[size]) << "size " << size;
  }
}

TEST(MerkleTest, EveryPublishedInclusionProofIsGeneratedAndVerifies) {
  const auto leaves = published_leaf_hashes();
  for (const auto& v : kInclusionVectors) {
    SCOPED_TRACE("leaf " + std::to_string(v.index) + " of " + std::to_string(v.size));
    auto proof = inclusion_proof(reader_over(leaves), v.index, v.size);
    ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
    EXPECT_EQ(proof.value(), raw_all(v.proof));
    EXPECT_EQ(inclusion_proof_size(v.index, v.size), v.proof.size());
    Status s = verify_inclusion(v.index, v.size, leaves[v.index], raw_all(v.proof), root_of(v.size));
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  }
}

TEST(MerkleTest, EveryPublishedConsistencyProofIsGeneratedAndVerifies) {
  const auto leaves = published_leaf_hashes();
  for (const auto& v : kConsistencyVectors) {
    SCOPED_TRACE("sizes " + std::to_string(v.size1) + " and " + std::to_string(v.size2));
    auto proof = consistency_proof(reader_over(leaves), v.size1, v.size2);
    ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
    EXPECT_EQ(proof.value(), raw_all(v.proof));
    EXPECT_EQ(consistency_proof_size(v.size1, v.size2), v.proof.size());
    Status s = verify_consistency(v.size1, v.size2, root_of(v.size1), root_of(v.size2), raw_all(v.proof));
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  }
}

TEST(MerkleTest, PublishedEdgeCaseProbesGiveThePublishedVerdict) {
  for (const auto& p : kInclusionProbes) {
    Status s = verify_inclusion(p.index, p.size, raw(p.leaf), {}, raw(p.root));
    EXPECT_EQ(!s.is_ok(), p.want_error) << "inclusion/" << p.desc << ": " << s.to_string();
  }
  for (const auto& p : kConsistencyProbes) {
    Status s = verify_consistency(p.size1, p.size2, raw(p.root1), raw(p.root2), raw_all(p.proof));
    EXPECT_EQ(!s.is_ok(), p.want_error) << "consistency/" << p.desc << ": " << s.to_string();
  }
}

// The mutation families of transparency-dev/merkle's testdata, applied to each published
// happy path: none may verify, and each must be refused without a crash.
TEST(MerkleTest, PublishedInclusionProofsFailEveryPublishedKindOfMutation) {
  const auto leaves = published_leaf_hashes();
  for (const auto& v : kInclusionVectors) {
    SCOPED_TRACE("leaf " + std::to_string(v.index) + " of " + std::to_string(v.size));
    const std::string leaf = leaves[v.index], root = root_of(v.size);
    const auto proof = raw_all(v.proof);
    auto fails = [&](const char* what, uint64_t index, uint64_t size, const std::string& l,
                     const std::vector<std::string>& p, const std::string& r) {
      Status s = verify_inclusion(index, size, l, p, r);
      EXPECT_FALSE(s.is_ok()) << what;
    };
    fails("wrong leaf", v.index, v.size, "WrongLeaf", proof, root);
    fails("random leaf", v.index, v.size, raw(kRandom), proof, root);
    fails("empty root", v.index, v.size, leaf, proof, raw(kEmpty));
    fails("random root", v.index, v.size, leaf, proof, raw(kRandom));
    fails("leafIdx plus 1", v.index + 1, v.size, leaf, proof, root);
    fails("leafIdx sub 1", v.index - 1, v.size, leaf, proof, root);
    fails("leafIdx XOR 2", v.index ^ 2, v.size, leaf, proof, root);
    fails("treeSize div 2", v.index, v.size / 2, leaf, proof, root);
    fails("treeSize mul 2", v.index, v.size * 2, leaf, proof, root);
    auto with = [&](auto edit) {
      auto p = proof;
      edit(p);
      return p;
    };
    fails("preceding root", v.index, v.size, leaf, with([&](auto& p) { p.insert(p.begin(), root); }), root);
    fails("trailing root", v.index, v.size, leaf, with([&](auto& p) { p.push_back(root); }), root);
    fails("preceding garbage", v.index, v.size, leaf, with([&](auto& p) { p.insert(p.begin(), ""); }), root);
    fails("trailing garbage", v.index, v.size, leaf, with([&](auto& p) { p.push_back(""); }), root);
    if (!proof.empty()) {
      fails("removed component", v.index, v.size, leaf, with([&](auto& p) { p.pop_back(); }), root);
      fails("inserted component", v.index, v.size, leaf,
            with([&](auto& p) { p.insert(p.begin() + 1, raw(kRandom)); }), root);
    }
  }
}

TEST(MerkleTest, PublishedConsistencyProofsFailEveryPublishedKindOfMutation) {
  for (const auto& v : kConsistencyVectors) {
    if (v.size1 == v.size2) continue;
    SCOPED_TRACE("sizes " + std::to_string(v.size1) + " and " + std::to_string(v.size2));
    const std::string r1 = root_of(v.size1), r2 = root_of(v.size2);
    const auto proof = raw_all(v.proof);
    auto fails = [&](const char* what, uint64_t s1, uint64_t s2, const std::string& a, const std::string& b,
                     const std::vector<std::string>& p) {
      Status s = verify_consistency(s1, s2, a, b, p);
      EXPECT_FALSE(s.is_ok()) << what;
    };
    auto with = [&](auto edit) {
      auto p = proof;
      edit(p);
      return p;
    };
    fails("empty proof", v.size1, v.size2, r1, r2, {});
    fails("swapped roots", v.size1, v.size2, r2, r1, proof);
    fails("wrong root1", v.size1, v.size2, "WrongRoot", r2, proof);
    fails("wrong root2", v.size1, v.size2, r1, "WrongRoot", proof);
    fails("size1 plus 1", v.size1 + 1, v.size2, r1, r2, proof);
    fails("size1 sub 1", v.size1 - 1, v.size2, r1, r2, proof);
    fails("size1 XOR 2", v.size1 ^ 2, v.size2, r1, r2, proof);
    fails("size2 div 2", v.size1, v.size2 / 2, r1, r2, proof);
    fails("size2 mul 2", v.size1, v.size2 * 2, r1, r2, proof);
    fails("truncated proof", v.size1, v.size2, r1, r2, with([](auto& p) { p.pop_back(); }));
    fails("preceding proof 0", v.size1, v.size2, r1, r2, with([](auto& p) { p.insert(p.begin(), p[0]); }));
    fails("preceding root1", v.size1, v.size2, r1, r2, with([&](auto& p) { p.insert(p.begin(), r1); }));
    fails("preceding root2", v.size1, v.size2, r1, r2, with([&](auto& p) { p.insert(p.begin(), r2); }));
    fails("trailing root1", v.size1, v.size2, r1, r2, with([&](auto& p) { p.push_back(r1); }));
    fails("trailing root2", v.size1, v.size2, r1, r2, with([&](auto& p) { p.push_back(r2); }));
    fails("preceding garbage", v.size1, v.size2, r1, r2, with([](auto& p) { p.insert(p.begin(), ""); }));
    fails("trailing garbage", v.size1, v.size2, r1, r2, with([](auto& p) { p.push_back(""); }));
  }
}

TEST(MerkleTest, FlippingAnyBitOfAPublishedProofRootOrLeafFailsVerification) {
  const auto leaves = published_leaf_hashes();
  for (const auto& v : kInclusionVectors) {
    const std::string leaf = leaves[v.index], root = root_of(v.size);
    const auto proof = raw_all(v.proof);
    for (size_t bit = 0; bit < 8 * kMerkleHashSize; ++bit) {
      EXPECT_EQ(verify_inclusion(v.index, v.size, flip_bit(leaf, bit), proof, root).code(),
                ErrorCode::kDataLoss);
      EXPECT_EQ(verify_inclusion(v.index, v.size, leaf, proof, flip_bit(root, bit)).code(),
                ErrorCode::kDataLoss);
      for (size_t i = 0; i < proof.size(); ++i) {
        auto p = proof;
        p[i] = flip_bit(p[i], bit);
        EXPECT_EQ(verify_inclusion(v.index, v.size, leaf, p, root).code(), ErrorCode::kDataLoss)
            << "leaf " << v.index << " of " << v.size << ", proof hash " << i << " bit " << bit;
      }
    }
  }
  for (const auto& v : kConsistencyVectors) {
    const std::string r1 = root_of(v.size1), r2 = root_of(v.size2);
    const auto proof = raw_all(v.proof);
    for (size_t bit = 0; bit < 8 * kMerkleHashSize; ++bit) {
      EXPECT_EQ(verify_consistency(v.size1, v.size2, flip_bit(r1, bit), r2, proof).code(),
                ErrorCode::kDataLoss);
      EXPECT_EQ(verify_consistency(v.size1, v.size2, r1, flip_bit(r2, bit), proof).code(),
                ErrorCode::kDataLoss);
      for (size_t i = 0; i < proof.size(); ++i) {
        auto p = proof;
        p[i] = flip_bit(p[i], bit);
        EXPECT_EQ(verify_consistency(v.size1, v.size2, r1, r2, p).code(), ErrorCode::kDataLoss)
            << "sizes " << v.size1 << " and " << v.size2 << ", proof hash " << i << " bit " << bit;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Generated proofs

TEST(MerkleTest, GeneratedInclusionProofsVerifyForEveryLeafOfEveryTreeUpTo64) {
  const auto leaves = numbered_leaves(65);
  const MerkleNodeReader reader = reader_over(leaves);
  for (uint64_t size = 1; size <= 64; ++size) {
    const std::string root = merkle_root(prefix(leaves, size));
    const std::string other_root = merkle_root(prefix(leaves, size + 1));
    for (uint64_t index = 0; index < size; ++index) {
      auto proof = inclusion_proof(reader, index, size);
      ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
      EXPECT_EQ(proof->size(), inclusion_proof_size(index, size));
      EXPECT_TRUE(verify_inclusion(index, size, leaves[index], proof.value(), root).is_ok())
          << "leaf " << index << " of " << size;
      EXPECT_FALSE(verify_inclusion(index, size, leaves[index], proof.value(), other_root).is_ok());
      EXPECT_FALSE(verify_inclusion(index, size, leaves[size], proof.value(), root).is_ok());
    }
  }
}

TEST(MerkleTest, GeneratedConsistencyProofsVerifyForEveryPairOfSizesUpTo64) {
  const auto leaves = numbered_leaves(64);
  const MerkleNodeReader reader = reader_over(leaves);
  std::vector<std::string> roots;
  for (uint64_t size = 0; size <= 64; ++size) roots.push_back(merkle_root(prefix(leaves, size)));
  for (uint64_t size2 = 1; size2 <= 64; ++size2) {
    for (uint64_t size1 = 1; size1 <= size2; ++size1) {
      auto proof = consistency_proof(reader, size1, size2);
      ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
      EXPECT_EQ(proof->size(), consistency_proof_size(size1, size2));
      EXPECT_TRUE(verify_consistency(size1, size2, roots[size1], roots[size2], proof.value()).is_ok())
          << "sizes " << size1 << " and " << size2;
      if (size1 > 1) {
        EXPECT_FALSE(verify_consistency(size1, size2, roots[size1 - 1], roots[size2], proof.value()).is_ok());
      }
      if (size1 < size2) {
        EXPECT_FALSE(verify_consistency(size1, size2, roots[size1], roots[size2 - 1], proof.value()).is_ok());
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// The frontier

TEST(MerkleTest, FrontierAgreesWithTheDefinitionForEverySizeUpTo300AndSurvivesARestart) {
  const auto leaves = numbered_leaves(300);
  MerkleFrontier frontier;
  for (uint64_t size = 0; size <= 300; ++size) {
    ASSERT_EQ(frontier.size(), size);
    EXPECT_EQ(frontier.root(), merkle_root(prefix(leaves, size))) << "size " << size;
    EXPECT_EQ(frontier.nodes().size(), static_cast<size_t>(__builtin_popcountll(size)));
    // As a store would: keep the text, forget the object, resume from the text.
    auto resumed = MerkleFrontier::parse(frontier.serialize());
    ASSERT_TRUE(resumed.is_ok()) << resumed.status().to_string();
    EXPECT_EQ(resumed->size(), size);
    EXPECT_EQ(resumed->root(), frontier.root());
    if (size == 300) break;
    ASSERT_TRUE(resumed->append(leaves[size]).is_ok());
    frontier = std::move(resumed).value();
  }
}

TEST(MerkleTest, FrontierSerializesToOneCanonicalLine) {
  const auto leaves = published_leaf_hashes();
  MerkleFrontier frontier;
  EXPECT_EQ(frontier.serialize(), "merkle-frontier-v1 0");
  for (size_t i = 0; i < 7; ++i) ASSERT_TRUE(frontier.append(leaves[i]).is_ok());
  // Seven leaves: the subtrees of 4, 2 and 1 leaves (transparency-dev's CompactTrees()[7]).
  EXPECT_EQ(frontier.serialize(), std::string("merkle-frontier-v1 7 ") + kNodeHashes[2][0] + " " +
                                      kNodeHashes[1][2] + " " + kNodeHashes[0][6]);
}

TEST(MerkleTest, FrontierRefusesCorruptTextAndBadLeaves) {
  const std::string h(64, 'a');
  for (const std::string& bad : std::vector<std::string>{
           "", "merkle-frontier-v1", "merkle-frontier-v2 0", "merkle-frontier-v1 ", "merkle-frontier-v1 x",
           "merkle-frontier-v1 -1", "merkle-frontier-v1 01 " + h, "merkle-frontier-v1 1",
           "merkle-frontier-v1 1 " + h + " " + h, "merkle-frontier-v1 2 " + h.substr(1),
           "merkle-frontier-v1 1 " + std::string(64, 'A'), "merkle-frontier-v1 1 " + std::string(64, 'g'),
           "merkle-frontier-v1 0 ", "merkle-frontier-v1  0", "merkle-frontier-v1 99999999999999999999",
           "merkle-frontier-v1 18446744073709551616"}) {
    auto f = MerkleFrontier::parse(bad);
    EXPECT_EQ(f.status().code(), ErrorCode::kDataLoss) << '"' << bad << '"';
  }
  MerkleFrontier frontier;
  EXPECT_EQ(frontier.append("short").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(frontier.size(), 0u);
}

// A store that keeps the subtrees the frontier reports can prove with a few reads.
TEST(MerkleTest, SubtreesReportedByTheFrontierLetAProofSkipMostLeafReads) {
  const uint64_t size = (uint64_t{1} << 17) + 3;
  std::vector<std::string> leaves;
  leaves.reserve(size);
  MerkleFrontier frontier;
  std::map<std::pair<uint32_t, uint64_t>, std::string> cache;
  std::vector<MerkleSubtree> completed;
  for (uint64_t i = 0; i < size; ++i) {
    leaves.push_back(leaf_hash(std::to_string(i)));
    completed.clear();
    ASSERT_TRUE(frontier.append(leaves.back(), &completed).is_ok());
    // A store might keep only every fourth level to bound its size.
    for (auto& s : completed) {
      if (s.level % 4 == 0) cache[{s.level, s.index}] = std::move(s.hash);
    }
  }
  uint64_t reads = 0;
  MerkleNodeReader reader;
  reader.leaf_hash = [&](uint64_t i) -> Result<std::string> {
    ++reads;
    return leaves[i];
  };
  reader.subtree_hash = [&](uint32_t level, uint64_t index) -> std::optional<std::string> {
    auto it = cache.find({level, index});
    if (it == cache.end()) return std::nullopt;
    return it->second;
  };
  const std::string root = frontier.root();
  for (uint64_t index : {uint64_t{0}, uint64_t{77777}, size - 1}) {
    reads = 0;
    auto proof = inclusion_proof(reader, index, size);
    ASSERT_TRUE(proof.is_ok()) << proof.status().to_string();
    EXPECT_TRUE(verify_inclusion(index, size, leaves[index], proof.value(), root).is_ok());
    EXPECT_LT(reads, 2000u) << "leaf " << index;  // without the cache: size - 1
    // The cache changes the cost, not the answer.
    EXPECT_EQ(proof.value(), inclusion_proof(reader_over(leaves), index, size).value());
  }
  reads = 0;
  auto proof = consistency_proof(reader, 100000, size);
  ASSERT_TRUE(proof.is_ok());
  MerkleFrontier old;
  for (uint64_t i = 0; i < 100000; ++i) ASSERT_TRUE(old.append(leaves[i]).is_ok());
  EXPECT_TRUE(verify_consistency(100000, size, old.root(), root, proof.value()).is_ok());
  EXPECT_LT(reads, 2000u);
}

TEST(MerkleTest, GeneratorsRefuseBadArgumentsAndPassOnStoreErrors) {
  const auto leaves = numbered_leaves(8);
  const MerkleNodeReader reader = reader_over(leaves);
  EXPECT_EQ(inclusion_proof(reader, 8, 8).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(inclusion_proof(reader, 0, 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(consistency_proof(reader, 0, 8).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(consistency_proof(reader, 5, 4).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(subtree_root(reader, 3, 3).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(inclusion_proof(MerkleNodeReader{}, 0, 1).status().code(), ErrorCode::kInvalidArgument);
  // Asking past the list's end reaches the accessor, whose error comes back unchanged.
  EXPECT_EQ(inclusion_proof(reader, 0, 9).status().code(), ErrorCode::kNotFound);

  MerkleNodeReader short_leaves;
  short_leaves.leaf_hash = [](uint64_t) -> Result<std::string> { return std::string("short"); };
  EXPECT_EQ(inclusion_proof(short_leaves, 0, 2).status().code(), ErrorCode::kDataLoss);
  MerkleNodeReader bad_cache = reader_over(leaves);
  bad_cache.subtree_hash = [](uint32_t, uint64_t) -> std::optional<std::string> { return std::string(); };
  EXPECT_EQ(inclusion_proof(bad_cache, 0, 8).status().code(), ErrorCode::kDataLoss);
}

// ---------------------------------------------------------------------------------------
// Hostile input to the verifiers

TEST(MerkleTest, InclusionVerifierRefusesHostileInputWithANamedError) {
  const auto leaves = published_leaf_hashes();
  const std::string leaf = leaves[0], root = root_of(8);
  const auto proof = raw_all(kInclusionVectors[5].proof);  // leaf 0 of 8
  ASSERT_TRUE(verify_inclusion(0, 8, leaf, proof, root).is_ok());
  auto code = [](Status s) { return s.code(); };
  EXPECT_EQ(code(verify_inclusion(8, 8, leaf, proof, root)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_inclusion(0, 0, leaf, {}, root)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_inclusion(UINT64_MAX, 8, leaf, proof, root)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_inclusion(0, 8, leaf, {}, root)), ErrorCode::kInvalidArgument);
  auto longer = proof;
  longer.push_back(proof[0]);
  Status s = verify_inclusion(0, 8, leaf, longer, root);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has 4 hashes"), std::string::npos) << s.message();
  EXPECT_EQ(code(verify_inclusion(0, 8, leaf, std::vector<std::string>(100, leaf), root)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_inclusion(0, 8, leaf.substr(1), proof, root)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_inclusion(0, 8, leaf, proof, root + "x")), ErrorCode::kInvalidArgument);
  auto bad_element = proof;
  bad_element[1] += "x";
  EXPECT_EQ(code(verify_inclusion(0, 8, leaf, bad_element, root)), ErrorCode::kInvalidArgument);
  // The largest trees: a proof of the right length made of junk is simply wrong.
  const std::vector<std::pair<uint64_t, uint64_t>> largest = {
      {UINT64_MAX - 1, UINT64_MAX}, {0, UINT64_MAX}, {uint64_t{1} << 63, UINT64_MAX}};
  for (auto [index, size] : largest) {
    const size_t n = inclusion_proof_size(index, size);
    EXPECT_GE(n, 63u);
    EXPECT_EQ(code(verify_inclusion(index, size, leaf, std::vector<std::string>(n, leaf), root)),
              ErrorCode::kDataLoss);
  }
}

TEST(MerkleTest, ConsistencyVerifierRefusesHostileInputWithANamedError) {
  const std::string r1 = root_of(6), r2 = root_of(8);
  const auto proof = raw_all(kConsistencyVectors[3].proof);  // 6 -> 8
  ASSERT_TRUE(verify_consistency(6, 8, r1, r2, proof).is_ok());
  auto code = [](Status s) { return s.code(); };
  EXPECT_EQ(code(verify_consistency(8, 6, r2, r1, proof)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(0, 8, empty_tree_root(), r2, proof)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(0, 8, empty_tree_root(), r2, {})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(0, 0, empty_tree_root(), empty_tree_root(), {})),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(6, 8, r1, r2, {})), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(8, 8, r2, r2, proof)), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(verify_consistency(8, 8, r2, r2, {}).is_ok());
  Status fork = verify_consistency(8, 8, r2, r1, {});
  EXPECT_EQ(fork.code(), ErrorCode::kDataLoss);
  EXPECT_NE(fork.message().find("forked"), std::string::npos) << fork.message();
  EXPECT_EQ(code(verify_consistency(6, 8, r1, r2, std::vector<std::string>(100, r1))),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(6, 8, r1.substr(2), r2, proof)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(verify_consistency(6, 8, r1, "", proof)), ErrorCode::kInvalidArgument);
  const std::vector<std::pair<uint64_t, uint64_t>> largest = {
      {1, UINT64_MAX}, {UINT64_MAX - 1, UINT64_MAX}, {(uint64_t{1} << 63) + 1, UINT64_MAX}};
  for (auto [size1, size2] : largest) {
    const size_t n = consistency_proof_size(size1, size2);
    EXPECT_GE(n, 1u);
    EXPECT_EQ(code(verify_consistency(size1, size2, r1, r2, std::vector<std::string>(n, r1))),
              ErrorCode::kDataLoss);
    EXPECT_EQ(code(verify_consistency(size1, size2, r1, r2, std::vector<std::string>(n + 1, r1))),
              ErrorCode::kInvalidArgument);
  }
}

TEST(MerkleTest, HexHelpersRefuseGarbageAndNameTheBadProofElement) {
  const std::string good = kRootHashes[8];
  auto h = hash_from_hex(good);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(to_hex(h.value()), good);
  std::string upper = good;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(hash_from_hex(upper).value(), h.value());
  for (const std::string& bad : {std::string(), good.substr(1), good + "0", good.substr(2) + "zz",
                                 "0x" + good.substr(2), good.substr(1) + " ", std::string(64, '\0')}) {
    EXPECT_EQ(hash_from_hex(bad).status().code(), ErrorCode::kInvalidArgument) << '"' << bad << '"';
  }
  auto proof = proof_from_hex({good, good, "nope"});
  EXPECT_EQ(proof.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(proof.status().message().find("proof hash 2"), std::string::npos) << proof.status().message();
  const std::vector<std::string> hex = {kRootHashes[1], kRootHashes[2]};
  EXPECT_EQ(proof_to_hex(proof_from_hex(hex).value()), hex);
}

}  // namespace
}  // namespace custody
