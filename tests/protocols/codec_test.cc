#include "protocols/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <cstring>

#include "protocols/custody.capnp.h"
#include "protocols/future_envelope.capnp.h"

namespace custody::msg {
namespace {

template <class T>
T round_trip(T body, Envelope* out = nullptr) {
  Envelope e;
  e.sender = "worker-7";
  e.job_id = "job-1234";
  e.request_id = 99;
  e.attempt = 3;
  e.body = std::move(body);
  auto bytes = encode(e);
  EXPECT_EQ(bytes.size() % 8, 0u);
  auto decoded = decode(bytes);
  EXPECT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->sender, "worker-7");
  EXPECT_EQ(decoded->job_id, "job-1234");
  EXPECT_EQ(decoded->request_id, 99u);
  EXPECT_EQ(decoded->attempt, 3u);
  EXPECT_EQ(decoded->version, kProtocolVersion);
  const T* got = decoded->template get<T>();
  EXPECT_NE(got, nullptr) << "decoded as " << body_name(decoded->body);
  if (out) *out = decoded.value();
  return got ? *got : T{};
}

TEST(CodecTest, ErrorRegisterAndHeartbeatRoundTrip) {
  auto err = round_trip(Error{ErrorCode::kNotFound, "no such job"});
  EXPECT_EQ(err.code, ErrorCode::kNotFound);
  EXPECT_EQ(err.message, "no such job");
  auto reg = round_trip(Register{NodeRole::kParameterServer, "tcp://h:1", "h", 42, "ps-9"});
  EXPECT_EQ(reg.role, NodeRole::kParameterServer);
  EXPECT_EQ(reg.address, "tcp://h:1");
  EXPECT_EQ(reg.host, "h");
  EXPECT_EQ(reg.pid, 42u);
  EXPECT_EQ(reg.name, "ps-9");
  auto ack = round_trip(RegisterAck{"worker-3", 250});
  EXPECT_EQ(ack.node_id, "worker-3");
  EXPECT_EQ(ack.heartbeat_interval_ms, 250u);
  EXPECT_TRUE(round_trip(Heartbeat{true}).busy);
  EXPECT_FALSE(round_trip(Heartbeat{true}).leaving);
  EXPECT_TRUE(round_trip(Heartbeat{false, true}).leaving);
  EXPECT_FALSE(round_trip(HeartbeatAck{false}).known);
}

TEST(CodecTest, ClientRequestsRoundTrip) {
  auto sub = round_trip(SubmitJob{"[job]\nepochs = 1\n", "a.toml", "alice"});
  EXPECT_EQ(sub.spec_text, "[job]\nepochs = 1\n");
  EXPECT_EQ(sub.origin, "a.toml");
  EXPECT_EQ(sub.submitter, "alice");
  auto acc = round_trip(JobAccepted{"job-1", "queued"});
  EXPECT_EQ(acc.job_id, "job-1");
  EXPECT_EQ(acc.message, "queued");
  EXPECT_TRUE(round_trip(StatusRequest{true}).include_nodes);
  EXPECT_EQ(round_trip(CancelJob{"because", "alice"}).reason, "because");
  EXPECT_EQ(round_trip(CancelJob{"because", "alice"}).principal, "alice");
  EXPECT_EQ(round_trip(StopJob{"done"}).reason, "done");
}

TEST(CodecTest, StatusReplyRoundTripsEveryField) {
  JobStatus j;
  j.job_id = "job-1";
  j.name = "n";
  j.state = JobState::kRunning;
  j.message = "m";
  j.submitter = "bob";
  j.epoch = 3;
  j.epochs = 12;
  j.step = 1000;
  j.total_steps = 5000;
  j.loss = 0.5;
  j.test_accuracy = 0.875;
  j.test_loss = 0.4;
  j.samples_per_sec = 12345.5;
  j.submitted_at_ms = 1;
  j.started_at_ms = 2;
  j.finished_at_ms = 3;
  j.workers = {"worker-1", "worker-2"};
  j.servers = {"ps-1"};
  j.dataset_hash = "abc";
  j.consistency = "bsp";
  j.accuracy_history = {0.8, 0.85, 0.875};
  NodeStatus n{"ps-1", NodeRole::kParameterServer, "tcp://x:1", true, false, 120, "host", 77};
  j.last_checkpoint = "ckpt-1";
  j.waiting_for = {"worker-2 (rank 1): silent"};
  j.recoveries = 2;
  auto r = round_trip(StatusReply{{j}, {n}, "/var/custody"});
  EXPECT_EQ(r.store_path, "/var/custody");
  EXPECT_EQ(r.jobs[0].last_checkpoint, "ckpt-1");
  EXPECT_EQ(r.jobs[0].waiting_for, j.waiting_for);
  EXPECT_EQ(r.jobs[0].recoveries, 2u);
  ASSERT_EQ(r.jobs.size(), 1u);
  const JobStatus& g = r.jobs[0];
  EXPECT_EQ(g.job_id, "job-1");
  EXPECT_EQ(g.state, JobState::kRunning);
  EXPECT_EQ(g.submitter, "bob");
  EXPECT_EQ(g.epoch, 3u);
  EXPECT_EQ(g.epochs, 12u);
  EXPECT_EQ(g.step, 1000u);
  EXPECT_EQ(g.total_steps, 5000u);
  EXPECT_DOUBLE_EQ(g.loss, 0.5);
  EXPECT_DOUBLE_EQ(g.test_accuracy, 0.875);
  EXPECT_DOUBLE_EQ(g.test_loss, 0.4);
  EXPECT_DOUBLE_EQ(g.samples_per_sec, 12345.5);
  EXPECT_EQ(g.submitted_at_ms, 1);
  EXPECT_EQ(g.started_at_ms, 2);
  EXPECT_EQ(g.finished_at_ms, 3);
  EXPECT_EQ(g.workers, j.workers);
  EXPECT_EQ(g.servers, j.servers);
  EXPECT_EQ(g.dataset_hash, "abc");
  EXPECT_EQ(g.consistency, "bsp");
  EXPECT_EQ(g.accuracy_history, j.accuracy_history);
  ASSERT_EQ(r.nodes.size(), 1u);
  EXPECT_EQ(r.nodes[0].node_id, "ps-1");
  EXPECT_EQ(r.nodes[0].role, NodeRole::kParameterServer);
  EXPECT_EQ(r.nodes[0].address, "tcp://x:1");
  EXPECT_TRUE(r.nodes[0].alive);
  EXPECT_FALSE(r.nodes[0].busy);
  EXPECT_EQ(r.nodes[0].last_seen_ms_ago, 120);
  EXPECT_EQ(r.nodes[0].host, "host");
  EXPECT_EQ(r.nodes[0].pid, 77u);
}

TEST(CodecTest, AssignmentsRoundTrip) {
  auto a = round_trip(AssignKeyRange{"spec", 1, 10, 20, 30, 2, 500, 784, 50, 25, 100, {1.5f, 2.5f}});
  EXPECT_EQ(a.steps_per_epoch, 50u);
  EXPECT_EQ(a.checkpoint_every, 25u);
  EXPECT_EQ(a.start_step, 100u);
  EXPECT_EQ(a.initial_values, (std::vector<float>{1.5f, 2.5f}));
  EXPECT_EQ(a.spec_text, "spec");
  EXPECT_EQ(a.server_index, 1u);
  EXPECT_EQ(a.range_begin, 10u);
  EXPECT_EQ(a.range_end, 20u);
  EXPECT_EQ(a.num_parameters, 30u);
  EXPECT_EQ(a.num_workers, 2u);
  EXPECT_EQ(a.total_steps, 500u);
  EXPECT_EQ(a.input_features, 784u);
  EXPECT_TRUE(a.optimizer_state.empty()) << "no state: the server starts from zeros";
  AssignKeyRange resumed{"spec", 0, 10, 20, 30, 2, 500, 784, 50, 25, 100, {1.5f, 2.5f}};
  resumed.optimizer_state = {0.25f, -0.5f, 1e-30f, 3.0f};
  resumed.optimizer_steps = 100;
  auto b = round_trip(resumed);
  EXPECT_EQ(b.optimizer_state, resumed.optimizer_state);
  EXPECT_EQ(b.optimizer_steps, 100u);
  EXPECT_EQ(b.initial_values, resumed.initial_values);
  auto r = round_trip(KeyRangeReady{10, 20});
  EXPECT_EQ(r.range_begin, 10u);
  EXPECT_EQ(r.range_end, 20u);
  AssignTask t;
  t.spec_text = "spec";
  t.rank = 1;
  t.shard = {"hash", 1, 2, 30000, 60000};
  t.test_begin = 5000;
  t.test_end = 10000;
  t.steps_per_epoch = 468;
  t.servers = {{"ps-1", "tcp://a:1", 0, 5}, {"ps-2", "tcp://b:2", 5, 9}};
  t.num_parameters = 9;
  t.start_step = 77;
  auto g = round_trip(t);
  EXPECT_EQ(g.start_step, 77u);
  EXPECT_EQ(g.rank, 1u);
  EXPECT_EQ(g.shard.dataset_hash, "hash");
  EXPECT_EQ(g.shard.index, 1u);
  EXPECT_EQ(g.shard.num_shards, 2u);
  EXPECT_EQ(g.shard.begin, 30000u);
  EXPECT_EQ(g.shard.end, 60000u);
  EXPECT_EQ(g.test_begin, 5000u);
  EXPECT_EQ(g.test_end, 10000u);
  EXPECT_EQ(g.steps_per_epoch, 468u);
  ASSERT_EQ(g.servers.size(), 2u);
  EXPECT_EQ(g.servers[1].node_id, "ps-2");
  EXPECT_EQ(g.servers[1].address, "tcp://b:2");
  EXPECT_EQ(g.servers[1].range_begin, 5u);
  EXPECT_EQ(g.servers[1].range_end, 9u);
  EXPECT_EQ(g.num_parameters, 9u);
}

TEST(CodecTest, ReportsRoundTrip) {
  auto p = round_trip(Progress{2, 100, 6400, 123.5, 500000, 5});
  EXPECT_EQ(p.rank, 5u);
  EXPECT_EQ(p.epoch, 2u);
  EXPECT_EQ(p.step, 100u);
  EXPECT_EQ(p.samples, 6400u);
  EXPECT_DOUBLE_EQ(p.loss_sum, 123.5);
  EXPECT_EQ(p.elapsed_us, 500000u);
  auto e = round_trip(EpochEval{4, 4400, 5000, 1700.25, 6});
  EXPECT_EQ(e.rank, 6u);
  EXPECT_EQ(e.epoch, 4u);
  EXPECT_EQ(e.correct, 4400u);
  EXPECT_EQ(e.total, 5000u);
  EXPECT_DOUBLE_EQ(e.loss_sum, 1700.25);
  auto d = round_trip(TaskDone{5616, 359424, 7});
  EXPECT_EQ(d.rank, 7u);
  EXPECT_EQ(d.steps, 5616u);
  EXPECT_EQ(d.samples, 359424u);
}

TEST(CodecTest, TensorsRoundTripBitExactly) {
  std::vector<float> v(117573);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 1e-3f - 7.5f;
  v[3] = -0.0f;
  auto push = round_trip(Push{"worker-1", 17, v, 64, 16, 1});
  EXPECT_EQ(push.rank, 1u);
  EXPECT_EQ(push.samples, 64u);
  EXPECT_EQ(push.base_version, 16u);
  EXPECT_EQ(push.worker, "worker-1");
  EXPECT_EQ(push.step, 17u);
  ASSERT_EQ(push.gradient.size(), v.size());
  EXPECT_EQ(std::memcmp(push.gradient.data(), v.data(), v.size() * sizeof(float)), 0);
  auto params = round_trip(Params{18, 117573, v});
  EXPECT_EQ(params.version, 18u);
  EXPECT_EQ(params.range_begin, 117573u);
  EXPECT_EQ(params.values, v);
  EXPECT_EQ(round_trip(Pull{"worker-2"}).worker, "worker-2");
}

// Parameter blocks are megabytes on every step: given the received buffer's owner,
// decoding points into it instead of copying; without one (or for a buffer that had to
// be realigned), the values are copied and stay valid on their own.
TEST(CodecTest, DecodedParameterBlocksShareTheReceivedBytes) {
  std::vector<float> v(4096);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  Envelope e;
  e.body = Params{3, 0, Floats::borrowed(v.data(), v.size())};
  auto frame = std::make_shared<Bytes>(encode(e));
  auto shared = decode(frame->data(), frame->size(), {}, frame);
  ASSERT_TRUE(shared.is_ok());
  const Floats values = shared->get<Params>()->values;
  EXPECT_GE(reinterpret_cast<const uint8_t*>(values.data()), frame->begin());
  EXPECT_LE(reinterpret_cast<const uint8_t*>(values.end()), frame->end());
  EXPECT_EQ(values, v);

  auto copied = decode(frame->data(), frame->size());
  ASSERT_TRUE(copied.is_ok());
  const Floats own = copied->get<Params>()->values;
  EXPECT_TRUE(reinterpret_cast<const uint8_t*>(own.data()) < frame->begin() ||
              reinterpret_cast<const uint8_t*>(own.data()) >= frame->end());

  // Misaligned by one byte (ZeroMQ gives no alignment guarantee): decoded from an
  // aligned copy that the values keep alive.
  auto odd = std::make_shared<std::vector<uint8_t>>(frame->size() + 1);
  std::memcpy(odd->data() + 1, frame->data(), frame->size());
  Floats realigned;
  {
    auto r = decode(odd->data() + 1, frame->size(), {}, odd);
    ASSERT_TRUE(r.is_ok());
    realigned = r->get<Params>()->values;
  }
  frame.reset();
  odd.reset();
  EXPECT_EQ(realigned, v);
}

TEST(CodecTest, CustodyMessagesRoundTrip) {
  CheckpointShard c{120, 50, {1.0f, 2.0f}, {{"worker-1", 10, 1, 640, 3.5, 2, 7, 4}}, true};
  auto g = round_trip(c);
  EXPECT_EQ(g.step, 120u);
  EXPECT_EQ(g.range_begin, 50u);
  EXPECT_EQ(g.values, c.values);
  ASSERT_EQ(g.contributions.size(), 1u);
  const Contribution& k = g.contributions[0];
  EXPECT_EQ(k.worker, "worker-1");
  EXPECT_EQ(k.accepted, 10u);
  EXPECT_EQ(k.rejected, 1u);
  EXPECT_EQ(k.samples, 640u);
  EXPECT_DOUBLE_EQ(k.update_norm_sum, 3.5);
  EXPECT_EQ(k.staleness_max, 2u);
  EXPECT_EQ(k.staleness_sum, 7u);
  EXPECT_EQ(k.rank, 4u);
  EXPECT_TRUE(g.final);
  EXPECT_TRUE(g.optimizer_state.empty());
  // With the optimizer state: big enough to travel as a referenced segment of its own.
  c.optimizer_state.resize(2048);
  for (size_t i = 0; i < c.optimizer_state.size(); ++i) c.optimizer_state[i] = 0.001f * static_cast<float>(i) - 1.0f;
  c.optimizer_steps = 120;
  g = round_trip(c);
  EXPECT_EQ(g.optimizer_state, c.optimizer_state);
  EXPECT_EQ(g.optimizer_steps, 120u);
  EXPECT_EQ(g.values, c.values);
  auto released = round_trip(JobReleased{302, 604, 10, 20});
  EXPECT_EQ(released.applied_step, 302u);
  EXPECT_EQ(released.updates, 604u);
  EXPECT_EQ(released.range_begin, 10u);
  EXPECT_EQ(released.range_end, 20u);
  EXPECT_EQ(round_trip(ResumeJob{"alice"}).principal, "alice");
  auto x = round_trip(ExportRequest{"ckpt-1", "bob", "audit"});
  EXPECT_EQ(x.checkpoint, "ckpt-1");
  EXPECT_EQ(x.principal, "bob");
  EXPECT_EQ(x.purpose, "audit");
  auto y = round_trip(
      ExportReply{"ckpt-1", "root", {784, 10}, {0.5f}, "usage-3", "{\"custody_receipt\":1}", "{\"card_version\":1}",
                  "1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10"});
  EXPECT_EQ(y.checkpoint, "ckpt-1");
  EXPECT_EQ(y.root_hash, "root");
  EXPECT_EQ(y.layer_sizes, (std::vector<uint32_t>{784, 10}));
  EXPECT_EQ(y.values, std::vector<float>{0.5f});
  EXPECT_EQ(y.usage_id, "usage-3");
  EXPECT_EQ(y.receipt, "{\"custody_receipt\":1}");
  EXPECT_EQ(y.model_card, "{\"card_version\":1}");
  EXPECT_EQ(y.architecture, "1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10");
}

TEST(CodecTest, PrincipalsAndTokensRoundTrip) {
  auto a = round_trip(AddPrincipal{"erin", "consumer", "PUBKEY", true});
  EXPECT_EQ(a.name, "erin");
  EXPECT_EQ(a.role, "consumer");
  EXPECT_EQ(a.public_key, "PUBKEY");
  EXPECT_TRUE(a.rotate);
  EXPECT_FALSE(a.bearer_token);
  EXPECT_TRUE(round_trip(AddPrincipal{"erin", "consumer", "", false, true}).bearer_token);
  auto p = round_trip(PrincipalAdded{"erin", "consumer", "s3cret", "pub", "sec"});
  EXPECT_EQ(p.token, "s3cret");
  EXPECT_EQ(p.public_key, "pub");
  EXPECT_EQ(p.secret_key, "sec");
  EXPECT_EQ(round_trip(RevokePrincipal{"erin", "left"}).reason, "left");
  EXPECT_EQ(round_trip(PrincipalsReply{"[]"}).json, "[]");
  auto u = round_trip(UsageRequest{"m@1", 5, 9, 7});
  EXPECT_EQ(u.model, "m@1");
  EXPECT_EQ(u.since_ms, 5);
  EXPECT_EQ(u.until_ms, 9);
  EXPECT_EQ(u.limit, 7u);
  EXPECT_EQ(round_trip(UsageReply{"{}"}).json, "{}");
  round_trip(AuditHeadRequest{});
  EXPECT_EQ(round_trip(AuditHeadReply{"{\"heads\":[]}"}).json, "{\"heads\":[]}");
  Envelope e;
  e.token = "tok";
  e.body = Heartbeat{};
  EXPECT_EQ(decode(encode(e))->token, "tok");
}

TEST(CodecTest, ServingMessagesRoundTrip) {
  auto p = round_trip(Predict{"fashion@2", "carol", 2, 3, {1, 2, 3, 4, 5, 6}, "triage"});
  EXPECT_EQ(p.model, "fashion@2");
  EXPECT_EQ(p.principal, "carol");
  EXPECT_EQ(p.rows, 2u);
  EXPECT_EQ(p.features, 3u);
  EXPECT_EQ(p.inputs, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(p.purpose, "triage");
  auto r = round_trip(PredictReply{"ckpt-1", "fashion@2", "root", 2, {0.25f, 0.75f}, {"pred-a-0"}, "call-a", "{}"});
  EXPECT_EQ(r.checkpoint, "ckpt-1");
  EXPECT_EQ(r.model, "fashion@2");
  EXPECT_EQ(r.root_hash, "root");
  EXPECT_EQ(r.classes, 2u);
  EXPECT_EQ(r.probabilities, (std::vector<float>{0.25f, 0.75f}));
  EXPECT_EQ(r.prediction_ids, std::vector<std::string>{"pred-a-0"});
  EXPECT_EQ(r.call_id, "call-a");
  EXPECT_EQ(r.receipt, "{}");
}

// --- What the network may send instead -----------------------------------------------

Status decode_error(const std::vector<uint8_t>& bytes, DecodeLimits limits = {}) {
  auto r = decode(bytes, limits);
  EXPECT_FALSE(r.is_ok());
  return r.status();
}

// The bytes of a message built by hand with Cap'n Proto's builders, as a peer that does
// not use our encoder (or a newer schema) would send them.
std::vector<uint8_t> flat_bytes(capnp::MessageBuilder& b) {
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

std::vector<uint8_t> sample_bytes() {
  Envelope e;
  e.body = Push{"w", 1, std::vector<float>(64, 1.0f)};
  return encode(e).to_vector();
}

// Regression: a predict whose purpose held the byte 0xff was decoded, and the serving actor
// died writing it into its usage record (the JSON writer throws on text that is not UTF-8).
// The codec refuses such a message whatever text field holds it.
TEST(CodecTest, RefusesTextThatIsNotUtf8NamingTheByte) {
  Envelope e;
  Predict p;
  p.model = "served";
  p.principal = "carol";
  p.purpose = "res\xff" "earch";
  p.rows = 1;
  p.features = 1;
  p.inputs = {1.0f};
  e.body = p;
  Status s = decode_error(encode(e).to_vector());
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not UTF-8 (byte 0xff at offset 3)"), std::string::npos) << s.message();
  Envelope sender;
  sender.sender = "node-\xc0\xaf";
  sender.body = Heartbeat{};
  EXPECT_NE(decode_error(encode(sender).to_vector()).message().find("not UTF-8"), std::string::npos);
  p.purpose = "recherche m\xc3\xa9" "dicale";
  e.body = p;
  auto ok = decode(encode(e).to_vector());
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(std::get<Predict>(ok->body).purpose, "recherche m\xc3\xa9" "dicale");
}

TEST(CodecTest, RefusesEmptyAndPartialWordMessages) {
  EXPECT_NE(decode_error({}).message().find("empty"), std::string::npos);
  auto bytes = sample_bytes();
  bytes.pop_back();
  Status s = decode_error(bytes);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("8-byte"), std::string::npos);
}

TEST(CodecTest, RefusesTruncatedMessages) {
  auto bytes = sample_bytes();
  bytes.resize(bytes.size() / 2 / 8 * 8);
  Status s = decode_error(bytes);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("malformed"), std::string::npos) << s.message();
}

TEST(CodecTest, RefusesRandomBytesWithoutCrashing) {
  uint64_t x = 88172645463325252ull;
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> bytes(8 * (1 + trial % 40));
    for (auto& b : bytes) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    auto r = decode(bytes);
    if (r.is_ok()) continue;  // random bytes can form a valid (tiny) message
    EXPECT_FALSE(r.status().message().empty());
  }
}

