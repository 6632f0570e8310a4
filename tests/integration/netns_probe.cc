// netns_probe: a foreign host's raw client, for netns_test. It knows what an attacker on
// the network can learn or guess (an address, a job id, a rank, an attempt, a step) and
// sends one well-formed request with them, as any ZeroMQ program could, then prints what
// came back as one JSON line:
//
//   {"sent": "pull", "answered": true, "reply": "params", "version": 41, "values": 596}
//   {"sent": "register", "answered": true, "reply": "error", "code": 9, "message": "..."}
//   {"sent": "push", "answered": false, "reply": "", "why": "no reply within 5000 ms"}
//
//   netns_probe --to tcp://10.77.0.2:6000 --send pull --job JOB --attempt 0
//   netns_probe --to ... --send push --job JOB --attempt 0 --rank 1 --step 41 --length 596
//   netns_probe --to tcp://10.77.0.1:5555 --send register|status|predict [--token T]
//   netns_probe --to 10.77.0.2:9 --send canary --file BYTES   (one UDP datagram, in clear)
//
// --curve-server-key Z85 makes it a CurveZMQ client with a key pair of its own (known to
// nobody), the attacker of a secured cluster who knows the server's public key.
// Exit code 0 whatever the answer (the test judges it); 2 on bad arguments.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "protocols/codec.h"
#include "protocols/messages.h"

using namespace custody;

namespace {

int usage(const std::string& why) {
  std::cerr << "netns_probe: " << why
            << "\nusage: netns_probe --to ADDR --send pull|push|register|status|predict|canary [--job ID] "
               "[--attempt N]"
               " [--rank N] [--step N] [--length N] [--sender NAME] [--token T] [--timeout-ms N]"
               " [--curve-server-key Z85] [--file BYTES]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string to, send, job, sender = "intruder", token, server_key, file;
  uint64_t attempt = 0, rank = 0, step = 0, length = 0, timeout_ms = 5000;
  const std::map<std::string, std::string*> texts = {{"--to", &to},       {"--send", &send},
                                                     {"--job", &job},     {"--sender", &sender},
                                                     {"--token", &token}, {"--curve-server-key", &server_key},
                                                     {"--file", &file}};
  const std::map<std::string, uint64_t*> numbers = {{"--attempt", &attempt},
                                                    {"--rank", &rank},
                                                    {"--step", &step},
                                                    {"--length", &length},
                                                    {"--timeout-ms", &timeout_ms}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (auto t = texts.find(flag); t != texts.end()) {
      *t->second = value;
    } else if (auto n = numbers.find(flag); n != numbers.end()) {
      try {
        *n->second = std::stoull(value);
      } catch (const std::exception&) {
        return usage(flag + " needs a number, not '" + value + "'");
      }
    } else {
      return usage("unknown flag " + flag);
    }
  }
  if (to.empty() || send.empty()) return usage("--to and --send are required");

  msg::Envelope e;
  e.sender = sender;
  e.job_id = job;
  e.request_id = 7;
  e.attempt = static_cast<uint32_t>(attempt);
  e.token = token;
  if (send == "pull") {
    e.body = msg::Pull{sender};
  } else if (send == "push") {
    msg::Push p;
    p.worker = sender;
    p.step = step;
    p.rank = static_cast<uint32_t>(rank);
    p.samples = 16;
    p.base_version = step;
    p.gradient = std::vector<float>(length, 0.0f);  // a zero update: applied, it changes nothing
    e.body = std::move(p);
  } else if (send == "register") {
    msg::Register r;
    r.role = msg::NodeRole::kWorker;
    r.name = sender;
    r.host = "intruder";
    e.body = r;
  } else if (send == "status") {
    e.body = msg::StatusRequest{true};
  } else if (send == "predict") {
    msg::Predict p;
    p.model = job;  // a model name here
    p.principal = sender;
    p.rows = 1;
    p.features = static_cast<uint32_t>(length);
    p.inputs.assign(length, 1.0f);
    e.body = std::move(p);
  } else if (send != "canary") {
    return usage("unknown request '" + send + "'");
  }

  nlohmann::json out = {{"sent", send}, {"answered", false}, {"reply", ""}};
  if (send == "canary") {
    // Known bytes in clear, one UDP datagram to HOST:PORT: the capture's positive control
    // in a run where nothing of the cluster's may be found.
    const size_t colon = to.rfind(':');
    sockaddr_in where{};
    where.sin_family = AF_INET;
    if (colon == std::string::npos || inet_pton(AF_INET, to.substr(0, colon).c_str(), &where.sin_addr) != 1) {
      return usage("--send canary needs --to IPV4:PORT, not '" + to + "'");
    }
    where.sin_port = htons(static_cast<uint16_t>(std::stoi(to.substr(colon + 1))));
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) return usage("cannot read --file " + file);
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    const ssize_t n =
        sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&where), sizeof where);
    close(fd);
    out["bytes"] = n;
    std::cout << out.dump() << std::endl;
    return 0;
  }
  try {
    zmq::context_t ctx;
    zmq::socket_t socket(ctx, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    if (!server_key.empty()) {
      char pub[41], secret[41];
      zmq_curve_keypair(pub, secret);
      socket.set(zmq::sockopt::curve_serverkey, server_key);
      socket.set(zmq::sockopt::curve_publickey, std::string(pub));
      socket.set(zmq::sockopt::curve_secretkey, std::string(secret));
    }
    socket.connect(to);
    const auto bytes = msg::encode(e);
    socket.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(static_cast<int64_t>(timeout_ms)));
    zmq::message_t m;
    if (!(items[0].revents & ZMQ_POLLIN) || !socket.recv(m, zmq::recv_flags::none)) {
      out["why"] = "no reply within " + std::to_string(timeout_ms) + " ms";
    } else {
      auto reply = msg::decode(static_cast<const uint8_t*>(m.data()), m.size());
      out["answered"] = true;
      if (!reply.is_ok()) {
        out["reply"] = "undecodable";
        out["message"] = reply.status().message();
      } else {
        out["reply"] = msg::body_name(reply.value().body);
        out["sender"] = reply.value().sender;
        if (const auto* err = reply.value().get<msg::Error>()) {
          out["code"] = static_cast<int>(err->code);
          out["message"] = err->message;
        } else if (const auto* params = reply.value().get<msg::Params>()) {
          out["version"] = params->version;
          out["values"] = params->values.size();
        } else if (const auto* ack = reply.value().get<msg::RegisterAck>()) {
          out["node_id"] = ack->node_id;
        } else if (const auto* status = reply.value().get<msg::StatusReply>()) {
          out["jobs"] = status->jobs.size();
          out["nodes"] = status->nodes.size();
        } else if (const auto* predicted = reply.value().get<msg::PredictReply>()) {
          out["probabilities"] = predicted->probabilities.size();
        }
      }
    }
  } catch (const zmq::error_t& err) {
    out["why"] = std::string("ZeroMQ: ") + err.what();
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
