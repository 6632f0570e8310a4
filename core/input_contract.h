// What a trained model takes from its callers, and how that becomes the model's input: the
// one input contract that training, serving (`custody predict`, HTTP), attribution and the
// exported files share, so the same raw values give the same answers everywhere.
//
// - An image model (IDX or synthetic data, a byte per value): callers send raw pixel values
//   0 to 255, row-major, exactly as the image file holds them. The model's input is
//   pixel x kInputScale (1/255 as a float32), one float32 rounding per value:
//   scale_pixels() below, the only place that multiplies, used by training (features(),
//   the trainer's put_sample) and by serving; the ONNX export multiplies by the same
//   float32 constant in its graph (node 'scale', one Mul), which rounds the same way.
// - A model trained on a CSV table: callers send the table's raw columns in the model
//   card's order; each is standardized with the training rows' mean and std
//   (core/csv_table.h standardize(), as when the job loaded its data).
//
// check() refuses what the model was never trained on: a non-finite value, or for an image
// model a pixel outside 0..255, naming the row and column (both counted from 0) and the
// range; and for an image model a row that was already scaled to [0, 1] (every value at most
// 1 and one strictly between 0 and 1): such a row lies inside 0..255, but no raw pixel is a
// fraction below 1 and no image the model saw has 1 as its brightest pixel, so answering it
// would mean answering a black image, wrongly and silently.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/csv_table.h"
#include "core/error.h"

namespace custody {

// What an image model's inputs are: the data set's uint8 values times this (pixels to
// [0, 1]). Training, serving and exported models (ONNX graphs, model cards) apply it.
constexpr float kInputScale = 1.0f / 255.0f;

// out[i] = float(in[i]) * kInputScale for i < n: the one scaling of raw pixels, for bytes
// (training) and float32 values (serving). uint8 -> float is exact and a float32 multiply
// rounds once, vectorized or not, so a pixel scales to the same bits on every path.
// out may be in (in place) when T is float. Defined for uint8_t and float only
// (input_contract.cc), compiled once: every caller runs the same code.
template <typename T>
void scale_pixels(const T* in, float* out, size_t n);
extern template void scale_pixels<uint8_t>(const uint8_t*, float*, size_t);
extern template void scale_pixels<float>(const float*, float*, size_t);

struct InputContract {
  // The raw pixel values an image model accepts (its training data's byte range).
  static constexpr float kPixelMin = 0.0f, kPixelMax = 255.0f;

  TablePreprocessing table;  // a model trained on a CSV table; empty: an image model

  bool pixels() const { return table.empty(); }
  // Every value of `values` (rows x features, row-major) is one the model accepts; else an
  // invalid argument naming the first bad value's row and column, the value and the range.
  // `model` names the model in the message.
  Status check(const float* values, int64_t rows, int64_t features, const std::string& model) const;
  // check()'s two parts. check_values: finite, and for an image model within 0..255 (what
  // attribution asks of a row recorded before the second part existed, whose hash it must
  // match). check_not_prescaled: for an image model, no row already scaled to [0, 1].
  Status check_values(const float* values, int64_t rows, int64_t features, const std::string& model) const;
  Status check_not_prescaled(const float* values, int64_t rows, int64_t features, const std::string& model) const;
  // The model's inputs from checked raw values, in place, or from `raw` into `out` (n
  // values each; one pass for pixels, no copy first).
  void apply(std::vector<float>& values) const;
  void apply(const float* raw, float* out, size_t n) const;
  // For people and metadata: what a caller sends ("raw pixel values 0 to 255, ..."), and
  // what the service does with it before the model sees it.
  std::string expected() const;
  std::string applied() const;
};

}  // namespace custody
