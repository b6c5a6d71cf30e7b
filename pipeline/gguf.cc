// GGUF parsing (bounds-checked against the file size at every step) and serialization.
#include "pipeline/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "pipeline/output_file.h"
#include "pipeline/text.h"

namespace hwyquant {
namespace {

constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kWriteVersion = 3;
// Arrays nest only one level in practice; the cap keeps a hostile file from exhausting the stack.
constexpr int kMaxArrayDepth = 8;

bool IsValidGgufType(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::kF64); }

uint64_t PadTo(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// Reads little-endian fields from the mapped header, failing with the file name and offset.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& file)
      : data_(data), size_(size), file_(file) {}

  uint64_t position() const { return position_; }
  uint64_t remaining() const { return size_ - position_; }

  [[noreturn]] void Fail(const std::string& what) const {
    throw Error(file_ + ": invalid GGUF file at byte " + std::to_string(position_) + ": " + what);
  }

  void Need(uint64_t count, const std::string& what) const {
    if (count > remaining()) {
      Fail(what + " needs " + std::to_string(count) + " bytes but the file has only " +
           std::to_string(remaining()) + " left (truncated?)");
    }
  }

  template <class T>
  T Read(const std::string& what) {
    Need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }

  void ReadBytes(void* out, uint64_t count, const std::string& what) {
    Need(count, what);
    if (count != 0) std::memcpy(out, data_ + position_, count);
    position_ += count;
  }

  std::string ReadString(const std::string& what) {
    const uint64_t length = Read<uint64_t>(what + " length");
    Need(length, what + " of length " + std::to_string(length));
    std::string value(reinterpret_cast<const char*>(data_ + position_), length);
    position_ += length;
    return value;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t position_ = 0;
  const std::string& file_;
};

GgufValue ReadValue(Cursor& cursor, GgufType type, const std::string& key, int depth);

GgufValue ReadArray(Cursor& cursor, const std::string& key, int depth) {
  if (depth >= kMaxArrayDepth) {
    cursor.Fail("key '" + key + "' nests arrays deeper than " + std::to_string(kMaxArrayDepth));
  }
  const uint32_t element_id = cursor.Read<uint32_t>("array element type of key '" + key + "'");
  if (!IsValidGgufType(element_id)) {
    cursor.Fail("key '" + key + "' has an array of unknown value type " +
                std::to_string(element_id));
  }
  const GgufType element = static_cast<GgufType>(element_id);
  const uint64_t count = cursor.Read<uint64_t>("array length of key '" + key + "'");
  // Every element takes at least this many bytes, so the count is checked before allocating.
  const uint64_t min_element_bytes = element == GgufType::kString  ? 8
                                     : element == GgufType::kArray ? 12
                                                                   : GgufScalarSize(element);
  if (count > cursor.remaining() / min_element_bytes) {
    cursor.Fail("key '" + key + "' claims " + std::to_string(count) + " array elements of type " +
                GgufTypeName(element) + ", more than the " + std::to_string(cursor.remaining()) +
                " bytes left in the file can hold");
  }
  if (element == GgufType::kString) {
    std::vector<std::string> items;
    items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      items.push_back(cursor.ReadString("string " + std::to_string(i) + " of key '" + key + "'"));
    }
    return GgufValue::StringArray(std::move(items));
  }
  if (element == GgufType::kArray) {
    std::vector<GgufValue> items;
    items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) items.push_back(ReadArray(cursor, key, depth + 1));
    return GgufValue::ArrayOfArrays(std::move(items));
  }
  std::vector<uint8_t> bytes(count * min_element_bytes);
  cursor.ReadBytes(bytes.data(), bytes.size(), "array data of key '" + key + "'");
  return GgufValue::ScalarArray(element, std::move(bytes));
}

