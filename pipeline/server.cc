// `hwyquant serve`: HTTP routes of LocalAI's quantization API, authentication, limits, SSE, CLI.
#include "pipeline/server.h"

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline/jobs.h"
#include "web/assets.h"

namespace hwyquant::serve {
namespace {

constexpr const char* kJobsPath = "/api/quantization/jobs";
// [^/]+ keeps ids to one path segment; IsValidJobId then rejects everything but our UUIDs.
constexpr const char* kJobPattern = R"(/api/quantization/jobs/([^/]+))";
constexpr auto kSseKeepAlive = std::chrono::seconds(10);

void SendJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

void SendError(httplib::Response& res, int status, const std::string& message) {
  SendJson(res, status, {{"error", message}});
}

// Constant-time comparison: the API key must not leak through response timing.
bool SecretEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  }
  return diff == 0 && !b.empty();
}

std::string PresentedKey(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  const std::string bearer = "Bearer ";
  if (auth.size() > bearer.size() && auth.compare(0, bearer.size(), bearer) == 0) {
    return auth.substr(bearer.size());
  }
  return req.get_header_value("x-api-key");
}

// Wraps a route: turns ApiError and other exceptions into JSON errors.
template <typename F>
httplib::Server::Handler Guard(F f) {
  return [f](const httplib::Request& req, httplib::Response& res) {
    try {
      f(req, res);
    } catch (const ApiError& e) {
      SendError(res, e.http_status(), e.what());
    } catch (const std::exception& e) {
      SendError(res, 500, e.what());
    }
  };
}

std::string JobIdFrom(const httplib::Request& req) {
  std::string id = req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
  if (!IsValidJobId(id)) throw ApiError(400, "invalid job id");
  return id;
}

nlohmann::json ParseBody(const httplib::Request& req, bool empty_is_object) {
  if (req.body.empty() && empty_is_object) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "request body must be a JSON object");
  return j;
}

struct ServerState {
  std::unique_ptr<JobManager> manager;
  std::atomic<bool> stopping{false};
};

