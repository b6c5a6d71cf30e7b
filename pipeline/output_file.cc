// OutputFile: temporary file, direct or buffered writes, fsync + rename on commit, cleanup
// otherwise.
#include "pipeline/output_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "hwyquant/format.h"

namespace hwyquant {

// The temporaries a termination signal should remove, once RemoveTemporariesOnTerminationSignals
// asked for it: a list that only grows, whose entries are never freed, so that a handler
// running on any thread never reads freed memory (and leak checkers see them reachable). A
// program tracks one entry per output it writes. An unlink after the rename fails harmlessly.
struct TrackedTemporary {
  const char* path;
  std::atomic<bool> live;
  TrackedTemporary* next;  // set before the entry is published, never after
};

namespace {

constexpr size_t kBufferBytes = size_t{1} << 20;
constexpr uint64_t kWritebackBytes = uint64_t{8} << 20;
// Direct I/O wants block-aligned buffers, offsets and lengths; 4 KiB covers common devices.
constexpr size_t kDirectAlignment = 4096;
// One huge page: on a VM that hands freed memory back to its host, each fresh page costs a host
// fault on first touch, and an 8 MiB buffer had been 10% of a Q8_0 run's CPU time.
constexpr size_t kDirectBytes = size_t{2} << 20;
// Direct-I/O buffers in flight at most, the one being filled included. Three to six measured
// alike; flushing every 16-32 MiB instead of 8 made each flush long enough to stall the writes
// queued behind it (a Q6_K run 0.235-0.263 s against 0.224-0.238 s).
constexpr size_t kDirectBuffers = 4;
constexpr uint64_t kSyncBytes = uint64_t{8} << 20;

// Without this, exceeding RLIMIT_FSIZE kills the process with SIGXFSZ before write() can
// return EFBIG, and the temporary file would be left behind with no message.
void IgnoreFileSizeSignalOnce() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGXFSZ, SIG_IGN); });
}

std::atomic<TrackedTemporary*> tracked_temporaries{nullptr};
std::atomic<bool> tracking_enabled{false};
static_assert(std::atomic<TrackedTemporary*>::is_always_lock_free &&
                  std::atomic<bool>::is_always_lock_free,
              "the signal handler reads these");

TrackedTemporary* TrackTemporary(const std::string& path) {
  if (!tracking_enabled.load()) return nullptr;
  const char* copy = ::strdup(path.c_str());
  if (copy == nullptr) return nullptr;
  auto* entry = new TrackedTemporary{copy, {true}, tracked_temporaries.load()};
  while (!tracked_temporaries.compare_exchange_weak(entry->next, entry)) {
  }
  return entry;
}

void UntrackTemporary(TrackedTemporary* entry) {
  if (entry != nullptr) entry->live.store(false);
}

