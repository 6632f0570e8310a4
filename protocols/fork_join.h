// A few threads that share the work of one call: run(n, task) calls task(0) .. task(n-1),
// on the calling thread and the helpers, and returns when all have returned. The data
// plane seals and opens a parameter block in chunks this way (protocols/data_plane.h):
// at a BSP step's end the workers wait for the server, so a core is idle just when the
// server's opening and sealing are every step's critical path.
//
// The caller never waits for a helper to wake: it takes tasks itself until none are left
// and then waits only for the tasks helpers have begun. On a busy machine, where a
// sleeping helper may wait milliseconds for a core, the call then costs what it costs on
// one thread, not a scheduling delay. Helpers sleep between calls (a condition variable).
// Thread-safety: run() may be called from one thread at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace custody {

class ForkJoin {
 public:
  // `helpers` threads besides the caller's (0: run() calls every task itself).
  explicit ForkJoin(unsigned helpers) {
    for (unsigned i = 0; i < helpers; ++i) threads_.emplace_back([this] { serve(); });
  }
  // As many helpers as this machine has other cores, at most `most`.
  static unsigned helpers_for_this_machine(unsigned most = 3) {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores > 1 ? std::min(cores - 1, most) : 0;
  }
  // Calls f(i, handle) for each helper thread (to pin it to a CPU, say).
  template <class F>
  void for_each_helper(F f) {
    for (size_t i = 0; i < threads_.size(); ++i) f(i, threads_[i].native_handle());
  }
  ~ForkJoin() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  ForkJoin(const ForkJoin&) = delete;
  ForkJoin& operator=(const ForkJoin&) = delete;

  void run(size_t n, const std::function<void(size_t)>& task) {
    if (threads_.empty() || n < 2) {
      for (size_t i = 0; i < n; ++i) task(i);
      return;
    }
    uint32_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = ++generation_;
      task_ = &task;
      count_ = n;
      done_.store(0);
      // A new generation with its first task unclaimed: a helper still holding an older
      // generation's task can claim nothing of this one.
      next_.store(uint64_t(generation) << 32);
    }
    wake_.notify_all();
    size_t ran = 0;
    for (size_t i; claim(generation, n, &i);) {
      task(i);
      ++ran;
    }
    if (done_.fetch_add(ran) + ran == n) return;
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_.load() == n; });
  }

 private:
  // The next task of `generation`, if it has one left.
  bool claim(uint32_t generation, size_t count, size_t* index) {
    uint64_t v = next_.load();
    for (;;) {
      if (uint32_t(v >> 32) != generation || (v & 0xffffffffu) >= count) return false;
      if (next_.compare_exchange_weak(v, v + 1)) {
        *index = v & 0xffffffffu;
        return true;
      }
    }
  }
  void serve() {
    uint32_t seen = 0;
    for (;;) {
      const std::function<void(size_t)>* task;
      size_t count;
      uint32_t generation;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation = generation_;
        task = task_;
        count = count_;
      }
      // A claim succeeds only while the call is running, so `task` is alive while used.
      for (size_t i; claim(generation, count, &i);) {
        (*task)(i);
        if (done_.fetch_add(1) + 1 == count) {
          std::lock_guard<std::mutex> lock(mutex_);
          finished_.notify_all();
        }
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  // The call's, set under mutex_: its task and how many; its generation and next task
  // (high and low 32 bits); tasks done.
  const std::function<void(size_t)>* task_ = nullptr;
  size_t count_ = 0;
  uint32_t generation_ = 0;
  std::atomic<uint64_t> next_{0};
  std::atomic<size_t> done_{0};
  bool stopping_ = false;
};

}  // namespace custody
