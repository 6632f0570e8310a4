// Strict UTF-8 validation (RFC 3629): what text must be before it is written into a record.
//
// Every record of the custody store is JSON, and the JSON writer (nlohmann's dump) throws
// on text that is not UTF-8: one caller's invalid byte in a purpose or a model reference
// then killed the actor writing it. Cap'n Proto's Text is UTF-8 by its specification but
// is not checked on read, so the codec checks every text field of a message it decodes
// (protocols/codec.cc) and refuses the message instead.
// Thread-safety: a pure function.
#pragma once

#include <cstddef>
#include <string_view>

namespace custody {

// The offset of the first byte that does not belong to well-formed UTF-8 (a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate, or a code point
// above U+10FFFF), or text.size() when the whole text is valid.
size_t invalid_utf8_at(std::string_view text);

inline bool valid_utf8(std::string_view text) { return invalid_utf8_at(text) == text.size(); }

}  // namespace custody
