// Quantization job manager: persistence, scheduling, child processes, progress and fan-out.
#include "pipeline/jobs.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "pipeline/progress_json.h"

extern char** environ;

namespace hwyquant::serve {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxModelLength = 4096;
constexpr size_t kMaxOptionLength = 4096;
constexpr size_t kMaxQueuedEvents = 20000;
constexpr size_t kStderrTailLines = 12;
// Per-tensor statistics of a completed job (GET .../stats), next to its output.
constexpr const char* kStatsFileName = "stats.json";
constexpr size_t kMaxStatsTensors = 1 << 20;
// Stop: SIGTERM, then SIGKILL if the child is still there after this long.
constexpr auto kTermGrace = std::chrono::milliseconds(400);

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NewUuid() {
  unsigned char b[16];
  std::random_device rd;  // /dev/urandom on Linux
  for (int i = 0; i < 16; i += 4) {
    uint32_t v = rd();
    std::memcpy(b + i, &v, 4);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Lower-case alphanumerics and single hyphens: safe as a file or model name.
std::string SanitizeName(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

const char* KindName(ModelKind kind) {
  switch (kind) {
    case ModelKind::kHfFolder:
      return "hf_folder";
    case ModelKind::kGguf:
      return "gguf";
    case ModelKind::kHubId:
      return "hub";
  }
  return "hf_folder";
}

ModelKind KindFromName(const std::string& name) {
  if (name == "gguf") return ModelKind::kGguf;
  if (name == "hub") return ModelKind::kHubId;
  return ModelKind::kHfFolder;
}

bool LooksLikeHubId(const std::string& s) {
  static const std::regex re(
      R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$)");
  return std::regex_match(s, re) && s.find("..") == std::string::npos;
}

bool HasGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

// Per-tensor statistics cost a dequantize and a matrix product per tensor; on by default so the
// web page's quality view works, off with extra_options.stats = "false" (validated on create).
std::optional<bool> ParseStatsOption(const std::string& value) {
  const std::string v = Lower(value);
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return std::nullopt;
}

bool WantsStats(const JobRecord& job) {
  auto it = job.extra_options.find("stats");
  return it == job.extra_options.end() || ParseStatsOption(it->second).value_or(true);
}

// Output file name: "<model base>-<TYPE>.gguf".
std::string OutputFileName(const JobRecord& job) {
  std::string base = job.model_source;
  while (!base.empty() && base.back() == '/') base.pop_back();
  base = base.substr(base.find_last_of('/') + 1);
  if (job.kind == ModelKind::kGguf && base.size() > 5 &&
      Lower(base.substr(base.size() - 5)) == ".gguf") {
    base.resize(base.size() - 5);
  }
  std::string clean;
  for (char c : base) {
    clean +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '-';
  }
  while (!clean.empty() && clean.front() == '.') clean.erase(clean.begin());
  if (clean.empty()) clean = "model";
  return clean + "-" + job.quantization_type + ".gguf";
}

std::string StatusForStage(const std::string& stage, const std::string& current) {
  if (stage == "downloading" || stage == "download") return kDownloading;
  if (stage == "converting" || stage == "convert" || stage == "loading" || stage == "reading") {
    return kConverting;
  }
  if (stage == "quantizing" || stage == "quantize") return kQuantizing;
  return current;
}

// Closes every descriptor above stderr in a freshly forked child (async-signal-safe).
void CloseFromThree(int max_fd) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  for (int fd = 3; fd < max_fd; ++fd) close(fd);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Presets, ids, records.

const std::vector<std::string>& QuantizationPresets() {
  static const std::vector<std::string> presets = {
      "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0",
      "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K",   "Q8_0", "F16",  "BF16",   "F32"};
  return presets;
}

std::optional<std::string> CanonicalPreset(const std::string& name) {
  std::string upper = Upper(name);
  for (const auto& p : QuantizationPresets()) {
    if (p == upper) return p;
  }
  return std::nullopt;
}

bool IsValidJobId(const std::string& id) {
  static const std::regex re(R"(^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$)");
  return id.size() == 36 && std::regex_match(id, re);
}

bool IsTerminalStatus(const std::string& status) {
  return status == kCompleted || status == kFailed || status == kStopped;
}

nlohmann::json RecordMetrics(const std::map<std::string, double>& metrics) {
  nlohmann::json m = nlohmann::json::object();
  for (const auto& [k, v] : metrics) m[k] = v;
  return m;
}

nlohmann::json JobRecord::ToApiJson() const {
  nlohmann::json j;
  j["id"] = id;
  j["model"] = model;
  j["backend"] = backend;
  j["quantization_type"] = Lower(quantization_type);
  j["status"] = status;
  j["message"] = message;
  j["progress_percent"] = progress_percent;
  j["output_dir"] = output_dir;
  j["output_file"] = output_file;
  nlohmann::json options = nlohmann::json::object();
  for (const auto& [k, v] : extra_options) {
    options[k] = (k == "hf_token" || k.find("token") != std::string::npos) ? "***" : v;
  }
  j["extra_options"] = options;
  j["extra_metrics"] = RecordMetrics(extra_metrics);
  j["created_at"] = created_at;
  j["updated_at"] = updated_at;
  j["attempts"] = attempts;
  if (!import_status.empty()) j["import_status"] = import_status;
  if (!import_message.empty()) j["import_message"] = import_message;
  if (!import_model_name.empty()) j["import_model_name"] = import_model_name;
  nlohmann::json config;
  config["model"] = model;
  config["backend"] = backend;
  config["quantization_type"] = Lower(quantization_type);
  config["extra_options"] = options;
  j["config"] = config;
  return j;
}

nlohmann::json JobRecord::ToStoreJson() const {
  nlohmann::json j = ToApiJson();
  j["seq"] = seq;
  j["model_source"] = model_source;
  j["kind"] = KindName(kind);
  j["quantization_type"] = quantization_type;
  nlohmann::json options = nlohmann::json::object();
  for (const auto& [k, v] : extra_options) options[k] = v;
  j["extra_options"] = options;
  j.erase("config");
  return j;
}

JobRecord JobRecord::FromStoreJson(const nlohmann::json& j) {
  JobRecord r;
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  r.id = str("id");
  r.seq = j.value("seq", int64_t{0});
  r.model = str("model");
  r.model_source = str("model_source");
  r.kind = KindFromName(str("kind"));
  r.backend = str("backend");
  r.quantization_type = str("quantization_type");
  if (auto it = j.find("extra_options"); it != j.end() && it->is_object()) {
    for (auto o = it->begin(); o != it->end(); ++o) {
      if (o.value().is_string()) r.extra_options[o.key()] = o.value().get<std::string>();
    }
  }
  r.status = str("status");
  r.message = str("message");
  r.progress_percent = j.value("progress_percent", 0.0);
  r.output_dir = str("output_dir");
  r.output_file = str("output_file");
  if (auto it = j.find("extra_metrics"); it != j.end() && it->is_object()) {
    for (auto o = it->begin(); o != it->end(); ++o) {
      if (o.value().is_number()) r.extra_metrics[o.key()] = o.value().get<double>();
    }
  }
  r.created_at = str("created_at");
  r.updated_at = str("updated_at");
  r.attempts = j.value("attempts", 0);
  r.import_status = str("import_status");
  r.import_message = str("import_message");
  r.import_model_name = str("import_model_name");
  return r;
}

nlohmann::json ProgressEventJson(const JobRecord& job) {
  nlohmann::json j;
  j["job_id"] = job.id;
  j["progress_percent"] = job.progress_percent;
  j["status"] = job.status;
  j["message"] = job.message;
  j["output_file"] = job.output_file;
  j["extra_metrics"] = RecordMetrics(job.extra_metrics);
  return j;
}

// ---------------------------------------------------------------------------------------------
// SQLite store.

JobStore::JobStore(const std::string& path) : path_(path) {
  int rc =
      sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    throw Error(path + ": cannot open job database: " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL + NORMAL: a committed job survives a killed process; only power loss may drop the
  // last progress update, which a resume recomputes anyway.
  Exec("PRAGMA journal_mode=WAL");
  Exec("PRAGMA synchronous=NORMAL");
  Exec(
      "CREATE TABLE IF NOT EXISTS jobs ("
      " id TEXT PRIMARY KEY,"
      " seq INTEGER NOT NULL,"
      " status TEXT NOT NULL,"
      " data TEXT NOT NULL)");
}

JobStore::~JobStore() {
  if (db_) sqlite3_close(db_);
}

void JobStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(path_ + ": " + msg + " (in: " + sql + ")");
  }
}

void JobStore::Put(const JobRecord& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  const char* sql = "INSERT OR REPLACE INTO jobs (id, seq, status, data) VALUES (?, ?, ?, ?)";
  if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    throw Error(path_ + ": " + sqlite3_errmsg(db_));
  }
  std::string data =
      job.ToStoreJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  sqlite3_bind_text(stmt, 1, job.id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(stmt, 2, job.seq);
  sqlite3_bind_text(stmt, 3, job.status.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 4, data.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE)
    throw Error(path_ + ": cannot save job " + job.id + ": " + sqlite3_errmsg(db_));
}

void JobStore::Remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM jobs WHERE id = ?", -1, &stmt, nullptr) != SQLITE_OK) {
    throw Error(path_ + ": " + sqlite3_errmsg(db_));
  }
  sqlite3_bind_text(stmt, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE)
    throw Error(path_ + ": cannot delete job " + id + ": " + sqlite3_errmsg(db_));
}

std::vector<JobRecord> JobStore::LoadAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<JobRecord> jobs;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id, data FROM jobs ORDER BY seq", -1, &stmt, nullptr) !=
      SQLITE_OK) {
    throw Error(path_ + ": " + sqlite3_errmsg(db_));
  }
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const char* id = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    const char* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
    nlohmann::json j = nlohmann::json::parse(data ? data : "", nullptr, false);
    if (!j.is_object() || !id || !IsValidJobId(id)) {
      std::fprintf(stderr, "hwyquant serve: %s: skipping unreadable job row %s\n", path_.c_str(),
                   id ? id : "(null)");
      continue;
    }
    JobRecord r = JobRecord::FromStoreJson(j);
    r.id = id;
    jobs.push_back(std::move(r));
  }
  sqlite3_finalize(stmt);
  return jobs;
}

