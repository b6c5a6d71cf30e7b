// Local Hub stand-in: the hub routes, an LFS storage host on a second port, and injectable faults.
#include "tests/hub_stub.h"

#include <dirent.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace hwyquant::test {
namespace {

std::string Digest(const EVP_MD* md, const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, md, nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

// The id git gives a blob: what the Hub uses as the ETag of files not stored in LFS.
std::string GitBlobId(const std::string& content) {
  std::string object = "blob " + std::to_string(content.size());
  object.push_back('\0');
  object += content;
  return Digest(EVP_sha1(), object);
}

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void SetError(httplib::Response& res, int status, const std::string& code,
              const std::string& message) {
  res.status = status;
  if (!code.empty()) res.set_header("X-Error-Code", code);
  res.set_header("X-Error-Message", message);
  res.set_content(nlohmann::json{{"error", message}}.dump(), "application/json");
}

constexpr size_t kWriteChunk = 64 * 1024;

}  // namespace

HubStub::HubStub() : hub_(new httplib::Server), storage_(new httplib::Server) {
  InstallHubRoutes();
  InstallStorageRoutes();
  hub_port_ = hub_->bind_to_any_port("127.0.0.1");
  storage_port_ = storage_->bind_to_any_port("127.0.0.1");
  if (hub_port_ <= 0 || storage_port_ <= 0) {
    throw std::runtime_error("hub stub: cannot bind a port on 127.0.0.1");
  }
  hub_thread_ = std::thread([this] { hub_->listen_after_bind(); });
  storage_thread_ = std::thread([this] { storage_->listen_after_bind(); });
  // stop() is a no-op until the accept loop runs, so a stub destroyed right away would hang.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(hub_->is_running() && storage_->is_running())) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("hub stub: servers did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

HubStub::~HubStub() {
  stopping_ = true;
  hub_->stop();
  storage_->stop();
  if (hub_thread_.joinable()) hub_thread_.join();
  if (storage_thread_.joinable()) storage_thread_.join();
}

std::string HubStub::endpoint() const { return "http://127.0.0.1:" + std::to_string(hub_port_); }

std::string HubStub::storage_origin() const {
  return "http://127.0.0.1:" + std::to_string(storage_port_);
}

HubStub::File HubStub::MakeFile(const std::string& path, const std::string& content) {
  File file;
  file.content = content;
  for (const char* ext : {".safetensors", ".model", ".bin", ".gguf", ".pth"}) {
    file.lfs = file.lfs || EndsWith(path, ext);
  }
  file.sha256 = Digest(EVP_sha256(), content);
  file.git_sha1 = GitBlobId(content);
  return file;
}

std::string HubStub::AddRepo(const std::string& repo_id, const std::string& folder) {
  Repo repo;
  DIR* dir = ::opendir(folder.c_str());
  if (!dir) throw std::runtime_error("hub stub: cannot open " + folder);
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    struct stat st;
    if (::stat((folder + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      names.push_back(name);
    }
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  std::string identity = repo_id;
  for (const std::string& name : names) {
    std::ifstream in(folder + "/" + name, std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    repo.files[name] = MakeFile(name, content);
    identity += "\n" + name + " " + repo.files[name].sha256;
  }
  repo.commit = Digest(EVP_sha1(), identity);
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string commit = repo.commit;
  repos_[repo_id] = std::move(repo);
  return commit;
}

void HubStub::AddFile(const std::string& repo_id, const std::string& path,
                      const std::string& content) {
  std::lock_guard<std::mutex> lock(mutex_);
  repos_.at(repo_id).files[path] = MakeFile(path, content);
}

void HubStub::RemoveFile(const std::string& repo_id, const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  repos_.at(repo_id).files.erase(path);
}

void HubStub::SetGated(const std::string& repo_id, const std::string& token) {
  std::lock_guard<std::mutex> lock(mutex_);
  repos_.at(repo_id).gated_token = token;
}

std::string HubStub::Commit(const std::string& repo_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return repos_.at(repo_id).commit;
}

void HubStub::SetFault(const std::string& path, const StubFault& fault) {
  std::lock_guard<std::mutex> lock(mutex_);
  faults_[path] = fault;
}

void HubStub::SetApiStall(int milliseconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  api_stall_ms_ = milliseconds;
}

void HubStub::ClearFaults() {
  std::lock_guard<std::mutex> lock(mutex_);
  faults_.clear();
  api_stall_ms_ = 0;
}

std::vector<StubRequest> HubStub::Requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_;
}

void HubStub::ClearRequests() {
  std::lock_guard<std::mutex> lock(mutex_);
  requests_.clear();
  content_gets_ = 0;
}

int HubStub::ContentGets() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return content_gets_;
}

void HubStub::Record(const std::string& server, const std::string& method, const std::string& path,
                     const std::string& range, const std::string& authorization) {
  std::lock_guard<std::mutex> lock(mutex_);
  requests_.push_back({server, method, path, range, authorization});
}

// Sends `content` honouring the file's fault; called with mutex_ NOT held.
void HubStub::ServeContent(const httplib::Request& req, httplib::Response& res,
                           const std::string& path, std::string content) {
  StubFault fault;
  bool cut = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = faults_.find(path);
    if (it != faults_.end()) {
      if (it->second.fail_times > 0) {
        --it->second.fail_times;
        SetError(res, it->second.fail_status, "", "stub: injected failure");
        return;
      }
      if (it->second.cut_times > 0) {
        --it->second.cut_times;
        cut = true;
      }
      fault = it->second;
    }
    ++content_gets_;
  }
  if (fault.corrupt && !content.empty()) content[content.size() / 2] ^= 0x5a;
  auto data = std::make_shared<std::string>(std::move(content));
  auto sent = std::make_shared<long long>(0);
  const long long cut_after = cut ? fault.cut_after_bytes : -1;
  const int stall_ms = fault.stall_ms;
  std::atomic<bool>* stopping = &stopping_;
  auto stall = [stopping, stall_ms] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(stall_ms);
    while (!stopping->load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  if (fault.ignore_range && !req.ranges.empty()) {
    res.status = 200;
    res.set_chunked_content_provider("application/octet-stream",
                                     [data, stall](size_t, httplib::DataSink& sink) {
                                       stall();
                                       sink.write(data->data(), data->size());
                                       sink.done();
                                       return true;
                                     });
    return;
  }
  res.set_content_provider(data->size(), "application/octet-stream",
                           [data, sent, cut_after, stall, stopping](size_t offset, size_t length,
                                                                    httplib::DataSink& sink) {
                             if (*sent == 0) stall();
                             if (stopping->load()) return false;
                             size_t n = std::min(length, kWriteChunk);
                             if (cut_after >= 0) {
                               if (*sent >= cut_after)
                                 return false;  // drop the connection mid-file
                               n = std::min<size_t>(n, static_cast<size_t>(cut_after - *sent));
                             }
                             sink.write(data->data() + offset, n);
                             *sent += static_cast<long long>(n);
                             return true;
                           });
}

void HubStub::InstallHubRoutes() {
  // Returns false (with the answer set) when the request may not see the repository.
  auto gate = [this](const httplib::Request& req, httplib::Response& res, const std::string& id,
                     Repo* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string auth = req.get_header_value("Authorization");
    auto it = repos_.find(id);
    if (it == repos_.end()) {
      // Like the Hub: anonymous callers cannot tell a missing repo from a private one.
      SetError(res, auth.empty() ? 401 : 404, "RepoNotFound", "Repository not found");
      return false;
    }
    const std::string& token = it->second.gated_token;
    if (!token.empty() && auth != "Bearer " + token) {
      SetError(res, auth.empty() ? 401 : 403, "GatedRepo",
               "Access to model " + id +
                   " is restricted. You must have access to it and be "
                   "authenticated to access it. Please log in.");
      return false;
    }
    *out = it->second;
    return true;
  };
  auto revision_matches = [](const Repo& repo, const std::string& revision) {
    return revision == "main" || revision == "v1.0" || revision == repo.commit;
  };

  hub_->Get(R"(/api/models/([^/]+)/([^/]+)/revision/(.+))",
            [this, gate, revision_matches](const httplib::Request& req, httplib::Response& res) {
              Record("hub", req.method, req.path, req.get_header_value("Range"),
                     req.get_header_value("Authorization"));
              int stall_ms = 0;
              {
                std::lock_guard<std::mutex> lock(mutex_);
                stall_ms = api_stall_ms_;
              }
              const auto until =
                  std::chrono::steady_clock::now() + std::chrono::milliseconds(stall_ms);
              while (!stopping_ && std::chrono::steady_clock::now() < until) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
              }
              const std::string id = req.matches[1].str() + "/" + req.matches[2].str();
              const std::string revision = req.matches[3];
              Repo repo;
              if (!gate(req, res, id, &repo)) return;
              if (!revision_matches(repo, revision)) {
                SetError(res, 404, "RevisionNotFound", "Invalid rev id: " + revision);
                return;
              }
              nlohmann::json siblings = nlohmann::json::array();
              for (const auto& file : repo.files) siblings.push_back({{"rfilename", file.first}});
              const nlohmann::json body = {
                  {"_id", "stub"},       {"id", id},
                  {"modelId", id},       {"sha", repo.commit},
                  {"private", false},    {"gated", repo.gated_token.empty() ? "false" : "auto"},
                  {"siblings", siblings}};
              res.set_content(body.dump(), "application/json");
            });

  hub_->Get(R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))",
            [this, gate, revision_matches](const httplib::Request& req, httplib::Response& res) {
              Record("hub", req.method, req.path, req.get_header_value("Range"),
                     req.get_header_value("Authorization"));
              const std::string id = req.matches[1].str() + "/" + req.matches[2].str();
              const std::string revision = req.matches[3];
              const std::string path = req.matches[4];
              Repo repo;
              if (!gate(req, res, id, &repo)) return;
              if (!revision_matches(repo, revision)) {
                SetError(res, 404, "RevisionNotFound", "Invalid rev id: " + revision);
                return;
              }
              bool missing = false;
              {
                std::lock_guard<std::mutex> lock(mutex_);
                auto fault = faults_.find(path);
                missing = fault != faults_.end() && fault->second.missing;
              }
              auto it = repo.files.find(path);
              if (it == repo.files.end() || missing) {
                SetError(res, 404, "EntryNotFound", "Entry not found");
                return;
              }
              const File& file = it->second;
              res.set_header("X-Repo-Commit", repo.commit);
              if (file.lfs) {
                // The pointer file's id is the git ETag; the real content is elsewhere.
                const std::string pointer =
                    "version https://git-lfs.github.com/spec/v1\noid sha256:" + file.sha256 +
                    "\nsize " + std::to_string(file.content.size()) + "\n";
                res.set_header("ETag", "\"" + GitBlobId(pointer) + "\"");
                res.set_header("X-Linked-Etag", "\"" + file.sha256 + "\"");
                res.set_header("X-Linked-Size", std::to_string(file.content.size()));
                res.set_redirect(storage_origin() + "/lfs/" + file.sha256 +
                                     "?X-Amz-Signature=stub&response-content-disposition=x",
                                 302);
                res.set_content("Found. Redirecting to storage", "text/plain");
                return;
              }
              res.set_header("ETag", "\"" + file.git_sha1 + "\"");
              if (req.method == "HEAD") {
                auto size = file.content.size();
                res.set_content_provider(size, "application/octet-stream",
                                         [](size_t, size_t, httplib::DataSink&) { return false; });
                return;
              }
              ServeContent(req, res, path, file.content);
            });
}

void HubStub::InstallStorageRoutes() {
  storage_->Get(R"(/lfs/([0-9a-f]{64}))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Record("storage", req.method, req.path, req.get_header_value("Range"),
                         req.get_header_value("Authorization"));
                  const std::string sha = req.matches[1];
                  std::string path;
                  std::string content;
                  bool found = false;
                  {
                    std::lock_guard<std::mutex> lock(mutex_);
                    for (const auto& repo : repos_) {
                      for (const auto& file : repo.second.files) {
                        if (file.second.lfs && file.second.sha256 == sha) {
                          path = file.first;
                          content = file.second.content;
                          found = true;
                        }
                      }
                    }
                  }
                  if (!found) {
                    SetError(res, 404, "", "no such object");
                    return;
                  }
                  ServeContent(req, res, path, std::move(content));
                });
}

}  // namespace hwyquant::test
