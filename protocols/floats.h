// A read-only float32 array for the messages that carry parameter blocks (a push's
// gradient, a server's values): megabytes, on every training step.
//
// It either owns its values or shares a buffer that someone else keeps alive: the
// received frame it was decoded from (decode() points into the frame instead of copying
// it), or a parameter server's current values (both workers' replies of a step share
// them until they are encoded). Copies of a Floats share the buffer; nothing writes
// through one. Floats::borrowed() points at memory the caller keeps alive and unchanged
// while the Floats exists (a trainer's gradient, encoded before the call returns).
// Thread-safety: immutable once built; copies may be used from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

namespace custody::msg {

class Floats {
 public:
  Floats() = default;
  // Takes the values over (implicit, so a message can be built from a vector).
  Floats(std::vector<float> values)  // NOLINT(google-explicit-constructor)
      : Floats(std::make_shared<const std::vector<float>>(std::move(values))) {}
  Floats(std::initializer_list<float> values) : Floats(std::vector<float>(values)) {}
  explicit Floats(std::shared_ptr<const std::vector<float>> values)
      : owner_(values), data_(values->data()), size_(values->size()) {}
  // Shares `owner`, which keeps data[0, size) alive and unchanged.
  static Floats shared(std::shared_ptr<const void> owner, const float* data, size_t size) {
    Floats f;
    f.owner_ = std::move(owner);
    f.data_ = data;
    f.size_ = size;
    return f;
  }
  static Floats borrowed(const float* data, size_t size) { return shared(nullptr, data, size); }

  const float* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const float* begin() const { return data_; }
  const float* end() const { return data_ + size_; }
  float operator[](size_t i) const { return data_[i]; }
  std::vector<float> to_vector() const { return std::vector<float>(begin(), end()); }
  // A Floats that may outlive borrowed memory: this one if it shares an owner, else one
  // that owns a copy of the values.
  Floats keep() const { return owner_ || size_ == 0 ? *this : Floats(to_vector()); }

  // Bitwise: the same float32 bytes (tests compare what went over the wire).
  friend bool operator==(const Floats& a, const Floats& b) {
    return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_ * sizeof(float)) == 0);
  }
  friend bool operator!=(const Floats& a, const Floats& b) { return !(a == b); }

 private:
  std::shared_ptr<const void> owner_;
  const float* data_ = nullptr;
  size_t size_ = 0;
};

// Bytes shared the same way: a sealed parameter block (core/aead.h: nonce || ciphertext ||
// tag), which is as large as the block. Received, it shares the frame; sent, one buffer
// can serve several messages (a server seals a step's values once for every worker's
// reply). `readable()` bytes from data() may be read, at least size(): a buffer padded to
// whole 8-byte words is referenced by the encoder instead of being copied into the
// message first.
// Thread-safety: immutable once shared; copies may be used from any thread.
class SharedBytes {
 public:
  SharedBytes() = default;
  // Shares `owner`, which keeps data[0, readable) alive and unchanged (readable >= size;
  // 0: size).
  static SharedBytes shared(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                            size_t readable = 0) {
    SharedBytes b;
    b.owner_ = std::move(owner);
    b.data_ = data;
    b.size_ = size;
    b.readable_ = readable > size ? readable : size;
    return b;
  }
  // A new buffer of `size` bytes, 8-byte aligned and padded with zeros to whole words;
  // the caller writes it through *out before sharing it.
  static SharedBytes make(size_t size, uint8_t** out) {
    const size_t padded = (size + 7) / 8 * 8;
    std::shared_ptr<uint64_t[]> words(new uint64_t[padded / 8 + (padded == 0)]);
    if (padded > 0) words[padded / 8 - 1] = 0;  // the padding (size is rarely whole words)
    *out = reinterpret_cast<uint8_t*>(words.get());
    return shared(std::shared_ptr<const void>(words, words.get()), *out, size, padded);
  }
  static SharedBytes copy_of(const uint8_t* data, size_t size) {
    uint8_t* out = nullptr;
    SharedBytes b = make(size, &out);
    if (size > 0) std::memcpy(out, data, size);
    return b;
  }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t readable() const { return readable_; }
  bool empty() const { return size_ == 0; }

  friend bool operator==(const SharedBytes& a, const SharedBytes& b) {
    return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_) == 0);
  }
  friend bool operator!=(const SharedBytes& a, const SharedBytes& b) { return !(a == b); }

 private:
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, readable_ = 0;
};

}  // namespace custody::msg
