// `hwyquant serve` over real HTTP: the built hwyquant binary runs as a child server on a free
// loopback port, and every test drives it like a LocalAI client would.
#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/jobs.h"
#include "pipeline/progress_json.h"
#include "tests/support.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* const kJobs = "/api/quantization/jobs";

std::string HwyquantBinary() {
  // The compile definition names the binary CMake built; the env override is for debugging.
  if (const char* env = std::getenv("HWYQUANT_SERVER_TEST_BIN"); env && *env) return env;
  return HWYQUANT_BIN;
}

std::string StoriesModel() {
  std::string shared = hwyquant::test::SharedDir();
  if (shared.empty()) return "";
  return shared + "/models/stories260K";
}

// A fresh directory under the system temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "hwyquant-serve-test-XXXXXX").string();
    REQUIRE(mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs argv with extra environment; returns the exit status, or -1 if it did not finish in time.
int RunProcess(const std::vector<std::string>& args, std::chrono::seconds timeout,
               std::string* output = nullptr,
               const std::map<std::string, std::string>& extra_env = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (extra_env.count(kv.substr(0, kv.find('='))) == 0) env.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  auto deadline = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fds[0], POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      if (output) *output = out;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// `hwyquant run MODEL TYPE -o OUT`: the bytes a finished job must hand out.
std::vector<uint8_t> DirectRunBytes(const std::string& model, const std::string& type,
                                    const std::map<std::string, std::string>& env = {}) {
  static std::map<std::string, std::vector<uint8_t>> cache;
  std::string key = model + "|" + type;
  for (const auto& [k, v] : env) key += "|" + k + "=" + v;
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  TempDir dir;
  std::string out = dir.path() + "/direct.gguf";
  std::string log;
  std::string upper = type;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int rc = RunProcess({HwyquantBinary(), "run", model, upper, "-o", out}, std::chrono::seconds(300),
                      &log, env);
  INFO("hwyquant run " << model << " " << type << " output:\n" << log);
  REQUIRE(rc == 0);
  cache[key] = hwyquant::test::ReadFileBytes(out);
  return cache[key];
}

// The server under test, a child process; killed (SIGKILL) at the latest by the destructor.
class ServerProcess {
 public:
  ServerProcess(const std::string& data_dir, std::vector<std::string> extra_args = {},
                std::map<std::string, std::string> extra_env = {}) {
    std::vector<std::string> args = {HwyquantBinary(), "serve", "--port", "0",
                                     "--data-dir",     data_dir};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      if (extra_env.count(kv.substr(0, kv.find('='))) == 0) env.push_back(kv);
    }
    for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      std::vector<char*> envp;
      for (auto& e : env) envp.push_back(e.data());
      envp.push_back(nullptr);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(out[1]);
    stdout_fd_ = out[0];
    // The first stdout line names the port it bound: no race for a "free" port.
    std::string line;
    auto deadline = Clock::now() + std::chrono::seconds(15);
    while (line.find('\n') == std::string::npos && Clock::now() < deadline) {
      pollfd pfd{stdout_fd_, POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      char c[256];
      ssize_t n = read(stdout_fd_, c, sizeof(c));
      if (n <= 0) break;
      line.append(c, static_cast<size_t>(n));
    }
    INFO("server banner: " << line);
    const std::string marker = "http://127.0.0.1:";
    size_t pos = line.find(marker);
    REQUIRE(pos != std::string::npos);  // also proves the default bind is loopback
    port_ = std::atoi(line.c_str() + pos + marker.size());
    REQUIRE(port_ > 0);
  }

  ~ServerProcess() {
    if (pid_ > 0) Kill9();
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Simulates a crash: no cleanup, no shutdown path.
  void Kill9() {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Graceful stop; returns true if it exited on its own within `timeout`.
  bool Terminate(std::chrono::seconds timeout) {
    kill(pid_, SIGTERM);
    auto deadline = Clock::now() + timeout;
    int status;
    while (Clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Kill9();
    return false;
  }

  std::unique_ptr<httplib::Client> Client(const std::string& api_key = "") const {
    auto cli = std::make_unique<httplib::Client>("127.0.0.1", port_);
    cli->set_connection_timeout(5, 0);
    cli->set_read_timeout(20, 0);
    cli->set_write_timeout(10, 0);
    if (!api_key.empty()) cli->set_bearer_token_auth(api_key.c_str());
    return cli;
  }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
};

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

Reply Do(httplib::Client& cli, const std::string& method, const std::string& path,
         const std::string& body = "") {
  httplib::Result res = method == "GET"      ? cli.Get(path.c_str())
                        : method == "DELETE" ? cli.Delete(path.c_str())
                                             : cli.Post(path.c_str(), body, "application/json");
  INFO(method << " " << path << ": transport error " << httplib::to_string(res.error()));
  REQUIRE(res);
  Reply r;
  r.status = res->status;
  r.raw = res->body;
  r.body = json::parse(res->body, nullptr, false);
  return r;
}

// A 4xx/5xx reply must carry {"error": "..."}.
void CheckJsonError(const Reply& r, int status, const std::string& what) {
  INFO(what << " -> HTTP " << r.status << " " << r.raw);
  CHECK(r.status == status);
  REQUIRE(r.body.is_object());
  CHECK(r.body.contains("error"));
  CHECK(r.body["error"].is_string());
}

std::string CreateJob(httplib::Client& cli, const std::string& model, const std::string& type,
                      const std::string& backend = "") {
  json req = {{"model", model}, {"quantization_type", type}};
  if (!backend.empty()) req["backend"] = backend;
  Reply r = Do(cli, "POST", kJobs, req.dump());
  INFO("create " << model << " " << type << ": " << r.raw);
  REQUIRE(r.status == 201);
  REQUIRE(r.body["status"] == "queued");
  return r.body["id"].get<std::string>();
}

json GetJob(httplib::Client& cli, const std::string& id) {
  Reply r = Do(cli, "GET", std::string(kJobs) + "/" + id);
  INFO("GET job " << id << ": " << r.raw);
  REQUIRE(r.status == 200);
  return r.body;
}

// Polls until `done(job)` or the deadline; returns the last job state.
json WaitJob(httplib::Client& cli, const std::string& id,
             const std::function<bool(const json&)>& done, std::chrono::seconds timeout,
             const std::string& what) {
  auto deadline = Clock::now() + timeout;
  json job;
  while (Clock::now() < deadline) {
    job = GetJob(cli, id);
    if (done(job)) return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  FAIL("job " << id << " did not reach: " << what << " within " << timeout.count()
              << " s; last state " << job.dump());
  return job;
}

bool IsTerminal(const json& job) {
  std::string s = job.value("status", "");
  return s == "completed" || s == "failed" || s == "stopped";
}

std::vector<uint8_t> Download(httplib::Client& cli, const std::string& id,
                              const std::string& range = "") {
  httplib::Headers headers;
  if (!range.empty()) headers.emplace("Range", range);
  auto res = cli.Get((std::string(kJobs) + "/" + id + "/download").c_str(), headers);
  REQUIRE(res);
  INFO("download " << id << " range '" << range << "' -> " << res->status);
  REQUIRE(res->status == (range.empty() ? 200 : 206));
  return std::vector<uint8_t>(res->body.begin(), res->body.end());
}

// Reads a job's SSE stream until the terminal event (or deadline); returns the JSON events.
std::vector<json> ReadProgress(const ServerProcess& server, const std::string& id,
                               std::chrono::seconds timeout,
                               std::atomic<bool>* connected = nullptr) {
  auto cli = server.Client();
  std::vector<json> events;
  std::string buffer;
  auto deadline = Clock::now() + timeout;
  auto res = cli->Get((std::string(kJobs) + "/" + id + "/progress").c_str(),
                      [&](const httplib::Response& r) {
                        if (connected) *connected = true;
                        return r.status == 200 &&
                               r.get_header_value("Content-Type").find("text/event-stream") == 0;
                      },
                      [&](const char* data, size_t len) {
                        buffer.append(data, len);
                        size_t pos;
                        while ((pos = buffer.find("\n\n")) != std::string::npos) {
                          std::string frame = buffer.substr(0, pos);
                          buffer.erase(0, pos + 2);
                          if (frame.rfind("data: ", 0) != 0) continue;  // keep-alive comments
                          json ev = json::parse(frame.substr(6), nullptr, false);
                          if (ev.is_discarded()) {
                            FAIL_CHECK("SSE frame of job " << id << " is not JSON: " << frame);
                            return false;
                          }
                          events.push_back(ev);
                          if (IsTerminal(ev)) return false;
                        }
                        return Clock::now() < deadline;
                      });
  return events;
}

// Checks a progress stream: LocalAI's fields, known statuses, monotonic percentage, real messages.
void CheckProgressStream(const std::vector<json>& events, const std::string& id,
                         const std::string& final_status) {
  INFO("job " << id << ", " << events.size() << " SSE events");
  REQUIRE(!events.empty());
  static const std::set<std::string> statuses = {
      "queued", "downloading", "converting", "quantizing", "completed", "failed", "stopped"};
  double last = -1;
  for (const json& ev : events) {
    INFO("event " << ev.dump());
    for (const char* key :
         {"job_id", "progress_percent", "status", "message", "output_file", "extra_metrics"}) {
      CHECK(ev.contains(key));
    }
    CHECK(ev["job_id"] == id);
    CHECK(statuses.count(ev["status"].get<std::string>()) == 1);
    double pct = ev["progress_percent"].get<double>();
    CHECK(pct >= last);  // never backwards
    CHECK(pct <= 100.0);
    last = pct;
    CHECK(ev["extra_metrics"].is_object());
  }
  CHECK(events.back()["status"] == final_status);
}

bool DirHasPartialOutput(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name != "job.log") return true;
  }
  return false;
}

// Processes whose working directory is `dir` (job children run in their job directory).
std::vector<pid_t> ProcessesIn(const std::string& dir) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code link_ec;
    fs::path cwd = fs::read_symlink(e.path() / "cwd", link_ec);
    if (!link_ec && cwd.string() == dir) pids.push_back(std::stoi(name));
  }
  return pids;
}

#define REQUIRE_MODEL(model)                                               \
  if ((model).empty()) {                                                   \
    WARN("shared models not found; set HWYQUANT_SHARED to run this test"); \
    return;                                                                \
  }

}  // namespace

TEST_CASE("progress_json: lines round-trip, anything else is not an event", "[serve]") {
  hwyquant::ProgressEvent event;
  event.stage = "quantizing";
  event.done = 1234567890123ULL;
  event.total = 2000000000000ULL;
  event.unit = "weights";
  event.tensor = "blk.5.attn_k.weight";
  event.tensor_index = 234;
  event.tensor_count = 567;
  event.message = hwyquant::TensorCounter(234, 567) + " quantizing blk.5.attn_k.weight";
  event.metrics["bits_per_weight"] = 4.5;
  CHECK(event.message == "[ 234/ 567] quantizing blk.5.attn_k.weight");
  std::string line = hwyquant::ProgressEventToJson(event);
  CHECK(line.find('\n') == std::string::npos);
  auto parsed = hwyquant::ParseProgressLine(line);
  REQUIRE(parsed);
  CHECK(parsed->stage == event.stage);
  CHECK(parsed->done == event.done);
  CHECK(parsed->total == event.total);
  CHECK(parsed->unit == event.unit);
  CHECK(parsed->tensor == event.tensor);
  CHECK(parsed->tensor_index == 234);
  CHECK(parsed->tensor_count == 567);
  CHECK(parsed->message == event.message);
  CHECK(parsed->metrics.at("bits_per_weight") == 4.5);
  CHECK(hwyquant::TensorCounter(12345, 12345) == "[12345/12345]");
  // Log lines, truncated JSON, other JSON: not progress, and never an exception.
  for (const std::string& bad : std::vector<std::string>{
           "", "hwyquant: error: cannot open x", "{", "{\"stage\":", "[1,2]", "{\"done\":1}",
           "{\"stage\":5}", "note: row length 172", std::string("{\"stage\":\"x\0\"}", 14)}) {
    INFO("line: " << bad);
    CHECK_FALSE(hwyquant::ParseProgressLine(bad));
  }
  // Negative or fractional counts from a foreign writer are clamped, not wrapped.
  auto odd = hwyquant::ParseProgressLine(R"({"stage":"downloading","done":-5,"total":10.7})");
  REQUIRE(odd);
  CHECK(odd->done == 0);
  CHECK(odd->total == 10);
}

TEST_CASE("serve: whole job lifecycle on stories260K, bytes equal hwyquant run", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  ServerProcess server(data.path());
  auto cli = server.Client();

  Reply backends = Do(*cli, "GET", "/api/quantization/backends");
  REQUIRE(backends.status == 200);
  REQUIRE(backends.body.is_array());
  REQUIRE(!backends.body.empty());
  CHECK(backends.body[0]["name"] == "hwyquant");

  for (const std::string type : {"Q8_0", "q4_k_m"}) {
    DYNAMIC_SECTION("type " << type) {
      std::string id = CreateJob(*cli, model, type, "llama-cpp-quantization");
      std::vector<json> events = ReadProgress(server, id, std::chrono::seconds(120));
      CheckProgressStream(events, id, "completed");
      CHECK(events.back()["progress_percent"].get<double>() == 100.0);
      bool saw_tensor_message = false;
      for (const json& ev : events) {
        std::string msg = ev["message"];
        if (ev["status"] == "quantizing" && msg.rfind("[", 0) == 0 &&
            msg.find("] quantizing ") != std::string::npos) {
          saw_tensor_message = true;
        }
      }
      CHECK(saw_tensor_message);

      json job = GetJob(*cli, id);
      INFO("job " << job.dump());
      CHECK(job["status"] == "completed");
      CHECK(job["model"] == model);
      CHECK(job["backend"] == "llama-cpp-quantization");
      CHECK(job["progress_percent"].get<double>() == 100.0);
      const json& metrics = job["extra_metrics"];
      REQUIRE(metrics.contains("file_size_mb"));
      REQUIRE(metrics.contains("elapsed_seconds"));
      std::string output_file = job["output_file"];
      CHECK(output_file.rfind(data.path(), 0) == 0);

      std::vector<uint8_t> bytes = Download(*cli, id);
      std::vector<uint8_t> direct = DirectRunBytes(model, type);
      CHECK(bytes.size() == direct.size());
      CHECK(bytes == direct);
      CHECK(metrics["file_size_mb"].get<double>() == Approx(bytes.size() / 1e6));
      if (metrics.contains("bits_per_weight")) {
        CHECK(metrics["bits_per_weight"].get<double>() > 1.0);
        CHECK(metrics["bits_per_weight"].get<double>() < 33.0);
      }

      // Range requests resume interrupted downloads.
      std::vector<uint8_t> slice = Download(*cli, id, "bytes=100-1099");
      REQUIRE(slice.size() == 1000);
      CHECK(std::equal(slice.begin(), slice.end(), direct.begin() + 100));

      // Import: the GGUF plus a LocalAI model config in data-dir/models.
      std::string name = "stories-" + std::string(type == "Q8_0" ? "q8" : "q4km");
      Reply imported =
          Do(*cli, "POST", std::string(kJobs) + "/" + id + "/import", json{{"name", name}}.dump());
      INFO("import: " << imported.raw);
      REQUIRE(imported.status == 202);
      CHECK(imported.body["status"] == "importing");
      CHECK(imported.body["model_name"] == name);
      json after = WaitJob(
          *cli, id, [](const json& j) { return j.value("import_status", "") != "importing"; },
          std::chrono::seconds(30), "import finished");
      REQUIRE(after["import_status"] == "completed");
      CHECK(after["import_message"] == "imported as " + name);
      std::string yaml = hwyquant::test::ReadTextFile(data.path() + "/models/" + name + ".yaml");
      CHECK(yaml.find("name: " + name) != std::string::npos);
      CHECK(yaml.find("backend: llama-cpp") != std::string::npos);
      std::string file = output_file.substr(output_file.find_last_of('/') + 1);
      CHECK(yaml.find("model: " + name + "/" + file) != std::string::npos);
      CHECK(hwyquant::test::BytesDifference(
                hwyquant::test::ReadFileBytes(data.path() + "/models/" + name + "/" + file),
                direct) == "");
      CHECK(GetJob(*cli, id)["import_model_name"] == name);
      CheckJsonError(
          Do(*cli, "POST", std::string(kJobs) + "/" + id + "/import", json{{"name", name}}.dump()),
          409, "import under a taken name");

      Reply list = Do(*cli, "GET", kJobs);
      REQUIRE(list.status == 200);
      bool listed = false;
      for (const json& j : list.body) listed |= j["id"] == id;
      CHECK(listed);

      Reply del = Do(*cli, "DELETE", std::string(kJobs) + "/" + id);
      CHECK(del.status == 200);
      CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/" + id), 404, "GET deleted job");
      CHECK_FALSE(fs::exists(data.path() + "/jobs/" + id));
      CHECK_FALSE(fs::exists(data.path() + "/models/" + name + ".yaml"));
    }
  }
  CHECK(server.Terminate(std::chrono::seconds(10)));
}

TEST_CASE("serve: concurrent jobs and two SSE clients see every event", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  // One worker: the watched job waits in the queue, so both clients subscribe before it starts.
  ServerProcess server(data.path(), {"--max-concurrent", "1"},
                       {{"HWYQUANT_PROGRESS_DELAY_MS", "20"}});
  auto cli = server.Client();
  std::string first = CreateJob(*cli, model, "Q4_K_M");
  std::string watched = CreateJob(*cli, model, "Q8_0");
  CHECK(GetJob(*cli, watched)["status"] == "queued");

  std::vector<json> a, b;
  std::atomic<bool> a_on{false}, b_on{false};
  std::thread ta([&] { a = ReadProgress(server, watched, std::chrono::seconds(120), &a_on); });
  std::thread tb([&] { b = ReadProgress(server, watched, std::chrono::seconds(120), &b_on); });
  auto connect_deadline = Clock::now() + std::chrono::seconds(10);
  while (!(a_on && b_on) && Clock::now() < connect_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK((a_on && b_on));
  // Otherwise the streams legitimately differ (a late client starts from a snapshot).
  CHECK(GetJob(*cli, watched)["status"] == "queued");
  ta.join();
  tb.join();
  CheckProgressStream(a, watched, "completed");
  CheckProgressStream(b, watched, "completed");
  // Both subscribed while it was queued, so after their first (snapshot) event the streams match.
  REQUIRE(a.size() >= 3);
  REQUIRE(b.size() >= 3);
  auto from_start = [](const std::vector<json>& v) {
    std::vector<json> out;
    bool started = false;
    for (const json& e : v) {
      started |= e["status"] != "queued";
      if (started) out.push_back(e);
    }
    return out;
  };
  CHECK(from_start(a) == from_start(b));
  CHECK(from_start(a).size() >= 3);

  WaitJob(*cli, first, IsTerminal, std::chrono::seconds(60), "terminal");
  CHECK(GetJob(*cli, first)["status"] == "completed");
  CHECK(Download(*cli, first) == DirectRunBytes(model, "Q4_K_M"));
  CHECK(Download(*cli, watched) == DirectRunBytes(model, "Q8_0"));

  // Two workers: two jobs run at the same time.
  TempDir data2;
  ServerProcess server2(data2.path(), {"--max-concurrent", "2"},
                        {{"HWYQUANT_PROGRESS_DELAY_MS", "50"}});
  auto cli2 = server2.Client();
  std::string j1 = CreateJob(*cli2, model, "Q8_0");
  std::string j2 = CreateJob(*cli2, model, "Q4_K_M");
  bool both_active = false;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && !both_active) {
    json s1 = GetJob(*cli2, j1), s2 = GetJob(*cli2, j2);
    auto active = [](const json& j) {
      std::string s = j["status"];
      return s == "converting" || s == "quantizing" || s == "downloading";
    };
    both_active = active(s1) && active(s2);
    if (IsTerminal(s1) && IsTerminal(s2)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(both_active);
  WaitJob(*cli2, j1, IsTerminal, std::chrono::seconds(120), "terminal");
  WaitJob(*cli2, j2, IsTerminal, std::chrono::seconds(120), "terminal");
  CHECK(Download(*cli2, j1) == DirectRunBytes(model, "Q8_0"));
  CHECK(Download(*cli2, j2) == DirectRunBytes(model, "Q4_K_M"));
}

TEST_CASE("serve: stop during quantizing cancels within a second and removes partial files",
          "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  // Slow every progress event so the job is certainly mid-quantization when stopped.
  ServerProcess server(data.path(), {}, {{"HWYQUANT_PROGRESS_DELAY_MS", "300"}});
  auto cli = server.Client();
  std::string id = CreateJob(*cli, model, "Q8_0");
  std::atomic<bool> connected{false};
  std::vector<json> events;
  std::thread watcher(
      [&] { events = ReadProgress(server, id, std::chrono::seconds(60), &connected); });
  // Past the first tensors: the child is inside the quantization loop.
  WaitJob(
      *cli, id,
      [](const json& j) {
        return (j["status"] == "quantizing" && j["progress_percent"].get<double>() > 0) ||
               IsTerminal(j);
      },
      std::chrono::seconds(60), "quantizing with progress");
  REQUIRE(GetJob(*cli, id)["status"] == "quantizing");

  CheckJsonError(Do(*cli, "DELETE", std::string(kJobs) + "/" + id), 409, "delete running job");
  CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/" + id + "/download"), 409,
                 "download running job");

  auto t0 = Clock::now();
  Reply stop = Do(*cli, "POST", std::string(kJobs) + "/" + id + "/stop");
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  INFO("stop: " << stop.raw << " after " << seconds << " s");
  CHECK(stop.status == 200);
  CHECK(seconds < 1.0);
  json job = GetJob(*cli, id);
  CHECK(job["status"] == "stopped");
  CHECK_FALSE(DirHasPartialOutput(data.path() + "/jobs/" + id));
  watcher.join();
  CheckProgressStream(events, id, "stopped");

  CheckJsonError(Do(*cli, "POST", std::string(kJobs) + "/" + id + "/stop"), 409,
                 "stop a stopped job");
  CHECK(events.back()["progress_percent"].get<double>() < 100.0);
  // Stopped for good: it must not come back, not even after a restart.
  REQUIRE(server.Terminate(std::chrono::seconds(10)));
  ServerProcess restarted(data.path());
  auto cli2 = restarted.Client();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  json after = GetJob(*cli2, id);
  INFO("after restart: " << after.dump());
  CHECK(after["status"] == "stopped");
  CHECK(after["attempts"] == 1);
  CHECK(after["progress_percent"] == job["progress_percent"]);  // persisted, not reset
  CHECK(Do(*cli2, "DELETE", std::string(kJobs) + "/" + id).status == 200);
  cli = std::move(cli2);

  // A queued job stops at once too.
  std::string busy = CreateJob(*cli, model, "Q8_0");
  std::string queued = CreateJob(*cli, model, "Q4_0");
  CHECK(Do(*cli, "POST", std::string(kJobs) + "/" + queued + "/stop").status == 200);
  CHECK(GetJob(*cli, queued)["status"] == "stopped");
  CHECK(Do(*cli, "POST", std::string(kJobs) + "/" + busy + "/stop").status == 200);
}

TEST_CASE("serve: kill -9 mid-job, restart resumes and completes with the right bytes", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  std::string id, queued_id;
  {
    ServerProcess server(data.path(), {}, {{"HWYQUANT_PROGRESS_DELAY_MS", "150"}});
    auto cli = server.Client();
    id = CreateJob(*cli, model, "Q8_0");
    queued_id = CreateJob(*cli, model, "Q4_K_M");
    json mid = WaitJob(
        *cli, id,
        [](const json& j) {
          return (j["status"] == "quantizing" && j["progress_percent"].get<double>() > 0) ||
                 IsTerminal(j);
        },
        std::chrono::seconds(60), "quantizing with progress");
    REQUIRE(mid["status"] == "quantizing");
    std::string job_dir = fs::canonical(data.path()).string() + "/jobs/" + id;
    CHECK(ProcessesIn(job_dir).size() == 1);  // the `hwyquant run` child
    server.Kill9();
    // The child dies with its parent (PDEATHSIG); nothing may keep writing into the job dir.
    auto deadline = Clock::now() + std::chrono::seconds(3);
    while (!ProcessesIn(job_dir).empty() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(ProcessesIn(job_dir).empty());
  }

  ServerProcess server(data.path());
  auto cli = server.Client();
  json job = GetJob(*cli, id);
  INFO("after restart: " << job.dump());
  CHECK(job["status"] != "completed");
  json done = WaitJob(*cli, id, IsTerminal, std::chrono::seconds(120), "terminal after restart");
  INFO("resumed job: " << done.dump());
  REQUIRE(done["status"] == "completed");
  CHECK(done["attempts"].get<int>() >= 2);
  CHECK(done["progress_percent"].get<double>() == 100.0);
  CHECK(Download(*cli, id) == DirectRunBytes(model, "Q8_0"));
  json second = WaitJob(*cli, queued_id, IsTerminal, std::chrono::seconds(120), "terminal");
  REQUIRE(second["status"] == "completed");
  CHECK(Download(*cli, queued_id) == DirectRunBytes(model, "Q4_K_M"));
  // Only the final output (with its log and per-tensor statistics) remains in the job directory.
  for (const auto& e : fs::directory_iterator(data.path() + "/jobs/" + id)) {
    std::string name = e.path().filename().string();
    INFO("file left in job dir: " << name);
    CHECK((name == "job.log" || name == "stats.json" ||
           e.path().string() == done["output_file"].get<std::string>()));
  }
}

TEST_CASE("serve: an import the server died in is placed again on restart", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  std::string id;
  std::vector<uint8_t> output;
  {
    ServerProcess server(data.path());
    auto cli = server.Client();
    id = CreateJob(*cli, model, "Q8_0");
    json done = WaitJob(*cli, id, IsTerminal, std::chrono::seconds(120), "terminal");
    REQUIRE(done["status"] == "completed");
    output = Download(*cli, id);
    server.Kill9();
  }
  // What a server killed mid-import leaves: the job marked importing and a half-placed copy.
  const std::string name = "stories-resumed";
  {
    hwyquant::serve::JobStore store(data.path() + "/jobs.db");
    bool found = false;
    for (hwyquant::serve::JobRecord rec : store.LoadAll()) {
      if (rec.id != id) continue;
      rec.import_status = "importing";
      rec.import_message = "copying quantized model";
      rec.import_model_name = name;
      store.Put(rec);
      found = true;
    }
    REQUIRE(found);
  }
  fs::create_directories(data.path() + "/models/" + name);
  {
    std::ofstream partial(data.path() + "/models/" + name + "/partial.gguf.tmp");
    partial << "half a model";
  }

  ServerProcess server(data.path());
  auto cli = server.Client();
  json job = WaitJob(
      *cli, id, [](const json& j) { return j.value("import_status", "") != "importing"; },
      std::chrono::seconds(30), "import finished after restart");
  INFO("job after restart: " << job.dump());
  REQUIRE(job["import_status"] == "completed");
  CHECK(job["import_model_name"] == name);
  const std::string file = job["output_file"].get<std::string>().substr(
      job["output_file"].get<std::string>().rfind('/') + 1);
  CHECK(hwyquant::test::BytesDifference(
            hwyquant::test::ReadFileBytes(data.path() + "/models/" + name + "/" + file), output) ==
        "");
  CHECK(!fs::exists(data.path() + "/models/" + name + "/partial.gguf.tmp"));
  CHECK(hwyquant::test::ReadTextFile(data.path() + "/models/" + name + ".yaml")
            .find("model: " + name + "/" + file) != std::string::npos);
}

TEST_CASE("serve: per-tensor statistics by default, none with extra_options.stats false",
          "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  ServerProcess server(data.path());
  auto cli = server.Client();
  const std::string with_stats = CreateJob(*cli, model, "Q4_K_M");
  Reply created = Do(*cli, "POST", kJobs,
                     json{{"model", model},
                          {"quantization_type", "q4_k_m"},
                          {"extra_options", {{"stats", "false"}}}}
                         .dump());
  REQUIRE(created.status == 201);
  const std::string without = created.body["id"].get<std::string>();
  for (const std::string& id : {with_stats, without}) {
    json done = WaitJob(*cli, id, IsTerminal, std::chrono::seconds(120), "terminal");
    REQUIRE(done["status"] == "completed");
  }
  CHECK(Download(*cli, without) == Download(*cli, with_stats));

  Reply stats = Do(*cli, "GET", std::string(kJobs) + "/" + with_stats + "/stats");
  INFO("stats: " << stats.raw.substr(0, 300));
  REQUIRE(stats.status == 200);
  REQUIRE(stats.body["tensors"].is_array());
  CHECK(!stats.body["tensors"].empty());
  for (const json& t : stats.body["tensors"]) {
    CHECK(t.contains("name"));
    CHECK(t["rmse"].get<double>() >= 0.0);
  }
  CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/" + without + "/stats"), 404,
                 "stats of a job run without them");
  CheckJsonError(Do(*cli, "POST", kJobs,
                    json{{"model", model}, {"extra_options", {{"stats", "maybe"}}}}.dump()),
                 400, "stats neither true nor false");
}

TEST_CASE("serve: every preset completes with the bytes of hwyquant run", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  ServerProcess server(data.path(), {"--max-concurrent", "2"});
  auto cli = server.Client();
  const std::vector<std::string> presets = {
      "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0",
      "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K",   "Q8_0", "F16",  "BF16",   "F32"};
  std::map<std::string, std::string> ids;
  for (const auto& type : presets) ids[type] = CreateJob(*cli, model, type);
  for (const auto& type : presets) {
    json job = WaitJob(*cli, ids[type], IsTerminal, std::chrono::seconds(120), "terminal");
    INFO("preset " << type << ": " << job.dump());
    REQUIRE(job["status"] == "completed");
    CHECK(Download(*cli, ids[type]) == DirectRunBytes(model, type));
  }
}

TEST_CASE("serve: SIGTERM mid-job shuts down cleanly and the job resumes on restart", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  std::string id, done_id;
  {
    ServerProcess server(data.path(), {}, {{"HWYQUANT_PROGRESS_DELAY_MS", "100"}});
    auto cli = server.Client();
    done_id = CreateJob(*cli, model, "Q4_0");
    json finished = WaitJob(*cli, done_id, IsTerminal, std::chrono::seconds(120), "terminal");
    REQUIRE(finished["status"] == "completed");
    id = CreateJob(*cli, model, "Q5_1");
    WaitJob(
        *cli, id,
        [](const json& j) {
          return (j["status"] == "quantizing" && j["progress_percent"].get<double>() > 0) ||
                 IsTerminal(j);
        },
        std::chrono::seconds(60), "quantizing with progress");
    REQUIRE(GetJob(*cli, id)["status"] == "quantizing");
    auto t0 = Clock::now();
    CHECK(server.Terminate(std::chrono::seconds(10)));  // exits on its own, children stopped
    CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 5.0);
  }
  ServerProcess server(data.path());
  auto cli = server.Client();
  // The finished job survived the restart as it was.
  json kept = GetJob(*cli, done_id);
  CHECK(kept["status"] == "completed");
  CHECK(kept["progress_percent"].get<double>() == 100.0);
  CHECK(Download(*cli, done_id) == DirectRunBytes(model, "Q4_0"));
  json resumed = WaitJob(*cli, id, IsTerminal, std::chrono::seconds(120), "terminal after restart");
  INFO("resumed: " << resumed.dump());
  CHECK(resumed["status"] == "completed");
  CHECK(resumed["attempts"].get<int>() == 2);
  CHECK(Download(*cli, id) == DirectRunBytes(model, "Q5_1"));
}

TEST_CASE("serve: a local GGUF is quantized with hwyquant quantize", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  TempDir work;
  std::string f32 = work.path() + "/stories-f32.gguf";
  std::string log;
  REQUIRE(RunProcess({HwyquantBinary(), "convert", model, f32, "--outtype", "f32"},
                     std::chrono::seconds(120), &log) == 0);
  std::string direct = work.path() + "/direct-q4_0.gguf";
  INFO(log);
  REQUIRE(RunProcess({HwyquantBinary(), "quantize", f32, direct, "Q4_0"}, std::chrono::seconds(120),
                     &log) == 0);
  ServerProcess server(data.path());
  auto cli = server.Client();
  std::string id = CreateJob(*cli, f32, "q4_0");
  std::vector<json> events = ReadProgress(server, id, std::chrono::seconds(120));
  CheckProgressStream(events, id, "completed");
  json job = GetJob(*cli, id);
  CHECK(job["output_file"].get<std::string>().find("stories-f32-Q4_0.gguf") != std::string::npos);
  CHECK(Download(*cli, id) == hwyquant::test::ReadFileBytes(direct));
  // A file that is not GGUF is refused up front.
  std::string not_gguf = work.path() + "/notes.txt";
  std::ofstream(not_gguf) << "hello";
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"model", not_gguf}}.dump()), 400, "non-GGUF file");
}

