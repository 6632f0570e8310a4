#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace custody {
namespace {
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};  // set once by main()
}

void set_log_level(LogLevel min_level) { g_min_level = static_cast<int>(min_level); }

std::string iso8601_utc(int64_t ms) {
  // Floor division, so times before 1970 print as themselves, not with a negative fraction.
  int64_t seconds = ms / 1000, frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    --seconds;
  }
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[40];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", stamp, static_cast<int>(frac));
  return out;
}

void log(LogLevel level, const std::string& who, const std::string& message) {
  if (static_cast<int>(level) < g_min_level) return;
  using namespace std::chrono;
  const int64_t now_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  static const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  std::string line = iso8601_utc(now_ms) + " " + who + " " + kNames[static_cast<int>(level)] + " " + message + "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

}  // namespace custody
