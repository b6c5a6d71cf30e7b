// GGUF tensor types: block layouts (ggml's field order), type ids, and the one registry of their
// traits.
#ifndef HWYQUANT_FORMAT_H_
#define HWYQUANT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hwyquant {

// Every failure the library reports: bad arguments, unsupported types, malformed data.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// GGUF / ggml type ids. The numeric values are what GGUF files store.
enum class Type : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
  kQ2_0 = 42,
};

// Weights per super-block of the K-quants.
inline constexpr int kSuperBlock = 256;
// Bytes of packed 6-bit scales and mins in q4_K and q5_K.
inline constexpr int kKScaleBytes = 12;

// IEEE binary16 and bfloat16 are stored as raw bits.
using HalfBits = uint16_t;
using BF16Bits = uint16_t;

struct BlockQ4_0 {
  HalfBits d;
  uint8_t qs[16];  // nibbles: low = weights 0..15, high = weights 16..31
};
struct BlockQ4_1 {
  HalfBits d;
  HalfBits m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  HalfBits d;
  uint8_t qh[4];  // fifth bits, little-endian uint32
  uint8_t qs[16];
};
struct BlockQ5_1 {
  HalfBits d;
  HalfBits m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  HalfBits d;
  int8_t qs[32];
};
struct BlockQ2_K {
  uint8_t scales[16];  // low nibble scale, high nibble min, per 16 weights
  uint8_t qs[64];
  HalfBits d;
  HalfBits dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];  // 16 signed 6-bit scales
  HalfBits d;
};
struct BlockQ4_K {
  HalfBits d;
  HalfBits dmin;
  uint8_t scales[kKScaleBytes];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[128];
};
struct BlockQ5_K {
  HalfBits d;
  HalfBits dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  HalfBits d;
};
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};

static_assert(sizeof(BlockQ4_0) == 18, "q4_0 is 18 bytes per 32 weights");
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 is 20 bytes per 32 weights");
static_assert(sizeof(BlockQ5_0) == 22, "q5_0 is 22 bytes per 32 weights");
static_assert(sizeof(BlockQ5_1) == 24, "q5_1 is 24 bytes per 32 weights");
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 is 34 bytes per 32 weights");
static_assert(sizeof(BlockQ2_K) == 84, "q2_K is 84 bytes per 256 weights");
static_assert(sizeof(BlockQ3_K) == 110, "q3_K is 110 bytes per 256 weights");
static_assert(sizeof(BlockQ4_K) == 144, "q4_K is 144 bytes per 256 weights");
static_assert(sizeof(BlockQ5_K) == 176, "q5_K is 176 bytes per 256 weights");
static_assert(sizeof(BlockQ6_K) == 210, "q6_K is 210 bytes per 256 weights");
static_assert(sizeof(BlockQ8_K) == 292, "q8_K is 292 bytes per 256 weights");

// What the registry knows of one type.
struct TypeTraits {
  Type type;
  const char* name;    // ggml's type name, e.g. "q4_K"
  int64_t block_size;  // weights per block
  int64_t type_size;   // bytes per block
  bool quantizable;    // hwyquant can produce it from f32
};

