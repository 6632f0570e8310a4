#include "tools/exit_codes.h"

#include <gtest/gtest.h>

#include <string>

namespace custody::cli {
namespace {

// The codes README's "Exit codes" and tests/integration rely on.
TEST(ExitCodesTest, EachErrorCodeHasTheExitCodeTheDocsPromise) {
  EXPECT_EQ(exit_code(ErrorCode::kOk), 0);
  EXPECT_EQ(exit_code(ErrorCode::kCancelled), 1);
  EXPECT_EQ(exit_code(ErrorCode::kInvalidArgument), 2);
  EXPECT_EQ(exit_code(ErrorCode::kUnavailable), 3);
  EXPECT_EQ(exit_code(ErrorCode::kDeadlineExceeded), 3);
  EXPECT_EQ(exit_code(ErrorCode::kNotFound), 4);
  EXPECT_EQ(exit_code(ErrorCode::kFailedPrecondition), 4);
  EXPECT_EQ(exit_code(ErrorCode::kPermissionDenied), 4);
  EXPECT_EQ(exit_code(ErrorCode::kDataLoss), 5);
  EXPECT_EQ(exit_code(ErrorCode::kInternal), 6);
}

TEST(ExitCodesTest, TheHelpFooterListsEveryExitCodeWithItsErrorCodes) {
  const std::string help = exit_code_help();
  for (const char* line :
       {"\n  0  ok", "\n  1  the job `wait` followed failed or was cancelled [cancelled]",
        "\n  2  bad usage or input", "[invalid argument]", "[unavailable, deadline exceeded]",
        "[not found, failed precondition, permission denied]", "\n  5  ", "[data loss]",
        "\n  6  a bug in custody"}) {
    EXPECT_NE(help.find(line), std::string::npos) << line << " in\n" << help;
  }
  EXPECT_NE(help.find("\n  7  `wait --max-seconds` ran out; the job goes on running"), std::string::npos) << help;
  EXPECT_EQ(help.find("\n  8"), std::string::npos) << help;
}

TEST(ExitCodesTest, ABordersClassificationKeepsTheMessageAndPicksTheRow) {
  const Status missing = not_found("cannot open job file 'a.toml'");
  EXPECT_EQ(bad_input(missing).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad_input(missing).message(), missing.message());
  EXPECT_TRUE(bad_input(Status::ok()).is_ok());

  EXPECT_EQ(no_answer(data_loss("garbled reply")).code(), ErrorCode::kUnavailable);
  EXPECT_EQ(no_answer(deadline_exceeded("no reply")).code(), ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(no_answer(Status::ok()).is_ok());

  // A refusal exits 4 whatever code the coordinator or the store gave.
  for (const Status& s :
       {invalid_argument("takes 32 features per row; got 3"), data_loss("tensor is corrupt"),
        unavailable("no store"), not_found("no job"), Status(ErrorCode::kPermissionDenied, "no")}) {
    EXPECT_EQ(exit_code(refused(s).code()), 4) << s.to_string();
    EXPECT_EQ(refused(s).message(), s.message());
  }
  EXPECT_EQ(refused(not_found("no job")).code(), ErrorCode::kNotFound);
  EXPECT_TRUE(refused(Status::ok()).is_ok());
}

TEST(ExitCodesTest, AReportedFailureHasItsCodeAndNoMessage) {
  EXPECT_EQ(reported(ErrorCode::kDataLoss).code(), ErrorCode::kDataLoss);
  EXPECT_TRUE(is_reported(reported(ErrorCode::kCancelled)));
  EXPECT_FALSE(is_reported(data_loss("lineage record 7 was changed")));
  EXPECT_FALSE(is_reported(Status::ok()));
}

}  // namespace
}  // namespace custody::cli
