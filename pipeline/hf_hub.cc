// Hub client over libcurl: revision lookup, file metadata, resumable verified cache downloads.
#include "pipeline/hf_hub.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include "pipeline/hf_cache.h"
#include "pipeline/hub_libraries.h"
#include "pipeline/text.h"

namespace hwyquant::hf {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = HubError::Kind;

constexpr const char* kDefaultEndpoint = "https://huggingface.co";
constexpr const char* kUserAgent = "hwyquant/0.1.0";
constexpr int kMaxRedirects = 10;
// API answers and error bodies are small; anything bigger is not a Hub answer.
constexpr size_t kMaxBufferedBody = 64u << 20;
constexpr auto kProgressInterval = std::chrono::milliseconds(100);

// Files conversion reads besides the weights (tokenizers of every kind transformers writes, and
// the model card, whose front matter becomes general.* metadata).
const char* const kMetadataFiles[] = {
    "README.md",
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
};
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

bool EnvIsTrue(const char* name) {
  std::string value = Env(name);
  std::transform(value.begin(), value.end(), value.begin(), ::tolower);
  return value == "1" || value == "true" || value == "yes" || value == "on";
}

std::string Trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

bool IsHex(const std::string& text, size_t length) {
  if (text.size() != length) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string ToLower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), ::tolower);
  return text;
}

// libcurl, loaded on first use; a missing or broken library is a local error.
const CurlLibrary& Lib() {
  try {
    return Curl();
  } catch (const Error& e) {
    throw HubError(Kind::kLocal, e.what());
  }
}

void EnsureCurlInitialized() { (void)Lib(); }

// --- URLs ---

std::string EscapeSegment(const std::string& text) {
  char* escaped = Lib().easy_escape(nullptr, text.c_str(), static_cast<int>(text.size()));
  if (!escaped) throw HubError(Kind::kLocal, "cannot URL-encode '" + text + "'");
  std::string result(escaped);
  Lib().free(escaped);
  return result;
}

// Each path component escaped, '/' kept (huggingface_hub quotes file paths with safe="/").
std::string EscapePath(const std::string& path) {
  std::string result;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    result += EscapeSegment(path.substr(start, slash - start));
    if (slash == std::string::npos) break;
    result += '/';
    start = slash + 1;
  }
  return result;
}

struct UrlHandle {
  CURLU* handle = Lib().url();
  ~UrlHandle() { Lib().url_cleanup(handle); }
  std::string Get(CURLUPart part, unsigned flags = 0) const {
    char* value = nullptr;
    if (Lib().url_get(handle, part, &value, flags) != CURLUE_OK || !value) return "";
    std::string result(value);
    Lib().free(value);
    return result;
  }
};

// The URL without its query: storage redirects carry signatures that do not belong in logs.
std::string Redact(const std::string& url) {
  const size_t query = url.find('?');
  return query == std::string::npos ? url : url.substr(0, query) + "?...";
}

