// An owned byte buffer that is not zero-filled when made: an encoded message is written
// over in full right away, and parameter blocks make it megabytes on every step (the
// zero-fill of a std::vector showed as 3% of a training cluster's CPU).
// Thread-safety: a plain value (move-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace custody {

class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(size_t size) : data_(size ? new uint8_t[size] : nullptr), size_(size) {}
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const uint8_t* begin() const { return data(); }
  const uint8_t* end() const { return data() + size_; }
  std::vector<uint8_t> to_vector() const { return std::vector<uint8_t>(begin(), end()); }
  // Hands the buffer over (to be freed with delete[]).
  uint8_t* release() {
    size_ = 0;
    return data_.release();
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

}  // namespace custody