GgufValue ReadValue(Cursor& cursor, GgufType type, const std::string& key, int depth) {
  const std::string what = "value of key '" + key + "'";
  switch (type) {
    case GgufType::kU8:
      return GgufValue::U8(cursor.Read<uint8_t>(what));
    case GgufType::kI8:
      return GgufValue::I8(cursor.Read<int8_t>(what));
    case GgufType::kU16:
      return GgufValue::U16(cursor.Read<uint16_t>(what));
    case GgufType::kI16:
      return GgufValue::I16(cursor.Read<int16_t>(what));
    case GgufType::kU32:
      return GgufValue::U32(cursor.Read<uint32_t>(what));
    case GgufType::kI32:
      return GgufValue::I32(cursor.Read<int32_t>(what));
    case GgufType::kF32:
      return GgufValue::F32(cursor.Read<float>(what));
    case GgufType::kBool:
      return GgufValue::Bool(cursor.Read<uint8_t>(what) != 0);
    case GgufType::kString:
      return GgufValue::String(cursor.ReadString(what));
    case GgufType::kU64:
      return GgufValue::U64(cursor.Read<uint64_t>(what));
    case GgufType::kI64:
      return GgufValue::I64(cursor.Read<int64_t>(what));
    case GgufType::kF64:
      return GgufValue::F64(cursor.Read<double>(what));
    case GgufType::kArray:
      return ReadArray(cursor, key, depth);
  }
  cursor.Fail("key '" + key + "' has unknown value type " +
              std::to_string(static_cast<uint32_t>(type)));
}

// Appends little-endian fields to a byte vector.
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}
  template <class T>
  void Put(T value) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
    out_.insert(out_.end(), bytes, bytes + sizeof(T));
  }
  void PutBytes(const void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    PutBytes(s.data(), s.size());
  }

 private:
  std::vector<uint8_t>& out_;
};

void WriteArrayBody(ByteWriter& w, const GgufValue& value) {
  w.Put<uint32_t>(static_cast<uint32_t>(value.element_type()));
  w.Put<uint64_t>(value.array_size());
  switch (value.element_type()) {
    case GgufType::kString:
      for (const std::string& s : value.strings()) w.PutString(s);
      break;
    case GgufType::kArray:
      for (const GgufValue& item : value.arrays()) WriteArrayBody(w, item);
      break;
    default:
      w.PutBytes(value.scalar_bytes().data(), value.scalar_bytes().size());
  }
}

void WriteValue(ByteWriter& w, const GgufValue& value) {
  if (value.type() == GgufType::kString) {
    w.PutString(value.AsString());
  } else if (value.type() == GgufType::kArray) {
    WriteArrayBody(w, value);
  } else {
    w.PutBytes(value.scalar_bytes().data(), value.scalar_bytes().size());
  }
}

template <class T>
T ScalarFrom(const std::vector<uint8_t>& bytes) {
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

template <class T>
GgufValue MakeScalar(GgufType type, T v) {
  std::vector<uint8_t> bytes(sizeof(T));
  std::memcpy(bytes.data(), &v, sizeof(T));
  return GgufValue::ScalarArray(type, std::move(bytes));  // fixed up by the caller
}

std::string FormatScalar(GgufType type, const uint8_t* p) {
  char buffer[64];
  switch (type) {
    case GgufType::kU8:
      return std::to_string(*p);
    case GgufType::kI8:
      return std::to_string(static_cast<int8_t>(*p));
    case GgufType::kU16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return std::to_string(v);
    }
    case GgufType::kI16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return std::to_string(v);
    }
    case GgufType::kU32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return std::to_string(v);
    }
    case GgufType::kI32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return std::to_string(v);
    }
    case GgufType::kU64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return std::to_string(v);
    }
    case GgufType::kI64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return std::to_string(v);
    }
    case GgufType::kF32: {
      float v;
      std::memcpy(&v, p, 4);
      std::snprintf(buffer, sizeof(buffer), "%.9g", v);
      return buffer;
    }
    case GgufType::kF64: {
      double v;
      std::memcpy(&v, p, 8);
      std::snprintf(buffer, sizeof(buffer), "%.17g", v);
      return buffer;
    }
    case GgufType::kBool:
      return *p ? "true" : "false";
    default:
      return "?";
  }
}

}  // namespace

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kU8:
      return "u8";
    case GgufType::kI8:
      return "i8";
    case GgufType::kU16:
      return "u16";
    case GgufType::kI16:
      return "i16";
    case GgufType::kU32:
      return "u32";
    case GgufType::kI32:
      return "i32";
    case GgufType::kF32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kU64:
      return "u64";
    case GgufType::kI64:
      return "i64";
    case GgufType::kF64:
      return "f64";
  }
  return "unknown";
}

