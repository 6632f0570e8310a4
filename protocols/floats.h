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

}  // namespace custody::msg
