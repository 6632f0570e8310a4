#include "actors/http_listener.h"

#include <httplib.h>

#include <atomic>
#include <cctype>
#include <thread>

#include "actors/inference_http.h"
#include "core/files.h"
#include "core/log.h"

namespace custody::actors {
namespace {

constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(http::error_body(message), kJson);
  if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
}

// The token of "Authorization: Bearer TOKEN" (the scheme's case does not matter); empty
// when there is none.
std::string bearer_token(const httplib::Request& req) {
  const std::string h = req.get_header_value("Authorization");
  constexpr size_t kScheme = 7;  // "Bearer "
  if (h.size() <= kScheme) return "";
  std::string scheme = h.substr(0, kScheme);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer ") return "";
  size_t begin = kScheme;
  while (begin < h.size() && h[begin] == ' ') ++begin;
  size_t end = h.size();
  while (end > begin && std::isspace(static_cast<unsigned char>(h[end - 1]))) --end;
  return h.substr(begin, end - begin);
}

// "/v2/models/{m}[/versions/{v}]..." -> the serving path's model reference NAME[@V].
std::string model_ref(const httplib::Request& req) {
  std::string ref = req.matches[1];
  if (req.matches.size() > 2 && req.matches[2].matched) ref += "@" + std::string(req.matches[2]);
  return ref;
}

Result<std::pair<std::string, int>> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return invalid_argument("the HTTP listen address '" + address +
                            "' is not HOST:PORT (e.g. 127.0.0.1:8080)");
  }
  const std::string port = address.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return invalid_argument("the HTTP listen address '" + address + "' has no port 0-65535");
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, std::stoi(port));
}

}  // namespace

Status check_http_options(const HttpOptions& o, Security security) {
  if (o.listen.empty()) return Status::ok();
  CUSTODY_RETURN_IF_ERROR(split_address(o.listen).status());
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return invalid_argument(
        "HTTPS needs both a certificate (--http-tls-cert) and its private key (--http-tls-key)");
  }
  if (security == Security::kCurve && o.tls_cert.empty()) {
    return invalid_argument(
        "security = \"curve\" keeps every credential off the network in clear, so its HTTP "
        "listener speaks HTTPS only: give --http-tls-cert and --http-tls-key");
  }
  if (o.threads < 1 || o.threads > 1024) return invalid_argument("HTTP threads must be 1 to 1024");
  if (o.max_body_bytes < 1024) return invalid_argument("the HTTP body limit must be at least 1024 bytes");
  return Status::ok();
}

struct HttpListener::Impl {
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<bool> serving{false};
};

HttpListener::HttpListener(HttpOptions options, Security security, uint32_t max_rows,
                           ServingDispatch dispatch, std::function<std::string()> metrics)
    : options_(std::move(options)),
      security_(security),
      max_rows_(max_rows),
      dispatch_(std::move(dispatch)),
      metrics_(std::move(metrics)),
      impl_(std::make_unique<Impl>()) {}

HttpListener::~HttpListener() { stop(); }

