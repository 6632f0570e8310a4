// How `custody predict` reads its input: IDX images (gzipped or not; scaled to [0, 1] as
// in training), CSV rows, or raw float32 values (host order, little-endian on the machines
// Custody runs on). CSV and float32 values are sent as they are: an IDX-trained model takes
// them as its inputs (already scaled), a model trained on a CSV table as raw feature rows,
// which serving standardizes with the training rows' statistics (the model card's order).
// Non-finite values are passed on: the model refuses them naming row and feature.
// Every error is an invalid argument that names the file and, for CSV, the line and value
// that are wrong; no input makes these functions crash or throw.
// Thread-safety: plain functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_reader.h"
#include "core/error.h"

namespace custody::cli {

struct PredictionInput {
  int64_t rows = 0, features = 0;
  std::vector<float> values;  // rows x features, row-major
  std::vector<std::string> header;  // CSV: the column names of a header row, if it had one
};

enum class InputFormat { kIdx, kCsv, kF32 };

// --features: values per row of a raw float32 file.
inline constexpr IntRange kFeaturesRange{1, int64_t{1} << 30};

// "idx", "csv" or "f32"; "auto" picks by the file name: .csv, .f32, else IDX.
Result<InputFormat> input_format(const std::string& path, const std::string& format);

// One row per line, values separated by commas, surrounding blanks ignored; blank lines
// are skipped. Every row must have as many values as the first. origin names the text.
Result<PredictionInput> parse_csv(std::string_view text, const std::string& origin);
// Whole rows of `features` float32 values.
Result<PredictionInput> parse_f32(std::string_view bytes, int64_t features, const std::string& origin);

// Reads the file at `path` in `format` (see input_format); features: for f32 only.
Result<PredictionInput> read_prediction_input(const std::string& path, const std::string& format,
                                              int64_t features);

// Keeps the first `rows` rows (all when rows is 0 or not fewer than in.rows).
void keep_first_rows(PredictionInput& in, int64_t rows);

}  // namespace custody::cli
