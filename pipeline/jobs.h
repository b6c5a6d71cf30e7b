// Quantization jobs for `hwyquant serve`: SQLite persistence, a worker pool running the hwyquant
// CLI as child processes, progress tracking and fan-out of progress events to subscribers.
#ifndef HWYQUANT_PIPELINE_JOBS_H_
#define HWYQUANT_PIPELINE_JOBS_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/sibling_program.h"

struct sqlite3;

namespace hwyquant::serve {

// A failure that maps onto an HTTP status (400 bad request, 404 unknown job, 409 wrong state...).
class ApiError : public Error {
 public:
  ApiError(int http_status, const std::string& message)
      : Error(message), http_status_(http_status) {}
  int http_status() const { return http_status_; }

 private:
  int http_status_;
};

// The presets a job may ask for, canonical upper-case spelling ("Q4_K_M").
const std::vector<std::string>& QuantizationPresets();
// Canonical spelling of a preset given in any case, or nullopt when it is not one.
std::optional<std::string> CanonicalPreset(const std::string& name);

// True for ids this server hands out (lower-case UUID v4 text); everything else, including anything
// with '/' or '.', is rejected before it gets near a path.
bool IsValidJobId(const std::string& id);

// Job statuses, LocalAI's names.
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kDownloading = "downloading";
inline constexpr const char* kConverting = "converting";
inline constexpr const char* kQuantizing = "quantizing";
inline constexpr const char* kCompleted = "completed";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kStopped = "stopped";

bool IsTerminalStatus(const std::string& status);

// What `model` named when the job was created.
enum class ModelKind { kHfFolder, kGguf, kHubId };

// Everything persisted about a job. API field names follow LocalAI's QuantizationJob.
struct JobRecord {
  std::string id;
  int64_t seq = 0;           // creation order, for FIFO scheduling across restarts
  std::string model;         // as requested
  std::string model_source;  // absolute path for local models, the Hub id otherwise
  ModelKind kind = ModelKind::kHfFolder;
  std::string backend;
  std::string quantization_type;                     // canonical preset, e.g. "Q4_K_M"
  std::map<std::string, std::string> extra_options;  // may hold hf_token: never sent back
  std::string status = kQueued;
  std::string message;
  double progress_percent = 0;
  std::string output_dir;
  std::string output_file;
  std::map<std::string, double> extra_metrics;
  std::string created_at;
  std::string updated_at;
  int attempts = 0;  // child processes started; > 1 after a resume
  std::string import_status;
  std::string import_message;
  std::string import_model_name;

  nlohmann::json ToApiJson() const;    // secrets masked
  nlohmann::json ToStoreJson() const;  // everything
  static JobRecord FromStoreJson(const nlohmann::json& j);
};

// The SSE payload for a job's current state: {job_id, progress_percent, status, message,
// output_file, extra_metrics}.
nlohmann::json ProgressEventJson(const JobRecord& job);

// Jobs table in SQLite (WAL), one JSON document per job. Thread-safe.
class JobStore {
 public:
  explicit JobStore(const std::string& path);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  void Put(const JobRecord& job);
  void Remove(const std::string& id);
  std::vector<JobRecord> LoadAll();

 private:
  void Exec(const char* sql);
  std::string path_;
  sqlite3* db_ = nullptr;
  std::mutex mutex_;
};

// One SSE client's queue: every event of the job, in order, from the moment it subscribed.
class Subscription {
 public:
  enum class Result { kEvent, kTimeout, kEnd };
  // Waits up to `timeout` for the next event.
  Result Next(std::string* event, std::chrono::milliseconds timeout);

 private:
  friend class JobManager;
  void Push(std::string event, bool last);
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> events_;
  bool ended_ = false;
  bool overflowed_ = false;
};

struct ManagerOptions {
  std::string data_dir;
  int max_concurrent = 1;
  // The hwyquant CLI that runs each job: the one installed beside this server (hwyquant-serve).
  std::string exe_path = SiblingProgram("hwyquant");
};

class JobManager {
 public:
  explicit JobManager(ManagerOptions options);
  ~JobManager();
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Loads persisted jobs, re-queues those a dead server left running, starts the workers.
  void Start();
  // Kills running children and joins workers. Interrupted jobs keep their non-terminal status, so
  // the next Start() resumes them.
  void Shutdown();

  // Validates a LocalAI QuantizationJobRequest and queues the job. Throws ApiError(400).
  JobRecord Create(const nlohmann::json& request);
  std::optional<JobRecord> Get(const std::string& id);
  std::vector<JobRecord> List();
  // Stops a queued or running job; returns once the child is gone and partial files removed.
  JobRecord Stop(const std::string& id);
  // Deletes a finished job, its files and its imported model. Throws ApiError(409) if active.
  void Delete(const std::string& id);
  // Starts placing the output in data_dir/models with a LocalAI-style YAML config and returns the
  // model name at once; import_status goes "importing", then "completed" or "failed".
  std::string Import(const std::string& id, const std::string& requested_name);
  // Path of a completed job's GGUF. Throws ApiError 404/409.
  std::string OutputPath(const std::string& id);
  // {job_id, quantization_type, tensors: [{name, type, rmse, max_abs_error,
  // relative_output_error, n_weights, bytes}]} of a completed job: the child's --stats
  // {"stage":"tensor_stats","tensor":NAME,"message":TYPE,"metrics":{...}} lines. ApiError 404/409.
  nlohmann::json Stats(const std::string& id);

  // Subscribes to a job's progress; the first event is the current state. nullptr if unknown.
  std::shared_ptr<Subscription> Subscribe(const std::string& id);
  void Unsubscribe(const std::string& id, const std::shared_ptr<Subscription>& sub);

  const std::string& data_dir() const { return options_.data_dir; }
  std::string models_dir() const { return options_.data_dir + "/models"; }

 private:
  struct Job;
  class Tracker;

  void WorkerLoop();
  void RunJob(const std::shared_ptr<Job>& job);
  void HandleChildLine(Job& job, const std::string& line);
  // Caller holds mutex_.
  void Publish(Job& job, bool persist_now);
  void Persist(Job& job);
  std::string JobDir(const std::string& id) const;
  void RemovePartialFiles(const JobRecord& job);
  // The copy behind Import, on its own thread.
  void RunImport(const std::shared_ptr<Job>& job, const std::string& name);

  ManagerOptions options_;
  std::unique_ptr<JobStore> store_;
  int lock_fd_ = -1;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable state_cv_;  // a child exited
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  int64_t next_seq_ = 1;
  bool shutting_down_ = false;
  bool started_ = false;
  std::vector<std::thread> workers_;
  std::vector<std::thread> importers_;
};

}  // namespace hwyquant::serve

#endif  // HWYQUANT_PIPELINE_JOBS_H_
