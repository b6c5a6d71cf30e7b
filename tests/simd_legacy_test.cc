// Checks the SIMD float and legacy codecs on every target against the scalar reference and
// ggml's golden output, byte for byte, through the public dispatch API.
#include <stdint.h>
#include <string.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "hwyquant/hwyquant.h"
#include "reference/reference.h"
#include "tests/hwy_targets.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

using test::ForEachHwyTarget;
using test::Rng;

constexpr Type kSimdTypes[] = {Type::kF32,  Type::kF16,  Type::kBF16, Type::kQ4_0,
                               Type::kQ4_1, Type::kQ5_0, Type::kQ5_1, Type::kQ8_0};
constexpr Type kKTypes[] = {Type::kQ2_K, Type::kQ3_K, Type::kQ4_K, Type::kQ5_K, Type::kQ6_K};

const char* const kGoldenInputs[] = {"gauss",    "uniform", "student3",   "outliers",   "zeros",
                                     "const",    "tiny",    "huge",       "relu",       "ties",
                                     "bf16grid", "sparse",  "mixed_rows", "blockconst", "specials"};
constexpr int64_t kGoldenRows = 4;
constexpr int64_t kGoldenCols = 2048;

bool IsHalfNaN(const uint8_t* p) {
  const uint16_t h = static_cast<uint16_t>(p[0] | (p[1] << 8));
  return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0;
}

// Byte offsets of a legacy block's f16 scale and minimum (-1: none).
void ScaleOffsets(Type type, int* d, int* m) {
  *d = -1;
  *m = -1;
  switch (type) {
    case Type::kQ4_0:
    case Type::kQ5_0:
    case Type::kQ8_0:
      *d = 0;
      break;
    case Type::kQ4_1:
    case Type::kQ5_1:
      *d = 0;
      *m = 2;
      break;
    default:
      break;
  }
}

// "row 2 block 5 byte 3" for the first differing byte, or "" when equal.
//
// With nan_scales_relaxed, a block whose expected scale or minimum is a NaN only has to have a
// NaN there too. Those NaNs come out of the imatrix searches' sums, where which of several
// NaN operands propagates (sign and payload) is chosen by the compiler's operand order in the
// reference itself (x86 keeps the first source's NaN; C leaves it unspecified); the rest of
// such a block is derived from the NaN payload and equally unspecified.
std::string FirstByteDifference(Type type, const std::vector<uint8_t>& expected,
                                const uint8_t* actual, int64_t n_per_row,
                                bool nan_scales_relaxed = false) {
  const TypeTraits& traits = TraitsOf(type);
  const size_t row_size = RowSize(type, n_per_row);
  const size_t block_bytes = static_cast<size_t>(traits.type_size);
  int d_offset, m_offset;
  ScaleOffsets(type, &d_offset, &m_offset);
  for (size_t i = 0; i < expected.size(); ++i) {
    if (nan_scales_relaxed && d_offset >= 0 && i % block_bytes == 0) {
      const size_t block = i;
      bool relaxed = false;
      for (const int offset : {d_offset, m_offset}) {
        if (offset < 0 || !IsHalfNaN(&expected[block + offset])) continue;
        relaxed = true;
        if (!IsHalfNaN(actual + block + offset)) {
          std::ostringstream out;
          out << "row " << block / row_size << " block " << (block % row_size) / block_bytes
              << ": expected a NaN " << (offset == d_offset ? "scale" : "minimum");
          return out.str();
        }
      }
      if (relaxed) {
        i += block_bytes - 1;
        continue;
      }
    }
    if (expected[i] == actual[i]) continue;
    const size_t row = i / row_size;
    const size_t in_row = i % row_size;
    std::ostringstream out;
    out << "row " << row << " block " << in_row / traits.type_size << " byte "
        << in_row % traits.type_size << ": expected 0x" << std::hex << int{expected[i]} << " got 0x"
        << int{actual[i]};
    return out.str();
  }
  return "";
}

// First float whose bits differ (NaNs must match bit for bit too), or "".
std::string FirstFloatDifference(const std::vector<float>& expected, const float* actual,
                                 int64_t n_per_row, int64_t block_size) {
  for (size_t i = 0; i < expected.size(); ++i) {
    if (BitsOfF32(expected[i]) == BitsOfF32(actual[i])) continue;
    std::ostringstream out;
    out << "row " << i / n_per_row << " block " << (i % n_per_row) / block_size << " element "
        << (i % n_per_row) % block_size << ": expected " << expected[i] << " (0x" << std::hex
        << BitsOfF32(expected[i]) << ") got " << actual[i] << " (0x" << BitsOfF32(actual[i]) << ")";
    return out.str();
  }
  return "";
}