extern "C" void RemoveTemporariesAndDie(int signal_number) {
  for (TrackedTemporary* entry = tracked_temporaries.load(); entry; entry = entry->next) {
    if (entry->live.load()) ::unlink(entry->path);
  }
  // SA_RESETHAND restored the default action; the signal, blocked while this runs, then ends
  // the process as it would have without the handler.
  ::raise(signal_number);
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The file that path names once symbolic links are followed, as open() would follow them: the path
// itself when it is no link (or does not exist yet), else the final target, which need not exist.
std::string FollowSymbolicLinks(const std::string& path) {
  constexpr int kMaxLinks = 40;  // Linux's own limit for one lookup
  std::string current = path;
  for (int links = 0; links <= kMaxLinks; ++links) {
    struct stat st;
    if (::lstat(current.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return current;
    std::vector<char> target(static_cast<size_t>(std::max<off_t>(st.st_size, 0)) + 256);
    const ssize_t length = ::readlink(current.c_str(), target.data(), target.size());
    if (length <= 0 || static_cast<size_t>(length) >= target.size()) {
      throw Error("cannot write '" + path + "': cannot read the symbolic link '" + current + "'");
    }
    const std::string next(target.data(), static_cast<size_t>(length));
    current = next[0] == '/' ? next : DirectoryOf(current) + "/" + next;
  }
  throw Error("cannot write '" + path + "': too many levels of symbolic links");
}

// What a non-regular file is, for messages.
std::string FileKindOf(mode_t mode) {
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

// A fresh name beside target for its temporary: ".NAME.tmp-" and six random letters or digits,
// as mkstemp makes them.
std::string TemporaryNameFor(const std::string& target) {
  static constexpr char kLetters[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 random(std::random_device{}());
  std::string name = DirectoryOf(target) + "/." + BaseNameOf(target) + ".tmp-";
  for (int i = 0; i < 6; ++i) name += kLetters[random() % (sizeof(kLetters) - 1)];
  return name;
}

struct IoFailure {
  const char* what = nullptr;
  int error_number = 0;  // 0: none
};

// Writes bytes [*done, size) at offset + *done, through short writes and EINTR; *done says how
// far it got, so a caller can resume after handling the failure.
IoFailure WriteAllAt(int fd, const uint8_t* bytes, size_t size, uint64_t offset, size_t* done) {
  while (*done < size) {
    const ssize_t written =
        ::pwrite(fd, bytes + *done, std::min<size_t>(size - *done, size_t{1} << 30),
                 static_cast<off_t>(offset + *done));
    if (written < 0) {
      if (errno == EINTR) continue;
      return {"write failed", errno};
    }
    if (written == 0) return {"write made no progress", EIO};
    *done += static_cast<size_t>(written);
  }
  return {};
}

}  // namespace

// Writes full direct-I/O buffers on a helper thread, in file order, and flushes the disk cache
// every kSyncBytes written. The computing then waits for the disk only when every buffer is
// queued: writing from the main thread, each of its writes had blocked for 14-15 ms while a
// flush ran, and with them the loading of the workers' next pieces.
class OutputFile::DiskWriter {
 public:
  explicit DiskWriter(int fd) : fd_(fd), thread_([this] { Run(); }) {}
  // Abandons what is still queued.
  ~DiskWriter() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      queue_.clear();
    }
    work_ready_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  // Queues the first `bytes` bytes of `full` for file offset `offset` and returns an empty
  // buffer for what comes next: a written one, a new one while fewer than kDirectBuffers exist,
  // or else the next one the thread finishes with. After a failure, nothing more is queued and
  // `full` comes back.
  HugePageBuffer Swap(HugePageBuffer full, size_t bytes, uint64_t offset, IoFailure* failure) {
    std::unique_lock<std::mutex> lock(mutex_);
    *failure = failure_;
    if (failure->error_number != 0) return full;
    queue_.push_back({std::move(full), bytes, offset});
    work_ready_.notify_one();
    if (free_.empty() && buffers_ < kDirectBuffers) {
      HugePageBuffer fresh = MapHugePages(kDirectBytes);
      if (fresh) {
        ++buffers_;
        return fresh;
      }
    }
    written_.wait(lock, [&] { return !free_.empty(); });
    HugePageBuffer empty = std::move(free_.back());
    free_.pop_back();
    return empty;
  }

  // Waits until everything queued is written (not yet flushed) and returns the first failure:
  // fsync reports an error to one caller only, so Seal must learn of the thread's here.
  IoFailure Drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    written_.wait(lock, [&] { return queue_.empty() && !busy_; });
    return failure_;
  }

  // Whether the file system refused a direct write, so the thread went on without O_DIRECT.
  bool left_direct_mode() {
    std::lock_guard<std::mutex> lock(mutex_);
    return left_direct_mode_;
  }

 private:
  struct Pending {
    HugePageBuffer buffer;
    size_t bytes;
    uint64_t offset;
  };

  void Run() {
    uint64_t unsynced = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Pending job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      const bool failed_before = failure_.error_number != 0;
      lock.unlock();
      IoFailure failure;
      if (!failed_before) failure = WriteAll(job);
      if (!failed_before && failure.error_number == 0) {
        unsynced += job.bytes;
        if (unsynced >= kSyncBytes) {
          unsynced = 0;
          if (::fdatasync(fd_) != 0) failure = {"fdatasync failed", errno};
        }
      }
      lock.lock();
      if (failure.error_number != 0 && failure_.error_number == 0) failure_ = failure;
      free_.push_back(std::move(job.buffer));
      busy_ = false;
      written_.notify_all();
    }
  }

  IoFailure WriteAll(const Pending& job) {
    size_t done = 0;
    for (;;) {
      const IoFailure failure = WriteAllAt(fd_, job.buffer.get(), job.bytes, job.offset, &done);
#ifdef O_DIRECT
      const int flags = failure.error_number == EINVAL ? ::fcntl(fd_, F_GETFL) : -1;
      if (flags >= 0 && (flags & O_DIRECT) != 0) {
        // The file system refuses direct I/O after all: the page cache takes the rest.
        if (::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) return {"fcntl failed", errno};
        std::lock_guard<std::mutex> lock(mutex_);
        left_direct_mode_ = true;
        continue;
      }
#endif
      return failure;
    }
  }

  const int fd_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable written_;  // a buffer was written (or failed)
  std::deque<Pending> queue_;
  std::vector<HugePageBuffer> free_;
  size_t buffers_ = 1;  // the one the main thread fills counts too
  bool busy_ = false;
  bool stopping_ = false;
  bool left_direct_mode_ = false;
  IoFailure failure_;
  std::thread thread_;  // last: started once the members it reads exist
};

void OutputFile::StopDiskWriter() {
  if (!disk_writer_) return;
  const IoFailure failure = disk_writer_->Drain();
  disk_writer_.reset();
  if (failure.error_number != 0) Fail(failure.what, failure.error_number);
}

OutputFile::OutputFile(std::string path) : path_(std::move(path)) {
  IgnoreFileSizeSignalOnce();
  if (path_.empty() || path_.back() == '/') {
    throw Error("cannot write '" + path_ + "': not a file name");
  }
  // A symbolic link as the output keeps its place, as when llama-quantize writes through it: the
  // temporary goes beside the file it leads to, and the rename replaces that file.
  target_path_ = FollowSymbolicLinks(path_);
  // Only a regular file may be replaced, and that is checked before any work: rename() would
  // refuse a directory only after all of it, and would replace a device, FIFO or socket (as root
  // even /dev/null) with a file.
  struct stat existing;
  if (::stat(target_path_.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    throw Error("cannot write '" + path_ + "': it is " +
                (S_ISDIR(existing.st_mode)
                     ? std::string("a directory")
                     : FileKindOf(existing.st_mode) + ", not a regular file"));
  }
  // Named here rather than by mkstemp so that the name is tracked before the file exists: a
  // termination signal any time after it is created finds it. The mode is a plain open()'s.
  for (int attempt = 0;; ++attempt) {
    temp_path_ = TemporaryNameFor(target_path_);
    tracked_ = TrackTemporary(temp_path_);
    fd_ = ::open(temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    const int error_number = errno;
    UntrackTemporary(tracked_);
    tracked_ = nullptr;
    temp_path_.clear();
    if (error_number == EEXIST && attempt < 100) continue;
    throw Error("cannot create output file '" + path_ + "' (temporary in " +
                DirectoryOf(target_path_) + "): " + std::strerror(error_number));
  }
  buffer_.reserve(kBufferBytes);
  EnterDirectMode();
}

void OutputFile::EnterDirectMode() {
#ifdef O_DIRECT
  // Direct writes skip the page cache: no copy into freshly allocated kernel pages and no
  // writeback left for fsync, which made them several times cheaper than buffered writes in
  // measurements. File systems without direct I/O refuse the flag here (or later, with EINVAL,
  // which LeaveDirectMode handles) and keep buffered writes.
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_DIRECT) != 0) return;
  direct_buffer_ = MapHugePages(kDirectBytes);  // page-aligned, as direct I/O needs
  if (!direct_buffer_) ::fcntl(fd_, F_SETFL, flags);
#endif
}

void OutputFile::LeaveDirectMode() {
  if (!direct_buffer_) return;
  StopDiskWriter();  // its writes come before the staged bytes
#ifdef O_DIRECT
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) Fail("fcntl failed", errno);
#endif
  HugePageBuffer staged = std::move(direct_buffer_);
  const size_t used = direct_used_;
  direct_used_ = 0;
  WriteFully(staged.get(), used);
}

