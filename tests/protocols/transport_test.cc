#include "protocols/transport.h"

#include <gtest/gtest.h>

#include <thread>

namespace custody::transport {
namespace {

using namespace std::chrono_literals;

TEST(TransportTest, RouterAndDealerExchangeOverLoopbackTcpOnAFreePort) {
  Context ctx;
  auto server = Socket::bind(ctx, "tcp://127.0.0.1:0");
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  const std::string endpoint = server.value()->endpoint();
  EXPECT_EQ(endpoint.rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_NE(endpoint, "tcp://127.0.0.1:0");
  auto client = Socket::connect(ctx, endpoint);
  ASSERT_TRUE(client.is_ok());
  ASSERT_TRUE(client.value()->send("", std::vector<uint8_t>{1, 2, 3}).is_ok());
  auto in = server.value()->receive(5s);
  ASSERT_TRUE(in.is_ok());
  ASSERT_TRUE(in.value().has_value());
  EXPECT_EQ(in.value()->bytes.to_vector(), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_FALSE(in.value()->peer.empty());
  ASSERT_TRUE(server.value()->send(in.value()->peer, std::vector<uint8_t>{9}).is_ok());
  auto reply = client.value()->receive(5s);
  ASSERT_TRUE(reply.is_ok() && reply.value().has_value());
  EXPECT_EQ(reply.value()->bytes.to_vector(), (std::vector<uint8_t>{9}));
}

// A co-located node reaches a server of its own process in-process: by the address other
// processes use, and with the very bytes that were sent (handed over, not copied), both
// ways; a second context (another process) is not affected and still goes over TCP.
TEST(TransportTest, AnAddressServedInThisProcessIsReachedInProcessWithoutCopies) {
  Context ctx;
  auto server = Socket::bind(ctx, "tcp://127.0.0.1:0");
  ASSERT_TRUE(server.is_ok());
  const std::string address = server.value()->endpoint();
  ASSERT_TRUE(ctx.serve_in_process(*server.value(), address).is_ok());
  EXPECT_EQ(ctx.in_process_endpoint(address).rfind("inproc://", 0), 0u);
  EXPECT_EQ(ctx.in_process_endpoint("tcp://127.0.0.1:1"), "");

  auto client = Socket::connect(ctx, address);
  ASSERT_TRUE(client.is_ok());
  EXPECT_EQ(client.value()->endpoint().rfind("inproc://", 0), 0u);
  Bytes push(1 << 20);
  for (size_t i = 0; i < push.size(); ++i) push.data()[i] = static_cast<uint8_t>(i * 7);
  const uint8_t* sent = push.data();
  ASSERT_TRUE(client.value()->send("", std::move(push)).is_ok());
  auto in = server.value()->receive(5s);
  ASSERT_TRUE(in.is_ok() && in.value().has_value());
  EXPECT_EQ(in.value()->bytes.data(), sent) << "the frame was copied";
  EXPECT_TRUE(Context::is_in_process_peer(in.value()->peer));
  ASSERT_EQ(in.value()->bytes.size(), size_t(1) << 20);
  EXPECT_EQ(in.value()->bytes.data()[12345], static_cast<uint8_t>(12345 * 7));

  Bytes reply(64 << 10);
  const uint8_t* replied = reply.data();
  ASSERT_TRUE(server.value()->send(in.value()->peer, std::move(reply)).is_ok());
  auto back = client.value()->receive(5s);
  ASSERT_TRUE(back.is_ok() && back.value().has_value());
  EXPECT_EQ(back.value()->bytes.data(), replied);

  Context other;
  auto remote = Socket::connect(other, address);
  ASSERT_TRUE(remote.is_ok());
  EXPECT_EQ(remote.value()->endpoint(), address);
  ASSERT_TRUE(remote.value()->send("", std::vector<uint8_t>{4, 2}).is_ok());
  auto tcp_in = server.value()->receive(5s);
  ASSERT_TRUE(tcp_in.is_ok() && tcp_in.value().has_value());
  EXPECT_EQ(tcp_in.value()->bytes.to_vector(), (std::vector<uint8_t>{4, 2}));
  EXPECT_FALSE(Context::is_in_process_peer(tcp_in.value()->peer));
  remote.value()->close();
}

TEST(TransportTest, ReceiveReturnsNothingAfterItsTimeout) {
  Context ctx;
  auto server = Socket::bind(ctx, "tcp://127.0.0.1:0");
  ASSERT_TRUE(server.is_ok());
  auto in = server.value()->receive(20ms);
  ASSERT_TRUE(in.is_ok());
  EXPECT_FALSE(in.value().has_value());
}

TEST(TransportTest, WakerInterruptsAWaitFromAnotherThread) {
  Context ctx;
  auto server = Socket::bind(ctx, "tcp://127.0.0.1:0");
  ASSERT_TRUE(server.is_ok());
  Waker waker;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    waker.notify();
  });
  auto start = std::chrono::steady_clock::now();
  auto ready = server.value()->wait(30s, &waker);
  t.join();
  ASSERT_TRUE(ready.is_ok());
  EXPECT_FALSE(ready.value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s) << "the waker did not end the wait";
}

TEST(TransportTest, BindingABusyPortIsAClearError) {
  Context ctx;
  auto first = Socket::bind(ctx, "tcp://127.0.0.1:0");
  ASSERT_TRUE(first.is_ok());
  auto second = Socket::bind(ctx, first.value()->endpoint());
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.status().message().find(first.value()->endpoint()), std::string::npos);
}

TEST(TransportTest, ConnectingToAMalformedAddressIsAClearError) {
  Context ctx;
  auto s = Socket::connect(ctx, "127.0.0.1:5555");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("tcp://"), std::string::npos);
}

}  // namespace
}  // namespace custody::transport
