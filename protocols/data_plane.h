// The data plane's sealing: which keys exist, who holds which, and what each seal binds
// (docs/ARCHITECTURE.md, "The data plane: keys and sealing"). The coordinator, the
// parameter servers and the workers all take them from here, so the two ends of a seal
// cannot disagree.
//
// Keys: one random AES-256 key per job attempt, made by the coordinator when it places the
// attempt and dropped when the attempt ends; the rest are HKDF-SHA256 derivations of it
// (core/aead.h), handed out in assignKeyRange and assignTask:
//
//   attempt key   K                                  the coordinator only
//   rank key      K_r = K.derive("... rank r")       the worker node that runs rank r
//   push key      K_r.derive("server [b, e)")        the server of keys [b, e): checks rank
//                                                    r's pushes and pulls there
//   replies key   K_p = K.derive("... replies")      every worker of the attempt
//   reply key     K_p.derive("server [b, e)")        the server of keys [b, e): seals its
//                                                    params replies
//
// Why this shape: a worker holds only its own rank's key, so it can neither push nor pull
// as another rank, and a server accepts a rank's updates only from the node the
// coordinator gave that rank's key. A server holds only keys bound to its own range, so it
// cannot pass for a worker at another server, nor for another server. The replies key is
// shared by the attempt's workers because a BSP step ends with the same values for every
// worker: the server seals them once and every reply of the step carries that one seal
// (a seal per rank would cost one more pass over the block per worker per step). The
// price: a worker of the job that can also inject into another worker's connection could
// forge replies to it; it can read nothing it is not given anyway.
//
// What a seal binds (its associated data, authenticated and not encrypted): the job, the
// attempt, the server's range and, for a push, the rank, the step, the samples and the
// base version; for a pull, the rank and the request id; for params, the version and the
// request answered (the step a push was of, or the pull's rank and request id). A sealed
// message therefore cannot be replayed into another job, attempt, server, rank or step.
//
// A parameter block is sealed in chunks of kChunkBytes (the last one shorter), each under
// a nonce and tag of its own, its associated data the block's and "chunk i of k": so the
// chunks seal and open on several cores at once (a ForkJoin), and none can be moved,
// dropped or repeated. A block of n bytes is n + k * kAeadOverhead bytes sealed.
// Thread-safety: pure functions (a ForkJoin given is used by one call at a time).
#pragma once

#include <cstdint>
#include <string>

#include "core/aead.h"
#include "protocols/floats.h"
#include "protocols/fork_join.h"

namespace custody::data_plane {

Result<AeadKey> rank_key(const AeadKey& attempt_key, uint32_t rank);
Result<AeadKey> replies_key(const AeadKey& attempt_key);
// A rank's push key or a server's reply key: `key` bound to the server of keys [begin, end).
Result<AeadKey> server_key(const AeadKey& key, uint64_t begin, uint64_t end);

std::string push_aad(const std::string& job_id, uint32_t attempt, uint32_t rank, uint64_t step,
                     uint64_t begin, uint64_t end, uint32_t samples, uint64_t base_version);
std::string pull_aad(const std::string& job_id, uint32_t attempt, uint32_t rank, uint64_t begin, uint64_t end,
                     uint64_t request_id);
// The reply to a push of `step` (every reply of a BSP step shares it), or, with
// `pull_rank` set, to that rank's pull `request_id`.
std::string params_aad(const std::string& job_id, uint32_t attempt, uint64_t begin, uint64_t end,
                       uint64_t version, uint64_t step);
std::string pull_params_aad(const std::string& job_id, uint32_t attempt, uint64_t begin, uint64_t end,
                            uint64_t version, uint32_t rank, uint64_t request_id);

inline constexpr size_t kChunkBytes = size_t(128) << 10;
// The size of `plain_bytes` sealed.
size_t sealed_size(size_t plain_bytes);

// `count` floats sealed into a new buffer (padded so the encoder references it), on the
// threads of `parallel` if given.
Result<msg::SharedBytes> seal_floats(const AeadKey& key, const float* values, size_t count,
                                     std::string_view aad, ForkJoin* parallel = nullptr);
// The same into `out`, which holds sealed_size(count * 4) bytes (a message's room for it:
// codec.h encode_in_place).
Status seal_floats_into(const AeadKey& key, const float* values, size_t count, std::string_view aad,
                        uint8_t* out, ForkJoin* parallel = nullptr);
// Opens a sealed block of `count` floats into `out`. Errors: kInvalidArgument for a block
// that is not the size of `count` sealed floats; kDataLoss when a chunk does not verify
// (another key, another purpose, altered, moved or missing bytes). `out` is unspecified on
// error.
Status open_floats(const AeadKey& key, const msg::SharedBytes& sealed, size_t count, std::string_view aad,
                   float* out, ForkJoin* parallel = nullptr);

// Whether only this host can reach a ZeroMQ endpoint: tcp:// on a loopback address
// (127.0.0.0/8, ::1, localhost), ipc:// or inproc://. A wildcard ("*", 0.0.0.0) or any other
// address is reachable from other hosts.
bool is_loopback_endpoint(const std::string& endpoint);

// A pull's seal: a tag over nothing, under the rank's push key (kAeadOverhead bytes).
Result<std::string> seal_pull(const AeadKey& key, std::string_view aad);
Status open_pull(const AeadKey& key, const std::string& seal, std::string_view aad);

}  // namespace custody::data_plane