size_t GgufScalarSize(GgufType type) {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

// --- GgufValue ---

#define HWYQUANT_GGUF_SCALAR_FACTORY(Name, CType, Enum) \
  GgufValue GgufValue::Name(CType v) {                  \
    GgufValue value = MakeScalar(GgufType::Enum, v);    \
    value.type_ = GgufType::Enum;                       \
    value.element_type_ = GgufType::kU8;                \
    return value;                                       \
  }
HWYQUANT_GGUF_SCALAR_FACTORY(U8, uint8_t, kU8)
HWYQUANT_GGUF_SCALAR_FACTORY(I8, int8_t, kI8)
HWYQUANT_GGUF_SCALAR_FACTORY(U16, uint16_t, kU16)
HWYQUANT_GGUF_SCALAR_FACTORY(I16, int16_t, kI16)
HWYQUANT_GGUF_SCALAR_FACTORY(U32, uint32_t, kU32)
HWYQUANT_GGUF_SCALAR_FACTORY(I32, int32_t, kI32)
HWYQUANT_GGUF_SCALAR_FACTORY(F32, float, kF32)
HWYQUANT_GGUF_SCALAR_FACTORY(U64, uint64_t, kU64)
HWYQUANT_GGUF_SCALAR_FACTORY(I64, int64_t, kI64)
HWYQUANT_GGUF_SCALAR_FACTORY(F64, double, kF64)
#undef HWYQUANT_GGUF_SCALAR_FACTORY

GgufValue GgufValue::Bool(bool v) {
  GgufValue value = MakeScalar<uint8_t>(GgufType::kBool, v ? 1 : 0);
  value.type_ = GgufType::kBool;
  value.element_type_ = GgufType::kU8;
  return value;
}

GgufValue GgufValue::String(std::string v) {
  GgufValue value;
  value.type_ = GgufType::kString;
  value.string_ = std::move(v);
  return value;
}

GgufValue GgufValue::ScalarArray(GgufType element_type, std::vector<uint8_t> bytes) {
  const size_t scalar = GgufScalarSize(element_type);
  if (scalar == 0) {
    throw Error(std::string("GGUF scalar array of non-scalar type ") + GgufTypeName(element_type));
  }
  if (bytes.size() % scalar != 0) {
    throw Error(std::string("GGUF array of ") + GgufTypeName(element_type) + " has " +
                std::to_string(bytes.size()) + " bytes, not a whole number of elements");
  }
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = element_type;
  value.bytes_ = std::move(bytes);
  return value;
}

GgufValue GgufValue::StringArray(std::vector<std::string> items) {
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = GgufType::kString;
  value.strings_ = std::move(items);
  return value;
}

GgufValue GgufValue::ArrayOfArrays(std::vector<GgufValue> items) {
  for (const GgufValue& item : items) {
    if (item.type() != GgufType::kArray) {
      throw Error("GGUF array of arrays holds a non-array element");
    }
  }
  GgufValue value;
  value.type_ = GgufType::kArray;
  value.element_type_ = GgufType::kArray;
  value.arrays_ = std::move(items);
  return value;
}

size_t GgufValue::array_size() const {
  if (type_ != GgufType::kArray) return 0;
  switch (element_type_) {
    case GgufType::kString:
      return strings_.size();
    case GgufType::kArray:
      return arrays_.size();
    default:
      return bytes_.size() / GgufScalarSize(element_type_);
  }
}

GgufValue GgufValue::Element(size_t i) const {
  if (type_ != GgufType::kArray || i >= array_size()) {
    throw Error("GGUF array element " + std::to_string(i) + " does not exist");
  }
  if (element_type_ == GgufType::kString) return String(strings_[i]);
  if (element_type_ == GgufType::kArray) return arrays_[i];
  const size_t size = GgufScalarSize(element_type_);
  GgufValue value;
  value.type_ = element_type_;
  value.bytes_.assign(bytes_.begin() + i * size, bytes_.begin() + (i + 1) * size);
  return value;
}

uint64_t GgufValue::AsUInt() const {
  switch (type_) {
    case GgufType::kU8:
      return ScalarFrom<uint8_t>(bytes_);
    case GgufType::kU16:
      return ScalarFrom<uint16_t>(bytes_);
    case GgufType::kU32:
      return ScalarFrom<uint32_t>(bytes_);
    case GgufType::kU64:
      return ScalarFrom<uint64_t>(bytes_);
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64: {
      const int64_t v = AsInt();
      if (v < 0) throw Error("GGUF value " + std::to_string(v) + " is negative, expected unsigned");
      return static_cast<uint64_t>(v);
    }
    default:
      throw Error(std::string("GGUF value of type ") + GgufTypeName(type_) + " is not an integer");
  }
}

int64_t GgufValue::AsInt() const {
  switch (type_) {
    case GgufType::kI8:
      return ScalarFrom<int8_t>(bytes_);
    case GgufType::kI16:
      return ScalarFrom<int16_t>(bytes_);
    case GgufType::kI32:
      return ScalarFrom<int32_t>(bytes_);
    case GgufType::kI64:
      return ScalarFrom<int64_t>(bytes_);
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64: {
      const uint64_t v = AsUInt();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw Error("GGUF value " + std::to_string(v) + " does not fit a signed 64-bit integer");
      }
      return static_cast<int64_t>(v);
    }
    default:
      throw Error(std::string("GGUF value of type ") + GgufTypeName(type_) + " is not an integer");
  }
}

