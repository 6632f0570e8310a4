#include "core/config_reader.h"

#include <fstream>
#include <functional>
#include <sstream>
#include <toml++/toml.h>

namespace custody {

struct ConfigReader::Doc {
  toml::table table;
};

ConfigReader::ConfigReader(std::unique_ptr<Doc> doc, std::string origin)
    : doc_(std::move(doc)), origin_(std::move(origin)) {}
ConfigReader::ConfigReader(ConfigReader&&) noexcept = default;
ConfigReader& ConfigReader::operator=(ConfigReader&&) noexcept = default;
ConfigReader::~ConfigReader() = default;

Result<ConfigReader> ConfigReader::parse(std::string_view text, std::string origin) {
  try {
    auto doc = std::make_unique<Doc>();
    doc->table = toml::parse(text, origin);
    return ConfigReader(std::move(doc), std::move(origin));
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << origin << ":" << e.source().begin.line << ":" << e.source().begin.column
        << ": not valid TOML: " << e.description();
    return invalid_argument(msg.str());
  }
}

Result<ConfigReader> ConfigReader::parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open config file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

namespace {

// Reads a narrow type (int, float) through the getter of its wide one (int64_t, double):
// the range check there bounds the value to [min, max], so the cast cannot overflow.
template <typename Wide, typename Narrow>
Status get_narrow(ConfigReader& reader, const std::string& key, Narrow& out, Narrow min, Narrow max) {
  Wide v = out;
  CUSTODY_RETURN_IF_ERROR(reader.get(key, v, Wide{min}, Wide{max}));
  out = static_cast<Narrow>(v);
  return Status::ok();
}

// A value as text for ConfigReader::KeyRead: exact enough that two values print alike only
// if they are equal in the caller's type.
std::string as_text(int64_t v) { return std::to_string(v); }
std::string as_text(int v) { return std::to_string(v); }
std::string as_text(bool v) { return v ? "true" : "false"; }
std::string as_text(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}
std::string as_text(float v) {
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}
std::string as_text(const std::string& v) { return "\"" + v + "\""; }
// A table of an array of tables (ConfigReader::Row), as TOML writes it inline.
std::string as_text(const ConfigReader::Row& row) {
  std::string out = "{";
  for (size_t i = 0; i < row.size(); ++i) {
    const auto& [k, v] = row[i];
    out += (i ? ", " : "") + k + " = " + (v.is_int ? std::to_string(v.number) : as_text(v.text));
  }
  return out + "}";
}
template <typename T>
std::string as_text(const std::vector<T>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + as_text(v[i]);
  return out + "]";
}

}  // namespace

template <typename T, typename Read>
Status ConfigReader::traced(const std::string& key, T& out, Read read) {
  if (!trace_) return read();
  KeyRead r{key, as_text(out), "", static_cast<bool>(doc_->table.at_path(key))};
  std::vector<KeyRead>* trace = trace_;
  trace_ = nullptr;  // a narrow getter reads through the wide one: one entry, in its own type
  Status s = read();
  trace_ = trace;
  r.after = as_text(out);
  trace_->push_back(std::move(r));
  return s;
}

bool ConfigReader::has(const std::string& key) const { return static_cast<bool>(doc_->table.at_path(key)); }

Status ConfigReader::wrong(const std::string& key, const std::string& expected) const {
  return invalid_argument(origin_ + ": key '" + key + "' must be " + expected);
}

Status ConfigReader::get(const std::string& key, int64_t& out, int64_t min, int64_t max) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    auto v = node.value_exact<int64_t>();
    std::string range = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    if (!v) return wrong(key, range);
    if (*v < min || *v > max) return wrong(key, range + ", got " + std::to_string(*v));
    out = *v;
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, int& out, int min, int max) {
  return traced(key, out, [&] { return get_narrow<int64_t>(*this, key, out, min, max); });
}

Status ConfigReader::get(const std::string& key, double& out, double min, double max) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    std::ostringstream range;
    range << "a number in [" << min << ", " << max << "]";
    auto v = node.value<double>();  // integers are accepted as numbers
    if (!v || !(node.is_floating_point() || node.is_integer())) return wrong(key, range.str());
    if (!(*v >= min && *v <= max)) {
      range << ", got " << *v;
      return wrong(key, range.str());
    }
    out = *v;
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, float& out, float min, float max) {
  return traced(key, out, [&] { return get_narrow<double>(*this, key, out, min, max); });
}

