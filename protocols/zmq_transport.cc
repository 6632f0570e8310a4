// The one ZeroMQ implementation of transport.h (and the only file including zmq).
#include <malloc.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "core/log.h"
#include "protocols/transport.h"

namespace custody::transport {

struct Context::Impl {
  zmq::context_t ctx{1};
  mutable std::mutex mutex;
  std::map<std::string, std::string> in_process;  // advertised address -> inproc endpoint
  int next_endpoint = 0;
  std::thread authenticator;  // the ZAP handler, if started
  std::atomic<bool> stop_authenticator{false};
  std::atomic<bool> authenticating{false};
};
namespace {
// Parameter blocks are megabytes, and several are alive per message (the encoded bytes,
// ZeroMQ's copy, the decoded values). With glibc's defaults such blocks are mapped and
// unmapped, or the heap's top trimmed, at nearly every message, and each fresh page
// faults: measured by bench/transport.cc, that cost the push/pull path ~80% of its
// throughput. Keeping blocks below 64 MiB on the heap and not trimming below 256 MiB lets
// the allocator reuse the same pages. Once per process, before the first message.
void keep_large_blocks_on_the_heap() {
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    return true;
  }();
  (void)done;
}
}  // namespace

Context::Context() : impl_(std::make_unique<Impl>()) { keep_large_blocks_on_the_heap(); }
Context::~Context() {
  // The handler's socket must be closed before the context can end.
  impl_->stop_authenticator = true;
  if (impl_->authenticator.joinable()) impl_->authenticator.join();
}
void* Context::raw() { return impl_->ctx.handle(); }

Status Context::serve_in_process(Socket& socket, const std::string& address) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const std::string endpoint = "inproc://custody-" + std::to_string(impl_->next_endpoint++);
  if (zmq_bind(socket.socket_, endpoint.c_str()) != 0) {
    return Status(ErrorCode::kInternal, "cannot listen on " + endpoint + ": " + zmq_strerror(zmq_errno()));
  }
  impl_->in_process[address] = endpoint;
  return Status::ok();
}

// ZeroMQ's own routing ids start with a zero byte; ours for in-process peers with this.
constexpr char kInProcessPeer[] = "inproc-peer-";

bool Context::is_in_process_peer(const std::string& peer) { return peer.rfind(kInProcessPeer, 0) == 0; }

std::string Context::in_process_endpoint(const std::string& address) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->in_process.find(address);
  return it == impl_->in_process.end() ? "" : it->second;
}

bool curve_available() { return zmq_has("curve") != 0; }

Result<CurveKeyPair> make_curve_key_pair() {
  char pub[41], secret[41];
  if (zmq_curve_keypair(pub, secret) != 0) {
    return unavailable(std::string("cannot make a CurveZMQ key pair: ") + zmq_strerror(zmq_errno()) +
                       " (is libzmq built with CURVE?)");
  }
  return CurveKeyPair{pub, secret};
}

