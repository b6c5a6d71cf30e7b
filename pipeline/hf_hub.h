// Hugging Face Hub client: resolves ORG/NAME@REV, downloads what conversion needs into the cache.
//
// Speaks the same HTTP protocol as huggingface_hub (GET /api/models/REPO/revision/REV, HEAD and GET
// /REPO/resolve/COMMIT/PATH with X-Repo-Commit, X-Linked-Etag, X-Linked-Size and the LFS redirect
// to a storage host) and writes the same cache layout (hf_cache.h), so models downloaded by Python
// tools are reused and the other way round.
#ifndef HWYQUANT_PIPELINE_HF_HUB_H_
#define HWYQUANT_PIPELINE_HF_HUB_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "hwyquant/format.h"

namespace hwyquant::hf {

// Every failure of a fetch. kind() lets callers (the job server) react without parsing text.
class HubError : public Error {
 public:
  enum class Kind {
    kAuth,       // 401/403: gated or private repository, missing or refused token
    kNotFound,   // repository, revision or file does not exist
    kNetwork,    // connection, timeout or 5xx that persisted through every retry
    kChecksum,   // downloaded bytes do not match the size or hash the Hub announced
    kProtocol,   // the server answered something this client cannot use
    kNoWeights,  // the repository has no safetensors weights
    kOffline,    // offline mode and the cache does not hold the revision
    kCancelled,
    kLocal,  // cache directory not writable, disk full...
  };
  HubError(Kind kind, const std::string& message) : Error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// One progress report; `done`/`total` cover every byte this fetch has to download (files already
// in the cache are not counted), `file_*` the file named by `file`.
struct DownloadProgress {
  std::string file;  // repo-relative path
  uint64_t file_done = 0;
  uint64_t file_total = 0;  // 0 when the server did not say
  uint64_t done = 0;
  uint64_t total = 0;
  bool file_finished = false;
};
// Called from download threads, serialized by the fetcher (never concurrently), at most every
// ~100 ms per file plus once when each file finishes.
using ProgressCallback = std::function<void(const DownloadProgress&)>;
// Human-readable notes ("using cached snapshot ...", "retrying ... in 2 s").
using LogCallback = std::function<void(const std::string&)>;

struct HttpSettings {
  // Hub base URL; "" -> $HF_ENDPOINT, else https://huggingface.co.
  std::string endpoint;
  // Bearer token; "" -> $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, then the file huggingface-cli login
  // writes ($HF_TOKEN_PATH, else HF_HOME/token). Sent only to the endpoint's own host.
  std::string token;
  // Time to establish a connection.
  std::chrono::milliseconds connect_timeout{10000};
  // A transfer slower than low_speed_bytes_per_second for low_speed_time is abandoned (and
  // retried): catches stalled connections without limiting large downloads.
  std::chrono::seconds low_speed_time{30};
  long low_speed_bytes_per_second = 1;
  // Whole-request limit for the small API and HEAD requests ($HF_HUB_ETAG_TIMEOUT seconds).
  std::chrono::milliseconds metadata_timeout{30000};
  // Retries after the first attempt for transient failures (5xx, 429, resets, timeouts).
  int max_retries = 5;
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{16000};
};

struct FetchOptions {
  std::string repo_id;            // ORG/NAME
  std::string revision = "main";  // branch, tag or commit id
  std::string cache_dir;          // "" -> DefaultHubCacheDir()
  HttpSettings http;
  int parallel_downloads = 4;
  // Use only the cache (also when $HF_HUB_OFFLINE is 1/true/yes/on).
  bool offline = false;
  ProgressCallback on_progress;
  LogCallback on_log;
  // Set by another thread to abandon the fetch (throws HubError kCancelled).
  const std::atomic<bool>* cancel = nullptr;
};

// "ORG/NAME[@REVISION]" split and validated; throws Error naming the spec when malformed.
struct RepoSpec {
  std::string repo_id;
  std::string revision = "main";
};
RepoSpec ParseRepoSpec(const std::string& spec);

// True for "ORG/NAME" or "ORG/NAME@REV" shapes: what `run SRC` treats as a Hub id when SRC is not
// an existing local path.
bool LooksLikeHubRepoId(const std::string& spec);

// Root-level files conversion needs from a repository listing: configs, tokenizer files and the
// safetensors weights (model.safetensors.index.json when present; its shards are chosen from the
// index by FetchModel). Never .bin/.pth/.gguf. Throws HubError kNoWeights, naming what the
// repository has instead, when there is no safetensors file.
std::vector<std::string> SelectFilesForConversion(const std::string& repo_id,
                                                  const std::vector<std::string>& siblings);

// Resolves the revision, downloads missing files into the cache and returns the snapshot folder
// (CACHE/models--ORG--NAME/snapshots/COMMIT), ready to be converted as a local HF folder.
// Throws HubError.
std::string FetchModel(const FetchOptions& options);

// Applies huggingface_hub's timeout variables: $HF_HUB_ETAG_TIMEOUT (seconds) to
// metadata_timeout and $HF_HUB_DOWNLOAD_TIMEOUT (seconds without data) to low_speed_time.
// Throws Error naming the variable when its value is not a positive number.
void ApplyTimeoutEnvironment(HttpSettings* http);

// The Hub endpoint and token FetchModel uses for these settings (env and token file applied).
std::string ResolveEndpoint(const HttpSettings& http);
std::string ResolveToken(const HttpSettings& http);

// Renders DownloadProgress: on a terminal a one-line bar redrawn in place with bytes, speed and
// ETA; otherwise one plain line per finished file (and at most one progress line per 10 s).
class TerminalProgress {
 public:
  explicit TerminalProgress(FILE* out);
  TerminalProgress(FILE* out, bool is_tty);
  void Update(const DownloadProgress& progress);
  // Ends the in-place line so later output starts on a fresh line.
  void Finish();
  ProgressCallback Callback();

 private:
  FILE* out_;
  bool tty_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drew_line_ = false;
};

// "1.5 MiB" style.
std::string FormatBytes(uint64_t bytes);

}  // namespace hwyquant::hf

#endif  // HWYQUANT_PIPELINE_HF_HUB_H_