// Quantizes with the public API from deliberately misaligned buffers and compares with the
// reference; then dequantizes the reference bytes both ways.
void CheckAgainstReference(Type type, const std::vector<float>& input, int64_t nrows,
                           int64_t n_per_row, const float* imatrix, const std::string& what) {
  INFO(what << " type " << TypeName(type) << " rows " << nrows << " x " << n_per_row
            << (imatrix ? " with imatrix" : " without imatrix"));
  const size_t bytes = RowSize(type, n_per_row) * static_cast<size_t>(nrows);
  std::vector<uint8_t> expected(bytes);
  REQUIRE(reference::QuantizeRows(type, input.data(), expected.data(), nrows, n_per_row, imatrix) ==
          bytes);
  // Offsets of one float and of the blocks' alignment keep every vector load and store
  // unaligned while each object stays properly aligned.
  const size_t offset = type == Type::kF32 ? sizeof(float) : sizeof(HalfBits);
  std::vector<float> src(input.size() + 1);
  memcpy(src.data() + 1, input.data(), input.size() * sizeof(float));
  std::vector<uint8_t> dst(bytes + offset + 1, 0xAB);
  REQUIRE(Quantize(type, src.data() + 1, dst.data() + offset, nrows, n_per_row, imatrix) == bytes);
  const std::string diff =
      FirstByteDifference(type, expected, dst.data() + offset, n_per_row, imatrix != nullptr);
  CHECK(diff == "");
  CHECK(dst[offset - 1] == 0xAB);
  CHECK(dst[offset + bytes] == 0xAB);

  std::vector<float> expected_floats(input.size());
  reference::DequantizeRows(type, expected.data(), expected_floats.data(), nrows, n_per_row);
  std::vector<float> actual_floats(input.size() + 1);
  memcpy(dst.data() + offset, expected.data(), bytes);
  Dequantize(type, dst.data() + offset, actual_floats.data() + 1, nrows, n_per_row);
  const std::string float_diff = FirstFloatDifference(expected_floats, actual_floats.data() + 1,
                                                      n_per_row, TraitsOf(type).block_size);
  CHECK(float_diff == "");
}

// Values that stress one kind of path; index selects the generator.
float Generate(Rng& rng, int kind, float scale) {
  switch (kind) {
    case 0:
      return rng.UniformSigned() * scale;
    case 1:
      return rng.HeavyTailed() * scale;
    case 2:  // exact ties of the level grids
      return static_cast<float>(static_cast<int>(rng.Next() % 33) - 16) * 0.125f * scale;
    case 3: {  // specials sprinkled into ordinary values
      const uint64_t pick = rng.Next() % 24;
      switch (pick) {
        case 0:
          return std::numeric_limits<float>::quiet_NaN();
        case 1:
          return -std::numeric_limits<float>::quiet_NaN();
        case 2:
          return std::numeric_limits<float>::infinity();
        case 3:
          return -std::numeric_limits<float>::infinity();
        case 4:
          return -0.0f;
        case 5:
          return 0.0f;
        case 6:
          return F32FromBits(0x00000001u + static_cast<uint32_t>(rng.Next() % 0x7FFFFF));
        case 7:
          return 65504.0f;
        case 8:
          return -65520.0f;
        case 9:
          return std::numeric_limits<float>::max();
        case 10:
          return F32FromBits(0x7F800001u);  // signalling NaN
        default:
          return rng.UniformSigned() * scale;
      }
    }
    case 4:  // all equal runs (max == min), with sign changes of zero
      return (rng.Next() % 4 == 0) ? -0.0f : 0.375f * scale;
    default:  // random bit patterns: anything a float can be
      return F32FromBits(static_cast<uint32_t>(rng.Next()));
  }
}

constexpr float kScales[] = {1.0f, 0.02f, 3e4f, 1e-12f, 1e-38f, 1e30f, 7.5f};
constexpr int kKinds = 6;

std::vector<float> RandomInput(Rng& rng, size_t n, int kind, float scale) {
  std::vector<float> values(n);
  for (float& v : values) v = Generate(rng, kind, scale);
  return values;
}

