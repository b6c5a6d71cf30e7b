// TensorBytes page prefetching, and GgufModelSource: the ModelSource of a memory-mapped GGUF file.
#include "pipeline/model_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hwyquant {

void TensorBytes::SetFile(int fd, uint64_t file_offset, std::string file_name) {
  fd_ = fd;
  file_offset_ = file_offset;
  file_name_ = std::move(file_name);
}

void TensorBytes::Read(size_t offset, size_t length, void* dst) const {
  if (offset > size_ || length > size_ - offset) {
    throw Error("tensor read of " + std::to_string(length) + " bytes at " +
                std::to_string(offset) + " passes its end (" + std::to_string(size_) + ")");
  }
  if (fd_ < 0) {
    std::memcpy(dst, data_ + offset, length);
    return;
  }
  uint8_t* out = static_cast<uint8_t*>(dst);
  uint64_t at = file_offset_ + offset;
  while (length > 0) {
    const ssize_t got = ::pread(fd_, out, length, static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw Error(file_name_ + ": cannot read " + std::to_string(length) + " bytes at offset " +
                  std::to_string(at) + ": " + std::strerror(errno));
    }
    if (got == 0) {
      throw Error(file_name_ + ": the file ends before byte " + std::to_string(at + length) +
                  " of its tensor data (was it truncated while being read?)");
    }
    out += got;
    at += static_cast<uint64_t>(got);
    length -= static_cast<size_t>(got);
  }
}

void TensorBytes::Prefetch(size_t offset, size_t length) const {
  if (offset >= size_) return;
  length = std::min(length, size_ - offset);
  if (fd_ >= 0) {
    // Best effort, asynchronous: pages already cached cost a look-up only.
    ::posix_fadvise(fd_, static_cast<off_t>(file_offset_ + offset), static_cast<off_t>(length),
                    POSIX_FADV_WILLNEED);
    return;
  }
#ifdef MADV_POPULATE_READ
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data_ + offset) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data_ + offset + length);
  // Best effort: kernels before 5.14 say EINVAL and the pages fault in one by one.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);
#endif
}

GgufModelSource::GgufModelSource(const std::string& path)
    : GgufModelSource(GgufFile::Open(path)) {}

GgufModelSource::GgufModelSource(std::unique_ptr<GgufFile> file) : file_(std::move(file)) {
  tensors_.reserve(file_->tensors().size());
  for (const GgufTensorInfo& info : file_->tensors()) {
    tensors_.push_back({info.name, info.dims, info.type});
  }
}

TensorBytes GgufModelSource::LoadTensor(size_t index) {
  const uint8_t* data = file_->TensorData(index);
  const size_t size = static_cast<size_t>(file_->tensors()[index].size);
  // Holding the file keeps the mapping alive; the deleter runs when the consumer is done.
  std::shared_ptr<GgufFile> file = file_;
  std::shared_ptr<const void> keeper(
      nullptr, [file, index](const void*) { file->ReleaseTensorPages(index); });
  TensorBytes bytes(data, size, std::move(keeper));
  if (file_->fd() >= 0) bytes.SetFile(file_->fd(), file_->TensorFileOffset(index), file_->path());
  return bytes;
}

}  // namespace hwyquant
