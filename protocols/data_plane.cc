#include "protocols/data_plane.h"

#include <algorithm>
#include <functional>
#include <vector>

namespace custody::data_plane {
namespace {

// A version in every label and associated data: a later change of the scheme cannot be
// confused with this one.
constexpr const char* kLabel = "custody data plane v1: ";

std::string range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// The job id is the one free-form part: length-prefixed, so no two field lists meet in
// one string.
std::string head(const char* what, const std::string& job_id, uint32_t attempt, uint64_t begin,
                 uint64_t end) {
  return std::string(kLabel) + what + " job " + std::to_string(job_id.size()) + ":" + job_id + " attempt " +
         std::to_string(attempt) + " keys " + range(begin, end);
}

}  // namespace

Result<AeadKey> rank_key(const AeadKey& attempt_key, uint32_t rank) {
  return attempt_key.derive(std::string(kLabel) + "rank " + std::to_string(rank));
}

Result<AeadKey> replies_key(const AeadKey& attempt_key) {
  return attempt_key.derive(std::string(kLabel) + "replies");
}

Result<AeadKey> server_key(const AeadKey& key, uint64_t begin, uint64_t end) {
  return key.derive(std::string(kLabel) + "server " + range(begin, end));
}

std::string push_aad(const std::string& job_id, uint32_t attempt, uint32_t rank, uint64_t step,
                     uint64_t begin, uint64_t end, uint32_t samples, uint64_t base_version) {
  return head("push", job_id, attempt, begin, end) + " rank " + std::to_string(rank) + " step " +
         std::to_string(step) + " samples " + std::to_string(samples) + " base " +
         std::to_string(base_version);
}

std::string pull_aad(const std::string& job_id, uint32_t attempt, uint32_t rank, uint64_t begin, uint64_t end,
                     uint64_t request_id) {
  return head("pull", job_id, attempt, begin, end) + " rank " + std::to_string(rank) + " request " +
         std::to_string(request_id);
}

std::string params_aad(const std::string& job_id, uint32_t attempt, uint64_t begin, uint64_t end,
                       uint64_t version, uint64_t step) {
  return head("params", job_id, attempt, begin, end) + " version " + std::to_string(version) +
         " answers step " + std::to_string(step);
}

std::string pull_params_aad(const std::string& job_id, uint32_t attempt, uint64_t begin, uint64_t end,
                            uint64_t version, uint32_t rank, uint64_t request_id) {
  return head("params", job_id, attempt, begin, end) + " version " + std::to_string(version) +
         " answers the pull of rank " + std::to_string(rank) + " request " + std::to_string(request_id);
}

namespace {

size_t chunks_of(size_t plain_bytes) {
  return plain_bytes == 0 ? 1 : (plain_bytes + kChunkBytes - 1) / kChunkBytes;
}

std::string chunk_aad(std::string_view aad, size_t i, size_t k) {
  return std::string(aad) + " chunk " + std::to_string(i) + " of " + std::to_string(k);
}

// Runs one operation per chunk, on `parallel`'s threads if given; the first error.
Status per_chunk(size_t k, ForkJoin* parallel, const std::function<Status(size_t)>& op) {
  std::vector<Status> results(k, Status::ok());
  std::function<void(size_t)> task = [&](size_t i) { results[i] = op(i); };
  if (parallel) {
    parallel->run(k, task);
  } else {
    for (size_t i = 0; i < k; ++i) task(i);
  }
  for (const Status& s : results)
    if (!s.is_ok()) return s;
  return Status::ok();
}

}  // namespace

size_t sealed_size(size_t plain_bytes) { return plain_bytes + chunks_of(plain_bytes) * kAeadOverhead; }

Status seal_floats_into(const AeadKey& key, const float* values, size_t count, std::string_view aad,
                        uint8_t* out, ForkJoin* parallel) {
  const size_t size = count * sizeof(float), k = chunks_of(size);
  const auto* plain = reinterpret_cast<const uint8_t*>(values);
  return per_chunk(k, parallel, [&](size_t i) {
    const size_t begin = i * kChunkBytes, length = std::min(kChunkBytes, size - begin);
    return seal_into(key, plain + begin, length, chunk_aad(aad, i, k), out + begin + i * kAeadOverhead);
  });
}

Result<msg::SharedBytes> seal_floats(const AeadKey& key, const float* values, size_t count,
                                     std::string_view aad, ForkJoin* parallel) {
  uint8_t* out = nullptr;
  msg::SharedBytes sealed = msg::SharedBytes::make(sealed_size(count * sizeof(float)), &out);
  CUSTODY_RETURN_IF_ERROR(seal_floats_into(key, values, count, aad, out, parallel));
  return sealed;
}

Status open_floats(const AeadKey& key, const msg::SharedBytes& sealed, size_t count, std::string_view aad,
                   float* out, ForkJoin* parallel) {
  const size_t size = count * sizeof(float), k = chunks_of(size);
  if (sealed.size() != sealed_size(size)) {
    return invalid_argument("a sealed block of " + std::to_string(sealed.size()) + " bytes for " +
                            std::to_string(count) + " values (" + std::to_string(sealed_size(size)) +
                            " bytes sealed)");
  }
  auto* plain = reinterpret_cast<uint8_t*>(out);
  return per_chunk(k, parallel, [&](size_t i) {
    const size_t begin = i * kChunkBytes, length = std::min(kChunkBytes, size - begin);
    return open_into(key, sealed.data() + begin + i * kAeadOverhead, length + kAeadOverhead,
                     chunk_aad(aad, i, k), plain + begin);
  });
}

bool is_loopback_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6, endpoint.rfind(':') == std::string::npos || endpoint.rfind(':') < 6
                                            ? std::string::npos
                                            : endpoint.rfind(':') - 6);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad (ZeroMQ resolves names, and would also take a
  // name that resolves to loopback; only these spellings count here).
  if (host.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

Result<std::string> seal_pull(const AeadKey& key, std::string_view aad) {
  std::string out(kAeadOverhead, '\0');
  static const uint8_t kNothing = 0;
  CUSTODY_RETURN_IF_ERROR(seal_into(key, &kNothing, 0, aad, reinterpret_cast<uint8_t*>(out.data())));
  return out;
}

Status open_pull(const AeadKey& key, const std::string& seal, std::string_view aad) {
  if (seal.size() != kAeadOverhead) {
    return invalid_argument("a pull's seal is " + std::to_string(kAeadOverhead) + " bytes, not " +
                            std::to_string(seal.size()));
  }
  uint8_t nothing = 0;
  return open_into(key, reinterpret_cast<const uint8_t*>(seal.data()), seal.size(), aad, &nothing);
}

}  // namespace custody::data_plane