TEST_CASE("serve: hwyquant serve runs the hwyquant-serve beside it, or says it is missing",
          "[serve]") {
  std::string out;
  // Every argument reaches the server program, --help included.
  REQUIRE(RunProcess({HwyquantBinary(), "serve", "--help"}, std::chrono::seconds(10), &out) == 0);
  CHECK(out.find("Usage: hwyquant serve") != std::string::npos);
  CHECK(out.find("--max-concurrent") != std::string::npos);
  CHECK(RunProcess({HwyquantBinary(), "serve", "--port", "nope"}, std::chrono::seconds(10), &out) !=
        0);
  CHECK(out.find("--port") != std::string::npos);
  // A hwyquant copied alone: a clear error naming the missing program, not a hang or a crash.
  TempDir alone;
  const std::string lonely = alone.path() + "/hwyquant";
  fs::copy_file(HwyquantBinary(), lonely);
  fs::permissions(lonely, fs::perms::owner_all);
  REQUIRE(RunProcess({lonely, "serve", "--port", "0"}, std::chrono::seconds(10), &out) == 1);
  CHECK(out.find("cannot run the job server '" + alone.path() + "/hwyquant-serve'") !=
        std::string::npos);
}

TEST_CASE("serve: bad requests get 4xx JSON errors", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  ServerProcess server(data.path());
  auto cli = server.Client();

  CheckJsonError(
      Do(*cli, "POST", kJobs, json{{"model", model}, {"quantization_type", "Q9_X"}}.dump()), 400,
      "unknown type");
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"quantization_type", "q8_0"}}.dump()), 400,
                 "missing model");
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"model", ""}}.dump()), 400, "empty model");
  CheckJsonError(
      Do(*cli, "POST", kJobs,
         json{{"model", data.path() + "/no-such-model"}, {"quantization_type", "q8_0"}}.dump()),
      400, "nonexistent local model");
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"model", 42}}.dump()), 400, "model not a string");
  CheckJsonError(Do(*cli, "POST", kJobs, "{not json"), 400, "invalid JSON");
  CheckJsonError(Do(*cli, "POST", kJobs, "[1,2]"), 400, "JSON array body");
  CheckJsonError(
      Do(*cli, "POST", kJobs,
         json{{"model", model}, {"backend", "vllm"}, {"quantization_type", "q8_0"}}.dump()),
      400, "unknown backend");
  CheckJsonError(
      Do(*cli, "POST", kJobs, json{{"model", model}, {"extra_options", {{"hf_token", 5}}}}.dump()),
      400, "non-string extra option");
  // Every preset, in any case, is accepted.
  for (const char* type :
       {"Q2_K", "q3_k_s", "Q3_K_M", "q3_K_l", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
        "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "bf16", "f32"}) {
    Reply r = Do(*cli, "POST", kJobs, json{{"model", model}, {"quantization_type", type}}.dump());
    INFO("type " << type << ": " << r.raw);
    CHECK(r.status == 201);
    if (r.status == 201) {
      Do(*cli, "POST", std::string(kJobs) + "/" + r.body["id"].get<std::string>() + "/stop");
    }
  }
  std::string big(200 * 1024, 'x');
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"model", big}}.dump()), 413, "oversized body");

  // Ids: only our UUIDs get near the file system.
  for (const std::string bad : {"..", "not-a-uuid", "%2e%2e", "..%2f..%2fetc%2fpasswd",
                                "00000000-0000-0000-0000-00000000000G"}) {
    Reply r = Do(*cli, "GET", std::string(kJobs) + "/" + bad);
    INFO("id " << bad << ": " << r.raw);
    CHECK((r.status == 400 || r.status == 404));
    CHECK(r.body.is_object());
    Reply d = Do(*cli, "GET", std::string(kJobs) + "/" + bad + "/download");
    CHECK((d.status == 400 || d.status == 404));
    Reply del = Do(*cli, "DELETE", std::string(kJobs) + "/" + bad);
    CHECK((del.status == 400 || del.status == 404));
  }
  CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/.."), 400, "id '..'");
  const std::string unknown = "0123abcd-0000-4000-8000-000000000000";
  CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/" + unknown), 404, "unknown job");
  CheckJsonError(Do(*cli, "POST", std::string(kJobs) + "/" + unknown + "/stop"), 404,
                 "stop unknown");
  CheckJsonError(Do(*cli, "DELETE", std::string(kJobs) + "/" + unknown), 404, "delete unknown");
  CheckJsonError(Do(*cli, "GET", std::string(kJobs) + "/" + unknown + "/progress"), 404,
                 "progress unknown");
  CheckJsonError(Do(*cli, "GET", "/api/nothing-here"), 404, "unknown route");
  CHECK(Do(*cli, "GET", "/etc/passwd").status == 404);
}