std::vector<float> RandomImatrix(Rng& rng, size_t n) {
  std::vector<float> w(n);
  for (float& v : w) {
    const uint64_t pick = rng.Next() % 16;
    v = pick == 0 ? 0.0f : (rng.UniformSigned() + 1.0f) * (pick == 1 ? 1e6f : 1.0f);
  }
  return w;
}

TEST_CASE("every target matches ggml's golden bytes for f16 bf16 and the legacy quants") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string dir = shared + "/golden/kquants/";
  int compared = 0;
  ForEachHwyTarget([&](const char* target) {
    CHECK(std::string(ActiveTarget()) == target);
    for (const char* name : kGoldenInputs) {
      const std::vector<float> input = test::ReadF32File(dir + name + ".f32");
      REQUIRE(input.size() == static_cast<size_t>(kGoldenRows * kGoldenCols));
      const std::vector<float> imatrix = test::ReadF32File(dir + name + ".imatrix.f32");
      for (const Type type : kSimdTypes) {
        if (type == Type::kF32) continue;
        const std::string base = dir + name + "." + TypeName(type);
        if (!test::FileExists(base + ".bin")) {
          // Only the specials input lacks quantized goldens (README: f16 and bf16 only).
          CHECK(std::string(name) == "specials");
          continue;
        }
        INFO("golden " << base);
        const std::vector<uint8_t> golden = test::ReadFileBytes(base + ".bin");
        std::vector<uint8_t> out(golden.size());
        REQUIRE(Quantize(type, input.data(), out.data(), kGoldenRows, kGoldenCols) ==
                golden.size());
        CHECK(FirstByteDifference(type, golden, out.data(), kGoldenCols) == "");
        if (test::FileExists(base + ".imatrix.bin")) {
          const std::vector<uint8_t> golden_im = test::ReadFileBytes(base + ".imatrix.bin");
          REQUIRE(Quantize(type, input.data(), out.data(), kGoldenRows, kGoldenCols,
                           imatrix.data()) == golden_im.size());
          INFO("with imatrix");
          CHECK(FirstByteDifference(type, golden_im, out.data(), kGoldenCols) == "");
        }
        const std::vector<float> golden_floats = test::ReadF32File(base + ".dequant.f32");
        std::vector<float> floats(golden_floats.size());
        Dequantize(type, golden.data(), floats.data(), kGoldenRows, kGoldenCols);
        CHECK(FirstFloatDifference(golden_floats, floats.data(), kGoldenCols,
                                   TraitsOf(type).block_size) == "");
        // The reference must agree too, with and without the imatrix.
        CheckAgainstReference(type, input, kGoldenRows, kGoldenCols, nullptr, base);
        CheckAgainstReference(type, input, kGoldenRows, kGoldenCols, imatrix.data(), base);
        ++compared;
      }
    }
  });
  CHECK(compared >= 12 * 7 + 2);
}

TEST_CASE("every target matches the reference on randomized inputs") {
  ForEachHwyTarget([&](const char* /*target*/) {
    for (uint64_t seed = 1; seed <= 64; ++seed) {
      Rng rng(seed * 0x9E3779B97F4A7C15ull);
      const int kind = static_cast<int>(seed % kKinds);
      const float scale = kScales[seed % (sizeof(kScales) / sizeof(kScales[0]))];
      const int64_t nrows = 1 + static_cast<int64_t>(rng.Next() % 5);
      const int64_t nblocks = 1 + static_cast<int64_t>(rng.Next() % 40);
      const int64_t n_per_row = nblocks * 32;
      const std::vector<float> input =
          RandomInput(rng, static_cast<size_t>(nrows * n_per_row), kind, scale);
      const std::vector<float> imatrix = RandomImatrix(rng, static_cast<size_t>(n_per_row));
      std::ostringstream what;
      what << "seed " << seed << " kind " << kind << " scale " << scale;
      for (const Type type : kSimdTypes) {
        CheckAgainstReference(type, input, nrows, n_per_row, nullptr, what.str());
        CheckAgainstReference(type, input, nrows, n_per_row, imatrix.data(), what.str());
      }
    }
  });
}