// ---------------------------------------------------------------------------------------------
// Subscriptions.

void Subscription::Push(std::string event, bool last) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ended_) return;
    if (events_.size() >= kMaxQueuedEvents) {
      // A client this far behind is gone in all but name; end its stream rather than grow.
      overflowed_ = true;
      ended_ = true;
    } else {
      events_.push_back(std::move(event));
      if (last) ended_ = true;
    }
  }
  cv_.notify_all();
}

Subscription::Result Subscription::Next(std::string* event, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty() || ended_; });
  if (!events_.empty()) {
    *event = std::move(events_.front());
    events_.pop_front();
    return Result::kEvent;
  }
  return ended_ ? Result::kEnd : Result::kTimeout;
}

// ---------------------------------------------------------------------------------------------
// Progress tracking: maps the child's per-stage work counts onto one monotonic percentage.

class JobManager::Tracker {
 public:
  // Phases by what the job has to do. `hwyquant run` streams safetensors through the quantizer in
  // one pass, so converting and quantizing share one phase measured in weights processed; a Hub
  // model first spends its time downloading, measured in bytes. Within a phase the child reports
  // real work units, so the bar moves with cost, not with step count.
  void Plan(ModelKind kind, const std::string& /*type*/) {
    phases_.clear();
    if (kind == ModelKind::kHubId) phases_.push_back({{kDownloading}, 0.4});
    phases_.push_back({{kConverting, kQuantizing}, kind == ModelKind::kHubId ? 0.6 : 1.0});
  }

