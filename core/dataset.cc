#include "core/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>

#include "core/hash.h"
#include "core/job_spec.h"

namespace custody {
namespace {

// IDX files are big-endian.
uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// The whole file, decompressed if it is gzip; plain files pass through zlib unchanged.
Result<std::vector<uint8_t>> read_maybe_gzip(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), gzclose);
  if (!f) return not_found("cannot open data file '" + path + "'");
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    int n = gzread(f.get(), buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      const char* msg = gzerror(f.get(), &err);
      return data_loss("cannot read data file '" + path + "': " + (msg ? msg : "zlib error"));
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  return out;
}

// Synthetic sets have no files; their identity hashes the same bytes an IDX file's
// payload would hold.
std::string content_hash(const LabeledSet& set) {
  return sha256_hex("images:" + sha256_hex(set.pixels.data(), set.pixels.size()) + "\nlabels:" +
                    sha256_hex(set.labels.data(), set.labels.size()) + "\n");
}

}  // namespace

namespace {

// Checks an IDX3 image file's header and size; returns (count, rows*cols).
Result<std::pair<uint64_t, uint64_t>> check_idx_images(const std::vector<uint8_t>& im, const std::string& images_path) {
  if (im.size() < 16 || be32(im.data()) != 0x00000803) {
    return data_loss("'" + images_path + "' is not an IDX3 image file (magic 0x00000803 expected)");
  }
  const uint64_t n = be32(im.data() + 4), rows = be32(im.data() + 8), cols = be32(im.data() + 12);
  if (rows == 0 || cols == 0 || rows * cols > (1u << 24)) {
    return data_loss("'" + images_path + "' has an implausible image size " + std::to_string(rows) +
                     "x" + std::to_string(cols));
  }
  if (im.size() != 16 + n * rows * cols) {
    return data_loss("'" + images_path + "' is truncated or too long: header says " +
                     std::to_string(n) + " images of " + std::to_string(rows) + "x" +
                     std::to_string(cols) + " but the file holds " + std::to_string(im.size()) +
                     " bytes");
  }
  return std::make_pair(n, rows * cols);
}

}  // namespace

Result<LabeledSet> read_idx_images(const std::string& images_path) {
  CUSTODY_ASSIGN_OR_RETURN(auto images, read_maybe_gzip(images_path));
  CUSTODY_ASSIGN_OR_RETURN(auto shape, check_idx_images(images, images_path));
  LabeledSet set;
  set.count = static_cast<int64_t>(shape.first);
  set.features = static_cast<int>(shape.second);
  set.pixels.assign(images.begin() + 16, images.end());
  set.content_hash = sha256_hex(images.data(), images.size());
  return set;
}

Result<LabeledSet> read_idx(const std::string& images_path, const std::string& labels_path) {
  CUSTODY_ASSIGN_OR_RETURN(auto images, read_maybe_gzip(images_path));
  CUSTODY_ASSIGN_OR_RETURN(auto labels, read_maybe_gzip(labels_path));
  const auto& im = images;
  const auto& lb = labels;
  CUSTODY_ASSIGN_OR_RETURN(auto shape, check_idx_images(im, images_path));
  if (lb.size() < 8 || be32(lb.data()) != 0x00000801) {
    return data_loss("'" + labels_path + "' is not an IDX1 label file (magic 0x00000801 expected)");
  }
  const uint64_t n = shape.first, features = shape.second;
  if (be32(lb.data() + 4) != n || lb.size() != 8 + n) {
    return data_loss("'" + labels_path + "' does not hold one label for each of the " +
                     std::to_string(n) + " images of '" + images_path + "'");
  }
  LabeledSet set;
  set.count = static_cast<int64_t>(n);
  set.features = static_cast<int>(features);
  set.pixels.assign(im.begin() + 16, im.end());
  set.labels.assign(lb.begin() + 8, lb.end());
  set.content_hash = sha256_hex("images:" + sha256_hex(im.data(), im.size()) + "\nlabels:" +
                                sha256_hex(lb.data(), lb.size()) + "\n");
  return set;
}

