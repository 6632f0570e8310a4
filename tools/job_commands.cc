// custody submit | status | jobs | wait | cancel | resume: the jobs, through the coordinator.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/job_spec.h"
#include "tools/command.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

// wait --max-seconds: up to a year.
constexpr IntRange kMaxSecondsRange{0, 365LL * 24 * 3600};

struct JobArgs {
  std::string job_file, job_id, budget_override;
  int64_t max_seconds = 3600;
  bool as_json = false;
};

Status need_job_id(const std::string& job_id) {
  if (job_id.empty()) return invalid_argument("an empty job id; `custody jobs` lists the jobs");
  return Status::ok();
}

Status submit(Session& s, const std::string& job_file, const std::string& budget_override) {
  std::ifstream in(job_file, std::ios::binary);
  if (!in) return invalid_argument("cannot open job file '" + job_file + "'");
  std::stringstream text;
  text << in.rdbuf();
  // Check locally first, for an error that points at the file before any network.
  CUSTODY_RETURN_IF_ERROR(bad_input(parse_job_spec(text.str(), job_file).status()));
  CUSTODY_ASSIGN_OR_RETURN(
      auto accepted, s.client.ask<msg::JobAccepted>("", msg::SubmitJob{text.str(), job_file, s.principal, budget_override}));
  std::printf("%s\n", accepted.job_id.c_str());
  // Whether it starts now, waits its turn, or cannot be placed on the nodes alive.
  if (accepted.message != "starting")
    std::fprintf(stderr, "%s: %s\n", accepted.job_id.c_str(), accepted.message.c_str());
  return Status::ok();
}

// `status [JOB]` (with the nodes when no job is named) and `jobs`.
Status status(Session& s, const JobArgs& a, bool is_status) {
  const msg::StatusRequest request{is_status && a.job_id.empty()};
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::StatusReply>(a.job_id, request));
  if (a.as_json) {
    std::printf("%s\n", status_json(reply, !a.job_id.empty(), is_status).dump(2).c_str());
  } else {
    print(status_text(reply));
  }
  return Status::ok();
}

// Follows a job until it ends: a live line on a terminal, a line per epoch or state otherwise.
Status wait(Session& s, const JobArgs& a) {
  CUSTODY_RETURN_IF_ERROR(need_job_id(a.job_id));
  const bool tty = isatty(STDOUT_FILENO) && !a.as_json;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(a.max_seconds);
  uint32_t printed_epoch = UINT32_MAX;
  msg::JobState last_state = msg::JobState::kPending;
  for (bool first = true;; first = false) {
    CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::StatusReply>(a.job_id, msg::StatusRequest{false}));
    if (reply.jobs.empty()) return not_found("no job '" + a.job_id + "'");
    const msg::JobStatus& j = reply.jobs[0];
    const std::string line = progress_line(j);
    if (tty) {
      std::printf("\r\033[K%s", line.c_str());
    } else if (!a.as_json && (first || j.epoch != printed_epoch || j.state != last_state)) {
      std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
    printed_epoch = j.epoch;
    last_state = j.state;
    if (msg::is_terminal(j.state)) {
      if (tty) std::printf("\n");
      if (a.as_json) {
        std::printf("%s\n", job_json(j).dump(2).c_str());
      } else {
        std::printf("%s %s: %s\n", j.job_id.c_str(), msg::to_string(j.state), j.message.c_str());
      }
      return j.state == msg::JobState::kCompleted ? Status::ok() : reported(ErrorCode::kCancelled);
    }
    if (std::chrono::steady_clock::now() > give_up) {
      if (tty) std::printf("\n");
      s.wait_gave_up = true;
      return deadline_exceeded("job " + a.job_id + " has not ended after " + std::to_string(a.max_seconds) +
                               " s (--max-seconds); it goes on running");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

Status cancel(Session& s, const std::string& job_id) {
  CUSTODY_RETURN_IF_ERROR(need_job_id(job_id));
  CUSTODY_RETURN_IF_ERROR(s.client.call(job_id, msg::CancelJob{"", s.principal}).status());
  std::printf("%s cancelled\n", job_id.c_str());
  return Status::ok();
}

Status resume(Session& s, const std::string& job_id) {
  CUSTODY_RETURN_IF_ERROR(need_job_id(job_id));
  CUSTODY_ASSIGN_OR_RETURN(auto accepted,
                           s.client.ask<msg::JobAccepted>(job_id, msg::ResumeJob{s.principal}));
  std::printf("%s %s\n", job_id.c_str(), accepted.message.c_str());
  return Status::ok();
}

}  // namespace

void add_job_commands(CommandSet& commands) {
  auto a = std::make_shared<JobArgs>();

  auto* submit_cmd = commands.add("submit", "submit a job file; prints the job id",
                                  [a](Session& s) { return submit(s, a->job_file, a->budget_override); });
  submit_cmd->add_option("JOBFILE", a->job_file, "TOML job file (see configs/jobs/)")->required();
  submit_cmd->add_option("--override-privacy-budget", a->budget_override,
                         "admins: run a job without [privacy] on a data set with a privacy budget; the REASON "
                         "is recorded");
  commands.add_as_option(submit_cmd, "the principal submitting the job");

  auto* status_cmd = commands.add("status", "the state of one job, or of every job and node",
                                  [a](Session& s) { return status(s, *a, true); });
  status_cmd->add_option("JOB", a->job_id, "job id");
  add_json_flag(status_cmd, a->as_json);

  auto* nodes_cmd = commands.add("nodes", "every node: role, alive, address, the job it works for, last heartbeat",
                                 [a](Session& s) -> Status {
                                   CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::StatusReply>(
                                                                            "", msg::StatusRequest{true}));
                                   print(a->as_json ? nodes_json(reply).dump(2) + "\n" : nodes_text(reply));
                                   return Status::ok();
                                 });
  add_json_flag(nodes_cmd, a->as_json);

  auto* jobs_cmd = commands.add("jobs", "list every job", [a](Session& s) { return status(s, *a, false); });
  add_json_flag(jobs_cmd, a->as_json);

  auto* wait_cmd = commands.add("wait", "follow a job until it ends; exit 0 if it completed",
                                [a](Session& s) { return wait(s, *a); });
  wait_cmd->add_option("JOB", a->job_id, "job id")->required();
  add_ranged_option(wait_cmd, "--max-seconds", a->max_seconds, kMaxSecondsRange,
                    "give up waiting after this long");
  add_json_flag(wait_cmd, a->as_json, "print the final status as JSON");

  auto* cancel_cmd = commands.add("cancel", "cancel a job", [a](Session& s) { return cancel(s, a->job_id); });
  cancel_cmd->add_option("JOB", a->job_id, "job id")->required();

  auto* resume_cmd = commands.add("resume", "run a failed or cancelled job on from its last checkpoint",
                                  [a](Session& s) { return resume(s, a->job_id); });
  resume_cmd->add_option("JOB", a->job_id, "job id")->required();
  commands.add_as_option(resume_cmd, "the principal resuming the job");
}

}  // namespace custody::cli