  // Percent for `status` with fraction `frac` of its phase done; earlier phases count as done.
  // -1 for a status outside the plan (the caller leaves the percentage where it is).
  double Percent(const std::string& status, double frac) const {
    double before = 0;
    for (const auto& phase : phases_) {
      if (std::find(phase.statuses.begin(), phase.statuses.end(), status) != phase.statuses.end()) {
        return 100.0 * (before + phase.weight * std::clamp(frac, 0.0, 1.0));
      }
      before += phase.weight;
    }
    return -1;
  }

 private:
  struct Phase {
    std::vector<std::string> statuses;
    double weight;
  };
  std::vector<Phase> phases_;
};

struct JobManager::Job {
  JobRecord rec;
  Tracker tracker;
  pid_t pid = -1;
  bool claimed = false;         // a worker owns it
  bool stop_requested = false;  // by the user: ends as "stopped"
  std::vector<std::shared_ptr<Subscription>> subs;
  Clock::time_point attempt_start;
  Clock::time_point stage_start;
  Clock::time_point last_persist;
  std::string error_message;  // from a {"stage":"error"} line
  std::deque<std::string> stderr_tail;
  nlohmann::json tensor_stats = nlohmann::json::array();  // from {"stage":"tensor_stats"} lines
};

// ---------------------------------------------------------------------------------------------
// Manager.

JobManager::JobManager(ManagerOptions options) : options_(std::move(options)) {
  if (options_.max_concurrent < 1) options_.max_concurrent = 1;
  std::error_code ec;
  if (options_.data_dir.empty()) throw Error("hwyquant serve: empty data directory");
  // Children run inside their job directory, so every path handed to them must be absolute.
  options_.data_dir = fs::absolute(options_.data_dir, ec).lexically_normal().string();
  while (options_.data_dir.size() > 1 && options_.data_dir.back() == '/') {
    options_.data_dir.pop_back();
  }
  fs::create_directories(options_.data_dir + "/jobs", ec);
  fs::create_directories(options_.data_dir + "/models", ec);
  if (ec) throw Error(options_.data_dir + ": cannot create data directory: " + ec.message());
  ::chmod(options_.data_dir.c_str(), 0700);  // the database holds Hugging Face tokens
  std::string lock_path = options_.data_dir + "/serve.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) throw Error(lock_path + ": cannot open: " + std::strerror(errno));
  // The kernel drops an flock with its process, so a kill -9'd server never blocks a restart.
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw Error(options_.data_dir + ": another hwyquant serve is using this data directory");
  }
  store_ = std::make_unique<JobStore>(options_.data_dir + "/jobs.db");
  ::chmod((options_.data_dir + "/jobs.db").c_str(), 0600);
}

JobManager::~JobManager() {
  Shutdown();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string JobManager::JobDir(const std::string& id) const {
  return options_.data_dir + "/jobs/" + id;
}

void JobManager::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return;
  started_ = true;
  for (JobRecord& rec : store_->LoadAll()) {
    auto job = std::make_shared<Job>();
    next_seq_ = std::max(next_seq_, rec.seq + 1);
    if (!IsTerminalStatus(rec.status) && rec.status != kQueued) {
      // The previous server died (or was shut down) mid-job: run it again from the start.
      RemovePartialFiles(rec);
      rec.status = kQueued;
      rec.message = "resuming after server restart";
      rec.updated_at = NowRfc3339();
    }
    job->rec = std::move(rec);
    job->tracker.Plan(job->rec.kind, job->rec.quantization_type);
    store_->Put(job->rec);
    jobs_[job->rec.id] = job;
    if (job->rec.import_status == "importing") {
      // The server died mid-import: place the model again from the start.
      importers_.emplace_back(
          [this, job, name = job->rec.import_model_name] { RunImport(job, name); });
    }
  }
  for (int i = 0; i < options_.max_concurrent; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

void JobManager::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& [id, job] : jobs_) {
      if (job->pid > 0) ::kill(-job->pid, SIGTERM);
    }
  }
  work_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  // Imports are local copies; they finish rather than leave a half-placed model.
  std::vector<std::thread> importers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    importers.swap(importers_);
  }
  for (auto& t : importers) t.join();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [id, job] : jobs_) {
    for (auto& sub : job->subs) sub->Push(ProgressEventJson(job->rec).dump(), /*last=*/true);
    job->subs.clear();
  }
}

