// The coordinator's HTTP listener: the Open Inference Protocol (KServe V2) and the
// Flask-style `POST /predict` over HTTP or HTTPS, on a bounded pool of threads. It owns no
// serving logic: every call is handed to a ServingDispatch (the coordinator actor, then
// the serving actor: the same authentication, checks, metering and receipts as `custody
// predict`), and actors/inference_http.h turns JSON into calls and answers into JSON.
// The only file that includes cpp-httplib is http_listener.cc.
//
// Routes: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/{m}[/versions/{v}]
// (+ /ready), POST /v2/models/{m}[/versions/{v}]/infer, POST /predict, and GET /metrics
// when a metrics source is given. Limits (HttpOptions): body size (413 before the body is
// read), read timeout, idle keep-alive timeout, threads.
// Thread-safety: start() and stop() from one thread; the handlers run on the pool.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "actors/node_config.h"
#include "actors/serving_call.h"
#include "core/error.h"

namespace custody::actors {

class HttpListener {
 public:
  // `metrics`: the Prometheus text of GET /metrics; null: no such route.
  // `ready`: whether the server takes calls (GET /v2/health/ready).
  HttpListener(HttpOptions options, Security security, uint32_t max_rows, ServingDispatch dispatch,
               std::function<std::string()> metrics = nullptr);
  ~HttpListener();  // stops

  // Binds (TLS when options.tls_cert is set) and starts serving on a thread of its own.
  // Errors name the address or the certificate file.
  Status start();
  // Stops taking connections and waits for the calls in progress. Idempotent.
  void stop();
  // "HOST:PORT" as bound (after start).
  const std::string& address() const { return address_; }
  bool tls() const { return !options_.tls_cert.empty(); }

 private:
  struct Impl;
  HttpOptions options_;
  Security security_;
  uint32_t max_rows_;
  ServingDispatch dispatch_;
  std::function<std::string()> metrics_;
  std::string address_;
  std::unique_ptr<Impl> impl_;
};

// GET /metrics alone, for nodes that serve nothing else (`--metrics-listen` of parameter
// servers and workers, and of a coordinator without the HTTP listener): plain HTTP on a
// small pool; the text is what `render` returns at each scrape.
class MetricsListener {
 public:
  explicit MetricsListener(std::function<std::string()> render);
  ~MetricsListener();
  // Binds HOST:PORT (port 0: any free one) and serves on a thread of its own; writes
  // "HOST:PORT" to port_file when given.
  Status start(const std::string& listen, const std::string& port_file = "");
  void stop();
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  std::function<std::string()> render_;
  std::string address_;
  std::unique_ptr<Impl> impl_;
};

// A listener's options checked before it starts: HOST:PORT, both or neither TLS file,
// TLS required by security = "curve". Errors say what to set.
Status check_http_options(const HttpOptions& options, Security security);

}  // namespace custody::actors