TEST_CASE("every target matches the reference block by block on special blocks") {
  // One block per row, each row its own corner case: all NaN, NaN last (q8_0's fold), a lone
  // Inf, max and -max equal in magnitude (first wins), zeros of both signs, subnormals.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> rows;
  rows.push_back(std::vector<float>(32, nan));
  {
    std::vector<float> r(32, 0.5f);
    r[31] = nan;
    rows.push_back(r);
    r[31] = 3.0f;
    r[7] = nan;
    rows.push_back(r);
    r[7] = inf;
    rows.push_back(r);
    r[7] = -inf;
    r[8] = inf;
    rows.push_back(r);
  }
  {
    std::vector<float> r(32, 0.25f);
    r[3] = -2.0f;
    r[20] = 2.0f;
    rows.push_back(r);
    r[3] = 2.0f;
    r[20] = -2.0f;
    rows.push_back(r);
  }
  {
    std::vector<float> r(32, 0.0f);
    for (int i = 0; i < 32; i += 3) r[i] = -0.0f;
    rows.push_back(r);
    r[0] = -0.0f;
    r[1] = 0.0f;
    rows.push_back(r);
    for (int i = 0; i < 32; ++i)
      r[i] = F32FromBits(0x80000000u | static_cast<uint32_t>(i * 977 + 1));
    rows.push_back(r);
    for (int i = 0; i < 32; ++i) r[i] = (i % 2 ? 1.0f : -1.0f) * static_cast<float>(i) * 1e-41f;
    rows.push_back(r);
  }
  {
    std::vector<float> r(32);
    for (int i = 0; i < 32; ++i) r[i] = static_cast<float>(i - 16) / 8.0f;  // exact ties
    rows.push_back(r);
    for (int i = 0; i < 32; ++i) r[i] = static_cast<float>(i) * 0.5f;
    rows.push_back(r);
    for (int i = 0; i < 32; ++i) r[i] = 3.0e38f * ((i % 3) ? 1.0f : -1.0f);
    rows.push_back(r);
  }
  std::vector<float> input;
  for (const auto& r : rows) input.insert(input.end(), r.begin(), r.end());
  const int64_t nrows = static_cast<int64_t>(rows.size());
  std::vector<float> imatrix(32, 1.0f);
  imatrix[5] = 0.0f;
  ForEachHwyTarget([&](const char* /*target*/) {
    for (const Type type : kSimdTypes) {
      CheckAgainstReference(type, input, nrows, 32, nullptr, "special blocks");
      CheckAgainstReference(type, input, nrows, 32, imatrix.data(), "special blocks");
      // The same rows glued into one long row: blocks of a batch then share one row.
      CheckAgainstReference(type, input, 1, nrows * 32, nullptr, "special blocks, one row");
    }
  });
}

TEST_CASE("every target converts f16 and bf16 exactly on a dense sweep of f32 bit patterns") {
  // Every exponent and sign with the mantissa bits around each rounding boundary, plus a
  // strided sweep of everything else.
  std::vector<float> values;
  for (uint32_t high = 0; high < (1u << 19); ++high) {
    for (const uint32_t low : {0x0u, 0x1u, 0xFFFu, 0x1000u, 0x1001u, 0x1FFFu}) {
      values.push_back(F32FromBits((high << 13) | low));
    }
  }
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 65521) {
    values.push_back(F32FromBits(static_cast<uint32_t>(bits)));
  }
  for (uint32_t bits = 0x7F7FF000u; bits <= 0x7F800010u; ++bits)
    values.push_back(F32FromBits(bits));
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<uint16_t> expected_f16(values.size()), expected_bf16(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    expected_f16[i] = F32ToF16(values[i]);
    expected_bf16[i] = F32ToBF16(values[i]);
  }
  std::vector<float> all_f16(65536), all_bf16(65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    all_f16[h] = F16ToF32(static_cast<uint16_t>(h));
    all_bf16[h] = BF16ToF32(static_cast<uint16_t>(h));
  }
  std::vector<uint16_t> every_half(65536);
  for (uint32_t h = 0; h < 65536; ++h) every_half[h] = static_cast<uint16_t>(h);
  ForEachHwyTarget([&](const char* /*target*/) {
    std::vector<uint16_t> out(values.size());
    Quantize(Type::kF16, values.data(), out.data(), 1, n);
    for (size_t i = 0; i < values.size(); ++i) {
      if (out[i] != expected_f16[i]) {
        FAIL("f16 of bits 0x" << std::hex << BitsOfF32(values[i]) << ": expected 0x"
                              << expected_f16[i] << " got 0x" << out[i]);
      }
    }
    Quantize(Type::kBF16, values.data(), out.data(), 1, n);
    for (size_t i = 0; i < values.size(); ++i) {
      if (out[i] != expected_bf16[i]) {
        FAIL("bf16 of bits 0x" << std::hex << BitsOfF32(values[i]) << ": expected 0x"
                               << expected_bf16[i] << " got 0x" << out[i]);
      }
    }
    std::vector<float> widened(65536);
    Dequantize(Type::kF16, every_half.data(), widened.data(), 1, 65536);
    CHECK(FirstFloatDifference(all_f16, widened.data(), 65536, 1) == "");
    Dequantize(Type::kBF16, every_half.data(), widened.data(), 1, 65536);
    CHECK(FirstFloatDifference(all_bf16, widened.data(), 65536, 1) == "");
  });
}