// scheme://host:port, the unit a token is scoped to.
std::string Origin(const std::string& url) {
  UrlHandle parsed;
  if (Lib().url_set(parsed.handle, CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return "";
  return ToLower(parsed.Get(CURLUPART_SCHEME)) + "://" + ToLower(parsed.Get(CURLUPART_HOST)) + ":" +
         parsed.Get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
}

// A Location header (absolute or relative) applied to the URL that returned it.
std::string ResolveLocation(const std::string& base, const std::string& location) {
  UrlHandle parsed;
  if (Lib().url_set(parsed.handle, CURLUPART_URL, base.c_str(), 0) != CURLUE_OK ||
      Lib().url_set(parsed.handle, CURLUPART_URL, location.c_str(), 0) != CURLUE_OK) {
    throw HubError(Kind::kProtocol, "the Hub redirected " + Redact(base) +
                                        " to an unusable location '" + Redact(location) + "'");
  }
  return parsed.Get(CURLUPART_URL);
}

// --- Hashing ---

class Hasher {
 public:
  explicit Hasher(const EVP_MD* md) : crypto_(Crypto()), ctx_(crypto_.md_ctx_new()), md_(md) {
    Reset();
  }
  ~Hasher() { crypto_.md_ctx_free(ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Reset() {
    if (!ctx_ || crypto_.digest_init_ex(ctx_, md_, nullptr) != 1) {
      throw HubError(Kind::kLocal, "OpenSSL digest initialization failed");
    }
  }
  void Update(const void* data, size_t size) { crypto_.digest_update(ctx_, data, size); }
  std::string HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    crypto_.digest_final_ex(ctx_, digest, &length);
    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
      hex += kHex[digest[i] >> 4];
      hex += kHex[digest[i] & 15];
    }
    return hex;
  }

 private:
  const CryptoLibrary& crypto_;
  EVP_MD_CTX* ctx_;
  const EVP_MD* md_;
};

// --- One HTTP exchange ---

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;                            // non-2xx bodies, or 2xx when no sink
  std::string url;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct Request {
  bool head = false;
  std::string url;
  std::vector<std::string> headers;
  bool metadata = false;  // small request: whole-request timeout applies
  // Called once before the first body byte of a 2xx answer (may throw to abort).
  std::function<void(const Response&)> on_begin;
  // Receives 2xx bodies; when unset they are buffered in Response::body.
  std::function<void(const char*, size_t)> sink;
};

// A failure worth another attempt: connection trouble, timeouts, 5xx, 429.
struct TransientFailure {
  std::string message;
};

struct TransferState {
  Response* response = nullptr;
  const Request* request = nullptr;
  const std::atomic<bool>* user_cancel = nullptr;
  const std::atomic<bool>* internal_cancel = nullptr;
  bool began = false;
  std::exception_ptr error;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  const std::string line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after 100-continue or similar) replaces the previous headers.
    state->response->headers.clear();
    const size_t space = line.find(' ');
    state->response->status = space == std::string::npos ? 0 : std::atol(line.c_str() + space + 1);
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    state->response->headers[ToLower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  const size_t bytes = size * count;
  Response& response = *state->response;
  const bool success = response.status >= 200 && response.status < 300;
  try {
    if (success && state->request->sink) {
      if (!state->began) {
        state->began = true;
        if (state->request->on_begin) state->request->on_begin(response);
      }
      state->request->sink(data, bytes);
    } else {
      if (response.body.size() + bytes > kMaxBufferedBody) {
        throw HubError(Kind::kProtocol, "answer from " + Redact(state->request->url) + " exceeds " +
                                            FormatBytes(kMaxBufferedBody));
      }
      response.body.append(data, bytes);
    }
  } catch (...) {
    state->error = std::current_exception();
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  return bytes;
}

int OnTransferInfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* state = static_cast<TransferState*>(user);
  const bool stop = (state->user_cancel && state->user_cancel->load()) ||
                    (state->internal_cancel && state->internal_cancel->load());
  return stop ? 1 : 0;
}

bool IsTransientCurlError(CURLcode code) {
  switch (code) {
    // An unknown host is not retried: without DNS the machine is offline, and the cache
    // fallback should answer at once (as huggingface_hub does).
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
      return true;
    default:
      return false;
  }
}

bool IsTransientStatus(long status) { return status == 408 || status == 429 || status >= 500; }

bool IsRedirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// --- The client ---

class HubClient {
 public:
  HubClient(const FetchOptions& options, const std::atomic<bool>* internal_cancel)
      : options_(options),
        endpoint_(ResolveEndpoint(options.http)),
        endpoint_origin_(Origin(endpoint_)),
        token_(ResolveToken(options.http)),
        internal_cancel_(internal_cancel) {
    if (endpoint_origin_.empty() ||
        (endpoint_.rfind("http://", 0) != 0 && endpoint_.rfind("https://", 0) != 0)) {
      throw HubError(Kind::kLocal, "invalid Hub endpoint '" + endpoint_ +
                                       "' (HF_ENDPOINT must be an http(s) URL)");
    }
  }

  const std::string& endpoint() const { return endpoint_; }
  bool has_token() const { return !token_.empty(); }

  void Log(const std::string& message) const {
    if (options_.on_log) options_.on_log(message);
  }

  void CheckCancelled() const {
    if ((options_.cancel && options_.cancel->load()) ||
        (internal_cancel_ && internal_cancel_->load())) {
      throw HubError(Kind::kCancelled, "download of " + options_.repo_id + " cancelled");
    }
  }

  // One request without following redirects. Throws TransientFailure or HubError.
  Response PerformOnce(const Request& request, bool send_token) const {
    CheckCancelled();
    const CurlLibrary& lib = Lib();
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(lib.easy_init(), lib.easy_cleanup);
    if (!curl) throw HubError(Kind::kLocal, "curl_easy_init failed");
    Response response;
    response.url = request.url;
    TransferState state;
    state.response = &response;
    state.request = &request;
    state.user_cancel = options_.cancel;
    state.internal_cancel = internal_cancel_;
    char error_buffer[CURL_ERROR_SIZE] = {0};

    struct curl_slist* headers = nullptr;
    auto add_header = [&](const std::string& header) {
      struct curl_slist* next = lib.slist_append(headers, header.c_str());
      if (!next) throw HubError(Kind::kLocal, "out of memory building HTTP headers");
      headers = next;
    };
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(nullptr,
                                                                             lib.slist_free_all);
    // Raw bytes: sizes and hashes refer to the stored file, not a compressed transfer.
    add_header("Accept-Encoding: identity");
    if (send_token && !token_.empty()) add_header("Authorization: Bearer " + token_);
    for (const std::string& header : request.headers) add_header(header);
    header_guard.reset(headers);

    CURL* h = curl.get();
    lib.easy_setopt(h, CURLOPT_URL, request.url.c_str());
    lib.easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    lib.easy_setopt(h, CURLOPT_USERAGENT, kUserAgent);
    lib.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    lib.easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // redirects are followed by hand below
    lib.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    lib.easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
    lib.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                    static_cast<long>(options_.http.connect_timeout.count()));
    lib.easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, options_.http.low_speed_bytes_per_second);
    lib.easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                    static_cast<long>(options_.http.low_speed_time.count()));
    if (request.metadata) {
      lib.easy_setopt(h, CURLOPT_TIMEOUT_MS,
                      static_cast<long>(options_.http.metadata_timeout.count()));
    }
    if (request.head) lib.easy_setopt(h, CURLOPT_NOBODY, 1L);
    lib.easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader);
    lib.easy_setopt(h, CURLOPT_HEADERDATA, &state);
    lib.easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody);
    lib.easy_setopt(h, CURLOPT_WRITEDATA, &state);
    lib.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    lib.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &OnTransferInfo);
    lib.easy_setopt(h, CURLOPT_XFERINFODATA, &state);

    const CURLcode code = lib.easy_perform(h);
    if (state.error) std::rethrow_exception(state.error);
    if (code == CURLE_ABORTED_BY_CALLBACK) CheckCancelled();
    if (code != CURLE_OK) {
      std::string message = lib.easy_strerror(code);
      if (error_buffer[0]) message += std::string(" (") + error_buffer + ")";
      message += " for " + Redact(request.url);
      if (IsTransientCurlError(code)) throw TransientFailure{message};
      throw HubError(Kind::kNetwork, message);
    }
    long status = 0;
    lib.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    response.status = status;
    if (IsTransientStatus(status)) {
      std::string message = "HTTP " + std::to_string(status) + " from " + Redact(request.url);
      const std::string detail = response.Header("x-error-message");
      if (!detail.empty()) message += ": " + detail;
      throw TransientFailure{message};
    }
    return response;
  }

  // Follows redirects by hand so the token goes only to the endpoint's own origin (an LFS
  // redirect to a storage host must not carry it). With stop_at_other_origin, an absolute
  // redirect to another host is returned instead of followed: what a HEAD for metadata needs.
  Response Follow(Request request, bool stop_at_other_origin) const {
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
      const bool send_token = Origin(request.url) == endpoint_origin_;
      Response response = PerformOnce(request, send_token);
      const std::string location = response.Header("location");
      if (!IsRedirect(response.status) || location.empty()) return response;
      const std::string next = ResolveLocation(request.url, location);
      if (stop_at_other_origin && Origin(next) != Origin(request.url)) return response;
      request.url = next;
    }
    throw HubError(Kind::kProtocol, "more than " + std::to_string(kMaxRedirects) +
                                        " redirects starting at " + Redact(request.url));
  }

  // Runs attempt() until it returns, retrying TransientFailure with exponential backoff.
  template <class Attempt>
  auto WithRetries(const std::string& what, Attempt attempt) const {
    std::chrono::milliseconds delay = options_.http.initial_backoff;
    for (int failures = 0;; ++failures) {
      try {
        return attempt();
      } catch (const TransientFailure& failure) {
        if (failures >= options_.http.max_retries) {
          throw HubError(Kind::kNetwork, what + " failed after " + std::to_string(failures + 1) +
                                             " attempts: " + failure.message);
        }
        Log(what + ": " + failure.message + "; retrying in " + std::to_string(delay.count()) +
            " ms");
        SleepCancellable(delay);
        delay = std::min(delay * 2, options_.http.max_backoff);
      }
    }
  }

  // The HubError for a failed answer; `what` names the repository, revision or file asked for.
  HubError ErrorFor(const Response& response, const std::string& what,
                    const std::string& revision = "", const std::string& file = "") const {
    const std::string code = response.Header("x-error-code");
    std::string detail = response.Header("x-error-message");
    if (detail.empty() && !response.body.empty() && response.body.size() < 2000) {
      try {
        const nlohmann::json body = nlohmann::json::parse(response.body);
        if (body.is_object() && body.contains("error") && body["error"].is_string()) {
          detail = body["error"].get<std::string>();
        }
      } catch (const std::exception&) {
      }
    }
    const std::string suffix = detail.empty() ? "" : " (server: " + detail + ")";
    const std::string& repo = options_.repo_id;
    const std::string token_hint =
        has_token() ? "the token sent (from --token or HF_TOKEN) was refused or lacks access"
                    : "no token was sent: pass one with --token or set HF_TOKEN";
    if (code == "GatedRepo") {
      return HubError(Kind::kAuth, "Hub repository " + repo +
                                       " is gated: accept its conditions on the Hub with your "
                                       "account and use a token of that account; " +
                                       token_hint + suffix);
    }
    if (code == "RepoNotFound" ||
        (code.empty() && response.status == 404 && file.empty() && revision.empty())) {
      return HubError(Kind::kNotFound, "Hub repository " + repo + " not found at " + endpoint_ +
                                           " (if it is private or gated, " + token_hint + ")" +
                                           suffix);
    }
    if (code == "RevisionNotFound" || (code.empty() && response.status == 404 && file.empty())) {
      return HubError(Kind::kNotFound,
                      "revision '" + revision + "' not found in Hub repository " + repo + suffix);
    }
    if (code == "EntryNotFound" || response.status == 404) {
      return HubError(Kind::kNotFound, "file '" + file + "' not found in Hub repository " + repo +
                                           (revision.empty() ? "" : " at " + revision) + suffix);
    }
    if (response.status == 401 || response.status == 403) {
      return HubError(Kind::kAuth, "access to " + what + " denied (HTTP " +
                                       std::to_string(response.status) +
                                       "): the repository is "
                                       "private or gated; " +
                                       token_hint + suffix);
    }
    return HubError(Kind::kProtocol, "unexpected HTTP " + std::to_string(response.status) +
                                         " for " + what + " from " + Redact(response.url) + suffix);
  }

  struct RevisionInfo {
    std::string commit;
    std::vector<std::string> files;
  };

  RevisionInfo GetRevision(const std::string& revision) const {
    const std::string url =
        endpoint_ + "/api/models/" + options_.repo_id + "/revision/" + EscapeSegment(revision);
    const std::string what = "revision '" + revision + "' of Hub repository " + options_.repo_id;
    Response response = WithRetries("resolving " + what, [&] {
      Request request;
      request.url = url;
      request.metadata = true;
      return Follow(request, /*stop_at_other_origin=*/false);
    });
    if (response.status != 200) throw ErrorFor(response, what, revision);
    RevisionInfo info;
    try {
      const nlohmann::json body = nlohmann::json::parse(response.body);
      info.commit = body.at("sha").get<std::string>();
      for (const auto& sibling : body.at("siblings")) {
        info.files.push_back(sibling.at("rfilename").get<std::string>());
      }
    } catch (const std::exception& e) {
      throw HubError(Kind::kProtocol, "unusable answer from " + url + ": " + e.what());
    }
    if (!IsCommitHash(info.commit)) {
      throw HubError(Kind::kProtocol, "the Hub answered '" + info.commit + "' for " + what +
                                          ", not a 40-hex commit id");
    }
    return info;
  }

  struct FileInfo {
    std::string path;
    std::string etag;
    uint64_t size = 0;
    bool size_known = false;
    std::string download_url;
  };

  FileInfo GetFileInfo(const std::string& commit, const std::string& path) const {
    const std::string url =
        endpoint_ + "/" + options_.repo_id + "/resolve/" + commit + "/" + EscapePath(path);
    const std::string what = "file '" + path + "' of " + options_.repo_id;
    Response response = WithRetries("fetching metadata of " + what, [&] {
      Request request;
      request.head = true;
      request.url = url;
      request.metadata = true;
      return Follow(request, /*stop_at_other_origin=*/true);
    });
    if (response.status >= 400) throw ErrorFor(response, what, commit, path);
    FileInfo info;
    info.path = path;
    std::string etag = response.Header("x-linked-etag");
    if (etag.empty()) etag = response.Header("etag");
    info.etag = NormalizeEtag(etag);
    if (info.etag.empty()) {
      throw HubError(Kind::kProtocol, "the Hub sent no ETag for " + what + " (" + url + ")");
    }
    try {
      ValidateEtag(info.etag);
    } catch (const Error& e) {
      throw HubError(Kind::kProtocol, std::string(e.what()) + " (" + what + ")");
    }
    std::string size = response.Header("x-linked-size");
    if (size.empty() && !IsRedirect(response.status)) size = response.Header("content-length");
    if (!size.empty()) {
      char* end = nullptr;
      errno = 0;
      const unsigned long long parsed = std::strtoull(size.c_str(), &end, 10);
      if (errno != 0 || end == size.c_str() || *end != '\0') {
        throw HubError(Kind::kProtocol, "the Hub sent an unusable size '" + size + "' for " + what);
      }
      info.size = parsed;
      info.size_known = true;
    }
    const std::string repo_commit = response.Header("x-repo-commit");
    if (!repo_commit.empty() && repo_commit != commit) {
      Log("note: the Hub reports commit " + repo_commit + " for " + what + " asked at " + commit);
    }
    const std::string location = response.Header("location");
    info.download_url = IsRedirect(response.status) && !location.empty()
                            ? ResolveLocation(response.url, location)
                            : response.url;
    return info;
  }

  void SleepCancellable(std::chrono::milliseconds delay) const {
    const auto until = Clock::now() + delay;
    while (Clock::now() < until) {
      CheckCancelled();
      std::this_thread::sleep_for(
          std::min<Clock::duration>(std::chrono::milliseconds(20), until - Clock::now()));
    }
    CheckCancelled();
  }

 private:
  const FetchOptions& options_;
  std::string endpoint_;
  std::string endpoint_origin_;
  std::string token_;
  const std::atomic<bool>* internal_cancel_;
};

