// Every message body, with every field set to a value other than its default, through
// encode and decode: a field that encode forgets is caught on the wire (Cap'n Proto's
// dynamic reader finds it at its default), and one that decode forgets is caught when the
// decoded value is encoded again (the bytes differ). Encode and decode are mirrors written
// by hand; this test is what keeps them mirrors when a field is added.
#include <capnp/dynamic.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <set>

#include "protocols/codec.h"
#include "protocols/custody.capnp.h"

namespace custody::msg {
namespace {

// Every body kind, each field non-default (enums too: not their first enumerant on the wire).
std::vector<Body> every_body() {
  JobStatus job{"job-1", "n", JobState::kCancelled, "m", "s", 2, 3, 4, 5, 0.5, 0.25, 0.125, 9.5, 11, 12, 13,
                {"w"}, {"p"}, "d", "bsp", {0.5}, "ckpt-1", {"worker-2"}, 7, true, "sealed: why"};
  NodeStatus node{"worker-1", NodeRole::kWorker, "tcp://a:1", true, true, 17, "h", 42, true};
  const AeadKey key = AeadKey::from_bytes(std::string(kAeadKeyBytes, 'k')).value();
  AssignTask task{"spec", 1, ShardId{"hash", 2, 3, 4, 5}, 6, 7, 8, {ServerRange{"ps-1", "tcp://b:2", 9, 10, true}}, 11, 12,
                  key, key, RecordsDigest{"a1", "b2"}, RecordsDigest{"c3", "d4"}, 13, {3, 4}};
  AssignKeyRange range{"spec", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, {0.5f}, {0.25f}, 11, {key}, key, {"worker-1"}, 0.125};
  Push push{"worker-1", 2, Floats{0.5f}, 3, 4, 5, SharedBytes::copy_of(reinterpret_cast<const uint8_t*>("sealed"), 6)};
  Params params{1, 2, Floats{0.5f}, SharedBytes::copy_of(reinterpret_cast<const uint8_t*>("sealed"), 6), true};
  push.region = "/custody-shm-1-region";
  return {
      Error{ErrorCode::kDataLoss, "bad", 2, true},
      Register{NodeRole::kWorker, "tcp://a:1", "host", 42, "worker-9", "boot/net:[1]", "5e55"},
      RegisterAck{"worker-9", 250},
      Heartbeat{true, true},
      HeartbeatAck{true},  // the wire default is false
      SubmitJob{"[job]", "f.toml", "alice", "an audit rerun"},
      JobAccepted{"job-1", "queued"},
      StatusRequest{true},
      StatusReply{{job}, {node}, "/store"},
      CancelJob{"enough", "alice"},
      range,
      KeyRangeReady{1, 2},
      task,
      Progress{1, 2, 3, 0.5, 4, 5},
      EpochEval{1, 2, 3, 0.5, 4},
      TaskDone{1, 2, 3},
      StopJob{"why"},
      Pull{"worker-1", 1, std::string(28, 's'), "/custody-shm-1-region"},
      push,
      params,
      CheckpointShard{1, 2, {0.5f}, {Contribution{"worker-1", 1, 2, 3, 0.5, 4, 5, 6, "fingerprint", 8}}, true, {0.25f}, 7},
      ResumeJob{"alice"},
      ExportRequest{"ckpt-1", "bob", "audit"},
      ExportReply{"ckpt-1", "root", {4, 2}, {0.5f}, "use-1", "{}", "{}", "1x2x2 flatten dense:2"},
      Predict{"m@1", "carol", 1, 1, {0.5f}, "triage"},
      PredictReply{"ckpt-1", "m@1", "root", 1, {0.5f}, {"pred-1"}, "call-1", "{}"},
      AddPrincipal{"erin", "consumer", "public", true, true},
      PrincipalAdded{"erin", "consumer", "token", "public", "secret"},
      UsageRequest{"m", 1, 2, 7},
      UsageReply{"{}"},
      AuditHeadRequest{},
      AuditHeadReply{"{}"},
      JobReleased{1, 2, 3, 4},
      PrincipalsRequest{},
      PrincipalsReply{"[]"},
      RevokePrincipal{"erin", "left the team"},
      StoreBackup{"/backups", 5},
      StoreBackupReply{"/backups", 1, 2, 3, 4, "/store", {"0123456789abcdef"}, 6},
      StoreQuery{"trace", "fashion-mlp@1"},
      StoreQueryReply{"{}"},
      SetPrivacyBudget{"dataset:ab", 3, 1e-5, "the hospital's agreement", "dana"},
      PrivacyBudgetReply{"{}"},
      FetchRecords{std::string(64, 'a'), 7, 4096},
      RecordsChunk{std::string(64, 'a'), 7, 9, {1, 2}},
      ShardObtained{1, ShardSource::kFetched, "the coordinator at tcp://c:5555", 22880, 12},
      LiabilityRequest{LiabilityRequest::Action::kAllow, "root", "why", "dataset:d4", {3, 5}, "m@2",
                       "revocation:0123456789abcdef", "litigation-hold"},
      LiabilityReply{"{}"},
      Attribute{"pred-1-0", "carol", 1, 1, {0.5f}, 7, 3, "m@1", "dispute", 256, true},
      AttributionReply{"{}", "use-1", "{}"},
      ScoreRecords{"spec", "d4", 1, 2, RecordsDigest{"a1", "b2"}, 3, {784, 10}, "tanh", {ScoringCheckpoint{{0.5f}, 0.25f}},
                   true, {0.5f}, 7, 9, "1x28x28 conv2d:32:3 maxpool:2 flatten dense:10"},
      RecordScores{1, 2, {ScoredRecord{3, 0.5f}}, {ScoredRecord{4, -0.5f}}, 5, 6, "cache"},
  };
}

// The first field of a wire struct (recursively) that holds its default: what encode forgot.
std::string first_default_field(capnp::DynamicStruct::Reader s, const std::string& path) {
  for (auto field : s.getSchema().getFields()) {
    const std::string name = path + field.getProto().getName().cStr();
    if (!s.has(field, capnp::HasMode::NON_DEFAULT)) return name;
    capnp::DynamicValue::Reader v = s.get(field);
    if (v.getType() == capnp::DynamicValue::STRUCT) {
      const std::string inner = first_default_field(v.as<capnp::DynamicStruct>(), name + ".");
      if (!inner.empty()) return inner;
    } else if (v.getType() == capnp::DynamicValue::LIST) {
      for (auto element : v.as<capnp::DynamicList>()) {
        if (element.getType() != capnp::DynamicValue::STRUCT) break;
        const std::string inner = first_default_field(element.as<capnp::DynamicStruct>(), name + "[].");
        if (!inner.empty()) return inner;
      }
    }
  }
  return "";
}

TEST(CodecExhaustiveTest, EveryFieldOfEveryBodySurvivesEncodeAndDecode) {
  std::set<size_t> kinds;
  for (const Body& body : every_body()) {
    kinds.insert(body.index());
    Envelope e;
    e.sender = "worker-7";
    e.job_id = "job-1";
    e.request_id = 99;
    e.token = "t";
    e.attempt = 3;
    e.body = body;
    const auto bytes = encode(e);
    const std::string name = body_name(body);
    // On the wire: every field of the body was written.
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()),
                                          bytes.size() / sizeof(capnp::word));
    capnp::FlatArrayMessageReader reader(words);
    auto root = capnp::toDynamic(reader.getRoot<wire::Envelope>());
    auto body_group = root.get("body").as<capnp::DynamicStruct>();
    KJ_IF_MAYBE(which, body_group.which()) {
      EXPECT_EQ(std::string(which->getProto().getName().cStr()), name) << "encoded as another body";
    } else {
      FAIL() << name << " encoded no body";
    }
    capnp::DynamicValue::Reader value = body_group.get(name);
    if (value.getType() == capnp::DynamicValue::STRUCT) {
      EXPECT_EQ(first_default_field(value.as<capnp::DynamicStruct>(), name + "."), "")
          << "encode left this field at its default";
    }
    // Back: decoding keeps every field (encoding the decoded value gives the same bytes).
    auto decoded = decode(bytes);
    ASSERT_TRUE(decoded.is_ok()) << name << ": " << decoded.status().to_string();
    EXPECT_EQ(body_name(decoded->body), name);
    const auto again = encode(decoded.value());
    EXPECT_EQ(std::vector<uint8_t>(again.begin(), again.end()), std::vector<uint8_t>(bytes.begin(), bytes.end()))
        << name << ": decode lost a field (re-encoding differs)";
  }
  EXPECT_EQ(kinds.size(), std::variant_size_v<Body>) << "a body kind is missing from every_body()";
}

// A records request's length is bounded: a worker cannot make the coordinator read (and
// hold) more than one chunk's worth for it at a time.
TEST(CodecExhaustiveTest, ARecordsRequestOfNoBytesOrMoreThanAChunkIsRefused) {
  for (uint32_t length : {0u, kMaxRecordsChunk + 1}) {
    Envelope e;
    e.body = FetchRecords{std::string(64, 'a'), 0, length};
    auto decoded = decode(encode(e));
    ASSERT_FALSE(decoded.is_ok());
    EXPECT_EQ(decoded.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("fetchRecords.length"), std::string::npos) << decoded.status().message();
  }
  Envelope e;
  e.body = ShardObtained{0, ShardSource::kLocal, "x", 0, 0};
  auto bytes = encode(e);
  EXPECT_TRUE(decode(bytes).is_ok());
}

}  // namespace
}  // namespace custody::msg
