// custody: the command-line client of a Custody cluster.
//   custody submit JOBFILE        prints the job id
//   custody status [JOB]          one job, or every job and node
//   custody jobs                  every job
//   custody wait JOB              a live progress line until the job ends
//   custody cancel JOB
//   custody resume JOB            run a failed or cancelled job on from its last checkpoint
//   custody models | checkpoints JOB | usage MODEL
//   custody lineage show ID | trace ID | impact DATASET | export --openlineage JOB
//   custody export CHECKPOINT FILE [--format onnx|safetensors|raw]  (recorded as a use; writes a model card)
//   custody predict MODEL --input FILE   class, probabilities and a prediction id per row
//   custody audit verify [--since HEADS] | head [--out FILE] | prove RECEIPT --public-key KEY
//   custody principal add NAME --role ROLE
//   custody privacy MODEL | DATASET        a model's privacy statement; a data set's spending
//   custody privacy budget set DATASET --epsilon E --delta D
//   custody store backup DIR | backups DIR | restore DIR --store PATH | rekey --store PATH
// Every command: --coordinator ADDR, --timeout-ms N, --token-file FILE; queries: --json.
// Store queries read the custody store directly (--store PATH, or the path the
// coordinator reports). The commands live in tools/*_commands.cc (tools/command.h); the
// exit codes are one table from ErrorCode (tools/exit_codes.h, printed by --help).
#include "core/version.h"
#include "tools/command.h"
#include "tools/exit_codes.h"

using namespace custody;

int main(int argc, char** argv) {
  cli::Session session;
  // Defaults from the CLI config (configs/cli.toml documents it); flags override them.
  Status config = session.read_config(argc, argv);
  if (!config.is_ok()) return cli::finish(config);

  CLI::App app{"custody: submit and follow training jobs on a Custody cluster"};
  app.footer(cli::exit_code_help());
  app.require_subcommand(1);
  app.set_version_flag("--version", version_string());
  app.fallthrough();  // global options (--coordinator, --store, ...) may also follow the command
  cli::add_global_options(app, session);
  cli::CommandSet commands(app, session);
  cli::add_job_commands(commands);
  cli::add_store_commands(commands);
  cli::add_lineage_commands(commands);
  cli::add_serve_commands(commands);
  cli::add_audit_commands(commands);
  cli::add_admin_commands(commands);
  cli::add_privacy_commands(commands);
  cli::add_liability_commands(commands);
  cli::add_attribute_commands(commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli::finish(app, e);
  }
  const int code = cli::finish(commands.run());
  return session.wait_gave_up ? cli::kWaitGaveUpExit : code;
}
