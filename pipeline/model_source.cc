// TensorBytes page prefetching, and GgufModelSource: the ModelSource of a memory-mapped GGUF file.
#include "pipeline/model_source.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

namespace hwyquant {

void TensorBytes::Prefetch(size_t offset, size_t length) const {
#ifdef MADV_POPULATE_READ
  if (offset >= size_) return;
  length = std::min(length, size_ - offset);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data_ + offset) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data_ + offset + length);
  // Best effort: kernels before 5.14 say EINVAL and the pages fault in one by one.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ);
#else
  (void)offset;
  (void)length;
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
  return TensorBytes(data, size, std::move(keeper));
}

}  // namespace hwyquant