void AddRoutes(httplib::Server& svr, ServerState& state) {
  JobManager& jobs = *state.manager;

  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"status", "ok"}});
  });

  svr.Post(kJobsPath, Guard([&](const httplib::Request& req, httplib::Response& res) {
             JobRecord job = jobs.Create(ParseBody(req, false));
             SendJson(
                 res, 201,
                 {{"id", job.id}, {"status", job.status}, {"message", "Quantization job started"}});
           }));

  svr.Get(kJobsPath, Guard([&](const httplib::Request&, httplib::Response& res) {
            nlohmann::json list = nlohmann::json::array();
            for (const JobRecord& job : jobs.List()) list.push_back(job.ToApiJson());
            SendJson(res, 200, list);
          }));

  svr.Get(kJobPattern, Guard([&](const httplib::Request& req, httplib::Response& res) {
            std::string id = JobIdFrom(req);
            auto job = jobs.Get(id);
            if (!job) throw ApiError(404, "job not found: " + id);
            SendJson(res, 200, job->ToApiJson());
          }));

  svr.Post(std::string(kJobPattern) + "/stop",
           Guard([&](const httplib::Request& req, httplib::Response& res) {
             JobRecord job = jobs.Stop(JobIdFrom(req));
             SendJson(res, 200, {{"status", job.status}, {"message", "Quantization job stopped"}});
           }));

  svr.Delete(kJobPattern, Guard([&](const httplib::Request& req, httplib::Response& res) {
               jobs.Delete(JobIdFrom(req));
               SendJson(res, 200, {{"status", "deleted"}, {"message", "Quantization job deleted"}});
             }));

  svr.Post(std::string(kJobPattern) + "/import",
           Guard([&](const httplib::Request& req, httplib::Response& res) {
             std::string id = JobIdFrom(req);
             nlohmann::json body = ParseBody(req, true);
             std::string name;
             if (auto it = body.find("name"); it != body.end() && !it->is_null()) {
               if (!it->is_string()) throw ApiError(400, "name must be a string");
               name = it->get<std::string>();
             }
             // As LocalAI: accepted now, the job's import_status tells how it ends.
             std::string model_name = jobs.Import(id, name);
             SendJson(res, 202,
                      {{"status", "importing"},
                       {"message", "Import started for model '" + model_name + "'"},
                       {"model_name", model_name},
                       {"config_file", jobs.models_dir() + "/" + model_name + ".yaml"}});
           }));

  svr.Get(std::string(kJobPattern) + "/download",
          Guard([&](const httplib::Request& req, httplib::Response& res) {
            std::string path = jobs.OutputPath(JobIdFrom(req));
            auto in = std::make_shared<std::ifstream>(path, std::ios::binary);
            in->seekg(0, std::ios::end);
            std::streamoff size = in->tellg();
            if (!*in || size < 0) throw ApiError(500, "cannot read " + path);
            std::string name = path.substr(path.find_last_of('/') + 1);
            res.set_header("Content-Disposition", "attachment; filename=\"" + name + "\"");
            res.set_header("Accept-Ranges", "bytes");
            // httplib slices the provider for Range requests (206, Content-Range).
            res.set_content_provider(static_cast<size_t>(size), "application/octet-stream",
                                     [in](size_t offset, size_t length, httplib::DataSink& sink) {
                                       char buf[1 << 16];
                                       in->clear();
                                       in->seekg(static_cast<std::streamoff>(offset));
                                       while (length > 0) {
                                         size_t want = std::min(length, sizeof(buf));
                                         in->read(buf, static_cast<std::streamsize>(want));
                                         std::streamsize got = in->gcount();
                                         if (got <= 0) return false;
                                         if (!sink.write(buf, static_cast<size_t>(got)))
                                           return false;
                                         length -= static_cast<size_t>(got);
                                       }
                                       return true;
                                     });
          }));

  svr.Get(std::string(kJobPattern) + "/stats",
          Guard([&](const httplib::Request& req, httplib::Response& res) {
            SendJson(res, 200, jobs.Stats(JobIdFrom(req)));
          }));

  svr.Get(std::string(kJobPattern) + "/progress",
          Guard([&](const httplib::Request& req, httplib::Response& res) {
            std::string id = JobIdFrom(req);
            std::shared_ptr<Subscription> sub = jobs.Subscribe(id);
            if (!sub) throw ApiError(404, "job not found: " + id);
            res.set_header("Cache-Control", "no-cache");
            res.set_header("X-Accel-Buffering", "no");
            JobManager* manager = &jobs;
            std::atomic<bool>* stopping = &state.stopping;
            res.set_chunked_content_provider(
                "text/event-stream",
                [sub, stopping](size_t, httplib::DataSink& sink) {
                  std::string event;
                  auto waited = std::chrono::steady_clock::now();
                  // Each call forwards queued events; returning true asks httplib to call again.
                  for (;;) {
                    if (stopping->load()) return false;
                    switch (sub->Next(&event, std::chrono::milliseconds(200))) {
                      case Subscription::Result::kEvent: {
                        std::string frame = "data: " + event + "\n\n";
                        return sink.write(frame.data(), frame.size());
                      }
                      case Subscription::Result::kEnd:
                        sink.done();
                        return true;
                      case Subscription::Result::kTimeout:
                        if (std::chrono::steady_clock::now() - waited > kSseKeepAlive) {
                          // A comment line keeps proxies from timing out and detects gone clients.
                          static const char ping[] = ": keep-alive\n\n";
                          return sink.write(ping, sizeof(ping) - 1);
                        }
                        break;
                    }
                  }
                },
                [manager, id, sub](bool) { manager->Unsubscribe(id, sub); });
          }));

  svr.Get("/api/quantization/backends", [](const httplib::Request&, httplib::Response& res) {
    nlohmann::json types = nlohmann::json::array();
    for (const auto& p : QuantizationPresets()) {
      std::string lower = p;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      types.push_back(lower);
    }
    SendJson(res, 200,
             nlohmann::json::array(
                 {{{"name", "hwyquant"},
                   {"description",
                    "Hugging Face folder, Hub id or GGUF to GGUF with hwyquant's exact SIMD "
                    "quantizers (bytes equal llama-quantize's); alias llama-cpp-quantization"},
                   {"tags", {"quantization", "gguf"}},
                   {"quantization_types", types}}}));
  });
}

// The web page (web/, embedded at build time): "/", "/index.html", "/app.js", "/style.css".
void AddWebPageRoute(httplib::Server& svr) {
  svr.Get(R"(/[A-Za-z0-9_.-]*)", [](const httplib::Request& req, httplib::Response& res) {
    const web::Asset* asset = web::FindAsset(req.path);
    if (!asset) {
      SendError(res, 404, "not found: " + req.path);
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                   "form-action 'self'; frame-ancestors 'none'");
    res.set_content(asset->body.data(), asset->body.size(), std::string(asset->content_type));
  });
}

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

