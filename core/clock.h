// Time, injected (as LevelDB's Env::NowMicros): code that stamps records, receipts and job
// times, or keeps a cache for a while, asks a Clock it was given instead of the machine,
// so tests can hold time still or move it. The state machines of actors/ are also handed
// the monotonic time of each message (SteadyClock::time_point) by their actors.
// Thread-safety: Clock::system() is safe from any thread; a ManualClock is not.
#pragma once

#include <chrono>
#include <cstdint>

namespace custody {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch: what records, receipts and job times say.
  virtual int64_t wall_ms() const = 0;
  // Monotonic: for intervals and timeouts.
  virtual std::chrono::steady_clock::time_point steady_now() const = 0;
  // The machine's clocks.
  static const Clock& system();
};

// A clock that moves only when told to: for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t wall_ms = 1700000000000) : wall_ms_(wall_ms) {}
  int64_t wall_ms() const override { return wall_ms_; }
  std::chrono::steady_clock::time_point steady_now() const override { return steady_; }
  void advance(std::chrono::milliseconds d) {
    wall_ms_ += d.count();
    steady_ += d;
  }

 private:
  int64_t wall_ms_;
  std::chrono::steady_clock::time_point steady_{};
};

}  // namespace custody
