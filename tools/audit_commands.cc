// custody audit verify [--since HEADS] | head [--out FILE] | prove RECEIPT --public-key KEY:
// the auditor's and the consumer's checks of the custody store and of the evidence it hands
// out (signed heads, receipts). A check that fails prints what it found on stdout and ends
// with data loss (exit 5); input that cannot be used is bad input (exit 2); a store that
// cannot be read is a refusal (exit 4).
//
// verify with the store key (--store-key, default <store>.store-key if that file exists)
// also opens every sealed tensor and checks its plaintext against the manifest's hashes
// and root hash; without it, sealed tensors are checked by their sealed bytes (their
// SHA-256 is chained through the manifest) and the output says how many were not opened.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/files.h"
#include "core/log.h"
#include "storage/notary.h"
#include "storage/store_query.h"
#include "storage/store_key.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

using storage::json;

struct AuditArgs {
  std::string since_file, public_key, out_file, receipt_file, store_key;
  bool as_json = false;
};

// A file the user named.
Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid_argument("cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A public key as a user gives it: 64 hex digits, PEM text, or a file holding either
// (such as the coordinator's KEYFILE.pub).
Result<std::string> read_public_key(const std::string& arg) {
  std::string key = arg;
  if (arg.size() != 64 && arg.find("BEGIN PUBLIC KEY") == std::string::npos) {
    auto text = read_text(arg);
    if (!text.is_ok()) {
      return invalid_argument("--public-key '" + arg +
                              "' is neither 64 hex digits, a PEM key, nor a readable file");
    }
    key = text.value();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  }
  auto id = key_id_of(key);
  if (!id.is_ok()) return invalid_argument("--public-key: " + id.status().message());
  return key;
}

// Recomputes everything CustodyStore::verify() covers; with since_file, also proves that the
// store's logs extend every head kept there (signed by public_key, or by the key the file
// names). From the store's files with --store, else by the coordinator on its store (the
// operator's own check: an auditor who does not trust the operator verifies a copy of the
// store, such as a backup, with --store).
Status verify_store(Session& s, const AuditArgs& a) {
  std::string kept_heads, key;
  if (!a.since_file.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(kept_heads, read_text(a.since_file));
    if (kept_heads.empty()) return bad_input(invalid_argument("the head file '" + a.since_file + "' is empty"));
  }
  if (!a.public_key.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(key, read_public_key(a.public_key));
  }
  const std::string argument = storage::verify_argument(kept_heads, key);
  Result<json> answer = json();
  std::string where = "the coordinator's custody store";
  if (!s.store_path.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(auto store, s.open_store());
    // The key is optional: an auditor without it still checks every byte as stored.
    const std::string key_file = a.store_key.empty() ? storage::default_store_key_path(s.store_path) : a.store_key;
    CUSTODY_ASSIGN_OR_RETURN(auto keys, bad_input(storage::load_store_keys_if_present(key_file)));
    if (!keys && !a.store_key.empty()) return bad_input(not_found("no store key file at '" + a.store_key + "'"));
    store->set_keys(keys);
    answer = storage::run_query(*store, "verify", argument);
    where = "custody store " + s.store_path;
  } else {
    answer = ask_store(s, "verify", argument);
  }
  if (!answer.is_ok()) {
    if (answer.status().code() == ErrorCode::kInvalidArgument) return bad_input(answer.status());
    return refused(answer.status());
  }
  const json& report = answer.value();
  const bool ok = report.value("ok", false);
  if (a.as_json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else if (ok) {
    std::printf("%s: ok (%llu records, %llu index entries and %llu checkpoint tensors verified)\n", where.c_str(),
                report.value("records_checked", 0ULL), report.value("index_entries_checked", 0ULL),
                report.value("tensors_checked", 0ULL));
    if (report.value("tensors_opened_with_store_key", 0ULL) > 0) {
      std::printf("  %llu sealed tensors opened with the store key and checked against their hashes\n",
                  report.value("tensors_opened_with_store_key", 0ULL));
    }
    for (const auto& h : report.value("heads", json::array())) {
      std::printf("  %-8s %s, Merkle root %s\n", h.value("log", std::string()).c_str(),
                  records(h.value("size", 0ULL)).c_str(), h.value("root", std::string()).c_str());
    }
    for (const auto& line : report.value("extends_kept_heads", json::array())) {
      std::printf("  %s\n", line.get<std::string>().c_str());
    }
    const std::string notes = report.value("notes", std::string());
    if (!notes.empty()) std::printf("  note: %s\n", notes.c_str());
  } else {
    std::printf("%s: FAILED: %s\n", where.c_str(), report.value("problem", std::string()).c_str());
  }
  return ok ? Status::ok() : reported(ErrorCode::kDataLoss);
}

// Prints the signed heads; with --out, appends them to that file as one line (a head file).
Status head(Session& s, const AuditArgs& a) {
  const std::string& out_file = a.out_file;
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::AuditHeadReply>("", msg::AuditHeadRequest{}));
  json heads = json::parse(reply.json, nullptr, false);
  if (!heads.is_object()) return no_answer(data_loss("the coordinator sent heads this client cannot read"));
  if (!out_file.empty()) CUSTODY_RETURN_IF_ERROR(bad_input(append_line_synced(out_file, heads.dump())));
  print(a.as_json ? as_json_text(heads) : signed_heads_text(heads));
  if (!a.as_json && !out_file.empty()) std::printf("appended to %s\n", out_file.c_str());
  return Status::ok();
}

// Checks every receipt in the receipt file (one JSON object per line, or one JSON object)
// against the public key, offline; with a store, also that the store still holds each
// record and extends each receipt's head.
Status prove(const std::string& receipt_file, const std::string& public_key_arg,
             const storage::CustodyStore* store, bool as_json) {
  CUSTODY_ASSIGN_OR_RETURN(const std::string key, read_public_key(public_key_arg));
  CUSTODY_ASSIGN_OR_RETURN(const std::string text, read_text(receipt_file));
  // One receipt as a JSON document, or several, one per line (`predict --receipt`).
  std::vector<json> receipts;
  json whole = json::parse(text, nullptr, false);
  if (!whole.is_discarded() && whole.is_object()) {
    receipts.push_back(whole);
  } else {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json r = json::parse(line, nullptr, false);
      // A line that is not JSON is a damaged receipt: it proves nothing.
      receipts.push_back(r.is_discarded() ? json("damaged") : r);
    }
  }
  if (receipts.empty()) return invalid_argument("'" + receipt_file + "' holds no receipt");
  json results = json::array();
  bool all_ok = true;
  for (const auto& r : receipts) {
    auto facts = storage::check_receipt(r, key);
    Status s = facts.status();
    if (s.is_ok() && store) s = storage::check_receipt_in_store(r, *store);
    all_ok = all_ok && s.is_ok();
    const std::string id = r.is_object() ? r.value("id", std::string("?")) : std::string("?");
    if (as_json) {
      json row{{"id", id}, {"ok", s.is_ok()}, {"problem", s.is_ok() ? "" : s.message()}};
      if (facts.is_ok()) {
        row["log"] = facts->log;
        row["record"] = facts->seq;
        row["tree_size"] = facts->tree_size;
        row["key_id"] = facts->key_id;
        row["signed_at"] = iso8601_utc(facts->head_time_ms);
      }
      results.push_back(row);
    } else if (s.is_ok()) {
      const json& b = facts->body;
      std::printf(
          "%s: ok: %s record %llu (%s by %s, purpose %s) is in the %s log of %s whose head key "
          "%s signed at %s%s\n",
          id.c_str(), facts->log.c_str(), static_cast<unsigned long long>(facts->seq),
          b.value("action", std::string("?")).c_str(), b.value("principal", std::string("?")).c_str(),
          b.value("purpose", std::string("none given")).c_str(), facts->log.c_str(),
          records(facts->tree_size).c_str(), facts->key_id.c_str(), iso8601_utc(facts->head_time_ms).c_str(),
          store ? "; the store still holds it and extends that head" : "");
    } else {
      std::printf("%s: FAILED: %s\n", id.c_str(), s.message().c_str());
    }
  }
  if (as_json) std::printf("%s\n", results.dump(2).c_str());
  return all_ok ? Status::ok() : reported(ErrorCode::kDataLoss);
}

