// Hub fetching against the local stand-in: layout, reuse, resume, checksums, auth, 404s, timeouts.
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#ifdef HWYQUANT_CLI
#include "pipeline/gguf.h"
#endif
#include "pipeline/hf_cache.h"
#include "pipeline/hf_hub.h"
#include "tests/hub_stub.h"
#include "tests/support.h"

namespace hwyquant::test {
namespace {

namespace fs = std::filesystem;
using hf::DownloadProgress;
using hf::FetchModel;
using hf::FetchOptions;
using hf::HubError;
using Kind = hf::HubError::Kind;
using namespace std::chrono_literals;

std::string ModelDir(const std::string& name) {
  const std::string shared = SharedDir();
  if (shared.empty()) FAIL("the fetch tests serve ../shared/models/" << name << "; it is missing");
  return shared + "/models/" + name;
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/hwyquant-fetch-XXXXXX";
    if (!::mkdtemp(pattern)) FAIL("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The tests must not pick up a developer's token, endpoint or offline setting.
void IsolateFromUserEnvironment() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"}) {
    ::unsetenv(name);
  }
  ::setenv("HF_TOKEN_PATH", "/nonexistent/hwyquant-test/token", 1);
  // A proxy configured for the developer's network must not intercept the loopback stub.
  ::setenv("no_proxy", "127.0.0.1,localhost", 1);
  ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
}

struct Harness {
  HubStub stub;
  TempDir cache;
  std::mutex log_mutex;
  std::vector<std::string> logs;

  Harness() { IsolateFromUserEnvironment(); }

  FetchOptions Options(const std::string& repo, const std::string& revision = "main") {
    FetchOptions options;
    options.repo_id = repo;
    options.revision = revision;
    options.cache_dir = cache.path();
    options.http.endpoint = stub.endpoint();
    // Short limits keep every failure test within a few seconds.
    options.http.connect_timeout = 2000ms;
    options.http.low_speed_time = 1s;
    options.http.metadata_timeout = 3000ms;
    options.http.max_retries = 3;
    options.http.initial_backoff = 10ms;
    options.http.max_backoff = 40ms;
    options.on_log = [this](const std::string& message) {
      std::lock_guard<std::mutex> lock(log_mutex);
      logs.push_back(message);
    };
    return options;
  }

