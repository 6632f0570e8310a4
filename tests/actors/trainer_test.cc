// The trainer's loop against parameter servers in memory (ParameterServerState through
// the codec): what it trains, what it reports, and how its waits end.
#include "actors/trainer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/dataset.h"
#include "core/partition.h"
#include "tests/actors/in_memory_parameter_client.h"
#include "tests/test_dir.h"

namespace custody::actors {
namespace {

using namespace std::chrono_literals;

// An MLP 5-6-3 (57 parameters) on 100 synthetic samples: 12 steps of 8 an epoch.
std::string job_text(const std::string& optimizer, uint32_t workers = 1) {
  return "[job]\nname = \"trainer\"\nepochs = 3\nbatch_size = 8\nworkers = " + std::to_string(workers) +
         "\nseed = 11\n[model]\ntype = \"mlp\"\nhidden = [6]\nclasses = 3\n"
         "[optimizer]\ntype = \"" +
         optimizer +
         "\"\nlearning_rate = 0.1\n"
         "[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = 100\ntest_samples = 30\nfeatures = "
         "5\n"
         "classes = 3\n";
}
constexpr uint64_t kParameters = 57, kStepsPerEpoch = 12, kSteps = 36;

using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { data_ = load_data(parse_job_spec(job_text("sgd"), "test").value().data).value(); }

  msg::AssignTask task(const InMemoryServers& servers, const std::string& spec_text,
                       uint64_t start_step = 0) const {
    msg::AssignTask t;
    t.spec_text = spec_text;
    t.rank = 0;
    t.shard = {data_.version_hash, 0, 1, 0, 100};
    t.test_begin = 0;
    t.test_end = 30;
    t.steps_per_epoch = kStepsPerEpoch;
    t.servers = servers.task_servers();
    t.num_parameters = kParameters;
    t.start_step = start_step;
    return t;
  }
  static msg::AssignKeyRange key_range(const std::string& spec_text, uint32_t workers = 1,
                                       uint64_t checkpoint_every = 0) {
    msg::AssignKeyRange a;
    a.spec_text = spec_text;
    a.num_parameters = kParameters;
    a.num_workers = workers;
    a.total_steps = kSteps;
    a.input_features = 5;
    a.steps_per_epoch = kStepsPerEpoch;
    a.checkpoint_every = checkpoint_every;
    return a;
  }
  // Seals its requests when the task carries keys, as the worker does.
  static InMemoryParameterClient client(InMemoryServers& servers, const msg::AssignTask& t,
                                        uint32_t attempt = 0) {
    ParameterRequests requests(KeySlices::make(t.servers, t.num_parameters).value(), "worker-1", "job-1", attempt,
                               t.rank);
    EXPECT_TRUE(requests.seal_with(t.rank_key, t.replies_key).is_ok());
    return InMemoryParameterClient(servers, std::move(requests), "PEER-worker-1");
  }
  // Runs the task to its end and keeps its reports.
  Status train(InMemoryServers& servers, const msg::AssignTask& t, std::vector<float>* values = nullptr,
               uint32_t attempt = 0, TrainerOptions options = {}) {
    auto trainer = Trainer::load(t, "job-1", std::move(options));
    if (!trainer.is_ok()) return trainer.status();
    InMemoryParameterClient c = client(servers, t, attempt);
    Status s = trainer->run(c, [&](msg::Body b) { reports_.push_back(std::move(b)); });
    if (values) values->assign(trainer->values(), trainer->values() + kParameters);
    return s;
  }
  template <class T>
  std::vector<T> reports() const {
    std::vector<T> out;
    for (const auto& r : reports_)
      if (auto* m = std::get_if<T>(&r)) out.push_back(*m);
    return out;
  }

