// Line-oriented logging to stderr: "2026-11-24T09:41:02.123Z coordinator INFO message".
// One write per line, so lines of concurrent threads and processes do not interleave.
#pragma once

#include <string>

namespace custody {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Thread-safe. `who` names the node ("coordinator", "ps-1").
void log(LogLevel level, const std::string& who, const std::string& message);
void set_log_level(LogLevel min_level);

}  // namespace custody