  std::string RepoDir(const std::string& folder_name) const {
    return cache.path() + "/" + folder_name;
  }
};

template <class F>
HubError ExpectHubError(F&& f) {
  try {
    f();
  } catch (const HubError& e) {
    return e;
  }
  FAIL("expected a HubError, the call succeeded");
  throw std::logic_error("unreachable");
}

std::string FileSha256(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  return Sha256Hex(bytes.data(), bytes.size());
}

std::string GitBlobId(const std::string& path) {
  // Computed via the stub's own definition would prove nothing; use git's rule directly.
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  std::string object = "blob " + std::to_string(bytes.size());
  object.push_back('\0');
  object.append(bytes.begin(), bytes.end());
  unsigned char digest[20];
  unsigned int length = 0;
  EVP_Digest(object.data(), object.size(), digest, &length, EVP_sha1(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

bool IsLfsName(const std::string& name) {
  return name.size() > 12 && (name.rfind(".safetensors") == name.size() - 12 ||
                              name.rfind(".model") == name.size() - 6);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

int CountRequests(const HubStub& stub, const std::string& server, const std::string& method,
                  const std::string& path_suffix) {
  int count = 0;
  for (const StubRequest& r : stub.Requests()) {
    if (r.server == server && r.method == method && r.path.size() >= path_suffix.size() &&
        r.path.compare(r.path.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0) {
      ++count;
    }
  }
  return count;
}

// Checks one snapshot entry: a relative symlink to ../../blobs/ETAG whose bytes equal `source`.
void CheckSnapshotEntry(const std::string& snapshot, const std::string& name,
                        const std::string& source) {
  INFO("snapshot file " << snapshot << "/" << name);
  const fs::path link = fs::path(snapshot) / name;
  REQUIRE(fs::is_symlink(fs::symlink_status(link)));
  const std::string etag = IsLfsName(name) ? FileSha256(source) : GitBlobId(source);
  CHECK(fs::read_symlink(link).string() == "../../blobs/" + etag);
  REQUIRE(fs::is_regular_file(link));
  CHECK(FileSha256(link.string()) == FileSha256(source));
}

const char* const kStoriesFiles[] = {
    "config.json",    "generation_config.json", "model.safetensors",     "special_tokens_map.json",
    "tokenizer.json", "tokenizer.model",        "tokenizer_config.json",
};

TEST_CASE("fetch writes a huggingface_hub cache layout and keeps the token on the Hub host",
          "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  const std::string commit = h.stub.AddRepo("tiny/stories260K", source);
  // Files conversion does not need must not be downloaded; the model card is needed.
  h.stub.AddFile("tiny/stories260K", "pytorch_model.bin", std::string(1000, 'b'));
  h.stub.AddFile("tiny/stories260K", "onnx/model.onnx", std::string(1000, 'o'));
  h.stub.AddFile("tiny/stories260K", "README.md", "---\nlicense: mit\n---\n# readme\n");

  FetchOptions options = h.Options("tiny/stories260K");
  options.http.token = "hf_secret_test_token";
  const std::string snapshot = FetchModel(options);

  const std::string repo_dir = h.RepoDir("models--tiny--stories260K");
  CHECK(snapshot == repo_dir + "/snapshots/" + commit);
  std::vector<std::string> expected(std::begin(kStoriesFiles), std::end(kStoriesFiles));
  for (const std::string& name : expected) CheckSnapshotEntry(snapshot, name, source + "/" + name);
  CHECK(ReadTextFile(snapshot + "/README.md") == "---\nlicense: mit\n---\n# readme\n");
  expected.insert(expected.begin(), "README.md");
  CHECK(ListDir(snapshot) == expected);
  // refs/main holds the bare commit id, as huggingface_hub writes it.
  CHECK(ReadTextFile(repo_dir + "/refs/main") == commit);
  for (const std::string& blob : ListDir(repo_dir + "/blobs")) {
    CHECK(blob.find(".incomplete") == std::string::npos);
  }
  CHECK(ListDir(repo_dir + "/blobs").size() == expected.size());

  int storage_requests = 0;
  for (const StubRequest& r : h.stub.Requests()) {
    INFO(r.server << " " << r.method << " " << r.path);
    if (r.server == "hub") {
      CHECK(r.authorization == "Bearer hf_secret_test_token");
    } else {
      ++storage_requests;
      CHECK(r.authorization.empty());
    }
    CHECK(r.path.find("pytorch_model.bin") == std::string::npos);
    CHECK(r.path.find("model.onnx") == std::string::npos);
  }
  CHECK(storage_requests == 2);  // model.safetensors and tokenizer.model are LFS files
}

TEST_CASE("fetch of a sharded model downloads exactly the shards its index names", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("synth-llama-bf16-sharded");
  const std::string commit = h.stub.AddRepo("synth/sharded", source);
  h.stub.AddFile("synth/sharded", "consolidated.safetensors", std::string(5000, 'c'));

  std::mutex progress_mutex;
  std::vector<DownloadProgress> updates;
  FetchOptions options = h.Options("synth/sharded", "v1.0");
  options.parallel_downloads = 3;
  options.on_progress = [&](const DownloadProgress& p) {
    std::lock_guard<std::mutex> lock(progress_mutex);
    updates.push_back(p);
  };
  const std::string snapshot = FetchModel(options);

  for (const std::string& name : ListDir(source)) {
    CheckSnapshotEntry(snapshot, name, source + "/" + name);
  }
  CHECK_FALSE(fs::exists(fs::symlink_status(snapshot + "/consolidated.safetensors")));
  CHECK(CountRequests(h.stub, "hub", "GET", "consolidated.safetensors") == 0);
  CHECK(CountRequests(h.stub, "hub", "HEAD", "consolidated.safetensors") == 0);
  CHECK(ReadTextFile(h.RepoDir("models--synth--sharded") + "/refs/v1.0") == commit);

  uint64_t source_bytes = 0;
  for (const std::string& name : ListDir(source))
    source_bytes += fs::file_size(source + "/" + name);
  REQUIRE_FALSE(updates.empty());
  uint64_t previous = 0;
  std::set<std::string> finished;
  for (const DownloadProgress& p : updates) {
    CHECK(p.done >= previous);
    CHECK(p.done <= p.total);
    previous = p.done;
    if (p.file_finished) finished.insert(p.file);
  }
  CHECK(updates.back().done == source_bytes);
  CHECK(updates.back().total == source_bytes);
  const std::vector<std::string> source_files = ListDir(source);
  CHECK(finished == std::set<std::string>(source_files.begin(), source_files.end()));
}

TEST_CASE("a second fetch downloads nothing and blobs from other tools are reused", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K-bf16");
  const std::string commit = h.stub.AddRepo("tiny/bf16", source);
  const std::string first = FetchModel(h.Options("tiny/bf16"));

  h.stub.ClearRequests();
  CHECK(FetchModel(h.Options("tiny/bf16")) == first);
  CHECK(h.stub.ContentGets() == 0);
  CHECK(CountRequests(h.stub, "hub", "HEAD", "") == 0);
  CHECK(CountRequests(h.stub, "storage", "GET", "") == 0);

  // Blobs present but no snapshot for this commit (e.g. downloaded by Python for another
  // revision): only metadata requests, the snapshot is rebuilt from the blobs.
  fs::remove_all(fs::path(first).parent_path());
  h.stub.ClearRequests();
  CHECK(FetchModel(h.Options("tiny/bf16", commit)) == first);
  CHECK(h.stub.ContentGets() == 0);
  CHECK(CountRequests(h.stub, "hub", "HEAD", "") == 7);
  for (const std::string& name : ListDir(source))
    CheckSnapshotEntry(first, name, source + "/" + name);
}

TEST_CASE("fetch reuses a cache laid out by huggingface_hub", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  const std::string commit = h.stub.AddRepo("py/stories", source);
  // What snapshot_download leaves behind, written by hand with the documented layout.
  const std::string repo_dir = h.RepoDir("models--py--stories");
  fs::create_directories(repo_dir + "/blobs");
  fs::create_directories(repo_dir + "/refs");
  fs::create_directories(repo_dir + "/snapshots/" + commit);
  for (const std::string& name : ListDir(source)) {
    const std::string etag =
        IsLfsName(name) ? FileSha256(source + "/" + name) : GitBlobId(source + "/" + name);
    fs::copy_file(source + "/" + name, repo_dir + "/blobs/" + etag);
    fs::create_symlink("../../blobs/" + etag, repo_dir + "/snapshots/" + commit + "/" + name);
  }
  {
    std::FILE* ref = std::fopen((repo_dir + "/refs/main").c_str(), "wb");
    REQUIRE(ref != nullptr);
    std::fputs(commit.c_str(), ref);
    std::fclose(ref);
  }
  CHECK(FetchModel(h.Options("py/stories")) == repo_dir + "/snapshots/" + commit);
  CHECK(h.stub.ContentGets() == 0);
}

TEST_CASE("an interrupted transfer resumes with Range and ends with the right sha256", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("babyllama-tok105");
  h.stub.AddRepo("tiny/baby", source);
  StubFault cut;
  cut.cut_after_bytes = 1000000;
  cut.cut_times = 1;
  h.stub.SetFault("model.safetensors", cut);

  const std::string snapshot = FetchModel(h.Options("tiny/baby"));
  CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
  std::vector<std::string> ranges;
  for (const StubRequest& r : h.stub.Requests()) {
    if (r.server == "storage" && r.method == "GET" &&
        r.path.find(FileSha256(source + "/model.safetensors")) != std::string::npos) {
      ranges.push_back(r.range);
    }
  }
  CHECK(ranges == std::vector<std::string>{"", "bytes=1000000-"});
}

TEST_CASE("a partial blob left by an earlier run is resumed, a stale one restarted", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("babyllama-tok105");
  h.stub.AddRepo("tiny/baby", source);
  const std::string sha = FileSha256(source + "/model.safetensors");
  const std::vector<uint8_t> bytes = ReadFileBytes(source + "/model.safetensors");
  const std::string blobs = h.RepoDir("models--tiny--baby") + "/blobs";
  fs::create_directories(blobs);

  SECTION("matching prefix: one ranged request") {
    {
      std::FILE* out = std::fopen((blobs + "/" + sha + ".incomplete").c_str(), "wb");
      REQUIRE(out != nullptr);
      std::fwrite(bytes.data(), 1, 123457, out);
      std::fclose(out);
    }
    const std::string snapshot = FetchModel(h.Options("tiny/baby"));
    CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
    int gets = 0;
    for (const StubRequest& r : h.stub.Requests()) {
      if (r.server == "storage" && r.path.find(sha) != std::string::npos) {
        ++gets;
        CHECK(r.range == "bytes=123457-");
      }
    }
    CHECK(gets == 1);
  }
  SECTION("garbage prefix: the checksum fails, the file is downloaded again from scratch") {
    {
      std::FILE* out = std::fopen((blobs + "/" + sha + ".incomplete").c_str(), "wb");
      REQUIRE(out != nullptr);
      const std::string junk(5000, 'j');
      std::fwrite(junk.data(), 1, junk.size(), out);
      std::fclose(out);
    }
    const std::string snapshot = FetchModel(h.Options("tiny/baby"));
    CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
    std::vector<std::string> ranges;
    for (const StubRequest& r : h.stub.Requests()) {
      if (r.server == "storage" && r.path.find(sha) != std::string::npos) ranges.push_back(r.range);
    }
    CHECK(ranges == std::vector<std::string>{"bytes=5000-", ""});
  }
  SECTION("a server that ignores Range: the 200 answer replaces the partial file") {
    {
      std::FILE* out = std::fopen((blobs + "/" + sha + ".incomplete").c_str(), "wb");
      REQUIRE(out != nullptr);
      std::fwrite(bytes.data(), 1, 70000, out);
      std::fclose(out);
    }
    StubFault ignore;
    ignore.ignore_range = true;
    h.stub.SetFault("model.safetensors", ignore);
    const std::string snapshot = FetchModel(h.Options("tiny/baby"));
    CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
  }
  CHECK_FALSE(fs::exists(blobs + "/" + sha + ".incomplete"));
}

TEST_CASE("wrong content fails the checksum and leaves nothing in the cache", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  h.stub.AddRepo("tiny/stories", source);
  const std::string blobs = h.RepoDir("models--tiny--stories") + "/blobs";

  SECTION("LFS file: sha256") {
    StubFault corrupt;
    corrupt.corrupt = true;
    h.stub.SetFault("model.safetensors", corrupt);
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("tiny/stories")); });
    CHECK(e.kind() == Kind::kChecksum);
    CHECK_THAT(e.what(), Catch::Contains("model.safetensors") && Catch::Contains("sha256"));
    const std::string sha = FileSha256(source + "/model.safetensors");
    CHECK_FALSE(fs::exists(blobs + "/" + sha));
    CHECK_FALSE(fs::exists(blobs + "/" + sha + ".incomplete"));
  }
  SECTION("git-stored file: git blob id") {
    StubFault corrupt;
    corrupt.corrupt = true;
    h.stub.SetFault("config.json", corrupt);
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("tiny/stories")); });
    CHECK(e.kind() == Kind::kChecksum);
    CHECK_THAT(e.what(), Catch::Contains("config.json"));
    const std::string oid = GitBlobId(source + "/config.json");
    CHECK_FALSE(fs::exists(blobs + "/" + oid));
    CHECK_FALSE(fs::exists(blobs + "/" + oid + ".incomplete"));
  }
  // No snapshot entry may point at data that was not verified, and no ref claims the commit.
  const std::string repo_dir = h.RepoDir("models--tiny--stories");
  CHECK_FALSE(fs::exists(repo_dir + "/refs/main"));
  if (fs::exists(repo_dir + "/snapshots")) {
    for (const auto& entry : fs::recursive_directory_iterator(repo_dir + "/snapshots")) {
      if (fs::is_symlink(entry.symlink_status())) {
        INFO(entry.path());
        CHECK(fs::exists(entry.path()));
      }
    }
  }
}

TEST_CASE("a gated repository needs the token and says so", "[fetch]") {
  Harness h;
  h.stub.AddRepo("gated/model", ModelDir("stories260K"));
  h.stub.SetGated("gated/model", "hf_right");

  SECTION("no token") {
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("gated/model")); });
    CHECK(e.kind() == Kind::kAuth);
    CHECK_THAT(e.what(), Catch::Contains("gated/model") && Catch::Contains("HF_TOKEN") &&
                             Catch::Contains("--token"));
  }
  SECTION("wrong token") {
    FetchOptions options = h.Options("gated/model");
    options.http.token = "hf_wrong";
    const HubError e = ExpectHubError([&] { FetchModel(options); });
    CHECK(e.kind() == Kind::kAuth);
    CHECK_THAT(e.what(), Catch::Contains("refused"));
  }
  SECTION("token from HF_TOKEN") {
    ::setenv("HF_TOKEN", "hf_right", 1);
    const std::string snapshot = FetchModel(h.Options("gated/model"));
    ::unsetenv("HF_TOKEN");
    CHECK(fs::is_regular_file(snapshot + "/model.safetensors"));
  }
  SECTION("token from the huggingface-cli token file") {
    TempDir home;
    {
      std::FILE* out = std::fopen((home.path() + "/token").c_str(), "wb");
      REQUIRE(out != nullptr);
      std::fputs("hf_right\n", out);
      std::fclose(out);
    }
    ::setenv("HF_TOKEN_PATH", (home.path() + "/token").c_str(), 1);
    const std::string snapshot = FetchModel(h.Options("gated/model"));
    IsolateFromUserEnvironment();
    CHECK(fs::is_regular_file(snapshot + "/config.json"));
  }
}

