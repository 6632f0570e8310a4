// Privacy budgets per data set, at the coordinator, one message at a time, with the custody
// store in memory: who may set a budget, what a submission beyond it gets (a refusal naming
// the numbers, recorded), the admin's override of a job without a guarantee (recorded), and
// the spending a rollback, a resume and a restart add, read back from the record.
#include <gtest/gtest.h>

#include "actors/coordinator_state.h"
#include "core/privacy.h"
#include "storage/lineage_vocabulary.h"
#include "storage/privacy_budget.h"

namespace custody::actors {
namespace {

using namespace std::chrono_literals;
using msg::Envelope;
using Direction = storage::CustodyStore::Direction;

// 200 examples over 2 workers, batches of 10: 10 steps an epoch, q = 20/200 = 0.1.
std::string job_text(const std::string& name, int epochs, const std::string& privacy) {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = 10\nworkers = 2\n[model]\ntype = \"softmax\"\nclasses = 4\n[data]\nkind = \"synthetic\"\n"
         "[data.synthetic]\ntrain_samples = 200\ntest_samples = 50\nfeatures = 8\nclasses = 4\n" +
         (privacy.empty() ? "" : "[privacy]\n" + privacy);
}
const std::string kSigma1 = "noise_multiplier = 1.0\ndelta = 1e-3\n";
constexpr double kQ = 0.1;

class PrivacyBudgetTest : public ::testing::Test {
 protected:
  explicit PrivacyBudgetTest(Security security = Security::kToken)
      : store_(storage::CustodyStore::in_memory()), state_(options(security), store_.get(), "mem") {}
  static CoordinatorOptions options(Security security) {
    CoordinatorOptions o;
    o.heartbeat_interval = 100ms;
    o.heartbeat_timeout = 1s;
    o.security = security;
    return o;
  }
  std::string token_of(const std::string& name, Role role) {
    auto issued = state_.access_control()->add(name, role, "", false, "test");
    EXPECT_TRUE(issued.is_ok()) << issued.status().to_string();
    return issued.is_ok() ? issued->token : "";
  }
  Outbox send(const std::string& token, msg::Body body, const std::string& job = "", const std::string& peer = "CLI") {
    Envelope e;
    e.job_id = job;
    e.request_id = 7;
    e.token = token;
    e.body = std::move(body);
    return state_.handle(peer, e, now_);
  }
  // The job id, or "" with *refusal set to the error.
  std::string submit(const std::string& token, const std::string& text, std::string* refusal = nullptr,
                     const std::string& override_reason = "", msg::Error* error = nullptr) {
    Outbox out = send(token, msg::SubmitJob{text, "job.toml", "", override_reason});
    if (out.empty()) return "";
    if (auto* ok = out.front().envelope.get<msg::JobAccepted>()) return ok->job_id;
    if (auto* e = out.front().envelope.get<msg::Error>()) {
      if (refusal) *refusal = e->message;
      if (error) *error = *e;
    }
    return "";
  }
  // The reply to setting a budget: the listing, or the error.
  Outbox set_budget(const std::string& token, const std::string& dataset, double epsilon, double delta) {
    return send(token, msg::SetPrivacyBudget{dataset, epsilon, delta, "the data provider's agreement", ""});
  }
  msg::JobStatus job(const std::string& id) { return state_.status(id, false, now_).jobs.at(0); }
  std::string dataset_of(const std::string& job_id) { return storage::lineage::dataset_id(job(job_id).dataset_hash); }
  static double epsilon(int64_t steps, double delta) { return dp_sgd_epsilon(kQ, 1.0, steps, delta)->epsilon; }

