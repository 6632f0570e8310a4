// How `custody predict` (and `custody attribute`) read their input: IDX images (gzipped or
// not), CSV rows, or raw float32 values (host order, little-endian on the machines Custody
// runs on). Every format is sent as raw values, the one input contract of
// core/input_contract.h: an image model takes raw pixel values 0 to 255 (an IDX file's
// bytes as they are; CSV and float32 the same numbers), which the service scales by 1/255
// as training did; a model trained on a CSV table takes its raw columns in the model card's
// order, which the service standardizes with the training rows' statistics. Values outside
// the model's range, and non-finite ones, are passed on: the service refuses them naming
// row, column and range.
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
