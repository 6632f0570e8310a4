// Streaming reads of IDX data sets (core/dataset.h "Streaming"): a file is read through
// zlib one chunk at a time, hashed as it passes, and only the records asked for are kept,
// so neither a worker nor the coordinator holds the data set to learn what it needs of it.
#include <zlib.h>

#include <algorithm>
#include <functional>
#include <memory>

#include "core/dataset.h"
#include "core/hash.h"
#include "core/job_spec.h"
#include "core/partition.h"

namespace custody {
namespace {

constexpr size_t kChunk = 1 << 20;

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// One IDX file opened for streaming (gzip detected by zlib, plain files pass through);
// its header has been read and checked.
struct IdxFile {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f{nullptr, gzclose};
  std::string path;
  uint64_t count = 0;
  uint64_t record_bytes = 1;  // rows*cols for images, 1 for labels
  uint64_t header = 0;
  std::string shape;  // "N images of RxC" / "N labels", for size errors
  uint64_t payload() const { return count * record_bytes; }
};

Status read_error(gzFile f, const std::string& path) {
  int err = 0;
  const char* msg = gzerror(f, &err);
  return data_loss("cannot read data file '" + path + "': " + (msg ? msg : "zlib error"));
}

// Reads up to `n` bytes; fewer only at the end of the file.
Result<size_t> read_some(IdxFile& file, uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const int r = gzread(file.f.get(), out + got, static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30)));
    if (r < 0) return read_error(file.f.get(), file.path);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

Status size_error(const IdxFile& file, const std::string& held) {
  return data_loss("'" + file.path + "' is truncated or too long: header says " + file.shape + " but the file holds " +
                   held + " bytes");
}

// Opens `path` and reads its header; `whole`, if given, is fed the header bytes.
Result<IdxFile> open_idx(const std::string& path, bool images, Sha256* whole) {
  IdxFile file;
  file.path = path;
  file.f.reset(gzopen(path.c_str(), "rb"));
  if (!file.f) return not_found("cannot open data file '" + path + "'");
  gzbuffer(file.f.get(), 1 << 17);
  uint8_t h[16];
  file.header = images ? 16 : 8;
  CUSTODY_ASSIGN_OR_RETURN(size_t got, read_some(file, h, file.header));
  if (images && (got < 16 || be32(h) != 0x00000803)) {
    return data_loss("'" + path + "' is not an IDX3 image file (magic 0x00000803 expected)");
  }
  if (!images && (got < 8 || be32(h) != 0x00000801)) {
    return data_loss("'" + path + "' is not an IDX1 label file (magic 0x00000801 expected)");
  }
  if (whole) whole->update(h, file.header);
  file.count = be32(h + 4);
  if (images) {
    const uint64_t rows = be32(h + 8), cols = be32(h + 12);
    if (rows == 0 || cols == 0 || rows * cols > (1u << 24)) {
      return data_loss("'" + path + "' has an implausible image size " + std::to_string(rows) + "x" +
                       std::to_string(cols));
    }
    file.record_bytes = rows * cols;
    file.shape = std::to_string(file.count) + " images of " + std::to_string(rows) + "x" + std::to_string(cols);
  } else {
    file.shape = std::to_string(file.count) + " labels";
  }
  return file;
}

// Streams the whole payload in order, chunk by chunk: `visit(offset, bytes, n)` sees every
// byte once (offset into the payload). Then checks that the file ends exactly there.
Status stream_all(IdxFile& file, Sha256* whole,
                  const std::function<Status(uint64_t, const uint8_t*, size_t)>& visit) {
  std::vector<uint8_t> buf(kChunk);
  uint64_t offset = 0;
  const uint64_t size = file.payload();
  while (offset < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - offset));
    CUSTODY_ASSIGN_OR_RETURN(size_t got, read_some(file, buf.data(), want));
    if (whole) whole->update(buf.data(), got);
    if (got > 0 && visit) CUSTODY_RETURN_IF_ERROR(visit(offset, buf.data(), got));
    offset += got;
    if (got < want) return size_error(file, std::to_string(file.header + offset));
  }
  CUSTODY_ASSIGN_OR_RETURN(size_t extra, read_some(file, buf.data(), 1));
  if (extra != 0) return size_error(file, "more than " + std::to_string(file.header + size));
  return Status::ok();
}