TEST_CASE("missing repository, revision and file are reported as not found", "[fetch]") {
  Harness h;
  h.stub.AddRepo("tiny/stories", ModelDir("stories260K"));

  SECTION("repository") {
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("nobody/nothing")); });
    CHECK(e.kind() == Kind::kNotFound);
    CHECK_THAT(e.what(), Catch::Contains("nobody/nothing") && Catch::Contains("not found"));
  }
  SECTION("revision") {
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("tiny/stories", "no-such")); });
    CHECK(e.kind() == Kind::kNotFound);
    CHECK_THAT(e.what(), Catch::Contains("revision 'no-such'") && Catch::Contains("not found"));
  }
  SECTION("file listed but gone") {
    StubFault missing;
    missing.missing = true;
    h.stub.SetFault("tokenizer.json", missing);
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("tiny/stories")); });
    CHECK(e.kind() == Kind::kNotFound);
    CHECK_THAT(e.what(), Catch::Contains("file 'tokenizer.json'") && Catch::Contains("not found"));
  }
  SECTION("shard named by the index but absent") {
    h.stub.AddRepo("synth/sharded", ModelDir("synth-llama-bf16-sharded"));
    h.stub.RemoveFile("synth/sharded", "model-00002-of-00002.safetensors");
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("synth/sharded")); });
    CHECK(e.kind() == Kind::kNotFound);
    CHECK_THAT(e.what(), Catch::Contains("model-00002-of-00002.safetensors"));
  }
  SECTION("no safetensors weights") {
    h.stub.RemoveFile("tiny/stories", "model.safetensors");
    h.stub.AddFile("tiny/stories", "pytorch_model.bin", "pickle");
    const HubError e = ExpectHubError([&] { FetchModel(h.Options("tiny/stories")); });
    CHECK(e.kind() == Kind::kNoWeights);
    CHECK_THAT(e.what(), Catch::Contains("pytorch_model.bin") && Catch::Contains("safetensors"));
    CHECK(h.stub.ContentGets() == 0);
  }
}

