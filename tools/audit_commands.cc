#include "tools/audit_commands.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/files.h"
#include "core/log.h"
#include "storage/notary.h"

namespace custody::cli {
namespace {

using storage::json;

int fail(const Status& s, int code) {
  std::fprintf(stderr, "custody: %s\n", s.message().c_str());
  return code;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string records(uint64_t n) { return std::to_string(n) + (n == 1 ? " record" : " records"); }


}  // namespace

Result<std::string> read_public_key(const std::string& arg) {
  std::string key = arg;
  if (arg.size() != 64 && arg.find("BEGIN PUBLIC KEY") == std::string::npos) {
    auto text = read_text(arg);
    if (!text.is_ok()) {
      return invalid_argument("--public-key '" + arg + "' is neither 64 hex digits, a PEM key, nor a readable file");
    }
    key = text.value();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  }
  auto id = key_id_of(key);
  if (!id.is_ok()) return invalid_argument("--public-key: " + id.status().message());
  return key;
}

int audit_verify(const storage::CustodyStore& st, const std::string& store_path, const std::string& since_file,
                 const std::string& public_key, bool as_json) {
  auto report = st.verify();
  if (!report.is_ok()) return fail(report.status(), 4);
  std::vector<std::string> extended;
  std::string since_problem;
  if (report->ok && !since_file.empty()) {
    auto text = read_text(since_file);
    if (!text.is_ok()) return fail(text.status(), 2);
    std::string key;
    if (!public_key.empty()) {
      auto k = read_public_key(public_key);
      if (!k.is_ok()) return fail(k.status(), 2);
      key = k.value();
    }
    auto checked = storage::check_kept_heads(text.value(), key, st);
    if (!checked.is_ok()) {
      if (checked.status().code() == ErrorCode::kInvalidArgument) return fail(checked.status(), 2);
      since_problem = "against the heads kept in " + since_file + ": " + checked.status().message();
    } else {
      extended = checked.value();
    }
  }
  const bool ok = report->ok && since_problem.empty();
  const std::string problem = report->ok ? since_problem : report->problem;
  if (as_json) {
    json heads = json::array();
    for (const auto& h : report->heads) heads.push_back({{"log", h.log}, {"size", h.size}, {"root", h.root_hex}});
    std::printf("%s\n", json{{"ok", ok},
                             {"records_checked", report->records_checked},
                             {"tensors_checked", report->blobs_checked},
                             {"index_entries_checked", report->index_entries_checked},
                             {"heads", heads},
                             {"extends_kept_heads", extended},
                             {"notes", report->notes},
                             {"problem", problem}}
                            .dump(2)
                            .c_str());
  } else if (ok) {
    std::printf("custody store %s: ok (%llu records, %llu index entries and %llu checkpoint tensors verified)\n",
                store_path.c_str(), static_cast<unsigned long long>(report->records_checked),
                static_cast<unsigned long long>(report->index_entries_checked),
                static_cast<unsigned long long>(report->blobs_checked));
    for (const auto& h : report->heads) {
      std::printf("  %-8s %s, Merkle root %s\n", h.log.c_str(), records(h.size).c_str(), h.root_hex.c_str());
    }
    for (const auto& line : extended) std::printf("  %s\n", line.c_str());
    if (!report->notes.empty()) std::printf("  note: %s\n", report->notes.c_str());
  } else {
    std::printf("custody store %s: FAILED: %s\n", store_path.c_str(), problem.c_str());
  }
  return ok ? 0 : 5;
}

int audit_head(const std::string& heads_json, const std::string& out_file, bool as_json) {
  json heads = json::parse(heads_json, nullptr, false);
  if (heads.is_discarded()) return fail(data_loss("the coordinator sent heads this client cannot read"), 3);
  if (!out_file.empty()) {
    Status s = append_line_synced(out_file, heads.dump());
    if (!s.is_ok()) return fail(s, 2);
  }
  if (as_json) {
    std::printf("%s\n", heads.dump(2).c_str());
    return 0;
  }
  std::printf("signed by key %s (public key %s) at %s\n", heads.value("key_id", std::string()).c_str(),
              heads.value("public_key", std::string()).c_str(), iso8601_utc(heads.value("time_ms", int64_t{0})).c_str());
  for (const auto& h : heads.value("heads", json::array())) {
    std::printf("  %-8s %s, root %s\n", h.value("log", std::string()).c_str(),
                records(h.value("size", uint64_t{0})).c_str(), h.value("root", std::string()).c_str());
  }
  if (!out_file.empty()) std::printf("appended to %s\n", out_file.c_str());
  return 0;
}

int audit_prove(const std::string& receipt_file, const std::string& public_key_arg,
                const storage::CustodyStore* store, bool as_json) {
  auto key = read_public_key(public_key_arg);
  if (!key.is_ok()) return fail(key.status(), 2);
  auto text = read_text(receipt_file);
  if (!text.is_ok()) return fail(text.status(), 2);
  // One receipt as a JSON document, or several, one per line (`predict --receipt`).
  std::vector<json> receipts;
  json whole = json::parse(text.value(), nullptr, false);
  if (!whole.is_discarded() && whole.is_object()) {
    receipts.push_back(whole);
  } else {
    std::istringstream lines(text.value());
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json r = json::parse(line, nullptr, false);
      // A line that is not JSON is a damaged receipt: it proves nothing.
      receipts.push_back(r.is_discarded() ? json("damaged") : r);
    }
  }
  if (receipts.empty()) return fail(invalid_argument("'" + receipt_file + "' holds no receipt"), 2);
  json results = json::array();
  bool all_ok = true;
  for (const auto& r : receipts) {
    auto facts = storage::check_receipt(r, key.value());
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
      std::printf("%s: ok: %s record %llu (%s by %s, purpose %s) is in the %s log of %s whose head key "
                  "%s signed at %s%s\n",
                  id.c_str(), facts->log.c_str(), static_cast<unsigned long long>(facts->seq),
                  b.value("action", std::string("?")).c_str(), b.value("principal", std::string("?")).c_str(),
                  b.value("purpose", std::string("none given")).c_str(), facts->log.c_str(),
                  records(facts->tree_size).c_str(), facts->key_id.c_str(),
                  iso8601_utc(facts->head_time_ms).c_str(), store ? "; the store still holds it and extends that head" : "");
    } else {
      std::printf("%s: FAILED: %s\n", id.c_str(), s.message().c_str());
    }
  }
  if (as_json) std::printf("%s\n", results.dump(2).c_str());
  return all_ok ? 0 : 5;
}

}  // namespace custody::cli