// --- Progress aggregation ---

class ProgressTracker {
 public:
  explicit ProgressTracker(const ProgressCallback& callback) : callback_(callback) {}

  void AddToTotal(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    total_ += bytes;
  }

  // delta may be negative when a server ignores a Range request and the file restarts.
  void Report(const std::string& file, uint64_t file_done, uint64_t file_total, int64_t delta,
              bool finished) {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = static_cast<uint64_t>(static_cast<int64_t>(done_) + delta);
    if (!callback_) return;
    const auto now = Clock::now();
    auto& last = last_report_[file];
    if (!finished && now - last < kProgressInterval) return;
    last = now;
    DownloadProgress progress;
    progress.file = file;
    progress.file_done = file_done;
    progress.file_total = file_total;
    progress.done = done_;
    progress.total = std::max(total_, done_);
    progress.file_finished = finished;
    callback_(progress);
  }

 private:
  const ProgressCallback& callback_;
  std::mutex mutex_;
  uint64_t total_ = 0;
  uint64_t done_ = 0;
  std::unordered_map<std::string, Clock::time_point> last_report_;
};

// --- Downloading one blob ---

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

struct DownloadResult {
  uint64_t bytes = 0;
  std::string sha256;
  std::string git_sha1;  // "" when the size was not known up front
  bool resumed = false;  // started from bytes an earlier run left behind
};

