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

void log(LogLevel level, const std::string& who, const std::string& message) {
  if (static_cast<int>(level) < g_min_level) return;
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[40];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  const int ms = static_cast<int>(duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000);
  static const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  char head[96];
  std::snprintf(head, sizeof(head), "%s.%03dZ ", stamp, ms);
  std::string line = head + who + " " + kNames[static_cast<int>(level)] + " " + message + "\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace custody