double GgufValue::AsDouble() const {
  switch (type_) {
    case GgufType::kF32:
      return ScalarFrom<float>(bytes_);
    case GgufType::kF64:
      return ScalarFrom<double>(bytes_);
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64:
      return static_cast<double>(AsInt());
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64:
      return static_cast<double>(AsUInt());
    default:
      throw Error(std::string("GGUF value of type ") + GgufTypeName(type_) + " is not a number");
  }
}

bool GgufValue::AsBool() const {
  if (type_ != GgufType::kBool) {
    throw Error(std::string("GGUF value of type ") + GgufTypeName(type_) + " is not a bool");
  }
  return bytes_[0] != 0;
}

const std::string& GgufValue::AsString() const {
  if (type_ != GgufType::kString) {
    throw Error(std::string("GGUF value of type ") + GgufTypeName(type_) + " is not a string");
  }
  return string_;
}

std::string GgufValue::ToString(size_t max_items) const {
  if (type_ == GgufType::kString) return "\"" + string_ + "\"";
  if (type_ != GgufType::kArray) return FormatScalar(type_, bytes_.data());
  std::string out = "[";
  const size_t n = array_size();
  for (size_t i = 0; i < n && i < max_items; ++i) {
    if (i) out += ", ";
    switch (element_type_) {
      case GgufType::kString:
        out += "\"" + strings_[i] + "\"";
        break;
      case GgufType::kArray:
        out += arrays_[i].ToString(max_items);
        break;
      default:
        out += FormatScalar(element_type_, bytes_.data() + i * GgufScalarSize(element_type_));
    }
  }
  if (n > max_items) out += ", ... (" + std::to_string(n) + " items)";
  return out + "]";
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (type_ != other.type_) return false;
  if (type_ == GgufType::kString) return string_ == other.string_;
  if (type_ != GgufType::kArray) return bytes_ == other.bytes_;
  return element_type_ == other.element_type_ && bytes_ == other.bytes_ &&
         strings_ == other.strings_ && arrays_ == other.arrays_;
}

