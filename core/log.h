// Line-oriented logging to stderr: "2026-11-24T09:41:02.123Z coordinator INFO message".
// One write per line, so lines of concurrent threads and processes do not interleave.
#pragma once

#include <cstdint>
#include <string>

namespace custody {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Thread-safe. `who` names the node ("coordinator", "ps-1").
void log(LogLevel level, const std::string& who, const std::string& message);
void set_log_level(LogLevel min_level);

// "2026-11-24T09:41:02.123Z": milliseconds since the Unix epoch as ISO 8601 in UTC, the
// one form of time the logs, the records' renderings and the CLI print.
std::string iso8601_utc(int64_t ms);

// "0.8931" for fixed(0.89312, 4): a number as the logs and messages print it.
std::string fixed(double value, int decimals);

}  // namespace custody
