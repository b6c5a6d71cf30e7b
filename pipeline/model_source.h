// A model the quantizer can stream: ordered GGUF metadata, tensor descriptors, and one tensor's
// bytes at a time, whether they come from a GGUF file or from a converter.
#ifndef HWYQUANT_PIPELINE_MODEL_SOURCE_H_
#define HWYQUANT_PIPELINE_MODEL_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/gguf.h"

namespace hwyquant {

// One tensor as the model presents it: ggml dims (ne0 = row length first) and storage type.
struct TensorDescriptor {
  std::string name;
  std::vector<int64_t> dims;
  Type type = Type::kF32;

  int64_t ElementCount() const {
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    return count;
  }
  // Bytes of the tensor's data; throws Error for an impossible shape.
  uint64_t ByteSize() const { return TensorByteSize(name, type, dims); }
};

// The bytes of one tensor: either a view into memory someone else owns (an mmap) or a buffer
// produced on demand. Whatever keeps the bytes alive, and whatever must happen when the
// consumer is done with them (releasing mmap pages), lives in `keeper` and ends with the last
// copy of this object.
class TensorBytes {
 public:
  TensorBytes() = default;
  TensorBytes(const uint8_t* data, size_t size, std::shared_ptr<const void> keeper = nullptr)
      : data_(data), size_(size), keeper_(std::move(keeper)) {}

  static TensorBytes FromBuffer(std::vector<uint8_t> buffer) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(buffer));
    const uint8_t* data = owned->data();
    const size_t size = owned->size();
    return TensorBytes(data, size, std::shared_ptr<const void>(owned, owned.get()));
  }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Says that the same bytes stand at file_offset in the open file fd (which keeper keeps
  // open), so Read() can pread them instead of touching the mapping. file_name is for messages.
  void SetFile(int fd, uint64_t file_offset, std::string file_name);
  bool has_file() const { return fd_ >= 0; }
  // Copies [offset, offset + length) to dst: with pread where there is a file, because reading a
  // page-cache file through a user mapping can cost several times a copy by the kernel (it
  // measured 2.5-3 GB/s against 15 GB/s on a VM whose hypervisor faults in each mapped page
  // again). Throws Error naming the file when it cannot be read in full.
  void Read(size_t offset, size_t length, void* dst) const;

  // Readies [offset, offset + length) for reading: starts the file's readahead where Read()
  // uses pread, otherwise maps the pages in one call (MADV_POPULATE_READ where the kernel has
  // it), far cheaper than a page fault per 4 KiB in the threads that read them.
  void Prefetch(size_t offset, size_t length) const;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<const void> keeper_;
  int fd_ = -1;
  uint64_t file_offset_ = 0;
  std::string file_name_;
};

// The abstract model. Quantization asks for tensors from one thread, in its own order, and holds
// only the few it is working on (about one large tensor's worth of bytes), so a source never
// needs the whole model in memory.
class ModelSource {
 public:
  virtual ~ModelSource() = default;

  // What to call the model in messages (usually its path).
  virtual std::string Describe() const = 0;
  // Metadata in file order (general.architecture first in well-formed models).
  virtual const std::vector<GgufKv>& Metadata() const = 0;
  // Tensors in source order.
  virtual const std::vector<TensorDescriptor>& Tensors() const = 0;
  // Bytes of Tensors()[index]: exactly Tensors()[index].ByteSize() long, in its stated type.
  // Throws Error on failure (unreadable source, conversion error).
  virtual TensorBytes LoadTensor(size_t index) = 0;
  // Whether LoadTensor's bytes can be read with pread (TensorBytes::has_file), so converting
  // them holds no memory beyond the reader's own buffer.
  virtual bool ReadsTensorsFromFile() const { return false; }
  // Which split of the model holds Tensors()[index], and where its bytes start there: the order
  // in which llama-quantize --keep-split writes tensors.
  virtual std::pair<size_t, uint64_t> StoragePosition(size_t index) const { return {0, index}; }
  // The files this source reads, which no output may replace.
  virtual std::vector<std::string> InputFiles() const { return {}; }
};

// Throws Error when output would replace one of source's input files or the importance matrix
// (imatrix_path, may be empty): renaming the finished output over it would destroy an input.
void RefuseToReplaceInputs(const ModelSource& source, const std::string& imatrix_path,
                           const std::string& output);

// A ModelSource over a memory-mapped GGUF file: tensors are zero-copy views into the mapping
// whose pages are released once the consumer drops them. A model split by gguf-split
// (NAME-00001-of-0000N.gguf, split.count > 1) is opened from its first file, as llama.cpp does:
// the metadata are the first file's, the tensors those of every split in turn.
class GgufModelSource : public ModelSource {
 public:
  explicit GgufModelSource(const std::string& path);
  explicit GgufModelSource(std::unique_ptr<GgufFile> file);

  std::string Describe() const override { return files_[0]->path(); }
  const std::vector<GgufKv>& Metadata() const override { return files_[0]->kv(); }
  const std::vector<TensorDescriptor>& Tensors() const override { return tensors_; }
  TensorBytes LoadTensor(size_t index) override;
  bool ReadsTensorsFromFile() const override { return files_[0]->fd() >= 0; }
  std::pair<size_t, uint64_t> StoragePosition(size_t index) const override;
  std::vector<std::string> InputFiles() const override;

  // The first (or only) file.
  const GgufFile& file() const { return *files_[0]; }
  size_t split_count() const { return files_.size(); }

 private:
  void AddTensorsOf(size_t file_index);

  std::vector<std::shared_ptr<GgufFile>> files_;
  std::vector<TensorDescriptor> tensors_;
  // For each of tensors_: its file in files_ and its index there.
  std::vector<std::pair<size_t, size_t>> locations_;
};

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_MODEL_SOURCE_H_
