// An output file that appears under its final name only when complete (temporary name, fsync,
// rename).
#ifndef HWYQUANT_PIPELINE_OUTPUT_FILE_H_
#define HWYQUANT_PIPELINE_OUTPUT_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/huge_pages.h"

namespace hwyquant {

struct TrackedTemporary;  // output_file.cc

// Writes go to a temporary file beside the final path (same directory, so the rename is atomic;
// where the path is a symbolic link, beside the file it leads to, so the link stays),
// with direct I/O where the file system allows it; Commit() flushes, fsyncs and renames it over
// the final path. Destroying an uncommitted OutputFile removes the temporary, so a failed run
// never leaves a partial output behind.
// Every I/O failure (ENOSPC, EFBIG from RLIMIT_FSIZE, EIO...) throws hwyquant::Error naming the
// final path and the cause.
class OutputFile {
 public:
  // Creates the temporary file. Throws Error when the directory is not writable.
  explicit OutputFile(std::string path);
  ~OutputFile();

  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Appends bytes at the end of what was written so far.
  void Write(const void* data, size_t size);
  void WriteZeros(size_t count);
  // Overwrites already-written bytes (e.g. a header patched after the data); offset + size must
  // not pass the current end.
  void WriteAt(uint64_t offset, const void* data, size_t size);

  // Bytes written so far (the end offset).
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  // Whether appended bytes still bypass the page cache (O_DIRECT).
  bool uses_direct_io() const { return direct_buffer_ != nullptr; }

  // Makes the file durable and visible under path(): Seal() then Publish(). Further writes are
  // errors.
  void Commit();
  // Makes the file durable under its temporary name and closes it, releasing its buffers.
  void Seal();
  // Renames a sealed file to path(): for several files (a split model) that appear together
  // once all are complete.
  void Publish();

 private:
  // Writes full direct-I/O buffers and flushes the disk cache on a helper thread, so the disk
  // works while the next bytes are computed (on a VM whose disk cache flush cost about 0.6 ms
  // per MiB written, Commit's fsync had been a fifth of a compute-bound run's wall time).
  // Started on the first full buffer.
  class DiskWriter;
  void FlushBuffer();
  void WriteFully(const void* data, size_t size);
  void StartWriteback();
  void EnterDirectMode();
  void LeaveDirectMode();
  void FlushDirect();
  void FlushDirectTail();
  [[noreturn]] void Fail(const std::string& what, int error_number) const;

  std::string path_;
  std::string target_path_;  // path_ with symbolic links followed: what the rename replaces
  std::string temp_path_;
  TrackedTemporary* tracked_ = nullptr;  // for RemoveTemporariesOnTerminationSignals
  int fd_ = -1;
  bool sealed_ = false;
  bool committed_ = false;
  uint64_t size_ = 0;
  uint64_t file_end_ = 0;        // bytes appended to the file (or queued for it) so far
  uint64_t writeback_from_ = 0;  // start of the appended bytes not yet sent to the disk
  std::vector<uint8_t> buffer_;  // coalesces small writes (headers, padding)
  // Direct mode (O_DIRECT): whole aligned blocks of appended bytes are written from here; null
  // in buffered mode. A huge page: in 4 KiB pages, an earlier 8 MiB buffer had been 2,048
  // faults, at about 10 us each on a VM.
  HugePageBuffer direct_buffer_;
  size_t direct_used_ = 0;
  std::unique_ptr<DiskWriter> disk_writer_;
  // Waits for the queued writes and ends the helper thread; throws the first failure it met.
  void StopDiskWriter();
};

// Makes SIGINT, SIGTERM and SIGHUP (unless ignored) first remove the temporary of every
// OutputFile not yet renamed into place, then end the process as they would have: an
// interrupted run leaves no hidden partial file. For programs to call at start; a library that
// embeds OutputFile keeps its host's signal handling.
void RemoveTemporariesOnTerminationSignals();

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_OUTPUT_FILE_H_
