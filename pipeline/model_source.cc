// TensorBytes page prefetching, and GgufModelSource: the ModelSource of a memory-mapped GGUF file.
#include "pipeline/model_source.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "pipeline/paths.h"

namespace hwyquant {

void TensorBytes::SetFile(int fd, uint64_t file_offset, std::string file_name) {
  fd_ = fd;
  file_offset_ = file_offset;
  file_name_ = std::move(file_name);
}

void TensorBytes::Read(size_t offset, size_t length, void* dst) const {
  if (offset > size_ || length > size_ - offset) {
    throw Error("tensor read of " + std::to_string(length) + " bytes at " + std::to_string(offset) +
                " passes its end (" + std::to_string(size_) + ")");
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

GgufModelSource::GgufModelSource(const std::string& path) : GgufModelSource(GgufFile::Open(path)) {}

namespace {

// An integer KV of a split file, or an Error naming the file.
uint64_t SplitKey(const GgufFile& file, const char* key) {
  const GgufValue* value = file.FindKey(key);
  if (value == nullptr) throw Error(file.path() + ": split file without the key " + key);
  try {
    return value->AsUInt();
  } catch (const Error& e) {
    throw Error(file.path() + ": " + key + ": " + e.what());
  }
}

}  // namespace

GgufModelSource::GgufModelSource(std::unique_ptr<GgufFile> file) {
  files_.push_back(std::move(file));
  AddTensorsOf(0);
  const GgufFile& first = *files_[0];
  if (first.FindKey("split.count") == nullptr) return;
  const uint64_t count = SplitKey(first, "split.count");
  if (count <= 1) return;
  const uint64_t number = SplitKey(first, "split.no");
  const std::string& path = first.path();
  if (number != 0) {
    const std::optional<std::string> prefix = GgufSplitPrefix(path, number, count);
    throw Error(path + ": this is split " + std::to_string(number + 1) + " of " +
                std::to_string(count) + " of a model; give its first split" +
                (prefix ? " '" + GgufSplitPath(*prefix, 0, count) + "'" : std::string()));
  }
  if (count > 65535) {
    throw Error(path + ": split.count " + std::to_string(count) + " is more than 65535");
  }
  const std::optional<std::string> prefix = GgufSplitPrefix(path, 0, count);
  if (first.fd() < 0 || !prefix) {
    throw Error(path + ": a split model (split.count " + std::to_string(count) +
                ") whose file name does not end in " + GgufSplitPath("", 0, count) +
                ", so its other splits cannot be found");
  }
  for (uint64_t i = 1; i < count; ++i) {
    try {
      files_.push_back(GgufFile::Open(GgufSplitPath(*prefix, i, count)));
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (split " + std::to_string(i + 1) + " of " +
                  std::to_string(count) + " of " + path + ")");
    }
    const uint64_t found = SplitKey(*files_.back(), "split.no");
    if (found != i) {
      throw Error(files_.back()->path() + ": split.no is " + std::to_string(found) + ", expected " +
                  std::to_string(i));
    }
    AddTensorsOf(files_.size() - 1);
  }
  const uint64_t expected = SplitKey(first, "split.tensors.count");
  if (expected != tensors_.size()) {
    throw Error(path + ": split.tensors.count says " + std::to_string(expected) +
                " tensors, but its " + std::to_string(count) + " splits hold " +
                std::to_string(tensors_.size()));
  }
}

void GgufModelSource::AddTensorsOf(size_t file_index) {
  const std::vector<GgufTensorInfo>& infos = files_[file_index]->tensors();
  tensors_.reserve(tensors_.size() + infos.size());
  for (size_t i = 0; i < infos.size(); ++i) {
    tensors_.push_back({infos[i].name, infos[i].dims, infos[i].type});
    locations_.emplace_back(file_index, i);
  }
}

std::pair<size_t, uint64_t> GgufModelSource::StoragePosition(size_t index) const {
  const auto [file_index, tensor] = locations_.at(index);
  return {file_index, files_[file_index]->TensorFileOffset(tensor)};
}

TensorBytes GgufModelSource::LoadTensor(size_t index) {
  const auto [file_index, tensor] = locations_.at(index);
  // Holding the file keeps the mapping alive; the deleter runs when the consumer is done.
  std::shared_ptr<GgufFile> file = files_[file_index];
  const uint8_t* data = file->TensorData(tensor);
  const size_t size = static_cast<size_t>(file->tensors()[tensor].size);
  std::shared_ptr<const void> keeper(
      nullptr, [file, tensor = tensor](const void*) { file->ReleaseTensorPages(tensor); });
  TensorBytes bytes(data, size, std::move(keeper));
  if (file->fd() >= 0) bytes.SetFile(file->fd(), file->TensorFileOffset(tensor), file->path());
  return bytes;
}

std::vector<std::string> GgufModelSource::InputFiles() const {
  std::vector<std::string> paths;
  for (const std::shared_ptr<GgufFile>& file : files_) paths.push_back(file->path());
  return paths;
}

void RefuseToReplaceInputs(const ModelSource& source, const std::string& imatrix_path,
                           const std::string& output) {
  for (const std::string& input : source.InputFiles()) {
    if (SameFile(input, output)) {
      throw Error("input and output are the same file: '" + input + "'" +
                  (output == input ? "" : " (output '" + output + "')"));
    }
  }
  if (!imatrix_path.empty() && SameFile(imatrix_path, output)) {
    throw Error("the importance matrix and the output are the same file: '" + imatrix_path + "'");
  }
}

}  // namespace hwyquant
