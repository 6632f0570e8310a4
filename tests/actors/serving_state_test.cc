// The serving actor's replies: ServingState::answer, one request at a time.
#include "actors/serving_state.h"

#include <gtest/gtest.h>

#include <cmath>

#include "actors/custody_recorder.h"
#include "core/clock.h"
#include "core/dataset.h"
#include "storage/lineage_vocabulary.h"

namespace custody::actors {
namespace {

msg::Envelope request(msg::Body body) {
  msg::Envelope e;
  e.sender = "cli";
  e.request_id = 9;
  e.token = "secret";
  e.body = std::move(body);
  return e;
}

TEST(ServingStateAnswer, APredictItCannotServeGetsAnErrorAddressedToIt) {
  ServingState serving(nullptr, ServingOptions{});
  msg::Predict p;
  p.model = "twin@1";
  p.principal = "dave";
  msg::Envelope reply = serving.answer(request(p));
  EXPECT_EQ(reply.sender, "coordinator");
  EXPECT_EQ(reply.request_id, 9u);
  EXPECT_EQ(reply.token, "");
  ASSERT_NE(reply.get<msg::Error>(), nullptr);
  EXPECT_EQ(reply.get<msg::Error>()->code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(reply.get<msg::Error>()->message.find("without a custody store"), std::string::npos)
      << reply.get<msg::Error>()->message;
}

TEST(ServingStateAnswer, ARequestThatIsNotAPredictIsRefusedByName) {
  ServingState serving(nullptr, ServingOptions{});
  msg::Envelope reply = serving.answer(request(msg::StatusRequest{}));
  EXPECT_EQ(reply.request_id, 9u);
  ASSERT_NE(reply.get<msg::Error>(), nullptr);
  EXPECT_EQ(reply.get<msg::Error>()->code, ErrorCode::kInvalidArgument);
  EXPECT_NE(reply.get<msg::Error>()->message.find("'statusRequest'"), std::string::npos)
      << reply.get<msg::Error>()->message;
}

// A completed run of model `name` whose final weights are all `value`: version N+1.
void record_model_version(CustodyRecorder& recorder, const std::string& job_id, const std::string& name,
                          float value) {
  msg::JobStatus job;
  job.job_id = job_id;
  job.name = name;
  job.submitter = "alice";
  storage::CheckpointSpec spec;
  spec.job = job_id;
  spec.step = 10;
  spec.final = true;
  auto id = recorder.checkpoint(job, {2, 2}, std::vector<float>(6, value), spec, {});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  job.state = msg::JobState::kCompleted;
  ASSERT_TRUE(recorder.job_ended(job, id.value()).is_ok());
}

TEST(ServingStateClock, ANameIsResolvedAgainOnceASecondHasPassedOnTheInjectedClock) {
  ManualClock clock;
  auto store = storage::CustodyStore::in_memory(clock);
  CustodyRecorder recorder(store.get(), nullptr, clock);
  record_model_version(recorder, "job-00000001", "m", 0.5f);
  ServingState serving(store.get(), ServingOptions{}, nullptr, clock);
  msg::Predict p;
  p.model = "m";
  p.principal = "dave";
  p.rows = 1;
  p.features = 2;
  p.inputs = {1.f, 2.f};
  auto first = serving.predict(p);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->model, "m@1");

  record_model_version(recorder, "job-00000002", "m", 0.25f);
  clock.advance(std::chrono::milliseconds(999));
  auto cached = serving.predict(p);
  ASSERT_TRUE(cached.is_ok());
  EXPECT_EQ(cached->model, "m@1") << "within a second the name keeps the version it resolved to";

  clock.advance(std::chrono::milliseconds(2));
  auto fresh = serving.predict(p);
  ASSERT_TRUE(fresh.is_ok());
  EXPECT_EQ(fresh->model, "m@2");

  auto usage = store->usage_of(fresh->checkpoint);
  ASSERT_TRUE(usage.is_ok());
  ASSERT_EQ(usage->size(), 1u);
  EXPECT_EQ(usage->front().time_ms, clock.wall_ms()) << "the usage record carries the injected time";
}

TEST(ServingStateModel, ACheckpointOfATanhMlpIsServedWithTanh) {
  auto store = storage::CustodyStore::in_memory();
  CustodyRecorder recorder(store.get());
  const std::vector<int> sizes{2, 3, 2};
  std::vector<float> values(Model(sizes).num_parameters());
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.3f * static_cast<float>(i % 5) - 0.6f;
  msg::JobStatus job;
  job.job_id = "job-0000000t";
  job.name = "t";
  storage::CheckpointSpec spec;
  spec.job = job.job_id;
  spec.step = 10;
  spec.final = true;
  spec.activation = "tanh";
  auto id = recorder.checkpoint(job, sizes, values, spec, {});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ServingState serving(store.get(), ServingOptions{});
  msg::Predict p;
  p.model = id.value();
  p.principal = "dave";
  p.rows = 1;
  p.features = 2;
  p.inputs = {230.0f, 17.0f};  // raw pixels: the model sees them x 1/255
  auto served = serving.predict(p);
  ASSERT_TRUE(served.is_ok()) << served.status().to_string();
  Workspace ws;
  std::vector<float> x(2);
  scale_pixels(p.inputs.data(), x.data(), 2);
  const Matrix tanh_probs = Model(sizes, Activation::kTanh).predict(values.data(), MatrixView(x.data(), 2, 1), ws);
  const Matrix relu_probs = Model(sizes).predict(values.data(), MatrixView(x.data(), 2, 1), ws);
  ASSERT_EQ(served->probabilities.size(), 2u);
  EXPECT_GT(std::abs(tanh_probs(0, 0) - relu_probs(0, 0)), 1e-3f) << "the test needs the two to differ";
  EXPECT_FLOAT_EQ(served->probabilities[0], tanh_probs(0, 0));
  EXPECT_FLOAT_EQ(served->probabilities[1], tanh_probs(1, 0));
}

}  // namespace
}  // namespace custody::actors

