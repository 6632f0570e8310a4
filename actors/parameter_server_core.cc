#include "actors/parameter_server_core.h"

#include <pthread.h>

#include <vector>

#include "core/log.h"
#include "protocols/transport.h"

namespace custody::actors {
namespace {

const std::string kNode = "parameter-server";
// A doorbell peer's name: a zero byte first, so that no ZeroMQ routing id is one.
const std::string kDoorbellPrefix = std::string("\0shm:", 5);
constexpr auto kDoorbellPoll = std::chrono::milliseconds(100);

// A doorbell whose attempt the state machine let go (the job done, cancelled or released,
// the server registered again) keeps answering, with the state machine's refusal, until
// its worker has been quiet this long: a worker mid-step when its attempt was dropped
// sends one more request and learns at once that the attempt is over, instead of waiting
// out its step deadline. Short, because the region stays mapped until the thread ends.
constexpr auto kOrphanLinger = std::chrono::seconds(2);

// Longer than the prefix: libzmq's own routing ids are 5 bytes, a zero and a counter, and
// one of them could equal the prefix itself.
bool is_doorbell_peer(const std::string& peer) {
  return peer.size() > kDoorbellPrefix.size() && peer.compare(0, kDoorbellPrefix.size(), kDoorbellPrefix) == 0;
}

// Data-plane requests refused for want of the rank's key (permission denied) are an
// attack or a misconfiguration: the operator learns where they came from. The first 20 are
// logged, then one in 1000, so a flood cannot fill the disk. Called under the core's mutex.
void log_refusals(const std::string& node, const Inbound& in, const Outbox& out) {
  static uint64_t refused = 0;
  for (const auto& o : out) {
    const auto* error = o.envelope.get<msg::Error>();
    if (!error || error->code != ErrorCode::kPermissionDenied) continue;
    if (++refused > 20 && refused % 1000 != 0) continue;
    log(LogLevel::kWarn, node.empty() ? kNode : node,
        "refused a '" + std::string(msg::body_name(in.envelope->body)) + "' for " + in.envelope->job_id + " from " +
            (in.address.empty() ? "this process" : in.address) + " (" + std::to_string(refused) +
            " refused so far): " + error->message);
  }
}

// The region a pull or push names, with its rank; empty name: none.
std::pair<std::string, uint32_t> named_region(const msg::Envelope& e) {
  if (const auto* p = e.get<msg::Pull>()) return {p->region, p->rank};
  if (const auto* p = e.get<msg::Push>()) return {p->region, p->rank};
  return {"", 0};
}

}  // namespace

void ParameterServerCore::handle(const Inbound& in, const BridgeReply& to_socket) {
  std::lock_guard<std::mutex> lock(mu);
  Outbox out = logic->handle_data(in.peer, *in.envelope);
  if (!is_doorbell_peer(in.peer)) start_doorbell(*in.envelope);
  dispatch(in, std::move(out), to_socket);
}

void ParameterServerCore::dispatch(const Inbound& in, Outbox out, const BridgeReply& to_socket) {
  log_refusals(node_id, in, out);
  remote_peers_first(out, transport::Context::is_in_process_peer);
  for (auto& o : out) {
    if (o.to_coordinator) {
      caf::anon_send(server_, Outbound{"", std::make_shared<const msg::Envelope>(std::move(o.envelope))});
    } else if (is_doorbell_peer(o.peer)) {
      auto it = doorbells_.find(o.peer);
      if (it == doorbells_.end() || it->second->done) continue;  // its attempt is gone: no one waits
      Bytes bytes = msg::encode(o.envelope);
      Status posted = it->second->region->post_reply(bytes.data(), bytes.size());
      if (!posted.is_ok()) {
        // Never expected (answers through a region carry no block); the worker must still
        // learn that its request failed, or it would wait for its deadline.
        log(LogLevel::kError, node_id.empty() ? kNode : node_id, posted.message());
        Bytes error = msg::encode(msg::make_error(*in.envelope, node_id, internal_error(posted.message())));
        (void)it->second->region->post_reply(error.data(), error.size());
      }
    } else {
      to_socket(o.peer, o.envelope);
    }
  }
}

void ParameterServerCore::start_doorbell(const msg::Envelope& request) {
  auto [name, rank] = named_region(request);
  if (name.empty() || stopping_) return;
  const std::string peer = kDoorbellPrefix + name;
  auto it = doorbells_.find(peer);
  if (it != doorbells_.end() && !it->second->done) return;
  // Only a region the state machine took (it answered through it) gets a doorbell.
  std::shared_ptr<shm::SharedRegion> region = logic->region(request.job_id, rank);
  if (!region || region->name() != name) return;
  // Threads whose regions have gone are joined here (done: they hold no lock any more).
  for (auto d = doorbells_.begin(); d != doorbells_.end();) {
    if (d->second->done) {
      d->second->thread.join();
      d = doorbells_.erase(d);
    } else {
      ++d;
    }
  }
  auto d = std::make_unique<Doorbell>();
  d->region = std::move(region);
  d->job_id = request.job_id;
  d->rank = rank;
  Doorbell* raw = d.get();
  d->thread = std::thread([this, raw, peer] { ring(raw, peer); });
  doorbells_.emplace(peer, std::move(d));
}

void ParameterServerCore::ring(Doorbell* d, std::string peer) {
  pthread_setname_np(pthread_self(), "ps-doorbell");  // as bench/threads.sh and perf show it
  if (!pin_.empty()) {
    // The server's compute runs here too: the list's first CPU, as its bridge's thread.
    if (Status s = pin_this_thread(pin_.cpu_for(0)); !s.is_ok()) log(LogLevel::kWarn, kNode, s.message());
  }
  // Answers to socket peers (a step that this rank's push completes answers the others
  // too) go through the bridge, which owns the socket.
  const BridgeReply to_socket = [this](const std::string& to, const msg::Envelope& e) { peers_.send(to, e); };
  uint32_t seen = 0;  // a new region's request number starts at 0
  bool orphaned = false;  // the attempt no longer holds the region: requests are refused
  auto last_request = std::chrono::steady_clock::now();
  while (!stopping_) {
    auto message = d->region->wait_request(seen, kDoorbellPoll);
    std::lock_guard<std::mutex> lock(mu);
    if (!orphaned && logic->region(d->job_id, d->rank) != d->region) {
      orphaned = true;
      last_request = std::chrono::steady_clock::now();  // the linger counts from the drop
    }
    if (!message) {
      if (orphaned && std::chrono::steady_clock::now() - last_request > kOrphanLinger) break;
      continue;
    }
    last_request = std::chrono::steady_clock::now();
    seen = message->seq;
    // Decoded from this thread's copy: the worker's process cannot change it underneath.
    auto decoded = msg::decode(message->bytes.data(), message->bytes.size(), limits_);
    if (!decoded.is_ok()) {
      log(LogLevel::kWarn, node_id.empty() ? kNode : node_id,
          "refused a message through shared memory: " + decoded.status().message());
      msg::Envelope e;
      e.sender = node_id;
      e.request_id = msg::readable_request_id(message->bytes.data(), message->bytes.size(), limits_).value_or(0);
      e.body = msg::Error{decoded.status().code(), decoded.status().message()};
      Bytes bytes = msg::encode(e);
      (void)d->region->post_reply(bytes.data(), bytes.size());
      continue;
    }
    Inbound in{Channel::kPeers, peer, std::make_shared<const msg::Envelope>(std::move(decoded).value()), "",
               "shared memory"};
    dispatch(in, logic->handle_data(peer, *in.envelope), to_socket);
  }
  // Lets go of the mapping now (the attempt's end unmaps the region), not when the next
  // doorbell starts; under the lock, so dispatch sees a done doorbell and skips it.
  std::lock_guard<std::mutex> lock(mu);
  d->done = true;  // from now on start_doorbell may join this thread
  d->region.reset();
}

void ParameterServerCore::stop() {
  stopping_ = true;
  std::map<std::string, std::unique_ptr<Doorbell>> doorbells;
  {
    std::lock_guard<std::mutex> lock(mu);
    doorbells.swap(doorbells_);
  }
  for (auto& [peer, d] : doorbells) d->thread.join();
  // The actor holds this core: drop the handles back to it (no cycle outlives the system).
  std::lock_guard<std::mutex> lock(mu);
  peers_ = SocketPort();
  server_ = caf::actor();
}

}  // namespace custody::actors
