// Randomized kill trials: short synthetic jobs on a LocalCluster of real processes while
// workers, parameter servers and the coordinator are SIGKILLed at moments drawn from a
// seeded std::mt19937; then the checks a user would make. Every job ends as the trial
// made it expected (completed; failed after running out of max_recoveries) within a
// deadline, a completed job's checkpoint chain holds every (rank, step) exactly once,
// `custody audit verify` passes, an ended job waits for nothing, and a completed BSP job
// is accurate.
//
// A trial is named by its seed alone: the seed picks the scenario (seed % kScenarios, so
// consecutive seeds cover them all) and every draw after it. Each action is printed and
// written to <cluster dir>/chaos.log (kept when the trial fails), so a failure is replayed
// with `chaos_soak --seeds SEED`. What a seed fixes is the schedule: which node, at which
// step of the job, after which pause, restarted or not. A kill lands once the job has
// reached its drawn step, so a seed aims at the same place on a faster or slower machine;
// where exactly the signal lands (and so the outcome) still depends on timing.
//
// chaos_test.cc runs one fixed seed per scenario in CI; chaos_soak.cc runs more.
// Not thread-safe: one trial at a time per process (LocalCluster names its directory
// after the process id).
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/checkpoint_chain.h"
#include "tests/integration/cluster.h"

namespace custody::testing::chaos {

using nlohmann::json;

enum class Scenario {
  kBsp,            // BSP, two servers, two workers and sometimes a spare; anything killed
  kAsp,            // the same, ASP
  kColocated,      // worker-1 runs ps-1 in its process (--with-ps): killing it loses both
  kAuth,           // --auth: nodes and the CLI carry tokens across coordinator restarts
  kCancelResume,   // a kill, then `cancel` while the job recovers, then `resume`
  kTwoJobs,        // a BSP and an ASP job at once, sharing the servers
  kMaxRecoveries,  // --max-recoveries 1 and kills until the job gives up: it must fail
};
constexpr uint32_t kScenarios = 7;

inline Scenario scenario_of(uint32_t seed) { return static_cast<Scenario>(seed % kScenarios); }

inline const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kBsp: return "bsp";
    case Scenario::kAsp: return "asp";
    case Scenario::kColocated: return "colocated";
    case Scenario::kAuth: return "auth";
    case Scenario::kCancelResume: return "cancel_resume";
    case Scenario::kTwoJobs: return "two_jobs";
    case Scenario::kMaxRecoveries: return "max_recoveries";
  }
  return "?";
}

// The job of every trial: 8 epochs of 400 steps per rank on 12800 synthetic samples
// (1.5-2 s of training on a 2-core machine), a checkpoint every 200 steps.
constexpr int kRanks = 2, kBatch = 16, kEpochs = 8, kTrainSamples = 12800, kCheckpointEvery = 200;
constexpr double kAccuracyBound = 0.85;  // BSP reaches 0.9+ on these clusters
// Longest a job may take to end after the last action: recoveries wait for heartbeat
// timeouts and restarted nodes, but a job of a few seconds never needs a minute.
constexpr int kJobDeadlineSeconds = 60;

inline std::string job_text(const std::string& name, const std::string& consistency, int epochs) {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = " + std::to_string(kBatch) + "\nworkers = " + std::to_string(kRanks) +
         "\nconsistency = \"" + consistency + "\"\ncheckpoint_every_steps = " + std::to_string(kCheckpointEvery) +
         "\nseed = 3\n[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\n"
         "learning_rate = 0.1\n[data]\nkind = \"synthetic\"\nname = \"chaos-clusters\"\n[data.synthetic]\n"
         "train_samples = " + std::to_string(kTrainSamples) + "\ntest_samples = 400\nfeatures = 32\nclasses = 4\n";
}

inline bool ended(const json& s) {
  return s.is_object() && (s["state"] == "completed" || s["state"] == "failed" || s["state"] == "cancelled");
}