TEST_CASE("a server slower than the timeouts fails in bounded time", "[fetch]") {
  Harness h;
  h.stub.AddRepo("tiny/stories", ModelDir("stories260K"));
  FetchOptions options = h.Options("tiny/stories");
  options.http.max_retries = 1;

  SECTION("stalled download (low-speed timeout)") {
    StubFault stall;
    stall.stall_ms = 8000;
    h.stub.SetFault("model.safetensors", stall);
    const auto start = std::chrono::steady_clock::now();
    const HubError e = ExpectHubError([&] { FetchModel(options); });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(e.kind() == Kind::kNetwork);
    CHECK_THAT(e.what(), Catch::Contains("model.safetensors") && Catch::Contains("2 attempts"));
    CHECK(seconds < 6);  // two attempts of ~1 s, not the server's 8 s
  }
  SECTION("stalled API answer (metadata timeout)") {
    options.http.metadata_timeout = 500ms;
    h.stub.SetApiStall(6000);
    const auto start = std::chrono::steady_clock::now();
    const HubError e = ExpectHubError([&] { FetchModel(options); });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(e.kind() == Kind::kNetwork);
    CHECK_THAT(e.what(), Catch::Contains("tiny/stories"));
    CHECK(seconds < 4.5);  // two attempts of 0.5 s, not the server's 6 s
  }
}

