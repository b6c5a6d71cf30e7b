// Checks the scalar K-quant reference (q2_K..q6_K) byte for byte against ggml's
// golden outputs.
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"
#include "reference/reference.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

// The golden inputs: 4 rows of 2048 columns each (see
// shared/golden/kquants/README.md).
constexpr int64_t kRows = 4;
constexpr int64_t kColumns = 2048;

const char* const kInputs[] = {"gauss",    "uniform", "student3",   "outliers",  "zeros",
                               "const",    "tiny",    "huge",       "relu",      "ties",
                               "bf16grid", "sparse",  "mixed_rows", "blockconst"};
constexpr Type kKTypes[] = {Type::kQ2_K, Type::kQ3_K, Type::kQ4_K, Type::kQ5_K, Type::kQ6_K};

struct Field {
  const char* name;
  size_t offset;
  size_t size;
};

#define HWYQUANT_FIELD(block, member) \
  Field { #member, offsetof(block, member), sizeof(block::member) }

// The fields of each block layout, so a mismatch can say which one differs.
std::vector<Field> FieldsOf(Type type) {
  switch (type) {
    case Type::kQ2_K:
      return {HWYQUANT_FIELD(BlockQ2_K, scales), HWYQUANT_FIELD(BlockQ2_K, qs),
              HWYQUANT_FIELD(BlockQ2_K, d), HWYQUANT_FIELD(BlockQ2_K, dmin)};
    case Type::kQ3_K:
      return {HWYQUANT_FIELD(BlockQ3_K, hmask), HWYQUANT_FIELD(BlockQ3_K, qs),
              HWYQUANT_FIELD(BlockQ3_K, scales), HWYQUANT_FIELD(BlockQ3_K, d)};
    case Type::kQ4_K:
      return {HWYQUANT_FIELD(BlockQ4_K, d), HWYQUANT_FIELD(BlockQ4_K, dmin),
              HWYQUANT_FIELD(BlockQ4_K, scales), HWYQUANT_FIELD(BlockQ4_K, qs)};
    case Type::kQ5_K:
      return {HWYQUANT_FIELD(BlockQ5_K, d), HWYQUANT_FIELD(BlockQ5_K, dmin),
              HWYQUANT_FIELD(BlockQ5_K, scales), HWYQUANT_FIELD(BlockQ5_K, qh),
              HWYQUANT_FIELD(BlockQ5_K, qs)};
    case Type::kQ6_K:
      return {HWYQUANT_FIELD(BlockQ6_K, ql), HWYQUANT_FIELD(BlockQ6_K, qh),
              HWYQUANT_FIELD(BlockQ6_K, scales), HWYQUANT_FIELD(BlockQ6_K, d)};
    default:
      return {};
  }
}

#undef HWYQUANT_FIELD

std::string FieldAt(Type type, size_t byte_in_block) {
  for (const Field& field : FieldsOf(type)) {
    if (byte_in_block >= field.offset && byte_in_block < field.offset + field.size) {
      return std::string(field.name) + "[" + std::to_string(byte_in_block - field.offset) + "]";
    }
  }
  return "?";
}

// Empty when the bytes agree; otherwise where the first difference is and how
// many bytes differ.
std::string DescribeByteMismatch(Type type, const std::vector<uint8_t>& ours,
                                 const std::vector<uint8_t>& golden) {
  if (ours.size() != golden.size()) {
    return "size " + std::to_string(ours.size()) + " vs golden " + std::to_string(golden.size());
  }
  size_t first = ours.size();
  size_t differing = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (ours[i] != golden[i]) {
      if (first == ours.size()) first = i;
      ++differing;
    }
  }
  if (differing == 0) return "";
  const TypeTraits& traits = TraitsOf(type);
  const size_t row_size = RowSize(type, kColumns);
  const size_t row = first / row_size;
  const size_t block = first % row_size / static_cast<size_t>(traits.type_size);
  const size_t byte_in_block = first % static_cast<size_t>(traits.type_size);
  std::ostringstream out;
  out << differing << " bytes differ; first at row " << row << ", block " << block << ", byte "
      << byte_in_block << " of the block (field " << FieldAt(type, byte_in_block) << "): ours 0x"
      << std::hex << static_cast<int>(ours[first]) << ", ggml 0x"
      << static_cast<int>(golden[first]);
  return out.str();
}

