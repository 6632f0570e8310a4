// A few threads that share the work of one call: run(n, task) calls task(0) .. task(n-1),
// on the calling thread and the helpers, and returns when all have returned. The data
// plane seals and opens a parameter block in chunks this way (protocols/data_plane.h):
// at a BSP step's end the workers wait for the server, so a core is idle just when the
// server's opening and sealing are every step's critical path.
// The helpers sleep between calls (a condition variable), so an idle one costs nothing;
// waking one costs a few microseconds, against some 50 us for a 256 KiB chunk.
// Thread-safety: run() may be called from one thread at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
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
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      count_ = n;
      next_.store(0);
      busy_ = threads_.size();
      ++generation_;
    }
    wake_.notify_all();
    work(task, n);
    // Every helper takes part in every call (if only to find nothing left), so none can
    // still be about to read this call's task when the next call begins.
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return busy_ == 0; });
    task_ = nullptr;
  }

 private:
  // Takes tasks until none are left.
  void work(const std::function<void(size_t)>& task, size_t count) {
    for (size_t i = next_.fetch_add(1); i < count; i = next_.fetch_add(1)) task(i);
  }
  void serve() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(size_t)>* task = nullptr;
      size_t count = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        task = task_;
        count = count_;
      }
      work(*task, count);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) finished_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  // The call's, guarded by mutex_.
  const std::function<void(size_t)>* task_ = nullptr;
  size_t count_ = 0, busy_ = 0;  // tasks; helpers not done with the call
  std::atomic<size_t> next_{0};
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace custody
