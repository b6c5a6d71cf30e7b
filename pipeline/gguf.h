// GGUF v2/v3 files: metadata values, a validating mmap reader and a streaming writer.
#ifndef HWYQUANT_PIPELINE_GGUF_H_
#define HWYQUANT_PIPELINE_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hwyquant/format.h"

namespace hwyquant {

class OutputFile;

// Value types of GGUF metadata; the numbers are what files store.
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// "u32", "string", ... for messages.
const char* GgufTypeName(GgufType type);
// Bytes of one scalar of a fixed-size type (0 for string and array).
size_t GgufScalarSize(GgufType type);

// One metadata value: a scalar, a string, or an array (of scalars, strings or arrays).
class GgufValue {
 public:
  GgufValue() = default;

  static GgufValue U8(uint8_t v);
  static GgufValue I8(int8_t v);
  static GgufValue U16(uint16_t v);
  static GgufValue I16(int16_t v);
  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue F32(float v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue U64(uint64_t v);
  static GgufValue I64(int64_t v);
  static GgufValue F64(double v);
  // An array of fixed-size scalars from their little-endian bytes (count * scalar size).
  static GgufValue ScalarArray(GgufType element_type, std::vector<uint8_t> bytes);
  static GgufValue StringArray(std::vector<std::string> items);
  static GgufValue ArrayOfArrays(std::vector<GgufValue> items);
  template <class T>
  static GgufValue ArrayOf(GgufType element_type, const std::vector<T>& items);

  GgufType type() const { return type_; }
  // For arrays: the element type and element count.
  GgufType element_type() const { return element_type_; }
  size_t array_size() const;

  // Scalar accessors; each throws Error when the value is not of a compatible kind.
  // AsUInt/AsInt accept every integer type whose value fits; AsDouble also accepts floats.
  uint64_t AsUInt() const;
  int64_t AsInt() const;
  double AsDouble() const;
  bool AsBool() const;
  const std::string& AsString() const;
  // Array contents: raw scalar bytes, strings, or nested arrays by element type.
  const std::vector<uint8_t>& scalar_bytes() const { return bytes_; }
  const std::vector<std::string>& strings() const { return strings_; }
  const std::vector<GgufValue>& arrays() const { return arrays_; }
  // Element i of an array as a value of its own (throws Error when out of range).
  GgufValue Element(size_t i) const;

  // Short human-readable rendering (arrays abbreviated), for listings and messages.
  std::string ToString(size_t max_items = 8) const;

  bool operator==(const GgufValue& other) const;
  bool operator!=(const GgufValue& other) const { return !(*this == other); }

 private:
  GgufType type_ = GgufType::kU8;
  GgufType element_type_ = GgufType::kU8;
  std::vector<uint8_t> bytes_;  // scalar: its bytes; scalar array: all elements' bytes
  std::string string_;
  std::vector<std::string> strings_;
  std::vector<GgufValue> arrays_;
};

template <class T>
GgufValue GgufValue::ArrayOf(GgufType element_type, const std::vector<T>& items) {
  if (GgufScalarSize(element_type) != sizeof(T)) {
    throw Error(std::string("GGUF array of ") + GgufTypeName(element_type) +
                " built from elements of the wrong size");
  }
  std::vector<uint8_t> bytes(items.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), items.data(), bytes.size());
  return ScalarArray(element_type, std::move(bytes));
}

struct GgufKv {
  std::string key;
  GgufValue value;
};

// Finds a key in an ordered KV list; nullptr when absent.
const GgufValue* FindKv(const std::vector<GgufKv>& kvs, std::string_view key);
// Replaces the value of key, or appends it when absent (keeps the position of an existing key).
void SetKv(std::vector<GgufKv>& kvs, std::string key, GgufValue value);
// Removes key if present; returns whether it was.
bool RemoveKv(std::vector<GgufKv>& kvs, std::string_view key);

inline constexpr uint32_t kGgufDefaultAlignment = 32;
// ggml stores at most four dimensions and names shorter than 64 bytes.
inline constexpr size_t kGgufMaxDims = 4;
inline constexpr size_t kGgufMaxNameLength = 63;

// A tensor as GGUF describes it: dims are ggml's ne0 (the row length) first.
struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;
  Type type = Type::kF32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t size = 0;    // bytes of data

  int64_t ElementCount() const;
};

