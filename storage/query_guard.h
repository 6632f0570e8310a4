// Every store query's last line of defence, for storage/ only: records are checked as they
// are read (record_schema.h), so an exception that reaches a query is a reader's bug or
// damage of a kind the schema does not describe. Either way the answer is an error that
// says what to do, never an abort.
// Thread-safety: a pure function.
#pragma once

#include <exception>
#include <string>

#include "core/error.h"

namespace custody::storage {

// f() (returning a Result), or data loss naming `query` if it throws.
template <class F>
auto guarded(const char* query, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return data_loss(std::string("`") + query + "` met a damaged record in the custody store (" + e.what() +
                     "); run `custody audit verify` to find it");
  }
}

}  // namespace custody::storage