const GgufValue* FindKv(const std::vector<GgufKv>& kvs, std::string_view key) {
  for (const GgufKv& kv : kvs) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

std::string GgufSplitPath(const std::string& prefix, uint64_t number, uint64_t count) {
  char suffix[48];
  std::snprintf(suffix, sizeof(suffix), "-%05llu-of-%05llu.gguf",
                static_cast<unsigned long long>(number + 1),
                static_cast<unsigned long long>(count));
  return prefix + suffix;
}

std::vector<GgufKv> GgufSplitKeys(uint64_t number, uint64_t count, uint64_t tensor_count) {
  return {{"split.no", GgufValue::U16(static_cast<uint16_t>(number))},
          {"split.count", GgufValue::U16(static_cast<uint16_t>(count))},
          {"split.tensors.count", GgufValue::I32(static_cast<int32_t>(tensor_count))}};
}

std::optional<std::string> GgufSplitPrefix(const std::string& path, uint64_t number,
                                           uint64_t count) {
  const std::string suffix = GgufSplitPath("", number, count);
  if (path.size() <= suffix.size() || !EndsWith(path, suffix)) return std::nullopt;
  return path.substr(0, path.size() - suffix.size());
}

void SetKv(std::vector<GgufKv>& kvs, std::string key, GgufValue value) {
  for (GgufKv& kv : kvs) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kvs.push_back({std::move(key), std::move(value)});
}

bool RemoveKv(std::vector<GgufKv>& kvs, std::string_view key) {
  for (auto it = kvs.begin(); it != kvs.end(); ++it) {
    if (it->key == key) {
      kvs.erase(it);
      return true;
    }
  }
  return false;
}

int64_t GgufTensorInfo::ElementCount() const {
  int64_t count = 1;
  for (int64_t d : dims) count *= d;
  return count;
}

uint64_t TensorByteSize(const std::string& name, Type type, const std::vector<int64_t>& dims) {
  const TypeTraits& traits = TraitsOf(type);
  if (dims.empty()) throw Error("tensor '" + name + "' has no dimensions");
  if (dims.size() > kGgufMaxDims) {
    throw Error("tensor '" + name + "' has " + std::to_string(dims.size()) +
                " dimensions, more than the " + std::to_string(kGgufMaxDims) + " ggml supports");
  }
  uint64_t elements = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) {
      throw Error("tensor '" + name + "' dimension " + std::to_string(i) + " is negative (" +
                  std::to_string(dims[i]) + ")");
    }
    const uint64_t d = static_cast<uint64_t>(dims[i]);
    if (d != 0 && elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / d) {
      throw Error("tensor '" + name + "' has more elements than a 64-bit count can hold");
    }
    elements *= d;
  }
  if (dims[0] % traits.block_size != 0) {
    throw Error("tensor '" + name + "' of type " + traits.name + " has rows of " +
                std::to_string(dims[0]) + " weights, not a multiple of the block size " +
                std::to_string(traits.block_size));
  }
  const uint64_t blocks = elements / static_cast<uint64_t>(traits.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(traits.type_size)) {
    throw Error("tensor '" + name + "' byte size overflows 64 bits");
  }
  return blocks * static_cast<uint64_t>(traits.type_size);
}

uint32_t GgufAlignmentOf(const std::vector<GgufKv>& kv) {
  const GgufValue* value = FindKv(kv, "general.alignment");
  if (value == nullptr) return kGgufDefaultAlignment;
  if (value->type() != GgufType::kU32) {
    throw Error(std::string("general.alignment must be a u32, not ") + GgufTypeName(value->type()));
  }
  const uint64_t alignment = value->AsUInt();
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    throw Error("general.alignment " + std::to_string(alignment) + " is not a power of two");
  }
  return static_cast<uint32_t>(alignment);
}

// --- GgufFile ---