bool is_curve_key(const std::string& key) {
  // zmq_z85_decode stops at a NUL: a key with one inside would be read short.
  if (key.size() != 40 || key.find('\0') != std::string::npos) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

Result<std::string> curve_public_key(const std::string& secret_key) {
  if (!is_curve_key(secret_key)) {
    return invalid_argument("a CurveZMQ secret key is 40 characters of Z85 text");
  }
  char pub[41];
  if (zmq_curve_public(pub, secret_key.c_str()) != 0) {
    return invalid_argument(std::string("not a CurveZMQ secret key: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(pub);
}

namespace {

// ZAP (ZeroMQ RFC 27): libzmq asks the REP socket at this endpoint about every handshake
// of a socket that has a ZAP domain. Without a handler there, CURVE would accept any key.
constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr char kZapDomain[] = "custody";

std::vector<std::string> receive_parts(void* socket) {
  std::vector<std::string> parts;
  for (;;) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, socket, 0) < 0) {
      zmq_msg_close(&part);
      return {};
    }
    parts.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
    const bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more) return parts;
  }
}

void serve_zap(void* socket, const std::atomic<bool>& stop, const Authenticator& decide) {
  while (!stop) {
    zmq_pollitem_t item{socket, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 100) <= 0) continue;
    std::vector<std::string> request = receive_parts(socket);
    // version, request id, domain, address, routing id, mechanism, credentials...
    // A REP socket must answer every request or it stops taking new ones: a malformed one
    // (libzmq never sends one) is refused, not skipped.
    const bool malformed = request.size() < 6;
    request.resize(std::max<size_t>(request.size(), 7));
    std::string status = "400", text = "refused", user;
    if (malformed) {
      text = "malformed ZAP request";
    } else if (request[0] != "1.0") {
      text = "unsupported ZAP version";
    } else if (request[5] != "CURVE" || request.size() < 7 || request[6].size() != 32) {
      text = "only CURVE clients are accepted";
      log(LogLevel::kWarn, "authenticator",
          "refused a connection from " + request[3] + ": it did not use CURVE (" + request[5] + ")");
    } else {
      char pub[41];
      zmq_z85_encode(pub, reinterpret_cast<const uint8_t*>(request[6].data()), 32);
      auto identity = decide(pub, request[3]);
      if (identity) {
        status = "200";
        text = "OK";
        user = *identity;
      } else {
        text = "unknown or revoked key";
        log(LogLevel::kWarn, "authenticator",
            "refused a connection from " + request[3] + ": key " + pub + " belongs to no principal (or was revoked)");
      }
    }
    const std::string reply[] = {"1.0", request[1], status, text, user, ""};
    for (size_t i = 0; i < 6; ++i) zmq_send(socket, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
  }
  int linger = 0;
  zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof(linger));
  zmq_close(socket);
}

}  // namespace

Status Context::start_authenticator(Authenticator decide) {
  if (!curve_available()) return unavailable("this libzmq has no CURVE support (libzmq built without libsodium)");
  if (impl_->authenticating) return failed_precondition("the authenticator is already running");
  void* socket = zmq_socket(raw(), ZMQ_REP);
  if (!socket) return unavailable(std::string("cannot create the ZAP socket: ") + zmq_strerror(zmq_errno()));
  if (zmq_bind(socket, kZapEndpoint) != 0) {
    Status s = unavailable(std::string("cannot bind the ZAP handler: ") + zmq_strerror(zmq_errno()));
    zmq_close(socket);
    return s;
  }
  impl_->authenticating = true;
  impl_->authenticator = std::thread(serve_zap, socket, std::cref(impl_->stop_authenticator), std::move(decide));
  return Status::ok();
}

Waker::Waker() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
Waker::~Waker() {
  if (fd_ >= 0) close(fd_);
}
void Waker::notify() {
  uint64_t one = 1;
  // A full counter (2^64-2 pending wake-ups) cannot happen; EAGAIN would be harmless.
  [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof(one));
}
void Waker::drain() {
  uint64_t value;
  [[maybe_unused]] ssize_t n = read(fd_, &value, sizeof(value));
}

namespace {

Status zmq_error(const std::string& what) {
  return unavailable(what + ": " + zmq_strerror(zmq_errno()));
}

Result<void*> open_socket(Context& ctx, int type, const SocketOptions& o) {
  void* s = zmq_socket(ctx.raw(), type);
  if (!s) return zmq_error("cannot create a ZeroMQ socket");
  zmq_setsockopt(s, ZMQ_LINGER, &o.linger_ms, sizeof(o.linger_ms));
  zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &o.max_message_bytes, sizeof(o.max_message_bytes));
  int hwm = 10000;
  zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
  zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
  return s;
}

std::string last_endpoint(void* s) {
  char buf[256];
  size_t len = sizeof(buf);
  if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, buf, &len) != 0) return "";
  return std::string(buf, strnlen(buf, len));
}

// ZeroMQ reports a bound wildcard port as the OS chose it; "tcp://127.0.0.1:0" is our
// spelling of ZeroMQ's "tcp://127.0.0.1:*".
std::string zmq_address(const std::string& address) {
  if (address.size() > 2 && address.compare(address.size() - 2, 2, ":0") == 0) {
    return address.substr(0, address.size() - 1) + "*";
  }
  return address;
}

}  // namespace

Socket::Socket(void* socket, bool router, std::string endpoint)
    : socket_(socket), router_(router), endpoint_(std::move(endpoint)) {}

Socket::~Socket() { close(); }

void Socket::close() {
  if (socket_) zmq_close(socket_);
  socket_ = nullptr;
}