class BlobDownloader {
 public:
  BlobDownloader(const HubClient& client, const RepoCache& cache, ProgressTracker& progress,
                 const std::string& repo_id)
      : client_(client), cache_(cache), progress_(progress), repo_id_(repo_id) {}

  // Downloads the file into blobs/ETAG unless it is there already. Holds the same lock
  // huggingface_hub takes for that blob.
  void Download(const HubClient::FileInfo& file) {
    MakeDirsLocal(cache_.repo_dir() + "/blobs");
    FileLock lock(cache_.LockPath(file.etag));
    if (cache_.HasBlob(file.etag)) {
      // Another process finished it while this one waited for the lock.
      progress_.Report(file.path, file.size, file.size, static_cast<int64_t>(file.size), true);
      return;
    }
    const std::string incomplete = cache_.IncompletePath(file.etag);
    for (bool restarted = false;; restarted = true) {
      const DownloadResult result = DownloadToIncomplete(file, incomplete);
      const std::string problem = Verify(file, result);
      if (problem.empty()) break;
      ::unlink(incomplete.c_str());
      // Bytes kept from an earlier run may come from another version of the file: one clean
      // download decides.
      if (result.resumed && !restarted) {
        progress_.Report(file.path, 0, file.size, -static_cast<int64_t>(result.bytes), false);
        client_.Log("'" + file.path + "': " + problem + "; downloading it again from the start");
        continue;
      }
      throw HubError(Kind::kChecksum, "download of '" + file.path + "' from " + repo_id_ +
                                          " is corrupt: " + problem +
                                          "; the bad data was deleted, nothing was cached");
    }
    const std::string blob = cache_.BlobPath(file.etag);
    if (std::rename(incomplete.c_str(), blob.c_str()) != 0) {
      throw HubError(Kind::kLocal,
                     "cannot rename " + incomplete + " to " + blob + ": " + std::strerror(errno));
    }
    progress_.Report(file.path, file.size, file.size, 0, true);
  }