void OutputFile::FlushDirectTail() {
  if (!direct_buffer_ || direct_used_ == 0) return;
  // Written as whole blocks, then cut back to the real size.
  const size_t used = direct_used_;
  const size_t padded = (used + kDirectAlignment - 1) / kDirectAlignment * kDirectAlignment;
  std::memset(direct_buffer_.get() + used, 0, padded - used);
  for (;;) {
    const ssize_t written =
        ::pwrite(fd_, direct_buffer_.get(), padded, static_cast<off_t>(file_end_));
    if (written < 0 && errno == EINTR) continue;
    if (written != static_cast<ssize_t>(padded) ||
        ::ftruncate(fd_, static_cast<off_t>(file_end_ + used)) != 0) {
      // A short or refused write (the padding can pass a file size limit the data does not):
      // the page cache writes the exact bytes instead, and reports any real error.
      if (::ftruncate(fd_, static_cast<off_t>(file_end_)) != 0) Fail("ftruncate failed", errno);
      LeaveDirectMode();
      return;
    }
    file_end_ += used;
    direct_used_ = 0;
    return;
  }
}

void OutputFile::FlushDirect() {
  if (!disk_writer_) disk_writer_ = std::make_unique<DiskWriter>(fd_);
  IoFailure failure;
  direct_buffer_ = disk_writer_->Swap(std::move(direct_buffer_), direct_used_, file_end_, &failure);
  if (failure.error_number != 0) Fail(failure.what, failure.error_number);
  file_end_ += direct_used_;
  direct_used_ = 0;
  if (disk_writer_->left_direct_mode()) LeaveDirectMode();
}

