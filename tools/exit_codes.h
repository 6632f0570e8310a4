// The `custody` CLI's exit codes: one table from ErrorCode. A command reports what went
// wrong as a Status; main() alone turns it into an exit code (exit_code) and prints its
// message. The --help footer prints the table (exit_code_help); README's "Exit codes"
// says the same.
//
// Where an error arises decides its code, and so its row. The CLI classifies at three
// borders, keeping each message as it is:
//   bad_input  the user's own input: a flag, a config file, a file named on the command
//              line, the coordinator's address                                  -> 2
//   no_answer  the coordinator did not answer, or not in a form this client reads -> 3
//   refused    the coordinator refused the request, or the store does not hold (or
//              cannot give) what was asked for, whatever code it gave               -> 4
// Thread-safety: plain functions of their arguments.
#pragma once

#include <string>
#include <utility>

#include "core/error.h"

namespace custody::cli {

// The exit code of a command that ended with `code` (0 for kOk).
int exit_code(ErrorCode code);

// "Exit codes: 0 ok; 1 ...; 2 ...", one entry per exit code with the ErrorCodes that map
// to it, for the --help footer.
std::string exit_code_help();

Status bad_input(Status s);
Status no_answer(Status s);
Status refused(Status s);
// The same for a Result's error; a value passes unchanged:
//   CUSTODY_ASSIGN_OR_RETURN(auto store, refused(CustodyStore::open(path, mode)));
template <class T>
Result<T> bad_input(Result<T> r) {
  return r.is_ok() ? std::move(r) : Result<T>(bad_input(r.status()));
}
template <class T>
Result<T> no_answer(Result<T> r) {
  return r.is_ok() ? std::move(r) : Result<T>(no_answer(r.status()));
}
template <class T>
Result<T> refused(Result<T> r) {
  return r.is_ok() ? std::move(r) : Result<T>(refused(r.status()));
}

// `wait --max-seconds` ran out while the job goes on: its own exit code, so that a script
// tells "still running" from "the coordinator did not answer" (3). Not an ErrorCode: it
// is no error of the request, and never crosses the wire.
constexpr int kWaitGaveUpExit = 7;

// A failure the command has already printed in full (`wait` prints a failed job's end,
// `audit verify` its problem, on stdout): main exits with the code's exit code and
// prints nothing more. Its message is empty.
Status reported(ErrorCode code);
bool is_reported(const Status& s);

}  // namespace custody::cli