void JobManager::RemovePartialFiles(const JobRecord& job) {
  // Everything in the job directory except a finished output is scratch from an attempt.
  std::string dir = JobDir(job.id);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (job.status == kCompleted &&
        (entry.path().string() == job.output_file || name == kStatsFileName)) {
      continue;
    }
    if (name == "job.log") continue;
    fs::remove_all(entry.path(), ec);
  }
}

JobRecord JobManager::Create(const nlohmann::json& request) {
  if (!request.is_object()) throw ApiError(400, "request body must be a JSON object");
  JobRecord rec;
  auto model_it = request.find("model");
  if (model_it == request.end() || !model_it->is_string() || model_it->get<std::string>().empty()) {
    throw ApiError(400, "model is required");
  }
  rec.model = model_it->get<std::string>();
  if (rec.model.size() > kMaxModelLength || rec.model.find('\0') != std::string::npos) {
    throw ApiError(400, "model is too long or contains NUL");
  }
  rec.backend = "hwyquant";
  if (auto it = request.find("backend"); it != request.end() && !it->is_null()) {
    if (!it->is_string()) throw ApiError(400, "backend must be a string");
    std::string b = it->get<std::string>();
    if (!b.empty()) {
      // LocalAI clients name llama.cpp's backend; hwyquant writes the same bytes.
      if (b != "hwyquant" && b != "llama-cpp-quantization" && b != "llama-cpp") {
        throw ApiError(400,
                       "unknown backend '" + b + "' (available: hwyquant, llama-cpp-quantization)");
      }
      rec.backend = b;
    }
  }
  std::string type = "q4_k_m";  // LocalAI's default
  if (auto it = request.find("quantization_type"); it != request.end() && !it->is_null()) {
    if (!it->is_string()) throw ApiError(400, "quantization_type must be a string");
    if (!it->get<std::string>().empty()) type = it->get<std::string>();
  }
  auto canonical = CanonicalPreset(type);
  if (!canonical) {
    std::string list;
    for (const auto& p : QuantizationPresets()) list += (list.empty() ? "" : ", ") + Lower(p);
    throw ApiError(400,
                   "unknown quantization_type '" + type.substr(0, 64) + "' (valid: " + list + ")");
  }
  rec.quantization_type = *canonical;
  if (auto it = request.find("extra_options"); it != request.end() && !it->is_null()) {
    if (!it->is_object()) throw ApiError(400, "extra_options must be an object of strings");
    for (auto o = it->begin(); o != it->end(); ++o) {
      if (!o.value().is_string()) {
        throw ApiError(400, "extra_options." + o.key().substr(0, 64) + " must be a string");
      }
      if (o.key().size() > 128 || o.value().get<std::string>().size() > kMaxOptionLength) {
        throw ApiError(400, "extra_options entry too long");
      }
      rec.extra_options[o.key()] = o.value().get<std::string>();
    }
    if (auto stats = rec.extra_options.find("stats");
        stats != rec.extra_options.end() && !ParseStatsOption(stats->second)) {
      throw ApiError(400, "extra_options.stats must be \"true\" or \"false\"");
    }
  }

  // Decide what the model is now, so a typo fails the request instead of the job.
  struct stat st {};
  if (::stat(rec.model.c_str(), &st) == 0) {
    std::error_code ec;
    rec.model_source = fs::absolute(fs::path(rec.model), ec).lexically_normal().string();
    if (S_ISDIR(st.st_mode)) {
      if (!fs::exists(fs::path(rec.model_source) / "config.json", ec)) {
        throw ApiError(400, "model folder " + rec.model + " has no config.json");
      }
      rec.kind = ModelKind::kHfFolder;
    } else if (S_ISREG(st.st_mode) && HasGgufMagic(rec.model)) {
      rec.kind = ModelKind::kGguf;
    } else {
      throw ApiError(400,
                     "model " + rec.model + " is neither a Hugging Face folder nor a GGUF file");
    }
  } else if (rec.model[0] != '/' && rec.model[0] != '.' && rec.model[0] != '~' &&
             LooksLikeHubId(rec.model)) {
    rec.kind = ModelKind::kHubId;
    rec.model_source = rec.model;
  } else {
    throw ApiError(400, "model not found: " + rec.model.substr(0, 256) +
                            " (expected a local folder, a .gguf file or a Hub id ORG/NAME)");
  }

  rec.id = NewUuid();
  rec.status = kQueued;
  rec.message = "queued";
  rec.created_at = rec.updated_at = NowRfc3339();
  rec.output_dir = JobDir(rec.id);

  auto job = std::make_shared<Job>();
  job->tracker.Plan(rec.kind, rec.quantization_type);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutting_down_) throw ApiError(503, "server is shutting down");
    rec.seq = next_seq_++;
    job->rec = rec;
    std::error_code ec;
    fs::create_directories(rec.output_dir, ec);
    if (ec) throw ApiError(500, rec.output_dir + ": cannot create job directory: " + ec.message());
    store_->Put(job->rec);
    jobs_[rec.id] = job;
  }
  work_cv_.notify_one();
  return rec;
}

