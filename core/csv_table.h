// Tabular training data from CSV files: a header row naming the columns, one of them the
// label, the others numeric features.
//
// Parsing (RFC 4180 as far as tables of numbers need it: commas, double-quoted cells with
// "" for a quote, CRLF or LF line ends, a blank last line): every feature cell must be
// wholly a finite number; an empty cell, "NA"/"NaN"/"?", or text ("0.5abc") is missing.
// A row with a missing cell (or a label cell that is empty) is dropped or refused as the
// options say; a row with the wrong number of cells is always refused (the file is
// malformed, not incomplete), naming the line. Dropped rows are counted, with the first
// few line numbers, for lineage.
//
// Labels: when every kept row's label is a non-negative integer, that integer is the class
// id; otherwise the distinct label texts, sorted (byte order), are the classes 0, 1, ...
// Either way `classes` holds each id's text, so the mapping can be recorded with a model.
// At most 256 classes (ids are a byte, as IDX labels).
//
// Standardization: mean and (population) standard deviation per feature, fitted on the
// rows given (the training split only: statistics of test rows must not leak into
// training); a feature constant on those rows gets std 1, so it maps to 0, not to NaN.
//
// Identity: `sha256` is the SHA-256 of the file's bytes as read; a data set version made
// of CSV files hashes them, so one changed byte is another version.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace custody {

struct CsvOptions {
  std::string label;  // the label column's name in the header
  enum class Missing { kDrop, kRefuse };
  Missing missing = Missing::kRefuse;
};

struct CsvTable {
  std::vector<std::string> feature_names;  // the header's columns but the label, in order
  int64_t rows = 0;                        // rows kept
  std::vector<float> values;               // rows x features, row-major
  std::vector<uint8_t> labels;             // class id per kept row
  std::vector<std::string> classes;        // class id -> label text
  std::vector<int64_t> lines;              // each kept row's line in the file (the header is line 1)
  int64_t dropped = 0;                     // rows dropped for missing or non-numeric cells
  std::vector<int64_t> dropped_lines;      // the first (at most 10) of their line numbers
  std::string sha256;                      // of the file's bytes
  int features() const { return static_cast<int>(feature_names.size()); }
};

// `text` is the file's content; `name` is how errors name it.
Result<CsvTable> parse_csv(std::string_view text, const CsvOptions& options, const std::string& name);
Result<CsvTable> read_csv(const std::string& path, const CsvOptions& options);

struct Standardization {
  std::vector<float> mean, std;  // one per feature
};

// Fitted on rows [begin, end) of `table`. REQUIRES: begin < end <= table.rows
Standardization fit_standardization(const CsvTable& table, int64_t begin, int64_t end);
// (x - mean) / std on every row of `values` (rows x mean.size(), row-major).
void standardize(std::vector<float>& values, const Standardization& s);

// What turns a table's raw rows into a model's inputs, and what the table was: kept with
// the job's data set (core/dataset.h load_data) and recorded in lineage and with every
// checkpoint, so serving and exported models can standardize raw rows as training did, and
// name the classes.
struct TablePreprocessing {
  std::string label;                       // the label column's name
  std::vector<std::string> feature_names;  // the model's inputs, in order
  std::vector<std::string> classes;        // class id -> label text
  Standardization standardization;         // fitted on the training rows only
  int64_t train_rows = 0, test_rows = 0;   // kept
  int64_t dropped = 0;                     // rows dropped (both files), for missing cells
  std::vector<std::string> dropped_lines;  // the first (at most 10): "FILE:LINE"
  std::vector<std::string> files_sha256;   // of the training file, then the test file's if any
  // Which row of the table each training record is: record i (the index `custody
  // attribute` names and `custody revoke --records` takes) is line train_lines[i] of
  // train_file (the path as the job named it). Kept with the data set in memory only
  // (preprocessing_json leaves it out): every node derives it from the same bytes.
  std::string train_file;
  std::vector<int64_t> train_lines;
  bool empty() const { return feature_names.empty(); }
};

// A seeded split of `rows` row indices: a shuffled `test_fraction` of them (at least one,
// at most rows - 1) for testing, the rest for training, each list in ascending order.
// invalid_argument unless 0 < test_fraction < 1 and rows >= 2.
struct RowSplit {
  std::vector<int64_t> train, test;
};
Result<RowSplit> split_rows(int64_t rows, double test_fraction, uint64_t seed);

}  // namespace custody