class Trial {
 public:
  explicit Trial(uint32_t seed) : seed_(seed), scenario_(scenario_of(seed)), rng_(seed) {}

  // Runs the trial; failures are reported through GoogleTest.
  void run() {
    start_ = std::chrono::steady_clock::now();
    plan_cluster();
    cluster_ = std::make_unique<LocalCluster>("chaos-" + std::to_string(seed_), options_);
    log_.open(cluster_->dir() / "chaos.log");
    say("seed " + std::to_string(seed_) + ", scenario " + scenario_name(scenario_) + ": " + layout_);
    track_members();
    ASSERT_TRUE(cluster_->wait_for_nodes(static_cast<int>(members_.size()) + options_.colocated_servers))
        << "the cluster did not come up";
    if (options_.auth) add_submitter();
    if (::testing::Test::HasFatalFailure()) return;
    submit_jobs();
    if (::testing::Test::HasFatalFailure()) return;
    switch (scenario_) {
      case Scenario::kCancelResume: cancel_and_resume_during_a_recovery(); break;
      case Scenario::kMaxRecoveries: kill_until_out_of_recoveries(); break;
      default: {
        const int kills = draw(1, 3);
        for (int i = 0; i < kills; ++i) kill_at_a_random_step(jobs_.front());
      }
    }
    check_every_job();
    say("trial took " + seconds_since(start_) + " s");
  }

 private:
  struct Member {
    std::string name, exe;
    std::vector<std::string> extra;
    bool worker = false, server = false;  // what dies with it (a worker --with-ps is both)
    Process* process = nullptr;
    bool alive = true;
    int incarnation = 0;
  };
  struct Job {
    std::string id, consistency, expected = "completed";
    uint64_t total_steps = 0;
  };

