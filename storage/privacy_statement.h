// `custody privacy MODEL`: the privacy statement of a model version or checkpoint, in the
// form "How to DP-fy ML" (Ponomareva et al. 2023, section 5.x) recommends reporting a DP
// model: the guarantee (epsilon, delta) and its unit (example-level, add/remove
// adjacency), the accountant, the mechanism's parameters (clipping norm, noise multiplier,
// sampling scheme and rate, steps), what the guarantee covers and what it does not. Built
// from the guarantee the run recorded with the checkpoint (docs/ARCHITECTURE.md,
// "Differential privacy") and the model card's facts (storage/model_card.h).
// Thread-safety: as CustodyStore's reads.
#pragma once

#include <string>

#include "storage/custody_store.h"

namespace custody::storage {

// {"model", "checkpoint", "private": bool, "guarantee": the recorded object or null,
//  "datasets": [...], "statement": plain text}. A model trained without [privacy] gets
// private = false and a statement saying that no guarantee is claimed.
Result<json> privacy_statement(const CustodyStore& store, const std::string& reference);

}  // namespace custody::storage