Status prove_receipts(Session& s, const AuditArgs& a) {
  // Offline by default: the receipt and the key are all it needs. With --store, the
  // store must also still hold each record and extend each receipt's head.
  std::unique_ptr<storage::CustodyStore> against;
  if (!s.store_path.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(
        against, refused(storage::CustodyStore::open(s.store_path, storage::OpenMode::kReadShadow)));
  }
  return prove(a.receipt_file, a.public_key, against.get(), a.as_json);
}

}  // namespace

void add_audit_commands(CommandSet& commands) {
  auto a = std::make_shared<AuditArgs>();
  CLI::App* audit = commands.add_group("audit", "check the custody store");

  auto* verify_cmd =
      commands.add(*audit, "verify", "recompute every hash chain, index, Merkle tree and checkpoint hash",
                   [a](Session& s) { return verify_store(s, *a); });
  add_json_flag(verify_cmd, a->as_json);
  verify_cmd->add_option(
      "--since", a->since_file,
      "a head file kept earlier (`audit head --out`, the coordinator's head_file): prove the store "
      "extends it");
  verify_cmd->add_option("--public-key", a->public_key,
                         "the key the kept heads must be signed by (hex, PEM or a file)");
  verify_cmd->add_option("--store-key", a->store_key,
                         "the store key file: open every sealed tensor and check its plaintext too (default "
                         "<store>.store-key, if it exists)");

  auto* head_cmd = commands.add(*audit, "head", "the store's Merkle log heads, signed by the coordinator",
                                [a](Session& s) { return head(s, *a); });
  head_cmd->add_option("--out", a->out_file, "append them to this file, to keep (one line per call)");
  add_json_flag(head_cmd, a->as_json);

  auto* prove_cmd = commands.add(*audit, "prove", "check receipts of predictions or exports, offline",
                                 [a](Session& s) { return prove_receipts(s, *a); });
  prove_cmd
      ->add_option("RECEIPT_FILE", a->receipt_file,
                   "receipts (`predict --receipt`, `export`'s FILE.receipt.json)")
      ->required();
  prove_cmd
      ->add_option("--public-key", a->public_key,
                   "the coordinator's public key (hex, PEM or its KEYFILE.pub)")
      ->required();
  add_json_flag(prove_cmd, a->as_json);
}

}  // namespace custody::cli
