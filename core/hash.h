// SHA-256, as lowercase hex, for content addressing and data set identity; random tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace custody {

std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

// `bytes` bytes from the operating system's secure random source, as lowercase hex:
// access tokens.
Result<std::string> random_token(size_t bytes = 32);

}  // namespace custody
