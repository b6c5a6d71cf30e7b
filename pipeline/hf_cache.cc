// huggingface_hub-compatible cache paths, refs, snapshot symlinks and blob locks.
#include "pipeline/hf_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "hwyquant/format.h"
#include "pipeline/paths.h"

namespace hwyquant::hf {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string ExpandUser(const std::string& path) {
  if (path.empty() || path[0] != '~') return path;
  if (path.size() > 1 && path[1] != '/') return path;  // ~user is not expanded
  const std::string home = Env("HOME");
  if (home.empty()) return path;
  return home + path.substr(1);
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Unique per process and call, so concurrent writers never share a temporary name.
std::string TempSuffix() {
  static std::atomic<unsigned> counter{0};
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

[[noreturn]] void ThrowErrno(const std::string& what, const std::string& path) {
  throw Error(what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

std::string HfHomeDir() {
  const std::string hf_home = Env("HF_HOME");
  if (!hf_home.empty()) return ExpandUser(hf_home);
  const std::string xdg = Env("XDG_CACHE_HOME");
  if (!xdg.empty()) return ExpandUser(xdg) + "/huggingface";
  return ExpandUser("~/.cache/huggingface");
}

std::string DefaultHubCacheDir() {
  std::string dir = Env("HF_HUB_CACHE");
  if (dir.empty()) dir = Env("HUGGINGFACE_HUB_CACHE");
  if (!dir.empty()) return ExpandUser(dir);
  return HfHomeDir() + "/hub";
}

bool IsCommitHash(const std::string& text) {
  if (text.size() != 40) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void ValidateRepoId(const std::string& repo_id) {
  const auto fail = [&](const std::string& why) {
    throw Error("invalid Hub repository id '" + repo_id + "': " + why +
                " (expected ORG/NAME of letters, digits, '-', '_', '.')");
  };
  if (repo_id.empty()) fail("empty");
  if (repo_id.size() > 96) fail("longer than 96 characters");
  const size_t slash = repo_id.find('/');
  if (slash != std::string::npos && repo_id.find('/', slash + 1) != std::string::npos) {
    fail("more than one '/'");
  }
  for (const std::string& part :
       {slash == std::string::npos ? repo_id : repo_id.substr(0, slash),
        slash == std::string::npos ? std::string("x") : repo_id.substr(slash + 1)}) {
    if (part.empty()) fail("empty organization or name");
    for (char c : part) {
      if (!IsNameChar(c)) fail(std::string("character '") + c + "' not allowed");
    }
    if (part.front() == '-' || part.front() == '.' || part.back() == '-' || part.back() == '.') {
      fail("a part starts or ends with '-' or '.'");
    }
  }
  if (repo_id.find("--") != std::string::npos) fail("contains '--'");
  if (repo_id.find("..") != std::string::npos) fail("contains '..'");
}

void ValidateRepoFilePath(const std::string& path) {
  const auto fail = [&](const std::string& why) {
    throw Error("unsafe file path '" + path + "' in Hub repository listing: " + why);
  };
  if (path.empty()) fail("empty");
  if (path.size() > 4096) fail("too long");
  if (path.front() == '/') fail("absolute");
  if (path.find('\\') != std::string::npos) fail("contains a backslash");
  if (path.find('\0') != std::string::npos) fail("contains a NUL byte");
  std::stringstream parts(path);
  std::string part;
  size_t count = 0;
  while (std::getline(parts, part, '/')) {
    ++count;
    if (part.empty() || part == "." || part == "..") fail("has an empty, '.' or '..' component");
  }
  if (count == 0 || path.back() == '/') fail("ends with '/'");
}

void ValidateRevision(const std::string& revision) {
  if (revision.empty()) throw Error("empty Hub revision");
  if (revision.size() > 255) throw Error("Hub revision '" + revision + "' is too long");
  for (char c : revision) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '\\') {
      throw Error("Hub revision '" + revision + "' contains a control character or backslash");
    }
  }
  // A revision names a file under refs/, so it must stay inside that directory.
  if (revision.front() == '/' || revision.back() == '/') {
    throw Error("Hub revision '" + revision + "' starts or ends with '/'");
  }
  std::stringstream parts(revision);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty() || part == "." || part == "..") {
      throw Error("Hub revision '" + revision + "' has an empty, '.' or '..' component");
    }
  }
}

void ValidateEtag(const std::string& etag) {
  bool ok = !etag.empty() && etag.size() <= 200 && etag.front() != '.';
  for (char c : etag) ok = ok && IsNameChar(c);
  if (!ok) throw Error("the Hub sent an unusable etag '" + etag + "' for a file");
}

std::string NormalizeEtag(const std::string& header_value) {
  std::string etag = header_value;
  while (!etag.empty() && (etag.back() == ' ' || etag.back() == '\r' || etag.back() == '\n')) {
    etag.pop_back();
  }
  size_t start = etag.find_first_not_of(' ');
  etag = start == std::string::npos ? "" : etag.substr(start);
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  return etag;
}

RepoCache::RepoCache(std::string cache_dir, const std::string& repo_id)
    : cache_dir_(std::move(cache_dir)) {
  ValidateRepoId(repo_id);
  folder_name_ = "models--" + repo_id;
  for (size_t pos = folder_name_.find('/'); pos != std::string::npos;
       pos = folder_name_.find('/', pos)) {
    folder_name_.replace(pos, 1, "--");
  }
  while (cache_dir_.size() > 1 && cache_dir_.back() == '/') cache_dir_.pop_back();
  repo_dir_ = cache_dir_ + "/" + folder_name_;
}

std::string RepoCache::BlobPath(const std::string& etag) const {
  ValidateEtag(etag);
  return repo_dir_ + "/blobs/" + etag;
}

std::string RepoCache::IncompletePath(const std::string& etag) const {
  return BlobPath(etag) + ".incomplete";
}

std::string RepoCache::LockPath(const std::string& etag) const {
  ValidateEtag(etag);
  return cache_dir_ + "/.locks/" + folder_name_ + "/" + etag + ".lock";
}

std::string RepoCache::SnapshotDir(const std::string& commit) const {
  if (!IsCommitHash(commit)) throw Error("'" + commit + "' is not a 40-hex commit id");
  return repo_dir_ + "/snapshots/" + commit;
}

std::string RepoCache::SnapshotFile(const std::string& commit, const std::string& path) const {
  ValidateRepoFilePath(path);
  return SnapshotDir(commit) + "/" + path;
}

std::string RepoCache::RefPath(const std::string& revision) const {
  ValidateRevision(revision);
  return repo_dir_ + "/refs/" + revision;
}

bool RepoCache::HasBlob(const std::string& etag) const { return PathIsFile(BlobPath(etag)); }

bool RepoCache::HasSnapshotFile(const std::string& commit, const std::string& path) const {
  return PathIsFile(SnapshotFile(commit, path));
}

std::optional<std::string> RepoCache::ReadRef(const std::string& revision) const {
  std::ifstream in(RefPath(revision));
  if (!in) return std::nullopt;
  std::string commit;
  std::getline(in, commit);
  while (!commit.empty() && (commit.back() == '\n' || commit.back() == ' ')) commit.pop_back();
  if (!IsCommitHash(commit)) return std::nullopt;
  return commit;
}

void RepoCache::WriteRef(const std::string& revision, const std::string& commit) const {
  if (!IsCommitHash(commit)) throw Error("'" + commit + "' is not a 40-hex commit id");
  const std::string path = RefPath(revision);
  MakeDirs(Dirname(path));
  const std::string temp = path + TempSuffix();
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    // huggingface_hub writes the bare commit id without a newline.
    out << commit;
    out.close();
    if (!out) {
      std::remove(temp.c_str());
      throw Error("cannot write Hub ref file " + temp);
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    std::remove(temp.c_str());
    errno = saved;
    ThrowErrno("cannot rename ref file to", path);
  }
}

void RepoCache::LinkSnapshotFile(const std::string& commit, const std::string& path,
                                 const std::string& etag) const {
  const std::string link = SnapshotFile(commit, path);
  MakeDirs(Dirname(link));
  std::string target;
  const size_t depth = static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
  for (size_t i = 0; i < depth + 2; ++i) target += "../";
  target += "blobs/" + etag;
  if (!HasBlob(etag))
    throw Error("cannot link " + link + ": blob " + BlobPath(etag) + " is missing");
  const std::string temp = link + TempSuffix();
  if (::symlink(target.c_str(), temp.c_str()) != 0) ThrowErrno("cannot create symlink", temp);
  if (std::rename(temp.c_str(), link.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    errno = saved;
    ThrowErrno("cannot rename symlink to", link);
  }
}

void MakeDirs(const std::string& dir) {
  if (dir.empty()) return;
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    throw Error("cannot create directory " + dir + ": a file of that name exists");
  }
  const std::string parent = Dirname(dir);
  if (parent != dir && parent != "." && parent != "/") MakeDirs(parent);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    ThrowErrno("cannot create directory", dir);
}

FileLock::FileLock(const std::string& path) {
  MakeDirs(Dirname(path));
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) ThrowErrno("cannot open lock file", path);
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int saved = errno;
    ::close(fd_);
    errno = saved;
    ThrowErrno("cannot lock", path);
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

}  // namespace hwyquant::hf
