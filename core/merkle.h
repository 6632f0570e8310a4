// RFC 6962 (Certificate Transparency) Merkle logs: leaf and node hashing, the tree head
// of a list of leaves, an O(log n) frontier for appending, and inclusion and consistency
// proofs, generated and verified.
//
// Contract: every hash here is the raw 32-byte SHA-256 value (a std::string of 32 bytes);
// hex is only for text (hash_from_hex, to_hex in core/hex.h). Leaf indices count from 0; a
// tree of size n holds leaves [0, n). Verification follows RFC 9162 §2.1.3.2 (inclusion)
// and §2.1.4.2 (consistency), after checking every size and length, so hostile input
// (wrong lengths, index >= size, size1 > size2, garbage hashes) is an error, never a
// crash or an exception. Error codes:
//   kInvalidArgument  the input is malformed: a hash not 32 bytes, an index or size out of
//                     range, a proof of the wrong length for its sizes
//   kDataLoss         the input is well formed but does not hash to the root(s): the leaf,
//                     the proof or a root was changed (or the log forked)
// Proof generation reads leaf hashes through a MerkleNodeReader (below), so a store need
// not load all leaves into memory; its cost is stated there.
// Thread-safety: free functions are safe from any thread; a MerkleFrontier is a plain
// value (const methods may run concurrently; append needs exclusive access).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace custody {

inline constexpr size_t kMerkleHashSize = 32;

// SHA-256(0x00 || data): the domain byte keeps a leaf from ever being read as a node.
std::string leaf_hash(std::string_view data);
// SHA-256(0x01 || left || right).
std::string node_hash(std::string_view left, std::string_view right);
// MTH({}) = SHA-256 of the empty string.
std::string empty_tree_root();

// 64 hex digits (either case) -> 32 raw bytes; `what` names the value in the error.
Result<std::string> hash_from_hex(std::string_view hex, std::string_view what = "hash");
// Each element through hash_from_hex; the error names the first bad element's position.
Result<std::vector<std::string>> proof_from_hex(const std::vector<std::string>& hex);
std::vector<std::string> proof_to_hex(const std::vector<std::string>& proof);

// RFC 6962 §2.1 MTH over leaf hashes (not leaf data), by the definition: O(n) hashing.
// REQUIRES: every element is 32 bytes (shorter or longer values are hashed as given).
std::string merkle_root(const std::vector<std::string>& leaf_hashes);

// A complete subtree: 2^level leaves starting at index << level.
struct MerkleSubtree {
  uint32_t level = 0;
  uint64_t index = 0;
  std::string hash;
};

// The roots of the complete subtrees that make up a tree of `size` leaves, largest first
// (one per set bit of size): enough to append and to compute the root, in O(log n)
// memory. It is the "compact range" [0, size) of transparency-dev/merkle.
class MerkleFrontier {
 public:
  MerkleFrontier() = default;

  uint64_t size() const { return size_; }
  // MTH of the leaves appended so far; empty_tree_root() for size 0. O(log n) hashes.
  std::string root() const;
  // REQUIRES nothing; a leaf hash that is not 32 bytes is refused (kInvalidArgument) and
  // the frontier is unchanged. When `completed` is given, the complete subtrees of level
  // >= 1 that this leaf finished are appended to it, lowest first: a store that keeps
  // them can answer MerkleNodeReader::subtree_hash and prove in O(log n) lookups.
  Status append(std::string_view leaf_hash, std::vector<MerkleSubtree>* completed = nullptr);
  // The subtree roots, largest first (popcount(size) of them).
  const std::vector<std::string>& nodes() const { return nodes_; }

  // One line of text: "merkle-frontier-v1 <size>" then " <hex>" per node, so a store can
  // keep it under one key and resume after a restart. parse() accepts exactly what
  // serialize() writes and names what is wrong otherwise (kDataLoss: it is stored bytes).
  std::string serialize() const;
  static Result<MerkleFrontier> parse(std::string_view text);

 private:
  uint64_t size_ = 0;
  std::vector<std::string> nodes_;
};

// Where proof generation reads the tree. `leaf_hash(i)` is required and returns the
// 32-byte leaf hash of leaf i (or an error from the store, returned unchanged).
// `subtree_hash(level, index)` is optional: the hash of that complete subtree if the
// caller has it (e.g. persisted from MerkleFrontier::append), or nullopt to have it
// computed from below.
//
// Cost: without subtree_hash, a proof reads at most every leaf once and hashes about as
// many times (an inclusion proof reads all leaves but the proved one): O(n) time, O(log n)
// memory, since only the hashes on the current path are held. For 1,000,000 leaves that
// is about a million reads and SHA-256 calls per proof. With a subtree_hash that knows
// every complete subtree, a proof needs O(log n) lookups (at most about 2 log2 n): at most
// one proof hash covers an incomplete range, and it splits into complete ones. A store
// that keeps only every L-th level pays up to 2^(L-1) lookups per proof hash instead.
// A cached hash that is not 32 bytes is an error (kDataLoss), not trusted.
struct MerkleNodeReader {
  std::function<Result<std::string>(uint64_t index)> leaf_hash;
  std::function<std::optional<std::string>(uint32_t level, uint64_t index)> subtree_hash;
};

// A reader over an in-memory list. REQUIRES: leaf_hashes outlives the reader.
MerkleNodeReader reader_over(const std::vector<std::string>& leaf_hashes);

// MTH(D[begin:end]) through the reader. REQUIRES begin < end (else kInvalidArgument).
Result<std::string> subtree_root(const MerkleNodeReader& reader, uint64_t begin, uint64_t end);

// RFC 6962 §2.1.1 PATH(index, D[size]), lowest sibling first.
// kInvalidArgument when index >= size.
Result<std::vector<std::string>> inclusion_proof(const MerkleNodeReader& reader, uint64_t index,
                                                 uint64_t size);
// RFC 6962 §2.1.2 PROOF(size1, D[size2]). Empty when size1 == size2.
// kInvalidArgument when size1 == 0 (nothing to prove) or size1 > size2.
Result<std::vector<std::string>> consistency_proof(const MerkleNodeReader& reader, uint64_t size1,
                                                   uint64_t size2);

// How many hashes those proofs have; 0 for arguments the generators refuse.
size_t inclusion_proof_size(uint64_t index, uint64_t size);
size_t consistency_proof_size(uint64_t size1, uint64_t size2);

// RFC 9162 §2.1.3.2: ok when `proof` proves that leaf `index` of the tree of `size`
// leaves whose head is `root` has hash `leaf_hash`.
Status verify_inclusion(uint64_t index, uint64_t size, std::string_view leaf_hash,
                        const std::vector<std::string>& proof, std::string_view root);

// RFC 9162 §2.1.4.2: ok when `proof` proves the tree of size1 leaves with head root1 is a
// prefix of the tree of size2 leaves with head root2. size1 == size2 needs an empty proof
// and equal roots; size1 == 0 is refused (the empty tree is a prefix of every tree, so
// such a "proof" would say nothing about root2).
Status verify_consistency(uint64_t size1, uint64_t size2, std::string_view root1, std::string_view root2,
                          const std::vector<std::string>& proof);

}  // namespace custody