TEST_CASE("transient 5xx answers are retried with backoff, up to the limit", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  h.stub.AddRepo("tiny/stories", source);
  const std::string sha = FileSha256(source + "/model.safetensors");
  StubFault flaky;
  flaky.fail_times = 2;
  flaky.fail_status = 503;
  h.stub.SetFault("model.safetensors", flaky);
  SECTION("recovers") {
    const std::string snapshot = FetchModel(h.Options("tiny/stories"));
    CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
    CHECK(CountRequests(h.stub, "storage", "GET", sha) == 3);
  }
  SECTION("gives up") {
    FetchOptions options = h.Options("tiny/stories");
    options.http.max_retries = 1;
    const HubError e = ExpectHubError([&] { FetchModel(options); });
    CHECK(e.kind() == Kind::kNetwork);
    CHECK_THAT(e.what(), Catch::Contains("503"));
    CHECK(CountRequests(h.stub, "storage", "GET", sha) == 2);
  }
}

TEST_CASE("offline mode and an unreachable Hub use a complete cached snapshot", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  h.stub.AddRepo("tiny/stories", source);
  std::string dead_endpoint;
  {
    HubStub closed;
    dead_endpoint = closed.endpoint();
  }
  SECTION("nothing cached") {
    FetchOptions options = h.Options("tiny/stories");
    options.offline = true;
    CHECK(ExpectHubError([&] { FetchModel(options); }).kind() == Kind::kOffline);
    options.offline = false;
    options.http.endpoint = dead_endpoint;
    options.http.max_retries = 1;
    CHECK(ExpectHubError([&] { FetchModel(options); }).kind() == Kind::kNetwork);
  }
  SECTION("cached") {
    const std::string snapshot = FetchModel(h.Options("tiny/stories"));
    FetchOptions options = h.Options("tiny/stories");
    options.offline = true;
    CHECK(FetchModel(options) == snapshot);
    options.offline = false;
    options.http.endpoint = dead_endpoint;
    options.http.max_retries = 1;
    CHECK(FetchModel(options) == snapshot);
    bool logged = false;
    for (const std::string& line : h.logs)
      logged = logged || line.find("cached snapshot") != std::string::npos;
    CHECK(logged);
  }
}

