#include "core/input_contract.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <Eigen/Core>

namespace custody {
namespace {

// A value as a person reads it back: the shortest text that names the float (256, -1, nan).
std::string text_of(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
  return buf;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

template <typename T>
void scale_pixels(const T* in, float* out, size_t n) {
  using Column = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<Eigen::ArrayXf>(out, static_cast<Eigen::Index>(n)) =
      Eigen::Map<const Column>(in, static_cast<Eigen::Index>(n)).template cast<float>() * kInputScale;
}
template void scale_pixels<uint8_t>(const uint8_t*, float*, size_t);
template void scale_pixels<float>(const float*, float*, size_t);

Status InputContract::check(const float* values, int64_t rows, int64_t features, const std::string& model) const {
  CUSTODY_RETURN_IF_ERROR(check_values(values, rows, features, model));
  return pixels() ? check_not_prescaled(values, rows, features, model) : Status::ok();
}

Status InputContract::check_values(const float* values, int64_t rows, int64_t features,
                                   const std::string& model) const {
  // The common case in one vectorized pass; only a call with a bad value walks it again
  // to name the first.
  const size_t n = static_cast<size_t>(rows * features);
  const float lo = pixels() ? kPixelMin : -std::numeric_limits<float>::max();
  const float hi = pixels() ? kPixelMax : std::numeric_limits<float>::max();
  if (n <= std::numeric_limits<uint32_t>::max()) {
    // Counted without a branch or an early exit, so the loop vectorizes (a NaN fails both
    // comparisons): 2% of a batch of 256 Fashion-MNIST rows' evaluation, where a loop
    // asking isfinite() and the range of each value cost 16%.
    uint32_t in_range = 0;
    for (size_t i = 0; i < n; ++i) in_range += static_cast<uint32_t>((values[i] >= lo) & (values[i] <= hi));
    if (in_range == n) return Status::ok();
  }
  for (int64_t i = 0; i < rows * features; ++i) {
    const float v = values[i];
    const bool finite = std::isfinite(v);
    if (finite && (!pixels() || (v >= kPixelMin && v <= kPixelMax))) continue;
    const int64_t column = i % features;
    std::string where = "row " + std::to_string(i / features) + ", column " + std::to_string(column);
    if (!pixels() && static_cast<size_t>(column) < table.feature_names.size()) {
      where += " (" + table.feature_names[static_cast<size_t>(column)] + ")";
    }
    const std::string why = finite ? " is outside the range model " + model + " accepts"
                                   : " is not a finite number; model " + model + " accepts";
    return invalid_argument(where + ": " + text_of(v) + why + ": " + expected());
  }
  return Status::ok();
}

Status InputContract::check_not_prescaled(const float* values, int64_t rows, int64_t features,
                                          const std::string& model) const {
  for (int64_t r = 0; r < rows; ++r) {
    // A row's largest value first (one vectorized pass): a real image has a pixel above 1.
    const float* row = values + r * features;
    const Eigen::Map<const Eigen::ArrayXf> v(row, static_cast<Eigen::Index>(features));
    if (features == 0 || v.maxCoeff() > 1.0f) continue;
    for (int64_t c = 0; c < features; ++c) {
      if (row[c] <= 0.0f || row[c] >= 1.0f) continue;
      return invalid_argument("row " + std::to_string(r) + " looks already scaled to [0, 1] (its largest value is " +
                              text_of(v.maxCoeff()) + "; column " + std::to_string(c) + " is " + text_of(row[c]) +
                              "): model " + model + " takes " + expected() +
                              " and scales them itself; send the image's own pixel values (the scaled values x 255)");
    }
  }
  return Status::ok();
}

void InputContract::apply(std::vector<float>& values) const { apply(values.data(), values.data(), values.size()); }

void InputContract::apply(const float* raw, float* out, size_t n) const {
  if (pixels()) {
    scale_pixels(raw, out, n);
    return;
  }
  std::vector<float> v(raw, raw + n);
  standardize(v, table.standardization);
  std::copy(v.begin(), v.end(), out);
}

std::string InputContract::expected() const {
  if (pixels()) {
    return "raw pixel values 0 to 255 (row-major, as the image file holds them; not scaled to [0, 1])";
  }
  return "finite raw values of the table's columns, in this order: " + joined(table.feature_names);
}

std::string InputContract::applied() const {
  if (pixels()) return "model input = pixel x (1/255), in float32, applied by the service";
  return "model input = (raw value - mean) / std per column, the training rows' statistics, applied by the service";
}

}  // namespace custody
