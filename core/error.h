// Status and Result<T>: how every layer of Custody reports failure.
//
// Errors are values, never exceptions across layer boundaries and never aborts on bad
// input. A Status names what went wrong and, where it can, what to do about it. The codes
// carry retry meaning (as in abseil/RocksDB):
//   kUnavailable        retry the same call later (peer down, not yet registered)
//   kDeadlineExceeded   a wait ran out; the message says what was waited for
//   kInvalidArgument    the caller's input is wrong; do not retry unchanged
//   kFailedPrecondition the system is not in a state to do this; fix the state first
//   kNotFound           an id that is not known
//   kDataLoss           stored or received bytes are corrupt
//   kInternal           a bug: please report it
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace custody {

enum class ErrorCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kUnavailable = 3,
  kDeadlineExceeded = 4,
  kFailedPrecondition = 5,
  kDataLoss = 6,
  kInternal = 7,
  kCancelled = 8,
  kPermissionDenied = 9,
};

const char* to_string(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Status unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
inline Status deadline_exceeded(std::string m) { return {ErrorCode::kDeadlineExceeded, std::move(m)}; }
inline Status failed_precondition(std::string m) { return {ErrorCode::kFailedPrecondition, std::move(m)}; }
inline Status data_loss(std::string m) { return {ErrorCode::kDataLoss, std::move(m)}; }
inline Status internal_error(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }

// Either a T or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  // A Result holds a value or an error, never "ok and nothing": an ok Status here is a bug
  // of the caller's, reported as kInternal rather than as a Result without a value.
  Result(Status status)
      : v_(status.is_ok() ? Status(ErrorCode::kInternal, "a Result was made from an ok Status and no value")
                          : std::move(status)) {}

  bool is_ok() const { return v_.index() == 0; }
  // REQUIRES: is_ok()
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  // The error; an ok Status when is_ok().
  Status status() const { return is_ok() ? Status::ok() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace custody

#define CUSTODY_CONCAT_INNER_(a, b) a##b
#define CUSTODY_CONCAT_(a, b) CUSTODY_CONCAT_INNER_(a, b)

// Declares or assigns `lhs` from the value of an expression that yields a Result<T>, or
// returns its error from the enclosing function (which returns Status or Result<U>):
//   CUSTODY_ASSIGN_OR_RETURN(auto spec, JobSpec::parse(text, origin));
// The expression may contain commas. As KJ_UNWRAP_OR_RETURN and absl's ASSIGN_OR_RETURN.
#define CUSTODY_ASSIGN_OR_RETURN(lhs, ...) \
  CUSTODY_ASSIGN_OR_RETURN_IMPL_(CUSTODY_CONCAT_(custody_result_, __LINE__), lhs, __VA_ARGS__)
#define CUSTODY_ASSIGN_OR_RETURN_IMPL_(result, lhs, ...) \
  auto result = (__VA_ARGS__);                           \
  if (!result.is_ok()) return result.status();           \
  lhs = std::move(result).value()

// Propagates a non-ok Status from an expression that yields a Status.
#define CUSTODY_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::custody::Status custody_s_ = (expr);   \
    if (!custody_s_.is_ok()) return custody_s_; \
  } while (0)
