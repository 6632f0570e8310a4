#include "core/hex.h"

namespace custody {

namespace {

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * bytes.size(), '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 15];
  }
  return out;
}

Result<std::string> from_hex(std::string_view hex, size_t want_bytes, std::string_view what) {
  const std::string name(what);
  if (want_bytes != 0 && hex.size() != 2 * want_bytes) {
    return invalid_argument(name + " has " + std::to_string(hex.size()) + " hex digits, not " +
                            std::to_string(2 * want_bytes) + " (" + std::to_string(want_bytes) + " bytes)");
  }
  if (hex.size() % 2 != 0) {
    return invalid_argument(name + " has an odd number of hex digits (" + std::to_string(hex.size()) + ")");
  }
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = digit_value(hex[i]);
    const int lo = digit_value(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t at = hi < 0 ? i : i + 1;
      return invalid_argument(name + " is not hex: character " + std::to_string(at) + " is byte " +
                              std::to_string(static_cast<unsigned char>(hex[at])));
    }
    out[i / 2] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace custody
