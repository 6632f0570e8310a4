// The shape of every custody record, checked wherever a record is read back.
//
// The store's files can be changed behind the program's back (a disk fault, an operator,
// an intruder). A query that trusted a field's type would abort on such a record (a JSON
// type error) instead of answering; a query that silently skipped it would answer
// wrongly. So every record a query or the restart replay reads passes check_record()
// first, and a damaged one is a data-loss error that names the record and says what to do.
// The table in record_schema.cc lists, per record kind, the fields a reader relies on and
// their JSON types; a reader may use those fields' values without further checks.
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace custody::storage {

struct Record;

// "lineage record 42 (entity checkpoint ckpt-…)": how errors and verify name a record.
std::string describe(const Record& r);

// Ok, or data loss naming the record, the field and what is wrong with it:
//   "lineage record 42 (entity checkpoint ckpt-…) is damaged: field 'step' is a string, not
//    an unsigned number; run `custody audit verify` for the whole store"
Status check_record(const Record& r);
// What check_record would find wrong with a body about to be written to `log` ("" if
// nothing), without copying it into a Record.
std::string body_problem(const std::string& log, const nlohmann::json& body);

}  // namespace custody::storage