  int draw(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(int percent) { return draw(1, 100) <= percent; }
  void pause(int lo_ms, int hi_ms) {
    const int ms = draw(lo_ms, hi_ms);
    if (ms > 0) say("pause " + std::to_string(ms) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }

  static std::string seconds_since(std::chrono::steady_clock::time_point t) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    return s.str();
  }
  void say(const std::string& what) {
    const std::string line = "[chaos " + std::to_string(seed_) + " +" + seconds_since(start_) + "s] " + what;
    std::cout << line << std::endl;
    if (log_) log_ << line << std::endl;
  }

  void plan_cluster() {
    options_.fixed_port = true;  // the coordinator comes back at the same address
    options_.heartbeat_interval_ms = 200;
    options_.heartbeat_timeout_ms = 1500;
    options_.servers = 2;
    options_.workers = 2;
    switch (scenario_) {
      case Scenario::kBsp:
      case Scenario::kAsp:
        options_.workers = 2 + draw(0, 1);  // sometimes a spare takes a lost rank
        break;
      case Scenario::kColocated:
        options_.servers = 1;  // ps-2 on its own
        options_.colocated_servers = 1;
        break;
      case Scenario::kAuth:
        options_.servers = 1;
        options_.auth = true;
        break;
      case Scenario::kCancelResume: break;
      case Scenario::kTwoJobs: options_.workers = 4; break;
      case Scenario::kMaxRecoveries:
        options_.servers = 1;
        options_.coordinator_args = {"--max-recoveries", "1"};
        break;
    }
    layout_ = std::to_string(options_.servers) + " servers, " + std::to_string(options_.workers) + " workers" +
              (options_.colocated_servers ? " (worker-1 with ps-1)" : "") + (options_.auth ? ", --auth" : "") +
              (options_.coordinator_args.empty() ? "" : ", --max-recoveries 1");
  }

  // The processes LocalCluster started, in its order: servers, then workers.
  void track_members() {
    size_t index = 0;
    for (int i = 1; i <= options_.servers; ++i) {
      Member m{"ps-" + std::to_string(options_.colocated_servers + i), "custody-ps", {}, false, true};
      m.process = &cluster_->node(index++);
      members_.push_back(m);
    }
    for (int i = 1; i <= options_.workers; ++i) {
      Member m{"worker-" + std::to_string(i), "custody-worker", {}, true, false};
      if (i <= options_.colocated_servers) {
        m.extra = {"--with-ps", "ps-" + std::to_string(i)};
        m.server = true;
      }
      m.process = &cluster_->node(index++);
      members_.push_back(m);
    }
  }

  std::vector<std::string> with_token(std::vector<std::string> args) const {
    if (!token_.empty()) args.insert(args.begin(), {"--token-file", token_});
    return args;
  }
  CliResult cli(const std::vector<std::string>& args, std::chrono::seconds timeout = 60s) {
    return cluster_->cli(with_token(args), timeout);
  }
  // The job's status, or null if the coordinator did not answer.
  json status(const std::string& job) {
    CliResult r = cli({"status", job, "--json"}, 20s);
    if (r.code != 0) return json();
    return json::parse(r.out, nullptr, false);
  }
  // Polls until `done` holds or the timeout passes; returns the last status seen.
  json poll(const std::string& job, const std::function<bool(const json&)>& done, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json s;
    for (;;) {
      s = status(job);
      if ((s.is_object() && done(s)) || std::chrono::steady_clock::now() > deadline) return s;
      std::this_thread::sleep_for(100ms);
    }
  }
  static std::string brief(const json& s) {
    if (!s.is_object()) return "(no answer)";
    return s["state"].get<std::string>() + " at step " + std::to_string(s["step"].get<uint64_t>()) + ", " +
           std::to_string(s["recoveries"].get<int>()) + " recoveries: " + s["message"].get<std::string>();
  }

  void add_submitter() {
    CliResult r = cluster_->cli({"--token-file", cluster_->admin_token().string(), "principal", "add", "alice",
                                 "--role", "submitter"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::ofstream(cluster_->dir() / "alice.token") << r.out;
    token_ = (cluster_->dir() / "alice.token").string();
  }

  void submit_jobs() {
    std::vector<std::string> kinds;
    switch (scenario_) {
      case Scenario::kAsp: kinds = {"asp"}; break;
      case Scenario::kAuth: kinds = {chance(50) ? "bsp" : "asp"}; break;
      case Scenario::kTwoJobs: kinds = {"bsp", "asp"}; break;
      default: kinds = {"bsp"};
    }
    // Out of recoveries: long enough that two recoveries surely come before the end.
    const int epochs = scenario_ == Scenario::kMaxRecoveries ? 2 * kEpochs : kEpochs;
    for (const auto& consistency : kinds) {
      const std::string name = "chaos-" + consistency + "-" + std::to_string(jobs_.size() + 1);
      CliResult r = cli({"submit", cluster_->write_job(name + ".toml", job_text(name, consistency, epochs)).string(),
                         "--as", "alice"});
      ASSERT_EQ(r.code, 0) << r.err;
      Job j;
      j.id = r.out.substr(0, r.out.find('\n'));
      j.consistency = consistency;
      j.total_steps = static_cast<uint64_t>(epochs) * kTrainSamples / kRanks / kBatch;
      say("submitted " + j.id + " (" + consistency + ", " + std::to_string(j.total_steps) + " steps)");
      jobs_.push_back(j);
    }
    if (scenario_ == Scenario::kMaxRecoveries) jobs_.front().expected = "failed";
  }

  bool others_alive(const Member& dead, bool Member::*role) const {
    for (const auto& m : members_)
      if (&m != &dead && m.alive && m.*role) return true;
    return false;
  }

  void restart(Member& m) {
    // Keep the dead incarnation's log beside the new one's.
    const fs::path log = cluster_->dir() / (m.name + ".log");
    std::error_code ignored;
    fs::rename(log, cluster_->dir() / (m.name + ".log." + std::to_string(++m.incarnation)), ignored);
    m.process = &cluster_->add_node(m.exe, m.name, m.extra);
    m.alive = true;
    say("restart " + m.name + " (pid " + std::to_string(m.process->pid()) + ")");
  }

  void restart_coordinator() {
    const std::string log = "coordinator-" + std::to_string(++coordinator_restarts_) + ".log";
    cluster_->start_coordinator(log);
    say("restart the coordinator (pid " + std::to_string(cluster_->coordinator().pid()) + ", " + log + ")");
  }

  // SIGKILLs one live process, drawn among the nodes (and the coordinator unless told
  // otherwise); restarts it after a drawn pause, always if it held the last live worker or
  // server, and always for the coordinator (same store, same address).
  void kill_one(bool coordinator_too, int restart_percent = 60, int max_pause_ms = 1500) {
    std::vector<Member*> live;
    for (auto& m : members_)
      if (m.alive) live.push_back(&m);
    const int pick = draw(0, static_cast<int>(live.size()) - (coordinator_too ? 0 : 1));
    if (pick == static_cast<int>(live.size())) {
      const pid_t pid = cluster_->coordinator().pid();
      cluster_->coordinator().kill_hard();
      say("kill the coordinator (pid " + std::to_string(pid) + ")");
      pause(0, 800);
      restart_coordinator();
      return;
    }
    Member& m = *live[pick];
    const pid_t pid = m.process->pid();
    m.process->kill_hard();
    m.alive = false;
    say("kill " + m.name + (m.worker && m.server ? " (and its server)" : "") + " (pid " + std::to_string(pid) + ")");
    const bool needed = (m.worker && !others_alive(m, &Member::worker)) || (m.server && !others_alive(m, &Member::server));
    if (!needed && !chance(restart_percent)) {
      say("leave " + m.name + " dead");
      return;
    }
    pause(0, max_pause_ms);
    restart(m);
  }

  // Waits until the job has reached a drawn step (or ended), then kills something.
  void kill_at_a_random_step(const Job& job) {
    const uint64_t target = static_cast<uint64_t>(draw(5, 90)) * job.total_steps / 100;
    say("wait for step " + std::to_string(target) + " of " + job.id);
    json s = poll(job.id, [&](const json& x) { return ended(x) || x["step"].get<uint64_t>() >= target; }, 60s);
    say("at " + brief(s));
    pause(0, 300);
    kill_one(true);
  }

  // A kill once the job has a checkpoint, `cancel` once the coordinator has rolled the job
  // back (while it waits for nodes, reloads its servers, or has just started again), then
  // `resume`: the resumed job must complete with every update counted once.
  void cancel_and_resume_during_a_recovery() {
    Job& job = jobs_.front();
    const uint64_t target = static_cast<uint64_t>(draw(25, 70)) * job.total_steps / 100;
    say("wait for step " + std::to_string(target) + " and a checkpoint");
    json s = poll(job.id, [&](const json& x) {
      return ended(x) || (x["step"].get<uint64_t>() >= target && !x["last_checkpoint"].get<std::string>().empty());
    }, 60s);
    say("at " + brief(s));
    const int recoveries = s.is_object() ? s["recoveries"].get<int>() : 0;
    kill_one(true);
    s = poll(job.id, [&](const json& x) { return ended(x) || x["recoveries"].get<int>() > recoveries; }, 20s);
    say("recovering: " + brief(s));
    pause(0, 300);
    say("cancel " + job.id);
    CliResult cancelled = cli({"cancel", job.id});
    if (cancelled.code != 0) {
      s = status(job.id);
      say("cancel refused (" + cancelled.err.substr(0, cancelled.err.find('\n')) + "): " + brief(s));
      EXPECT_TRUE(ended(s) && s["state"] == "completed") << "a cancel is refused only once the job has ended: "
                                                          << cancelled.err << s.dump(2);
      return;
    }
    s = status(job.id);
    say("after cancel: " + brief(s));
    EXPECT_EQ(s["state"], "cancelled") << s.dump(2);
    EXPECT_TRUE(s["waiting_for"].empty()) << s.dump(2);
    pause(0, 500);
    say("resume " + job.id);
    CliResult resumed = cli({"resume", job.id, "--as", "alice"});
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    if (chance(50)) kill_at_a_random_step(job);
  }

  // --max-recoveries 1: kills (each node restarted at once, so each registers again and
  // is noticed at once) while the job runs, until the job ends; it must end failed.
  void kill_until_out_of_recoveries() {
    Job& job = jobs_.front();
    for (int round = 0; round < 4; ++round) {
      json s = poll(job.id, [](const json& x) { return ended(x) || x["state"] == "running"; }, 30s);
      if (ended(s)) break;
      say("running: " + brief(s));
      pause(0, 500);
      const int recoveries = s.is_object() ? s["recoveries"].get<int>() : 0;
      kill_one(round == 0, 100, 300);
      s = poll(job.id, [&](const json& x) { return ended(x) || x["recoveries"].get<int>() > recoveries; }, 20s);
      say("after the kill: " + brief(s));
      if (ended(s)) break;
    }
  }

  void check_every_job() {
    for (const auto& job : jobs_) {
      say("wait for " + job.id + " to end (expected " + job.expected + ")");
      const auto waited_since = std::chrono::steady_clock::now();
      CliResult waited = cli({"wait", job.id, "--max-seconds", std::to_string(kJobDeadlineSeconds)},
                             std::chrono::seconds(kJobDeadlineSeconds + 30));
      json s = status(job.id);
      say(job.id + " " + brief(s) + " (waited " + seconds_since(waited_since) + " s)");
      ASSERT_TRUE(s.is_object()) << "no status of " << job.id;
      ASSERT_TRUE(ended(s)) << job.id << " did not end within " << kJobDeadlineSeconds << " s: " << s.dump(2);
      EXPECT_EQ(waited.code == 0, s["state"] == "completed") << waited.out << waited.err;
      EXPECT_EQ(s["state"], job.expected) << s.dump(2);
      EXPECT_TRUE(s["waiting_for"].empty()) << "an ended job waits for nothing: " << s.dump(2);
      CliResult text = cli({"status", job.id});
      EXPECT_EQ(text.out.find("waits for"), std::string::npos) << text.out;
      if (job.expected == "failed") {
        const std::string message = s["message"];
        EXPECT_NE(message.find("gave up after"), std::string::npos) << message;
        EXPECT_NE(message.find("(last: "), std::string::npos) << "names the last reason too: " << message;
        EXPECT_TRUE(message.find("worker-") != std::string::npos || message.find("ps-") != std::string::npos ||
                    message.find("coordinator") != std::string::npos)
            << "names what failed: " << message;
      }
      if (s["state"] != "completed") continue;
      EXPECT_EQ(s["total_steps"].get<uint64_t>(), job.total_steps);
      EXPECT_EQ(s["step"].get<uint64_t>(), job.total_steps) << s.dump(2);
      if (job.consistency == "bsp") {
        EXPECT_GE(s["test_accuracy"].get<double>(), kAccuracyBound) << s.dump(2);
      }
      Updates u = count_updates(*cluster_, s["last_checkpoint"], {"--store", cluster_->store().string()});
      expect_every_update_once(u, job.total_steps, kRanks, kBatch, job.id);
      say(job.id + ": " + std::to_string(u.checkpoints) + " checkpoints hold " + std::to_string(u.accepted) +
          " accepted pushes of " + std::to_string(job.total_steps * kRanks));
    }
    CliResult verify = cluster_->cli({"--store", cluster_->store().string(), "audit", "verify"});
    EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
    say(std::string("audit verify ") + (verify.code == 0 ? "ok" : "FAILED"));
  }

  const uint32_t seed_;
  const Scenario scenario_;
  std::mt19937 rng_;
  std::chrono::steady_clock::time_point start_;
  ClusterOptions options_;
  std::string layout_, token_;
  std::unique_ptr<LocalCluster> cluster_;
  std::ofstream log_;
  std::vector<Member> members_;
  std::vector<Job> jobs_;
  int coordinator_restarts_ = 0;
};

}  // namespace custody::testing::chaos