// Payload bytes [begin, end) into `out`, skipping the rest (zlib decompresses what it
// skips, a chunk at a time; a plain file is seeked), then checks where the file ends.
Status read_range(IdxFile& file, uint64_t begin, uint64_t end, uint8_t* out) {
  gzFile f = file.f.get();
  const uint64_t size = file.payload();
  auto at = [&](uint64_t payload_offset) { return static_cast<z_off_t>(file.header + payload_offset); };
  if (begin > 0 && gzseek(f, at(begin), SEEK_SET) != at(begin)) return size_error(file, "fewer than " + std::to_string(at(begin)));
  CUSTODY_ASSIGN_OR_RETURN(size_t got, read_some(file, out, static_cast<size_t>(end - begin)));
  if (got < end - begin) return size_error(file, std::to_string(at(begin) + got));
  uint8_t last[2];
  if (size > end) {
    if (gzseek(f, at(size - 1), SEEK_SET) != at(size - 1)) return size_error(file, "fewer than " + std::to_string(at(size)));
    CUSTODY_ASSIGN_OR_RETURN(size_t one, read_some(file, last, 1));
    if (one != 1) return size_error(file, "fewer than " + std::to_string(at(size)));
  }
  CUSTODY_ASSIGN_OR_RETURN(size_t extra, read_some(file, last, 1));
  if (extra != 0) return size_error(file, "more than " + std::to_string(at(size)));
  return Status::ok();
}

std::string set_hash(const std::string& images, const std::string& labels) {
  return sha256_hex("images:" + images + "\nlabels:" + labels + "\n");
}

Status check_pair(const IdxFile& images, const IdxFile& labels) {
  if (labels.count != images.count) {
    return data_loss("'" + labels.path + "' does not hold one label for each of the " + std::to_string(images.count) +
                     " images of '" + images.path + "'");
  }
  return Status::ok();
}

// One split's files streamed once: the whole set's identity, and each of `ranks` ranges'
// records digests; `keep` gets each range's bytes (one range's at a time).
Result<SplitSummary> summarize_split(const std::string& images_path, const std::string& labels_path, uint32_t ranks,
                                     const RecordsSink& keep) {
  Sha256 images_hash, labels_hash;
  CUSTODY_ASSIGN_OR_RETURN(IdxFile images, open_idx(images_path, true, &images_hash));
  CUSTODY_ASSIGN_OR_RETURN(IdxFile labels, open_idx(labels_path, false, &labels_hash));
  CUSTODY_RETURN_IF_ERROR(check_pair(images, labels));
  SplitSummary s;
  s.count = static_cast<int64_t>(images.count);
  s.features = static_cast<int>(images.record_bytes);
  std::vector<KeyRange> ranges;
  if (ranks > 0 && ranks <= images.count) {
    CUSTODY_ASSIGN_OR_RETURN(ranges, partition_range(images.count, ranks));
  }
  s.digests.resize(ranges.size());
  // Each file once, in order: the range a chunk's bytes belong to is hashed (and kept for
  // `keep`) until the range ends. Ranges are contiguous and in order.
  auto per_range = [&](IdxFile& file, bool pixels) -> Status {
    size_t r = 0;
    Sha256 range_hash;
    std::vector<uint8_t> kept;
    const uint64_t unit = file.record_bytes;
    std::function<Status(uint64_t, const uint8_t*, size_t)> visit = [&](uint64_t offset, const uint8_t* data,
                                                                          size_t n) -> Status {
      if (!pixels) {  // the largest label, for the model's class count
        for (size_t i = 0; i < n; ++i) s.max_label = std::max(s.max_label, data[i]);
      }
      while (n > 0 && r < ranges.size()) {
        const uint64_t range_end = ranges[r].end * unit;
        const size_t take = static_cast<size_t>(std::min<uint64_t>(n, range_end - offset));
        range_hash.update(data, take);
        if (keep) {
          // Reserved whole at the range's start: growing by doubling would copy, and
          // briefly hold, up to twice the range.
          if (kept.empty()) kept.reserve(static_cast<size_t>(ranges[r].size() * unit));
          kept.insert(kept.end(), data, data + take);
        }
        offset += take;
        data += take;
        n -= take;
        if (offset == range_end) {
          std::string& digest = pixels ? s.digests[r].images_sha256 : s.digests[r].labels_sha256;
          digest = range_hash.hex();
          if (keep) {
            CUSTODY_RETURN_IF_ERROR(keep(digest, kept));
            kept = std::vector<uint8_t>();  // released: the next range reserves its own
          }
          ++r;
        }
      }
      return Status::ok();
    };
    if (pixels && ranges.empty()) visit = nullptr;  // nothing to do with the pixels but hash them
    return stream_all(file, pixels ? &images_hash : &labels_hash, visit);
  };
  CUSTODY_RETURN_IF_ERROR(per_range(images, true));
  CUSTODY_RETURN_IF_ERROR(per_range(labels, false));
  s.content_hash = set_hash(images_hash.hex(), labels_hash.hex());
  return s;
}