Status ConfigReader::get(const std::string& key, bool& out) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    auto v = node.value_exact<bool>();
    if (!v) return wrong(key, "true or false");
    out = *v;
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, std::string& out,
                         const std::vector<std::string>& allowed) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    std::string expected = "a string";
    if (!allowed.empty()) {
      expected = "one of";
      for (size_t i = 0; i < allowed.size(); ++i) expected += (i ? ", \"" : " \"") + allowed[i] + "\"";
    }
    auto v = node.value_exact<std::string>();
    if (!v) return wrong(key, expected);
    if (!allowed.empty()) {
      bool ok = false;
      for (const auto& a : allowed) ok = ok || a == *v;
      if (!ok) return wrong(key, expected + ", got \"" + *v + "\"");
    }
    out = *v;
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, std::vector<int>& out, int min, int max) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    std::string expected = "an array of integers in [" + std::to_string(min) + ", " +
                           std::to_string(max) + "]";
    auto* arr = node.as_array();
    if (!arr) return wrong(key, expected);
    std::vector<int> values;
    for (auto& el : *arr) {
      auto v = el.value_exact<int64_t>();
      if (!v || *v < min || *v > max) return wrong(key, expected);
      values.push_back(static_cast<int>(*v));
    }
    out = std::move(values);
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, std::vector<std::string>& out) {
  return traced(key, out, [&]() -> Status {
    known_.insert(key);
    auto node = doc_->table.at_path(key);
    if (!node) return Status::ok();
    auto* arr = node.as_array();
    if (!arr) return wrong(key, "an array of strings");
    std::vector<std::string> values;
    for (auto& el : *arr) {
      auto v = el.value_exact<std::string>();
      if (!v) return wrong(key, "an array of strings");
      values.push_back(*v);
    }
    out = std::move(values);
    return Status::ok();
  });
}

Status ConfigReader::get(const std::string& key, std::vector<Row>& out) {
  return traced(key, out, [&]() -> Status { return get_rows(key, out); });
}

Status ConfigReader::get_rows(const std::string& key, std::vector<Row>& out) {
  known_.insert(key);
  auto node = doc_->table.at_path(key);
  if (!node) return Status::ok();
  const std::string expected = "an array of tables of integers and strings (e.g. [{type = \"dense\", units = 10}])";
  auto* arr = node.as_array();
  if (!arr) return wrong(key, expected);
  std::vector<Row> rows;
  for (auto& el : *arr) {
    auto* t = el.as_table();
    if (!t) return wrong(key, expected);
    Row row;
    for (auto&& [k, v] : *t) {
      Value value;
      if (auto i = v.value_exact<int64_t>()) {
        value.is_int = true;
        value.number = *i;
      } else if (auto str = v.value_exact<std::string>()) {
        value.text = *str;
      } else {
        return wrong(key + "[" + std::to_string(rows.size()) + "]." + std::string(k.str()), "an integer or a string");
      }
      row.emplace_back(std::string(k.str()), std::move(value));
    }
    rows.push_back(std::move(row));
  }
  out = std::move(rows);
  return Status::ok();
}

Status ConfigReader::unknown_keys_error() const {
  // Walk every leaf (and every table) and report the first path no getter asked for.
  std::string unknown;
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (auto&& [k, v] : t) {
          if (!unknown.empty()) return;
          std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
          if (known_.count(path)) continue;
          if (auto* sub = v.as_table()) {
            bool any_known_below = false;
            for (const auto& kk : known_) any_known_below = any_known_below || kk.rfind(path + ".", 0) == 0;
            if (any_known_below) {
              walk(*sub, path);
              continue;
            }
          }
          unknown = path;
        }
      };
  walk(doc_->table, "");
  if (unknown.empty()) return Status::ok();
  return invalid_argument(origin_ + ": unknown key '" + unknown +
                          "' (misspelt, or not a setting of this file; see the documented "
                          "files in configs/)");
}

}  // namespace custody
