// libFuzzer target for the one place where network bytes become values: msg::decode.
// Any input must come back as an Envelope or an error Status: no crash, no hang, no
// sanitizer report. A decoded Envelope must also survive encode -> decode unchanged in
// kind, so the codec cannot accept what it cannot itself write.
//   Built with clang (-fsanitize=fuzzer,address,undefined) when available; ctest runs it
//   for a fixed number of inputs from the seed corpus (fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "protocols/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  custody::msg::DecodeLimits limits;
  limits.max_bytes = 1 << 20;
  auto decoded = custody::msg::decode(data, size, limits);
  if (!decoded.is_ok()) {
    if (decoded.status().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  auto again = custody::msg::decode(custody::msg::encode(decoded.value()));
  if (!again.is_ok() || again->body.index() != decoded->body.index()) std::abort();
  return 0;
}
