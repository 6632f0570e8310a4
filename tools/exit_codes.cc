#include "tools/exit_codes.h"

#include <algorithm>

namespace custody::cli {
namespace {

struct Row {
  ErrorCode code;
  int exit;
  const char* meaning;  // said once per exit code, on its first row
};

// The table. Keep README ("Exit codes") in step; tests/tools/exit_codes_test.cc holds
// every row to it.
constexpr Row kTable[] = {
    {ErrorCode::kOk, 0, "ok"},
    {ErrorCode::kCancelled, 1, "the job `wait` followed failed or was cancelled"},
    {ErrorCode::kInvalidArgument, 2, "bad usage or input (a flag, a config, job or input file)"},
    {ErrorCode::kUnavailable, 3, "the coordinator did not answer"},
    {ErrorCode::kDeadlineExceeded, 3, ""},
    {ErrorCode::kNotFound, 4,
     "the coordinator refused the request, or the store does not hold what was asked for"},
    {ErrorCode::kFailedPrecondition, 4, ""},
    {ErrorCode::kPermissionDenied, 4, ""},
    {ErrorCode::kDataLoss, 5, "`audit verify` or `audit prove` found a problem"},
    {ErrorCode::kInternal, 6, "a bug in custody (please report it)"},
};

Status with_code(ErrorCode code, const Status& s) { return Status(code, s.message()); }

}  // namespace

int exit_code(ErrorCode code) {
  for (const Row& row : kTable)
    if (row.code == code) return row.exit;
  return exit_code(ErrorCode::kInternal);  // a code added to core/error.h but not here
}

std::string exit_code_help() {
  std::string help = "Exit codes:";
  int last = 0;
  for (const Row& row : kTable) last = std::max(last, row.exit);
  for (int exit = 0; exit <= last; ++exit) {
    std::string meaning, codes;
    for (const Row& row : kTable) {
      if (row.exit != exit) continue;
      if (*row.meaning) meaning = row.meaning;
      if (row.code != ErrorCode::kOk) codes += std::string(codes.empty() ? "" : ", ") + to_string(row.code);
    }
    help += "\n  " + std::to_string(exit) + "  " + meaning + (codes.empty() ? "" : " [" + codes + "]");
  }
  help += "\n  " + std::to_string(kWaitGaveUpExit) + "  `wait --max-seconds` ran out; the job goes on running";
  return help;
}

Status bad_input(Status s) { return s.is_ok() ? s : with_code(ErrorCode::kInvalidArgument, s); }

Status no_answer(Status s) {
  if (s.is_ok() || s.code() == ErrorCode::kDeadlineExceeded) return s;
  return with_code(ErrorCode::kUnavailable, s);
}

Status refused(Status s) {
  if (s.is_ok() || s.code() == ErrorCode::kNotFound || s.code() == ErrorCode::kPermissionDenied) return s;
  return with_code(ErrorCode::kFailedPrecondition, s);
}

Status reported(ErrorCode code) { return Status(code, ""); }

bool is_reported(const Status& s) { return !s.is_ok() && s.message().empty(); }

}  // namespace custody::cli
