// Evidence about the custody store that holds up without trusting whoever can write its
// files: signed tree heads of its Merkle logs, receipts for single records, and the checks
// an auditor or a consumer runs on them. (Trust model: docs/ARCHITECTURE.md.)
//
// A signed head commits to a log at a size: {log, size, root, time_ms, key_id, signature}
// (core/signing.h defines the signed bytes). Heads are JSON:
//   {"custody_heads": 1, "public_key": HEX, "key_id": ID, "time_ms": T,
//    "heads": [{"log": "lineage", "size": N, "root": HEX, "time_ms": T, "key_id": ID,
//               "signature": HEX}, ...]}
// A receipt proves that one record is in its log, as of a signed head:
//   {"custody_receipt": 1, "id": "call-…", "log": "usage", "leaf_index": seq - 1,
//    "record": {seq, prev, hash, time_ms, body}, "leaf_hash": HEX,
//    "inclusion_proof": [HEX, ...], "tree_head": {...as above...}, "public_key": HEX}
// Checking one needs only the receipt and the key: the record's hash is recomputed from its
// fields, its RFC 6962 leaf is proved into the signed root, and the head's signature is
// checked. Errors: kInvalidArgument for a malformed receipt or head, kDataLoss when it
// does not verify (naming what), kNotFound when a store does not hold what it names.
// Thread-safety: pure functions over their arguments (the store's reads are thread-safe).
#pragma once

#include <string>
#include <string_view>

#include "core/signing.h"
#include "storage/custody_store.h"

namespace custody::storage {

// Every Merkle log's current head, signed with `key`.
Result<json> signed_heads(const CustodyStore& store, const SigningKey& key, int64_t now_ms);

// The receipt of the record a write proved (CustodyStore::write's Inclusion), signed now.
// (By value: callers on the serving path move theirs in.)
// Fails only if the key cannot sign (then no receipt is better than one without a signature).
Result<json> make_receipt(Inclusion inclusion, const SigningKey& key, int64_t now_ms, const std::string& id);
// The same, under a tree head already signed for the inclusion's tree (signed_head_of):
// the receipts of one batch share its head, so a group commit signs once.
json make_receipt(Inclusion inclusion, const json& signed_head, const std::string& public_key_hex,
                  const std::string& id);
// The inclusion's tree head (log, tree size, root), signed now, as a receipt holds it.
Result<json> signed_head_of(const Inclusion& inclusion, const SigningKey& key, int64_t now_ms);
// make_receipt(inclusion, signed_head, ...).dump(), byte for byte, spliced from the stored
// record's text (Inclusion::record_text) and the head's, without building and serializing
// the record's JSON again: what the serving path sends, a call at a time.
std::string receipt_text(const Inclusion& inclusion, const std::string& signed_head_text,
                         const std::string& public_key_hex, const std::string& id);

// What a checked receipt says, for the person who checked it.
struct ReceiptFacts {
  std::string id, log, key_id;
  uint64_t seq = 0, tree_size = 0;
  int64_t head_time_ms = 0;
  json body;  // the record's body
};

// Offline: the receipt alone, against a public key the checker trusts (hex or PEM).
Result<ReceiptFacts> check_receipt(const json& receipt, std::string_view public_key);

// Against a store: it still holds the receipt's record, unchanged, and its log extends the
// receipt's signed head (a consistency proof). REQUIRES: check_receipt passed.
Status check_receipt_in_store(const json& receipt, const CustodyStore& store);

// A head file an auditor kept (`custody audit head --out`, or the coordinator's head_file:
// one JSON document per line, the last one of each log counts): each head is signed by
// `public_key` (empty: the key the file names) and the store's logs extend them. Returns
// one line per log checked.
Result<std::vector<std::string>> check_kept_heads(const std::string& head_file_text, std::string_view public_key,
                                                  const CustodyStore& store);

}  // namespace custody::storage
