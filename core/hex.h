// Lowercase hex encoding and strict decoding of byte strings: how hashes, keys and
// signatures travel in text (records, JSON, the command line).
//
// Contract: to_hex always writes lowercase; from_hex accepts either case but nothing else
// (no spaces, no "0x", an even number of digits) and says what it found instead of a
// digit. Neither throws.
// Thread-safety: free functions over their arguments; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/error.h"

namespace custody {

std::string to_hex(std::string_view bytes);

// The bytes `hex` spells. When want_bytes is not 0, anything other than exactly that many
// bytes is refused too; `what` names the value in the error ("root hash").
Result<std::string> from_hex(std::string_view hex, size_t want_bytes = 0,
                             std::string_view what = "hex value");

}  // namespace custody