LabeledSet make_synthetic(int64_t count, int features, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pixel(0, 255);
  std::normal_distribution<float> noise(0.0f, 40.0f);
  std::vector<std::vector<int>> prototypes(classes, std::vector<int>(features));
  for (auto& p : prototypes)
    for (auto& v : p) v = pixel(rng);
  LabeledSet set;
  set.count = count;
  set.features = features;
  set.pixels.resize(static_cast<size_t>(count) * features);
  set.labels.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    int c = static_cast<int>(i % classes);
    set.labels[i] = static_cast<uint8_t>(c);
    for (int f = 0; f < features; ++f) {
      float v = static_cast<float>(prototypes[c][f]) + noise(rng);
      set.pixels[i * features + f] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v)));
    }
  }
  set.content_hash = content_hash(set);
  return set;
}

LabeledSet slice(const LabeledSet& set, int64_t begin, int64_t end) {
  LabeledSet out;
  out.count = end - begin;
  out.features = set.features;
  out.value_bytes = set.value_bytes;
  const int64_t w = static_cast<int64_t>(set.features) * set.value_bytes;
  out.pixels.assign(set.pixels.begin() + begin * w, set.pixels.begin() + end * w);
  out.labels.assign(set.labels.begin() + begin, set.labels.begin() + end);
  out.content_hash = content_hash(out);
  return out;
}

RecordsDigest records_digest(const LabeledSet& set, int64_t begin, int64_t end) {
  const auto f = static_cast<size_t>(set.features) * static_cast<size_t>(set.value_bytes);
  return {sha256_hex(set.pixels.data() + static_cast<size_t>(begin) * f, static_cast<size_t>(end - begin) * f),
          sha256_hex(set.labels.data() + begin, static_cast<size_t>(end - begin))};
}

Matrix features(const LabeledSet& set, int64_t begin, int64_t end) {
  if (set.value_bytes == 4) {
    Matrix x(set.features, end - begin);
    std::memcpy(x.data(), set.pixels.data() + begin * set.features * 4,
                static_cast<size_t>((end - begin) * set.features) * sizeof(float));
    return x;
  }
  Matrix x(set.features, end - begin);
  scale_pixels(set.pixels.data() + begin * set.features, x.data(), static_cast<size_t>(x.size()));
  return x;
}

Result<DataSplit> load_data(const DataSpec& spec) {
  DataSplit split;
  if (spec.kind == DataSpec::Kind::kSynthetic) {
    // One draw, split: training and test samples must share the class prototypes.
    LabeledSet all = make_synthetic(spec.synthetic_train + spec.synthetic_test, spec.synthetic_features,
                                    spec.synthetic_classes, spec.synthetic_seed);
    split.train = slice(all, 0, spec.synthetic_train);
    split.test = slice(all, spec.synthetic_train, all.count);
  } else if (spec.kind == DataSpec::Kind::kCsv) {
    return load_csv_data(spec);
  } else {
    CUSTODY_ASSIGN_OR_RETURN(auto train, read_idx(spec.path(spec.train_images), spec.path(spec.train_labels)));
    CUSTODY_ASSIGN_OR_RETURN(auto test, read_idx(spec.path(spec.test_images), spec.path(spec.test_labels)));
    if (train.features != test.features) {
      return data_loss("training and test images differ in size (" + std::to_string(train.features) +
                       " vs " + std::to_string(test.features) + " pixels)");
    }
    split.train = std::move(train);
    split.test = std::move(test);
  }
  split.version_hash =
      sha256_hex("train:" + split.train.content_hash + "\ntest:" + split.test.content_hash + "\n");
  return split;
}

}  // namespace custody

