// The data plane through shared memory (protocols/shared_region.h): real POSIX regions in
// /dev/shm, a worker's requests (ParameterRequests) and a server's state machine
// (ParameterServerState) exchanging the same envelopes their sockets carry, and what a
// region that is missing, of the wrong size, foreign or tampered with gets.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include <thread>

#include "actors/parameter_client.h"
#include "actors/parameter_server_core.h"
#include "actors/parameter_server_state.h"
#include "actors/socket_parameter_client.h"
#include "protocols/codec.h"
#include "protocols/fork_join.h"
#include "protocols/shared_region.h"

namespace custody::actors {
namespace {

namespace fs = std::filesystem;
using msg::Envelope;
using shm::SharedRegion;

bool in_dev_shm(const std::string& name) { return fs::exists("/dev/shm" + name); }

TEST(SharedRegionTest, TheWorkersRegionIsPrivateAndTheServerMapsTheSameMemoryAndRemovesTheName) {
  auto made = SharedRegion::create("job-1", 2, 1, 1000);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  SharedRegion& worker = made.value();
  ASSERT_TRUE(in_dev_shm(worker.name()));
  struct stat st {};
  ASSERT_EQ(stat(("/dev/shm" + worker.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "readable by this user only";
  EXPECT_EQ(static_cast<size_t>(st.st_size), SharedRegion::size_for(1000));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(worker.gradient()) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(worker.values()) % 64, 0u);
  EXPECT_EQ(worker.name().find("/custody-shm-" + std::to_string(getpid()) + "-"), 0u) << worker.name();

  auto opened = SharedRegion::open(worker.name(), "job-1", 2, 1, 1000);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  EXPECT_FALSE(in_dev_shm(worker.name())) << "the server removes the name once it has mapped the region";
  worker.gradient()[999] = 4.5f;
  EXPECT_EQ(opened->gradient()[999], 4.5f);
  opened->values()[0] = -2.0f;
  EXPECT_EQ(worker.values()[0], -2.0f);
}

// The doorbell between two processes: a forked "server" maps the worker's region, waits on
// its futex for each request and answers through the reply slot; a message too big for a
// slot is refused by name and nothing is posted; a wait with nothing coming times out.
TEST(SharedRegionTest, TheDoorbellCarriesRequestsAndAnswersBetweenProcesses) {
  auto made = SharedRegion::create("job-1", 1, 0, 100);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  SharedRegion& worker = made.value();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto server = SharedRegion::open(worker.name(), "job-1", 1, 0, 100);
    if (!server.is_ok()) _exit(2);
    uint32_t seen = 0;
    for (int i = 0; i < 3; ++i) {
      auto m = server->wait_request(seen, std::chrono::seconds(10));
      if (!m) _exit(3);
      seen = m->seq;
      std::vector<uint8_t> answer(m->bytes.rbegin(), m->bytes.rend());  // the request, reversed
      if (!server->post_reply(answer.data(), answer.size()).is_ok()) _exit(4);
    }
    _exit(0);
  }
  for (int i = 0; i < 3; ++i) {
    const uint32_t seen = worker.reply_seq();
    std::vector<uint8_t> request(1000 * (i + 1), static_cast<uint8_t>(i));
    request.front() = 0xAB;
    ASSERT_TRUE(worker.post_request(request.data(), request.size()).is_ok());
    auto answer = worker.wait_reply(seen, std::chrono::seconds(10));
    ASSERT_TRUE(answer.has_value()) << "request " << i << " was not answered";
    EXPECT_EQ(answer->seq, seen + 1);
    EXPECT_EQ(answer->bytes, std::vector<uint8_t>(request.rbegin(), request.rend()));
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the server's side: " << status;

  std::vector<uint8_t> huge(SharedRegion::kSlotBytes + 1);
  const uint32_t before = worker.reply_seq();
  Status refused = worker.post_request(huge.data(), huge.size());
  EXPECT_EQ(refused.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("does not fit"), std::string::npos) << refused.message();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(worker.wait_reply(before, std::chrono::milliseconds(50)).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
}

TEST(SharedRegionTest, ARegionThatIsMissingMalformedOfTheWrongSizeOrForAnotherTaskIsRefusedByName) {
  auto made = SharedRegion::create("job-1", 2, 1, 1000);
  ASSERT_TRUE(made.is_ok());
  const std::string name = made->name();
  auto refused = [](Result<SharedRegion> r) {
    EXPECT_FALSE(r.is_ok());
    return r.is_ok() ? std::string() : r.status().message();
  };
  const std::string missing = "/custody-shm-1-0123456789abcdef0123456789abcdef";
  auto none = SharedRegion::open(missing, "job-1", 2, 1, 1000);
  EXPECT_EQ(none.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(none.status().message().find("does not exist"), std::string::npos) << none.status().message();
  EXPECT_NE(refused(SharedRegion::open("/etc/passwd", "job-1", 2, 1, 1000)).find("not a region name"),
            std::string::npos);
  EXPECT_NE(refused(SharedRegion::open("/custody-shm-1-../../x", "job-1", 2, 1, 1000)).find("not a region name"),
            std::string::npos);
  // Each refusal below leaves the name (the server did not take the region)... except that
  // open() removes the name once it has mapped a region of the right size: so a fresh one each.
  EXPECT_NE(refused(SharedRegion::open(name, "job-1", 2, 1, 900)).find("need"), std::string::npos)
      << "a region sized for another range";
  // 999 floats fill the same 64-byte blocks as 1000: the header's size tells them apart.
  EXPECT_NE(refused(SharedRegion::open(name, "job-1", 2, 1, 999)).find("on 999 parameters"), std::string::npos);
  auto fresh = [] { return std::move(SharedRegion::create("job-1", 2, 1, 1000)).value(); };
  SharedRegion a = fresh(), b = fresh(), c = fresh();
  EXPECT_NE(refused(SharedRegion::open(a.name(), "job-2", 2, 1, 1000)).find("not made for rank 1 of job-2"),
            std::string::npos);
  EXPECT_NE(refused(SharedRegion::open(b.name(), "job-1", 3, 1, 1000)).find("attempt 3"), std::string::npos);
  EXPECT_NE(refused(SharedRegion::open(c.name(), "job-1", 2, 0, 1000)).find("rank 0"), std::string::npos);
  // A region that others may open is not taken either.
  SharedRegion open_to_all = fresh();
  ASSERT_EQ(chmod(("/dev/shm" + open_to_all.name()).c_str(), 0666), 0);
  EXPECT_NE(refused(SharedRegion::open(open_to_all.name(), "job-1", 2, 1, 1000)).find("mode 0600"),
            std::string::npos);
}

TEST(SharedRegionTest, TheCreatorRemovesItsNameAndASweepRemovesTheNamesOfProcessesThatDied) {
  std::string name;
  {
    auto made = SharedRegion::create("job-1", 1, 0, 10);
    ASSERT_TRUE(made.is_ok());
    name = made->name();
    ASSERT_TRUE(in_dev_shm(name));
  }
  EXPECT_FALSE(in_dev_shm(name)) << "a region dropped before the server took it leaves nothing";

  // A worker killed before its server opened the region: the name stays behind it.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  if (child == 0) {
    auto made = SharedRegion::create("job-1", 1, 0, 10);
    const std::string n = made.is_ok() ? made->name() : "";
    (void)!write(pipe_fds[1], n.data(), n.size());
    _exit(0);  // no destructors: as SIGKILL leaves it
  }
  close(pipe_fds[1]);
  char buf[128] = {};
  const ssize_t got = read(pipe_fds[0], buf, sizeof(buf) - 1);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_GT(got, 0);
  const std::string orphan(buf, static_cast<size_t>(got));
  ASSERT_TRUE(in_dev_shm(orphan)) << orphan;
  auto alive = SharedRegion::create("job-1", 1, 0, 10);  // this process's: it runs, it stays
  ASSERT_TRUE(alive.is_ok());
  EXPECT_GE(SharedRegion::sweep_stale(), 1u);
  EXPECT_FALSE(in_dev_shm(orphan)) << "the sweep removes the region of a process that died";
  EXPECT_TRUE(in_dev_shm(alive->name())) << "and never one of a process that runs";
}

TEST(SharedRegionTest, TheHostIdentityNamesTheKernelAndTheNetworkNamespace) {
  const std::string id = shm::host_identity();
  EXPECT_NE(id.find("/net:["), std::string::npos) << id;
  EXPECT_EQ(id, shm::host_identity());
}

TEST(SharedRegionTest, TheNewFieldsCrossTheWire) {
  auto round_trip = [](msg::Body body) {
    Envelope e;
    e.body = std::move(body);
    return msg::decode(msg::encode(e)).value();
  };
  msg::Push push{"w", 3, {}, 16, 2, 1};
  push.region = "/custody-shm-7-00";
  EXPECT_EQ(round_trip(push).get<msg::Push>()->region, push.region);
  msg::Pull pull{"w", 1};
  pull.region = "/custody-shm-7-01";
  EXPECT_EQ(round_trip(pull).get<msg::Pull>()->region, pull.region);
  msg::Params params{4, 0, {}};
  params.in_region = true;
  EXPECT_TRUE(round_trip(params).get<msg::Params>()->in_region);
  msg::AssignTask task;
  task.servers = {msg::ServerRange{"ps-1", "tcp://a:1", 0, 5, true}};
  EXPECT_TRUE(round_trip(task).get<msg::AssignTask>()->servers[0].shared_memory);
  msg::Register reg{msg::NodeRole::kWorker, "", "h", 1, "w"};
  reg.host_id = "boot/net:[1]";
  EXPECT_EQ(round_trip(reg).get<msg::Register>()->host_id, reg.host_id);
}

// One server holding the whole model (softmax 8 -> 4: 36 parameters) and two ranks'
// requests, in clear, as the worker and the server exchange them.
class SharedMemoryPlaneTest : public ::testing::Test {
 protected:
  // The model: softmax regression of features_ inputs onto 4 classes, 4 * features_ + 4
  // parameters (36 by default), updated by optimizer_.
  int features_ = 8;
  std::string optimizer_ = "sgd";
  uint64_t n_ = 36;
  void assign(const char* consistency, bool sealed = false) {
    n_ = 4 * static_cast<uint64_t>(features_) + 4;
    Envelope e;
    e.job_id = "job-1";
    e.attempt = 1;
    msg::AssignKeyRange a{
        std::string("[job]\nworkers = 2\nseed = 5\nconsistency = \"") + consistency +
            "\"\n[model]\ntype = \"softmax\"\nclasses = 4\n[optimizer]\ntype = \"" + optimizer_ +
            "\"\nlearning_rate = 0.5\n[data]\nkind = \"synthetic\"\n",
        0, 0, n_, n_, 2, 100, static_cast<uint32_t>(features_), 50, 0, 0, {}};
    a.rank_nodes = {"w1", "w2"};
    if (sealed) {
      for (int r = 0; r < 2; ++r) a.rank_keys.push_back(AeadKey::random().value());
      a.reply_key = AeadKey::random().value();
    }
    e.body = std::move(a);
    Outbox out = (target_ ? *target_ : ps_).handle_control("COORD", e);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_NE(out[0].envelope.get<msg::KeyRangeReady>(), nullptr);
  }
  ParameterRequests requests(uint32_t rank, bool shared) {
    msg::ServerRange s{"ps-1", "tcp://127.0.0.1:1", 0, n_, shared};
    ParameterRequests r(KeySlices::make({s}, n_).value(), "w" + std::to_string(rank + 1), "job-1", 1, rank);
    EXPECT_EQ(r.share_memory(), shared ? 1u : 0u);
    return r;
  }
  Outbox send(uint32_t rank, const Envelope& e) { return ps_.handle_data("PEER-" + std::to_string(rank), e); }
  std::vector<float> gradient(uint32_t rank, uint64_t step) const {
    std::vector<float> g(n_);
    for (size_t i = 0; i < n_; ++i)
      g[i] = std::sin(0.37f * static_cast<float>(i + 1) * (rank + 1) + step) * 0.1f;
    return g;
  }
  // Trains `steps` BSP steps with both ranks; returns rank 0's values after each step.
  std::vector<std::vector<float>> train(bool shared, uint64_t steps) {
    assign("bsp");
    ParameterRequests r0 = requests(0, shared), r1 = requests(1, shared);
    std::vector<float> v0(n_), v1(n_);
    for (auto* r : {&r0, &r1}) {
      std::vector<float>& v = r == &r0 ? v0 : v1;
      Outbox out = send(r == &r0 ? 0 : 1, r->pull()[0]);
      EXPECT_EQ(out.size(), 1u);
      EXPECT_TRUE(r->accept(0, out[0].envelope, v.data()).value());
    }
    std::vector<std::vector<float>> seen;
    for (uint64_t step = 0; step < steps; ++step) {
      auto g0 = gradient(0, step), g1 = gradient(1, step);
      auto p0 = r0.push(step, 16, g0.data());
      auto p1 = r1.push(step, 16, g1.data());
      if (shared) {
        EXPECT_TRUE(p0[0].get<msg::Push>()->gradient.empty()) << "the block is not in the message";
      }
      EXPECT_TRUE(send(0, p0[0]).empty()) << "BSP waits for the other rank";
      Outbox out = send(1, p1[0]);
      EXPECT_EQ(out.size(), 2u);
      for (auto& o : out) {
        EXPECT_EQ(o.envelope.get<msg::Params>()->in_region, shared);
        const bool first = o.peer == "PEER-0";
        EXPECT_TRUE((first ? r0 : r1).accept(0, o.envelope, (first ? v0 : v1).data()).value());
      }
      EXPECT_EQ(v0, v1);
      seen.push_back(v0);
    }
    return seen;
  }

  ParameterServerState ps_{"ps-1"};
  ParameterServerState* target_ = nullptr;  // set: assign() assigns there instead of ps_
};

TEST_F(SharedMemoryPlaneTest, BspThroughSharedMemoryGivesTheSameValuesToTheBitAsThroughMessages) {
  const auto through_messages = train(false, 5);
  ps_.clear();
  const auto through_memory = train(true, 5);
  ASSERT_EQ(through_memory.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(std::memcmp(through_memory[i].data(), through_messages[i].data(), n_ * sizeof(float)), 0)
        << "step " << i;
  }
  EXPECT_NE(through_memory[4], through_memory[0]) << "it trained";
}

// At a BSP step's end every worker waits for the server, which then shares the copy of the
// last gradient out of its region, the update and the copies of the values into the
// regions with its helper threads (set_parallel): with a model of several 128 KiB pieces
// and momentum's state, the values are the same to the bit as one thread's through messages.
TEST_F(SharedMemoryPlaneTest, BspSharedAmongTheServersThreadsGivesTheSameValuesToTheBit) {
  features_ = 30000;  // 120,004 parameters: four pieces
  optimizer_ = "momentum";
  const auto one_thread = train(false, 4);
  ps_.clear();
  ForkJoin helpers(2);
  ps_.set_parallel(&helpers);
  const auto threads = train(true, 4);
  ASSERT_EQ(threads.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(threads[i].size(), n_);
    EXPECT_EQ(std::memcmp(threads[i].data(), one_thread[i].data(), n_ * sizeof(float)), 0) << "step " << i;
  }
  EXPECT_NE(threads[3], threads[0]) << "it trained";
}

// Adam too (the seeds' CNN): its update splits among the server's threads since it runs in
// one pass, taking its bias corrections from the step count. The node shares a step's end
// only for key ranges from set_share_step_end_above's floats: below, on one thread, at and
// above it shared; the values are the same to the bit all three ways, step after step.
TEST_F(SharedMemoryPlaneTest, AdamsStepEndSharedFromTheThresholdGivesTheSameValuesToTheBit) {
  features_ = 30000;  // 120,004 parameters: four pieces
  optimizer_ = "adam";
  const auto one_thread = train(false, 4);
  ForkJoin helpers(2);
  ps_.set_parallel(&helpers);
  for (uint64_t above : {n_ + 1, n_}) {
    ps_.clear();
    ps_.set_share_step_end_above(above);
    const auto run = train(true, 4);
    ASSERT_EQ(run.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      ASSERT_EQ(run[i].size(), n_);
      EXPECT_EQ(std::memcmp(run[i].data(), one_thread[i].data(), n_ * sizeof(float)), 0)
          << "step " << i << (above > n_ ? ", the step end on one thread" : ", the step end shared");
    }
    EXPECT_NE(run[3], run[0]) << "it trained";
  }
}

// A worker whose one server holds the whole model through memory computes in the region's
// blocks (ParameterClient::gradient_block and values_block): the server takes the gradient
// written there, and the answer's values are read where they lie, copied nowhere. With the
// model split among servers there is no such block.
TEST_F(SharedMemoryPlaneTest, AWorkerMayComputeInTheRegionsBlocksWithoutCopyingThem) {
  assign("asp");
  ParameterRequests r0 = requests(0, true);
  std::vector<float> v(n_);
  ASSERT_TRUE(r0.accept(0, send(0, r0.pull()[0])[0].envelope, v.data()).value());
  float* g = r0.gradient_block();
  float* values = r0.values_block();
  ASSERT_NE(g, nullptr);
  ASSERT_NE(values, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(g) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(values) % 64, 0u);
  EXPECT_EQ(std::memcmp(values, v.data(), n_ * sizeof(float)), 0) << "the pull's values lie in the block";
  const auto grad = gradient(0, 0);
  std::copy(grad.begin(), grad.end(), g);
  Outbox out = send(0, r0.push(0, 16, g)[0]);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(r0.accept(0, out[0].envelope, values).value());
  EXPECT_EQ(std::vector<float>(values, values + n_), ps_.values("job-1"));
  for (size_t i = 0; i < n_; ++i)
    ASSERT_EQ(values[i], v[i] - 0.5f * grad[i]) << "key " << i;  // sgd, rate 0.5

  ParameterRequests split(KeySlices::make({msg::ServerRange{"ps-1", "tcp://127.0.0.1:1", 0, 10, true},
                                           msg::ServerRange{"ps-2", "tcp://127.0.0.1:2", 10, n_, true}},
                                          n_)
                              .value(),
                          "w1", "job-1", 1, 0);
  EXPECT_EQ(split.share_memory(), 2u);
  EXPECT_EQ(split.gradient_block(), nullptr);
  EXPECT_EQ(split.values_block(), nullptr);
}

TEST_F(SharedMemoryPlaneTest, AspThroughSharedMemoryRefusesAReplayedStep) {
  assign("asp");
  ParameterRequests r0 = requests(0, true);
  std::vector<float> v(n_);
  ASSERT_TRUE(r0.accept(0, send(0, r0.pull()[0])[0].envelope, v.data()).value());
  auto g = gradient(0, 0);
  const Envelope push = r0.push(0, 16, g.data())[0];
  Outbox out = send(0, push);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(r0.accept(0, out[0].envelope, v.data()).value());
  EXPECT_EQ(ps_.values("job-1"), v);
  Outbox again = send(0, push);
  ASSERT_NE(again[0].envelope.get<msg::Error>(), nullptr);
  EXPECT_NE(again[0].envelope.get<msg::Error>()->message.find("already applied"), std::string::npos);
  EXPECT_EQ(ps_.version("job-1"), 1u);
}

TEST_F(SharedMemoryPlaneTest, TheServerChecksTheValuesItReadsFromTheRegion) {
  assign("asp");
  ParameterRequests r0 = requests(0, true);
  std::vector<float> v(n_);
  ASSERT_TRUE(r0.accept(0, send(0, r0.pull()[0])[0].envelope, v.data()).value());
  const std::vector<float> before = ps_.values("job-1");
  auto g = gradient(0, 0);
  g[7] = std::numeric_limits<float>::quiet_NaN();
  Outbox out = send(0, r0.push(0, 16, g.data())[0]);
  ASSERT_EQ(out.size(), 1u);
  const auto* err = out[0].envelope.get<msg::Error>();
  ASSERT_NE(err, nullptr);
  EXPECT_NE(err->message.find("non-finite value at key 7"), std::string::npos) << err->message;
  EXPECT_EQ(ps_.values("job-1"), before) << "not applied";
}

TEST_F(SharedMemoryPlaneTest, APullNamingARegionThatDoesNotExistFallsBackToTheSocket) {
  assign("bsp");
  ParameterRequests r0 = requests(0, true);
  Envelope pull = r0.pull()[0];
  // The region vanished (or the worker is on another host after all): the server refuses it.
  ASSERT_TRUE(shm_unlink(pull.get<msg::Pull>()->region.c_str()) == 0);
  Outbox out = send(0, pull);
  ASSERT_EQ(out.size(), 1u);
  const auto* err = out[0].envelope.get<msg::Error>();
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(err->message.find("does not exist"), std::string::npos) << err->message;
  EXPECT_NE(err->message.find("through the socket instead"), std::string::npos) << err->message;
  auto again = r0.fall_back(0, out[0].envelope);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(r0.through_memory(0));
  EXPECT_TRUE(again->get<msg::Pull>()->region.empty());
  EXPECT_EQ(again->request_id, pull.request_id);
  std::vector<float> v(n_);
  Outbox answered = send(0, *again);
  ASSERT_TRUE(r0.accept(0, answered[0].envelope, v.data()).value());
  EXPECT_EQ(v, ps_.values("job-1"));
  // The next push goes in the message.
  auto g = gradient(0, 0);
  EXPECT_EQ(r0.push(0, 16, g.data())[0].get<msg::Push>()->gradient.size(), n_);
}

TEST_F(SharedMemoryPlaneTest, ARegionOfTheWrongSizeOrAnotherRegionThanTheRanksIsRefused) {
  assign("bsp");
  // A region made for 20 parameters named for a server of 36.
  SharedRegion small = std::move(SharedRegion::create("job-1", 1, 0, 20)).value();
  Envelope pull;
  pull.job_id = "job-1";
  pull.attempt = 1;
  pull.request_id = 1;
  msg::Pull p{"w1", 0};
  p.region = small.name();
  pull.body = p;
  Outbox out = send(0, pull);
  ASSERT_NE(out[0].envelope.get<msg::Error>(), nullptr);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("need " + std::to_string(SharedRegion::size_for(36))),
            std::string::npos)
      << out[0].envelope.get<msg::Error>()->message;

  // Rank 0 takes its region; then a push naming another region for rank 0 is refused.
  ParameterRequests r0 = requests(0, true);
  std::vector<float> v(n_);
  ASSERT_TRUE(r0.accept(0, send(0, r0.pull()[0])[0].envelope, v.data()).value());
  SharedRegion other = std::move(SharedRegion::create("job-1", 1, 0, n_)).value();
  Envelope push;
  push.job_id = "job-1";
  push.attempt = 1;
  push.request_id = 9;
  msg::Push m{"w1", 0, {}, 16, 0, 0};
  m.region = other.name();
  push.body = m;
  Outbox refused = send(0, push);
  ASSERT_NE(refused[0].envelope.get<msg::Error>(), nullptr);
  EXPECT_NE(refused[0].envelope.get<msg::Error>()->message.find("one region serves a rank"), std::string::npos)
      << refused[0].envelope.get<msg::Error>()->message;
  EXPECT_EQ(ps_.version("job-1"), 0u);
}

TEST_F(SharedMemoryPlaneTest, ASealedJobTakesNoRegion) {
  assign("bsp", /*sealed=*/true);
  SharedRegion region = std::move(SharedRegion::create("job-1", 1, 0, n_)).value();
  Envelope pull;
  pull.job_id = "job-1";
  pull.attempt = 1;
  msg::Pull p{"w1", 0};
  p.region = region.name();
  pull.body = p;
  Outbox out = send(0, pull);
  ASSERT_NE(out[0].envelope.get<msg::Error>(), nullptr);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("sealed"), std::string::npos);
  // And a worker of a sealed job makes none.
  msg::ServerRange s{"ps-1", "tcp://127.0.0.1:1", 0, n_, true};
  ParameterRequests r(KeySlices::make({s}, n_).value(), "w1", "job-1", 1, 0);
  ASSERT_TRUE(r.seal_with(AeadKey::random().value(), AeadKey::random().value()).is_ok());
  EXPECT_EQ(r.share_memory(), 0u);
}

// The server node's path (ParameterServerCore): each rank's first pull goes by "socket"
// and names its region; from then on the real client (SocketParameterClient) sends its
// pushes through the region's doorbell and waits on it, and the server's doorbell threads
// answer there. BSP through the doorbells trains the same values to the bit as the state
// machine alone through messages; garbage in the request slot is answered with an error
// naming it, and the job goes on.
TEST_F(SharedMemoryPlaneTest, BspThroughTheDoorbellsGivesTheSameValuesToTheBitAndRefusesGarbage) {
  const auto through_messages = train(false, 5);
  ParameterServerCore core(nullptr, std::make_unique<ParameterServerState>("ps-1"), {}, CpuList());
  target_ = core.logic.get();  // the job, assigned afresh, in the core (no thread runs yet)
  assign("bsp");
  transport::Context context;
  std::vector<SocketParameterClient> clients;
  std::vector<std::vector<float>> values(2, std::vector<float>(n_));
  for (uint32_t rank = 0; rank < 2; ++rank) {
    ParameterRequests r = requests(rank, true);
    Inbound in{Channel::kPeers, "PEER-" + std::to_string(rank), std::make_shared<const Envelope>(r.pull()[0]), "", ""};
    std::vector<Envelope> answers;
    core.handle(in, [&](const std::string&, const Envelope& e) { answers.push_back(e); });
    ASSERT_EQ(answers.size(), 1u);
    ASSERT_TRUE(r.accept(0, answers[0], values[rank].data()).value());
    ASSERT_NE(r.doorbell(0), nullptr) << "the server answered through the region";
    if (rank == 0) {
      // Garbage through the doorbell: refused by the server's doorbell thread, by name.
      const uint32_t seen = r.doorbell(0)->reply_seq();
      const uint8_t junk[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
      ASSERT_TRUE(r.doorbell(0)->post_request(junk, sizeof(junk)).is_ok());
      auto reply = r.doorbell(0)->wait_reply(seen, std::chrono::seconds(10));
      ASSERT_TRUE(reply.has_value());
      auto decoded = msg::decode(reply->bytes.data(), reply->bytes.size());
      ASSERT_TRUE(decoded.is_ok());
      ASSERT_NE(decoded->get<msg::Error>(), nullptr);
    }
    auto client = SocketParameterClient::connect(context, std::move(r), [] { return false; });
    ASSERT_TRUE(client.is_ok()) << client.status().to_string();
    clients.push_back(std::move(client).value());
  }
  for (uint64_t step = 0; step < 5; ++step) {
    auto g0 = gradient(0, step), g1 = gradient(1, step);
    ASSERT_TRUE(clients[0].push(step, 16, g0.data()).is_ok());
    ASSERT_TRUE(clients[1].push(step, 16, g1.data()).is_ok());
    for (int rank = 0; rank < 2; ++rank) {
      Status s = clients[rank].wait(values[rank].data(), std::chrono::seconds(10));
      ASSERT_TRUE(s.is_ok()) << "rank " << rank << " step " << step << ": " << s.to_string();
    }
    EXPECT_EQ(std::memcmp(values[0].data(), through_messages[step].data(), n_ * sizeof(float)), 0) << "step " << step;
    EXPECT_EQ(values[0], values[1]);
  }
  // A push of a step already applied is refused through the doorbell as through a socket.
  auto g = gradient(0, 4);
  ASSERT_TRUE(clients[0].push(4, 16, g.data()).is_ok());
  Status replayed = clients[0].wait(values[0].data(), std::chrono::seconds(10));
  EXPECT_FALSE(replayed.is_ok()) << "a replayed step is not applied twice";
  core.stop();
}

TEST_F(SharedMemoryPlaneTest, NoNameIsLeftOnceTheServerAnsweredThroughTheRegion) {
  assign("bsp");
  ParameterRequests r0 = requests(0, true);
  Envelope pull = r0.pull()[0];
  const std::string name = pull.get<msg::Pull>()->region;
  EXPECT_TRUE(in_dev_shm(name));
  std::vector<float> v(n_);
  ASSERT_TRUE(r0.accept(0, send(0, pull)[0].envelope, v.data()).value());
  EXPECT_FALSE(in_dev_shm(name));
}

// A server that drops a job whose ranks talk through their doorbells (registered again:
// clear(); a release; a cancel) still answers a request through the region, with the
// refusal a socket request would get, so the trainer learns at once that its attempt is
// over instead of waiting out its step deadline (found in review: it waited it out).
TEST_F(SharedMemoryPlaneTest, ADoorbellRequestAfterTheServerDroppedTheJobIsRefusedAtOnce) {
  ParameterServerCore core(nullptr, std::make_unique<ParameterServerState>("ps-1"), {}, CpuList());
  target_ = core.logic.get();
  assign("bsp");
  transport::Context context;
  std::vector<SocketParameterClient> clients;
  std::vector<std::vector<float>> values(2, std::vector<float>(n_));
  for (uint32_t rank = 0; rank < 2; ++rank) {
    ParameterRequests r = requests(rank, true);
    Inbound in{Channel::kPeers, "PEER-" + std::to_string(rank), std::make_shared<const Envelope>(r.pull()[0]), "", ""};
    std::vector<Envelope> answers;
    core.handle(in, [&](const std::string&, const Envelope& e) { answers.push_back(e); });
    ASSERT_EQ(answers.size(), 1u);
    ASSERT_TRUE(r.accept(0, answers[0], values[rank].data()).value());
    auto client = SocketParameterClient::connect(context, std::move(r), [] { return false; });
    ASSERT_TRUE(client.is_ok());
    clients.push_back(std::move(client).value());
  }
  auto g0 = gradient(0, 0), g1 = gradient(1, 0);
  ASSERT_TRUE(clients[0].push(0, 16, g0.data()).is_ok());
  ASSERT_TRUE(clients[1].push(0, 16, g1.data()).is_ok());
  for (int rank = 0; rank < 2; ++rank) ASSERT_TRUE(clients[rank].wait(values[rank].data(), std::chrono::seconds(10)).is_ok());
  {
    std::lock_guard<std::mutex> lock(core.mu);
    core.logic->clear();  // what the node does when it registers again
  }
  auto g = gradient(0, 1);
  ASSERT_TRUE(clients[0].push(1, 16, g.data()).is_ok());
  const auto t0 = std::chrono::steady_clock::now();
  Status s = clients[0].wait(values[0].data(), std::chrono::seconds(10));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.code(), ErrorCode::kDeadlineExceeded) << s.to_string();
  EXPECT_LT(waited, 2.0) << s.to_string();
  core.stop();
}

}  // namespace
}  // namespace custody::actors