std::unique_ptr<GgufFile> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error("cannot open '" + path + "': " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int error_number = errno;
    ::close(fd);
    throw Error("cannot stat '" + path + "': " + std::strerror(error_number));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("'" + path + "' is not a regular file");
  }
  std::unique_ptr<GgufFile> file(new GgufFile);
  file->path_ = path;
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ == 0) {
    ::close(fd);
    throw Error(path + ": invalid GGUF file: the file is empty");
  }
  void* mapping = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error_number = errno;
  if (mapping == MAP_FAILED) {
    ::close(fd);
    throw Error("cannot map '" + path + "': " + std::strerror(error_number));
  }
  file->fd_ = fd;
  file->mapping_ = mapping;
  file->mapping_size_ = file->size_;
  file->data_ = static_cast<const uint8_t*>(mapping);
  file->Parse();
  return file;
}

std::unique_ptr<GgufFile> GgufFile::FromMemory(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile);
  file->path_ = std::move(name);
  file->data_ = data;
  file->size_ = size;
  file->Parse();
  return file;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
  if (fd_ >= 0) ::close(fd_);
}

void GgufFile::Parse() {
  Cursor cursor(data_, size_, path_);
  uint8_t magic[4];
  if (size_ < 4) cursor.Fail("too short for the GGUF magic (" + std::to_string(size_) + " bytes)");
  cursor.ReadBytes(magic, 4, "magic");
  if (std::memcmp(magic, kMagic, 4) != 0) {
    throw Error(path_ + ": not a GGUF file (the first four bytes are not 'GGUF')");
  }
  version_ = cursor.Read<uint32_t>("version");
  if (version_ != 0 && (version_ & 0xFFFFu) == 0) {
    cursor.Fail("version " + std::to_string(version_) +
                " looks byte-swapped: big-endian GGUF files are not supported");
  }
  if (version_ == 1) cursor.Fail("GGUF version 1 is not supported (only 2 and 3)");
  if (version_ != 2 && version_ != 3) {
    cursor.Fail("unsupported GGUF version " + std::to_string(version_) + " (only 2 and 3)");
  }
  const uint64_t tensor_count = cursor.Read<uint64_t>("tensor count");
  const uint64_t kv_count = cursor.Read<uint64_t>("metadata count");
  // A KV pair needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 4 + 8. Counts beyond what the file can hold are rejected before reserving.
  if (kv_count > cursor.remaining() / 13) {
    cursor.Fail("metadata count " + std::to_string(kv_count) + " is larger than the file can hold");
  }
  kv_.reserve(kv_count);
  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = cursor.ReadString("key of metadata pair " + std::to_string(i));
    if (key.empty()) cursor.Fail("metadata pair " + std::to_string(i) + " has an empty key");
    if (!keys.insert(key).second) cursor.Fail("duplicate metadata key '" + key + "'");
    const uint32_t type_id = cursor.Read<uint32_t>("value type of key '" + key + "'");
    if (!IsValidGgufType(type_id)) {
      cursor.Fail("key '" + key + "' has unknown value type " + std::to_string(type_id));
    }
    GgufValue value = ReadValue(cursor, static_cast<GgufType>(type_id), key, 0);
    kv_.push_back({std::move(key), std::move(value)});
  }
  try {
    alignment_ = GgufAlignmentOf(kv_);
  } catch (const Error& e) {
    throw Error(path_ + ": invalid GGUF file: " + e.what());
  }
  // Writers pad the header to the alignment, so one larger than the file is
  // corrupt; rewriting such a header would allocate up to 2 GiB of padding.
  if (alignment_ > kGgufDefaultAlignment && alignment_ > size_) {
    throw Error(path_ + ": invalid GGUF file: general.alignment " + std::to_string(alignment_) +
                " is larger than the whole file (" + std::to_string(size_) + " bytes)");
  }

  if (tensor_count > cursor.remaining() / 24) {
    cursor.Fail("tensor count " + std::to_string(tensor_count) +
                " is larger than the file can hold");
  }
  tensors_.reserve(tensor_count);
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    info.name = cursor.ReadString("name of tensor " + std::to_string(i));
    if (info.name.size() > kGgufMaxNameLength) {
      cursor.Fail("tensor " + std::to_string(i) + " name is " + std::to_string(info.name.size()) +
                  " bytes long, more than ggml's " + std::to_string(kGgufMaxNameLength));
    }
    if (!names.insert(info.name).second) cursor.Fail("duplicate tensor name '" + info.name + "'");
    const uint32_t n_dims = cursor.Read<uint32_t>("dimension count of tensor '" + info.name + "'");
    if (n_dims > kGgufMaxDims) {
      cursor.Fail("tensor '" + info.name + "' has " + std::to_string(n_dims) +
                  " dimensions, more than the " + std::to_string(kGgufMaxDims) + " ggml supports");
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = cursor.Read<uint64_t>("dimension of tensor '" + info.name + "'");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        cursor.Fail("tensor '" + info.name + "' dimension " + std::to_string(d) + " is " +
                    std::to_string(dim) + ", too large");
      }
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    if (info.dims.empty()) info.dims.push_back(1);  // a 0-d tensor is a scalar, as in ggml
    const uint32_t type_id = cursor.Read<uint32_t>("type of tensor '" + info.name + "'");
    const TypeTraits* traits = FindType(type_id);
    if (traits == nullptr) {
      cursor.Fail("tensor '" + info.name + "' has unknown type id " + std::to_string(type_id));
    }
    info.type = traits->type;
    try {
      info.size = TensorByteSize(info.name, info.type, info.dims);
    } catch (const Error& e) {
      cursor.Fail(e.what());
    }
    info.offset = cursor.Read<uint64_t>("data offset of tensor '" + info.name + "'");
    if (info.offset % alignment_ != 0) {
      cursor.Fail("tensor '" + info.name + "' data offset " + std::to_string(info.offset) +
                  " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    tensors_.push_back(std::move(info));
  }
  data_offset_ = tensors_.empty() ? cursor.position() : PadTo(cursor.position(), alignment_);
  for (const GgufTensorInfo& info : tensors_) {
    const uint64_t available = data_offset_ <= size_ ? size_ - data_offset_ : 0;
    if (info.offset > available || info.size > available - info.offset) {
      throw Error(path_ + ": invalid GGUF file: data of tensor '" + info.name + "' (" +
                  std::to_string(info.size) + " bytes at data offset " +
                  std::to_string(info.offset) + ") extends past the end of the file (" +
                  std::to_string(size_) + " bytes, data section at " +
                  std::to_string(data_offset_) + "; truncated?)");
    }
  }
}

