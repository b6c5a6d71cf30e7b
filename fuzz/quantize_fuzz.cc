// libFuzzer target: on every SIMD target this CPU supports, hwyquant's public quantize and
// dequantize entry points must give exactly the scalar reference's bytes for any shape and input.
//
// Every byte string is a valid case; fields wrap instead of being rejected:
//   [0] type: kTypes[b % 13], the 13 types hwyquant produces (f32 copy, f16, bf16, q4_0, q4_1,
//       q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K).
//   [1] row length: 1 + (b & 7) blocks of 32 or 256 weights; for f32/f16/bf16 (block size 1)
//       1 + b weights, so odd lengths and SIMD remainders are covered.
//   [2] bits 0-2: value encoding (% 5), see Encoding; bit 3: importance matrix; bit 4: also
//       QuantizeParallel with 2 threads; bit 5: dequantize-only mode (the rest of the input is
//       raw blocks of the type); bits 6-7: rows - 1 (1..4).
//   [3] exponent for the scaled-integer encodings (2^(b - 150): subnormal .. 2^105).
//   [4] alignment: bits 0-1 source offset in floats, bits 2-4 destination offset in 2-byte
//       steps (0..14 bytes), so kernels must not assume vector-aligned buffers. Blocks keep the
//       2-byte alignment their f16 fields need in C++ (the reference writes through block
//       pointers too). Buffers end exactly where the data ends, so AddressSanitizer catches any
//       read or write past a row.
//   [5..] the weights in the chosen encoding, then the importance weights (one byte each).
// Bytes past the end of the input come from a SplitMix64 stream seeded by the input, so short
// inputs still fill several full K-quant rows with varied data.
//
// What is fed, and why: ggml defines the f32, f16 and bf16 conversions for every bit pattern
// (NaN, +-Inf, -0, subnormals; the golden "specials" pin them), so those types get raw bits.
// The block types are only defined for finite input: ggml's quantizers turn NaN/Inf into
// out-of-range float-to-int casts (undefined in C), and the golden data has no such case. For
// them a non-finite value has its lowest exponent bit cleared, which keeps sign and mantissa and
// gives a huge finite value instead. Every finite pattern is fed, including subnormals and values
// near FLT_MAX whose intermediate sums overflow: the reference mirrors ggml's operations (and its
// x86 cast results) for all finite inputs. Importance weights are >= 0 and finite, as the ones
// llama-quantize reads from an imatrix file; zeros are common on purpose.
//
// Checks, per target (hwy::SupportedAndGeneratedTargets, forced with SetSupportedTargetsForTest):
//   - Quantize (and QuantizeF16 / QuantizeBF16 for the 16-bit encodings, QuantizeParallel when
//     asked) writes the reference's bytes and returns the reference's byte count;
//   - Dequantize of those bytes, and of raw fuzzed blocks, gives the reference's floats. f32, f16
//     and bf16 are pure conversions and compared bit for bit; for block types two NaNs count as
//     equal (which NaN payload an arithmetic instruction propagates depends on operand order the
//     compiler may swap) and every other value must be bit-identical, -0 vs +0 included.
// Any difference prints target, entry point, type, shape, row, block and byte, then traps.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hwy/targets.h"
#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "hwyquant/hwyquant.h"
#include "reference/reference.h"