// Synthetic sets are drawn in memory (and never shipped: a worker draws its own).
SplitSummary summarize_in_memory(const LabeledSet& set, uint32_t ranks) {
  SplitSummary s;
  s.count = set.count;
  s.features = set.features;
  s.content_hash = set.content_hash;
  for (uint8_t l : set.labels) s.max_label = std::max(s.max_label, l);
  if (ranks == 0 || ranks > static_cast<uint64_t>(set.count)) return s;
  const std::vector<KeyRange> ranges = partition_range(static_cast<uint64_t>(set.count), ranks).value();
  for (const auto& range : ranges) {
    s.digests.push_back(records_digest(set, static_cast<int64_t>(range.begin), static_cast<int64_t>(range.end)));
  }
  return s;
}

}  // namespace

Result<IdxPart> read_idx_part(const std::string& images_path, const std::string& labels_path, int64_t begin,
                              int64_t end, bool hash_whole) {
  Sha256 images_hash, labels_hash;
  CUSTODY_ASSIGN_OR_RETURN(IdxFile images, open_idx(images_path, true, hash_whole ? &images_hash : nullptr));
  CUSTODY_ASSIGN_OR_RETURN(IdxFile labels, open_idx(labels_path, false, hash_whole ? &labels_hash : nullptr));
  CUSTODY_RETURN_IF_ERROR(check_pair(images, labels));
  IdxPart part;
  part.total = static_cast<int64_t>(images.count);
  part.records.features = static_cast<int>(images.record_bytes);
  if (begin < 0 || begin > end || end > part.total) return part;  // the caller names the range
  part.records.count = end - begin;
  const uint64_t f = images.record_bytes, b = static_cast<uint64_t>(begin), e = static_cast<uint64_t>(end);
  part.records.pixels.resize(static_cast<size_t>((e - b) * f));
  part.records.labels.resize(static_cast<size_t>(e - b));
  if (!hash_whole) {
    CUSTODY_RETURN_IF_ERROR(read_range(images, b * f, e * f, part.records.pixels.data()));
    CUSTODY_RETURN_IF_ERROR(read_range(labels, b, e, part.records.labels.data()));
    return part;
  }
  // The whole set's identity needs every byte: stream all of it, keep the range.
  auto keeper = [](uint64_t unit, uint64_t kb, uint64_t ke, std::vector<uint8_t>& out) {
    return [unit, kb, ke, &out](uint64_t offset, const uint8_t* data, size_t n) {
      const uint64_t lo = std::max(offset, kb * unit), hi = std::min<uint64_t>(offset + n, ke * unit);
      if (lo < hi) std::copy(data + (lo - offset), data + (hi - offset), out.begin() + static_cast<ptrdiff_t>(lo - kb * unit));
      return Status::ok();
    };
  };
  CUSTODY_RETURN_IF_ERROR(stream_all(images, &images_hash, keeper(f, b, e, part.records.pixels)));
  CUSTODY_RETURN_IF_ERROR(stream_all(labels, &labels_hash, keeper(1, b, e, part.records.labels)));
  part.content_hash = set_hash(images_hash.hex(), labels_hash.hex());
  return part;
}