Result<std::unique_ptr<Socket>> Socket::bind(Context& ctx, const std::string& address,
                                             const SocketOptions& options) {
  const bool curve = !options.curve_secret_key.empty();
  if (curve && !ctx.impl_->authenticating) {
    // libzmq's CURVE server without a ZAP handler accepts every client key.
    return failed_precondition("a CURVE server needs the context's authenticator (start_authenticator) first");
  }
  if (curve && !is_curve_key(options.curve_secret_key)) {
    return invalid_argument("the server's CurveZMQ secret key is not 40 characters of Z85 text");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto s, open_socket(ctx, ZMQ_ROUTER, options));
  if (curve) {
    const int on = 1;
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &on, sizeof(on)) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, options.curve_secret_key.c_str(), 40) != 0 ||
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, kZapDomain, strlen(kZapDomain)) != 0) {
      Status st = zmq_error("cannot make the socket a CURVE server");
      zmq_close(s);
      return st;
    }
  }
  if (zmq_bind(s, zmq_address(address).c_str()) != 0) {
    Status st = zmq_error("cannot listen on '" + address + "' (is the port in use, or the address wrong?)");
    zmq_close(s);
    return st;
  }
  return std::unique_ptr<Socket>(new Socket(s, true, last_endpoint(s)));
}

Result<std::unique_ptr<Socket>> Socket::connect(Context& ctx, const std::string& address,
                                                const SocketOptions& options) {
  CUSTODY_ASSIGN_OR_RETURN(auto s, open_socket(ctx, ZMQ_DEALER, options));
  if (!options.curve_server_key.empty()) {
    if (!is_curve_key(options.curve_server_key) || !is_curve_key(options.curve_client.public_key) ||
        !is_curve_key(options.curve_client.secret_key)) {
      zmq_close(s);
      return invalid_argument("CurveZMQ keys are 40 characters of Z85 text (the server's public key, and this "
                              "client's public and secret keys)");
    }
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, options.curve_server_key.c_str(), 40) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, options.curve_client.public_key.c_str(), 40) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, options.curve_client.secret_key.c_str(), 40) != 0) {
      Status st = zmq_error("cannot make the socket a CURVE client");
      zmq_close(s);
      return st;
    }
  }
  const std::string local = ctx.in_process_endpoint(address);
  if (!local.empty()) {
    static std::atomic<uint64_t> next_peer{0};
    const std::string id = kInProcessPeer + std::to_string(next_peer++);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, id.data(), id.size());
    if (zmq_connect(s, local.c_str()) != 0) {
      Status st = zmq_error("cannot connect to " + local + " (serving " + address + " in this process)");
      zmq_close(s);
      return st;
    }
    return std::unique_ptr<Socket>(new Socket(s, false, local));
  }
  if (zmq_connect(s, address.c_str()) != 0) {
    Status st = invalid_argument("cannot connect to '" + address + "': " + zmq_strerror(zmq_errno()) +
                                 " (expected an address like tcp://127.0.0.1:5555)");
    zmq_close(s);
    return st;
  }
  std::unique_ptr<Socket> socket(new Socket(s, false, address));
  socket->context_ = &ctx;
  socket->address_ = address;
  socket->options_ = options;
  return socket;
}

bool Socket::reopen_after_refusal() {
  if (router_ || !context_ || options_.curve_server_key.empty()) return false;
  auto fresh = connect(*context_, address_, options_);
  if (!fresh.is_ok()) return false;
  close();
  socket_ = fresh.value()->socket_;
  fresh.value()->socket_ = nullptr;
  return true;
}

Result<bool> Socket::wait(std::chrono::milliseconds timeout, Waker* waker) {
  zmq_pollitem_t items[2] = {{socket_, 0, ZMQ_POLLIN, 0}, {nullptr, waker ? waker->fd() : -1, ZMQ_POLLIN, 0}};
  int rc = zmq_poll(items, waker ? 2 : 1, static_cast<long>(timeout.count()));
  if (rc < 0) {
    if (zmq_errno() == EINTR) return false;
    return zmq_error("polling a socket failed");
  }
  if (waker && (items[1].revents & ZMQ_POLLIN)) waker->drain();
  return (items[0].revents & ZMQ_POLLIN) != 0;
}