TEST_CASE("serve: API key protects every route", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  const std::string key = "s3cret-key";
  ServerProcess server(data.path(), {"--api-key", key});
  auto none = server.Client();
  auto wrong = server.Client("wrong-key");
  auto right = server.Client(key);
  const std::string unknown = "0123abcd-0000-4000-8000-000000000000";
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", kJobs},
           {"POST", kJobs},
           {"GET", std::string(kJobs) + "/" + unknown},
           {"POST", std::string(kJobs) + "/" + unknown + "/stop"},
           {"DELETE", std::string(kJobs) + "/" + unknown},
           {"GET", std::string(kJobs) + "/" + unknown + "/progress"},
           {"POST", std::string(kJobs) + "/" + unknown + "/import"},
           {"GET", std::string(kJobs) + "/" + unknown + "/download"},
           {"GET", "/api/quantization/backends"}}) {
    std::string body = json{{"model", model}, {"quantization_type", "q8_0"}}.dump();
    CheckJsonError(Do(*none, method, path, body), 401, "no key: " + method + " " + path);
    CheckJsonError(Do(*wrong, method, path, body), 401, "wrong key: " + method + " " + path);
  }
  CHECK(Do(*right, "GET", kJobs).status == 200);
  CHECK(Do(*right, "GET", "/api/quantization/backends").status == 200);
  std::string id = CreateJob(*right, model, "Q8_0");
  json done = WaitJob(*right, id, IsTerminal, std::chrono::seconds(120), "terminal");
  CHECK(done["status"] == "completed");
  // x-api-key works as well (LocalAI accepts both).
  httplib::Client xkey("127.0.0.1", server.port());
  xkey.set_read_timeout(20, 0);
  auto res = xkey.Get(kJobs, httplib::Headers{{"x-api-key", key}});
  REQUIRE(res);
  CHECK(res->status == 200);
}

