// A local Hugging Face Hub stand-in for tests: real HTTP on 127.0.0.1 with injectable faults.
//
// Two servers on random free ports: the "hub" answers the routes huggingface_hub uses
// (GET /api/models/ORG/NAME/revision/REV, HEAD/GET /ORG/NAME/resolve/REV/PATH with X-Repo-Commit,
// ETag, X-Linked-Etag, X-Linked-Size, X-Error-Code) and redirects LFS files to the second
// server, the "storage host" (GET /lfs/SHA256), as the real Hub redirects to its CDN.
#ifndef HWYQUANT_TESTS_HUB_STUB_H_
#define HWYQUANT_TESTS_HUB_STUB_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace hwyquant::test {

// What the stub saw, for assertions on downloads, ranges and where the token went.
struct StubRequest {
  std::string server;  // "hub" or "storage"
  std::string method;
  std::string path;
  std::string range;          // Range header, "" when absent
  std::string authorization;  // Authorization header, "" when absent
};

// Misbehaviour of the server for one repository file path (applies in every repository).
struct StubFault {
  // Close the connection after this many body bytes, for the next `cut_times` GETs.
  long long cut_after_bytes = -1;
  int cut_times = 0;
  // Serve the file with one byte changed (same size): a checksum must catch it.
  bool corrupt = false;
  // Wait this long before sending any body byte, on every GET (slower than a client timeout).
  int stall_ms = 0;
  // Answer the next `fail_times` GETs with `fail_status` (e.g. 503).
  int fail_times = 0;
  int fail_status = 503;
  // Answer Range requests with 200 and the whole file (chunked), as some servers do.
  bool ignore_range = false;
  // Listed by the revision API but answered 404 EntryNotFound by resolve (deleted meanwhile).
  bool missing = false;
};

class HubStub {
 public:
  HubStub();
  ~HubStub();
  HubStub(const HubStub&) = delete;
  HubStub& operator=(const HubStub&) = delete;

  // http://127.0.0.1:PORT of the hub server.
  std::string endpoint() const;
  std::string storage_origin() const;

  // Serves every regular file of `folder` as repo_id at one commit, reachable as "main", "v1.0"
  // and the commit id. *.safetensors, *.model, *.bin, *.gguf, *.pth are LFS files. Returns the
  // commit id (deterministic: derived from the repo id and the file contents).
  std::string AddRepo(const std::string& repo_id, const std::string& folder);
  // Adds or replaces one file (the commit id stays the same).
  void AddFile(const std::string& repo_id, const std::string& path, const std::string& content);
  void RemoveFile(const std::string& repo_id, const std::string& path);
  // Only requests with "Authorization: Bearer TOKEN" get through: no token -> 401, another
  // token -> 403, both with X-Error-Code: GatedRepo.
  void SetGated(const std::string& repo_id, const std::string& token);
  std::string Commit(const std::string& repo_id) const;

  void SetFault(const std::string& path, const StubFault& fault);
  // Delays the revision API answer (a metadata request slower than its timeout).
  void SetApiStall(int milliseconds);
  void ClearFaults();

  std::vector<StubRequest> Requests() const;
  void ClearRequests();
  // GETs that returned file content (hub resolve GETs of small files + storage GETs).
  int ContentGets() const;

 private:
  struct File {
    std::string content;
    bool lfs = false;
    std::string sha256;
    std::string git_sha1;
  };
  struct Repo {
    std::string commit;
    std::map<std::string, File> files;
    std::string gated_token;  // "" = public
  };

  void Record(const std::string& server, const std::string& method, const std::string& path,
              const std::string& range, const std::string& authorization);
  void ServeContent(const httplib::Request& req, httplib::Response& res, const std::string& path,
                    std::string content);
  void InstallHubRoutes();
  void InstallStorageRoutes();
  static File MakeFile(const std::string& path, const std::string& content);

  std::unique_ptr<httplib::Server> hub_;
  std::unique_ptr<httplib::Server> storage_;
  int hub_port_ = 0;
  int storage_port_ = 0;
  std::thread hub_thread_;
  std::thread storage_thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::map<std::string, Repo> repos_;
  std::map<std::string, StubFault> faults_;
  int api_stall_ms_ = 0;
  int content_gets_ = 0;
  std::vector<StubRequest> requests_;
};

}  // namespace hwyquant::test

#endif  // HWYQUANT_TESTS_HUB_STUB_H_
