#include "tools/client.h"

#include "protocols/codec.h"

namespace custody::cli {

Result<msg::Envelope> Client::call(const std::string& job_id, msg::Body body) {
  if (!socket_) {
    transport::SocketOptions options;
    options.curve_server_key = coordinator_key;
    options.curve_client = keys;
    CUSTODY_ASSIGN_OR_RETURN(socket_, bad_input(transport::Socket::connect(context_, address, options)));
  }
  msg::Envelope e;
  e.sender = "cli";
  e.job_id = job_id;
  e.request_id = next_request_++;
  e.body = std::move(body);
  e.token = token;
  Status sent = socket_->send("", msg::encode(e));
  if (!sent.is_ok()) return no_answer(sent);
  using std::chrono::steady_clock;
  const auto deadline = steady_clock::now() + timeout;
  while (steady_clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    CUSTODY_ASSIGN_OR_RETURN(auto in, no_answer(socket_->receive(left)));
    if (!in) break;
    auto reply = msg::decode(in->bytes.data(), in->bytes.size());
    if (!reply.is_ok()) {
      return no_answer(
          data_loss("the coordinator sent a reply this client cannot read: " + reply.status().message()));
    }
    if (reply->request_id != e.request_id) continue;  // a reply to an earlier, timed-out call
    if (auto* err = reply->get<msg::Error>()) {
      // An error reply is a refusal even if its code says ok.
      return refused(
          Status(err->code == ErrorCode::kOk ? ErrorCode::kFailedPrecondition : err->code, err->message));
    }
    return reply;
  }
  // A CurveZMQ server that refuses the handshake (an unknown or revoked key, or a wrong
  // coordinator key) says nothing: the client only sees no reply.
  return deadline_exceeded("no reply from the coordinator at " + address + " within " +
                           std::to_string(timeout.count() / 1000.0).substr(0, 4) +
                           " s; is it running (custody-coordinator), and is --coordinator right?" +
                           (coordinator_key.empty() ? std::string()
                                                    : " With CurveZMQ, a refused key looks the same: check --key-file "
                                                      "and --coordinator-key, and that your key was not revoked."));
}

}  // namespace custody::cli
