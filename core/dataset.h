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
#include <functional>
#include <string>
#include <vector>

#include "core/csv_table.h"
#include "core/error.h"
#include "core/input_contract.h"
#include "core/model.h"
#include "core/records_digest.h"

namespace custody {

struct LabeledSet {
  int64_t count = 0;
  int features = 0;             // values per sample (IDX: pixels, rows*cols)
  // How `pixels` holds each value: 1, a byte (IDX, synthetic; the model sees byte *
  // kInputScale); 4, a float32 in host (little-endian) order, the model's input as it is
  // (CSV tables, standardized when loaded).
  int value_bytes = 1;
  std::vector<uint8_t> pixels;  // count * features * value_bytes, sample-major
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

// Samples [begin, end) as a (features x (end-begin)) float matrix: bytes scaled by
// scale_pixels() (core/input_contract.h: the scaling serving applies too), float32 values
// as they are.
// REQUIRES: begin <= end <= set.count
Matrix features(const LabeledSet& set, int64_t begin, int64_t end);

struct DataSpec;  // job_spec.h

struct DataSplit {
  LabeledSet train;
  LabeledSet test;
  std::string version_hash;  // identity of the data set version (see above)
  TablePreprocessing table;  // CSV data only (else empty)
};

// A CSV job's data set (kind == kCsv): the tables parsed (core/csv_table.h), the test rows
// split off if there is no test file, each feature standardized with the training rows'
// mean and std, as float32 records (value_bytes 4). Each split's content_hash covers those
// records and labels, so the version names what the model sees: the files' bytes (their
// SHA-256 is in `table`), the label column, the split and the rows dropped. Every node
// computes the same bits from the same bytes.
Result<DataSplit> load_csv_data(const DataSpec& spec);

// Loads what a job's [data] table names, whole (tools and tests; nodes use the streaming
// reads below).
Result<DataSplit> load_data(const DataSpec& spec);

// Streaming -----------------------------------------------------------------------------
// The nodes read a data set without holding it: files pass through zlib a chunk (1 MiB) at
// a time, hashed as they pass, and only the records a node needs are kept. The hashes are
// exactly those above (same bytes, same order), so digests and lineage do not change.

// Records [begin, end) of an IDX image/label file pair. Memory: the records kept plus a
// chunk. With `hash_whole` every byte is read and content_hash is the whole set's (as
// read_idx's); without it, the other records are skipped (a plain file is seeked, a gzip
// one decompressed and dropped) and content_hash is empty. Either way the headers and the
// files' sizes are checked as read_idx checks them. A range outside the files is not an
// error here: records.count is 0 and `total` says how many the files hold.
struct IdxPart {
  LabeledSet records;  // records [begin, end) only; records.content_hash is empty
  int64_t total = 0;   // records in the files
  std::string content_hash;
};
Result<IdxPart> read_idx_part(const std::string& images_path, const std::string& labels_path, int64_t begin,
                              int64_t end, bool hash_whole);

// A worker's part of a job's data set: its shard of the training set and its test range
// (read_idx_part each; a synthetic set is drawn whole and sliced). version_hash is set
// only with hash_whole (always for synthetic data).
struct DataParts {
  IdxPart train, test;
  std::string version_hash;
};
Result<DataParts> load_data_parts(const DataSpec& spec, int64_t train_begin, int64_t train_end, int64_t test_begin,
                                  int64_t test_end, bool hash_whole);

// What the coordinator needs of a data set at admission, from one streaming pass over each
// file: its identity, its size, the largest training label, and the records digests of
// each of `ranks` equal ranges (partition_range; none when ranks exceed the records).
struct SplitSummary {
  int64_t count = 0;
  int features = 0;
  std::string content_hash;
  std::vector<RecordsDigest> digests;  // one per rank
  uint8_t max_label = 0;
};
struct DataSummary {
  SplitSummary train, test;
  std::string version_hash;
  TablePreprocessing table;  // CSV data only
};
// Receives each range's bytes with their SHA-256 (pixels and labels separately, one range
// at a time, as the digests cover them): the coordinator keeps them for data shipping.
// An error stops the pass and is returned. Called for IDX data only (synthetic data is
// drawn by each worker; CSV tables are read by each worker from its own copy).
using RecordsSink = std::function<Status(const std::string& sha256, const std::vector<uint8_t>& bytes)>;
// Memory: one chunk, plus one range's bytes when `keep` is given.
Result<DataSummary> summarize_data(const DataSpec& spec, uint32_t ranks, const RecordsSink& keep = nullptr);

}  // namespace custody
