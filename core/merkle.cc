#include "core/merkle.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "core/hex.h"

namespace custody {

namespace {

constexpr unsigned char kLeafPrefix = 0x00;
constexpr unsigned char kNodePrefix = 0x01;

int bit_length(uint64_t x) { return x == 0 ? 0 : 64 - __builtin_clzll(x); }
int popcount(uint64_t x) { return __builtin_popcountll(x); }

// The k of RFC 6962 §2.1: the largest power of two smaller than n. REQUIRES n >= 2.
uint64_t split_point(uint64_t n) { return uint64_t{1} << (bit_length(n - 1) - 1); }

std::string sha256_raw(const unsigned char* data, size_t size) {
  std::string out(kMerkleHashSize, '\0');
  SHA256(data, size, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

Status check_hash(std::string_view h, const std::string& what) {
  if (h.size() != kMerkleHashSize) {
    return invalid_argument(what + " has " + std::to_string(h.size()) + " bytes, not " +
                            std::to_string(kMerkleHashSize));
  }
  return Status::ok();
}

Status check_proof_hashes(const std::vector<std::string>& proof, const std::string& what) {
  for (size_t i = 0; i < proof.size(); ++i) {
    CUSTODY_RETURN_IF_ERROR(check_hash(proof[i], what + " hash " + std::to_string(i)));
  }
  return Status::ok();
}

std::string dec(uint64_t v) { return std::to_string(v); }

}  // namespace

std::string leaf_hash(std::string_view data) {
  std::string buf;
  buf.reserve(1 + data.size());
  buf.push_back(static_cast<char>(kLeafPrefix));
  buf.append(data);
  return sha256_raw(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
}

std::string node_hash(std::string_view left, std::string_view right) {
  std::string buf;
  buf.reserve(1 + left.size() + right.size());
  buf.push_back(static_cast<char>(kNodePrefix));
  buf.append(left);
  buf.append(right);
  return sha256_raw(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
}

std::string empty_tree_root() { return sha256_raw(nullptr, 0); }

Result<std::string> hash_from_hex(std::string_view hex, std::string_view what) {
  return from_hex(hex, kMerkleHashSize, what);
}

Result<std::vector<std::string>> proof_from_hex(const std::vector<std::string>& hex) {
  std::vector<std::string> out;
  out.reserve(hex.size());
  for (size_t i = 0; i < hex.size(); ++i) {
    CUSTODY_ASSIGN_OR_RETURN(auto h, hash_from_hex(hex[i], "proof hash " + std::to_string(i)));
    out.push_back(std::move(h));
  }
  return out;
}

std::vector<std::string> proof_to_hex(const std::vector<std::string>& proof) {
  std::vector<std::string> out;
  out.reserve(proof.size());
  for (const auto& h : proof) out.push_back(to_hex(h));
  return out;
}

// ---------------------------------------------------------------------------------------
// The full computation, by the definition.

namespace {

std::string mth(const std::vector<std::string>& leaves, size_t begin, size_t end) {
  const size_t count = end - begin;
  if (count == 1) return leaves[begin];
  const size_t k = static_cast<size_t>(split_point(count));
  return node_hash(mth(leaves, begin, begin + k), mth(leaves, begin + k, end));
}

}  // namespace

std::string merkle_root(const std::vector<std::string>& leaf_hashes) {
  if (leaf_hashes.empty()) return empty_tree_root();
  return mth(leaf_hashes, 0, leaf_hashes.size());
}

// ---------------------------------------------------------------------------------------
// MerkleFrontier

std::string MerkleFrontier::root() const {
  if (nodes_.empty()) return empty_tree_root();
  // The smaller subtrees sit on the right border; RFC 6962's split puts each one under the
  // next larger one's right child, so fold from the right.
  std::string h = nodes_.back();
  for (size_t i = nodes_.size() - 1; i-- > 0;) h = node_hash(nodes_[i], h);
  return h;
}

Status MerkleFrontier::append(std::string_view leaf, std::vector<MerkleSubtree>* completed) {
  CUSTODY_RETURN_IF_ERROR(check_hash(leaf, "leaf hash"));
  if (size_ == UINT64_MAX) return failed_precondition("the Merkle frontier is full (2^64 - 1 leaves)");
  nodes_.emplace_back(leaf);
  const uint64_t new_size = size_ + 1;
  // Each trailing zero bit of the new size is a pair of equal subtrees that now merge.
  const auto merges = static_cast<uint32_t>(__builtin_ctzll(new_size));
  for (uint32_t level = 1; level <= merges; ++level) {
    std::string merged = node_hash(nodes_[nodes_.size() - 2], nodes_.back());
    nodes_.pop_back();
    nodes_.back() = std::move(merged);
    if (completed) completed->push_back({level, (new_size >> level) - 1, nodes_.back()});
  }
  size_ = new_size;
  return Status::ok();
}

namespace {
constexpr std::string_view kFrontierTag = "merkle-frontier-v1";
}

std::string MerkleFrontier::serialize() const {
  std::string out(kFrontierTag);
  out += ' ';
  out += std::to_string(size_);
  for (const auto& h : nodes_) {
    out += ' ';
    out += to_hex(h);
  }
  return out;
}

Result<MerkleFrontier> MerkleFrontier::parse(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t space = text.find(' ', start);
    const size_t end = space == std::string_view::npos ? text.size() : space;
    fields.push_back(text.substr(start, end - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  if (fields.size() < 2 || fields[0] != kFrontierTag) {
    return data_loss("a stored Merkle frontier does not start with \"" + std::string(kFrontierTag) +
                     " <size>\"");
  }
  const std::string_view digits = fields[1];
  if (digits.empty() || digits.size() > 20 || (digits.size() > 1 && digits[0] == '0')) {
    return data_loss("a stored Merkle frontier's size is not a canonical number");
  }
  uint64_t size = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return data_loss("a stored Merkle frontier's size is not a number");
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (size > (UINT64_MAX - d) / 10) return data_loss("a stored Merkle frontier's size overflows");
    size = size * 10 + d;
  }
  const size_t want = static_cast<size_t>(popcount(size));
  if (fields.size() - 2 != want) {
    return data_loss("a stored Merkle frontier of size " + dec(size) + " has " + dec(fields.size() - 2) +
                     " subtree hashes, not " + dec(want));
  }
  MerkleFrontier f;
  f.size_ = size;
  for (size_t i = 2; i < fields.size(); ++i) {
    auto h = from_hex(fields[i], kMerkleHashSize, "stored Merkle frontier hash " + dec(i - 2));
    if (!h.is_ok()) return data_loss(h.status().message());
    // Canonical text only: the same frontier must always serialize to the same bytes.
    if (to_hex(h.value()) != fields[i]) {
      return data_loss("stored Merkle frontier hash " + dec(i - 2) + " is not lowercase hex");
    }
    f.nodes_.push_back(std::move(h).value());
  }
  return f;
}

// ---------------------------------------------------------------------------------------
// Proof generation

MerkleNodeReader reader_over(const std::vector<std::string>& leaf_hashes) {
  MerkleNodeReader r;
  r.leaf_hash = [&leaf_hashes](uint64_t i) -> Result<std::string> {
    if (i >= leaf_hashes.size())
      return not_found("no leaf " + dec(i) + " in a list of " + dec(leaf_hashes.size()));
    return leaf_hashes[static_cast<size_t>(i)];
  };
  return r;
}

namespace {

Result<std::string> range_hash(const MerkleNodeReader& r, uint64_t begin, uint64_t end) {
  const uint64_t count = end - begin;
  if (count == 1) {
    CUSTODY_ASSIGN_OR_RETURN(auto leaf, r.leaf_hash(begin));
    if (leaf.size() != kMerkleHashSize) {
      return data_loss("the hash of leaf " + dec(begin) + " has " + dec(leaf.size()) +
                       " bytes, not 32");
    }
    return leaf;
  }
  const bool complete = (count & (count - 1)) == 0 && begin % count == 0;
  if (complete && r.subtree_hash) {
    const auto level = static_cast<uint32_t>(__builtin_ctzll(count));
    const uint64_t index = begin >> level;
    if (auto cached = r.subtree_hash(level, index)) {
      if (cached->size() != kMerkleHashSize) {
        return data_loss("the cached hash of subtree (level " + dec(level) + ", index " + dec(index) +
                         ") has " + dec(cached->size()) + " bytes, not 32");
      }
      return std::move(*cached);
    }
  }
  const uint64_t k = split_point(count);
  CUSTODY_ASSIGN_OR_RETURN(auto left, range_hash(r, begin, begin + k));
  CUSTODY_ASSIGN_OR_RETURN(auto right, range_hash(r, begin + k, end));
  return node_hash(left, right);
}

// The leaf ranges [begin, end) whose hashes a consistency proof from size1 to size2
// holds, from the top of the tree down (the proof lists them bottom up): SUBPROOF(m,
// D[begin:end], b) of RFC 6962 §2.1.2, unrolled; `m` counts from `begin`.
// REQUIRES: 0 < size1 <= size2.
std::vector<std::pair<uint64_t, uint64_t>> consistency_ranges(uint64_t size1, uint64_t size2) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t begin = 0, end = size2, m = size1;
  bool whole_old_tree = true;  // the b flag: is D[begin:begin+m] the old tree itself?
  while (m != end - begin) {
    const uint64_t k = split_point(end - begin);
    if (m <= k) {
      ranges.emplace_back(begin + k, end);
      end = begin + k;
    } else {
      ranges.emplace_back(begin, begin + k);
      begin += k;
      m -= k;
      whole_old_tree = false;
    }
  }
  if (!whole_old_tree) ranges.emplace_back(begin, end);
  return ranges;
}

}  // namespace

Result<std::string> subtree_root(const MerkleNodeReader& reader, uint64_t begin, uint64_t end) {
  if (!reader.leaf_hash) return invalid_argument("the Merkle node reader has no leaf_hash function");
  if (begin >= end) return invalid_argument("the range [" + dec(begin) + ", " + dec(end) + ") is empty");
  return range_hash(reader, begin, end);
}

Result<std::vector<std::string>> inclusion_proof(const MerkleNodeReader& reader, uint64_t index,
                                                 uint64_t size) {
  if (!reader.leaf_hash) return invalid_argument("the Merkle node reader has no leaf_hash function");
  if (index >= size) {
    return invalid_argument("leaf " + dec(index) + " is not in a tree of size " + dec(size));
  }
  // Walk down from the root; the siblings come out highest first.
  std::vector<std::string> proof;
  uint64_t begin = 0, end = size;
  while (end - begin > 1) {
    const uint64_t k = split_point(end - begin);
    Result<std::string> sibling =
        index < begin + k ? range_hash(reader, begin + k, end) : range_hash(reader, begin, begin + k);
    if (!sibling.is_ok()) return sibling.status();
    proof.push_back(std::move(sibling).value());
    if (index < begin + k) {
      end = begin + k;
    } else {
      begin += k;
    }
  }
  std::reverse(proof.begin(), proof.end());
  return proof;
}

Result<std::vector<std::string>> consistency_proof(const MerkleNodeReader& reader, uint64_t size1,
                                                   uint64_t size2) {
  if (!reader.leaf_hash) return invalid_argument("the Merkle node reader has no leaf_hash function");
  if (size1 == 0) return invalid_argument("a consistency proof from the empty tree proves nothing");
  if (size1 > size2) {
    return invalid_argument("size1 (" + dec(size1) + ") is larger than size2 (" + dec(size2) + ")");
  }
  std::vector<std::string> proof;
  for (const auto& [begin, end] : consistency_ranges(size1, size2)) {
    CUSTODY_ASSIGN_OR_RETURN(auto h, range_hash(reader, begin, end));
    proof.push_back(std::move(h));
  }
  std::reverse(proof.begin(), proof.end());
  return proof;
}

size_t inclusion_proof_size(uint64_t index, uint64_t size) {
  if (index >= size) return 0;
  // Levels below the point where the paths to `index` and `size - 1` meet all have a
  // sibling; above it, only the levels where `index`'s ancestor is a right child.
  const int inner = bit_length(index ^ (size - 1));
  return static_cast<size_t>(inner + popcount(index >> inner));
}

size_t consistency_proof_size(uint64_t size1, uint64_t size2) {
  if (size1 == 0 || size1 >= size2) return 0;
  return consistency_ranges(size1, size2).size();
}

// ---------------------------------------------------------------------------------------
// Verification (RFC 9162). The length checks come first so that a wrong proof is named
// as such; the loops then follow the RFC's steps, including its own guards.

namespace {

// The loop that RFC 9162's inclusion (2.1.3.2) and consistency (2.1.4.2) verification
// share: walks fn and sn up the tree over the proof hashes in [begin, end), calling
// left(c) where c is the left sibling of the path so far and right(c) where it is the
// right one. `what` names the proof in the errors for a proof longer or shorter than the
// tree is high.
template <typename Iterator, typename Left, typename Right>
Status walk_proof(const std::string& what, uint64_t fn, uint64_t sn, Iterator begin, Iterator end, Left left,
                  Right right) {
  for (Iterator it = begin; it != end; ++it) {
    if (sn == 0) return invalid_argument(what + " is longer than the tree is high");
    if ((fn & 1) == 1 || fn == sn) {
      left(*it);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      right(*it);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return invalid_argument(what + " is shorter than the tree is high");
  return Status::ok();
}

}  // namespace

Status verify_inclusion(uint64_t index, uint64_t size, std::string_view leaf,
                        const std::vector<std::string>& proof, std::string_view root) {
  // Step 1.
  if (index >= size) {
    return invalid_argument("inclusion proof: leaf " + dec(index) + " is not in a tree of size " + dec(size));
  }
  CUSTODY_RETURN_IF_ERROR(check_hash(leaf, "inclusion proof: the leaf hash"));
  CUSTODY_RETURN_IF_ERROR(check_hash(root, "inclusion proof: the root hash"));
  CUSTODY_RETURN_IF_ERROR(check_proof_hashes(proof, "inclusion proof:"));
  const size_t want = inclusion_proof_size(index, size);
  if (proof.size() != want) {
    return invalid_argument("inclusion proof has " + dec(proof.size()) + " hashes; leaf " + dec(index) +
                            " of a tree of size " + dec(size) + " needs " + dec(want));
  }
  // Steps 2-5.
  std::string r(leaf);
  CUSTODY_RETURN_IF_ERROR(walk_proof(
      "inclusion proof", index, size - 1, proof.begin(), proof.end(), [&](std::string_view p) { r = node_hash(p, r); },
      [&](std::string_view p) { r = node_hash(r, p); }));
  if (r != root) {
    return data_loss("inclusion proof for leaf " + dec(index) + " of a tree of size " + dec(size) +
                     " does not lead to the root: the leaf, the proof or the root was changed");
  }
  return Status::ok();
}

Status verify_consistency(uint64_t size1, uint64_t size2, std::string_view root1, std::string_view root2,
                          const std::vector<std::string>& proof) {
  if (size1 > size2) {
    return invalid_argument("consistency proof: size1 (" + dec(size1) + ") is larger than size2 (" +
                            dec(size2) + "); a log never shrinks");
  }
  if (size1 == 0) {
    return invalid_argument(
        "consistency proof: size1 is 0; the empty tree is a prefix of every "
        "tree, so a proof from it says nothing about root2");
  }
  CUSTODY_RETURN_IF_ERROR(check_hash(root1, "consistency proof: root1"));
  CUSTODY_RETURN_IF_ERROR(check_hash(root2, "consistency proof: root2"));
  CUSTODY_RETURN_IF_ERROR(check_proof_hashes(proof, "consistency proof:"));
  if (size1 == size2) {
    if (!proof.empty()) {
      return invalid_argument("consistency proof between equal sizes (" + dec(size1) +
                              ") must be empty, not " + dec(proof.size()) + " hashes");
    }
    if (root1 != root2) {
      return data_loss("two different roots for the same tree size " + dec(size1) + ": the log forked");
    }
    return Status::ok();
  }
  const size_t want = consistency_proof_size(size1, size2);
  // Step 1 (an empty proof) is one case of this.
  if (proof.size() != want) {
    return invalid_argument("consistency proof has " + dec(proof.size()) + " hashes; sizes " + dec(size1) +
                            " and " + dec(size2) + " need " + dec(want));
  }
  // Step 2: when the old tree is a complete subtree, the proof leaves out its root.
  std::vector<std::string_view> path;
  path.reserve(proof.size() + 1);
  if ((size1 & (size1 - 1)) == 0) path.push_back(root1);
  for (const auto& p : proof) path.push_back(p);
  // Steps 3-5.
  uint64_t fn = size1 - 1, sn = size2 - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  std::string fr(path[0]), sr(path[0]);
  // Steps 6-7.
  CUSTODY_RETURN_IF_ERROR(walk_proof(
      "consistency proof", fn, sn, path.begin() + 1, path.end(),
      [&](std::string_view c) {
        fr = node_hash(c, fr);
        sr = node_hash(c, sr);
      },
      [&](std::string_view c) { sr = node_hash(sr, c); }));
  if (fr != root1) {
    return data_loss("consistency proof from size " + dec(size1) + " to " + dec(size2) +
                     " does not reproduce root1: the proof or root1 was changed");
  }
  if (sr != root2) {
    return data_loss("consistency proof from size " + dec(size1) + " to " + dec(size2) +
                     " does not lead to root2: the proof or root2 was changed, or the log forked");
  }
  return Status::ok();
}

}  // namespace custody