Result<DataParts> load_data_parts(const DataSpec& spec, int64_t train_begin, int64_t train_end, int64_t test_begin,
                                  int64_t test_end, bool hash_whole) {
  DataParts parts;
  if (spec.kind == DataSpec::Kind::kSynthetic || spec.kind == DataSpec::Kind::kCsv) {
    // Drawn, not read: the generator makes the whole set (small by design), kept only in
    // part. A CSV table is read whole too: its standardization needs every training row.
    CUSTODY_ASSIGN_OR_RETURN(DataSplit all, load_data(spec));
    parts.train.total = all.train.count;
    parts.test.total = all.test.count;
    parts.train.content_hash = all.train.content_hash;
    parts.test.content_hash = all.test.content_hash;
    parts.version_hash = all.version_hash;
    parts.train.records.features = parts.test.records.features = all.train.features;
    parts.train.records.value_bytes = parts.test.records.value_bytes = all.train.value_bytes;
    if (train_begin >= 0 && train_begin <= train_end && train_end <= all.train.count) {
      parts.train.records = slice(all.train, train_begin, train_end);
    }
    if (test_begin >= 0 && test_begin <= test_end && test_end <= all.test.count) {
      parts.test.records = slice(all.test, test_begin, test_end);
    }
    return parts;
  }
  CUSTODY_ASSIGN_OR_RETURN(parts.train, read_idx_part(spec.path(spec.train_images), spec.path(spec.train_labels),
                                                      train_begin, train_end, hash_whole));
  CUSTODY_ASSIGN_OR_RETURN(parts.test, read_idx_part(spec.path(spec.test_images), spec.path(spec.test_labels),
                                                     test_begin, test_end, hash_whole));
  if (parts.train.records.features != parts.test.records.features) {
    return data_loss("training and test images differ in size (" + std::to_string(parts.train.records.features) +
                     " vs " + std::to_string(parts.test.records.features) + " pixels)");
  }
  if (hash_whole) {
    parts.version_hash = sha256_hex("train:" + parts.train.content_hash + "\ntest:" + parts.test.content_hash + "\n");
  }
  return parts;
}

Result<DataSummary> summarize_data(const DataSpec& spec, uint32_t ranks, const RecordsSink& keep) {
  DataSummary d;
  if (spec.kind == DataSpec::Kind::kSynthetic || spec.kind == DataSpec::Kind::kCsv) {
    CUSTODY_ASSIGN_OR_RETURN(DataSplit all, load_data(spec));
    d.train = summarize_in_memory(all.train, ranks);
    d.test = summarize_in_memory(all.test, ranks);
    d.version_hash = all.version_hash;
    d.table = std::move(all.table);
    return d;
  }
  CUSTODY_ASSIGN_OR_RETURN(d.train, summarize_split(spec.path(spec.train_images), spec.path(spec.train_labels), ranks, keep));
  CUSTODY_ASSIGN_OR_RETURN(d.test, summarize_split(spec.path(spec.test_images), spec.path(spec.test_labels), ranks, keep));
  if (d.train.features != d.test.features) {
    return data_loss("training and test images differ in size (" + std::to_string(d.train.features) + " vs " +
                     std::to_string(d.test.features) + " pixels)");
  }
  d.version_hash = sha256_hex("train:" + d.train.content_hash + "\ntest:" + d.test.content_hash + "\n");
  return d;
}

}  // namespace custody
