#include "actors/records_fetcher.h"

#include <map>
#include <optional>
#include <thread>

#include "core/blob_dir.h"
#include "actors/outgoing.h"
#include "core/log.h"
#include "protocols/codec.h"

namespace custody::actors {

RecordsFetcher::RecordsFetcher(RecordsFetcherOptions options, Connect connect, std::function<bool()> stopped)
    : options_(std::move(options)), connect_(std::move(connect)), stopped_(std::move(stopped)) {}
RecordsFetcher::~RecordsFetcher() { close(); }
RecordsFetcher::RecordsFetcher(RecordsFetcher&&) noexcept = default;

std::string RecordsFetcher::source_name() const {
  return fetched_ ? "the coordinator at " + options_.coordinator : "the records cache " + options_.cache_dir;
}

Result<std::vector<uint8_t>> RecordsFetcher::get(const std::string& sha256, const std::string& what) {
  if (options_.cache_dir.empty()) {
    return failed_precondition("this worker has no records cache to fetch " + what + " into (--data-cache DIR)");
  }
  CUSTODY_ASSIGN_OR_RETURN(BlobDir cache, BlobDir::open(options_.cache_dir));
  bool damaged = false;
  CUSTODY_ASSIGN_OR_RETURN(auto cached, cache.read(sha256, &damaged));
  if (damaged) {
    log(LogLevel::kWarn, options_.node_id, "the cached copy of " + what + " (" + cache.path_of(sha256) +
                                               ") no longer matches its SHA-256: removed, fetching it again");
  }
  used_.insert(sha256);
  if (cached) return std::move(cached).value();
  CUSTODY_RETURN_IF_ERROR(fetch(sha256, what));
  CUSTODY_ASSIGN_OR_RETURN(cached, cache.read(sha256));
  if (!cached) return data_loss("the records cache lost " + what + " right after they were fetched into it");
  trim(cache);
  return std::move(cached).value();
}

void RecordsFetcher::trim(const BlobDir& cache) {
  if (options_.cache_max_bytes == 0) return;
  auto trimmed = cache.trim(options_.cache_max_bytes, used_);
  // A cache that cannot be trimmed still serves this task: the operator hears of it.
  if (!trimmed.is_ok()) {
    log(LogLevel::kWarn, options_.node_id, "cannot trim the records cache: " + trimmed.status().message());
    return;
  }
  if (!trimmed->removed.empty()) {
    log(LogLevel::kInfo, options_.node_id,
        "records cache " + cache.dir() + " trimmed from " + std::to_string(trimmed->bytes_before) + " to " +
            std::to_string(trimmed->bytes_after) + " bytes (limit " + std::to_string(options_.cache_max_bytes) +
            "): removed the " + std::to_string(trimmed->removed.size()) + " records files used least recently");
  }
  if (trimmed->bytes_after > options_.cache_max_bytes) {
    log(LogLevel::kWarn, options_.node_id,
        "the records this task uses take " + std::to_string(trimmed->bytes_after) + " bytes, more than the cache's " +
            "limit of " + std::to_string(options_.cache_max_bytes) + " (--data-cache-max-mib): kept while in use");
  }
}

Status RecordsFetcher::send(const msg::FetchRecords& request) {
  msg::Envelope e;
  e.sender = options_.node_id;
  e.job_id = options_.job_id;
  e.attempt = options_.attempt;
  e.token = options_.token;
  e.request_id = next_request_id_++;
  e.body = request;
  // A DEALER that has no connection yet refuses at once: try again until the deadline.
  const auto deadline = SteadyClock::now() + options_.timeout;
  for (;;) {
    Status s = socket_->send("", msg::encode(e));
    if (s.is_ok() || s.code() != ErrorCode::kUnavailable) return s;
    if (stopped_()) return Status(ErrorCode::kCancelled, "stopped");
    if (SteadyClock::now() > deadline) {
      return deadline_exceeded("could not reach the coordinator at " + options_.coordinator + " to fetch records within " +
                               std::to_string(options_.timeout.count()) + " ms: " + s.message());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status RecordsFetcher::fetch(const std::string& sha256, const std::string& what) {
  if (!socket_) {
    CUSTODY_ASSIGN_OR_RETURN(socket_, connect_());
  }
  CUSTODY_ASSIGN_OR_RETURN(BlobDir cache, BlobDir::open(options_.cache_dir));
  const std::string from = "the coordinator at " + options_.coordinator;
  const auto started = SteadyClock::now();
  std::optional<BlobDir::Writer> writer;
  uint64_t total = 0, asked = 0;
  std::map<uint64_t, std::vector<uint8_t>> early;  // chunks that came before the one to write next
  auto ask_more = [&]() -> Status {
    // The first request learns the size; then up to `window` requests are in flight.
    while (writer && asked < total && (asked - writer->written()) < uint64_t(options_.window) * options_.chunk_bytes) {
      const auto length = static_cast<uint32_t>(std::min<uint64_t>(options_.chunk_bytes, total - asked));
      CUSTODY_RETURN_IF_ERROR(send({sha256, asked, length}));
      asked += length;
    }
    return Status::ok();
  };
  CUSTODY_RETURN_IF_ERROR(send({sha256, 0, options_.chunk_bytes}));
  asked = options_.chunk_bytes;
  auto deadline = SteadyClock::now() + options_.timeout;
  while (!writer || writer->written() < total) {
    if (stopped_()) return Status(ErrorCode::kCancelled, "stopped");
    if (SteadyClock::now() > deadline) {
      return deadline_exceeded(from + " did not answer for " + std::to_string(options_.timeout.count()) +
                               " ms while " + what + " were fetched (" +
                               std::to_string(writer ? writer->written() : 0) + " of " + std::to_string(total) +
                               " bytes in)");
    }
    CUSTODY_ASSIGN_OR_RETURN(auto in, socket_->receive(std::chrono::milliseconds(100)));
    if (!in) continue;
    auto answer = msg::decode(in->bytes.data(), in->bytes.size());
    if (!answer.is_ok()) return data_loss(from + " sent a bad answer: " + answer.status().message());
    if (const auto* e = answer->get<msg::Error>()) {
      return Status(e->code, from + " refused " + what + ": " + e->message);
    }
    auto* chunk = std::get_if<msg::RecordsChunk>(&answer.value().body);
    if (!chunk || chunk->sha256 != sha256) continue;  // an answer to an earlier, abandoned fetch
    deadline = SteadyClock::now() + options_.timeout;
    if (!writer) {
      if (chunk->total_bytes == 0) return data_loss(from + " says " + what + " are empty");
      total = chunk->total_bytes;
      CUSTODY_ASSIGN_OR_RETURN(auto w, cache.write(sha256, total, from));
      writer.emplace(std::move(w));
      asked = std::min<uint64_t>(asked, total);
    }
    if (chunk->total_bytes != total || chunk->offset >= total || chunk->data.empty() ||
        chunk->offset + chunk->data.size() > total) {
      return data_loss(from + " sent a chunk of " + what + " that does not fit them (offset " +
                       std::to_string(chunk->offset) + ", " + std::to_string(chunk->data.size()) + " bytes of " +
                       std::to_string(chunk->total_bytes) + ")");
    }
    bytes_fetched_ += chunk->data.size();
    if (chunk->offset >= writer->written()) early[chunk->offset] = std::move(chunk->data);
    for (auto it = early.find(writer->written()); it != early.end(); it = early.find(writer->written())) {
      CUSTODY_RETURN_IF_ERROR(writer->append(it->second.data(), it->second.size()));
      early.erase(it);
    }
    CUSTODY_RETURN_IF_ERROR(ask_more());
  }
  CUSTODY_RETURN_IF_ERROR(writer->commit());
  fetched_ = true;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count();
  log(LogLevel::kInfo, options_.node_id, "fetched " + what + " (" + std::to_string(total) + " bytes) from " +
                                             options_.coordinator + " in " + std::to_string(ms) +
                                             " ms, SHA-256 verified, kept in " + cache.path_of(sha256));
  return Status::ok();
}

}  // namespace custody::actors
