// The huggingface_hub cache layout (models--ORG--NAME/{blobs,snapshots,refs}), shared with Python.
#ifndef HWYQUANT_PIPELINE_HF_CACHE_H_
#define HWYQUANT_PIPELINE_HF_CACHE_H_

#include <optional>
#include <string>

namespace hwyquant::hf {

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (as huggingface_hub).
std::string HfHomeDir();

// $HF_HUB_CACHE, else the legacy $HUGGINGFACE_HUB_CACHE, else HfHomeDir()/hub.
std::string DefaultHubCacheDir();

// A full 40-character lowercase hex git commit id.
bool IsCommitHash(const std::string& text);

// Throw hwyquant::Error naming the value when it cannot be used safely in a URL or a cache path:
// repo ids are NAME or ORG/NAME of [A-Za-z0-9._-] (no "--" or ".." as huggingface_hub);
// file paths are relative, without "." / ".." components; revisions have no ".." component.
void ValidateRepoId(const std::string& repo_id);
void ValidateRepoFilePath(const std::string& path);
void ValidateRevision(const std::string& revision);
// Etags become blob file names, so only [A-Za-z0-9_.-] not starting with '.' is accepted.
void ValidateEtag(const std::string& etag);

// The etag header value without a weak "W/" prefix and surrounding quotes.
std::string NormalizeEtag(const std::string& header_value);

// One model repository inside a hub cache directory. Every write is atomic (temporary name +
// rename) so a Python process reading the same cache never sees a half-written ref or link.
class RepoCache {
 public:
  RepoCache(std::string cache_dir, const std::string& repo_id);

  const std::string& cache_dir() const { return cache_dir_; }
  // cache_dir/models--ORG--NAME
  const std::string& repo_dir() const { return repo_dir_; }

  std::string BlobPath(const std::string& etag) const;
  // Where a download in progress accumulates; a later attempt resumes from its size.
  std::string IncompletePath(const std::string& etag) const;
  // cache_dir/.locks/models--ORG--NAME/ETAG.lock, the file huggingface_hub flocks too.
  std::string LockPath(const std::string& etag) const;
  std::string SnapshotDir(const std::string& commit) const;
  std::string SnapshotFile(const std::string& commit, const std::string& path) const;
  std::string RefPath(const std::string& revision) const;

  bool HasBlob(const std::string& etag) const;
  // True when the snapshot entry exists and what it points to exists.
  bool HasSnapshotFile(const std::string& commit, const std::string& path) const;

  // The commit a branch or tag name pointed to when last resolved, if recorded.
  std::optional<std::string> ReadRef(const std::string& revision) const;
  void WriteRef(const std::string& revision, const std::string& commit) const;

  // snapshots/COMMIT/PATH -> relative symlink to ../../blobs/ETAG (deeper for nested paths),
  // replacing whatever entry was there.
  void LinkSnapshotFile(const std::string& commit, const std::string& path,
                        const std::string& etag) const;

 private:
  std::string cache_dir_;
  std::string folder_name_;
  std::string repo_dir_;
};

// mkdir -p; throws hwyquant::Error naming the directory on failure.
void MakeDirs(const std::string& dir);

// An exclusive flock(2) held for the object's lifetime: the same primitive Python's filelock
// uses, so hwyquant and huggingface_hub never download the same blob concurrently.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace hwyquant::hf

#endif  // HWYQUANT_PIPELINE_HF_CACHE_H_