// The registry: every type a GGUF file may hold. Order is by type id.
inline constexpr TypeTraits kTypeRegistry[] = {
    {Type::kF32, "f32", 1, 4, true},
    {Type::kF16, "f16", 1, 2, true},
    {Type::kQ4_0, "q4_0", 32, sizeof(BlockQ4_0), true},
    {Type::kQ4_1, "q4_1", 32, sizeof(BlockQ4_1), true},
    {Type::kQ5_0, "q5_0", 32, sizeof(BlockQ5_0), true},
    {Type::kQ5_1, "q5_1", 32, sizeof(BlockQ5_1), true},
    {Type::kQ8_0, "q8_0", 32, sizeof(BlockQ8_0), true},
    {Type::kQ8_1, "q8_1", 32, 36, false},
    {Type::kQ2_K, "q2_K", kSuperBlock, sizeof(BlockQ2_K), true},
    {Type::kQ3_K, "q3_K", kSuperBlock, sizeof(BlockQ3_K), true},
    {Type::kQ4_K, "q4_K", kSuperBlock, sizeof(BlockQ4_K), true},
    {Type::kQ5_K, "q5_K", kSuperBlock, sizeof(BlockQ5_K), true},
    {Type::kQ6_K, "q6_K", kSuperBlock, sizeof(BlockQ6_K), true},
    {Type::kQ8_K, "q8_K", kSuperBlock, sizeof(BlockQ8_K), false},
    {Type::kIQ2_XXS, "iq2_xxs", kSuperBlock, 66, false},
    {Type::kIQ2_XS, "iq2_xs", kSuperBlock, 74, false},
    {Type::kIQ3_XXS, "iq3_xxs", kSuperBlock, 98, false},
    {Type::kIQ1_S, "iq1_s", kSuperBlock, 50, false},
    {Type::kIQ4_NL, "iq4_nl", 32, 18, false},
    {Type::kIQ3_S, "iq3_s", kSuperBlock, 110, false},
    {Type::kIQ2_S, "iq2_s", kSuperBlock, 82, false},
    {Type::kIQ4_XS, "iq4_xs", kSuperBlock, 136, false},
    {Type::kI8, "i8", 1, 1, false},
    {Type::kI16, "i16", 1, 2, false},
    {Type::kI32, "i32", 1, 4, false},
    {Type::kI64, "i64", 1, 8, false},
    {Type::kF64, "f64", 1, 8, false},
    {Type::kIQ1_M, "iq1_m", kSuperBlock, 56, false},
    {Type::kBF16, "bf16", 1, 2, true},
    {Type::kTQ1_0, "tq1_0", kSuperBlock, 54, false},
    {Type::kTQ2_0, "tq2_0", kSuperBlock, 66, false},
    {Type::kMXFP4, "mxfp4", 32, 17, false},
    {Type::kNVFP4, "nvfp4", 64, 36, false},
    {Type::kQ1_0, "q1_0", 128, 18, false},
    {Type::kQ2_0, "q2_0", 64, 18, false},
};

// Traits of a type id, or nullptr when the id is not a known GGUF type.
inline const TypeTraits* FindType(uint32_t id) {
  for (const TypeTraits& t : kTypeRegistry) {
    if (static_cast<uint32_t>(t.type) == id) return &t;
  }
  return nullptr;
}
inline const TypeTraits* FindType(Type type) { return FindType(static_cast<uint32_t>(type)); }

// Traits by ggml name, case-insensitive ("Q4_K" and "q4_k" both work); nullptr if unknown.
inline const TypeTraits* FindTypeByName(std::string_view name) {
  for (const TypeTraits& t : kTypeRegistry) {
    const std::string_view candidate(t.name);
    if (candidate.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i) {
      const auto lower = [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      };
      same = lower(candidate[i]) == lower(name[i]);
    }
    if (same) return &t;
  }
  return nullptr;
}

// Traits of a type that must exist; throws Error naming the id otherwise.
inline const TypeTraits& TraitsOf(Type type) {
  const TypeTraits* traits = FindType(type);
  if (traits == nullptr) {
    throw Error("unknown GGUF type id " + std::to_string(static_cast<uint32_t>(type)));
  }
  return *traits;
}

inline const char* TypeName(Type type) { return TraitsOf(type).name; }

// Bytes of one row of n weights. Throws Error when n is not a whole number of blocks.
inline size_t RowSize(Type type, int64_t n) {
  const TypeTraits& traits = TraitsOf(type);
  if (n < 0 || n % traits.block_size != 0) {
    throw Error(std::string("row length ") + std::to_string(n) + " is not a multiple of the " +
                traits.name + " block size " + std::to_string(traits.block_size));
  }
  return static_cast<size_t>(n / traits.block_size * traits.type_size);
}

}  // namespace hwyquant

#endif  // HWYQUANT_FORMAT_H_