int64_t GgufFile::FindTensor(std::string_view name) const {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].name == name) return static_cast<int64_t>(i);
  }
  return -1;
}

const uint8_t* GgufFile::TensorData(size_t index) const { return data_ + TensorFileOffset(index); }

uint64_t GgufFile::TensorFileOffset(size_t index) const {
  if (index >= tensors_.size()) {
    throw Error(path_ + ": tensor index " + std::to_string(index) + " out of range");
  }
  return data_offset_ + tensors_[index].offset;
}

void GgufFile::ReleaseTensorPages(size_t index) const {
  if (mapping_ == nullptr || index >= tensors_.size()) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = data_offset_ + tensors_[index].offset;
  const uint64_t end = begin + tensors_[index].size;
  const uint64_t first = PadTo(begin, page);
  const uint64_t last = end / page * page;
  if (last > first) {
    ::madvise(static_cast<uint8_t*>(mapping_) + first, last - first, MADV_DONTNEED);
  }
}

// --- Writing ---

std::vector<uint8_t> SerializeGgufHeader(const std::vector<GgufKv>& kv,
                                         std::vector<GgufTensorInfo>& tensors) {
  const uint32_t alignment = GgufAlignmentOf(kv);
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.PutBytes(kMagic, 4);
  w.Put<uint32_t>(kWriteVersion);
  w.Put<uint64_t>(tensors.size());
  w.Put<uint64_t>(kv.size());
  std::unordered_set<std::string> keys;
  for (const GgufKv& pair : kv) {
    if (pair.key.empty()) throw Error("cannot write a GGUF metadata pair with an empty key");
    if (!keys.insert(pair.key).second) {
      throw Error("cannot write duplicate GGUF metadata key '" + pair.key + "'");
    }
    w.PutString(pair.key);
    w.Put<uint32_t>(static_cast<uint32_t>(pair.value.type()));
    WriteValue(w, pair.value);
  }
  uint64_t offset = 0;
  std::unordered_set<std::string> names;
  for (GgufTensorInfo& info : tensors) {
    if (info.name.size() > kGgufMaxNameLength) {
      throw Error("tensor name '" + info.name + "' is longer than ggml's " +
                  std::to_string(kGgufMaxNameLength) + " bytes");
    }
    if (!names.insert(info.name).second) {
      throw Error("cannot write duplicate tensor name '" + info.name + "'");
    }
    info.size = TensorByteSize(info.name, info.type, info.dims);
    info.offset = offset;
    offset = PadTo(offset + info.size, alignment);
    w.PutString(info.name);
    w.Put<uint32_t>(static_cast<uint32_t>(info.dims.size()));
    for (int64_t d : info.dims) w.Put<uint64_t>(static_cast<uint64_t>(d));
    w.Put<uint32_t>(static_cast<uint32_t>(info.type));
    w.Put<uint64_t>(info.offset);
  }
  out.resize(PadTo(out.size(), alignment), 0);
  return out;
}

