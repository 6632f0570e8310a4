// custody lineage show ID | trace ID | impact DATASET | export --openlineage JOB |
// graph ID, and custody privacy MODEL: the custody store's lineage, asked of the
// coordinator, or read from the store's files with --store (storage/store_query.h).
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

// A lineage query on one id: JSON with --json, else `as_text` of it.
void add_query(CommandSet& commands, CLI::App& lineage, const std::shared_ptr<LineageArgs>& a,
               const char* name, const char* description, const char* id_name, const char* id_description,
               std::string (*as_text)(const storage::json&)) {
  auto* command = commands.add(lineage, name, description, [a, name, as_text](Session& s) {
    return print_query(s, a->as_json, name, a->id, as_text);
  });
  command->add_option(id_name, a->id, id_description)->required();
  add_json_flag(command, a->as_json);
}

Status export_openlineage(Session& s, const std::string& job_id) {
  CUSTODY_ASSIGN_OR_RETURN(const storage::json answer, refused(ask_store(s, "openlineage", job_id)));
  print(answer.value("lines", std::string()));
  return Status::ok();
}

// A data set is drawn with what it reached (impact); anything else with where it came
// from (trace).
Status graph(Session& s, const LineageArgs& a) {
  if (a.graph_format != "dot" && a.graph_format != "svg") {
    return invalid_argument("--format '" + a.graph_format + "' is not one of dot, svg");
  }
  CUSTODY_ASSIGN_OR_RETURN(const storage::json answer, refused(ask_store(s, "graph", a.id)));
  const std::string id = answer.value("id", std::string());
  const bool dataset = answer.value("dataset", false);
  std::string text = lineage_dot(answer.value("tree", storage::json::object()), dataset);
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
  add_query(commands, *lineage, a, "show", "one record and its relations", "ID", "any id", as_json_text);
  add_query(commands, *lineage, a, "trace", "upstream: data, job, submitter, contributors", "ID",
            "model (NAME[@VERSION]), checkpoint or job id", storage::render_tree);
  add_query(commands, *lineage, a, "impact", "downstream: every checkpoint and model that used a data set",
            "DATASET", "data set hash (or a prefix of it) or name", storage::render_tree);

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
