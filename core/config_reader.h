// A strict reader of TOML configuration (job files and node configs).
//
// Every getter marks its key as known and checks its type and range; a key that is absent
// leaves the caller's default in place. unknown_keys_error() then names the first key
// that no getter asked for, so a misspelt key is refused instead of silently ignored.
// Errors name the file (origin), the dotted key and what was expected.
// With trace(), it also lists every key asked for with the caller's value before the read
// (its default) and after it, as text: a parser that reads an empty file this way lists
// every key it accepts and its default (configs/jobs/reference.toml is checked so).
// Thread-safety: none; use one reader per file.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace custody {

// The bounds of an integer setting, named once and used both by its key in a config file
// (ConfigReader::get) and by its command-line flag (CLI11's CLI::Range(min, max)), so that
// the file and the flag accept the same values.
struct IntRange {
  int64_t min;
  int64_t max;
};

class ConfigReader {
 public:
  static Result<ConfigReader> parse(std::string_view text, std::string origin);
  static Result<ConfigReader> parse_file(const std::string& path);
  ConfigReader(ConfigReader&&) noexcept;
  ConfigReader& operator=(ConfigReader&&) noexcept;
  ~ConfigReader();

  Status get(const std::string& key, int64_t& out, int64_t min, int64_t max);
  Status get(const std::string& key, int64_t& out, IntRange range) { return get(key, out, range.min, range.max); }
  Status get(const std::string& key, int& out, int min, int max);
  Status get(const std::string& key, double& out, double min, double max);
  Status get(const std::string& key, float& out, float min, float max);
  Status get(const std::string& key, bool& out);
  // allowed: if not empty, the value must be one of these.
  Status get(const std::string& key, std::string& out, const std::vector<std::string>& allowed = {});
  Status get(const std::string& key, std::vector<int>& out, int min, int max);
  Status get(const std::string& key, std::vector<std::string>& out);

  // One getter call: the dotted key, the caller's value before (its default) and after (the
  // file's, when the key was present and valid), as text (floats to 9 significant digits,
  // doubles to 17, strings quoted, lists in brackets).
  struct KeyRead {
    std::string key, before, after;
    bool present = false;
  };
  // Whether the file sets `key` (a dotted path), whatever its value.
  bool has(const std::string& key) const;
  // From now on, appends every getter call to *reads (null: stops).
  void trace(std::vector<KeyRead>* reads) { trace_ = reads; }

  // An array of inline tables whose values are integers or strings, e.g. a job file's
  // model.layers = [{type = "conv2d", filters = 32, kernel = 3}, ...]: each table as its
  // keys in order. The caller checks which keys each table may have.
  struct Value {
    bool is_int = false;
    int64_t number = 0;
    std::string text;
  };
  using Row = std::vector<std::pair<std::string, Value>>;
  Status get(const std::string& key, std::vector<Row>& out);
  // A non-ok Status naming the first key present in the file that no getter read.
  Status unknown_keys_error() const;
  const std::string& origin() const { return origin_; }

 private:
  Status get_rows(const std::string& key, std::vector<Row>& out);  // get() of rows, untraced
  struct Doc;
  ConfigReader(std::unique_ptr<Doc> doc, std::string origin);
  Status wrong(const std::string& key, const std::string& expected) const;

  std::unique_ptr<Doc> doc_;
  std::string origin_;
  std::set<std::string> known_;
  std::vector<KeyRead>* trace_ = nullptr;
  template <typename T, typename Read>
  Status traced(const std::string& key, T& out, Read read);
};

}  // namespace custody
