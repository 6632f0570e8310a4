#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace custody {
namespace {

void atomic_add(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// {a="1",b="2"}, or "" without labels.
std::string render_labels(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    out += (i ? "," : "") + labels[i].first + "=\"" + escape(labels[i].second) + "\"";
  }
  return out + "}";
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// `labels` ("{a="1"}" or "") with one more label.
std::string with_label(const std::string& labels, const std::string& name, const std::string& value) {
  const std::string one = name + "=\"" + value + "\"";
  if (labels.empty()) return "{" + one + "}";
  return labels.substr(0, labels.size() - 1) + "," + one + "}";
}

}  // namespace

void Counter::add(double v) {
  if (v > 0) atomic_add(value_, v);
}

void Gauge::add(double v) { atomic_add(value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) out[i] = total += counts_[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, Kind kind,
                                                 const std::string& help) {
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(name, Family{kind, help, {}, {}, {}}).first;
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& f = family(name, Kind::kCounter, help);
  Counter*& c = f.counters[render_labels(labels)];
  if (!c) c = &counter_store_.emplace_back();
  return *c;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help, const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& f = family(name, Kind::kGauge, help);
  Gauge*& g = f.gauges[render_labels(labels)];
  if (!g) g = &gauge_store_.emplace_back();
  return *g;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      const std::vector<double>& bounds, const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& f = family(name, Kind::kHistogram, help);
  Histogram*& h = f.histograms[render_labels(labels)];
  if (!h) h = histogram_store_.emplace_back(std::make_unique<Histogram>(bounds)).get();
  return *h;
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    const char* type = f.kind == Kind::kCounter ? "counter" : f.kind == Kind::kGauge ? "gauge" : "histogram";
    out << "# HELP " << name << " " << f.help << "\n# TYPE " << name << " " << type << "\n";
    for (const auto& [labels, c] : f.counters) out << name << labels << " " << number(c->value()) << "\n";
    for (const auto& [labels, g] : f.gauges) out << name << labels << " " << number(g->value()) << "\n";
    for (const auto& [labels, h] : f.histograms) {
      const auto counts = h->cumulative();
      for (size_t i = 0; i < counts.size(); ++i) {
        const std::string le = i < h->bounds().size() ? number(h->bounds()[i]) : "+Inf";
        out << name << "_bucket" << with_label(labels, "le", le) << " " << counts[i] << "\n";
      }
      out << name << "_sum" << labels << " " << number(h->sum()) << "\n";
      out << name << "_count" << labels << " " << counts.back() << "\n";
    }
  }
  return out.str();
}

std::string error_label(ErrorCode code) {
  std::string out = to_string(code);
  for (char& c : out) {
    if (c == ' ') c = '_';
  }
  return out;
}

}  // namespace custody
