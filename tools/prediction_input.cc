#include "tools/prediction_input.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/dataset.h"
#include "tools/exit_codes.h"

namespace custody::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string_view trimmed(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t\r") - begin + 1);
}

// One CSV value: a whole number as strtof reads it ("nan" and "inf" included), or why not.
Result<float> parse_value(std::string_view cell, const std::string& where) {
  const std::string text(trimmed(cell));
  if (text.empty()) return invalid_argument(where + " is empty");
  char* end = nullptr;
  errno = 0;
  const float v = std::strtof(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return invalid_argument(where + ": '" + text + "' is not a number");
  if (errno == ERANGE && std::isinf(v))
    return invalid_argument(where + ": '" + text + "' is too large for a float32");
  return v;
}

// A CSV header: every cell a name, that is, beginning with a letter, '_' or a quote and
// not a number (strtof reads "nan" and "inf": a row of those is data). A row with
// anything else in it (a number, "1e999", "0.5abc") is data, refused at its first bad value.
bool is_header(std::string_view line) {
  for (size_t begin = 0;;) {
    const size_t comma = line.find(',', begin);
    const std::string cell(trimmed(line.substr(begin, comma - begin)));
    if (cell.empty() || !(std::isalpha(static_cast<unsigned char>(cell[0])) || cell[0] == '_' || cell[0] == '"') ||
        parse_value(cell, "").is_ok()) {
      return false;
    }
    if (comma == std::string_view::npos) return true;
    begin = comma + 1;
  }
}

Result<std::string> read_whole_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return invalid_argument("'" + path + "' is a directory, not an input file");
  std::ifstream file(path, std::ios::binary);
  if (!file) return invalid_argument("cannot open input file '" + path + "'");
  std::stringstream ss;
  ss << file.rdbuf();
  if (file.bad()) return invalid_argument("cannot read input file '" + path + "'");
  return ss.str();
}

Result<PredictionInput> read_idx(const std::string& path) {
  CUSTODY_ASSIGN_OR_RETURN(const LabeledSet set, bad_input(read_idx_images(path)));
  if (set.count == 0) return invalid_argument("'" + path + "' holds no images");
  PredictionInput in;
  in.rows = set.count;
  in.features = set.features;
  in.values.resize(set.pixels.size());
  // The raw pixel values: the service scales them as training did (core/input_contract.h).
  for (size_t i = 0; i < set.pixels.size(); ++i) in.values[i] = set.pixels[i];
  return in;
}

}  // namespace

Result<InputFormat> input_format(const std::string& path, const std::string& format) {
  if (format == "idx") return InputFormat::kIdx;
  if (format == "csv") return InputFormat::kCsv;
  if (format == "f32") return InputFormat::kF32;
  if (format != "auto")
    return invalid_argument("--format '" + format + "' is not one of auto, idx, csv, f32");
  if (ends_with(path, ".csv")) return InputFormat::kCsv;
  if (ends_with(path, ".f32")) return InputFormat::kF32;
  return InputFormat::kIdx;
}

Result<PredictionInput> parse_csv(std::string_view text, const std::string& origin) {
  PredictionInput in;
  int64_t line_no = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_no;
    if (trimmed(line).empty()) continue;
    const std::string at = "'" + origin + "' line " + std::to_string(line_no);
    if (in.rows == 0 && in.features == 0 && in.header.empty() && is_header(line)) {
      // A first row of names, none of them a number: a header, kept only to say so.
      for (size_t begin = 0;;) {
        const size_t comma = line.find(',', begin);
        in.header.emplace_back(trimmed(line.substr(begin, comma - begin)));
        if (comma == std::string_view::npos) break;
        begin = comma + 1;
      }
      continue;
    }
    int64_t count = 0;
    for (size_t begin = 0;;) {
      const size_t comma = line.find(',', begin);
      const std::string where = at + ", value " + std::to_string(count + 1);
      CUSTODY_ASSIGN_OR_RETURN(const float v, parse_value(line.substr(begin, comma - begin), where));
      in.values.push_back(v);
      ++count;
      if (comma == std::string_view::npos) break;
      begin = comma + 1;
    }
    if (in.features == 0) in.features = count;
    if (count != in.features) {
      return invalid_argument(at + " has " + std::to_string(count) + " values; the first row has " +
                              std::to_string(in.features));
    }
    ++in.rows;
  }
  if (in.rows == 0) return invalid_argument("'" + origin + "' holds no rows");
  return in;
}

Result<PredictionInput> parse_f32(std::string_view bytes, int64_t features, const std::string& origin) {
  if (features <= 0) return invalid_argument("a raw float32 input needs --features (values per row)");
  const size_t floats = bytes.size() / sizeof(float);
  if (bytes.empty() || bytes.size() % sizeof(float) != 0 || floats % static_cast<uint64_t>(features) != 0) {
    return invalid_argument("'" + origin + "' holds " + std::to_string(bytes.size()) +
                            " bytes, not a whole number of rows of " + std::to_string(features) +
                            " float32 values");
  }
  PredictionInput in;
  in.features = features;
  in.rows = static_cast<int64_t>(floats / static_cast<uint64_t>(features));
  in.values.resize(floats);
  std::memcpy(in.values.data(), bytes.data(), bytes.size());
  return in;
}

Result<PredictionInput> read_prediction_input(const std::string& path, const std::string& format,
                                              int64_t features) {
  CUSTODY_ASSIGN_OR_RETURN(const InputFormat f, input_format(path, format));
  if (f == InputFormat::kIdx) return read_idx(path);
  if (f == InputFormat::kF32 && features <= 0) {
    return invalid_argument("a raw float32 input needs --features (values per row)");
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::string bytes, read_whole_file(path));
  if (f == InputFormat::kF32) return parse_f32(bytes, features, path);
  return parse_csv(bytes, path);
}

void keep_first_rows(PredictionInput& in, int64_t rows) {
  if (rows <= 0 || rows >= in.rows) return;
  in.rows = rows;
  in.values.resize(static_cast<size_t>(rows * in.features));
}

}  // namespace custody::cli