 private:
  static void MakeDirsLocal(const std::string& dir) {
    try {
      MakeDirs(dir);
    } catch (const Error& e) {
      throw HubError(Kind::kLocal, e.what());
    }
  }

  std::string Verify(const HubClient::FileInfo& file, const DownloadResult& result) const {
    if (file.size_known && result.bytes != file.size) {
      return "received " + std::to_string(result.bytes) + " bytes, the Hub announced " +
             std::to_string(file.size);
    }
    // The etag of an LFS file is its sha256; that of a small git-stored file its git blob id.
    if (IsHex(file.etag, 64) && ToLower(file.etag) != result.sha256) {
      return "sha256 " + result.sha256 + " differs from the Hub's " + file.etag;
    }
    if (IsHex(file.etag, 40) && !result.git_sha1.empty() && ToLower(file.etag) != result.git_sha1) {
      return "git blob id " + result.git_sha1 + " differs from the Hub's " + file.etag;
    }
    return "";
  }

  DownloadResult DownloadToIncomplete(const HubClient::FileInfo& file,
                                      const std::string& incomplete) {
    FdGuard fd(::open(incomplete.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      throw HubError(Kind::kLocal, "cannot open " + incomplete + ": " + std::strerror(errno));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) {
      throw HubError(Kind::kLocal, "cannot stat " + incomplete + ": " + std::strerror(errno));
    }
    uint64_t have = static_cast<uint64_t>(st.st_size);
    if (file.size_known && have > file.size) {
      Truncate(fd.get(), incomplete);
      have = 0;
    }
    Hasher sha256(Crypto().sha256());
    Hasher git_sha1(Crypto().sha1());
    const auto reset_hashes = [&] {
      sha256.Reset();
      git_sha1.Reset();
      if (file.size_known) {
        const std::string prefix = "blob " + std::to_string(file.size);
        git_sha1.Update(prefix.c_str(), prefix.size() + 1);  // with the NUL terminator
      }
    };
    reset_hashes();
    if (have > 0) HashExisting(fd.get(), incomplete, have, sha256, git_sha1);

    DownloadResult result;
    result.resumed = have > 0;
    progress_.Report(file.path, have, file.size, static_cast<int64_t>(have), false);
    const std::string what = "downloading '" + file.path + "' from " + repo_id_;
    client_.WithRetries(what, [&] {
      if (file.size_known && have == file.size) return;  // a range past the end would be 416
      Request request;
      request.url = file.download_url;
      if (have > 0) request.headers.push_back("Range: bytes=" + std::to_string(have) + "-");
      request.on_begin = [&](const Response& response) {
        if (response.status == 206) {
          const uint64_t start = ContentRangeStart(response.Header("content-range"));
          if (start != have) {
            throw HubError(Kind::kProtocol, "the server resumed '" + file.path + "' at byte " +
                                                std::to_string(start) + " instead of " +
                                                std::to_string(have));
          }
        } else if (have > 0) {
          // The server ignored the Range header: start over.
          Truncate(fd.get(), incomplete);
          progress_.Report(file.path, 0, file.size, -static_cast<int64_t>(have), false);
          have = 0;
          reset_hashes();
        }
      };
      request.sink = [&](const char* data, size_t size) {
        if (file.size_known && have + size > file.size) {
          throw HubError(Kind::kChecksum, "the server sent more than the " +
                                              std::to_string(file.size) + " bytes announced for '" +
                                              file.path + "'");
        }
        WriteAt(fd.get(), incomplete, data, size, have);
        sha256.Update(data, size);
        git_sha1.Update(data, size);
        have += size;
        progress_.Report(file.path, have, file.size, static_cast<int64_t>(size), false);
      };
      Response response;
      try {
        response = client_.Follow(request, /*stop_at_other_origin=*/false);
      } catch (const HubError& e) {
        if (e.kind() == Kind::kChecksum) {
          // Too many bytes: nothing in this file can be trusted.
          ::unlink(incomplete.c_str());
        }
        throw;
      }
      if (response.status == 416) {
        Truncate(fd.get(), incomplete);
        progress_.Report(file.path, 0, file.size, -static_cast<int64_t>(have), false);
        have = 0;
        reset_hashes();
        throw TransientFailure{"the server refused to resume '" + file.path + "'; restarting"};
      }
      if (response.status >= 400) {
        throw client_.ErrorFor(response, "file '" + file.path + "'", "", file.path);
      }
      if (response.status < 200 || response.status >= 300) {
        throw HubError(Kind::kProtocol, "unexpected HTTP " + std::to_string(response.status) +
                                            " downloading " + Redact(response.url));
      }
      if (file.size_known && have < file.size) {
        throw TransientFailure{"connection ended after " + std::to_string(have) + " of " +
                               std::to_string(file.size) + " bytes of '" + file.path + "'"};
      }
    });
    if (::fsync(fd.get()) != 0) {
      throw HubError(Kind::kLocal, "cannot sync " + incomplete + ": " + std::strerror(errno));
    }
    result.bytes = have;
    result.sha256 = sha256.HexDigest();
    const std::string git = git_sha1.HexDigest();
    if (file.size_known) result.git_sha1 = git;
    return result;
  }

  static uint64_t ContentRangeStart(const std::string& header) {
    // "bytes START-END/TOTAL"
    const size_t space = header.find(' ');
    if (header.rfind("bytes", 0) != 0 || space == std::string::npos) {
      throw HubError(Kind::kProtocol, "unusable Content-Range '" + header + "'");
    }
    return std::strtoull(header.c_str() + space + 1, nullptr, 10);
  }

  static void Truncate(int fd, const std::string& path) {
    if (::ftruncate(fd, 0) != 0) {
      throw HubError(Kind::kLocal, "cannot truncate " + path + ": " + std::strerror(errno));
    }
  }

  static void WriteAt(int fd, const std::string& path, const char* data, size_t size,
                      uint64_t offset) {
    while (size > 0) {
      const ssize_t written = ::pwrite(fd, data, size, static_cast<off_t>(offset));
      if (written < 0) {
        if (errno == EINTR) continue;
        throw HubError(Kind::kLocal, "cannot write " + path + ": " + std::strerror(errno));
      }
      data += written;
      size -= static_cast<size_t>(written);
      offset += static_cast<uint64_t>(written);
    }
  }

  static void HashExisting(int fd, const std::string& path, uint64_t length, Hasher& a, Hasher& b) {
    std::vector<char> buffer(1 << 20);
    uint64_t offset = 0;
    while (offset < length) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), length - offset));
      const ssize_t got = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        throw HubError(Kind::kLocal, "cannot read " + path + " to resume it");
      }
      a.Update(buffer.data(), static_cast<size_t>(got));
      b.Update(buffer.data(), static_cast<size_t>(got));
      offset += static_cast<uint64_t>(got);
    }
  }

  const HubClient& client_;
  const RepoCache& cache_;
  ProgressTracker& progress_;
  const std::string& repo_id_;
};