TEST_CASE("every target dequantizes arbitrary block bytes like the reference") {
  ForEachHwyTarget([&](const char* /*target*/) {
    for (const Type type : kSimdTypes) {
      Rng rng(0xD15EA5Eull + static_cast<uint64_t>(type));
      const int64_t nrows = 3;
      const int64_t n_per_row = 32 * 9;
      std::vector<uint8_t> bytes(RowSize(type, n_per_row) * nrows);
      for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng.Next());
      std::vector<float> expected(static_cast<size_t>(nrows * n_per_row));
      std::vector<float> actual(expected.size());
      reference::DequantizeRows(type, bytes.data(), expected.data(), nrows, n_per_row);
      Dequantize(type, bytes.data(), actual.data(), nrows, n_per_row);
      INFO("type " << TypeName(type));
      CHECK(FirstFloatDifference(expected, actual.data(), n_per_row, TraitsOf(type).block_size) ==
            "");
    }
  });
}

// Source rows of 16-bit floats: every special half, random others.
std::vector<uint16_t> RandomHalfRows(Rng& rng, size_t n) {
  std::vector<uint16_t> values(n);
  for (size_t i = 0; i < n; ++i) {
    values[i] = (rng.Next() % 8 == 0) ? static_cast<uint16_t>(0x7C00u + rng.Next() % 0x400u)
                                      : static_cast<uint16_t>(rng.Next());
  }
  return values;
}

TEST_CASE("QuantizeF16 and QuantizeBF16 equal quantizing the widened rows") {
  ForEachHwyTarget([&](const char* /*target*/) {
    for (const Type type : kSimdTypes) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        Rng rng(seed * 1000 + static_cast<uint64_t>(type));
        const int64_t nrows = 1 + static_cast<int64_t>(seed);
        const int64_t n_per_row = 32 * (1 + static_cast<int64_t>(rng.Next() % 20));
        const size_t n = static_cast<size_t>(nrows * n_per_row);
        const std::vector<uint16_t> halves = RandomHalfRows(rng, n);
        const std::vector<float> imatrix = RandomImatrix(rng, static_cast<size_t>(n_per_row));
        for (const bool bf16 : {false, true}) {
          for (const float* im : {static_cast<const float*>(nullptr), imatrix.data()}) {
            INFO("type " << TypeName(type) << (bf16 ? " from bf16" : " from f16") << " seed "
                         << seed << (im ? " with imatrix" : ""));
            std::vector<float> widened(n);
            for (size_t i = 0; i < n; ++i) {
              widened[i] = bf16 ? BF16ToF32(halves[i]) : F16ToF32(halves[i]);
            }
            const size_t bytes = RowSize(type, n_per_row) * static_cast<size_t>(nrows);
            std::vector<uint8_t> expected(bytes), actual(bytes);
            reference::QuantizeRows(type, widened.data(), expected.data(), nrows, n_per_row, im);
            const size_t written =
                bf16 ? QuantizeBF16(type, halves.data(), actual.data(), nrows, n_per_row, im)
                     : QuantizeF16(type, halves.data(), actual.data(), nrows, n_per_row, im);
            CHECK(written == bytes);
            CHECK(FirstByteDifference(type, expected, actual.data(), n_per_row, im != nullptr) ==
                  "");
          }
        }
      }
    }
  });
}

TEST_CASE("QuantizeParallel gives Quantize's bytes for any thread count") {
  Rng rng(77);
  const int64_t nrows = 37;
  const int64_t n_per_row = 256;
  const std::vector<float> input =
      RandomInput(rng, static_cast<size_t>(nrows * n_per_row), 1, 1.0f);
  const std::vector<float> imatrix = RandomImatrix(rng, static_cast<size_t>(n_per_row));
  for (const Type type : {Type::kF16, Type::kBF16, Type::kQ4_0, Type::kQ4_1, Type::kQ5_0,
                          Type::kQ5_1, Type::kQ8_0, Type::kQ4_K, Type::kQ6_K}) {
    for (const float* im : {static_cast<const float*>(nullptr), imatrix.data()}) {
      const size_t bytes = RowSize(type, n_per_row) * static_cast<size_t>(nrows);
      std::vector<uint8_t> expected(bytes);
      reference::QuantizeRows(type, input.data(), expected.data(), nrows, n_per_row, im);
      for (const int threads : {0, 1, 2, 3, 8, 100}) {
        INFO("type " << TypeName(type) << " threads " << threads << (im ? " imatrix" : ""));
        std::vector<uint8_t> actual(bytes);
        CHECK(QuantizeParallel(type, input.data(), actual.data(), nrows, n_per_row, im, threads) ==
              bytes);
        CHECK(FirstByteDifference(type, expected, actual.data(), n_per_row) == "");
      }
    }
  }
}