std::string DefaultDataDir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/hwyquant";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::string(home) + "/.local/share/hwyquant";
  }
  return "hwyquant-data";
}

int RunServer(const ServeOptions& options) {
  // Block the shutdown signals before any thread exists so every thread inherits the mask and
  // only the waiter below receives them.
  sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ServerState state;
  ManagerOptions manager_options;
  manager_options.data_dir = options.data_dir.empty() ? DefaultDataDir() : options.data_dir;
  manager_options.max_concurrent = options.max_concurrent;
  try {
    state.manager = std::make_unique<JobManager>(manager_options);
    state.manager->Start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hwyquant serve: %s\n", e.what());
    return 1;
  }

  httplib::Server svr;
  // SSE streams hold a thread each; keep enough for many watchers plus ordinary requests.
  svr.new_task_queue = [] { return new httplib::ThreadPool(64); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_max_count(100);
  std::string api_key = options.api_key;
  svr.set_pre_routing_handler([api_key](const httplib::Request& req, httplib::Response& res) {
    // The page's own files hold no data: a browser must load them to be able to ask for the key.
    bool public_page = (req.method == "GET" || req.method == "HEAD") && web::FindAsset(req.path);
    if (!api_key.empty() && !public_page && !SecretEquals(PresentedKey(req), api_key)) {
      res.set_header("WWW-Authenticate", "Bearer");
      SendError(res, 401, "missing or invalid API key");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib raises itself (404 route, 413 body, 400 parse) get JSON bodies too.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    // httplib would apply a Range header to the error body; an error is always sent whole.
    const_cast<httplib::Request&>(req).ranges.clear();
    if (!res.body.empty() || res.content_length_ > 0) return;
    std::string message = res.status == 404   ? "not found"
                          : res.status == 413 ? "request body too large"
                          : res.status == 414 ? "request URI too long"
                          : res.status == 416 ? "range not satisfiable"
                                              : "HTTP error " + std::to_string(res.status);
    SendError(res, res.status, message);
  });
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          SendError(res, 500, e.what());
        } catch (...) {
          SendError(res, 500, "internal error");
        }
      });
  AddRoutes(svr, state);
  AddWebPageRoute(svr);

  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
  } else if (!svr.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    std::fprintf(stderr, "hwyquant serve: cannot listen on %s:%d\n", options.host.c_str(),
                 options.port);
    state.manager->Shutdown();
    return 1;
  }
  bool loopback =
      options.host == "127.0.0.1" || options.host == "::1" || options.host == "localhost";
  if (!loopback && options.api_key.empty()) {
    std::fprintf(stderr,
                 "hwyquant serve: warning: listening on %s without --api-key: anyone who can "
                 "reach this address can read local models and run jobs\n",
                 options.host.c_str());
  }
  std::printf("hwyquant serve: listening on http://%s:%d (data dir %s)\n", options.host.c_str(),
              port, state.manager->data_dir().c_str());
  std::fflush(stdout);

  std::atomic<bool> listen_done{false};
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (listen_done) return;  // woken by us after listen() ended on its own
    std::fprintf(stderr, "hwyquant serve: %s, shutting down\n", strsignal(sig));
    state.stopping = true;
    svr.stop();
  });
  bool ok = svr.listen_after_bind();
  state.stopping = true;
  listen_done = true;
  // listen() may also end by itself (socket error); wake the waiter so it can be joined.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  state.manager->Shutdown();
  return ok ? 0 : 1;
}

void ConfigureServeCommand(CLI::App& cmd) {
  auto options = std::make_shared<ServeOptions>();
  cmd.add_option("--host", options->host, "Address to bind (default 127.0.0.1: local only)");
  cmd.add_option("--port", options->port, "TCP port; 0 picks a free one")
      ->check(CLI::Range(0, 65535));
  cmd.add_option(
      "--data-dir", options->data_dir,
      "Jobs database, job outputs and imported models (default " + DefaultDataDir() + ")");
  cmd.add_option("--api-key", options->api_key,
                 "Require 'Authorization: Bearer KEY' on every request (or set "
                 "HWYQUANT_API_KEY)");
  cmd.add_option("--max-concurrent", options->max_concurrent, "Jobs running at once")
      ->check(CLI::Range(1, 64));
  cmd.callback([options] {
    ServeOptions opts = *options;
    if (opts.api_key.empty()) {
      if (const char* key = std::getenv("HWYQUANT_API_KEY")) opts.api_key = key;
    }
    int code = RunServer(opts);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace hwyquant::serve
