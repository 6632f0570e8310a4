// custody lineage show ID | trace ID | impact DATASET | export --openlineage JOB: the
// custody store's lineage, read from the store's files (storage/queries.h).
#include "storage/queries.h"
#include "tools/command.h"

namespace custody::cli {
namespace {

struct LineageArgs {
  std::string id;
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
}

}  // namespace custody::cli
