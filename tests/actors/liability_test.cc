// Withdrawal, taint and purposes (issue 15) on records the coordinator's own recorder
// writes: revocations through CoordinatorState (who may revoke, and the refusals recorded),
// taint derived through fine-tuning, serving and export refusing a tainted version unless an
// admin allowed it for the purpose, and purposes as the intersection of every upstream
// declaration.
#include <gtest/gtest.h>

#include "actors/coordinator_state.h"
#include "actors/custody_recorder.h"
#include "actors/serving_state.h"
#include "core/clock.h"
#include "storage/checkpoint.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"
#include "synthetic_job.h"

namespace custody::actors {
namespace {

using storage::json;
namespace lineage = storage::lineage;
namespace liability = storage::liability;

class LiabilityTest : public ::testing::Test {
 protected:
  LiabilityTest() {
    CoordinatorOptions o;
    o.security = Security::kToken;
    state_ = std::make_unique<CoordinatorState>(o, store_.get(), "", nullptr, clock_);
    using Named = std::pair<std::string, Role>;
    for (const auto& [name, role] : {Named{"alice", Role::kSubmitter}, Named{"bob", Role::kSubmitter},
                                     Named{"carol", Role::kConsumer}, Named{"root", Role::kAdmin}}) {
      auto issued = state_->access_control()->add(name, role, "", false, "test");
      EXPECT_TRUE(issued.is_ok()) << issued.status().to_string();
      if (issued.is_ok()) tokens_[name] = issued->token;
    }
  }

  // A completed run of model `name` by `submitter` on data set `hash` (declaring `data_keys`
  // in [data]), fine-tuned from `init` if given: returns its final checkpoint.
  std::string train(const std::string& job_id, const std::string& name, const std::string& submitter,
                    const std::string& hash, const std::string& data_keys, const std::string& init = "") {
    auto spec = parse_job_spec(synthetic_job_text(name, data_keys), name + ".toml");
    EXPECT_TRUE(spec.is_ok()) << spec.status().to_string();
    msg::JobStatus job;
    job.job_id = job_id;
    job.name = name;
    job.submitter = submitter;
    job.submitted_at_ms = clock_.wall_ms();
    job.workers = {"worker-1"};
    job.servers = {"ps-1"};
    DatasetInfo data{hash, "tr41n", "t35t", 30, 10};
    EXPECT_TRUE(recorder_.job_submitted(job, spec.value(), data, {4, 3}, init).is_ok());
    storage::CheckpointSpec c;
    c.job = job_id;
    c.step = 5;
    c.final = true;
    c.parent = init;
    auto id = recorder_.checkpoint(job, {4, 3}, std::vector<float>(15, 0.25f), c, {});
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    job.state = msg::JobState::kCompleted;
    EXPECT_TRUE(recorder_.job_ended(job, id.value()).is_ok());
    clock_.advance(std::chrono::seconds(1));
    return id.value();
  }

  msg::Envelope request(const std::string& who, msg::Body body) {
    msg::Envelope e;
    e.sender = "cli";
    e.request_id = 7;
    e.token = tokens_[who];
    e.body = std::move(body);
    return e;
  }
  // The reply to a liability request by `who`: its JSON, or the error.
  Result<json> liability_request(const std::string& who, msg::LiabilityRequest r) {
    Outbox out = state_->handle("CLI", request(who, std::move(r)), SteadyClock::now());
    if (out.size() != 1) return internal_error("expected one reply, got " + std::to_string(out.size()));
    if (auto* e = out[0].envelope.get<msg::Error>()) return Status(e->code, e->message);
    auto* reply = out[0].envelope.get<msg::LiabilityReply>();
    if (!reply) return internal_error("not a liabilityReply");
    return json::parse(reply->json);
  }
  Result<json> revoke(const std::string& who, const std::string& dataset, std::vector<uint64_t> records = {}) {
    msg::LiabilityRequest r;
    r.dataset = dataset;
    r.records = std::move(records);
    r.reason = "consent withdrawn by a data subject";
    return liability_request(who, r);
  }
  Result<json> allow(const std::string& who, const std::string& model, const std::string& revocation,
                     const std::string& purpose) {
    msg::LiabilityRequest r;
    r.action = msg::LiabilityRequest::Action::kAllow;
    r.model = model;
    r.revocation = revocation;
    r.purpose = purpose;
    r.reason = "court-ordered preservation";
    return liability_request(who, r);
  }
  Result<msg::PredictReply> predict(const std::string& model, const std::string& purpose = "") {
    msg::Predict p;
    p.model = model;
    p.principal = "carol";
    p.rows = 1;
    p.features = 4;
    p.inputs = {1, 2, 3, 4};
    p.purpose = purpose;
    return serving_.predict(p);
  }
  Result<msg::ExportReply> export_model(const std::string& model, const std::string& purpose = "") {
    return recorder_.export_checkpoint(msg::ExportRequest{model, "carol", purpose});
  }
  // The lineage events of kind `event`, oldest first.
  std::vector<json> events(const char* event) {
    auto found = store_->find({{"type", lineage::kEvent}, {"event", event}});
    EXPECT_TRUE(found.is_ok());
    std::vector<json> out;
    for (const auto& r : found.value()) out.push_back(r.body);
    return out;
  }

