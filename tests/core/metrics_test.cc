// The Prometheus text a scrape reads: families with HELP and TYPE, labelled series,
// cumulative histogram buckets ending in +Inf, and updates from many threads all counted.
#include "core/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace custody {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHistogramsInPrometheusTextFormat) {
  MetricsRegistry m;
  m.counter("custody_ps_pushes_total", "Pushes.", {{"result", "refused"}, {"reason", "stale \"step\""}})
      .add(2);
  m.counter("custody_ps_pushes_total", "Pushes.", {{"result", "accepted"}, {"reason", ""}}).add();
  m.gauge("custody_jobs", "Jobs by state.", {{"state", "running"}}).set(3);
  Histogram& h = m.histogram("custody_prediction_duration_seconds", "Latency.", {0.001, 0.01});
  h.observe(0.0005);
  h.observe(0.005);
  h.observe(0.5);
  const std::string text = m.render();
  EXPECT_NE(text.find("# TYPE custody_ps_pushes_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("custody_ps_pushes_total{result=\"refused\",reason=\"stale \\\"step\\\"\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("custody_jobs{state=\"running\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("custody_prediction_duration_seconds_bucket{le=\"0.001\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("custody_prediction_duration_seconds_bucket{le=\"0.01\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("custody_prediction_duration_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("custody_prediction_duration_seconds_count 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("custody_prediction_duration_seconds_sum 0.50"), std::string::npos) << text;
}

TEST(MetricsTest, UpdatesFromManyThreadsAreAllCounted) {
  MetricsRegistry m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10000; ++i) {
        m.counter("custody_x_total", "X.").add();
        m.histogram("custody_y_seconds", "Y.", latency_buckets()).observe(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.counter("custody_x_total", "X.").value(), 40000);
  EXPECT_EQ(m.histogram("custody_y_seconds", "Y.", latency_buckets()).cumulative().back(), 40000u);
}

}  // namespace
}  // namespace custody