std::optional<JobRecord> JobManager::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second->rec;
}

std::vector<JobRecord> JobManager::List() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<JobRecord> out;
  for (const auto& [id, job] : jobs_) out.push_back(job->rec);
  std::sort(out.begin(), out.end(),
            [](const JobRecord& a, const JobRecord& b) { return a.seq < b.seq; });
  return out;
}

void JobManager::Persist(Job& job) {
  job.rec.updated_at = NowRfc3339();
  job.last_persist = Clock::now();
  try {
    store_->Put(job.rec);
  } catch (const std::exception& e) {
    // A full disk must not take the server down; the job state stays in memory.
    std::fprintf(stderr, "hwyquant serve: %s\n", e.what());
  }
}

void JobManager::Publish(Job& job, bool persist_now) {
  bool terminal = IsTerminalStatus(job.rec.status);
  // Progress ticks are persisted at most every half second; status changes at once.
  if (persist_now || terminal || Clock::now() - job.last_persist > std::chrono::milliseconds(500)) {
    Persist(job);
  }
  std::string event =
      ProgressEventJson(job.rec).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (auto& sub : job.subs) sub->Push(event, terminal);
  if (terminal) job.subs.clear();
}

std::shared_ptr<Subscription> JobManager::Subscribe(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return nullptr;
  auto sub = std::make_shared<Subscription>();
  Job& job = *it->second;
  bool terminal = IsTerminalStatus(job.rec.status);
  sub->Push(
      ProgressEventJson(job.rec).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
      terminal || shutting_down_);
  if (!terminal && !shutting_down_) job.subs.push_back(sub);
  return sub;
}

void JobManager::Unsubscribe(const std::string& id, const std::shared_ptr<Subscription>& sub) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  auto& subs = it->second->subs;
  subs.erase(std::remove(subs.begin(), subs.end(), sub), subs.end());
}

JobRecord JobManager::Stop(const std::string& id) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) throw ApiError(404, "job not found: " + id);
  std::shared_ptr<Job> job = it->second;
  if (IsTerminalStatus(job->rec.status)) {
    throw ApiError(409, "job " + id + " is not running (status: " + job->rec.status + ")");
  }
  job->stop_requested = true;
  if (!job->claimed) {
    job->rec.status = kStopped;
    job->rec.message = "stopped by user before it started";
    Publish(*job, true);
    return job->rec;
  }
  if (job->pid > 0) ::kill(-job->pid, SIGTERM);
  // The worker escalates to SIGKILL and cleans up; wait for it so the caller sees the end state.
  state_cv_.wait_for(lock, std::chrono::seconds(5),
                     [&] { return IsTerminalStatus(job->rec.status) && !job->claimed; });
  if (!IsTerminalStatus(job->rec.status)) {
    throw ApiError(500, "job " + id + " did not stop within 5 s");
  }
  return job->rec;
}

void JobManager::Delete(const std::string& id) {
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw ApiError(404, "job not found: " + id);
    job = it->second;
    if (!IsTerminalStatus(job->rec.status) || job->claimed) {
      throw ApiError(
          409, "cannot delete job " + id + " while it is " + job->rec.status + "; stop it first");
    }
    if (job->rec.import_status == "importing") {
      throw ApiError(409, "cannot delete job " + id + " while its import runs");
    }
    store_->Remove(id);
    jobs_.erase(it);
    for (auto& sub : job->subs) sub->Push(ProgressEventJson(job->rec).dump(), true);
    job->subs.clear();
  }
  std::error_code ec;
  fs::remove_all(JobDir(id), ec);
  if (!job->rec.import_model_name.empty()) {
    // The imported copy goes with the job, as in LocalAI.
    fs::remove_all(models_dir() + "/" + job->rec.import_model_name, ec);
    fs::remove(models_dir() + "/" + job->rec.import_model_name + ".yaml", ec);
  }
}

std::string JobManager::OutputPath(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) throw ApiError(404, "job not found: " + id);
  const JobRecord& rec = it->second->rec;
  if (rec.status != kCompleted) {
    throw ApiError(409, "job " + id + " is not completed (status: " + rec.status + ")");
  }
  std::error_code ec;
  if (rec.output_file.empty() || !fs::is_regular_file(rec.output_file, ec)) {
    throw ApiError(404, "output file of job " + id + " is missing");
  }
  return rec.output_file;
}

nlohmann::json JobManager::Stats(const std::string& id) {
  std::string path;
  std::string type;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw ApiError(404, "job not found: " + id);
    const JobRecord& rec = it->second->rec;
    if (rec.status != kCompleted) {
      throw ApiError(409, "job " + id + " is not completed (status: " + rec.status + ")");
    }
    path = JobDir(id) + "/" + kStatsFileName;
    type = rec.quantization_type;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ApiError(404, "job " + id + " has no per-tensor statistics");
  nlohmann::json tensors = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!tensors.is_array()) throw ApiError(500, path + ": unreadable statistics file");
  return {{"job_id", id}, {"quantization_type", Lower(type)}, {"tensors", std::move(tensors)}};
}

