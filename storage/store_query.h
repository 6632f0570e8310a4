// The custody store's read-only queries by name: one table for `custody` reading a store's
// files (--store) and for the coordinator answering a StoreQuery from a CLI on any machine,
// so that both give the same JSON (what `--json` prints; the CLI renders text from it).
//
//   models                     every model version
//   checkpoints JOB            a job's checkpoints
//   show ID | trace ID         one record and its relations | upstream of a model, job, ...
//   impact DATASET             downstream of a data set
//   graph ID                   what `lineage graph` draws: {"id", "dataset", "tree"}
//   openlineage JOB            {"lines": OpenLineage RunEvents, one JSON object per line}
//   privacy MODEL | DATASET    a model's privacy statement, or a data set's privacy
//                              spending against its budget
//   verify [ARGUMENT]          CustodyStore::verify() as JSON; ARGUMENT, if not empty, is
//                              {"kept_heads": TEXT of a head file, "public_key": HEX or ""}
//                              and the answer also says whether the logs extend those heads
// Thread-safety: reads only; safe beside the store's writer.
#pragma once

#include <string>
#include <vector>

#include "storage/custody_store.h"

namespace custody::storage {

// Errors: invalid argument naming the known queries for an unknown one; else the query's.
Result<json> run_query(const CustodyStore& store, const std::string& query, const std::string& argument);
// The names run_query() knows, in the order above.
const std::vector<std::string>& query_names();

// verify's argument, as the CLI builds it from --since FILE and --public-key.
std::string verify_argument(const std::string& kept_heads_text, const std::string& public_key);

}  // namespace custody::storage