// --- Snapshot completeness (for offline use) ---

std::vector<std::string> IndexShards(const std::string& index_path, const std::string& repo_id) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw HubError(Kind::kLocal, "cannot read " + index_path);
  std::vector<std::string> shards;
  try {
    const nlohmann::json index = nlohmann::json::parse(in);
    std::set<std::string> seen;
    for (const auto& entry : index.at("weight_map").items()) {
      const std::string shard = entry.value().get<std::string>();
      if (seen.insert(shard).second) shards.push_back(shard);
    }
  } catch (const std::exception& e) {
    throw HubError(Kind::kProtocol, kIndexFile + std::string(" of ") + repo_id + " (" + index_path +
                                        ") is not a usable index: " + e.what());
  }
  if (shards.empty()) {
    throw HubError(Kind::kProtocol, std::string(kIndexFile) + " of " + repo_id +
                                        " lists no shard (" + index_path + ")");
  }
  for (const std::string& shard : shards) {
    try {
      ValidateRepoFilePath(shard);
    } catch (const Error& e) {
      throw HubError(Kind::kProtocol, std::string(e.what()) + " (in " + index_path + ")");
    }
  }
  return shards;
}

// True when the snapshot has a config and all weights (every shard its index names).
bool SnapshotLooksComplete(const RepoCache& cache, const std::string& commit,
                           const std::string& repo_id) {
  if (!cache.HasSnapshotFile(commit, "config.json")) return false;
  if (cache.HasSnapshotFile(commit, kIndexFile)) {
    try {
      for (const std::string& shard :
           IndexShards(cache.SnapshotFile(commit, kIndexFile), repo_id)) {
        if (!cache.HasSnapshotFile(commit, shard)) return false;
      }
      return true;
    } catch (const HubError&) {
      return false;
    }
  }
  return cache.HasSnapshotFile(commit, "model.safetensors");
}

std::optional<std::string> CachedCommit(const RepoCache& cache, const std::string& revision) {
  if (IsCommitHash(revision)) {
    struct stat st;
    if (::stat(cache.SnapshotDir(revision).c_str(), &st) == 0) return revision;
    return std::nullopt;
  }
  return cache.ReadRef(revision);
}

// Runs task(i) for i in [0, count) on up to `threads` threads; the first error stops the rest.
template <class Task>
void RunParallel(size_t count, int threads, std::atomic<bool>& stop, Task task) {
  std::atomic<size_t> next{0};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto worker = [&] {
    while (!stop.load()) {
      const size_t i = next++;
      if (i >= count) return;
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        stop = true;
      }
    }
  };
  const size_t n = std::min<size_t>(count, static_cast<size_t>(std::max(1, threads)));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& thread : pool) thread.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace

void ApplyTimeoutEnvironment(HttpSettings* http) {
  const auto seconds = [](const char* name) -> std::optional<double> {
    const std::string value = Trim(Env(name));
    if (value.empty()) return std::nullopt;
    char* end = nullptr;
    const double parsed = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || *end != '\0' || !(parsed > 0) || parsed > 86400) {
      throw Error(std::string(name) + "='" + value + "' is not a number of seconds in (0, 86400]");
    }
    return parsed;
  };
  if (auto etag = seconds("HF_HUB_ETAG_TIMEOUT")) {
    http->metadata_timeout = std::chrono::milliseconds(static_cast<long>(*etag * 1000));
  }
  if (auto download = seconds("HF_HUB_DOWNLOAD_TIMEOUT")) {
    http->low_speed_time = std::chrono::seconds(std::max(1L, static_cast<long>(*download + 0.5)));
  }
}

std::string ResolveEndpoint(const HttpSettings& http) {
  std::string endpoint = !http.endpoint.empty() ? http.endpoint : Env("HF_ENDPOINT");
  if (endpoint.empty()) endpoint = kDefaultEndpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  return endpoint;
}

std::string ResolveToken(const HttpSettings& http) {
  if (!http.token.empty()) return Trim(http.token);
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    const std::string value = Trim(Env(name));
    if (!value.empty()) return value;
  }
  std::string path = Env("HF_TOKEN_PATH");
  if (path.empty()) path = HfHomeDir() + "/token";
  std::ifstream in(path);
  std::string token;
  if (in) std::getline(in, token);
  return Trim(token);
}

RepoSpec ParseRepoSpec(const std::string& spec) {
  RepoSpec result;
  const size_t at = spec.find('@');
  result.repo_id = spec.substr(0, at);
  if (at != std::string::npos) result.revision = spec.substr(at + 1);
  ValidateRepoId(result.repo_id);
  ValidateRevision(result.revision);
  return result;
}

bool LooksLikeHubRepoId(const std::string& spec) {
  const size_t at = spec.find('@');
  const std::string repo = spec.substr(0, at);
  if (repo.find('/') == std::string::npos) return false;
  try {
    ParseRepoSpec(spec);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::vector<std::string> SelectFilesForConversion(const std::string& repo_id,
                                                  const std::vector<std::string>& siblings) {
  const std::set<std::string> present(siblings.begin(), siblings.end());
  if (!present.count("config.json")) {
    throw HubError(Kind::kNotFound, "Hub repository " + repo_id +
                                        " has no config.json at its root: not a transformers "
                                        "model hwyquant can convert");
  }
  std::vector<std::string> files;
  for (const char* name : kMetadataFiles) {
    if (present.count(name)) files.push_back(name);
  }
  std::vector<std::string> root_safetensors;
  std::vector<std::string> other_weights;
  for (const std::string& name : siblings) {
    if (name.find('/') != std::string::npos) continue;
    if (EndsWith(name, ".safetensors")) {
      root_safetensors.push_back(name);
    } else if (EndsWith(name, ".bin") || EndsWith(name, ".pth") || EndsWith(name, ".pt") ||
               EndsWith(name, ".gguf") || EndsWith(name, ".ckpt")) {
      other_weights.push_back(name);
    }
  }
  if (present.count(kIndexFile)) {
    files.push_back(kIndexFile);  // the shards it names are added once it is read
  } else if (present.count("model.safetensors")) {
    files.push_back("model.safetensors");
  } else if (!root_safetensors.empty()) {
    files.insert(files.end(), root_safetensors.begin(), root_safetensors.end());
  } else {
    std::string found;
    for (size_t i = 0; i < other_weights.size() && i < 5; ++i) {
      found += (i ? ", " : "") + other_weights[i];
    }
    throw HubError(Kind::kNoWeights,
                   "Hub repository " + repo_id + " has no .safetensors weights at its root" +
                       (found.empty() ? std::string() : " (it has " + found + ")") +
                       "; hwyquant converts only safetensors checkpoints");
  }
  return files;
}

std::string FetchModel(const FetchOptions& options) {
  try {
    ValidateRepoId(options.repo_id);
    ValidateRevision(options.revision);
  } catch (const HubError&) {
    throw;
  } catch (const Error& e) {
    throw HubError(Kind::kNotFound, e.what());
  }
  const std::string cache_dir =
      options.cache_dir.empty() ? DefaultHubCacheDir() : options.cache_dir;
  const RepoCache cache(cache_dir, options.repo_id);
  const auto log = [&](const std::string& message) {
    if (options.on_log) options.on_log(message);
  };

  const auto from_cache = [&](const std::string& why) -> std::optional<std::string> {
    const std::optional<std::string> commit = CachedCommit(cache, options.revision);
    if (!commit || !SnapshotLooksComplete(cache, *commit, options.repo_id)) return std::nullopt;
    log(why + ": using cached snapshot " + cache.SnapshotDir(*commit));
    return cache.SnapshotDir(*commit);
  };

  if (options.offline || EnvIsTrue("HF_HUB_OFFLINE")) {
    if (auto snapshot = from_cache("offline mode")) return *snapshot;
    throw HubError(Kind::kOffline, "offline mode: " + options.repo_id + "@" + options.revision +
                                       " is not complete in the cache " + cache.repo_dir());
  }

  EnsureCurlInitialized();
  std::atomic<bool> stop_workers{false};
  const HubClient client(options, &stop_workers);

  HubClient::RevisionInfo revision;
  try {
    revision = client.GetRevision(options.revision);
  } catch (const HubError& e) {
    if (e.kind() != Kind::kNetwork) throw;
    if (auto snapshot = from_cache(std::string("Hub unreachable (") + e.what() + ")")) {
      return *snapshot;
    }
    throw;
  }
  const std::string& commit = revision.commit;
  for (const std::string& file : revision.files) {
    try {
      ValidateRepoFilePath(file);
    } catch (const Error& e) {
      throw HubError(Kind::kProtocol, e.what());
    }
  }
  std::vector<std::string> wanted = SelectFilesForConversion(options.repo_id, revision.files);
  log("resolved " + options.repo_id + "@" + options.revision + " to commit " + commit);

  ProgressTracker progress(options.on_progress);
  BlobDownloader downloader(client, cache, progress, options.repo_id);

  // Puts `path` into the snapshot; returns the metadata when it still has to be downloaded.
  const auto plan = [&](const std::string& path) -> std::optional<HubClient::FileInfo> {
    if (cache.HasSnapshotFile(commit, path)) return std::nullopt;
    HubClient::FileInfo info = client.GetFileInfo(commit, path);
    if (cache.HasBlob(info.etag)) {
      cache.LinkSnapshotFile(commit, path, info.etag);
      return std::nullopt;
    }
    return info;
  };
  const auto fetch_now = [&](const std::string& path) {
    if (auto info = plan(path)) {
      progress.AddToTotal(info->size);
      downloader.Download(*info);
      cache.LinkSnapshotFile(commit, path, info->etag);
    }
  };

  const std::set<std::string> present(revision.files.begin(), revision.files.end());
  if (std::find(wanted.begin(), wanted.end(), kIndexFile) != wanted.end()) {
    // The index decides which shards are needed (repos often also carry consolidated copies).
    fetch_now(kIndexFile);
    for (const std::string& shard :
         IndexShards(cache.SnapshotFile(commit, kIndexFile), options.repo_id)) {
      if (!present.count(shard)) {
        throw HubError(Kind::kNotFound, std::string(kIndexFile) + " of " + options.repo_id +
                                            " names shard '" + shard +
                                            "', which the repository does not have at " + commit);
      }
      wanted.push_back(shard);
    }
  }

  std::vector<HubClient::FileInfo> to_download;
  for (const std::string& path : wanted) {
    if (auto info = plan(path)) to_download.push_back(std::move(*info));
  }
  // Largest first so the pool does not end waiting on one big shard.
  std::stable_sort(to_download.begin(), to_download.end(),
                   [](const auto& a, const auto& b) { return a.size > b.size; });
  for (const auto& info : to_download) progress.AddToTotal(info.size);
  try {
    RunParallel(to_download.size(), options.parallel_downloads, stop_workers, [&](size_t i) {
      downloader.Download(to_download[i]);
      cache.LinkSnapshotFile(commit, to_download[i].path, to_download[i].etag);
    });
  } catch (const HubError&) {
    throw;
  } catch (const Error& e) {
    throw HubError(Kind::kLocal, e.what());
  }

  if (options.revision != commit) cache.WriteRef(options.revision, commit);
  return cache.SnapshotDir(commit);
}

// --- Terminal rendering ---

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  if (unit == 0) {
    std::snprintf(text, sizeof(text), "%" PRIu64 " B", bytes);
  } else {
    std::snprintf(text, sizeof(text), "%.1f %s", value, kUnits[unit]);
  }
  return text;
}

namespace {

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 360000) return "--:--";
  const long total = static_cast<long>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ld:%02ld:%02ld", total / 3600, (total / 60) % 60,
                  total % 60);
  } else {
    std::snprintf(text, sizeof(text), "%ld:%02ld", total / 60, total % 60);
  }
  return text;
}

}  // namespace