  std::unique_ptr<storage::CustodyStore> store_;
  CoordinatorState state_;
  SteadyClock::time_point now_ = SteadyClock::now();
};

TEST_F(PrivacyBudgetTest, AJobBeyondTheBudgetIsRefusedNamingSpentRequestedAndBudgetAndTheRefusalIsRecorded) {
  const std::string alice = token_of("alice", Role::kSubmitter), bob = token_of("bob", Role::kSubmitter);
  // alice's first job declares the data set: she is its owner. 20 steps at sigma 1.
  const std::string first = submit(alice, job_text("a", 2, kSigma1));
  ASSERT_FALSE(first.empty());
  const std::string dataset = dataset_of(first);
  const double spent = epsilon(20, 1e-3);  // what the first job spends, at the budget's delta

  // Only the owner (or an admin) sets the budget; bob is told who owns it.
  Outbox refused = set_budget(bob, dataset, 1.2 * spent, 1e-3);
  ASSERT_TRUE(refused.front().envelope.get<msg::Error>());
  EXPECT_EQ(refused.front().envelope.get<msg::Error>()->code, ErrorCode::kPermissionDenied);
  EXPECT_NE(refused.front().envelope.get<msg::Error>()->message.find("principal:alice"), std::string::npos);
  // A budget below what was already spent would be broken from the start.
  Outbox below = set_budget(alice, dataset, spent / 2, 1e-3);
  ASSERT_TRUE(below.front().envelope.get<msg::Error>());
  EXPECT_NE(below.front().envelope.get<msg::Error>()->message.find("already spent"), std::string::npos);
  Outbox set = set_budget(alice, dataset, 1.2 * spent, 1e-3);
  auto* listing = set.front().envelope.get<msg::PrivacyBudgetReply>();
  ASSERT_TRUE(listing) << set.front().envelope.get<msg::Error>()->message;
  auto spending = storage::json::parse(listing->json);
  EXPECT_NEAR(spending["spent_epsilon"].get<double>(), spent, 1e-9);
  EXPECT_NEAR(spending["remaining_epsilon"].get<double>(), 0.2 * spent, 1e-9);
  EXPECT_EQ(spending["budget"]["set_by"], "principal:alice");

  // A second job of the same size fits on its own, but the two compose to more than the
  // budget (checked below): refused, naming the numbers.
  std::string why;
  msg::Error error;
  EXPECT_TRUE(submit(alice, job_text("b", 2, kSigma1), &why, "", &error).empty());
  EXPECT_EQ(error.code, ErrorCode::kFailedPrecondition);
  const double both = epsilon(40, 1e-3);  // two runs of one mechanism: the curve of 40 steps
  ASSERT_GT(both, 1.2 * spent) << "the test's numbers must put the second job over the budget";
  char numbers[256];
  std::snprintf(numbers, sizeof(numbers), "spent epsilon %g of the data set's budget of %g", spent, 1.2 * spent);
  EXPECT_NE(why.find(numbers), std::string::npos) << numbers << " in " << why;
  std::snprintf(numbers, sizeof(numbers), "needs epsilon %g on its own, %g composed", spent, both);
  EXPECT_NE(why.find(numbers), std::string::npos) << numbers << " in " << why;
  EXPECT_NE(why.find("job 'b' would exceed the privacy budget of data set " + dataset), std::string::npos) << why;

  // The refusal is in the record and in the audit log, with its numbers.
  auto refusals = store_->relations(dataset, Direction::kIn, storage::lineage::rel::kPrivacyRefused);
  ASSERT_EQ(refusals->size(), 1u);
  const storage::json& r = refusals->at(0).body;
  EXPECT_EQ(r["from"], "principal:alice");
  EXPECT_EQ(r["job_name"], "b");
  EXPECT_NEAR(r["spent_epsilon"].get<double>(), spent, 1e-9);
  EXPECT_NEAR(r["requested_epsilon"].get<double>(), spent, 1e-9);
  EXPECT_NEAR(r["total_epsilon"].get<double>(), both, 1e-9);
  EXPECT_EQ(r["budget_epsilon"].get<double>(), 1.2 * spent);
  auto audit = store_->log(storage::lineage::kAuditLog);
  std::vector<std::string> events;
  for (const auto& a : audit.value()) events.push_back(a.body["event"]);
  EXPECT_NE(std::find(events.begin(), events.end(), "privacy budget refused a job"), events.end());
  EXPECT_NE(std::find(events.begin(), events.end(), "privacy budget set"), events.end());
  EXPECT_NE(std::find(events.begin(), events.end(), "job submitted, privacy charged"), events.end());
  EXPECT_TRUE(store_->verify()->ok);
}

TEST_F(PrivacyBudgetTest, TwoJobsOnOneDataSetComposeAsTheAccountantOnTheirSummedCurves) {
  const std::string alice = token_of("alice", Role::kSubmitter), root = token_of("root", Role::kAdmin);
  const std::string first = submit(alice, job_text("a", 2, kSigma1));
  ASSERT_FALSE(first.empty());
  const std::string dataset = dataset_of(first);
  Outbox set = set_budget(root, dataset, 10, 1e-3);  // an admin may set any data set's budget
  ASSERT_TRUE(set.front().envelope.get<msg::PrivacyBudgetReply>());
  // A second job with other parameters: 3 epochs (30 steps) at sigma 1.5.
  ASSERT_FALSE(submit(alice, job_text("b", 3, "noise_multiplier = 1.5\ndelta = 1e-3\n")).empty());
  RdpAccountant a, b;
  ASSERT_TRUE(a.compose_subsampled_gaussian(kQ, 1.0, 20).is_ok());
  ASSERT_TRUE(b.compose_subsampled_gaussian(kQ, 1.5, 30).is_ok());
  std::vector<double> summed(a.rdp().size());
  for (size_t i = 0; i < summed.size(); ++i) summed[i] = a.rdp()[i] + b.rdp()[i];
  const double expected = epsilon_from_rdp(default_rdp_orders(), summed, 1e-3)->epsilon;
  auto spending = storage::privacy_spending(*store_, dataset);
  ASSERT_TRUE(spending.is_ok()) << spending.status().to_string();
  EXPECT_DOUBLE_EQ((*spending)["spent_epsilon"].get<double>(), expected);
  EXPECT_DOUBLE_EQ((*spending)["remaining_epsilon"].get<double>(), 10 - expected);
  ASSERT_EQ((*spending)["runs"].size(), 2u);
  EXPECT_DOUBLE_EQ((*spending)["runs"][0]["epsilon"].get<double>(), a.epsilon(1e-3)->epsilon);
  EXPECT_DOUBLE_EQ((*spending)["runs"][1]["epsilon"].get<double>(), b.epsilon(1e-3)->epsilon);
  EXPECT_EQ((*spending)["runs"][1]["steps_planned"], 30);
  const std::string text = storage::render_spending(*spending);
  EXPECT_NE(text.find("remaining: epsilon"), std::string::npos) << text;
}

TEST_F(PrivacyBudgetTest, AJobWithoutAGuaranteeNeedsAnAdminsOverrideWhichIsRecorded) {
  const std::string alice = token_of("alice", Role::kSubmitter), root = token_of("root", Role::kAdmin);
  const std::string first = submit(alice, job_text("a", 1, kSigma1));
  const std::string dataset = dataset_of(first);
  ASSERT_TRUE(set_budget(alice, dataset, 5, 1e-3).front().envelope.get<msg::PrivacyBudgetReply>());
  std::string why;
  msg::Error error;
  EXPECT_TRUE(submit(alice, job_text("plain", 1, ""), &why, "", &error).empty());
  EXPECT_EQ(error.code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(why.find("has no [privacy] section"), std::string::npos) << why;
  EXPECT_NE(why.find("--override-privacy-budget"), std::string::npos) << why;
  // A submitter cannot override.
  EXPECT_TRUE(submit(alice, job_text("plain", 1, ""), &why, "I need it", &error).empty());
  EXPECT_EQ(error.code, ErrorCode::kPermissionDenied);
  EXPECT_NE(why.find("only an admin may override"), std::string::npos) << why;
  // An admin can, and the override is recorded with who and why.
  const std::string plain = submit(root, job_text("plain", 1, ""), &why, "the regulator's audit rerun");
  ASSERT_FALSE(plain.empty()) << why;
  auto overrides = store_->relations(dataset, Direction::kIn, storage::lineage::rel::kPrivacyOverride);
  ASSERT_EQ(overrides->size(), 1u);
  EXPECT_EQ(overrides->at(0).body["from"], plain);
  EXPECT_EQ(overrides->at(0).body["by"], "principal:root");
  EXPECT_EQ(overrides->at(0).body["reason"], "the regulator's audit rerun");
  // Both refusals are recorded; the listing shows the override and them.
  auto spending = storage::privacy_spending(*store_, dataset);
  EXPECT_EQ((*spending)["refusals"].size(), 2u);
  EXPECT_EQ((*spending)["overrides"].size(), 1u);
  // An override is no way around a private job's budget.
  EXPECT_TRUE(submit(root, job_text("p", 1, kSigma1), &why, "more", &error).empty());
  EXPECT_EQ(error.code, ErrorCode::kInvalidArgument);
}

TEST_F(PrivacyBudgetTest, BadBudgetsAreRefusedNamingWhatIsWrong) {
  const std::string root = token_of("root", Role::kAdmin);
  auto message = [&](const Outbox& out) {
    auto* e = out.front().envelope.get<msg::Error>();
    return e ? e->message : std::string("accepted");
  };
  const std::string hash(64, 'a');
  EXPECT_NE(message(set_budget(root, "dataset:abc", 3, 1e-5)).find("is not a data set id"), std::string::npos);
  EXPECT_NE(message(set_budget(root, "dataset:" + hash, 0, 1e-5)).find("epsilon > 0"), std::string::npos);
  EXPECT_NE(message(set_budget(root, "dataset:" + hash, 3, 1)).find("0 < delta < 1"), std::string::npos);
  // An admin may budget a data set before any job has used it.
  EXPECT_EQ(message(set_budget(root, "dataset:" + hash, 3, 1e-5)), "accepted");
}

// Steps computed twice are charged as they happen, and a restarted coordinator reads them back.
class PrivacyChargesTest : public PrivacyBudgetTest {
 protected:
  PrivacyChargesTest() : PrivacyBudgetTest(Security::kNone) {}
  void register_nodes() {
    send("", msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, ""}, "", "P1");
    send("", msg::Register{msg::NodeRole::kWorker, "", "h", 2, ""}, "", "W1");
    send("", msg::Register{msg::NodeRole::kWorker, "", "h", 2, ""}, "", "W2");
  }
  Outbox from(const std::string& peer, msg::Body body, const std::string& job, uint32_t attempt = 0) {
    Envelope e;
    e.job_id = job;
    e.attempt = attempt;
    e.body = std::move(body);
    return state_.handle(peer, e, now_);
  }
  uint64_t repeated(const std::string& dataset, const std::string& run) {
    auto ledger = storage::privacy_ledger(*store_, dataset);
    for (const auto& r : ledger->runs)
      if (r.run == run) return r.steps_repeated;
    return 0;
  }
};

TEST_F(PrivacyChargesTest, RolledBackResumedAndRestartedStepsAreChargedDurably) {
  register_nodes();
  const std::string id = submit("", job_text("a", 2, kSigma1));
  ASSERT_FALSE(id.empty());
  const std::string dataset = dataset_of(id);
  from("P1", msg::KeyRangeReady{0, 36}, id);
  msg::CheckpointShard c;
  c.step = 10;
  c.values.assign(36, 0.5f);
  from("P1", c, id);
  from("W1", msg::Progress{1, 12, 20, 1.0, 1000, 0}, id);
  from("W2", msg::Progress{1, 12, 20, 1.0, 1000, 1}, id);
  // A rollback from the workers' step 12 to the checkpoint at 10: 2 steps charged at once...
  from("W1", msg::Error{ErrorCode::kDeadlineExceeded, "no reply from ps-1"}, id);
  EXPECT_EQ(repeated(dataset, id), 2u);
  // ...and 5 more when the server says it had applied 17.
  from("P1", msg::JobReleased{17, 17, 0, 36}, id, 0);
  EXPECT_EQ(repeated(dataset, id), 7u);
  auto charges = store_->relations(id, Direction::kOut, storage::lineage::rel::kPrivacyCharged);
  ASSERT_EQ(charges->size(), 3u);  // planned, rolled back, the servers' count
  EXPECT_EQ(charges->at(0).body["why"], "planned");
  EXPECT_EQ(charges->at(0).body["steps"], 20);

  // A restarted coordinator reads the charges back, and charges the bound of a restart:
  // every step after the checkpoint at 10 up to the plan's 20.
  CoordinatorState restarted(options(Security::kNone), store_.get(), "mem");
  ASSERT_TRUE(restarted.restore(now_).is_ok());
  EXPECT_EQ(repeated(dataset, id), 7u + 10u);
  auto spending = storage::privacy_spending(*store_, dataset);
  EXPECT_DOUBLE_EQ((*spending)["runs"][0]["epsilon"].get<double>(), epsilon(20 + 17, 1e-3));
  EXPECT_TRUE(store_->verify()->ok);
}

TEST_F(PrivacyChargesTest, AResumeChargesTheStepsComputedPastTheCheckpoint) {
  register_nodes();
  const std::string id = submit("", job_text("a", 2, kSigma1));
  const std::string dataset = dataset_of(id);
  from("P1", msg::KeyRangeReady{0, 36}, id);
  msg::CheckpointShard c;
  c.step = 10;
  c.values.assign(36, 0.5f);
  from("P1", c, id);
  from("W1", msg::Progress{1, 14, 20, 1.0, 1000, 0}, id);
  from("W2", msg::Progress{1, 14, 20, 1.0, 1000, 1}, id);
  send("", msg::CancelJob{"pause", "alice"}, id);
  ASSERT_EQ(job(id).state, msg::JobState::kCancelled);
  send("", msg::ResumeJob{"alice"}, id);
  EXPECT_EQ(repeated(dataset, id), 4u) << "steps 10..14 are computed again";
}

}  // namespace
}  // namespace custody::actors
