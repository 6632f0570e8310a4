// `custody lineage graph ID`: the lineage around a model, checkpoint, run, prediction or
// data set as a Graphviz picture. The graph is drawn from the same trees `lineage trace`
// (upstream of a model, run or prediction) and `lineage impact` (downstream of a data set)
// print, so the picture and the text never disagree. Arrows follow the data: from a data
// set to the run that consumed it, to its checkpoints, models and predictions.
// Thread-safety: free functions without shared state.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace custody::cli {

// DOT text for a trace tree (upstream: arrows from each child to its parent) or an impact
// tree (downstream: arrows from each parent to its child). Nodes that name the same
// entity are drawn once.
std::string lineage_dot(const nlohmann::json& tree, bool downstream);

// SVG drawn by Graphviz's `dot` from DOT text; an error naming the package when `dot` is
// missing.
Result<std::string> dot_to_svg(const std::string& dot);

}  // namespace custody::cli
