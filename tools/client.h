// The CLI's connection to the coordinator: one DEALER socket, one request at a time, each
// reply awaited up to a timeout. A plain ZeroMQ client through protocols/transport.h; no
// actors. Errors come back classified for the exit-code table (tools/exit_codes.h): an
// address that cannot be used is bad input (2), no usable reply is no_answer (3), an
// error reply is refused (4), with the coordinator's message.
// Thread-safety: none; one thread uses a Client.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>

#include "protocols/messages.h"
#include "protocols/transport.h"
#include "tools/exit_codes.h"

namespace custody::cli {

class Client {
 public:
  std::string address = "tcp://127.0.0.1:5555";
  std::chrono::milliseconds timeout{10000};
  std::string token;  // sent with every request (a coordinator with --auth needs it)
  // A coordinator with security curve: its public key and this caller's key pair (Z85).
  // Empty: a plain connection.
  std::string coordinator_key;
  transport::CurveKeyPair keys;

  // The reply to one request; connects on first use.
  Result<msg::Envelope> call(const std::string& job_id, msg::Body body);

  // The reply's body, which must be a `Reply`.
  template <class Reply>
  Result<Reply> ask(const std::string& job_id, msg::Body body) {
    const std::string request = msg::body_name(body);
    CUSTODY_ASSIGN_OR_RETURN(msg::Envelope reply, call(job_id, std::move(body)));
    if (auto* r = std::get_if<Reply>(&reply.body)) return std::move(*r);
    return no_answer(internal_error("the coordinator answered a " + request + " request with a " +
                                    msg::body_name(reply.body) + "; is it another version of Custody?"));
  }

 private:
  transport::Context context_;
  std::unique_ptr<transport::Socket> socket_;
  uint64_t next_request_ = 1;
};

}  // namespace custody::cli