  ManualClock clock_{1800000000000};
  std::unique_ptr<storage::CustodyStore> store_ = storage::CustodyStore::in_memory(clock_);
  CustodyRecorder recorder_{store_.get(), nullptr, clock_};
  std::unique_ptr<CoordinatorState> state_;
  ServingState serving_{store_.get(), ServingOptions{}, nullptr, clock_};
  std::map<std::string, std::string> tokens_;
};

const std::string kData = "d474000000000000000000000000000000000000000000000000000000000001";
const std::string kOther = "d474000000000000000000000000000000000000000000000000000000000002";

TEST_F(LiabilityTest, OnlyAnAdminOrTheDataSetsOwnerMayRevokeAndEveryRefusalIsRecorded) {
  train("job-00000001", "base", "alice", kData, "");
  for (const char* who : {"bob", "carol"}) {
    auto refused = revoke(who, "dataset:" + kData);
    ASSERT_FALSE(refused.is_ok()) << who;
    EXPECT_EQ(refused.status().code(), ErrorCode::kPermissionDenied);
    EXPECT_NE(refused.status().message().find("owner (alice"), std::string::npos) << refused.status().message();
  }
  auto refusals = events(lineage::event::kRevocationRefused);
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[0]["principal"], "principal:bob");
  EXPECT_EQ(refusals[1]["principal"], "principal:carol");
  EXPECT_EQ(refusals[0]["dataset"], "dataset:" + kData);
  // Nothing was revoked by them: the model still serves.
  EXPECT_TRUE(predict("base@1").is_ok());

