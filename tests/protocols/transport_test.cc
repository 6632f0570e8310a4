#include "protocols/transport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
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

// CurveZMQ: a client whose key the authenticator knows gets through, and every message it
// sends carries the principal the authenticator named; an unknown key, a client that
// does not know the server's key, and a plain (non-CURVE) client get no message through,
// and the authenticator saw the refused key.
TEST(TransportTest, CurveServerAcceptsOnlyKeysItsAuthenticatorNames) {
  ASSERT_TRUE(curve_available());
  auto server_keys = make_curve_key_pair().value();
  auto alice = make_curve_key_pair().value();
  auto mallory = make_curve_key_pair().value();
  EXPECT_EQ(curve_public_key(alice.secret_key).value(), alice.public_key);
  EXPECT_TRUE(is_curve_key(alice.public_key));
  EXPECT_FALSE(is_curve_key("not a key"));
  EXPECT_FALSE(curve_public_key("short").is_ok());

  Context ctx;
  SocketOptions server_options;
  server_options.curve_secret_key = server_keys.secret_key;
  // Without the authenticator, libzmq would let every key in: refused.
  auto unguarded = Socket::bind(ctx, "tcp://127.0.0.1:0", server_options);
  EXPECT_EQ(unguarded.status().code(), ErrorCode::kFailedPrecondition);

  std::mutex mutex;
  std::vector<std::string> asked;
  ASSERT_TRUE(ctx.start_authenticator([&](const std::string& key, const std::string& address) {
                    std::lock_guard<std::mutex> lock(mutex);
                    asked.push_back(key);
                    EXPECT_EQ(address, "127.0.0.1");
                    if (key == alice.public_key) return std::optional<std::string>("alice");
                    return std::optional<std::string>();
                  }).is_ok());
  auto server = Socket::bind(ctx, "tcp://127.0.0.1:0", server_options);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  const std::string endpoint = server.value()->endpoint();

  Context other;  // the clients: other processes
  auto connect_as = [&](const CurveKeyPair& keys, const std::string& server_key) {
    SocketOptions o;
    o.curve_server_key = server_key;
    o.curve_client = keys;
    return Socket::connect(other, endpoint, o).value();
  };
  auto good = connect_as(alice, server_keys.public_key);
  ASSERT_TRUE(good->send("", std::vector<uint8_t>{1}).is_ok());
  auto in = server.value()->receive(5s);
  ASSERT_TRUE(in.is_ok() && in.value().has_value());
  EXPECT_EQ(in.value()->identity, "alice");
  EXPECT_EQ(in.value()->bytes.to_vector(), (std::vector<uint8_t>{1}));
  ASSERT_TRUE(server.value()->send(in.value()->peer, std::vector<uint8_t>{2}).is_ok());
  auto reply = good->receive(5s);
  ASSERT_TRUE(reply.is_ok() && reply.value().has_value());
  EXPECT_EQ(reply.value()->bytes.to_vector(), (std::vector<uint8_t>{2}));

  auto unknown = connect_as(mallory, server_keys.public_key);
  ASSERT_TRUE(unknown->send("", std::vector<uint8_t>{3}).is_ok());
  auto wrong_server = connect_as(alice, mallory.public_key);  // does not know the server's key
  ASSERT_TRUE(wrong_server->send("", std::vector<uint8_t>{4}).is_ok());
  auto plain = Socket::connect(other, endpoint).value();
  ASSERT_TRUE(plain->send("", std::vector<uint8_t>{5}).is_ok());
  auto nothing = server.value()->receive(1500ms);
  ASSERT_TRUE(nothing.is_ok());
  EXPECT_FALSE(nothing.value().has_value()) << "a message got through from an unauthenticated client";
  {
    std::lock_guard<std::mutex> lock(mutex);
    EXPECT_NE(std::find(asked.begin(), asked.end(), mallory.public_key), asked.end());
  }
  for (auto* s : {good.get(), unknown.get(), wrong_server.get(), plain.get()}) s->close();
}

}  // namespace
}  // namespace custody::transport
