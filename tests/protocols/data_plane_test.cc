// The data plane's sealing (protocols/data_plane.h): blocks in chunks, on one thread or
// several, what a seal binds, the key schedule, and which endpoints are loopback.
#include "protocols/data_plane.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <set>

#include "protocols/codec.h"

namespace custody::data_plane {
namespace {

std::vector<float> block(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * 0.5f - 3.0f;
  return v;
}

// Sizes around the chunk size: empty, one float, under one chunk, exactly one, and three
// and a half.
const size_t kSizes[] = {0, 1, 1000, kChunkBytes / sizeof(float), 7 * kChunkBytes / 2 / sizeof(float)};

TEST(DataPlaneTest, ABlockOpensToItsValuesOnOneThreadOrSeveral) {
  const AeadKey key = AeadKey::random().value();
  ForkJoin parallel(3);
  for (size_t n : kSizes) {
    const std::vector<float> values = block(n);
    for (ForkJoin* sealing : {static_cast<ForkJoin*>(nullptr), &parallel}) {
      auto sealed = seal_floats(key, values.data(), n, "aad", sealing);
      ASSERT_TRUE(sealed.is_ok()) << sealed.status().to_string();
      EXPECT_EQ(sealed->size(), sealed_size(n * sizeof(float)));
      for (ForkJoin* opening : {static_cast<ForkJoin*>(nullptr), &parallel}) {
        std::vector<float> out(n, -1.0f);
        ASSERT_TRUE(open_floats(key, *sealed, n, "aad", out.data(), opening).is_ok()) << n;
        EXPECT_EQ(out, values) << n << " floats";
      }
    }
  }
  EXPECT_EQ(sealed_size(3 * kChunkBytes + 1), 3 * kChunkBytes + 1 + 4 * kAeadOverhead);
}

TEST(DataPlaneTest, ChunksCannotBeMovedDroppedOrOpenedForAnotherPurpose) {
  const AeadKey key = AeadKey::random().value();
  const size_t n = 3 * kChunkBytes / sizeof(float);  // three whole chunks
  const std::vector<float> values = block(n);
  const msg::SharedBytes sealed = seal_floats(key, values.data(), n, "push step 3").value();
  std::vector<float> out(n);
  const size_t chunk = kChunkBytes + kAeadOverhead;
  std::vector<uint8_t> swapped(sealed.data(), sealed.data() + sealed.size());
  std::swap_ranges(swapped.begin(), swapped.begin() + chunk, swapped.begin() + chunk);  // chunks 1, 0, 2
  EXPECT_EQ(open_floats(key, msg::SharedBytes::copy_of(swapped.data(), swapped.size()), n, "push step 3",
                        out.data())
                .code(),
            ErrorCode::kDataLoss);
  // Without its last chunk it is the size of no block of n values; as a block of fewer
  // values, its second chunk claims to be one of three.
  const msg::SharedBytes two = msg::SharedBytes::copy_of(sealed.data(), 2 * chunk);
  EXPECT_EQ(open_floats(key, two, n, "push step 3", out.data()).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(open_floats(key, two, 2 * kChunkBytes / sizeof(float), "push step 3", out.data()).code(),
            ErrorCode::kDataLoss);
  EXPECT_EQ(open_floats(key, sealed, n, "push step 4", out.data()).code(), ErrorCode::kDataLoss);
  EXPECT_EQ(open_floats(AeadKey::random().value(), sealed, n, "push step 3", out.data()).code(),
            ErrorCode::kDataLoss);
  EXPECT_TRUE(open_floats(key, sealed, n, "push step 3", out.data()).is_ok());
}

// A worker seals its push straight into the message it sends (msg::encode_in_place): what
// the server decodes opens to the gradient, and the envelope's other fields are intact.
TEST(DataPlaneTest, ABlockSealedInPlaceInAMessageOpensFromTheDecodedMessage) {
  const AeadKey key = AeadKey::random().value();
  ForkJoin parallel(1);
  for (size_t n : {size_t(5), size_t(3 * kChunkBytes / sizeof(float) + 3)}) {
    const std::vector<float> values = block(n);
    msg::Envelope e;
    e.sender = "worker-1";
    e.job_id = "job-1";
    e.request_id = 4;
    e.attempt = 2;
    e.body = msg::Push{"worker-1", 9, {}, 64, 8, 1};
    auto bytes = msg::encode_in_place(e, sealed_size(n * sizeof(float)), [&](uint8_t* room) {
      return seal_floats_into(key, values.data(), n, "aad", room, &parallel);
    });
    ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
    auto decoded = msg::decode(bytes.value());
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    const auto* push = decoded->get<msg::Push>();
    ASSERT_NE(push, nullptr);
    EXPECT_EQ(decoded->attempt, 2u);
    EXPECT_EQ(push->step, 9u);
    EXPECT_EQ(push->rank, 1u);
    EXPECT_TRUE(push->gradient.empty());
    std::vector<float> out(n);
    ASSERT_TRUE(open_floats(key, push->sealed_gradient, n, "aad", out.data()).is_ok()) << n;
    EXPECT_EQ(out, values);
  }
  msg::Envelope status;
  status.body = msg::StatusRequest{};
  auto refused = msg::encode_in_place(status, 28, [](uint8_t*) { return Status::ok(); });
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
  msg::Envelope failing;
  failing.body = msg::Params{};
  auto failed = msg::encode_in_place(failing, 28, [](uint8_t*) { return unavailable("no randomness"); });
  EXPECT_EQ(failed.status().code(), ErrorCode::kUnavailable) << "the writer's error, and no message";
}

TEST(DataPlaneTest, EachRankAndEachServerRangeHasAKeyOfItsOwn) {
  const AeadKey attempt = AeadKey::random().value();
  std::set<std::string> seen;
  for (uint32_t rank = 0; rank < 3; ++rank) {
    const AeadKey r = rank_key(attempt, rank).value();
    seen.insert(r.fingerprint());
    seen.insert(server_key(r, 0, 10).value().fingerprint());
    seen.insert(server_key(r, 10, 20).value().fingerprint());
  }
  seen.insert(replies_key(attempt).value().fingerprint());
  seen.insert(attempt.fingerprint());
  EXPECT_EQ(seen.size(), 3u * 3 + 2) << "no two keys alike";
  EXPECT_EQ(rank_key(attempt, 1)->fingerprint(), rank_key(attempt, 1)->fingerprint()) << "derived, not drawn";
  // What a seal binds differs field by field.
  const std::set<std::string> aads = {
      push_aad("job-1", 0, 0, 5, 0, 10, 64, 5),   push_aad("job-1", 1, 0, 5, 0, 10, 64, 5),
      push_aad("job-1", 0, 1, 5, 0, 10, 64, 5),   push_aad("job-1", 0, 0, 6, 0, 10, 64, 5),
      push_aad("job-1", 0, 0, 5, 0, 11, 64, 5),   push_aad("job-1", 0, 0, 5, 0, 10, 65, 5),
      push_aad("job-1", 0, 0, 5, 0, 10, 64, 6),   push_aad("job-2", 0, 0, 5, 0, 10, 64, 5),
      params_aad("job-1", 0, 0, 10, 6, 5),        pull_aad("job-1", 0, 0, 0, 10, 5),
      pull_params_aad("job-1", 0, 0, 10, 6, 0, 5)};
  EXPECT_EQ(aads.size(), 11u);
}

TEST(DataPlaneTest, OnlyLoopbackIpcAndInprocEndpointsAreThisHostsAlone) {
  for (const char* local : {"tcp://127.0.0.1:5555", "tcp://127.1.2.3:1", "tcp://localhost:5555",
                            "tcp://[::1]:5555", "ipc:///tmp/ps.sock", "inproc://ps-1"}) {
    EXPECT_TRUE(is_loopback_endpoint(local)) << local;
  }
  for (const char* reachable : {"tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.5:5555",
                                "tcp://[::]:5555", "tcp://127.0.0.1.evil.example:5555", "tcp://host-a:5555",
                                "tcp://1270.0.0.1:1", "udp://127.0.0.1:5555", ""}) {
    EXPECT_FALSE(is_loopback_endpoint(reachable)) << reachable;
  }
}

TEST(ForkJoinTest, RunsEveryTaskOnceInEveryCall) {
  ForkJoin parallel(3);
  for (int call = 0; call < 2000; ++call) {
    const size_t n = static_cast<size_t>(call % 7);
    std::vector<std::atomic<int>> ran(n);
    parallel.run(n, [&](size_t i) { ran[i].fetch_add(1); });
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(ran[i].load(), 1) << "call " << call << " task " << i;
  }
}

}  // namespace
}  // namespace custody::data_plane
