// Liability over the custody record (issue 15): withdrawals of data (revocations), the
// taint they imply, an admin's exceptions to it, and the purposes a model version may be
// used for. docs/ARCHITECTURE.md, "Withdrawal, taint and purposes", says what each means.
//
// Taint is derived, never copied. A revocation is one record, on the data set it withdraws
// (whole, or some training record indices). Whether a checkpoint is tainted is computed when
// asked, by walking its lineage upstream: its run, the data sets that run consumed, the
// checkpoint the run was initialised from (fine-tuning), that checkpoint's run, and so on.
// So a revocation recorded today taints every model trained on that data before it, every
// model fine-tuned from those, and every use of them from now on, without rewriting a record.
//
// Purposes work the same way: each submission declares a data set's licence (an SPDX id,
// the purposes it allows) and the purposes its people consented to, on its `consumed`
// relation; a model version may be used for a purpose only if every declaration upstream of
// it, through fine-tuning, allows it (the intersection).
//
// The writers (record_*) each write one atomic batch (hence one audit record). The readers
// read the store only. Thread-safety: functions of a store; as safe as its reads and writes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/custody_store.h"

namespace custody::storage::liability {

// What `custody predict` and `export` send when no --purpose is given: no purpose.
inline constexpr char kUnspecifiedPurpose[] = "unspecified";

// The record indices a revocation file lists: whole numbers (training record indices from 0),
// separated by white space or commas, '#' to the end of a line a comment, `A-B` an inclusive
// range. Sorted, without repeats. `origin` names the file in errors, which name the line.
Result<std::vector<uint64_t>> parse_record_list(const std::string& text, const std::string& origin);

// The principal who owns a data set: whoever declared it in the first submission that
// consumed it ("principal:NAME"); "" when no submission did.
Result<std::string> dataset_owner(const CustodyStore& store, const std::string& dataset_id);

// Records a revocation by `by` ("principal:NAME") of a whole data set (records empty) or of
// some of its training records. The indices must be below the data set's training samples.
// Returns the revocation entity as recorded (its "id" is "revocation:<16 hex>").
Result<json> record_revocation(CustodyStore& store, const std::string& dataset_id, const std::vector<uint64_t>& records,
                               const std::string& reason, const std::string& by);
// Records that `by` asked to revoke `dataset_ref` and was refused, and why.
Status record_revocation_refused(CustodyStore& store, const std::string& dataset_ref, const std::vector<uint64_t>& records,
                                 const std::string& by, const std::string& why);
// Records an admin's permission to use the tainted `checkpoint` (as model `label`, "" if
// none) despite `revocation`, for `purpose` only. Returns the override entity.
Result<json> record_override(CustodyStore& store, const std::string& checkpoint, const std::string& label,
                             const std::string& revocation, const std::string& purpose, const std::string& reason,
                             const std::string& by);
// Records a refused use: `refusal` holds at least "action", "principal", "target" and "why".
Status record_use_refused(CustodyStore& store, json refusal);

// Every revocation that reaches `checkpoint` through its lineage, each as the revocation's
// entity with "dataset_name", "run" (the run that read the data) and "path" (the runs and
// checkpoints between, nearest first). Empty: not tainted.
Result<std::vector<json>> taint_of(const CustodyStore& store, const std::string& checkpoint);
// The overrides recorded for `checkpoint` (entities, oldest first).
Result<std::vector<json>> overrides_of(const CustodyStore& store, const std::string& checkpoint);

// The purposes `checkpoint` may be used for: {"restricted": bool, "allowed": [..] (when
// restricted), "clauses": [{"dataset", "dataset_name", "run", "declared_by", "clause":
// "licence"|"consent", "spdx", "license", "allowed": [..]}]}. Unrestricted: no declaration
// upstream limits purposes.
Result<json> permissions_of(const CustodyStore& store, const std::string& checkpoint);

// Whether `checkpoint` (called `label`, e.g. "fashion@3" or the checkpoint id) may be used
// for `purpose` by a `action` ("predict", "export"). `named_by_newest`: the caller named the
// model without a version, so that a tainted newest version says that no older one is
// served instead. Errors: failed_precondition naming the revocation (tainted, no override for
// this purpose); permission_denied naming the data set and clause (purpose not allowed or
// not given). On success `overrides_used` (if not null) receives the overrides applied.
// The words check_use's refusal of a tainted version carries, and whether `s` is that
// refusal (HTTP answers it 451 Unavailable For Legal Reasons, actors/inference_http.h).
constexpr char kTaintRefusal[] = " is tainted by revocation ";
inline bool is_taint_refusal(const Status& s) {
  return s.code() == ErrorCode::kFailedPrecondition && s.message().find(kTaintRefusal) != std::string::npos;
}

Status check_use(const CustodyStore& store, const std::string& checkpoint, const std::string& label,
                 const std::string& purpose, bool named_by_newest, std::vector<std::string>* overrides_used = nullptr);

// check_use() with its answers kept until the lineage log grows: everything the check reads
// (entities, relations and their index entries) is lineage, written append-only in the
// batch of the records, so while the log holds the same number of records the answer
// cannot change; any lineage write (a revocation, an override, a refusal, a new run) makes
// the next check read the store again. Costs a read of the lineage log's head per call
// instead of a walk of the lineage (bench/liability_check.cc).
// Thread-safety: none; one per serving actor.
class UseCheckCache {
 public:
  Status check(const CustodyStore& store, const std::string& checkpoint, const std::string& label,
               const std::string& purpose, bool named_by_newest, std::vector<std::string>* overrides_used = nullptr);

 private:
  struct Answer {
    uint64_t lineage_size = 0;
    Status status;
    std::vector<std::string> overrides;
  };
  std::map<std::string, Answer> answers_;  // by checkpoint, label, purpose, named_by_newest
};

// One line for a revocation: "revocation:… of data set NAME (3 records) by alice at …: reason".
std::string describe_revocation(const json& revocation);

}  // namespace custody::storage::liability