namespace hwyquant {
namespace {

constexpr Type kTypes[] = {
    Type::kF32,  Type::kF16,  Type::kBF16, Type::kQ4_0, Type::kQ4_1, Type::kQ5_0, Type::kQ5_1,
    Type::kQ8_0, Type::kQ2_K, Type::kQ3_K, Type::kQ4_K, Type::kQ5_K, Type::kQ6_K,
};
constexpr size_t kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);
constexpr size_t kHeaderBytes = 5;

enum class Encoding {
  kF32Bits,      // 4 bytes: any f32 bit pattern
  kScaledInt8,   // 1 byte: int8 * 2^e, ties, constant runs and exact grids
  kF16Bits,      // 2 bytes: an f16 value (also fed to QuantizeF16)
  kBF16Bits,     // 2 bytes: a bf16 value (also fed to QuantizeBF16)
  kScaledInt16,  // 2 bytes: int16 * 2^(e-8), finer values at any magnitude
};
constexpr int kNumEncodings = 5;

const char* EncodingName(Encoding e) {
  switch (e) {
    case Encoding::kF32Bits:
      return "f32-bits";
    case Encoding::kScaledInt8:
      return "int8*2^e";
    case Encoding::kF16Bits:
      return "f16-bits";
    case Encoding::kBF16Bits:
      return "bf16-bits";
    case Encoding::kScaledInt16:
      return "int16*2^e";
  }
  return "?";
}

// The input's bytes, then an endless deterministic stream derived from them.
class ByteSource {
 public:
  ByteSource(const uint8_t* data, size_t size) : data_(data), size_(size) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001B3ull;
    state_ = h;
  }
  uint8_t Next() {
    if (pos_ < size_) return data_[pos_++];
    if (spare_bits_ == 0) {
      // SplitMix64.
      uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      spare_ = z ^ (z >> 31);
      spare_bits_ = 64;
    }
    const uint8_t b = static_cast<uint8_t>(spare_);
    spare_ >>= 8;
    spare_bits_ -= 8;
    return b;
  }
  uint16_t Next16() {
    const uint16_t lo = Next();
    return static_cast<uint16_t>(lo | (Next() << 8));
  }
  uint32_t Next32() {
    const uint32_t lo = Next16();
    return lo | (static_cast<uint32_t>(Next16()) << 16);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t state_;
  uint64_t spare_ = 0;
  int spare_bits_ = 0;
};

bool IsFloatType(Type type) {
  return type == Type::kF32 || type == Type::kF16 || type == Type::kBF16;
}

// Lowest exponent bit cleared: finite, same sign and mantissa (see the header comment).
uint32_t FiniteF32Bits(uint32_t bits) {
  return (bits & 0x7F800000u) == 0x7F800000u ? bits & ~0x00800000u : bits;
}
uint16_t FiniteF16Bits(uint16_t bits) {
  return (bits & 0x7C00u) == 0x7C00u ? static_cast<uint16_t>(bits & ~0x0400u) : bits;
}
uint16_t FiniteBF16Bits(uint16_t bits) {
  return (bits & 0x7F80u) == 0x7F80u ? static_cast<uint16_t>(bits & ~0x0080u) : bits;
}

// Everything one fuzz case is about.
struct Case {
  Type type;
  Encoding encoding;
  int64_t nrows;
  int64_t n_per_row;
  bool use_imatrix;
  bool parallel;
  bool dequantize_only;
  int exponent;
  size_t src_offset;  // floats (or halves) before the first weight
  size_t dst_offset;  // bytes before the first block, even
};

std::string Describe(const Case& c, const char* target, const char* entry) {
  char text[320];
  std::snprintf(text, sizeof(text),
                "target %s, %s, type %s, %lld rows x %lld weights, encoding %s, imatrix %s, "
                "src offset %zu floats, dst offset %zu bytes",
                target, entry, TypeName(c.type), static_cast<long long>(c.nrows),
                static_cast<long long>(c.n_per_row), EncodingName(c.encoding),
                c.use_imatrix ? "yes" : "no", c.src_offset, c.dst_offset);
  return text;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "quantize_fuzz: MISMATCH: %s\n", what.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

// The first differing byte of two quantized tensors, located by row, block and byte.
void CompareBytes(const Case& c, const char* target, const char* entry, const uint8_t* expected,
                  const uint8_t* actual) {
  const TypeTraits& traits = TraitsOf(c.type);
  const size_t row_size = RowSize(c.type, c.n_per_row);
  const size_t total = row_size * static_cast<size_t>(c.nrows);
  if (std::memcmp(expected, actual, total) == 0) return;
  size_t i = 0;
  while (expected[i] == actual[i]) ++i;
  const size_t row = i / row_size;
  const size_t block = (i % row_size) / static_cast<size_t>(traits.type_size);
  const size_t byte = (i % row_size) % static_cast<size_t>(traits.type_size);
  char detail[200];
  std::snprintf(detail, sizeof(detail),
                ": row %zu, block %zu, byte %zu of the block: reference 0x%02x, target 0x%02x", row,
                block, byte, expected[i], actual[i]);
  Fail(Describe(c, target, entry) + detail);
}

// The first differing float of two dequantized tensors (see the header on NaN).
void CompareFloats(const Case& c, const char* target, const float* expected, const float* actual) {
  const TypeTraits& traits = TraitsOf(c.type);
  const bool nan_payload_matters = IsFloatType(c.type);
  const size_t count = static_cast<size_t>(c.nrows * c.n_per_row);
  for (size_t i = 0; i < count; ++i) {
    const uint32_t e = BitsOfF32(expected[i]);
    const uint32_t a = BitsOfF32(actual[i]);
    if (e == a) continue;
    if (!nan_payload_matters && std::isnan(expected[i]) && std::isnan(actual[i])) continue;
    const size_t row = i / static_cast<size_t>(c.n_per_row);
    const size_t col = i % static_cast<size_t>(c.n_per_row);
    char detail[240];
    std::snprintf(detail, sizeof(detail),
                  ": row %zu, block %zu, weight %zu of the block: reference %a (0x%08x), "
                  "target %a (0x%08x)",
                  row, col / static_cast<size_t>(traits.block_size),
                  col % static_cast<size_t>(traits.block_size), static_cast<double>(expected[i]), e,
                  static_cast<double>(actual[i]), a);
    Fail(Describe(c, target, "Dequantize") + detail);
  }
}

Case DecodeCase(ByteSource& in) {
  Case c;
  c.type = kTypes[in.Next() % kNumTypes];
  const uint8_t length = in.Next();
  const uint8_t mode = in.Next();
  c.exponent = static_cast<int>(in.Next()) - 150;
  const uint8_t alignment = in.Next();
  const int64_t block_size = TraitsOf(c.type).block_size;
  c.n_per_row = block_size == 1 ? 1 + length : block_size * (1 + (length & 7));
  c.encoding = static_cast<Encoding>((mode & 7) % kNumEncodings);
  c.use_imatrix = (mode & 0x08) != 0;
  c.parallel = (mode & 0x10) != 0;
  c.dequantize_only = (mode & 0x20) != 0;
  c.nrows = 1 + (mode >> 6);
  c.src_offset = alignment & 3;
  c.dst_offset = 2 * ((alignment >> 2) & 7);
  // f32 output is an array of floats: keep it 4-byte aligned like any float object.
  if (c.type == Type::kF32) c.dst_offset &= ~size_t{3};
  return c;
}

// Fills weights (and, for the 16-bit encodings, the raw halves behind them).
void DecodeWeights(const Case& c, ByteSource& in, float* weights, uint16_t* halves) {
  const bool finite_only = !IsFloatType(c.type);
  const size_t count = static_cast<size_t>(c.nrows * c.n_per_row);
  for (size_t i = 0; i < count; ++i) {
    switch (c.encoding) {
      case Encoding::kF32Bits: {
        const uint32_t bits = in.Next32();
        weights[i] = F32FromBits(finite_only ? FiniteF32Bits(bits) : bits);
        break;
      }
      case Encoding::kScaledInt8:
        weights[i] = std::ldexp(static_cast<float>(static_cast<int8_t>(in.Next())), c.exponent);
        break;
      case Encoding::kF16Bits: {
        const uint16_t bits = in.Next16();
        halves[i] = finite_only ? FiniteF16Bits(bits) : bits;
        weights[i] = F16ToF32(halves[i]);
        break;
      }
      case Encoding::kBF16Bits: {
        const uint16_t bits = in.Next16();
        halves[i] = finite_only ? FiniteBF16Bits(bits) : bits;
        weights[i] = BF16ToF32(halves[i]);
        break;
      }
      case Encoding::kScaledInt16:
        weights[i] =
            std::ldexp(static_cast<float>(static_cast<int16_t>(in.Next16())), c.exponent - 8);
        break;
    }
  }
}

// Non-negative finite weights from 2^-16 to 2^18, and exact zeros.
void DecodeImatrix(const Case& c, ByteSource& in, float* imatrix) {
  for (int64_t i = 0; i < c.n_per_row; ++i) {
    const uint8_t b = in.Next();
    imatrix[i] = b == 0 ? 0.0f : std::ldexp(static_cast<float>((b & 15) + 1), 2 * (b >> 4) - 16);
  }
}

// The targets to check, found once while Highway's real selection is in force.
const std::vector<int64_t>& Targets() {
  static const std::vector<int64_t> targets = [] {
    std::vector<int64_t> list = hwy::SupportedAndGeneratedTargets();
    std::fprintf(stderr, "quantize_fuzz: checking %zu targets:", list.size());
    for (const int64_t t : list) std::fprintf(stderr, " %s", hwy::TargetName(t));
    std::fprintf(stderr, " (dispatcher default: %s)\n", ActiveTarget());
    if (list.empty()) Fail("hwy::SupportedAndGeneratedTargets() is empty");
    return list;
  }();
  return targets;
}

// Forces dynamic dispatch to one target for its lifetime and checks the dispatcher follows.
class ForcedTarget {
 public:
  explicit ForcedTarget(int64_t target) {
    hwy::SetSupportedTargetsForTest(target);
    const char* wanted = hwy::TargetName(target);
    const char* active = ActiveTarget();
    // The interim dispatcher (scalar reference behind the API) reports "reference".
    if (std::strcmp(active, wanted) != 0 && std::strcmp(active, "reference") != 0) {
      Fail(std::string("forced target ") + wanted + " but the dispatcher runs " + active);
    }
  }
  ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
  ForcedTarget(const ForcedTarget&) = delete;
  ForcedTarget& operator=(const ForcedTarget&) = delete;
};

// An exactly sized buffer with `offset` leading elements, so ASan sees overruns at the end.
template <class T>
std::vector<T> Buffer(size_t offset, size_t count) {
  return std::vector<T>(offset + count);
}

void CheckDequantize(const Case& c, const char* target, const uint8_t* blocks,
                     const float* expected) {
  const size_t count = static_cast<size_t>(c.nrows * c.n_per_row);
  std::vector<float> actual = Buffer<float>(c.src_offset, count);
  try {
    Dequantize(c.type, blocks, actual.data() + c.src_offset, c.nrows, c.n_per_row);
  } catch (const Error& e) {
    Fail(Describe(c, target, "Dequantize") + ": threw " + e.what());
  }
  CompareFloats(c, target, expected, actual.data() + c.src_offset);
}

void RunDequantizeOnly(const Case& c, ByteSource& in) {
  const size_t bytes = RowSize(c.type, c.n_per_row) * static_cast<size_t>(c.nrows);
  std::vector<uint8_t> blocks = Buffer<uint8_t>(c.dst_offset, bytes);
  for (size_t i = 0; i < bytes; ++i) blocks[c.dst_offset + i] = in.Next();
  const uint8_t* src = blocks.data() + c.dst_offset;
  std::vector<float> expected(static_cast<size_t>(c.nrows * c.n_per_row));
  reference::DequantizeRows(c.type, src, expected.data(), c.nrows, c.n_per_row);
  for (const int64_t target : Targets()) {
    ForcedTarget forced(target);
    CheckDequantize(c, hwy::TargetName(target), src, expected.data());
  }
}

void RunQuantize(const Case& c, ByteSource& in) {
  const size_t count = static_cast<size_t>(c.nrows * c.n_per_row);
  std::vector<float> weights = Buffer<float>(c.src_offset, count);
  std::vector<uint16_t> halves = Buffer<uint16_t>(c.src_offset, count);
  DecodeWeights(c, in, weights.data() + c.src_offset, halves.data() + c.src_offset);
  std::vector<float> imatrix_storage;
  const float* imatrix = nullptr;
  if (c.use_imatrix) {
    imatrix_storage.resize(static_cast<size_t>(c.n_per_row));
    DecodeImatrix(c, in, imatrix_storage.data());
    imatrix = imatrix_storage.data();
  }
  const float* src = weights.data() + c.src_offset;
  const uint16_t* half_src = halves.data() + c.src_offset;

  const size_t bytes = RowSize(c.type, c.n_per_row) * static_cast<size_t>(c.nrows);
  std::vector<uint8_t> expected(bytes);
  if (reference::QuantizeRows(c.type, src, expected.data(), c.nrows, c.n_per_row, imatrix) !=
      bytes) {
    Fail(Describe(c, "reference", "QuantizeRows") + ": wrong byte count");
  }
  std::vector<float> expected_floats(count);
  reference::DequantizeRows(c.type, expected.data(), expected_floats.data(), c.nrows, c.n_per_row);

  std::vector<uint8_t> actual = Buffer<uint8_t>(c.dst_offset, bytes);
  uint8_t* dst = actual.data() + c.dst_offset;
  for (const int64_t target : Targets()) {
    ForcedTarget forced(target);
    const char* name = hwy::TargetName(target);
    // Each entry point starts from garbage so a skipped byte cannot pass by luck.
    const auto check = [&](const char* entry, auto&& call) {
      std::memset(dst, 0xA5, bytes);
      size_t written = 0;
      try {
        written = call();
      } catch (const Error& e) {
        Fail(Describe(c, name, entry) + ": threw " + e.what());
      }
      if (written != bytes) {
        Fail(Describe(c, name, entry) + ": returned " + std::to_string(written) +
             " bytes, expected " + std::to_string(bytes));
      }
      CompareBytes(c, name, entry, expected.data(), dst);
    };
    check("Quantize", [&] { return Quantize(c.type, src, dst, c.nrows, c.n_per_row, imatrix); });
    if (c.encoding == Encoding::kF16Bits) {
      check("QuantizeF16",
            [&] { return QuantizeF16(c.type, half_src, dst, c.nrows, c.n_per_row, imatrix); });
    }
    if (c.encoding == Encoding::kBF16Bits) {
      check("QuantizeBF16",
            [&] { return QuantizeBF16(c.type, half_src, dst, c.nrows, c.n_per_row, imatrix); });
    }
    if (c.parallel) {
      check("QuantizeParallel(2 threads)",
            [&] { return QuantizeParallel(c.type, src, dst, c.nrows, c.n_per_row, imatrix, 2); });
    }
    CheckDequantize(c, name, expected.data(), expected_floats.data());
  }
}

}  // namespace
}  // namespace hwyquant

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < hwyquant::kHeaderBytes) return -1;  // not kept in the corpus
  hwyquant::ByteSource in(data, size);
  const hwyquant::Case c = hwyquant::DecodeCase(in);
  if (c.dequantize_only) {
    hwyquant::RunDequantizeOnly(c, in);
  } else {
    hwyquant::RunQuantize(c, in);
  }
  return 0;
}
