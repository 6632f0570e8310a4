// SHA-256, as lowercase hex, for content addressing and data set identity; random tokens;
// name-based UUIDs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace custody {

std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

// SHA-256 fed piece by piece (a file streamed chunk by chunk): the same digest as
// sha256_hex over the concatenation. One object belongs to one thread.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(const void* data, size_t size);
  // The digest as lowercase hex; the object starts over afterwards.
  std::string hex();

 private:
  struct State;
  State* state_;
};

// `bytes` bytes from the operating system's secure random source, as lowercase hex: access
// tokens, and the random part of ids ("call-" and "use-" ids: random_token(8)).
Result<std::string> random_token(size_t bytes = 32);

// The name-based UUID of RFC 4122 section 4.3, version 5 (SHA-1): the same namespace and
// name always give the same UUID, in its lowercase 36-character text form. `namespace_uuid`
// is a UUID in that text form (either case); anything else is invalid_argument.
Result<std::string> uuid_v5(std::string_view namespace_uuid, std::string_view name);

}  // namespace custody