Status HttpListener::start() {
  CUSTODY_RETURN_IF_ERROR(check_http_options(options_, security_));
  CUSTODY_ASSIGN_OR_RETURN(auto host_port, split_address(options_.listen));
  if (tls()) {
    auto server = std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(), options_.tls_key.c_str());
    if (!server->is_valid()) {
      return invalid_argument("cannot serve HTTPS with the certificate '" + options_.tls_cert +
                              "' and key '" + options_.tls_key +
                              "': unreadable, not PEM, or not a matching pair");
    }
    impl_->server = std::move(server);
  } else {
    impl_->server = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *impl_->server;
  const int threads = options_.threads;
  // A bounded pool: a flood of connections waits in the queue instead of adding threads.
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options_.max_body_bytes);
  // A response's headers and body leave in separate writes: with Nagle's algorithm the
  // body waited for the client's delayed ACK, 40 ms a call (bench/http_serving.sh: p50
  // 88 ms at batch 1 before, see README).
  s.set_tcp_nodelay(true);
  s.set_read_timeout(options_.read_timeout);
  s.set_write_timeout(options_.read_timeout);
  s.set_keep_alive_timeout(
      std::max<time_t>(1, static_cast<time_t>((options_.idle_timeout.count() + 999) / 1000)));

  const size_t max_body = options_.max_body_bytes;
  // Refused before a byte of the body is read: a declared size over the limit costs
  // nothing to turn away. (Chunked bodies are cut off at the limit as they arrive.)
  s.set_pre_routing_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("Content-Length")) {
      const std::string declared = req.get_header_value("Content-Length");
      const bool too_big = declared.size() > 18 ||
                           declared.find_first_not_of("0123456789") != std::string::npos ||
                           std::stoull(declared) > max_body;
      if (too_big) {
        send_error(res, 413,
                   "the body (Content-Length " + declared + ") is over this server's limit of " +
                       std::to_string(max_body) + " bytes; send fewer rows per call");
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_error_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, 413, "the body is over this server's limit of " + std::to_string(max_body) + " bytes");
    } else if (res.status == 404) {
      send_error(res, 404,
                 "no route " + req.method + " " + req.path +
                     "; this server answers /v2/..., POST /predict and GET /metrics");
    } else {
      send_error(res, res.status,
                 "the request could not be served (HTTP " + std::to_string(res.status) + ")");
    }
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log(LogLevel::kError, "http", "a handler failed: " + what);
    send_error(res, 500, "internal error: " + what);
  });

  auto envelope = [](const httplib::Request& req, msg::Predict predict) {
    msg::Envelope e;
    e.sender = "http";
    e.token = bearer_token(req);
    if (predict.principal.empty()) predict.principal = "http";
    e.body = std::move(predict);
    return e;
  };
  auto fail = [](httplib::Response& res, const ServingAnswer& a) {
    send_error(res, http::status_of(a.status, a.authenticated), a.status.message());
  };
  auto predict = [this, envelope, fail](const httplib::Request& req, httplib::Response& res,
                                        Result<http::InferRequest> parsed, bool oip) {
    if (!parsed.is_ok()) return send_error(res, 400, parsed.status().message());
    const std::string name = parsed->predict.model.substr(0, parsed->predict.model.find('@'));
    ServingAnswer a = dispatch_(ServingCallKind::kPredict, envelope(req, parsed->predict));
    if (!a.status.is_ok()) return fail(res, a);
    res.set_content(
        oip ? http::infer_response(name, *parsed, a.prediction) : http::instances_response(a.prediction),
        kJson);
  };
  auto describe = [this, envelope, fail](const httplib::Request& req, httplib::Response& res,
                                         bool ready_only) {
    msg::Predict p;
    p.model = model_ref(req);
    ServingAnswer a = dispatch_(ServingCallKind::kDescribe, envelope(req, p));
    if (!a.status.is_ok()) return fail(res, a);
    if (ready_only) {
      res.set_content(http::model_ready(a.model), kJson);
    } else {
      res.set_content(http::model_metadata(a.model), kJson);
    }
  };

  Impl* impl = impl_.get();
  s.Get("/v2/health/live",
        [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"live":true})", kJson); });
  s.Get("/v2/health/ready", [impl](const httplib::Request&, httplib::Response& res) {
    if (!impl->serving) return send_error(res, 503, "the coordinator is starting or stopping");
    res.set_content(R"({"ready":true})", kJson);
  });
  s.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(http::server_metadata(), kJson);
  });
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  s.Get(model,
        [describe](const httplib::Request& req, httplib::Response& res) { describe(req, res, false); });
  s.Get(model + "/ready",
        [describe](const httplib::Request& req, httplib::Response& res) { describe(req, res, true); });
  s.Post(model + "/infer", [this, predict](const httplib::Request& req, httplib::Response& res) {
    predict(req, res, http::parse_infer(req.body, model_ref(req), max_rows_), true);
  });
  s.Post("/predict", [this, predict](const httplib::Request& req, httplib::Response& res) {
    std::string model = req.has_param("model") ? req.get_param_value("model") : options_.default_model;
    predict(req, res, http::parse_instances(req.body, model, max_rows_), false);
  });
  if (metrics_) {
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  int port = host_port.second;
  if (port == 0) {
    port = s.bind_to_any_port(host_port.first);
    if (port < 0) return unavailable("cannot listen for HTTP on " + host_port.first + " (any port)");
  } else if (!s.bind_to_port(host_port.first, port)) {
    return unavailable("cannot listen for HTTP on " + options_.listen +
                       " (in use, or not this host's address)");
  }
  address_ = host_port.first + ":" + std::to_string(port);
  impl_->serving = true;
  impl_->thread = std::thread([&s] { s.listen_after_bind(); });
  return Status::ok();
}

void HttpListener::stop() {
  if (!impl_ || !impl_->server) return;
  impl_->serving = false;
  impl_->server->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->server.reset();
}

struct MetricsListener::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsListener::MetricsListener(std::function<std::string()> render)
    : render_(std::move(render)), impl_(std::make_unique<Impl>()) {}

MetricsListener::~MetricsListener() { stop(); }

Status MetricsListener::start(const std::string& listen, const std::string& port_file) {
  CUSTODY_ASSIGN_OR_RETURN(auto host_port, split_address(listen));
  httplib::Server& s = impl_->server;
  s.new_task_queue = [] { return new httplib::ThreadPool(2); };
  s.set_read_timeout(std::chrono::seconds(5));
  s.set_payload_max_length(4096);
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty())
      send_error(res, res.status, "no route " + req.method + " " + req.path + "; GET /metrics");
  });
  int port = host_port.second;
  if (port == 0) {
    port = s.bind_to_any_port(host_port.first);
    if (port < 0) return unavailable("cannot listen for metrics on " + host_port.first + " (any port)");
  } else if (!s.bind_to_port(host_port.first, port)) {
    return unavailable("cannot listen for metrics on " + listen + " (in use, or not this host's address)");
  }
  address_ = host_port.first + ":" + std::to_string(port);
  impl_->thread = std::thread([&s] { s.listen_after_bind(); });
  if (!port_file.empty()) CUSTODY_RETURN_IF_ERROR(write_file_atomically(port_file, address_ + "\n", 0644));
  return Status::ok();
}

void MetricsListener::stop() {
  if (!impl_) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace custody::actors