std::string JobManager::Import(const std::string& id, const std::string& requested_name) {
  static const std::regex name_re(R"(^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$)");
  std::shared_ptr<Job> job;
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw ApiError(404, "job not found: " + id);
    job = it->second;
    if (job->rec.status != kCompleted) {
      throw ApiError(409, "job " + id + " is not completed (status: " + job->rec.status + ")");
    }
    if (job->rec.import_status == "importing") {
      throw ApiError(409, "import already in progress for job " + id);
    }
    name = requested_name;
    if (name.empty()) {
      std::string base = SanitizeName(
          job->rec.model_source.substr(job->rec.model_source.find_last_of('/') == std::string::npos
                                           ? 0
                                           : job->rec.model_source.find_last_of('/') + 1));
      if (base.empty()) base = "model";
      name = base + "-" + Lower(job->rec.quantization_type) + "-" + id.substr(0, 8);
    }
    if (!std::regex_match(name, name_re) || name.find("..") != std::string::npos) {
      throw ApiError(400, "invalid model name '" + name.substr(0, 64) +
                              "': use letters, digits, '.', '_' and '-' (at most 128)");
    }
    std::error_code ec;
    // Another import may hold the name without its files on disk yet.
    bool taken = fs::exists(models_dir() + "/" + name + ".yaml", ec) ||
                 fs::exists(models_dir() + "/" + name, ec);
    for (const auto& [other_id, other] : jobs_) {
      taken |= other->rec.import_status == "importing" && other->rec.import_model_name == name;
    }
    if (taken) {
      throw ApiError(409, "model '" + name + "' already exists, choose a different name");
    }
    if (shutting_down_) throw ApiError(503, "the server is shutting down");
    job->rec.import_status = "importing";
    job->rec.import_message = "copying quantized model";
    job->rec.import_model_name = name;
    Persist(*job);
    importers_.emplace_back([this, job, name] { RunImport(job, name); });
  }
  return name;
}

void JobManager::RunImport(const std::shared_ptr<Job>& job, const std::string& name) {
  std::string src;
  std::string source_model;
  std::string type;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    src = job->rec.output_file;
    source_model = job->rec.model;
    type = job->rec.quantization_type;
  }
  const std::string file_name = fs::path(src).filename().string();
  const std::string model_dir = models_dir() + "/" + name;
  const std::string dst = model_dir + "/" + file_name;
  const std::string yaml_path = models_dir() + "/" + name + ".yaml";
  std::string failure;
  std::error_code ec;
  // Import() made sure the name was free, so anything here is a dead server's partial copy.
  fs::remove_all(model_dir, ec);
  fs::create_directories(model_dir, ec);
  if (ec) failure = model_dir + ": " + ec.message();
  if (failure.empty()) {
    // A hard link is instant and shares the bytes; copy across file systems.
    std::string tmp = dst + ".tmp";
    fs::remove(tmp, ec);
    if (::link(src.c_str(), tmp.c_str()) != 0) {
      fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
      if (ec) failure = "cannot copy " + src + " to " + tmp + ": " + ec.message();
    }
    if (failure.empty()) {
      fs::rename(tmp, dst, ec);
      if (ec) failure = "cannot rename " + tmp + ": " + ec.message();
    }
  }
  if (failure.empty()) {
    // LocalAI model config: llama.cpp backend, model path relative to the models directory.
    std::string yaml = "name: " + name + "\nbackend: llama-cpp\nparameters:\n  model: " + name +
                       "/" + file_name + "\n# quantized by hwyquant serve, job " + job->rec.id +
                       ", type " + type + ", from " + source_model + "\n";
    std::string tmp = yaml_path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << yaml;
      if (!out.flush()) failure = tmp + ": cannot write model config";
    }
    if (failure.empty()) {
      fs::rename(tmp, yaml_path, ec);
      if (ec) failure = "cannot rename " + tmp + ": " + ec.message();
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!failure.empty()) {
    fs::remove_all(model_dir, ec);
    job->rec.import_status = "failed";
    job->rec.import_message = "import failed: " + failure;
    job->rec.import_model_name.clear();
  } else {
    job->rec.import_status = "completed";
    job->rec.import_message = "imported as " + name;
  }
  Persist(*job);
}

// ---------------------------------------------------------------------------------------------
// Workers and child processes.

void JobManager::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] {
        if (shutting_down_) return true;
        for (auto& [id, j] : jobs_) {
          if (j->rec.status == kQueued && !j->claimed) return true;
        }
        return false;
      });
      if (shutting_down_) return;
      for (auto& [id, j] : jobs_) {
        if (j->rec.status == kQueued && !j->claimed && (!job || j->rec.seq < job->rec.seq)) {
          job = j;
        }
      }
      job->claimed = true;
      job->stop_requested = false;
      job->error_message.clear();
      job->stderr_tail.clear();
      job->rec.attempts++;
      job->rec.extra_metrics.clear();
      job->tensor_stats = nlohmann::json::array();
      job->rec.status = job->rec.kind == ModelKind::kHubId  ? kDownloading
                        : job->rec.kind == ModelKind::kGguf ? kQuantizing
                                                            : kConverting;
      job->rec.message = job->rec.attempts > 1
                             ? "restarted (attempt " + std::to_string(job->rec.attempts) + ")"
                             : "started";
      job->attempt_start = job->stage_start = Clock::now();
      Publish(*job, true);
    }
    RunJob(job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job->claimed = false;
    }
    state_cv_.notify_all();
    work_cv_.notify_all();
  }
}

