#include "core/csv_table.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "core/hash.h"

namespace custody {
namespace {

// One record's cells. `pos` moves past the record's line end. A quote opens a quoted cell
// only at a cell's start; inside it "" is a quote and line ends belong to the cell.
Status next_record(std::string_view text, size_t& pos, int64_t& line, std::vector<std::string>& cells,
                   const std::string& name) {
  cells.clear();
  std::string cell;
  const int64_t first_line = line;
  bool quoted = false, was_quoted = false;
  while (pos < text.size()) {
    const char c = text[pos++];
    if (quoted) {
      if (c == '"') {
        if (pos < text.size() && text[pos] == '"') {
          cell += '"';
          ++pos;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        cell += c;
      }
      continue;
    }
    if (c == '"' && cell.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      cells.push_back(std::move(cell));
      cell.clear();
      was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
      ++line;
      cells.push_back(std::move(cell));
      return Status::ok();
    } else {
      cell += c;
    }
  }
  if (quoted) {
    return invalid_argument(name + ": line " + std::to_string(first_line) +
                            " opens a quoted cell that never closes; close the quote");
  }
  cells.push_back(std::move(cell));
  ++line;
  return Status::ok();
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// A cell that is wholly a finite number; false for empty, NA, text, inf and NaN.
bool parse_number(const std::string& cell, double& out) {
  const std::string t = trim(cell);
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() && std::isfinite(out) && std::abs(out) <= 3.4e38;
}

bool is_class_integer(const std::string& cell, int& out) {
  const std::string t = trim(cell);
  if (t.empty() || t.size() > 3 || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  out = std::stoi(t);
  return out < 256;
}

}  // namespace

Result<CsvTable> parse_csv(std::string_view text, const CsvOptions& options, const std::string& name) {
  CsvTable table;
  table.sha256 = sha256_hex(text.data(), text.size());
  size_t pos = 0;
  int64_t line = 1;
  std::vector<std::string> header, cells;
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") pos = 3;  // a UTF-8 byte order mark
  CUSTODY_RETURN_IF_ERROR(next_record(text, pos, line, header, name));
  if (header.size() < 2) {
    return invalid_argument(name + ": the header names " + std::to_string(header.size()) +
                            " column(s); a table needs a label column and at least one feature");
  }
  int label_col = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    header[i] = trim(header[i]);
    if (header[i] == options.label) {
      if (label_col >= 0) return invalid_argument(name + ": the header names '" + options.label + "' twice");
      label_col = static_cast<int>(i);
    } else {
      table.feature_names.push_back(header[i]);
    }
  }
  if (label_col < 0) {
    std::string names;
    for (const auto& h : header) names += (names.empty() ? "" : ", ") + h;
    return invalid_argument(name + ": no column '" + options.label + "' in the header (" + names +
                            "); set 'data.label' to the label column's name");
  }
  const size_t width = header.size();
  std::vector<std::string> label_text;
  while (pos < text.size()) {
    const int64_t at = line;
    CUSTODY_RETURN_IF_ERROR(next_record(text, pos, line, cells, name));
    if (cells.size() == 1 && trim(cells[0]).empty()) continue;  // a blank line
    if (cells.size() != width) {
      return invalid_argument(name + ": line " + std::to_string(at) + " has " + std::to_string(cells.size()) +
                              " cells, the header " + std::to_string(width) + "; the file is malformed");
    }
    std::vector<float> row;
    row.reserve(width - 1);
    std::string missing;
    for (size_t i = 0; i < width && missing.empty(); ++i) {
      if (static_cast<int>(i) == label_col) {
        if (trim(cells[i]).empty()) missing = "its label is empty";
        continue;
      }
      double v = 0;
      if (!parse_number(cells[i], v)) {
        missing = "'" + header[i] + "' is " + (trim(cells[i]).empty() ? "empty" : "'" + trim(cells[i]) + "', not a number");
      }
      row.push_back(static_cast<float>(v));
    }
    if (!missing.empty()) {
      if (options.missing == CsvOptions::Missing::kRefuse) {
        return invalid_argument(name + ": line " + std::to_string(at) + ": " + missing +
                                "; fix the row, or set 'data.missing = \"drop\"' to train without such rows "
                                "(they are counted in lineage)");
      }
      ++table.dropped;
      if (table.dropped_lines.size() < 10) table.dropped_lines.push_back(at);
      continue;
    }
    table.values.insert(table.values.end(), row.begin(), row.end());
    label_text.push_back(trim(cells[static_cast<size_t>(label_col)]));
    table.lines.push_back(at);
    ++table.rows;
  }
  if (table.rows == 0) {
    return invalid_argument(name + ": no rows" + (table.dropped ? " left after dropping " + std::to_string(table.dropped) +
                                                                      " incomplete ones" : ""));
  }
  bool integers = true;
  int max_id = 0;
  for (const auto& l : label_text) {
    int id = 0;
    if (!is_class_integer(l, id)) {
      integers = false;
      break;
    }
    max_id = std::max(max_id, id);
  }
  table.labels.reserve(label_text.size());
  if (integers) {
    for (int i = 0; i <= max_id; ++i) table.classes.push_back(std::to_string(i));
    for (const auto& l : label_text) table.labels.push_back(static_cast<uint8_t>(std::stoi(l)));
  } else {
    std::map<std::string, uint8_t> ids;
    for (const auto& l : label_text) ids.emplace(l, 0);
    if (ids.size() > 256) {
      return invalid_argument(name + ": the label column holds " + std::to_string(ids.size()) +
                              " distinct values; at most 256 classes");
    }
    for (auto& [text_of, id] : ids) {
      id = static_cast<uint8_t>(table.classes.size());
      table.classes.push_back(text_of);
    }
    for (const auto& l : label_text) table.labels.push_back(ids[l]);
  }
  return table;
}

Result<CsvTable> read_csv(const std::string& path, const CsvOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open data file '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return data_loss("cannot read data file '" + path + "'");
  return parse_csv(text, options, "'" + path + "'");
}

Standardization fit_standardization(const CsvTable& table, int64_t begin, int64_t end) {
  const auto f = static_cast<size_t>(table.features());
  std::vector<double> sum(f, 0.0), sq(f, 0.0);
  const double n = static_cast<double>(end - begin);
  for (int64_t r = begin; r < end; ++r) {
    for (size_t j = 0; j < f; ++j) sum[j] += table.values[static_cast<size_t>(r) * f + j];
  }
  Standardization s;
  s.mean.resize(f);
  s.std.resize(f);
  for (size_t j = 0; j < f; ++j) s.mean[j] = static_cast<float>(sum[j] / n);
  // Two passes: the variance from deviations, not from sum of squares minus the square of
  // the sum (which cancels catastrophically for large, nearly constant values).
  for (int64_t r = begin; r < end; ++r) {
    for (size_t j = 0; j < f; ++j) {
      const double d = table.values[static_cast<size_t>(r) * f + j] - sum[j] / n;
      sq[j] += d * d;
    }
  }
  for (size_t j = 0; j < f; ++j) {
    const double sd = std::sqrt(sq[j] / n);
    s.std[j] = sd > 1e-12 ? static_cast<float>(sd) : 1.0f;
  }
  return s;
}

void standardize(std::vector<float>& values, const Standardization& s) {
  const size_t f = s.mean.size();
  for (size_t i = 0; i < values.size(); ++i) values[i] = (values[i] - s.mean[i % f]) / s.std[i % f];
}

Result<RowSplit> split_rows(int64_t rows, double test_fraction, uint64_t seed) {
  if (!(test_fraction > 0 && test_fraction < 1)) {
    return invalid_argument("'data.test_fraction' is " + std::to_string(test_fraction) +
                            "; it must lie strictly between 0 and 1");
  }
  if (rows < 2) return invalid_argument("a table of " + std::to_string(rows) + " row(s) cannot be split");
  std::vector<int64_t> order(static_cast<size_t>(rows));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  // Fisher-Yates with the engine's raw output: std::shuffle's draws differ between
  // standard libraries, and a split must be the same wherever it is made.
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  const auto test = std::clamp<int64_t>(std::llround(test_fraction * static_cast<double>(rows)), 1, rows - 1);
  RowSplit split;
  split.test.assign(order.begin(), order.begin() + test);
  split.train.assign(order.begin() + test, order.end());
  std::sort(split.test.begin(), split.test.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

}  // namespace custody