namespace custody {
namespace {

// Whether a table's class ids are its integer labels (parse_csv: classes "0".."max").
bool integer_classes(const CsvTable& t) {
  for (size_t i = 0; i < t.classes.size(); ++i) {
    if (t.classes[i] != std::to_string(i)) return false;
  }
  return true;
}

// Gives two tables one class mapping: integer ids if both are labelled by integers, else
// the sorted union of the label texts (as parse_csv orders one table's).
Status unify_classes(CsvTable& a, CsvTable& b) {
  if (integer_classes(a) && integer_classes(b)) {
    if (a.classes.size() < b.classes.size()) {
      a.classes = b.classes;
    } else {
      b.classes = a.classes;
    }
    return Status::ok();
  }
  std::map<std::string, int> ids;
  for (const auto& c : a.classes) ids.emplace(c, 0);
  for (const auto& c : b.classes) ids.emplace(c, 0);
  if (ids.size() > 256) {
    return invalid_argument("the training and test tables' label columns hold " + std::to_string(ids.size()) +
                            " distinct values together; at most 256 classes");
  }
  std::vector<std::string> classes;
  for (auto& [text, id] : ids) {
    id = static_cast<int>(classes.size());
    classes.push_back(text);
  }
  for (CsvTable* t : {&a, &b}) {
    for (auto& l : t->labels) l = static_cast<uint8_t>(ids[t->classes[l]]);
    t->classes = classes;
  }
  return Status::ok();
}

// Rows `rows` of `t` (ascending) as a table of their own.
CsvTable take_rows(const CsvTable& t, const std::vector<int64_t>& rows) {
  CsvTable out;
  out.feature_names = t.feature_names;
  out.classes = t.classes;
  const auto f = static_cast<size_t>(t.features());
  out.rows = static_cast<int64_t>(rows.size());
  out.values.reserve(rows.size() * f);
  for (int64_t r : rows) {
    out.values.insert(out.values.end(), t.values.begin() + static_cast<ptrdiff_t>(r * f),
                      t.values.begin() + static_cast<ptrdiff_t>((r + 1) * f));
    out.labels.push_back(t.labels[static_cast<size_t>(r)]);
    out.lines.push_back(t.lines[static_cast<size_t>(r)]);
  }
  return out;
}

LabeledSet as_records(const CsvTable& t) {
  LabeledSet set;
  set.count = t.rows;
  set.features = t.features();
  set.value_bytes = 4;
  set.pixels.resize(t.values.size() * sizeof(float));
  std::memcpy(set.pixels.data(), t.values.data(), set.pixels.size());
  set.labels = t.labels;
  set.content_hash = content_hash(set);
  return set;
}

}  // namespace

Result<DataSplit> load_csv_data(const DataSpec& spec) {
  const CsvOptions options{spec.csv_label,
                           spec.csv_drop_missing ? CsvOptions::Missing::kDrop : CsvOptions::Missing::kRefuse};
  const std::string train_path = spec.path(spec.csv_train);
  CUSTODY_ASSIGN_OR_RETURN(CsvTable train, read_csv(train_path, options));
  TablePreprocessing p;
  p.label = spec.csv_label;
  p.feature_names = train.feature_names;
  p.files_sha256.push_back(train.sha256);
  auto note_dropped = [&p](const CsvTable& t, const std::string& path) {
    p.dropped += t.dropped;
    for (int64_t line : t.dropped_lines) {
      if (p.dropped_lines.size() < 10) p.dropped_lines.push_back(path + ":" + std::to_string(line));
    }
  };
  note_dropped(train, train_path);
  CsvTable test;
  if (!spec.csv_test.empty()) {
    const std::string test_path = spec.path(spec.csv_test);
    CUSTODY_ASSIGN_OR_RETURN(test, read_csv(test_path, options));
    if (test.feature_names != train.feature_names) {
      std::string a, b;
      for (const auto& n : train.feature_names) a += (a.empty() ? "" : ", ") + n;
      for (const auto& n : test.feature_names) b += (b.empty() ? "" : ", ") + n;
      return invalid_argument("'" + test_path + "' has the feature columns (" + b + "), but '" + train_path +
                              "' has (" + a + "); the test table needs the training table's columns in its order");
    }
    CUSTODY_RETURN_IF_ERROR(unify_classes(train, test));
    p.files_sha256.push_back(test.sha256);
    note_dropped(test, test_path);
  } else {
    auto split = split_rows(train.rows, spec.csv_test_fraction, spec.csv_split_seed);
    if (!split.is_ok()) {
      return invalid_argument("'" + train_path + "': " + split.status().message() + " (" +
                              std::to_string(train.rows) + " rows kept)");
    }
    test = take_rows(train, split->test);
    train = take_rows(train, split->train);
  }
  p.classes = train.classes;
  // Fitted on the training rows alone: the test rows' statistics must not leak into
  // training (or into the reported accuracy).
  p.standardization = fit_standardization(train, 0, train.rows);
  standardize(train.values, p.standardization);
  standardize(test.values, p.standardization);
  p.train_rows = train.rows;
  p.test_rows = test.rows;
  p.train_file = train_path;
  p.train_lines = train.lines;
  DataSplit split;
  split.train = as_records(train);
  split.test = as_records(test);
  split.version_hash = sha256_hex("train:" + split.train.content_hash + "\ntest:" + split.test.content_hash + "\n");
  split.table = std::move(p);
  return split;
}

}  // namespace custody