// Empty when every float has the same bits; otherwise the first differing
// element.
std::string DescribeFloatMismatch(Type type, const std::vector<float>& ours,
                                  const std::vector<float>& golden) {
  if (ours.size() != golden.size()) {
    return "count " + std::to_string(ours.size()) + " vs golden " + std::to_string(golden.size());
  }
  size_t differing = 0;
  size_t first = ours.size();
  for (size_t i = 0; i < ours.size(); ++i) {
    if (BitsOfF32(ours[i]) != BitsOfF32(golden[i])) {
      if (first == ours.size()) first = i;
      ++differing;
    }
  }
  if (differing == 0) return "";
  const int64_t block_size = TraitsOf(type).block_size;
  std::ostringstream out;
  out << differing << " floats differ; first at row " << first / kColumns << ", column "
      << first % kColumns << " (block " << first % kColumns / block_size << "): ours "
      << ours[first] << " (0x" << std::hex << BitsOfF32(ours[first]) << "), ggml " << std::dec
      << golden[first] << " (0x" << std::hex << BitsOfF32(golden[first]) << ")";
  return out.str();
}

std::vector<uint8_t> QuantizeWithReference(Type type, const std::vector<float>& input,
                                           const float* imatrix) {
  std::vector<uint8_t> out(RowSize(type, kColumns) * kRows, 0xA5);
  const size_t written =
      reference::QuantizeRows(type, input.data(), out.data(), kRows, kColumns, imatrix);
  REQUIRE(written == out.size());
  return out;
}

TEST_CASE("K-quant reference reproduces ggml's golden bytes and dequantized floats") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string dir = shared + "/golden/kquants/";

  int comparisons = 0;
  int passed = 0;
  for (const char* input_name : kInputs) {
    const std::vector<float> input = test::ReadF32File(dir + input_name + ".f32");
    const std::vector<float> imatrix = test::ReadF32File(dir + input_name + ".imatrix.f32");
    REQUIRE(input.size() == static_cast<size_t>(kRows * kColumns));
    REQUIRE(imatrix.size() == static_cast<size_t>(kColumns));

    for (const Type type : kKTypes) {
      const std::string stem = dir + input_name + "." + TypeName(type);
      for (const bool with_imatrix : {false, true}) {
        const std::string golden_path = stem + (with_imatrix ? ".imatrix.bin" : ".bin");
        INFO("input " << input_name << ", type " << TypeName(type) << ", "
                      << (with_imatrix ? "with" : "without") << " imatrix (" << golden_path << ")");
        const std::vector<uint8_t> golden = test::ReadFileBytes(golden_path);
        const std::vector<uint8_t> ours =
            QuantizeWithReference(type, input, with_imatrix ? imatrix.data() : nullptr);
        const std::string mismatch = DescribeByteMismatch(type, ours, golden);
        ++comparisons;
        if (mismatch.empty()) {
          ++passed;
        } else {
          FAIL_CHECK("quantize: " << mismatch);
        }
      }

      INFO("input " << input_name << ", type " << TypeName(type) << ", dequantizing " << stem
                    << ".bin");
      const std::vector<uint8_t> golden_bin = test::ReadFileBytes(stem + ".bin");
      const std::vector<float> golden_floats = test::ReadF32File(stem + ".dequant.f32");
      REQUIRE(golden_bin.size() == RowSize(type, kColumns) * kRows);
      std::vector<float> ours(static_cast<size_t>(kRows * kColumns));
      reference::DequantizeRows(type, golden_bin.data(), ours.data(), kRows, kColumns);
      const std::string mismatch = DescribeFloatMismatch(type, ours, golden_floats);
      ++comparisons;
      if (mismatch.empty()) {
        ++passed;
      } else {
        FAIL_CHECK("dequantize: " << mismatch);
      }
    }
  }
  std::printf("K-quant golden comparisons: %d of %d pass\n", passed, comparisons);
  CHECK(comparisons == 14 * 5 * 3);
  CHECK(passed == comparisons);
}

TEST_CASE(
    "K-quant reference takes ggml's ref path without an imatrix, impl path "
    "with one") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string dir = shared + "/golden/kquants/";
  const std::vector<float> input = test::ReadF32File(dir + "gauss.f32");
  // Uniform importance still routes to the _impl algorithm, whose bytes differ
  // from _ref's.
  const std::vector<float> ones(static_cast<size_t>(kColumns), 1.0f);
  for (const Type type : kKTypes) {
    INFO("type " << TypeName(type));
    const std::vector<uint8_t> without = QuantizeWithReference(type, input, nullptr);
    const std::vector<uint8_t> with_ones = QuantizeWithReference(type, input, ones.data());
    const std::vector<uint8_t> golden =
        test::ReadFileBytes(dir + "gauss." + TypeName(type) + ".bin");
    const std::string mismatch = DescribeByteMismatch(type, without, golden);
    if (!mismatch.empty()) FAIL_CHECK("null imatrix vs gauss.bin: " << mismatch);
    if (without == with_ones) FAIL_CHECK("an all-ones imatrix gave the same bytes as none");
  }
}

