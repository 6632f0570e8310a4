// custody models | checkpoints JOB | usage MODEL: the custody store's models, a job's
// checkpoints, and who used a model. Read from the store (storage/queries.h); usage goes
// through the coordinator instead when a token is given and no store is named, so that a
// caller sees only what its role may see.
//
// custody store backup DIR | backups DIR | restore DIR --store PATH | rekey --store PATH:
// the store at rest (docs/ARCHITECTURE.md, "The store at rest"). A backup goes through the
// coordinator when one runs on the store (it holds the store's lock; storeBackup, admin
// only), and is taken locally otherwise; a restore and a rekey need the store to
// themselves. Backups hold sealed tensors only: the store key is never copied into them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/log.h"
#include "storage/queries.h"
#include "storage/store_key.h"
#include "storage/store_rekey.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

// usage --limit
constexpr IntRange kUsageLimitRange{0, UINT32_MAX};

struct StoreArgs {
  std::string id, since, until;
  int64_t usage_limit = storage::kUsageListedByDefault;
  bool as_json = false;
};

// "2026-11-24" or "2026-11-24T10:15:00" (UTC) as ms since the epoch; "" as 0 (open).
Result<int64_t> parse_utc(const std::string& text) {
  if (text.empty()) return int64_t{0};
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end) {
    tm = std::tm{};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (!end || *end)
    return invalid_argument("'" + text + "' is not a UTC time like 2026-11-24 or 2026-11-24T10:15:00");
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

Status usage(Session& s, const StoreArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(const int64_t since_ms, parse_utc(a.since));
  CUSTODY_ASSIGN_OR_RETURN(const int64_t until_ms, parse_utc(a.until));
  const auto limit = static_cast<uint32_t>(a.usage_limit);
  if (!s.store_path.empty()) {  // the store's files: everyone's usage
    CUSTODY_ASSIGN_OR_RETURN(auto store, s.open_store());
    return print_answer(storage::usage(*store, a.id, "", since_ms, until_ms, limit), a.as_json, usage_table);
  }
  // The coordinator shows a caller only its own calls, unless it is an auditor or an admin.
  CUSTODY_ASSIGN_OR_RETURN(
      auto reply, s.client.ask<msg::UsageReply>("", msg::UsageRequest{a.id, since_ms, until_ms, limit}));
  const json answer = json::parse(reply.json, nullptr, false);
  if (answer.is_discarded())
    return no_answer(data_loss("the coordinator sent usage this client cannot read"));
  return print_answer(answer, a.as_json, usage_table);
}

namespace fs = std::filesystem;

// store backup --max-mib-per-s, --max-seconds; restore --backup
constexpr IntRange kBackupRateMib{0, 1 << 20};
constexpr IntRange kBackupSeconds{1, 7 * 24 * 3600};
constexpr IntRange kBackupId{0, UINT32_MAX};

struct AtRestArgs {
  std::string dir, store_key, keep_retired;
  int64_t mib_per_s = 0, max_seconds = 24 * 3600, backup_id = 0;
  bool force = false, as_json = false;
};

std::string size_text(uint64_t bytes) {
  char buf[32];
  if (bytes < (1u << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", bytes / 1024.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / 1048576.0);
  }
  return buf;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "none" : s;
}

std::string key_file_of(const Session& s, const AtRestArgs& a) {
  return a.store_key.empty() ? storage::default_store_key_path(s.store_path) : a.store_key;
}

// A store that must exist: these commands never create one by opening it.
Status need_store(const Session& s, const std::string& command) {
  if (s.store_path.empty()) return invalid_argument("which custody store? give --store PATH to `" + command + "`");
  std::error_code ec;
  if (!fs::exists(fs::path(s.store_path) / "CURRENT", ec)) {
    return not_found("no custody store at '" + s.store_path + "' (check --store)");
  }
  return Status::ok();
}

// What a backup is and is not, said with every backup made.
std::string key_note(const std::vector<std::string>& versions, const std::string& key_file) {
  if (versions.empty()) {
    return "  its tensors are stored in clear (the store was written before encryption at rest; `custody store "
           "rekey` seals them): treat the backup as the weights themselves\n";
  }
  return "  it holds the store's records and its tensors sealed under store key " + joined(versions) +
         ", never the key itself: keep the key file (" + key_file +
         ") apart from the backup; without it the backup's weights cannot be read\n";
}

json backup_json(uint32_t id, int64_t taken_at_s, uint64_t bytes, uint32_t files, const std::string& dir,
                 const std::string& store, const std::vector<std::string>& keys, uint64_t elapsed_ms, bool online) {
  return json{{"backup", id},   {"dir", dir},   {"store", store}, {"taken_at", iso8601_utc(taken_at_s * 1000)},
              {"bytes", bytes}, {"files", files}, {"store_keys", keys}, {"elapsed_ms", elapsed_ms},
              {"online", online}, {"holds_store_key", false}};
}

Status print_backup(const json& b, bool as_json, const std::string& key_file) {
  if (as_json) {
    print(as_json_text(b));
    return Status::ok();
  }
  std::printf("backup %u of the custody store %s is complete in %s (%s, %u files, %.1f s%s)\n",
              b["backup"].get<uint32_t>(), b["store"].get<std::string>().c_str(), b["dir"].get<std::string>().c_str(),
              size_text(b["bytes"]).c_str(), b["files"].get<uint32_t>(), b["elapsed_ms"].get<uint64_t>() / 1000.0,
              b["online"].get<bool>() ? ", taken by the running coordinator" : "");
  print(key_note(b["store_keys"].get<std::vector<std::string>>(), key_file));
  return Status::ok();
}

Status backup(Session& s, const AtRestArgs& a) {
  std::error_code ec;
  const std::string dir = fs::absolute(a.dir, ec).lexically_normal().string();
  storage::BackupOptions options;
  options.rate_limit_bytes_per_s = static_cast<uint64_t>(a.mib_per_s) << 20;
  if (!s.store_path.empty()) {
    CUSTODY_RETURN_IF_ERROR(bad_input(need_store(s, "store backup")));
    auto local = storage::CustodyStore::open(s.store_path, storage::OpenMode::kReadWrite);
    if (local.is_ok()) {
      const auto started = std::chrono::steady_clock::now();
      CUSTODY_ASSIGN_OR_RETURN(auto taken, refused(local.value()->backup(dir, options)));
      CUSTODY_ASSIGN_OR_RETURN(auto versions, refused(local.value()->key_versions()));
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      return print_backup(backup_json(taken.id, taken.time_s, taken.bytes, taken.files, dir, s.store_path, versions,
                                      static_cast<uint64_t>(ms.count()), false),
                          a.as_json, key_file_of(s, a));
    }
    // The coordinator holds the store: it takes the backup, beside its training.
    if (local.status().code() != ErrorCode::kUnavailable) return refused(local.status());
    CUSTODY_ASSIGN_OR_RETURN(auto status, s.client.ask<msg::StatusReply>("", msg::StatusRequest{false}));
    if (fs::weakly_canonical(status.store_path, ec) != fs::weakly_canonical(s.store_path, ec)) {
      return refused(failed_precondition("the custody store at '" + s.store_path +
                                         "' is in use, but not by the coordinator at " + s.client.address +
                                         " (its store is '" + status.store_path + "')"));
    }
  }
  s.client.timeout = std::max(s.client.timeout, std::chrono::milliseconds(a.max_seconds * 1000));
  CUSTODY_ASSIGN_OR_RETURN(
      auto reply, s.client.ask<msg::StoreBackupReply>("", msg::StoreBackup{dir, options.rate_limit_bytes_per_s}));
  return print_backup(backup_json(reply.backup_id, reply.taken_at_s, reply.bytes, reply.files, reply.dir,
                                  reply.store_path, reply.store_keys, reply.elapsed_ms, true),
                      a.as_json,
                      a.store_key.empty() ? "the coordinator's --store-key, by default <store>.store-key" : a.store_key);
}

Status list_backups(const AtRestArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(auto listing, refused(storage::list_backups(a.dir)));
  json rows = json::array();
  for (const auto& b : listing.backups) {
    json meta = json::parse(b.metadata, nullptr, false);
    rows.push_back({{"backup", b.id},
                    {"taken_at", iso8601_utc(b.time_s * 1000)},
                    {"bytes", b.bytes},
                    {"files", b.files},
                    {"store_keys", meta.is_object() ? meta.value("store_keys", json::array()) : json::array()}});
  }
  if (a.as_json) {
    print(as_json_text({{"dir", a.dir}, {"backups", rows}, {"unfinished_files", listing.unfinished_files}}));
    return Status::ok();
  }
  std::printf("%-7s %-25s %12s %6s  %s\n", "BACKUP", "TAKEN AT", "SIZE", "FILES", "SEALED UNDER STORE KEY");
  for (const auto& r : rows) {
    std::printf("%-7u %-25s %12s %6u  %s\n", r["backup"].get<uint32_t>(), r["taken_at"].get<std::string>().c_str(),
                size_text(r["bytes"]).c_str(), r["files"].get<uint32_t>(),
                joined(r["store_keys"].get<std::vector<std::string>>()).c_str());
  }
  if (rows.empty()) std::printf("(no complete backup)\n");
  if (listing.unfinished_files > 0) {
    std::printf("%llu files of a backup that never completed (one interrupted) are in %s: they are not a backup, and "
                "the next backup there removes them\n",
                static_cast<unsigned long long>(listing.unfinished_files), a.dir.c_str());
  }
  return Status::ok();
}

Status restore(Session& s, const AtRestArgs& a) {
  if (s.store_path.empty()) return bad_input(invalid_argument("where to? give --store PATH to `store restore`"));
  std::string aside;
  CUSTODY_ASSIGN_OR_RETURN(auto info, refused(storage::restore_backup(a.dir, static_cast<uint32_t>(a.backup_id),
                                                                      s.store_path, a.force, &aside)));
  json meta = json::parse(info.metadata, nullptr, false);
  const auto needed = meta.is_object() ? meta.value("store_keys", std::vector<std::string>()) : std::vector<std::string>();
  // The restored store is checked as `custody audit verify` would, with its key if there is one.
  CUSTODY_ASSIGN_OR_RETURN(auto store, refused(storage::CustodyStore::open(s.store_path, storage::OpenMode::kReadShadow)));
  const std::string key_file = key_file_of(s, a);
  CUSTODY_ASSIGN_OR_RETURN(auto keys, bad_input(storage::load_store_keys_if_present(key_file)));
  std::vector<std::string> missing;
  for (const auto& v : needed)
    if (!keys || !keys->find(v)) missing.push_back(v);
  if (keys && missing.empty()) store->set_keys(keys);
  CUSTODY_ASSIGN_OR_RETURN(auto report, refused(store->verify()));
  if (a.as_json) {
    print(as_json_text({{"backup", info.id},
                        {"taken_at", iso8601_utc(info.time_s * 1000)},
                        {"store", s.store_path},
                        {"moved_aside", aside},
                        {"store_keys", needed},
                        {"store_key_file", key_file},
                        {"store_keys_missing", missing},
                        {"verified", report.ok},
                        {"problem", report.problem}}));
  } else {
    std::printf("restored backup %u (taken %s) of %s to %s\n", info.id, iso8601_utc(info.time_s * 1000).c_str(),
                a.dir.c_str(), s.store_path.c_str());
    if (!aside.empty()) std::printf("  the store that was there is now at %s\n", aside.c_str());
    if (report.ok) {
      std::printf("  audit verify: ok (%llu records, %llu index entries and %llu checkpoint tensors verified%s)\n",
                  static_cast<unsigned long long>(report.records_checked),
                  static_cast<unsigned long long>(report.index_entries_checked),
                  static_cast<unsigned long long>(report.blobs_checked),
                  report.tensors_opened > 0 ? ", the sealed ones opened with the store key" : "");
    } else {
      std::printf("  audit verify: FAILED: %s\n", report.problem.c_str());
    }
    if (needed.empty()) {
      std::printf("  its tensors are stored in clear (a store from before encryption at rest)\n");
    } else if (missing.empty()) {
      std::printf("  its tensors are sealed under store key %s, which %s holds\n", joined(needed).c_str(),
                  key_file.c_str());
    } else {
      std::printf("  its tensors are sealed under store key %s: the backup does not hold the key, and %s does not "
                  "hold %s. Copy the original store's key file to %s (or start the coordinator with --store-key "
                  "FILE) before the coordinator starts on this store\n",
                  joined(needed).c_str(), key_file.c_str(), joined(missing).c_str(), key_file.c_str());
    }
  }
  return report.ok ? Status::ok() : reported(ErrorCode::kDataLoss);
}

Status rekey(Session& s, const AtRestArgs& a) {
  CUSTODY_RETURN_IF_ERROR(bad_input(need_store(s, "store rekey")));
  auto opened = storage::CustodyStore::open(s.store_path, storage::OpenMode::kReadWrite);
  if (!opened.is_ok() && opened.status().code() == ErrorCode::kUnavailable) {
    return refused(failed_precondition("the custody store at '" + s.store_path +
                                       "' is in use (a coordinator runs on it): stop it first; a rekey rewrites every "
                                       "checkpoint and must be the store's only writer"));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto store, refused(std::move(opened)));
  const std::string key_file = key_file_of(s, a);
  if (!a.keep_retired.empty()) {
    // The old key, kept where the operator says, for backups taken before this rekey.
    CUSTODY_ASSIGN_OR_RETURN(auto old, bad_input(storage::load_store_keys_if_present(key_file)));
    if (old) CUSTODY_RETURN_IF_ERROR(bad_input(old->save(a.keep_retired)));
  }
  storage::RekeyOptions options;
  options.by = s.principal;
  options.progress = [&](const std::string& step) {
    if (!a.as_json) {
      std::printf("  %s\n", step.c_str());
      std::fflush(stdout);  // one line per step as it lands: what a kill mid-rekey left is visible
    }
    return true;
  };
  if (!a.as_json) std::printf("rekeying the custody store %s (key file %s)\n", s.store_path.c_str(), key_file.c_str());
  CUSTODY_ASSIGN_OR_RETURN(auto r, refused(storage::rekey_store(*store, key_file, options)));
  if (a.as_json) {
    print(as_json_text({{"store", s.store_path},
                        {"store_key_file", key_file},
                        {"store_key", r.store_key},
                        {"retired_store_keys", r.retired},
                        {"resumed", r.resumed},
                        {"new_key_file", r.new_key_file},
                        {"checkpoints", r.checkpoints},
                        {"checkpoints_resealed", r.checkpoints_resealed},
                        {"tensors_resealed", r.tensors_resealed},
                        {"blobs_dropped", r.blobs_dropped}}));
  } else {
    std::printf("rekeyed: %llu of %llu checkpoints (%llu tensors) sealed under store key %s%s; retired %s; %llu old "
                "blobs dropped\n",
                static_cast<unsigned long long>(r.checkpoints_resealed),
                static_cast<unsigned long long>(r.checkpoints), static_cast<unsigned long long>(r.tensors_resealed),
                r.store_key.c_str(), r.resumed ? " (an unfinished rekey, resumed)" : "", joined(r.retired).c_str(),
                static_cast<unsigned long long>(r.blobs_dropped));
    std::printf("  backups taken before this rekey need the retired key to be read%s\n",
                a.keep_retired.empty() ? " (it is gone: --keep-retired-key FILE keeps a copy)"
                                       : (": a copy is in " + a.keep_retired).c_str());
  }
  return Status::ok();
}

}  // namespace

void add_store_commands(CommandSet& commands) {
  auto a = std::make_shared<StoreArgs>();

  auto* models = commands.add("models", "list model versions", [a](Session& s) {
    return print_query(s, a->as_json, "models", "", models_table);
  });
  add_json_flag(models, a->as_json);

  auto* checkpoints = commands.add("checkpoints", "list a job's checkpoints", [a](Session& s) {
    return print_query(s, a->as_json, "checkpoints", a->id, checkpoints_table);
  });
  checkpoints->add_option("JOB", a->id, "job id")->required();
  add_json_flag(checkpoints, a->as_json);

  auto* usage_cmd = commands.add("usage", "who used a model (all versions) or checkpoint, and when",
                                 [a](Session& s) { return usage(s, *a); });
  usage_cmd->add_option("MODEL", a->id, "NAME, NAME@VERSION or a checkpoint id")->required();
  add_json_flag(usage_cmd, a->as_json);
  usage_cmd->add_option("--since", a->since,
                        "only calls from then on (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)");
  usage_cmd->add_option("--until", a->until, "only calls up to then (same forms)");
  add_ranged_option(usage_cmd, "--limit", a->usage_limit, kUsageLimitRange,
                    "list the newest N calls (0: all); the summary covers all");

  auto r = std::make_shared<AtRestArgs>();
  CLI::App* group = commands.add_group("store", "the custody store at rest: backups, restores, key rotation");
  auto* backup_cmd = commands.add(*group, "backup",
                                  "a consistent copy of the store into DIR, taken by the running coordinator (or "
                                  "locally when none runs); sealed tensors only, never the store key",
                                  [r](Session& s) { return backup(s, *r); });
  backup_cmd->add_option("DIR", r->dir, "backup directory (on the coordinator's machine; earlier backups there share "
                                        "unchanged files)")
      ->required();
  add_ranged_option(backup_cmd, "--max-mib-per-s", r->mib_per_s, kBackupRateMib,
                    "how fast the copy may read and write (0: unlimited), to leave the disk to training");
  add_ranged_option(backup_cmd, "--max-seconds", r->max_seconds, kBackupSeconds,
                    "how long to wait for the coordinator's backup to complete");
  backup_cmd->add_option("--store-key", r->store_key, "the store's key file, named in the output");
  add_json_flag(backup_cmd, r->as_json);

  auto* list_cmd = commands.add(*group, "backups", "the complete backups in DIR", [r](Session&) {
    return list_backups(*r);
  });
  list_cmd->add_option("DIR", r->dir, "backup directory")->required();
  add_json_flag(list_cmd, r->as_json);

  auto* restore_cmd = commands.add(*group, "restore",
                                   "a backup of DIR as the store at --store PATH (a new path, or --force), then "
                                   "verified as `audit verify` does",
                                   [r](Session& s) { return restore(s, *r); });
  restore_cmd->add_option("DIR", r->dir, "backup directory")->required();
  add_ranged_option(restore_cmd, "--backup", r->backup_id, kBackupId, "which backup (0: the newest complete one)");
  restore_cmd->add_flag("--force", r->force,
                        "replace a store at PATH (its coordinator stopped): it is moved aside, not deleted");
  restore_cmd->add_option("--store-key", r->store_key,
                          "the key file that opens its tensors (default <PATH>.store-key)");
  add_json_flag(restore_cmd, r->as_json);

  auto* rekey_cmd = commands.add(*group, "rekey",
                                 "a new store key; every tensor sealed again under it, the old key dropped when done "
                                 "(the coordinator stopped; an interrupted rekey resumes)",
                                 [r](Session& s) { return rekey(s, *r); });
  rekey_cmd->add_option("--store-key", r->store_key, "the store's key file (default <store>.store-key)");
  rekey_cmd->add_option("--keep-retired-key", r->keep_retired,
                        "write the key being retired to this file (backups taken before need it)");
  add_json_flag(rekey_cmd, r->as_json);
}

}  // namespace custody::cli