void JobManager::HandleChildLine(Job& job, const std::string& line) {
  std::optional<ProgressEvent> event = ParseProgressLine(line);
  if (!event) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) return;
    job.stderr_tail.push_back(line.substr(0, 1000));
    if (job.stderr_tail.size() > kStderrTailLines) job.stderr_tail.pop_front();
    return;
  }
  if (event->stage == "error") {
    job.error_message = event->message;
    return;
  }
  if (event->stage == "tensor_stats") {
    // --stats: one line per tensor, kept for GET .../stats rather than shown as progress.
    if (job.tensor_stats.size() < kMaxStatsTensors) {
      nlohmann::json t = {{"name", event->tensor}, {"type", event->message}};
      for (const auto& [key, value] : event->metrics) {
        if (key != "elapsed_seconds") t[key] = value;
      }
      job.tensor_stats.push_back(std::move(t));
    }
    return;
  }
  JobRecord& rec = job.rec;
  auto now = Clock::now();
  std::string new_status = StatusForStage(event->stage, rec.status);
  bool status_changed = new_status != rec.status;
  if (status_changed) {
    rec.status = new_status;
    job.stage_start = now;
  }
  double frac = event->total > 0 ? static_cast<double>(event->done) / event->total : 0.0;
  if (event->stage == "done") frac = 1.0;
  double pct = job.tracker.Percent(rec.status, frac);
  // 100 means the output is in place; the child's last line comes before the rename.
  pct = std::min(pct, 99.0);
  if (pct > rec.progress_percent) rec.progress_percent = pct;
  if (!event->message.empty()) rec.message = event->message;

  double elapsed = std::chrono::duration<double>(now - job.attempt_start).count();
  double stage_elapsed = std::chrono::duration<double>(now - job.stage_start).count();
  rec.extra_metrics["elapsed_seconds"] = elapsed;
  if (event->tensor_count > 0) {
    rec.extra_metrics["tensors_done"] = static_cast<double>(event->tensor_index);
    rec.extra_metrics["tensors_total"] = static_cast<double>(event->tensor_count);
  }
  if (stage_elapsed > 0 && event->done > 0) {
    double rate = static_cast<double>(event->done) / stage_elapsed;
    if (event->unit == "bytes") {
      rec.extra_metrics["throughput_mb_per_s"] = rate / 1e6;
    } else if (event->unit == "weights") {
      rec.extra_metrics["throughput_weights_per_s"] = rate;
    } else if (event->unit == "tensors") {
      rec.extra_metrics["throughput_tensors_per_s"] = rate;
    }
  }
  for (const auto& [key, value] : event->metrics) {
    if (key == "bytes_written" || key == "output_bytes") {
      rec.extra_metrics["file_size_mb"] = value / 1e6;
    } else if (key == "bits_per_weight" || key == "n_weights") {
      rec.extra_metrics[key] = value;
    }
  }
  Publish(job, status_changed);
}

