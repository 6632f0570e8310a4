#include "core/error.h"

namespace custody {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline exceeded";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kDataLoss: return "data loss";
    case ErrorCode::kInternal: return "internal error";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kPermissionDenied: return "permission denied";
  }
  return "unknown error";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(custody::to_string(code_)) + ": " + message_;
}

}  // namespace custody
