// Cap'n Proto encoding and decoding of Envelopes, with limits.
//
// decode() is the one place where bytes from the network become values. It never throws
// and never trusts its input: a size that is not a whole number of 8-byte words, a
// message larger than the cap, too deep or too many pointers (ReaderOptions limits), a
// protocol version it does not speak, an unknown body or a tensor whose byte length is
// not a whole number of floats all come back as an error naming what was wrong.
// Thread-safety: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/error.h"
#include "protocols/bytes.h"
#include "protocols/messages.h"

namespace custody::msg {

struct DecodeLimits {
  // Default: 256 MiB; a worker's push of a 64M-parameter range fits.
  size_t max_bytes = size_t(256) << 20;
  // Cap'n Proto's traversal limit in 8-byte words; Default: max_bytes / 8 * 2.
  uint64_t traversal_words = 0;
  int nesting_limit = 16;
};

Bytes encode(const Envelope& envelope);
// Encodes `envelope`, a push or params whose sealed block is still to be made, leaving
// `size` bytes for that block (push.sealedGradient or params.sealedValues) and having
// `write` fill them in place: a block is sealed straight into the bytes that are sent,
// never sealed elsewhere and copied in. Errors: `write`'s; kInvalidArgument for another
// body, or one whose sealed block is already set.
Result<Bytes> encode_in_place(const Envelope& envelope, size_t size, const std::function<Status(uint8_t* block)>& write);
// With an `owner` that keeps data[0, size) alive and unchanged (a received frame), the
// parameter blocks of push and params share those bytes instead of copying them.
Result<Envelope> decode(const uint8_t* data, size_t size, const DecodeLimits& limits = {},
                        std::shared_ptr<const void> owner = nullptr);
// The request id of a message decode() refused, when its envelope was readable (a body
// that is not, an unknown union member, a wrong version): the error reply echoes it, so
// the caller can tell which of its requests failed. nullopt when not even that was.
std::optional<uint64_t> readable_request_id(const uint8_t* data, size_t size, const DecodeLimits& limits = {});
inline Result<Envelope> decode(const std::vector<uint8_t>& bytes, const DecodeLimits& limits = {}) {
  return decode(bytes.data(), bytes.size(), limits);
}
inline Result<Envelope> decode(const Bytes& bytes, const DecodeLimits& limits = {}) {
  return decode(bytes.data(), bytes.size(), limits);
}

}  // namespace custody::msg
