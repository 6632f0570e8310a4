// `custody audit verify | head | prove`: the auditor's and the consumer's checks of the
// custody store and of the evidence it hands out (signed heads, receipts). Each returns the
// CLI's exit code: 0 ok; 2 unusable input (a file that cannot be read, a malformed key);
// 4 the store could not be read; 5 a check failed (the message names what).
#pragma once

#include <string>

#include "storage/custody_store.h"

namespace custody::cli {

// A public key as a user gives it: 64 hex digits, PEM text, or a file holding either
// (such as the coordinator's KEYFILE.pub).
Result<std::string> read_public_key(const std::string& arg);

// Recomputes everything verify() covers; with since_file, also proves that the store's logs
// extend every head kept there (signed by public_key, or by the key the file names).
int audit_verify(const storage::CustodyStore& store, const std::string& store_path, const std::string& since_file,
                 const std::string& public_key, bool as_json);

// Prints the signed heads; with out_file, appends them to it as one line (a head file).
int audit_head(const std::string& heads_json, const std::string& out_file, bool as_json);

// Checks every receipt in receipt_file (one JSON object per line, or one JSON object)
// against public_key, offline; with a store, also that the store still holds each record
// and extends each receipt's head.
int audit_prove(const std::string& receipt_file, const std::string& public_key, const storage::CustodyStore* store,
                bool as_json);

}  // namespace custody::cli