TEST_CASE("a cancelled fetch stops and keeps the partial file for a later resume", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("babyllama-tok105");
  h.stub.AddRepo("tiny/baby", source);
  StubFault slow;
  slow.stall_ms = 300;  // leaves time to cancel after the first bytes of another file
  h.stub.SetFault("model.safetensors", slow);
  std::atomic<bool> cancel{false};
  FetchOptions options = h.Options("tiny/baby");
  options.cancel = &cancel;
  options.on_progress = [&](const DownloadProgress& p) {
    if (p.file == "model.safetensors" && p.file_done > 0) cancel = true;
  };
  CHECK(ExpectHubError([&] { FetchModel(options); }).kind() == Kind::kCancelled);
  const std::string incomplete = h.RepoDir("models--tiny--baby") + "/blobs/" +
                                 FileSha256(source + "/model.safetensors") + ".incomplete";
  REQUIRE(fs::exists(incomplete));
  const auto kept = fs::file_size(incomplete);
  CHECK(kept > 0);
  h.stub.ClearRequests();
  cancel = false;
  options.on_progress = nullptr;
  h.stub.ClearFaults();
  const std::string snapshot = FetchModel(options);
  CheckSnapshotEntry(snapshot, "model.safetensors", source + "/model.safetensors");
  bool resumed = false;
  for (const StubRequest& r : h.stub.Requests()) {
    resumed =
        resumed || (r.server == "storage" && r.range == "bytes=" + std::to_string(kept) + "-");
  }
  CHECK(resumed);
}