TEST_CASE("K-quant reference rejects rows that are not whole super-blocks") {
  std::vector<float> input(300, 0.5f);
  std::vector<uint8_t> out(4096);
  for (const Type type : kKTypes) {
    INFO("type " << TypeName(type));
    for (const int64_t n_per_row : {int64_t{1}, int64_t{128}, int64_t{300}}) {
      INFO("n_per_row " << n_per_row);
      REQUIRE_THROWS_AS(
          reference::QuantizeRows(type, input.data(), out.data(), 1, n_per_row, nullptr), Error);
      REQUIRE_THROWS_WITH(
          reference::QuantizeRows(type, input.data(), out.data(), 1, n_per_row, nullptr),
          Catch::Contains("not a multiple") && Catch::Contains(TypeName(type)) &&
              Catch::Contains(std::to_string(n_per_row)));
      REQUIRE_THROWS_AS(reference::DequantizeRows(type, out.data(), input.data(), 1, n_per_row),
                        Error);
    }
  }
}

TEST_CASE("K-quant reference writes nothing for zero rows") {
  const std::vector<float> input(kColumns, 0.25f);
  const std::vector<float> imatrix(kColumns, 1.0f);
  for (const Type type : kKTypes) {
    INFO("type " << TypeName(type));
    std::vector<uint8_t> out(RowSize(type, kColumns), 0x5A);
    CHECK(reference::QuantizeRows(type, input.data(), out.data(), 0, kColumns, nullptr) == 0);
    CHECK(reference::QuantizeRows(type, input.data(), out.data(), 0, kColumns, imatrix.data()) ==
          0);
    CHECK(out == std::vector<uint8_t>(out.size(), 0x5A));
    std::vector<float> floats(kColumns, -7.0f);
    reference::DequantizeRows(type, out.data(), floats.data(), 0, kColumns);
    CHECK(floats == std::vector<float>(kColumns, -7.0f));
  }
}

TEST_CASE("NearestInt rounds half to even like ggml's nearest_int") {
  using hwyquant::NearestInt;  // include/hwyquant/rounding.h, shared by reference and kernels
  CHECK(NearestInt(0.5f) == 0);
  CHECK(NearestInt(1.5f) == 2);
  CHECK(NearestInt(2.5f) == 2);
  CHECK(NearestInt(-0.5f) == 0);
  CHECK(NearestInt(-1.5f) == -2);
  CHECK(NearestInt(-2.5f) == -2);
  CHECK(NearestInt(2.4999998f) == 2);
  CHECK(NearestInt(4194303.f) == 4194303);
  CHECK(NearestInt(-4194303.f) == -4194303);
}

TEST_CASE("packed 6-bit scales and mins round-trip for every value") {
  for (int value = 0; value < 64; ++value) {
    uint8_t packed[kKScaleBytes] = {};
    // Different scale and min per sub-block so crossed bits would show.
    for (int j = 0; j < 8; ++j) {
      reference::SetScaleMinK4(j, static_cast<uint8_t>((value + j) & 63),
                               static_cast<uint8_t>((value + 7 * j + 1) & 63), packed);
    }
    for (int j = 0; j < 8; ++j) {
      uint8_t scale = 0, min = 0;
      reference::GetScaleMinK4(j, packed, &scale, &min);
      INFO("value " << value << ", sub-block " << j);
      REQUIRE(scale == ((value + j) & 63));
      REQUIRE(min == ((value + 7 * j + 1) & 63));
    }
    uint8_t q3_scales[12] = {};
    for (int j = 0; j < 16; ++j) reference::SetScaleK3(j, (value + 5 * j) & 63, q3_scales);
    for (int j = 0; j < 16; ++j) {
      INFO("q3_K value " << value << ", sub-block " << j);
      REQUIRE(reference::GetScaleK3(j, q3_scales) == ((value + 5 * j) & 63) - 32);
    }
  }
}

}  // namespace
}  // namespace hwyquant
