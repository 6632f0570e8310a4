// SHA-256, as lowercase hex, for content addressing and data set identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace custody {

std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

}  // namespace custody