namespace custody::actors {
namespace {

// A model trained on a CSV table: serving takes raw rows and standardizes them with the
// statistics its checkpoint's manifest records, so a raw row is answered as the
// standardized row is by the same weights without preprocessing; a manifest whose
// preprocessing does not fit the model is refused as damaged.
TEST(ServingStateTable, RawRowsAreStandardizedWithTheCheckpointsStatistics) {
  ManualClock clock;
  auto store = storage::CustodyStore::in_memory(clock);
  CustodyRecorder recorder(store.get(), nullptr, clock);
  TablePreprocessing table;
  table.label = "y";
  table.feature_names = {"a", "b"};
  table.classes = {"no", "yes"};
  table.standardization = {{10.0f, -2.0f}, {4.0f, 0.5f}};
  const std::vector<float> weights{0.3f, -0.7f, 1.1f, 0.2f, 0.05f, -0.05f};
  auto record = [&](const std::string& job_id, const std::string& name, storage::json preprocessing) {
    msg::JobStatus job;
    job.job_id = job_id;
    job.name = name;
    job.submitter = "alice";
    storage::CheckpointSpec spec;
    spec.job = job_id;
    spec.step = 10;
    spec.final = true;
    spec.preprocessing = std::move(preprocessing);
    auto id = recorder.checkpoint(job, {2, 2}, weights, spec, {});
    ASSERT_TRUE(id.is_ok()) << id.status().to_string();
    job.state = msg::JobState::kCompleted;
    ASSERT_TRUE(recorder.job_ended(job, id.value()).is_ok());
  };
  record("job-00000001", "table", storage::preprocessing_json(table));
  record("job-00000002", "plain", nullptr);
  TablePreprocessing three = table;
  three.feature_names.push_back("c");
  three.standardization.mean.push_back(0);
  three.standardization.std.push_back(1);
  record("job-00000003", "damaged", storage::preprocessing_json(three));
  ServingState serving(store.get(), ServingOptions{}, nullptr, clock);
  auto call = [&](const std::string& model, std::vector<float> inputs) {
    msg::Predict p;
    p.model = model;
    p.principal = "dave";
    p.rows = 2;
    p.features = 2;
    p.inputs = std::move(inputs);
    return serving.predict(p);
  };
  auto raw = call("table", {14.0f, -1.0f, 6.0f, -2.5f});
  ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
  // The same weights on the standardized rows (exact in float32), evaluated here.
  const std::vector<float> standardized{1.0f, 2.0f, -1.0f, -1.0f};
  Workspace ws;
  const Matrix expected = Model({2, 2}).predict(weights.data(), MatrixView(standardized.data(), 2, 2), ws);
  ASSERT_EQ(raw->probabilities.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(raw->probabilities[i], expected.data()[i]) << i;
  // A table model takes any finite raw value, but not a NaN: named by row, column and name.
  auto nan = call("table", {14.0f, -1.0f, 6.0f, std::nanf("")});
  EXPECT_EQ(nan.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(nan.status().message().find("row 1, column 1 (b): nan is not a finite number"), std::string::npos)
      << nan.status().to_string();
  // Finite raw values whose size overflows the model's arithmetic give no finite answer:
  // refused naming the row, and not recorded (a NaN probability is written as null, and
  // the record would then read as damaged to every auditor after).
  const uint64_t recorded = store->log_size(storage::lineage::kUsageLog).value();
  auto huge = call("table", {14.0f, -1.0f, 3e38f, -3e38f});
  EXPECT_EQ(huge.status().code(), ErrorCode::kInvalidArgument) << huge.status().to_string();
  EXPECT_NE(huge.status().message().find("gives no finite answer for row 1"), std::string::npos)
      << huge.status().to_string();
  EXPECT_EQ(store->log_size(storage::lineage::kUsageLog).value(), recorded);
  // The model without a table's preprocessing is an image model: raw pixels 0 to 255.
  auto plain = call("plain", {1.0f, 2.0f, -1.0f, -1.0f});
  EXPECT_EQ(plain.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(plain.status().message().find("row 1, column 0: -1 is outside the range"), std::string::npos)
      << plain.status().to_string();
  auto damaged = call("damaged", {14.0f, -1.0f, 6.0f, -2.5f});
  EXPECT_EQ(damaged.status().code(), ErrorCode::kDataLoss) << damaged.status().to_string();
  EXPECT_NE(damaged.status().message().find("standardizes 3 features"), std::string::npos)
      << damaged.status().to_string();
}

}  // namespace
}  // namespace custody::actors

namespace custody::actors {
namespace {

// The one input contract for an image model (core/input_contract.h): callers send raw
// pixel values 0 to 255 and get what the model answers on pixel x 1/255, the scaling
// training applied (the same bits: scale_pixels, as features() computes it from bytes);
// a value outside 0..255 or not finite is refused naming its row, its column and the
// range, and leaves no usage record. The model's description says the contract.
TEST(ServingStatePixels, RawPixelsAreScaledAsInTrainingAndValuesOutsideTheRangeAreRefused) {
  auto store = storage::CustodyStore::in_memory();
  CustodyRecorder recorder(store.get());
  const std::vector<int> sizes{3, 4, 2};
  std::vector<float> values(Model(sizes).num_parameters());
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * static_cast<float>(i % 7) - 0.7f;
  msg::JobStatus job;
  job.job_id = "job-0000000p";
  job.name = "pixels";
  storage::CheckpointSpec spec;
  spec.job = job.job_id;
  spec.step = 10;
  spec.final = true;
  auto id = recorder.checkpoint(job, sizes, values, spec, {});
  ASSERT_TRUE(id.is_ok()) << id.status().to_string();
  ServingState serving(store.get(), ServingOptions{});
  auto call = [&](std::vector<float> inputs) {
    msg::Predict p;
    p.model = id.value();
    p.principal = "dave";
    p.rows = static_cast<uint32_t>(inputs.size() / 3);
    p.features = 3;
    p.inputs = std::move(inputs);
    return serving.predict(p);
  };

  // Two images' raw bytes, as the IDX file holds them, and the same bytes as training reads them.
  LabeledSet set;
  set.count = 2;
  set.features = 3;
  set.pixels = {0, 128, 255, 37, 200, 1};
  set.labels = {0, 1};
  auto served = call({0.0f, 128.0f, 255.0f, 37.0f, 200.0f, 1.0f});
  ASSERT_TRUE(served.is_ok()) << served.status().to_string();
  Workspace ws;
  const Matrix trained_on = features(set, 0, 2);
  const Matrix expected =
      Model(sizes).predict(values.data(), MatrixView(trained_on.data(), trained_on.rows(), trained_on.cols()), ws);
  ASSERT_EQ(served->probabilities.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(served->probabilities[i], expected.data()[i]) << "the same bits, " << i;

  const size_t before = store->usage_of(id.value())->size();
  for (const auto& [bad, says] : std::vector<std::pair<float, std::string>>{
           {256.0f, "row 1, column 2: 256 is outside the range"},
           {-1.0f, "row 1, column 2: -1 is outside the range"},
           {std::nanf(""), "row 1, column 2: nan is not a finite number"},
           {INFINITY, "row 1, column 2: inf is not a finite number"}}) {
    auto refused = call({0.0f, 128.0f, 255.0f, 37.0f, 200.0f, bad});
    EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument) << says;
    EXPECT_NE(refused.status().message().find(says), std::string::npos) << refused.status().to_string();
    EXPECT_NE(refused.status().message().find("raw pixel values 0 to 255"), std::string::npos)
        << refused.status().to_string();
  }
  // The same images scaled to [0, 1] first (what a caller used to the Flask examples sends):
  // inside 0..255, but no raw image looks like that. The row is named; a row of raw pixels
  // that happens to be dark (0 and 1 only), or with fractions above 1, is answered.
  auto scaled = call({0.0f, 128.0f, 255.0f, 37.0f / 255.0f, 200.0f / 255.0f, 1.0f / 255.0f});
  EXPECT_EQ(scaled.status().code(), ErrorCode::kInvalidArgument) << scaled.status().to_string();
  EXPECT_NE(scaled.status().message().find("row 1 looks already scaled to [0, 1] (its largest value is 0.78"),
            std::string::npos)
      << scaled.status().to_string();
  EXPECT_NE(scaled.status().message().find("x 255"), std::string::npos) << scaled.status().to_string();
  EXPECT_EQ(store->usage_of(id.value())->size(), before) << "a refused call leaves no record";
  EXPECT_TRUE(call({0.0f, 1.0f, 0.0f, 1.0f, 1.0f, 0.0f}).is_ok()) << "a dark image of raw pixels";
  EXPECT_TRUE(call({0.5f, 1.5f, 0.25f, 37.5f, 200.0f, 0.5f}).is_ok()) << "fractional pixels of an interpolated image";

  // References, purposes and principals are written into records: a reference to nothing
  // is answered "not found" without a record (a caller naming made-up checkpoints must not
  // grow the lineage log), an over-long one or text that is not UTF-8 is refused.
  const uint64_t lineage_before = store->log_size(storage::lineage::kLineageLog).value();
  const size_t usage_before = store->usage_of(id.value())->size();
  msg::Predict odd;
  odd.principal = "dave";
  odd.rows = 2;
  odd.features = 3;
  odd.inputs = {0.0f, 128.0f, 255.0f, 37.0f, 200.0f, 1.0f};
  odd.model = "ckpt-0000000000000000000000000000000000000000000000000000000000000000";
  EXPECT_EQ(serving.predict(odd).status().code(), ErrorCode::kNotFound) << serving.predict(odd).status().to_string();
  odd.model = "ckpt-" + std::string(300, 'a');
  EXPECT_NE(serving.predict(odd).status().message().find("1 to 256 bytes; got 305"), std::string::npos);
  EXPECT_EQ(store->log_size(storage::lineage::kLineageLog).value(), lineage_before) << "no refusal recorded";
  odd.model = id.value();
  odd.purpose = "res\xff" "earch";
  EXPECT_NE(serving.predict(odd).status().message().find("the purpose is not UTF-8 (byte 3"), std::string::npos)
      << serving.predict(odd).status().to_string();
  odd.purpose = std::string(2000, 'p');
  EXPECT_NE(serving.predict(odd).status().message().find("a purpose is at most 1024 bytes"), std::string::npos);
  EXPECT_EQ(store->usage_of(id.value())->size(), usage_before) << "a refused call leaves no record";

  auto info = serving.describe(id.value());
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_NE(info->input.find("raw pixel values 0 to 255"), std::string::npos) << info->input;
  EXPECT_NE(info->preprocessing.find("1/255"), std::string::npos) << info->preprocessing;
  EXPECT_EQ(info->input_range, (std::vector<float>{0.0f, 255.0f}));
  EXPECT_EQ(info->input_scale, kInputScale);
}

}  // namespace
}  // namespace custody::actors