void JobManager::RunJob(const std::shared_ptr<Job>& job) {
  std::string dir;
  std::string final_path;
  std::string partial_path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const JobRecord& rec = job->rec;
    dir = JobDir(rec.id);
    final_path = dir + "/" + OutputFileName(rec);
    partial_path = final_path + ".partial";
    RemovePartialFiles(rec);
    args.push_back("hwyquant");
    if (rec.kind == ModelKind::kGguf) {
      args.insert(args.end(), {"quantize", rec.model_source, partial_path, rec.quantization_type,
                               "--progress-json"});
    } else {
      args.insert(args.end(), {"run", rec.model_source, rec.quantization_type, "-o", partial_path,
                               "--progress-json"});
    }
    if (WantsStats(rec)) {
      args.push_back("--stats");  // per-tensor errors for GET .../stats (the quality view)
    }
    if (auto it = rec.extra_options.find("imatrix");
        it != rec.extra_options.end() && !it->second.empty()) {
      args.insert(args.end(), {"--imatrix", it->second});  // the web form's importance matrix
    }
    for (char** e = environ; *e; ++e) {
      if (std::strncmp(*e, "HF_TOKEN=", 9) != 0) env.emplace_back(*e);
    }
    // The token travels in the environment, never on a command line other users can read.
    if (auto it = rec.extra_options.find("hf_token");
        it != rec.extra_options.end() && !it->second.empty()) {
      env.push_back("HF_TOKEN=" + it->second);
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);

  auto finish = [&](const std::string& status, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    job->pid = -1;
    job->rec.status = status;
    job->rec.message = message;
    if (status != kCompleted) RemovePartialFiles(job->rec);
    Publish(*job, true);
  };

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    finish(kFailed, std::string("cannot create pipe: ") + std::strerror(errno));
    return;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string log_path = dir + "/job.log";
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int max_fd = static_cast<int>(std::min<long>(sysconf(_SC_OPEN_MAX), 65536));
  pid_t parent = ::getpid();
  const char* exe = options_.exe_path.c_str();
  const char* cwd = dir.c_str();

  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);  // its own group, so a stop reaches anything it spawns
    // The server blocks its shutdown signals and ignores SIGPIPE; exec keeps both, so undo them.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a kill -9'd server takes its children along
    if (::getppid() != parent) _exit(127);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    CloseFromThree(max_fd);
    if (::chdir(cwd) != 0) _exit(127);
    ::execve(exe, argv.data(), envp.data());
    const char msg[] = "hwyquant serve: cannot execute the hwyquant binary\n";
    ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(127);
  }
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    if (log_fd >= 0) ::close(log_fd);
    finish(kFailed, std::string("cannot start child process: ") + std::strerror(errno));
    return;
  }
  ::setpgid(pid, pid);  // also from the parent: no window where kill(-pid) misses
  bool user_stop = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job->pid = pid;
    if (job->stop_requested || shutting_down_) ::kill(-pid, SIGTERM);
  }

  std::string buffer;
  char chunk[65536];
  std::optional<Clock::time_point> term_sent;
  bool killed = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if ((job->stop_requested || shutting_down_) && !term_sent) {
        ::kill(-pid, SIGTERM);
        term_sent = Clock::now();
      }
    }
    if (term_sent && !killed && Clock::now() - *term_sent > kTermGrace) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    int pr = ::poll(&pfd, 1, 50);
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    ssize_t n = ::read(pipe_fds[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child (and anything holding the pipe) is gone
    if (log_fd >= 0) {
      ssize_t ignored = ::write(log_fd, chunk, static_cast<size_t>(n));
      (void)ignored;
    }
    buffer.append(chunk, static_cast<size_t>(n));
    size_t pos;
    std::lock_guard<std::mutex> lock(mutex_);
    while ((pos = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, pos);
      buffer.erase(0, pos + 1);
      if (!job->stop_requested && !shutting_down_) HandleChildLine(*job, line);
    }
    if (buffer.size() > (1 << 20)) buffer.clear();  // a runaway line is not protocol
  }
  ::close(pipe_fds[0]);
  if (log_fd >= 0) ::close(log_fd);
  int wstatus = 0;
  // EOF came; reap. Bounded: escalate if a child closed its stderr but keeps running.
  for (int i = 0;; ++i) {
    pid_t r = ::waitpid(pid, &wstatus, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (i == 20) ::kill(-pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ::kill(-pid, SIGKILL);  // stragglers in the group

  bool shutdown;
  std::string error_message;
  std::deque<std::string> tail;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    user_stop = job->stop_requested;
    shutdown = shutting_down_;
    error_message = job->error_message;
    tail = job->stderr_tail;
  }
  if (user_stop) {
    finish(kStopped, "stopped by user");
    return;
  }
  if (shutdown) {
    // Leave the job in its running status: the next server start resumes it.
    std::lock_guard<std::mutex> lock(mutex_);
    job->pid = -1;
    RemovePartialFiles(job->rec);
    job->rec.message = "interrupted by server shutdown; resumes on restart";
    Persist(*job);
    return;
  }
  bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
  if (ok && !fs::is_regular_file(partial_path, ec)) {
    ok = false;
    error_message = "the hwyquant child exited without writing " + partial_path;
  }
  if (!ok) {
    std::string msg = error_message;
    if (msg.empty()) {
      for (const auto& l : tail) msg += (msg.empty() ? "" : "\n") + l;
    }
    std::string how = WIFEXITED(wstatus)     ? "exit status " + std::to_string(WEXITSTATUS(wstatus))
                      : WIFSIGNALED(wstatus) ? std::string("signal ") + strsignal(WTERMSIG(wstatus))
                                             : "unknown status";
    finish(kFailed, "quantization failed (" + how + ")" + (msg.empty() ? "" : ": " + msg));
    return;
  }
  std::string stats_text;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!job->tensor_stats.empty()) {
      stats_text = job->tensor_stats.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  if (!stats_text.empty()) {
    // Written before the output appears, so a completed job never lacks the statistics it has.
    std::string tmp = dir + "/" + kStatsFileName + ".tmp";
    std::ofstream(tmp, std::ios::binary | std::ios::trunc) << stats_text;
    fs::rename(tmp, dir + "/" + kStatsFileName, ec);
    if (ec) std::fprintf(stderr, "hwyquant serve: %s: %s\n", tmp.c_str(), ec.message().c_str());
  }
  fs::rename(partial_path, final_path, ec);
  if (ec) {
    finish(kFailed, "cannot rename " + partial_path + ": " + ec.message());
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  job->pid = -1;
  JobRecord& rec = job->rec;
  rec.status = kCompleted;
  rec.progress_percent = 100;
  rec.output_file = final_path;
  rec.message = "quantized " + rec.model + " to " + rec.quantization_type + ": " + final_path;
  uintmax_t size = fs::file_size(final_path, ec);
  if (!ec) rec.extra_metrics["file_size_mb"] = static_cast<double>(size) / 1e6;
  rec.extra_metrics["elapsed_seconds"] =
      std::chrono::duration<double>(Clock::now() - job->attempt_start).count();
  Publish(*job, true);
}

}  // namespace hwyquant::serve
