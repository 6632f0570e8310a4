// A model card: what someone who receives an exported model file needs to know about it,
// gathered from the custody store (the trace of the model version or checkpoint):
// name and version, checkpoint and root hash, architecture and input preprocessing, the
// data sets with their licences and consent, the submitter, the training configuration
// (the canonical job spec), test accuracy, the contributing workers, and the privacy
// guarantee when the run recorded one. The exporter adds the export's own facts (usage
// record, file, format, hash). JSON; the CLI also renders it as Markdown.
// Thread-safety: as CustodyStore's reads.
#pragma once

#include <string>

#include "storage/custody_store.h"

namespace custody::storage {

// `reference` as `custody export` takes it: a checkpoint id, NAME@VERSION or NAME.
Result<json> model_card(const CustodyStore& store, const std::string& reference);

}  // namespace custody::storage