Result<std::optional<Incoming>> Socket::try_receive() {
  Incoming in;
  int part = 0;
  for (;;) {
    // Heap-held, so a payload frame can keep it (and its bytes) alive without a copy.
    std::shared_ptr<zmq_msg_t> owned(new zmq_msg_t, [](zmq_msg_t* m) {
      zmq_msg_close(m);
      delete m;
    });
    zmq_msg_t& msg = *owned;
    zmq_msg_init(&msg);
    int rc = zmq_msg_recv(&msg, socket_, ZMQ_DONTWAIT);
    if (rc < 0) {
      if (zmq_errno() == EAGAIN && part == 0) return std::optional<Incoming>();
      if (zmq_errno() == EINTR && part == 0) return std::optional<Incoming>();
      return zmq_error("receiving a message failed");
    }
    const auto* data = static_cast<const uint8_t*>(zmq_msg_data(&msg));
    const size_t size = zmq_msg_size(&msg);
    if (router_ && part == 0) {
      in.peer.assign(reinterpret_cast<const char*>(data), size);
    } else if (in.bytes.empty() && !in.multipart && (router_ ? part == 1 : part == 0)) {
      in.bytes.data_ = data;
      in.bytes.size_ = size;
      in.bytes.owner_ = owned;
      // Set by the ZAP handler's answer on CURVE sockets; absent (null) on others.
      if (const char* user = zmq_msg_gets(&msg, "User-Id")) in.identity = user;
      if (const char* from = zmq_msg_gets(&msg, "Peer-Address")) in.address = from;
    } else {
      in.multipart = true;  // keep the first payload frame; the caller reports the rest
    }
    const bool more = zmq_msg_more(&msg);
    ++part;
    if (!more) break;
  }
  return std::optional<Incoming>(std::move(in));
}

Result<std::optional<Incoming>> Socket::receive(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    CUSTODY_ASSIGN_OR_RETURN(auto ready, wait(left));
    if (ready) {
      auto in = try_receive();
      if (!in.is_ok() || in.value()) return in;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::optional<Incoming>();
  }
}

// A DEALER whose connection is gone (a CURVE handshake the server refused tears it down)
// would block in send until a reconnect succeeds, which may be never: it must not hang the
// node, which then cannot even stop. So DEALER sends do not wait; a ROUTER drops messages
// to peers that have gone instead of blocking anyway.
int Socket::send_flags() const { return router_ ? 0 : ZMQ_DONTWAIT; }

Status Socket::send_error() const {
  if (zmq_errno() == EAGAIN) {
    return unavailable("no connection to " + endpoint_ + " to send on (the peer is unreachable, or it refused this "
                       "connection's handshake)");
  }
  return zmq_error("sending a message failed");
}

Status Socket::send(const std::string& peer, const uint8_t* data, size_t size) {
  if (router_) {
    if (zmq_send(socket_, peer.data(), peer.size(), ZMQ_SNDMORE) < 0) {
      return zmq_error("sending to peer failed");
    }
  }
  if (zmq_send(socket_, data, size, send_flags()) < 0) {
    if (zmq_errno() != EAGAIN || !reopen_after_refusal()) return send_error();
    if (zmq_send(socket_, data, size, send_flags()) < 0) return send_error();
  }
  return Status::ok();
}

Status Socket::send(const std::string& peer, Bytes&& bytes) {
  if (bytes.size() < 4096) return send(peer, bytes.data(), bytes.size());  // small: a copy is cheaper
  if (router_ && zmq_send(socket_, peer.data(), peer.size(), ZMQ_SNDMORE) < 0) {
    return zmq_error("sending to peer failed");
  }
  const size_t size = bytes.size();
  uint8_t* owned = bytes.release();
  zmq_msg_t msg;
  zmq_msg_init_data(&msg, owned, size, [](void* data, void*) { delete[] static_cast<uint8_t*>(data); }, nullptr);
  int rc = zmq_msg_send(&msg, socket_, send_flags());
  // A failed send leaves the message (and its bytes) with us: it can go again.
  if (rc < 0 && zmq_errno() == EAGAIN && reopen_after_refusal()) rc = zmq_msg_send(&msg, socket_, send_flags());
  if (rc < 0) {
    Status s = send_error();
    zmq_msg_close(&msg);  // frees the bytes
    return s;
  }
  return Status::ok();
}

}  // namespace custody::transport