TerminalProgress::TerminalProgress(FILE* out) : TerminalProgress(out, ::isatty(::fileno(out))) {}

TerminalProgress::TerminalProgress(FILE* out, bool is_tty)
    : out_(out), tty_(is_tty), start_(Clock::now()), last_draw_(Clock::now()) {}

void TerminalProgress::Update(const DownloadProgress& progress) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double speed = elapsed > 0 ? static_cast<double>(progress.done) / elapsed : 0;
  const double remaining =
      static_cast<double>(progress.total - std::min(progress.total, progress.done));
  const std::string eta = speed > 0 ? FormatDuration(remaining / speed) : "--:--";
  const int percent = progress.total ? static_cast<int>(100.0 * static_cast<double>(progress.done) /
                                                        static_cast<double>(progress.total))
                                     : 0;
  const std::string summary = FormatBytes(progress.done) + " / " + FormatBytes(progress.total) +
                              "  " + FormatBytes(static_cast<uint64_t>(speed)) + "/s  ETA " + eta;
  if (tty_) {
    if (!progress.file_finished && now - last_draw_ < kProgressInterval &&
        progress.done != progress.total) {
      return;
    }
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int filled = std::min(kWidth, percent * kWidth / 100);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r\033[K%3d%% [%s] %s  %s", percent, bar.c_str(), summary.c_str(),
                 progress.file.c_str());
    drew_line_ = true;
  } else {
    if (progress.file_finished) {
      std::fprintf(out_, "downloaded %s (%s)  total %d%%, %s\n", progress.file.c_str(),
                   FormatBytes(progress.file_total).c_str(), percent, summary.c_str());
    } else if (now - last_draw_ >= std::chrono::seconds(10)) {
      last_draw_ = now;
      std::fprintf(out_, "downloading %d%%, %s  (%s)\n", percent, summary.c_str(),
                   progress.file.c_str());
    }
  }
  std::fflush(out_);
}

void TerminalProgress::Finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (tty_ && drew_line_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    drew_line_ = false;
  }
}

ProgressCallback TerminalProgress::Callback() {
  return [this](const DownloadProgress& progress) { Update(progress); };
}

}  // namespace hwyquant::hf