  auto by_owner = revoke("alice", kData.substr(0, 12), {3, 4});
  ASSERT_TRUE(by_owner.is_ok()) << by_owner.status().to_string();
  EXPECT_EQ(by_owner->value("scope", ""), "records");
  EXPECT_EQ(by_owner->value("records", json::array()), json({3, 4}));
  EXPECT_EQ(by_owner->value("tainted_models", json::array()), json({"model:base@1"}));
  auto by_admin = revoke("root", "dataset:" + kData);
  ASSERT_TRUE(by_admin.is_ok()) << by_admin.status().to_string();
  EXPECT_EQ(by_admin->value("scope", ""), "dataset");
}

TEST_F(LiabilityTest, ARevocationNeedsAReasonAndRecordsTheDataSetHas) {
  train("job-00000001", "base", "alice", kData, "");
  msg::LiabilityRequest r;
  r.dataset = "dataset:" + kData;
  auto no_reason = liability_request("alice", r);
  EXPECT_EQ(no_reason.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(no_reason.status().message().find("reason"), std::string::npos);
  auto beyond = revoke("alice", "dataset:" + kData, {29, 30});
  EXPECT_EQ(beyond.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(beyond.status().message().find("record index 30 is beyond the data set's 30 training records"),
            std::string::npos)
      << beyond.status().message();
  auto not_a_dataset = revoke("root", "job-00000001");
  EXPECT_EQ(not_a_dataset.status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(LiabilityTest, TaintReachesEveryModelFineTunedFromARevokedDataSetAndNothingElse) {
  const std::string base = train("job-00000001", "base", "alice", kData, "");
  const std::string tuned = train("job-00000002", "tuned", "bob", kOther, "", base);
  const std::string twice = train("job-00000003", "twice", "bob", kOther, "", tuned);
  const std::string apart = train("job-00000004", "apart", "bob", kOther, "");
  for (const auto& c : {base, tuned, twice, apart}) EXPECT_TRUE(liability::taint_of(*store_, c)->empty());

  auto rev = revoke("alice", "dataset:" + kData, {7});
  ASSERT_TRUE(rev.is_ok()) << rev.status().to_string();
  const std::string id = rev->value("id", "");
  EXPECT_EQ(rev->value("tainted_models", json::array()), json({"model:base@1", "model:tuned@1", "model:twice@1"}));
  for (const auto& c : {base, tuned, twice}) {
    auto t = liability::taint_of(*store_, c);
    ASSERT_TRUE(t.is_ok());
    ASSERT_EQ(t->size(), 1u) << c;
    EXPECT_EQ((*t)[0]["id"], id);
    EXPECT_EQ((*t)[0]["run"], "job-00000001");  // the run that read the data
  }
  EXPECT_TRUE(liability::taint_of(*store_, apart)->empty());

  // Trace shows it, with the revocation behind it; impact marks what lies downstream.
  auto trace = storage::trace(*store_, "twice@1");
  ASSERT_TRUE(trace.is_ok()) << trace.status().to_string();
  EXPECT_TRUE(trace->value("tainted", false));
  const std::string text = storage::render_tree(trace.value());
  EXPECT_NE(text.find("TAINTED by revocation " + id), std::string::npos) << text;
  EXPECT_NE(text.find("consent withdrawn by a data subject"), std::string::npos) << text;
  EXPECT_NE(text.find("job-00000003 <- " + tuned + " <- job-00000002 <- " + base + " <- job-00000001"),
            std::string::npos)
      << text;
  EXPECT_FALSE(storage::trace(*store_, "apart@1")->value("tainted", true));
  auto impact = storage::impact(*store_, "dataset:" + kData);
  ASSERT_TRUE(impact.is_ok());
  EXPECT_EQ(impact->value("revocations", json::array()).size(), 1u);
  EXPECT_NE(storage::render_tree(impact.value()).find("model twice@1 TAINTED"), std::string::npos)
      << storage::render_tree(impact.value());
}

TEST_F(LiabilityTest, ServingAndExportRefuseATaintedVersionNamingTheRevocationAndRecordTheRefusal) {
  train("job-00000001", "m", "alice", kData, "");
  ASSERT_TRUE(predict("m").is_ok());
  auto rev = revoke("alice", "dataset:" + kData);
  ASSERT_TRUE(rev.is_ok());
  const std::string id = rev->value("id", "");
  for (const std::string ref : {"m@1", "m"}) {
    auto p = predict(ref, "research");
    ASSERT_FALSE(p.is_ok()) << ref;
    EXPECT_EQ(p.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(p.status().message().find("is tainted by revocation " + id), std::string::npos) << p.status().message();
    auto e = export_model(ref, "research");
    EXPECT_EQ(e.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(e.status().message().find(id), std::string::npos) << e.status().message();
  }
  auto refused = events(lineage::event::kUseRefused);
  ASSERT_EQ(refused.size(), 4u);
  EXPECT_EQ(refused[0]["action"], "predict");
  EXPECT_EQ(refused[1]["action"], "export");
  EXPECT_EQ(refused[0]["principal"], "principal:carol");
  EXPECT_NE(refused[0]["why"].get<std::string>().find(id), std::string::npos);
}

TEST_F(LiabilityTest, ANameWhoseNewestVersionIsTaintedIsRefusedNeverAnsweredByAnOlderVersion) {
  train("job-00000001", "m", "alice", kOther, "");  // m@1: clean data
  train("job-00000002", "m", "alice", kData, "");   // m@2: data that will be revoked
  ASSERT_TRUE(revoke("alice", "dataset:" + kData).is_ok());
  auto p = predict("m", "research");
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("model m@2"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("never answers with an older version"), std::string::npos)
      << p.status().message();
  auto older = predict("m@1", "research");  // named explicitly: served
  ASSERT_TRUE(older.is_ok()) << older.status().to_string();
  EXPECT_EQ(older->model, "m@1");
}

TEST_F(LiabilityTest, AnAdminMayAllowOneTaintedVersionForOneStatedPurposeOnly) {
  train("job-00000001", "m", "alice", kData, "");
  auto rev = revoke("alice", "dataset:" + kData);
  ASSERT_TRUE(rev.is_ok());
  const std::string id = rev->value("id", "");
  // Not an admin: refused and recorded.
  auto by_owner = allow("alice", "m@1", id, "litigation-hold");
  EXPECT_EQ(by_owner.status().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(events(lineage::event::kUseRefused).back()["action"], "allow");
  // Not a version: refused (the exception is for the version the admin looked at).
  EXPECT_EQ(allow("root", "m", id, "litigation-hold").status().code(), ErrorCode::kInvalidArgument);
  // A revocation that does not taint it: refused.
  EXPECT_EQ(allow("root", "m@1", "revocation:0000000000000000", "litigation-hold").status().code(),
            ErrorCode::kInvalidArgument);

  auto o = allow("root", "m@1", id, "litigation-hold");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  auto served = predict("m@1", "litigation-hold");
  ASSERT_TRUE(served.is_ok()) << served.status().to_string();
  auto call = store_->call(served->call_id);
  ASSERT_TRUE(call.is_ok() && call.value());
  EXPECT_EQ((*call)->body["taint_overrides"], json({o->value("id", "")}));
  EXPECT_EQ(predict("m@1", "research").status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(predict("m@1").status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(export_model("m@1", "litigation-hold").is_ok());
  auto trace = storage::trace(*store_, served->prediction_ids[0]);
  ASSERT_TRUE(trace.is_ok());
  const std::string text = storage::render_tree(trace.value());
  EXPECT_NE(text.find("allowed despite it for purpose 'litigation-hold' only, by root"), std::string::npos) << text;
  EXPECT_NE(text.find("answered although tainted, under override"), std::string::npos) << text;
}

TEST_F(LiabilityTest, PurposesAreTheIntersectionOfEveryUpstreamDeclarationThroughFineTuning) {
  const std::string base = train("job-00000001", "base", "alice", kData,
                                 "spdx = \"CC-BY-4.0\"\npurposes = [\"research\", \"commercial\", \"evaluation\"]\n");
  const std::string tuned = train("job-00000002", "tuned", "bob", kOther,
                                  "spdx = \"CC-BY-NC-4.0\"\npurposes = [\"research\", \"evaluation\"]\n"
                                  "consent_purposes = [\"research\"]\n",
                                  base);
  auto b = liability::permissions_of(*store_, base);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ((*b)["allowed"], json({"commercial", "evaluation", "research"}));
  auto t = liability::permissions_of(*store_, tuned);
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ((*t)["allowed"], json({"research"}));
  EXPECT_EQ((*t)["clauses"].size(), 3u);

  EXPECT_TRUE(predict("base@1", "commercial").is_ok());
  EXPECT_TRUE(predict("tuned@1", "research").is_ok());
  auto commercial = predict("tuned@1", "commercial");
  EXPECT_EQ(commercial.status().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(commercial.status().message().find("the licence CC-BY-NC-4.0 of data set"), std::string::npos)
      << commercial.status().message();
  auto evaluation = export_model("tuned@1", "evaluation");  // the licence allows it; the consent does not
  EXPECT_EQ(evaluation.status().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(evaluation.status().message().find("the consent of its data subjects"), std::string::npos)
      << evaluation.status().message();
  auto none = predict("tuned@1", liability::kUnspecifiedPurpose);
  EXPECT_EQ(none.status().code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(none.status().message().find("say which with --purpose"), std::string::npos) << none.status().message();
  EXPECT_EQ(events(lineage::event::kUseRefused).size(), 3u);

  auto trace = storage::trace(*store_, "tuned@1");
  ASSERT_TRUE(trace.is_ok());
  EXPECT_NE(storage::render_tree(trace.value()).find("permitted purposes: research (the intersection"),
            std::string::npos)
      << storage::render_tree(trace.value());
}

TEST_F(LiabilityTest, ADataSetWithoutDeclaredPurposesRestrictsNothing) {
  train("job-00000001", "m", "alice", kData, "");
  auto checkpoint = storage::resolve_checkpoint(*store_, "m@1");
  ASSERT_TRUE(checkpoint.is_ok());
  auto p = liability::permissions_of(*store_, checkpoint.value());
  ASSERT_TRUE(p.is_ok());
  EXPECT_FALSE(p.value()["restricted"].get<bool>());
  EXPECT_TRUE(predict("m@1").is_ok());
  EXPECT_TRUE(predict("m@1", "anything").is_ok());
}

TEST(RecordList, IndicesRangesAndCommentsAreReadAndMistakesNamedByLine) {
  auto ok = liability::parse_record_list("# withdrawn\n3, 1\n5-7 # a range\n3\n", "ids.txt");
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok.value(), (std::vector<uint64_t>{1, 3, 5, 6, 7}));
  auto bad = liability::parse_record_list("1\n2\nx7\n", "ids.txt");
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("ids.txt:3: 'x7'"), std::string::npos) << bad.status().message();
  EXPECT_EQ(liability::parse_record_list("9-2", "r").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(liability::parse_record_list("# nothing\n", "r").status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace custody::actors