TEST_CASE("concurrent fetches of one model download each file once", "[fetch]") {
  Harness h;
  const std::string source = ModelDir("synth-llama-bf16-sharded");
  h.stub.AddRepo("synth/sharded", source);
  StubFault slow;
  slow.stall_ms = 200;  // keeps the first download in flight while the other fetch plans
  h.stub.SetFault("model-00001-of-00002.safetensors", slow);
  std::string snapshots[2];
  std::exception_ptr errors[2];
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      try {
        snapshots[i] = FetchModel(h.Options("synth/sharded"));
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  CHECK(snapshots[0] == snapshots[1]);
  for (const std::string& name : ListDir(source)) {
    CheckSnapshotEntry(snapshots[0], name, source + "/" + name);
  }
  // The blob lock makes the second fetch wait for the first download and reuse it.
  CHECK(CountRequests(h.stub, "storage", "GET",
                      FileSha256(source + "/model-00001-of-00002.safetensors")) == 1);
  CHECK(CountRequests(h.stub, "storage", "GET",
                      FileSha256(source + "/model-00002-of-00002.safetensors")) == 1);
}

TEST_CASE("repo specs, ids, paths and etags are validated", "[fetch]") {
  const hf::RepoSpec spec = hf::ParseRepoSpec("Org-1/model.v2@refs/pr/3");
  CHECK(spec.repo_id == "Org-1/model.v2");
  CHECK(spec.revision == "refs/pr/3");
  CHECK(hf::ParseRepoSpec("org/name").revision == "main");
  CHECK(hf::LooksLikeHubRepoId("org/name"));
  CHECK(hf::LooksLikeHubRepoId("org/name@abc"));
  CHECK_FALSE(hf::LooksLikeHubRepoId("gpt2"));
  CHECK_FALSE(hf::LooksLikeHubRepoId("./org/name"));
  CHECK_FALSE(hf::LooksLikeHubRepoId("/abs/path"));
  CHECK_FALSE(hf::LooksLikeHubRepoId("a/b/c"));
  CHECK_FALSE(hf::LooksLikeHubRepoId("org/na--me"));
  CHECK_THROWS_AS(hf::ParseRepoSpec("org/name@../../x"), Error);
  CHECK_THROWS_AS(hf::ValidateRepoFilePath("../escape"), Error);
  CHECK_THROWS_AS(hf::ValidateRepoFilePath("/etc/passwd"), Error);
  CHECK_THROWS_AS(hf::ValidateRepoFilePath("a//b"), Error);
  CHECK_NOTHROW(hf::ValidateRepoFilePath("sub/dir/file.json"));
  CHECK_THROWS_AS(hf::ValidateEtag("../x"), Error);
  CHECK(hf::NormalizeEtag("W/\"abc123\"") == "abc123");
  CHECK(hf::NormalizeEtag("\"abc\"") == "abc");
  CHECK(hf::IsCommitHash(std::string(40, 'a')));
  CHECK_FALSE(hf::IsCommitHash(std::string(40, 'A')));

  const hf::RepoCache cache("/c", "org/name");
  CHECK(cache.repo_dir() == "/c/models--org--name");
  CHECK(cache.LockPath("e1") == "/c/.locks/models--org--name/e1.lock");
  CHECK(cache.RefPath("refs/pr/3") == "/c/models--org--name/refs/refs/pr/3");
}

TEST_CASE("nested snapshot paths link back to blobs with the right depth", "[fetch]") {
  TempDir dir;
  const hf::RepoCache cache(dir.path(), "org/name");
  fs::create_directories(cache.repo_dir() + "/blobs");
  {
    std::FILE* f = std::fopen(cache.BlobPath("etag1").c_str(), "wb");
    std::fputs("x", f);
    std::fclose(f);
  }
  const std::string commit(40, 'b');
  cache.LinkSnapshotFile(commit, "a/b/c.json", "etag1");
  CHECK(fs::read_symlink(cache.SnapshotFile(commit, "a/b/c.json")) == "../../../../blobs/etag1");
  CHECK(cache.HasSnapshotFile(commit, "a/b/c.json"));
  cache.WriteRef("main", commit);
  CHECK(cache.ReadRef("main") == commit);
  CHECK_FALSE(cache.ReadRef("other").has_value());
}

TEST_CASE("HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT set the timeouts", "[fetch]") {
  hf::HttpSettings http;
  ::setenv("HF_HUB_ETAG_TIMEOUT", "2.5", 1);
  ::setenv("HF_HUB_DOWNLOAD_TIMEOUT", "7", 1);
  hf::ApplyTimeoutEnvironment(&http);
  CHECK(http.metadata_timeout == 2500ms);
  CHECK(http.low_speed_time == 7s);
  ::setenv("HF_HUB_ETAG_TIMEOUT", "soon", 1);
  CHECK_THROWS_WITH(hf::ApplyTimeoutEnvironment(&http), Catch::Contains("HF_HUB_ETAG_TIMEOUT"));
  ::unsetenv("HF_HUB_ETAG_TIMEOUT");
  ::unsetenv("HF_HUB_DOWNLOAD_TIMEOUT");
}

TEST_CASE("the hub cache directory follows HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME", "[fetch]") {
  struct Saved {
    std::vector<std::pair<std::string, std::string>> values;
    std::vector<std::string> unset;
    void Keep(const char* name) {
      const char* v = std::getenv(name);
      if (v)
        values.emplace_back(name, v);
      else
        unset.push_back(name);
    }
    ~Saved() {
      for (auto& kv : values) ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
      for (auto& name : unset) ::unsetenv(name.c_str());
    }
  } saved;
  for (const char* name :
       {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"}) {
    saved.Keep(name);
    ::unsetenv(name);
  }
  ::setenv("HOME", "/home/u", 1);
  CHECK(hf::DefaultHubCacheDir() == "/home/u/.cache/huggingface/hub");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  CHECK(hf::DefaultHubCacheDir() == "/xdg/huggingface/hub");
  ::setenv("HF_HOME", "~/hfhome", 1);
  CHECK(hf::DefaultHubCacheDir() == "/home/u/hfhome/hub");
  ::setenv("HF_HUB_CACHE", "/hubcache", 1);
  CHECK(hf::DefaultHubCacheDir() == "/hubcache");
}

#ifdef HWYQUANT_CLI
using hwyquant::GgufFile;
using hwyquant::GgufTensorInfo;

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the hwyquant binary with `args` (already shell-quoted), capturing stdout and stderr.
CommandResult RunCli(const std::string& args, const TempDir& scratch) {
  const std::string err_path = scratch.path() + "/stderr.txt";
  const std::string command =
      std::string("'") + HWYQUANT_CLI + "' " + args + " 2>'" + err_path + "'";
  CommandResult result;
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) FAIL("cannot run " << command);
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.out.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.err = ReadTextFile(err_path);
  return result;
}

TEST_CASE("hwyquant fetch prints the snapshot and run accepts a Hub id", "[fetch][cli]") {
  Harness h;
  const std::string source = ModelDir("stories260K");
  const std::string commit = h.stub.AddRepo("tiny/stories", source);
  h.stub.AddRepo("gated/stories", source);
  h.stub.SetGated("gated/stories", "hf_cli_token");
  TempDir scratch;
  const std::string hub_args =
      " --endpoint '" + h.stub.endpoint() + "' --cache-dir '" + h.cache.path() + "'";

  const CommandResult fetched = RunCli("fetch tiny/stories@v1.0" + hub_args, scratch);
  INFO("stderr: " << fetched.err);
  REQUIRE(fetched.exit_code == 0);
  const std::string snapshot = h.cache.path() + "/models--tiny--stories/snapshots/" + commit;
  CHECK(fetched.out == snapshot + "\n");
  CHECK(ReadTextFile(h.cache.path() + "/models--tiny--stories/refs/v1.0") == commit);

  const CommandResult gated = RunCli("fetch gated/stories" + hub_args, scratch);
  CHECK(gated.exit_code == 1);
  CHECK_THAT(gated.err,
             Catch::Contains("gated") && Catch::Contains("HF_TOKEN") && Catch::Contains("--token"));
  CHECK(gated.out.empty());

  const CommandResult json =
      RunCli("fetch gated/stories --token hf_cli_token --progress-json" + hub_args, scratch);
  INFO("stderr: " << json.err);
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.err,
             Catch::Contains("\"stage\":\"downloading\"") && Catch::Contains("\"unit\":\"bytes\""));

  // run SRC with a Hub id converts the downloaded snapshot exactly like a local folder of the
  // repo's name (the snapshot folder is named by commit; the model is named by repo).
  const std::string from_hub = scratch.path() + "/hub.gguf";
  const std::string from_dir = scratch.path() + "/dir.gguf";
  const std::string named_copy = scratch.path() + "/stories";
  fs::copy(source, named_copy, fs::copy_options::recursive);
  const CommandResult run_hub =
      RunCli("run tiny/stories Q8_0 -o '" + from_hub + "'" + hub_args, scratch);
  INFO("stderr: " << run_hub.err);
  REQUIRE(run_hub.exit_code == 0);
  const CommandResult run_dir =
      RunCli("run '" + named_copy + "' Q8_0 -o '" + from_dir + "'", scratch);
  REQUIRE(run_dir.exit_code == 0);
  const auto hub_gguf = GgufFile::Open(from_hub);
  const auto dir_gguf = GgufFile::Open(from_dir);
  REQUIRE(hub_gguf->kv().size() == dir_gguf->kv().size());
  for (size_t i = 0; i < hub_gguf->kv().size(); ++i) {
    INFO("KV " << i << " " << dir_gguf->kv()[i].key);
    CHECK(hub_gguf->kv()[i].key == dir_gguf->kv()[i].key);
    CHECK(hub_gguf->kv()[i].value == dir_gguf->kv()[i].value);
  }
  REQUIRE(hub_gguf->tensors().size() == dir_gguf->tensors().size());
  for (size_t i = 0; i < hub_gguf->tensors().size(); ++i) {
    const GgufTensorInfo& a = hub_gguf->tensors()[i];
    const GgufTensorInfo& b = dir_gguf->tensors()[i];
    INFO("tensor " << b.name);
    CHECK(a.name == b.name);
    CHECK(a.dims == b.dims);
    CHECK(a.type == b.type);
    REQUIRE(a.size == b.size);
    CHECK(std::memcmp(hub_gguf->TensorData(i), dir_gguf->TensorData(i), a.size) == 0);
  }
}
#endif  // HWYQUANT_CLI

}  // namespace
}  // namespace hwyquant::test