GgufWriter::GgufWriter(OutputFile& out, std::vector<GgufKv> kv, std::vector<GgufTensorInfo> tensors)
    : out_(out), tensors_(std::move(tensors)), alignment_(GgufAlignmentOf(kv)) {
  const std::vector<uint8_t> header = SerializeGgufHeader(kv, tensors_);
  out_.Write(header.data(), header.size());
}

void GgufWriter::WriteTensorData(const void* data, size_t size) {
  if (next_tensor_ < tensors_.size() &&
      (written_of_next_ != 0 || size != tensors_[next_tensor_].size)) {
    const GgufTensorInfo& info = tensors_[next_tensor_];
    throw Error("'" + out_.path() + "': tensor '" + info.name + "' data is " +
                std::to_string(written_of_next_ + size) + " bytes, its header says " +
                std::to_string(info.size));
  }
  AppendTensorData(data, size);
}

void GgufWriter::AppendTensorData(const void* data, size_t size) {
  if (next_tensor_ >= tensors_.size()) {
    throw Error("'" + out_.path() + "': more tensor data written than the " +
                std::to_string(tensors_.size()) + " tensors declared");
  }
  const GgufTensorInfo& info = tensors_[next_tensor_];
  if (size > info.size - written_of_next_) {
    throw Error("'" + out_.path() + "': tensor '" + info.name + "' data is more than the " +
                std::to_string(info.size) + " bytes its header says");
  }
  out_.Write(data, size);
  written_of_next_ += size;
  if (written_of_next_ < info.size) return;
  out_.WriteZeros(PadTo(info.size, alignment_) - info.size);
  ++next_tensor_;
  written_of_next_ = 0;
}

void GgufWriter::Finish() {
  if (next_tensor_ != tensors_.size()) {
    throw Error("'" + out_.path() + "': only " + std::to_string(next_tensor_) + " of " +
                std::to_string(tensors_.size()) + " tensors were written");
  }
}

void WriteGgufFile(const std::string& path, const std::vector<GgufKv>& kv,
                   const std::vector<GgufTensorInfo>& tensors,
                   const std::vector<std::vector<uint8_t>>& data) {
  if (data.size() != tensors.size()) {
    throw Error("WriteGgufFile: " + std::to_string(tensors.size()) + " tensors but " +
                std::to_string(data.size()) + " data buffers");
  }
  OutputFile out(path);
  GgufWriter writer(out, kv, tensors);
  for (const std::vector<uint8_t>& bytes : data) writer.WriteTensorData(bytes.data(), bytes.size());
  writer.Finish();
  out.Commit();
}

}  // namespace hwyquant