// Bytes of a tensor of this type and shape. Throws Error (naming the tensor) when dims are
// negative, the row is not a whole number of blocks, or the size overflows.
uint64_t TensorByteSize(const std::string& name, Type type, const std::vector<int64_t>& dims);

// A GGUF file mapped read-only. Everything in the header is validated against the file size
// when it is opened; a malformed file throws Error naming the file, the byte offset and what
// is wrong, and never allocates more than the file's own size allows.
class GgufFile {
 public:
  static std::unique_ptr<GgufFile> Open(const std::string& path);
  // Parses a buffer that the caller keeps alive (the fuzzer, tests). name is used in messages.
  static std::unique_ptr<GgufFile> FromMemory(const uint8_t* data, size_t size, std::string name);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }
  const std::vector<GgufKv>& kv() const { return kv_; }
  const GgufValue* FindKey(std::string_view key) const { return FindKv(kv_, key); }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // Index of the named tensor, or -1.
  int64_t FindTensor(std::string_view name) const;
  // The tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* TensorData(size_t index) const;
  // The open file behind the mapping (for pread), or -1 for FromMemory.
  int fd() const { return fd_; }
  // Where the tensor's bytes start in the file.
  uint64_t TensorFileOffset(size_t index) const;
  // Tells the kernel the pages of a tensor are no longer needed (keeps peak RSS down when a
  // large model is streamed tensor by tensor); the data stays readable.
  void ReleaseTensorPages(size_t index) const;

 private:
  GgufFile() = default;
  void Parse();

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;  // owned mmap, or null for FromMemory
  int fd_ = -1;              // owned, kept open for pread; -1 for FromMemory
  size_t mapping_size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

// Serialized GGUF v3 header: magic, counts, KV pairs and tensor infos, padded to alignment.
// Tensor offsets and sizes are recomputed here from dims and type (data packed in order, each
// tensor padded to the alignment); the infos passed in are updated with them.
std::vector<uint8_t> SerializeGgufHeader(const std::vector<GgufKv>& kv,
                                         std::vector<GgufTensorInfo>& tensors);

// llama.cpp's name for split `number` (0-based) of `count` of a split model:
// PREFIX-00001-of-00003.gguf.
std::string GgufSplitPath(const std::string& prefix, uint64_t number, uint64_t count);
// The keys llama's split files carry: split.no (u16, 0-based), split.count (u16) and
// split.tensors.count (i32, the tensors of all splits).
std::vector<GgufKv> GgufSplitKeys(uint64_t number, uint64_t count, uint64_t tensor_count);
// PREFIX when path is GgufSplitPath(PREFIX, number, count) with a non-empty PREFIX, else nullopt.
std::optional<std::string> GgufSplitPrefix(const std::string& path, uint64_t number,
                                           uint64_t count);

// The alignment a KV list asks for (general.alignment, u32 power of two) or the default.
// Throws Error when general.alignment is present but invalid.
uint32_t GgufAlignmentOf(const std::vector<GgufKv>& kv);

// Streams a GGUF v3 file: the header goes out at construction (all tensor shapes and types are
// known up front), then each tensor's data in order, each padded to the alignment.
class GgufWriter {
 public:
  GgufWriter(OutputFile& out, std::vector<GgufKv> kv, std::vector<GgufTensorInfo> tensors);

  // Appends the next tensor's data; size must be exactly that tensor's byte size.
  void WriteTensorData(const void* data, size_t size);
  // Appends the next size bytes of the current tensor's data, which may come in several parts;
  // the part that completes it also writes its padding.
  void AppendTensorData(const void* data, size_t size);
  // Checks every tensor was written; the caller then commits the OutputFile.
  void Finish();

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  size_t next_tensor() const { return next_tensor_; }

 private:
  OutputFile& out_;
  std::vector<GgufTensorInfo> tensors_;
  uint32_t alignment_;
  size_t next_tensor_ = 0;
  uint64_t written_of_next_ = 0;  // bytes of tensors_[next_tensor_] already appended
};

// Writes a complete GGUF file in one call (tests, small files): tensor data in order.
void WriteGgufFile(const std::string& path, const std::vector<GgufKv>& kv,
                   const std::vector<GgufTensorInfo>& tensors,
                   const std::vector<std::vector<uint8_t>>& data);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_GGUF_H_
