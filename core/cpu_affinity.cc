#include "core/cpu_affinity.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

namespace custody {

namespace {

bool allowed(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return false;
  return cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set);
}

// "3" -> 3; anything else (empty, signs, other characters, too large) -> -1.
int parse_cpu(const std::string& s) {
  if (s.empty() || s.size() > 4) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v < CPU_SETSIZE ? v : -1;
}

std::string ranges(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(cpus[i]) + (j > i ? "-" + std::to_string(cpus[j]) : "");
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string allowed_cpus() {
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (allowed(c)) cpus.push_back(c);
  return ranges(cpus);
}

Result<CpuList> CpuList::parse(const std::string& text) {
  CpuList list;
  auto bad = [&](const std::string& why) {
    return invalid_argument("CPU list '" + text + "': " + why + " (a list such as 0, 0,1 or 0-3,6)");
  };
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t dash = item.find('-');
    const int lo = parse_cpu(item.substr(0, dash));
    const int hi = dash == std::string::npos ? lo : parse_cpu(item.substr(dash + 1));
    if (lo < 0 || hi < 0 || hi < lo) return bad("'" + item + "' is not a CPU number or range");
    for (int c = lo; c <= hi; ++c) {
      if (!allowed(c)) {
        return invalid_argument("CPU list '" + text + "': CPU " + std::to_string(c) +
                                " is not one this process may run on (allowed: " + allowed_cpus() + ")");
      }
      list.cpus_.push_back(c);
    }
    start = comma + 1;
  }
  return list;
}

std::string CpuList::to_string() const { return ranges(cpus_); }

Status pin_thread(pthread_t thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int rc = pthread_setaffinity_np(thread, sizeof(set), &set);
  if (rc != 0) return unavailable("cannot pin a thread to CPU " + std::to_string(cpu) + ": " + std::strerror(rc));
  return Status::ok();
}

}  // namespace custody