  DataSplit data_;
  std::vector<msg::Body> reports_;
};

// The same updates as a loop on one machine would make, bit for bit: each step's batch
// from core/data_order.h, the gradient at the values after the previous step, and the
// optimizer's update of the whole vector (here split over two servers).
TEST_F(TrainerTest, TrainsOverTwoServersTheModelAPlainLoopTrains) {
  const std::string text = job_text("sgd");
  InMemoryServers servers(kParameters, 2);
  ASSERT_TRUE(servers.assign("job-1", key_range(text)).is_ok());
  std::vector<float> trained;
  ASSERT_TRUE(train(servers, task(servers, text), &trained).is_ok());

  const JobSpec spec = parse_job_spec(text, "test").value();
  const Model model(spec.layer_sizes(5));
  const std::vector<float> initial = model.initial_parameters(spec.seed);
  AlignedFloats params(initial.begin(), initial.end()), grad(kParameters);
  auto optimizer = make_optimizer(spec.optimizer, kParameters);
  BatchOrder order = BatchOrder::make(spec.seed, 0, 100, kStepsPerEpoch, 8).value();
  const Matrix shard = features(data_.train, 0, 100);
  Matrix x(5, 8);
  std::vector<uint8_t> y(8);
  Workspace ws;
  for (uint64_t step = 0; step < kSteps; ++step) {
    const int64_t* batch = order.batch(step);
    for (int i = 0; i < 8; ++i) {
      x.col(i) = shard.col(batch[i]);
      y[i] = data_.train.labels[batch[i]];
    }
    model.gradient(params.data(), MatrixView(x.data(), 5, 8), y.data(), grad.data(), ws);
    optimizer->set_learning_rate(scheduled_learning_rate(spec.optimizer, static_cast<int64_t>(step), kSteps));
    optimizer->apply(params.data(), grad.data());
  }
  EXPECT_EQ(trained, std::vector<float>(params.begin(), params.end()));
  EXPECT_NE(trained, initial);
}

// Sealing changes what travels, not what is computed: the same model, bit for bit, with
// every push and answer sealed (and the servers saw only sealed ones: a push in clear
// would have been refused).
TEST_F(TrainerTest, TrainsTheSameModelWithItsDataPlaneSealed) {
  const std::string text = job_text("sgd");
  InMemoryServers clear(kParameters, 2), sealed(kParameters, 2);
  ASSERT_TRUE(clear.assign("job-1", key_range(text)).is_ok());
  const AttemptKeys keys = AttemptKeys::make(1, sealed.ranges()).value();
  ASSERT_TRUE(sealed.assign("job-1", key_range(text), 0, {}, &keys).is_ok());
  msg::AssignTask t = task(sealed, text);
  keys.fill(t);
  std::vector<float> in_clear, with_seals;
  ASSERT_TRUE(train(clear, task(clear, text), &in_clear).is_ok());
  ASSERT_TRUE(train(sealed, t, &with_seals).is_ok());
  EXPECT_EQ(with_seals, in_clear);
  // A task without the keys cannot train on the sealed servers: its first pull is refused.
  Status unkeyed = train(sealed, task(sealed, text));
  EXPECT_EQ(unkeyed.code(), ErrorCode::kPermissionDenied) << unkeyed.to_string();
  EXPECT_NE(unkeyed.message().find("ps-1"), std::string::npos) << unkeyed.message();
}

TEST_F(TrainerTest, ReportsEachEpochsEvaluationAndAtTheEndItsStepsAndSamples) {
  const std::string text = job_text("sgd");
  InMemoryServers servers(kParameters, 1);
  ASSERT_TRUE(servers.assign("job-1", key_range(text)).is_ok());
  ASSERT_TRUE(train(servers, task(servers, text)).is_ok());
  auto evals = reports<msg::EpochEval>();
  ASSERT_EQ(evals.size(), 3u);
  for (uint32_t e = 0; e < 3; ++e) {
    EXPECT_EQ(evals[e].epoch, e + 1);
    EXPECT_EQ(evals[e].total, 30u) << "its test range";
  }
  ASSERT_TRUE(std::holds_alternative<msg::TaskDone>(reports_.back()));
  const auto done = std::get<msg::TaskDone>(reports_.back());
  EXPECT_EQ(done.steps, kSteps);
  EXPECT_EQ(done.samples, kSteps * 8);
  EXPECT_EQ(done.rank, 0u);
}

TEST_F(TrainerTest, ReportsProgressOnceTheIntervalHasPassed) {
  const std::string text = job_text("sgd");
  InMemoryServers servers(kParameters, 1);
  ASSERT_TRUE(servers.assign("job-1", key_range(text)).is_ok());
  TrainerOptions options;
  options.progress_interval = 500ms;
  SteadyClock::time_point now;
  options.now = [&] { return now += 300ms; };  // every reading 300 ms later: a report every second step
  ASSERT_TRUE(train(servers, task(servers, text), nullptr, 0, options).is_ok());
  auto progress = reports<msg::Progress>();
  ASSERT_EQ(progress.size(), kSteps / 2);
  EXPECT_EQ(progress[0].step, 2u);
  EXPECT_EQ(progress[0].epoch, 1u);
  EXPECT_EQ(progress[0].samples, 16u);
  EXPECT_EQ(progress[0].elapsed_us, 600000u);
  EXPECT_EQ(progress[6].step, 14u);
  EXPECT_EQ(progress[6].epoch, 2u);
}

// The resume guarantee below the cluster: a task resumed at step 14 (inside epoch 2) on
// servers that start from the step-14 checkpoint ends on the uninterrupted model.
TEST_F(TrainerTest, ATaskResumedFromACheckpointEndsOnTheUninterruptedModel) {
  const std::string text = job_text("momentum");
  InMemoryServers first(kParameters, 2);
  ASSERT_TRUE(first.assign("job-1", key_range(text, 1, 7)).is_ok());
  std::vector<float> uninterrupted;
  ASSERT_TRUE(train(first, task(first, text), &uninterrupted).is_ok());
  std::vector<msg::CheckpointShard> at_14;
  for (const msg::Envelope& e : first.to_coordinator()) {
    if (auto* shard = e.get<msg::CheckpointShard>(); shard && shard->step == 14) at_14.push_back(*shard);
  }
  ASSERT_EQ(at_14.size(), 2u) << "one shard from each server";
  ASSERT_FALSE(at_14[0].optimizer_state.empty()) << "momentum's velocity";

  InMemoryServers resumed(kParameters, 2);
  ASSERT_TRUE(resumed.assign("job-1", key_range(text, 1, 7), 1, at_14).is_ok());
  std::vector<float> values;
  reports_.clear();
  ASSERT_TRUE(train(resumed, task(resumed, text, 14), &values, 1).is_ok());
  EXPECT_EQ(values, uninterrupted);
  EXPECT_EQ(reports<msg::TaskDone>().at(0).steps, kSteps);
  EXPECT_EQ(reports<msg::TaskDone>().at(0).samples, (kSteps - 14) * 8);
  EXPECT_EQ(reports<msg::EpochEval>().size(), 2u) << "epochs 2 and 3";
}

TEST_F(TrainerTest, AServerThatDoesNotAnswerEndsTheWaitWithADeadlineNamingIt) {
  const std::string text = job_text("sgd", 2);
  InMemoryServers servers(kParameters, 2);
  ASSERT_TRUE(servers.assign("job-1", key_range(text, 2)).is_ok());  // rank 1 never pushes
  TrainerOptions options;
  options.step_timeout = 60s;
  Status s = train(servers, task(servers, text), nullptr, 0, options);
  EXPECT_EQ(s.code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(), "no reply to a push from parameter server ps-1 at mem://ps-1 within 60 s");
}

TEST_F(TrainerTest, AServersRefusalIsTheTrainersErrorWithTheServerNamed) {
  const std::string text = job_text("sgd");
  InMemoryServers servers(kParameters, 2);
  ASSERT_TRUE(servers.assign("job-1", key_range(text), 1).is_ok());
  Status s = train(servers, task(servers, text), nullptr, 0);  // attempt 0
  EXPECT_EQ(s.code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("parameter server ps-1: attempt 0 of job-1 was replaced by attempt 1", 0), 0u)
      << s.message();
}

TEST_F(TrainerTest, ATaskThatDoesNotFitItsDataIsRefusedBeforeTraining) {
  const std::string text = job_text("sgd");
  InMemoryServers servers(kParameters, 1);
  msg::AssignTask other_data = task(servers, text);
  other_data.shard.dataset_hash = std::string(64, 'a');
  bool data_failure = false;
  auto t = Trainer::load(other_data, "job-1", {}, &data_failure);
  EXPECT_EQ(t.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("is not the version the job was submitted with"), std::string::npos);
  EXPECT_TRUE(data_failure) << "this node's copy of the data: another node's may do";

  msg::AssignTask too_many_steps = task(servers, text);
  too_many_steps.steps_per_epoch = 13;
  data_failure = false;
  t = Trainer::load(too_many_steps, "job-1", {}, &data_failure);
  EXPECT_EQ(t.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(data_failure) << "the job's own mistake fails on every node alike";
  EXPECT_EQ(t.status().message(), "13 steps of 8 samples do not fit the assigned shard of 100");

  msg::AssignTask other_model = task(servers, text);
  other_model.num_parameters = 58;
  t = Trainer::load(other_model, "job-1");
  EXPECT_EQ(t.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "the job's model has 57 parameters, the assignment says 58");

  msg::AssignTask outside = task(servers, text);
  outside.shard.end = 101;
  EXPECT_EQ(Trainer::load(outside, "job-1").status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(TrainerTest, AMissingDataFileIsThisNodesFailureNamingTheFile) {
  InMemoryServers servers(kParameters, 1);
  msg::AssignTask t = task(servers, "[job]\nname = \"t\"\nepochs = 1\nbatch_size = 8\nworkers = 1\n[model]\n"
                                    "type = \"softmax\"\nclasses = 10\n[optimizer]\ntype = \"sgd\"\n"
                                    "learning_rate = 0.1\n[data]\nkind = \"idx\"\ndir = \"/nonexistent/fashion\"\n");
  bool data_failure = false;
  auto loaded = Trainer::load(t, "job-1", {}, &data_failure);
  ASSERT_FALSE(loaded.is_ok());
  EXPECT_TRUE(data_failure);
  EXPECT_NE(loaded.status().message().find("/nonexistent/fashion/"), std::string::npos) << loaded.status().message();
}

// IDX files of 100 training and 30 test images (5 pixels: 1x5) in `dir`, plain.
void write_idx_files(const std::filesystem::path& dir) {
  auto be32 = [](std::string& b, uint32_t v) {
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<char>((v >> shift) & 0xff));
  };
  for (const auto& [name, n] : {std::pair{std::string("train"), 100u}, std::pair{std::string("test"), 30u}}) {
    std::string images, labels;
    be32(images, 0x803), be32(images, n), be32(images, 1), be32(images, 5);
    be32(labels, 0x801), be32(labels, n);
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t p = 0; p < 5; ++p) images.push_back(static_cast<char>((i * 31 + p * 17) % 256));
      labels.push_back(static_cast<char>(i % 3));
    }
    std::ofstream(dir / (name + "-images")) << images;
    std::ofstream(dir / (name + "-labels")) << labels;
  }
}

void change_byte(const std::filesystem::path& file, std::streamoff at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x40));
}

