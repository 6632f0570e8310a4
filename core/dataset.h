// Labelled image data sets: IDX files (gzipped or plain) and a synthetic generator.
//
// Samples are kept as the bytes they are stored as (uint8 pixels), a quarter of the
// float size; a worker turns only its own shard into floats (features()).
//
// Identity: a LabeledSet's content_hash is SHA-256 over its decompressed IDX bytes
// ("images:<sha256 of image file>\nlabels:<sha256 of label file>\n"); a data set
// version's hash is SHA-256 over "train:<hash>\ntest:<hash>\n". Compression does not
// change the identity; one changed pixel does.
// Thread-safety: immutable values after loading.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model.h"
#include "core/records_digest.h"

namespace custody {

struct LabeledSet {
  int64_t count = 0;
  int features = 0;             // pixels per sample (rows*cols)
  std::vector<uint8_t> pixels;  // count * features, sample-major
  std::vector<uint8_t> labels;  // count
  std::string content_hash;
};

// Reads an IDX3 image file and an IDX1 label file (gzip is detected by zlib).
// Errors name the file and what was wrong with it.
Result<LabeledSet> read_idx(const std::string& images_path, const std::string& labels_path);

// Reads an IDX3 image file alone (labels empty): inputs to predict on.
Result<LabeledSet> read_idx_images(const std::string& images_path);

// Deterministic, linearly separable-ish data: one random prototype per class plus noise.
LabeledSet make_synthetic(int64_t count, int features, int classes, uint64_t seed);

// Samples [begin, end) as a set of their own (with its own content hash).
LabeledSet slice(const LabeledSet& set, int64_t begin, int64_t end);

// What records [begin, end) of a set are, file by file: SHA-256 of their pixel bytes as the
// image file holds them (sample-major, a byte a pixel) and of their label bytes. The
// coordinator computes them for each rank's shard and test range when it admits a job, and
// a worker checks its copy of those records against them before it trains, so a changed
// byte names the file it is in. REQUIRES: begin <= end <= set.count
RecordsDigest records_digest(const LabeledSet& set, int64_t begin, int64_t end);

// What a model's inputs are: the data set's uint8 values times this (pixels to [0, 1]).
// Serving (prediction_input.cc) and exported models (ONNX graphs, model cards) apply the same.
constexpr float kInputScale = 1.0f / 255.0f;

// Samples [begin, end) as a (features x (end-begin)) float matrix scaled by kInputScale.
// REQUIRES: begin <= end <= set.count
Matrix features(const LabeledSet& set, int64_t begin, int64_t end);

struct DataSpec;  // job_spec.h

struct DataSplit {
  LabeledSet train;
  LabeledSet test;
  std::string version_hash;  // identity of the data set version (see above)
};

// Loads what a job's [data] table names.
Result<DataSplit> load_data(const DataSpec& spec);

}  // namespace custody