TEST(CodecTest, RefusesOversizedMessagesBeforeParsing) {
  DecodeLimits small;
  small.max_bytes = 128;
  Status s = decode_error(sample_bytes(), small);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds the limit of 128 bytes"), std::string::npos) << s.message();
}

TEST(CodecTest, RefusesAnotherProtocolVersion) {
  Envelope e;
  e.version = kProtocolVersion + 1;
  e.body = Heartbeat{};
  Status s = decode_error(encode(e).to_vector());
  EXPECT_NE(s.message().find("protocol version"), std::string::npos);
}

// Regression: a register whose role was an undefined enumerant was taken as a parameter
// server.
TEST(CodecTest, RefusesAnUndefinedNodeRoleByName) {
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<custody::wire::Envelope>();
  root.setVersion(kProtocolVersion);
  root.getBody().initRegister().setRole(static_cast<custody::wire::NodeRole>(7));
  Status s = decode_error(flat_bytes(b));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("register.role is 7, which is no node role"), std::string::npos) << s.message();
}

TEST(CodecTest, RefusesABodyFromANewerProtocolByName) {
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<FutureEnvelope>();
  root.setVersion(kProtocolVersion);
  root.setRequestId(77);
  root.getBody().setSomethingNew("hello");
  const auto bytes = flat_bytes(b);
  Status s = decode_error(bytes);
  EXPECT_NE(s.message().find("unknown message body"), std::string::npos) << s.message();
  // The envelope was readable: the error reply can echo the request id.
  EXPECT_EQ(readable_request_id(bytes.data(), bytes.size()), std::optional<uint64_t>(77));
  const std::vector<uint8_t> garbage(16, 0xff);
  EXPECT_EQ(readable_request_id(garbage.data(), garbage.size()), std::nullopt);
}

TEST(CodecTest, RefusesTensorsThatAreNotWholeFloats) {
  capnp::MallocMessageBuilder b;
  auto root = b.initRoot<FutureEnvelope>();
  root.setVersion(kProtocolVersion);
  auto params = root.getBody().initParams();
  const kj::byte six[6] = {1, 2, 3, 4, 5, 6};
  params.setValues(capnp::Data::Reader(six, 6));
  Status s = decode_error(flat_bytes(b));
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("params.values"), std::string::npos) << s.message();
}

TEST(CodecTest, DecodesFromUnalignedBuffers) {
  auto bytes = sample_bytes();
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  auto r = decode(shifted.data() + 1, bytes.size());
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->get<Push>()->gradient.size(), 64u);
}

TEST(CodecTest, RefusesTrailingGarbage) {
  auto bytes = sample_bytes();
  bytes.insert(bytes.end(), 16, 0xab);
  Status s = decode_error(bytes);
  EXPECT_NE(s.message().find("trailing"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace custody::msg
