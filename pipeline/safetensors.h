// Memory-mapped, strictly validated safetensors files and sharded Hugging Face
// checkpoints.
#ifndef HWYQUANT_PIPELINE_SAFETENSORS_H_
#define HWYQUANT_PIPELINE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hwyquant {

// Element types a safetensors header may declare.
enum class StDtype { kBool, kU8, kI8, kI16, kI32, kI64, kF16, kBF16, kF32, kF64, kF8E4M3, kF8E5M2 };

// Bytes per element; the name as spelled in headers ("BF16").
size_t StDtypeSize(StDtype dtype);
const char* StDtypeName(StDtype dtype);

// The header of a safetensors file never needs to be larger than this; the
// format's reference implementation uses the same bound, and it keeps a corrupt
// length from allocating gigabytes.
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

struct StTensor {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;  // outermost first, as written (row-major)
  uint64_t begin = 0;          // byte range inside the data section
  uint64_t end = 0;

  int64_t ElementCount() const;
};

// A parsed header: tensors sorted by name (the order convert_hf_to_gguf.py
// iterates in).
struct StHeader {
  std::vector<StTensor> tensors;
  uint64_t data_offset = 0;  // 8 + header length
};

// Validates the first bytes of a file of file_size bytes (`bytes` may hold only
// the prefix that contains the header). Throws hwyquant::Error naming `label`
// and the offending field for: a truncated or oversized header, invalid JSON or
// UTF-8, duplicate names, unknown dtypes, negative or overflowing shapes,
// data_offsets that disagree with dtype*shape, overlapping or non-contiguous
// tensor data, and data that does not end exactly at the end of the file.
StHeader ParseSafetensorsHeader(const uint8_t* bytes, size_t size, uint64_t file_size,
                                const std::string& label);

// One read-only mapped .safetensors file.
class SafetensorsFile {
 public:
  // Maps and validates path. Throws Error naming the path on any problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<StTensor>& tensors() const { return header_.tensors; }
  const StTensor* Find(const std::string& name) const;
  // The tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* Data(const StTensor& tensor) const;
  // Drops the tensor's pages from this process (they are re-read from the file
  // if touched again), so streaming a large checkpoint does not accumulate it
  // in memory.
  void ReleasePages(const StTensor& tensor) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  StHeader header_;
};

// A tensor of a checkpoint folder, with the shard that holds it.
struct StEntry {
  const SafetensorsFile* file;
  const StTensor* tensor;
};

// Every safetensors shard of a Hugging Face folder. With
// model.safetensors.index.json the shards are the files its weight_map names,
// and the tensor set must match the map exactly; without it, every
// model*.safetensors file. Entries are in convert_hf_to_gguf.py's order: shards
// sorted by file name, tensors of a shard sorted by name.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::string& dir);

  const std::vector<StEntry>& entries() const { return entries_; }
  const StEntry* Find(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<StEntry> entries_;
};

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_SAFETENSORS_H_
