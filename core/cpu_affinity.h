// Pinning threads to CPUs (`--pin-cpu LIST` of custody-worker and custody-ps; off by
// default): a CPU list in the kernel's notation ("0", "0,2", "0-3,6"), checked against the
// CPUs this process may run on, and the pinning of one thread to one CPU of it
// (pthread_setaffinity_np). A node pins each compute thread to the next CPU of its list in
// turn (cpu_for(i)): a worker's trainers, a server's actor and its sealing helpers.
// What pinning gives on a given machine is measured by bench/pinning.sh.
// Thread-safety: CpuList is immutable after parse; pin_thread may be called from any thread.
#pragma once

#include <pthread.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace custody {

class CpuList {
 public:
  CpuList() = default;  // empty: no pinning
  // "0-3,6" -> {0, 1, 2, 3, 6}. Refuses bad syntax, and CPUs this process may not use
  // (outside its affinity mask, e.g. offline or excluded by a cgroup), naming those it may.
  static Result<CpuList> parse(const std::string& text);

  bool empty() const { return cpus_.empty(); }
  const std::vector<int>& cpus() const { return cpus_; }
  // The CPU of the i-th pinned thread: the list in turn.
  int cpu_for(size_t i) const { return cpus_[i % cpus_.size()]; }
  std::string to_string() const;

 private:
  std::vector<int> cpus_;
};

// The CPUs this process may run on (sched_getaffinity), e.g. "0-1".
std::string allowed_cpus();
// Pins `thread` to `cpu`; an error names the CPU and the system's reason.
Status pin_thread(pthread_t thread, int cpu);
inline Status pin_this_thread(int cpu) { return pin_thread(pthread_self(), cpu); }

}  // namespace custody
