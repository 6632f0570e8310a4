// What a range of a data set's records is, file by file: the SHA-256 of their pixel bytes
// and of their label bytes (core/dataset.h computes it: records_digest). A plain value,
// light enough for the wire's messages to carry. Thread-safety: a value.
#pragma once

#include <string>

namespace custody {

struct RecordsDigest {
  std::string images_sha256, labels_sha256;  // hex; empty: not known
  bool empty() const { return images_sha256.empty() && labels_sha256.empty(); }
};

}  // namespace custody
