// The byte transport between nodes: ZeroMQ ROUTER (servers) and DEALER (clients) sockets.
//
// This header hides ZeroMQ: zmq_transport.cc is the only file of the project that
// includes it. A Socket is NOT thread-safe: exactly one actor or thread owns each one
// (in Custody, a detached socket-bridge actor or a worker's trainer).
// A Waker lets other threads interrupt a Socket's wait (poll) without touching the
// socket itself: they queue their message elsewhere, then notify().
//
// Addresses are ZeroMQ endpoints: "tcp://127.0.0.1:5555"; bind() also takes port 0
// ("tcp://127.0.0.1:0") and picks a free port, which endpoint() then reports.
//
// Nodes in one process (a worker with a co-located parameter server) share one Context.
// A node that serves an address from inside the process says so with serve_in_process();
// connect() to that address then goes over ZeroMQ's inproc transport, which hands each
// message over by pointer: no kernel copies, no copies at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "protocols/bytes.h"

namespace custody::transport {

// CurveZMQ (ZeroMQ RFC 26: Curve25519 key agreement, then every frame encrypted and
// authenticated) keys, as ZeroMQ's Z85 text: 40 characters for 32 bytes.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};
// Whether this libzmq was built with CURVE (Debian's is, through libsodium).
bool curve_available();
// A fresh key pair from libsodium's secure random source.
Result<CurveKeyPair> make_curve_key_pair();
// The public key of a Z85 secret key; invalid_argument for anything that is not one.
Result<std::string> curve_public_key(const std::string& secret_key);
// Whether `key` is 40 characters of Z85 that decode to 32 bytes.
bool is_curve_key(const std::string& key);

// Decides, during a CurveZMQ handshake (ZeroMQ's ZAP, RFC 27), whether a client may talk
// to this process: given the client's public key (Z85) and its network address, the
// identity its session has from then on (Incoming::identity), or nullopt to refuse the
// connection before any message is read.
// Called on the context's authenticator thread; must be thread-safe.
using Authenticator = std::function<std::optional<std::string>(const std::string& public_key,
                                                               const std::string& address)>;

// One per process; create it before, and destroy it after, everything that uses sockets.
class Context {
 public:
  Context();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  void* raw();  // the zmq context, for zmq_transport.cc
  // Binds `socket` also to an in-process endpoint and makes connect(address) reach it
  // there from now on. `address` is what other processes connect to (the socket's
  // advertised endpoint). Thread-safe.
  Status serve_in_process(class Socket& socket, const std::string& address);
  // The in-process endpoint that serves `address`, or "" (thread-safe).
  std::string in_process_endpoint(const std::string& address) const;
  // Whether a ROUTER's peer is a socket of this process, connected in-process (its
  // messages are handed over by pointer, so it can wait for its reply the least).
  static bool is_in_process_peer(const std::string& peer);
  // Starts the ZAP handler that every socket bound with SocketOptions::curve_secret_key
  // asks about each connecting client: from now on such a socket accepts only clients
  // `decide` gives an identity, and each message it receives carries that identity
  // (Incoming::identity). Call once, before binding; stopped by the destructor.
  Status start_authenticator(Authenticator decide);

 private:
  friend class Socket;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Thread-safe (an eventfd): wakes one Socket::wait() from any thread.
class Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  void notify();
  void drain();  // called by the owner of the wait after waking
  int fd() const { return fd_; }

 private:
  int fd_;
};

// A received frame's bytes, left in ZeroMQ's own buffer: no copy is made on receipt (a
// parameter block is megabytes). Cheap to copy (shared); read-only.
class Frame {
 public:
  Frame() = default;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::vector<uint8_t> to_vector() const { return std::vector<uint8_t>(data_, data_ + size_); }
  // Keeps the bytes alive: decoded parameter blocks share them through it.
  const std::shared_ptr<void>& owner() const { return owner_; }

 private:
  friend class Socket;
  std::shared_ptr<void> owner_;  // the zmq message
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct Incoming {
  std::string peer;  // ROUTER: the sender's routing id; DEALER: empty
  // Who the CurveZMQ handshake proved the sender's session is: the authenticator's answer
  // for its key (Custody answers with the key's credential). Empty on sockets without CURVE.
  std::string identity;
  // The sender's network address ("10.77.0.5"), for logs of refusals; empty in-process.
  std::string address;
  Frame bytes;
  bool multipart = false;  // the sender split its message into several frames
};

struct SocketOptions {
  // Frames above this size make ZeroMQ drop the connection before any decoding; keep it
  // above the decoder's cap, so that merely oversized messages still get an error reply.
  // Default: 1 GiB.
  int64_t max_message_bytes = int64_t(1) << 30;
  // How long close() may still deliver queued messages. Default: 500 ms.
  int linger_ms = 500;
  // bind(): a CURVE server with this secret key (Z85). Clients must know its public key,
  // and the context's authenticator must accept theirs. Default: none (no CURVE).
  std::string curve_secret_key;
  // connect(): a CURVE client, with this key pair, of the server whose public key is
  // curve_server_key (all Z85). Default: none.
  std::string curve_server_key;
  CurveKeyPair curve_client;
};

class Socket {
 public:
  // A ROUTER socket bound to address.
  static Result<std::unique_ptr<Socket>> bind(Context& ctx, const std::string& address,
                                              const SocketOptions& options = {});
  // A DEALER socket connected to address (connecting never blocks: a peer that is not
  // there yet only shows as replies that do not come). An address served in this process
  // (Context::serve_in_process) is reached in-process; endpoint() then says inproc://.
  static Result<std::unique_ptr<Socket>> connect(Context& ctx, const std::string& address,
                                                 const SocketOptions& options = {});
  ~Socket();
  // Closes the socket now (also done by the destructor). The owner calls it when it stops,
  // because the Context cannot be destroyed while any of its sockets is open.
  void close();

  // The bound or connected endpoint, with a port picked for ":0" resolved.
  const std::string& endpoint() const { return endpoint_; }

  // Waits until a message is ready, the waker fires, or the timeout passes.
  // Returns true when a message is ready to receive.
  Result<bool> wait(std::chrono::milliseconds timeout, Waker* waker = nullptr);
  // The next message if one is ready, without waiting.
  Result<std::optional<Incoming>> try_receive();
  // Waits up to timeout for one message.
  Result<std::optional<Incoming>> receive(std::chrono::milliseconds timeout);
  // peer: the routing id for a ROUTER socket; ignored by DEALER sockets.
  // A message to a ROUTER peer that has gone is dropped (ZeroMQ's behaviour), not an error.
  // A DEALER with no live connection returns unavailable at once instead of waiting.
  Status send(const std::string& peer, const uint8_t* data, size_t size);
  Status send(const std::string& peer, const std::vector<uint8_t>& bytes) {
    return send(peer, bytes.data(), bytes.size());
  }
  // Hands the bytes to ZeroMQ without copying them (they are freed once sent).
  Status send(const std::string& peer, Bytes&& bytes);

 private:
  friend class Context;
  Socket(void* socket, bool router, std::string endpoint);
  int send_flags() const;
  Status send_error() const;
  // A CURVE client whose handshake was refused has no connection left, and libzmq does
  // not try again: a new socket makes a new handshake (the key may be valid again).
  bool reopen_after_refusal();
  void* socket_;
  bool router_;
  std::string endpoint_;
  Context* context_ = nullptr;  // connect(): what reopen_after_refusal needs
  std::string address_;
  SocketOptions options_;
};

}  // namespace custody::transport
