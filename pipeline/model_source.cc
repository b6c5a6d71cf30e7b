// GgufModelSource: the ModelSource of a memory-mapped GGUF file.
#include "pipeline/model_source.h"

namespace hwyquant {

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
  // One madvise maps the whole tensor: far cheaper than a page fault per 4 KiB in the workers.
  file_->PrefetchTensorPages(index);
  // Holding the file keeps the mapping alive; the deleter runs when the consumer is done.
  std::shared_ptr<GgufFile> file = file_;
  std::shared_ptr<const void> keeper(
      nullptr, [file, index](const void*) { file->ReleaseTensorPages(index); });
  return TensorBytes(data, size, std::move(keeper));
}

}  // namespace hwyquant
