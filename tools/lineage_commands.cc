// custody lineage show ID | trace ID | impact DATASET | export --openlineage JOB |
// graph ID: the custody store's lineage, read from the store's files (storage/queries.h).
#include <fstream>

#include "core/files.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"
#include "tools/command.h"
#include "tools/lineage_graph.h"

namespace custody::cli {
namespace {

struct LineageArgs {
  std::string id, graph_format = "dot", out_file;
  bool as_json = false, openlineage = false;
};

using Query = Result<storage::json> (*)(const storage::CustodyStore&, const std::string&);

// A lineage query on one id: JSON with --json, else `as_text` of it.
void add_query(CommandSet& commands, CLI::App& lineage, const std::shared_ptr<LineageArgs>& a,
               const char* name, const char* description, Query query, const char* id_name,
               const char* id_description, std::string (*as_text)(const storage::json&)) {
  auto* command = commands.add(lineage, name, description, [a, query, as_text](Session& s) {
    return print_query(
        s, a->as_json, [&](const storage::CustodyStore& st) { return query(st, a->id); }, as_text);
  });
  command->add_option(id_name, a->id, id_description)->required();
  add_json_flag(command, a->as_json);
}

Status export_openlineage(Session& s, const std::string& job_id) {
  CUSTODY_ASSIGN_OR_RETURN(auto store, s.open_store());
  CUSTODY_ASSIGN_OR_RETURN(const std::string lines, refused(storage::openlineage(*store, job_id)));
  print(lines);
  return Status::ok();
}

// A data set is drawn with what it reached (impact); anything else with where it came
// from (trace).
Status graph(Session& s, const LineageArgs& a) {
  if (a.graph_format != "dot" && a.graph_format != "svg") {
    return invalid_argument("--format '" + a.graph_format + "' is not one of dot, svg");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto store, s.open_store());
  CUSTODY_ASSIGN_OR_RETURN(const std::string id, refused(storage::resolve_id(*store, a.id)));
  const bool dataset = id.rfind(storage::lineage::prefix::kDataset, 0) == 0;
  CUSTODY_ASSIGN_OR_RETURN(const storage::json tree,
                           refused(dataset ? storage::impact(*store, a.id) : storage::trace(*store, a.id)));
  std::string text = lineage_dot(tree, dataset);
  if (a.graph_format == "svg") {
    CUSTODY_ASSIGN_OR_RETURN(text, dot_to_svg(text));
  }
  if (a.out_file.empty()) {
    print(text);
    return Status::ok();
  }
  CUSTODY_RETURN_IF_ERROR(write_file_atomically(a.out_file, text, 0644));
  std::printf("wrote %s (%s, %s of %s)\n", a.out_file.c_str(), a.graph_format.c_str(),
              dataset ? "downstream" : "upstream", id.c_str());
  return Status::ok();
}

}  // namespace

void add_lineage_commands(CommandSet& commands) {
  auto a = std::make_shared<LineageArgs>();
  CLI::App* lineage = commands.add_group("lineage", "inspect lineage");
  add_query(commands, *lineage, a, "show", "one record and its relations", storage::show, "ID", "any id",
            as_json_text);
  add_query(commands, *lineage, a, "trace", "upstream: data, job, submitter, contributors", storage::trace,
            "ID", "model (NAME[@VERSION]), checkpoint or job id", storage::render_tree);
  add_query(commands, *lineage, a, "impact", "downstream: every checkpoint and model that used a data set",
            storage::impact, "DATASET", "data set hash (or a prefix of it) or name", storage::render_tree);

  auto* lexport = commands.add(*lineage, "export", "export a job's lineage",
                               [a](Session& s) { return export_openlineage(s, a->id); });
  lexport->add_option("JOB", a->id, "job id")->required();
  lexport
      ->add_flag("--openlineage", a->openlineage, "as OpenLineage 2-0-2 RunEvents, one JSON object per line")
      ->required();

  auto* graph_cmd = commands.add(*lineage, "graph", "draw the lineage around an id (Graphviz DOT or SVG)",
                                 [a](Session& s) { return graph(s, *a); });
  graph_cmd->add_option("ID", a->id, "model (NAME[@VERSION]), checkpoint, job, prediction or data set")->required();
  graph_cmd->add_option("--format", a->graph_format, "dot, or svg (drawn by Graphviz's dot)")->capture_default_str();
  graph_cmd->add_option("--out", a->out_file, "write to FILE instead of standard output");
}

}  // namespace custody::cli
