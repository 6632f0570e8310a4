// A node's metrics in Prometheus' text exposition format (version 0.0.4): counters,
// gauges and histograms, each a family of series told apart by labels. One registry per
// node process, built by its entry point and handed to what it measures (no global);
// GET /metrics renders it (actors/http_listener.h).
//
// Naming follows Prometheus: snake_case with the unit in the name (`_seconds`, `_bytes`),
// counters end in `_total`, every name starts `custody_`.
// Thread-safety: everything. Registration takes a mutex; updates to a Counter, Gauge or
// Histogram are lock-free atomics, so the hot paths (a push, a prediction) never wait for
// a scrape. References returned by the registry stay valid for its lifetime.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace custody {

// label name -> value, e.g. {{"reason", "stale"}}.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void add(double v = 1);  // REQUIRES: v >= 0
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implied
  void observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then +Inf; and the sum of the observations.
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; +1 for +Inf
  std::atomic<double> sum_{0};
};

// Latency buckets in seconds, 100 us to 10 s.
std::vector<double> latency_buckets();

// An error kind as a Prometheus label value: "not found" -> "not_found".
std::string error_label(ErrorCode code);

class MetricsRegistry {
 public:
  // The series of `name` with `labels`, made on first use. A name keeps the kind and help
  // it was first registered with.
  Counter& counter(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                       const MetricLabels& labels = {});
  // Every family, sorted by name: # HELP, # TYPE, then its series.
  std::string render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind;
    std::string help;
    std::map<std::string, Counter*> counters;  // by rendered labels
    std::map<std::string, Gauge*> gauges;
    std::map<std::string, Histogram*> histograms;
  };
  Family& family(const std::string& name, Kind kind, const std::string& help);

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
  std::deque<Counter> counter_store_;  // deques: stable addresses as they grow
  std::deque<Gauge> gauge_store_;
  std::deque<std::unique_ptr<Histogram>> histogram_store_;
};

}  // namespace custody
