// How a worker's trainer comes by the records of its task when the node lacks the data
// set's files (data shipping; docs/ARCHITECTURE.md, "Data shipping"): from the node's
// records cache (core/blob_dir.h, by SHA-256) if a whole, matching copy is there, else
// from the coordinator, in chunks, over a connection of the trainer's own to the
// coordinator's socket (CurveZMQ with the node's key, or its token, like every other
// control-plane message). A chunk is written to the cache's temporary file as it arrives
// and hashed on the way, so the records are never held twice and a whole fetch is held to
// the SHA-256 the task names before it is kept or trained on; bytes that do not match are
// refused, naming the coordinator they came from. A few chunks are asked for at once, so a
// fetch is not one round trip per chunk. Every wait has a deadline and checks `stopped`.
// Thread-safety: none; one trainer's thread owns a fetcher and its socket.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "protocols/messages.h"
#include "protocols/transport.h"

namespace custody {
class BlobDir;  // core/blob_dir.h
}  // namespace custody

namespace custody::actors {

struct RecordsFetcherOptions {
  std::string cache_dir;     // the node's records cache (PeerNodeConfig::data_cache); required
  std::string coordinator;   // its address, named in messages and in the lineage
  std::string node_id, token, job_id;  // who asks (the envelope's sender, token), for which job
  uint32_t attempt = 0;                // and attempt: the coordinator answers only its current one
  uint32_t chunk_bytes = uint32_t(1) << 20;  // Default: 1 MiB a request
  uint32_t window = 4;                       // requests in flight. Default: 4
  std::chrono::milliseconds timeout{60000};  // the longest wait for one answer. Default: 60 s
  // After a fetch, the cache is trimmed to this many bytes, least recently used records
  // first, never those this fetcher has handed out (its task's). 0: no limit.
  uint64_t cache_max_bytes = 0;
};

class RecordsFetcher {
 public:
  using Connect = std::function<Result<std::unique_ptr<transport::Socket>>()>;
  // `connect` opens the DEALER to the coordinator when the first fetch needs it.
  RecordsFetcher(RecordsFetcherOptions options, Connect connect, std::function<bool()> stopped);
  ~RecordsFetcher();
  RecordsFetcher(RecordsFetcher&&) noexcept;

  // The records whose SHA-256 is `sha256`, checked against it: from the cache, else
  // fetched. `what` names them in errors ("training images of records [0, 30000)").
  // Errors: the coordinator's refusal (its message), deadline_exceeded when it does not
  // answer, data_loss for bytes that do not match (naming the coordinator), cancelled.
  Result<std::vector<uint8_t>> get(const std::string& sha256, const std::string& what);

  // What the gets so far came from: kFetched if any was fetched, else kCache.
  msg::ShardSource source() const { return fetched_ ? msg::ShardSource::kFetched : msg::ShardSource::kCache; }
  // Where: the coordinator's address (fetched), or the cache directory.
  std::string source_name() const;
  uint64_t bytes_fetched() const { return bytes_fetched_; }
  // Closes the connection to the coordinator (a later get opens another).
  void close() {
    if (socket_) socket_->close();
    socket_.reset();
  }

 private:
  Status fetch(const std::string& sha256, const std::string& what);
  // Holds the cache to options_.cache_max_bytes after a fetch (logged; never fatal).
  void trim(const BlobDir& cache);
  Status send(const msg::FetchRecords& request);
  RecordsFetcherOptions options_;
  Connect connect_;
  std::function<bool()> stopped_;
  std::unique_ptr<transport::Socket> socket_;
  uint64_t next_request_id_ = 1;
  bool fetched_ = false;
  uint64_t bytes_fetched_ = 0;
  std::set<std::string> used_;  // what get() handed out: never trimmed away
};

}  // namespace custody::actors