#ifdef HWYQUANT_SERVER_TEST_HUB
#include "tests/hub_stub.h"

TEST_CASE("serve: a Hub id is downloaded and quantized, hf_token reaches the Hub", "[serve]") {
  std::string model = StoriesModel();
  REQUIRE_MODEL(model);
  TempDir data;
  TempDir hf_home;
  hwyquant::test::HubStub hub;
  const std::string repo = "tiny-org/stories260K";
  const std::string token = "hf_serve_test_token";
  hub.AddRepo(repo, model);
  hub.SetGated(repo, token);
  // The children inherit the server's environment: point them at the stub and a private cache.
  std::map<std::string, std::string> hub_env = {{"HF_ENDPOINT", hub.endpoint()},
                                                {"HF_HOME", hf_home.path()},
                                                {"HF_HUB_CACHE", hf_home.path() + "/hub"},
                                                {"HF_TOKEN", ""}};
  std::map<std::string, std::string> server_env = hub_env;
  server_env["HWYQUANT_PROGRESS_DELAY_MS"] = "10";
  ServerProcess server(data.path(), {}, server_env);
  auto cli = server.Client();

  // Gated and no token: the job fails with the Hub's refusal in its message.
  std::string refused = CreateJob(*cli, repo, "Q8_0");
  json failed = WaitJob(*cli, refused, IsTerminal, std::chrono::seconds(120), "terminal");
  INFO("refused job: " << failed.dump());
  CHECK(failed["status"] == "failed");
  CHECK(!failed["message"].get<std::string>().empty());

  json req = {
      {"model", repo}, {"quantization_type", "Q8_0"}, {"extra_options", {{"hf_token", token}}}};
  Reply created = Do(*cli, "POST", kJobs, req.dump());
  REQUIRE(created.status == 201);
  std::string id = created.body["id"];
  std::vector<json> events = ReadProgress(server, id, std::chrono::seconds(120));
  CheckProgressStream(events, id, "completed");
  bool saw_download = false;
  for (const json& ev : events) {
    if (ev["status"] == "downloading" && ev["progress_percent"].get<double>() > 0) {
      saw_download = true;
      CHECK(ev["progress_percent"].get<double>() <= 40.0);  // downloading is the first phase
    }
  }
  CHECK(saw_download);
  json job = GetJob(*cli, id);
  CHECK(job["extra_options"]["hf_token"] == "***");  // never sent back
  CHECK(job["output_file"].get<std::string>().find("stories260K-Q8_0.gguf") != std::string::npos);
  // The same bytes as `hwyquant run ORG/NAME` (a fresh cache: the Hub download is part of it).
  TempDir direct_home;
  std::map<std::string, std::string> direct_env = hub_env;
  direct_env["HF_HOME"] = direct_home.path();
  direct_env["HF_HUB_CACHE"] = direct_home.path() + "/hub";
  direct_env["HF_TOKEN"] = token;
  CHECK(Download(*cli, id) == DirectRunBytes(repo, "Q8_0", direct_env));
  bool token_sent = false;
  for (const auto& r : hub.Requests()) token_sent |= r.authorization == "Bearer " + token;
  CHECK(token_sent);

  // A Hub id that cannot exist locally or on the Hub is a request error only if malformed.
  CheckJsonError(Do(*cli, "POST", kJobs, json{{"model", "not a hub id"}}.dump()), 400,
                 "malformed Hub id");
}
#endif  // HWYQUANT_SERVER_TEST_HUB