OutputFile::~OutputFile() {
  disk_writer_.reset();  // before the descriptor it writes is closed
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
  UntrackTemporary(tracked_);
}

void OutputFile::Fail(const std::string& what, int error_number) const {
  std::string message =
      "cannot write '" + path_ + "': " + what + ": " + std::strerror(error_number);
  if (error_number == ENOSPC) message += " (the disk is full)";
  if (error_number == EFBIG) message += " (file size limit reached)";
  throw Error(message);
}

void OutputFile::WriteFully(const void* data, size_t size) {
  size_t done = 0;
  const IoFailure failure =
      WriteAllAt(fd_, static_cast<const uint8_t*>(data), size, file_end_, &done);
  file_end_ += done;
  if (failure.error_number != 0) Fail(failure.what, failure.error_number);
  StartWriteback();
}

void OutputFile::StartWriteback() {
#ifdef SYNC_FILE_RANGE_WRITE
  // The disk writes while we compute, so Commit's fsync waits only for the last few MiB rather
  // than the whole file. Best effort: a failure shows up in fsync.
  if (file_end_ - writeback_from_ < kWritebackBytes) return;
  ::sync_file_range(fd_, static_cast<off64_t>(writeback_from_),
                    static_cast<off64_t>(file_end_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = file_end_;
#endif
}

void OutputFile::FlushBuffer() {
  if (buffer_.empty()) return;
  WriteFully(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void OutputFile::Write(const void* data, size_t size) {
  if (sealed_ || fd_ < 0) throw Error("cannot write '" + path_ + "': already complete");
  size_ += size;
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (direct_buffer_ && size > 0) {
    const size_t n = std::min(size, kDirectBytes - direct_used_);
    std::memcpy(direct_buffer_.get() + direct_used_, bytes, n);
    direct_used_ += n;
    bytes += n;
    size -= n;
    if (direct_used_ == kDirectBytes) FlushDirect();
  }
  if (size == 0) return;
  if (buffer_.size() + size > kBufferBytes) FlushBuffer();
  if (size < kBufferBytes) {
    buffer_.insert(buffer_.end(), bytes, bytes + size);
  } else {
    WriteFully(bytes, size);
  }
}

void OutputFile::WriteZeros(size_t count) {
  static const uint8_t kZeros[4096] = {};
  while (count > 0) {
    const size_t chunk = std::min(count, sizeof(kZeros));
    Write(kZeros, chunk);
    count -= chunk;
  }
}

void OutputFile::WriteAt(uint64_t offset, const void* data, size_t size) {
  if (sealed_ || fd_ < 0) throw Error("cannot write '" + path_ + "': already complete");
  if (offset > size_ || size > size_ - offset) {
    throw Error("cannot write '" + path_ + "': rewrite of " + std::to_string(size) +
                " bytes at offset " + std::to_string(offset) + " passes the end " +
                std::to_string(size_));
  }
  LeaveDirectMode();  // the bytes may be on disk already, at unaligned offsets
  FlushBuffer();
  size_t done = 0;
  const IoFailure failure = WriteAllAt(fd_, static_cast<const uint8_t*>(data), size, offset, &done);
  if (failure.error_number != 0) Fail(failure.what, failure.error_number);
}

void OutputFile::Seal() {
  if (sealed_ || fd_ < 0) throw Error("cannot seal '" + path_ + "' twice");
  StopDiskWriter();
  FlushDirectTail();
  FlushBuffer();
  if (::fsync(fd_) != 0) Fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) Fail("close failed", errno);
  sealed_ = true;
  direct_buffer_.reset();  // a sealed file waiting for Publish holds no memory
  buffer_ = std::vector<uint8_t>();
}

void OutputFile::Publish() {
  if (!sealed_ || committed_) {
    throw Error("cannot publish '" + path_ + "' before sealing it, or twice");
  }
  if (::rename(temp_path_.c_str(), target_path_.c_str()) != 0) {
    Fail("rename from " + temp_path_ + " failed", errno);
  }
  committed_ = true;
  UntrackTemporary(tracked_);
  tracked_ = nullptr;
  // The rename itself is only durable once the directory entry is on disk.
  const int dir_fd = ::open(DirectoryOf(target_path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void OutputFile::Commit() {
  Seal();
  Publish();
}

void RemoveTemporariesOnTerminationSignals() {
  tracking_enabled.store(true);
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction current;
    // A signal the caller ignores (nohup's SIGHUP) stays ignored.
    if (::sigaction(signal_number, nullptr, &current) != 0 || current.sa_handler == SIG_IGN) {
      continue;
    }
    struct sigaction action = {};
    action.sa_handler = RemoveTemporariesAndDie;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    ::sigaction(signal_number, &action, nullptr);
  }
}

}  // namespace hwyquant
