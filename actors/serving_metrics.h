// What the serving actor answered, for the coordinator's metrics (core/metrics.h): calls by
// route and result, rows predicted, and each call's time in the serving actor.
// Thread-safety: as the registry's; each serving actor owns one.
#pragma once

#include <chrono>
#include <string>

#include "core/error.h"
#include "core/metrics.h"

namespace custody::actors {

// An error kind as a Prometheus label value: "not found" -> "not_found".
inline std::string error_label(ErrorCode code) {
  std::string out = to_string(code);
  for (char& c : out) {
    if (c == ' ') c = '_';
  }
  return out;
}

// What serving answered, for the metrics: calls by route and result, rows predicted,
// and each call's time in the serving actor (the usage record's synced write included).
class ServingMetrics {
 public:
  explicit ServingMetrics(MetricsRegistry* m) : m_(m) {}
  void record(const char* route, const Status& s, uint32_t rows,
              std::chrono::steady_clock::time_point started) {
    if (!m_) return;
    const std::string result = s.is_ok() ? "ok" : error_label(s.code());
    m_->counter("custody_prediction_calls_total", "Prediction calls served, by route (zmq, http) and result.",
                {{"route", route}, {"result", result}})
        .add();
    if (!s.is_ok()) return;
    m_->counter("custody_predictions_total", "Rows predicted (and recorded) by successful calls.").add(rows);
    m_->histogram("custody_prediction_duration_seconds",
                  "Time to answer one prediction call: checks, evaluation and its usage record.",
                  latency_buckets(), {{"route", route}})
        .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }

 private:
  MetricsRegistry* m_;
};

}  // namespace custody::actors