// A worker checks the records its task uses against what the coordinator read at
// submission, file by file: one changed byte in them is refused naming the file; a byte
// changed in records this task does not use does not stop it.
TEST_F(TrainerTest, ATaskRefusesRecordsWhoseBytesDifferFromTheSubmittedOnesNamingTheFile) {
  custody::testing::TestDir dir("trainer-digests");
  write_idx_files(dir.path());
  const std::string text = "[job]\nname = \"t\"\nepochs = 1\nbatch_size = 8\nworkers = 2\n[model]\ntype = "
                           "\"softmax\"\nclasses = 3\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n[data]\n"
                           "kind = \"idx\"\ndir = \"" + dir.string() + "\"\ntrain_images = \"train-images\"\n"
                           "train_labels = \"train-labels\"\ntest_images = \"test-images\"\ntest_labels = "
                           "\"test-labels\"\n";
  const DataSplit submitted = load_data(parse_job_spec(text, "t").value().data).value();
  InMemoryServers servers(18, 1);
  msg::AssignTask t = task(servers, text);
  t.shard = {submitted.version_hash, 0, 2, 0, 50};  // rank 0 of 2: records [0, 50)
  t.test_begin = 0;
  t.test_end = 15;
  t.steps_per_epoch = 6;
  t.num_parameters = 18;
  t.train_digest = records_digest(submitted.train, 0, 50);
  t.test_digest = records_digest(submitted.test, 0, 15);
  ASSERT_TRUE(Trainer::load(t, "job-1").is_ok());

  // A byte of record 70: rank 1's, not this task's. Its records are the submitted ones.
  change_byte(dir / "train-images", 16 + 70 * 5 + 2);
  bool data_failure = false;
  EXPECT_TRUE(Trainer::load(t, "job-1", {}, &data_failure).is_ok()) << "the records it trains on are intact";

  // A byte of record 10: this task's. Refused, naming the file.
  change_byte(dir / "train-images", 16 + 10 * 5 + 2);
  auto refused = Trainer::load(t, "job-1", {}, &data_failure);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kDataLoss);
  EXPECT_TRUE(data_failure) << "this node's copy: another node's may do";
  const std::string m = refused.status().message();
  EXPECT_NE(m.find("'" + (dir / "train-images").string() + "' holds other bytes in training records [0, 50)"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.find("train-labels"), std::string::npos) << "the labels are not blamed: " << m;

  // A label of a test record this task evaluates: the test labels file is named.
  write_idx_files(dir.path());
  change_byte(dir / "test-labels", 8 + 3);
  refused = Trainer::load(t, "job-1");
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("'" + (dir / "test-labels").string() + "' holds other bytes in test records [0, 15)"),
            std::string::npos)
      << refused.status().message();
}

}  // namespace
}  // namespace custody::actors