TEST_CASE("K-quant types keep working through the public API") {
  Rng rng(5);
  const int64_t nrows = 2;
  const int64_t n_per_row = 512;
  const std::vector<float> input =
      RandomInput(rng, static_cast<size_t>(nrows * n_per_row), 0, 1.0f);
  const std::vector<float> imatrix = RandomImatrix(rng, static_cast<size_t>(n_per_row));
  ForEachHwyTarget([&](const char* /*target*/) {
    for (const Type type : kKTypes) {
      CheckAgainstReference(type, input, nrows, n_per_row, nullptr, "K type");
      CheckAgainstReference(type, input, nrows, n_per_row, imatrix.data(), "K type");
    }
  });
}

TEST_CASE("the public API rejects bad arguments with clear errors") {
  std::vector<float> src(64, 1.0f);
  std::vector<uint8_t> dst(1024);
  std::vector<uint16_t> halves(64);
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(Quantize(Type::kQ4_0, src.data(), dst.data(), 1, 48),
                    Contains("not a multiple of the q4_0 block size 32"));
  CHECK_THROWS_WITH(Quantize(Type::kQ4_K, src.data(), dst.data(), 1, 64),
                    Contains("not a multiple of the q4_K block size 256"));
  CHECK_THROWS_WITH(Quantize(Type::kIQ2_XXS, src.data(), dst.data(), 0, 256), Contains("iq2_xxs"));
  CHECK_THROWS_WITH(Quantize(Type::kQ8_1, src.data(), dst.data(), 1, 32), Contains("q8_1"));
  CHECK_THROWS_WITH(Quantize(static_cast<Type>(99), src.data(), dst.data(), 1, 32),
                    Contains("unknown GGUF type id 99"));
  CHECK_THROWS_WITH(Quantize(Type::kQ4_0, nullptr, dst.data(), 1, 32), Contains("null"));
  CHECK_THROWS_WITH(Quantize(Type::kQ4_0, src.data(), nullptr, 1, 32), Contains("null"));
  CHECK_THROWS_WITH(Quantize(Type::kQ4_0, src.data(), dst.data(), -1, 32), Contains("negative"));
  CHECK_THROWS_WITH(QuantizeF16(Type::kQ5_0, halves.data(), dst.data(), 1, 33),
                    Contains("not a multiple"));
  CHECK_THROWS_WITH(QuantizeBF16(Type::kQ5_0, nullptr, dst.data(), 1, 32), Contains("null"));
  CHECK_THROWS_WITH(Dequantize(Type::kQ8_0, dst.data(), nullptr, 1, 32), Contains("null"));
  CHECK_THROWS_WITH(Dequantize(Type::kIQ4_NL, dst.data(), src.data(), 1, 32), Contains("iq4_nl"));
  CHECK_THROWS_WITH(QuantizeParallel(Type::kQ4_0, src.data(), dst.data(), 1, 32, nullptr, -2),
                    Contains("negative thread count"));
  CHECK_THROWS_AS(Quantize(Type::kQ4_0, src.data(), dst.data(), 1, 31), Error);
  CHECK_THROWS_WITH(Quantize(Type::kQ8_0, src.data(), dst.data() + 1, 1, 32),
                    Contains("2-byte aligned"));
  CHECK_THROWS_WITH(Dequantize(Type::kQ4_1, dst.data() + 1, src.data(), 1, 32),
                    Contains("2-byte aligned"));
  // Empty work is fine and writes nothing.
  CHECK(Quantize(Type::kQ4_0, nullptr, nullptr, 0, 32) == 0);
  CHECK(Quantize(Type::kQ4_0, nullptr, nullptr, 3, 0) == 0);
  CHECK(std::string(ActiveTarget()).size() > 0);
}

}  // namespace
}  // namespace hwyquant
