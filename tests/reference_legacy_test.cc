// Checks the scalar reference for f16, bf16 and the legacy quants byte for byte
// against ggml.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/reference.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

// Shape of every golden input (see shared/golden/kquants/README.md).
constexpr int64_t kGoldenRows = 4;
constexpr int64_t kGoldenCols = 2048;

const char* const kInputs[] = {"gauss",    "uniform", "student3",   "outliers",  "zeros",
                               "const",    "tiny",    "huge",       "relu",      "ties",
                               "bf16grid", "sparse",  "mixed_rows", "blockconst"};

// A named byte range inside one block, to say which field a mismatching byte
// belongs to.
struct Field {
  const char* name;
  size_t offset;
  size_t size;
};

std::vector<Field> FieldsOf(Type type) {
  switch (type) {
    case Type::kF16:
    case Type::kBF16:
      return {{"value", 0, 2}};
    case Type::kQ4_0:
      return {{"d", offsetof(BlockQ4_0, d), 2}, {"qs", offsetof(BlockQ4_0, qs), 16}};
    case Type::kQ4_1:
      return {{"d", offsetof(BlockQ4_1, d), 2},
              {"m", offsetof(BlockQ4_1, m), 2},
              {"qs", offsetof(BlockQ4_1, qs), 16}};
    case Type::kQ5_0:
      return {{"d", offsetof(BlockQ5_0, d), 2},
              {"qh", offsetof(BlockQ5_0, qh), 4},
              {"qs", offsetof(BlockQ5_0, qs), 16}};
    case Type::kQ5_1:
      return {{"d", offsetof(BlockQ5_1, d), 2},
              {"m", offsetof(BlockQ5_1, m), 2},
              {"qh", offsetof(BlockQ5_1, qh), 4},
              {"qs", offsetof(BlockQ5_1, qs), 16}};
    case Type::kQ8_0:
      return {{"d", offsetof(BlockQ8_0, d), 2}, {"qs", offsetof(BlockQ8_0, qs), 32}};
    default:
      FAIL("no field table for " << TypeName(type));
      return {};
  }
}

std::string FieldAt(Type type, size_t offset_in_block) {
  for (const Field& field : FieldsOf(type)) {
    if (offset_in_block >= field.offset && offset_in_block < field.offset + field.size) {
      return std::string(field.name) + "[" + std::to_string(offset_in_block - field.offset) + "]";
    }
  }
  return "padding?";
}

// Describes the first differing byte (row, block, offset, field) and how many
// differ; "" if equal.
std::string DescribeMismatch(Type type, int64_t n_per_row, const std::vector<uint8_t>& ours,
                             const std::vector<uint8_t>& golden) {
  if (ours.size() != golden.size()) {
    return "size " + std::to_string(ours.size()) + " vs golden " + std::to_string(golden.size());
  }
  const TypeTraits& traits = TraitsOf(type);
  const size_t row_size = RowSize(type, n_per_row);
  const size_t block_bytes = static_cast<size_t>(traits.type_size);
  size_t differing = 0;
  size_t first = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (ours[i] != golden[i] && differing++ == 0) first = i;
  }
  if (differing == 0) return "";
  const size_t row = first / row_size;
  const size_t block = (first % row_size) / block_bytes;
  const size_t in_block = first % block_bytes;
  std::ostringstream out;
  out << differing << " bytes differ; first at byte offset " << first << ": row " << row
      << (traits.block_size == 1 ? ", element " : ", block ") << block << ", byte " << in_block
      << " of it (field " << FieldAt(type, in_block) << "): ours 0x" << std::hex << int{ours[first]}
      << ", ggml 0x" << int{golden[first]};
  return out.str();
}

// Compares two float arrays by bits (so NaN payloads and -0 count); "" if
// identical.
std::string DescribeFloatMismatch(const std::vector<float>& ours,
                                  const std::vector<float>& golden) {
  if (ours.size() != golden.size()) {
    return "size " + std::to_string(ours.size()) + " vs golden " + std::to_string(golden.size());
  }
  size_t differing = 0;
  size_t first = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (BitsOfF32(ours[i]) != BitsOfF32(golden[i]) && differing++ == 0) first = i;
  }
  if (differing == 0) return "";
  std::ostringstream out;
  out << differing << " floats differ; first at element " << first << " (row "
      << first / kGoldenCols << ", column " << first % kGoldenCols << "): ours " << ours[first]
      << " (0x" << std::hex << BitsOfF32(ours[first]) << "), ggml " << std::dec << golden[first]
      << " (0x" << std::hex << BitsOfF32(golden[first]) << ")";
  return out.str();
}

std::vector<uint8_t> QuantizeWithReference(Type type, const std::vector<float>& input,
                                           const float* imatrix) {
  std::vector<uint8_t> out(kGoldenRows * RowSize(type, kGoldenCols));
  const size_t written =
      reference::QuantizeRows(type, input.data(), out.data(), kGoldenRows, kGoldenCols, imatrix);
  REQUIRE(written == out.size());
  return out;
}

// Every golden input of one type: quantize with and without the imatrix,
// compare with ggml's bytes; dequantize ggml's bytes and compare with ggml's
// floats.
void CheckGoldens(Type type, bool uses_imatrix, bool has_specials) {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string dir = shared + "/golden/kquants/";
  const std::string type_name = TypeName(type);
  std::vector<std::string> inputs(std::begin(kInputs), std::end(kInputs));
  if (has_specials) inputs.push_back("specials");
  int compared = 0;
  for (const std::string& name : inputs) {
    const std::string base = dir + name;
    const std::vector<float> input = test::ReadF32File(base + ".f32");
    const std::vector<float> imatrix = test::ReadF32File(base + ".imatrix.f32");
    REQUIRE(input.size() == static_cast<size_t>(kGoldenRows * kGoldenCols));
    REQUIRE(imatrix.size() == static_cast<size_t>(kGoldenCols));

    const std::string plain_path = base + "." + type_name + ".bin";
    const std::vector<uint8_t> golden = test::ReadFileBytes(plain_path);
    {
      INFO("input " << name << ", type " << type_name << ", no imatrix (" << plain_path << ")");
      const std::string mismatch =
          DescribeMismatch(type, kGoldenCols, QuantizeWithReference(type, input, nullptr), golden);
      CHECK(mismatch == "");
      ++compared;
    }

    const std::string imatrix_path = base + "." + type_name + ".imatrix.bin";
    if (uses_imatrix) {
      INFO("input " << name << ", type " << type_name << ", with imatrix (" << imatrix_path << ")");
      REQUIRE(test::FileExists(imatrix_path));
      const std::string mismatch =
          DescribeMismatch(type, kGoldenCols, QuantizeWithReference(type, input, imatrix.data()),
                           test::ReadFileBytes(imatrix_path));
      CHECK(mismatch == "");
      ++compared;
    } else {
      // ggml ignores the importance matrix for this type, so the output must
      // not change.
      INFO("input " << name << ", type " << type_name
                    << ", imatrix passed to a type that ignores it (" << plain_path << ")");
      CHECK_FALSE(test::FileExists(imatrix_path));
      const std::string mismatch = DescribeMismatch(
          type, kGoldenCols, QuantizeWithReference(type, input, imatrix.data()), golden);
      CHECK(mismatch == "");
      ++compared;
    }

    {
      const std::string dequant_path = base + "." + type_name + ".dequant.f32";
      INFO("input " << name << ", type " << type_name << ", dequantizing " << plain_path
                    << " against " << dequant_path);
      std::vector<float> ours(input.size());
      reference::DequantizeRows(type, golden.data(), ours.data(), kGoldenRows, kGoldenCols);
      CHECK(DescribeFloatMismatch(ours, test::ReadF32File(dequant_path)) == "");
      ++compared;
    }
  }
  // 3 comparisons per input: plain bytes, imatrix bytes (or imatrix ignored),
  // dequantization.
  CHECK(compared == 3 * static_cast<int>(inputs.size()));
}

TEST_CASE("legacy reference: f16 equals ggml on every golden input") {
  CheckGoldens(Type::kF16, false, true);
}
TEST_CASE("legacy reference: bf16 equals ggml on every golden input") {
  CheckGoldens(Type::kBF16, false, true);
}
TEST_CASE("legacy reference: q4_0 equals ggml on every golden input") {
  CheckGoldens(Type::kQ4_0, true, false);
}
TEST_CASE("legacy reference: q4_1 equals ggml on every golden input") {
  CheckGoldens(Type::kQ4_1, true, false);
}
TEST_CASE("legacy reference: q5_0 equals ggml on every golden input") {
  CheckGoldens(Type::kQ5_0, true, false);
}
TEST_CASE("legacy reference: q5_1 equals ggml on every golden input") {
  CheckGoldens(Type::kQ5_1, true, false);
}
TEST_CASE("legacy reference: q8_0 equals ggml on every golden input") {
  CheckGoldens(Type::kQ8_0, false, false);
}

const Type kBlockTypes[] = {Type::kQ4_0, Type::kQ4_1, Type::kQ5_0, Type::kQ5_1, Type::kQ8_0};

TEST_CASE("legacy reference: rejects a row length that is not whole blocks") {
  std::vector<float> input(2 * 48, 0.5f);
  std::vector<uint8_t> out(4096);
  std::vector<float> back(2 * 48);
  for (Type type : kBlockTypes) {
    INFO("type " << TypeName(type));
    try {
      reference::QuantizeRows(type, input.data(), out.data(), 2, 48, nullptr);
      FAIL("QuantizeRows accepted 48 weights per row");
    } catch (const Error& e) {
      const std::string message = e.what();
      INFO("message: " << message);
      CHECK(message.find("48") != std::string::npos);
      CHECK(message.find(TypeName(type)) != std::string::npos);
      CHECK(message.find("32") != std::string::npos);
    }
    CHECK_THROWS_AS(reference::QuantizeRows(type, input.data(), out.data(), 2, 48, input.data()),
                    Error);
    CHECK_THROWS_AS(reference::DequantizeRows(type, out.data(), back.data(), 2, 48), Error);
  }
  // The codecs check on their own too, for callers that bypass QuantizeRows.
  BlockQ4_0 q4_0[2];
  CHECK_THROWS_AS(reference::Q4_0::QuantizeRow(input.data(), q4_0, 40, nullptr), Error);
  BlockQ5_1 q5_1[2];
  CHECK_THROWS_AS(reference::Q5_1::QuantizeRow(input.data(), q5_1, 33, input.data()), Error);
  BlockQ8_0 q8_0[2];
  CHECK_THROWS_AS(reference::Q8_0::DequantizeRow(q8_0, back.data(), 31), Error);
}

TEST_CASE(
    "legacy reference: zero rows write nothing, f16 and bf16 take any row "
    "length") {
  const Type all[] = {Type::kF16,  Type::kBF16, Type::kQ4_0, Type::kQ4_1,
                      Type::kQ5_0, Type::kQ5_1, Type::kQ8_0};
  std::vector<float> input(64, 1.0f);
  for (Type type : all) {
    INFO("type " << TypeName(type));
    std::vector<uint8_t> out(256, 0xAB);
    CHECK(reference::QuantizeRows(type, input.data(), out.data(), 0, 64, nullptr) == 0);
    CHECK(reference::QuantizeRows(type, nullptr, nullptr, 0, 64, nullptr) == 0);
    CHECK(reference::QuantizeRows(type, input.data(), out.data(), 3, 0, nullptr) == 0);
    for (uint8_t byte : out) REQUIRE(byte == 0xAB);
    CHECK_THROWS_AS(reference::QuantizeRows(type, nullptr, out.data(), 1, 64, nullptr), Error);
    CHECK_THROWS_AS(reference::QuantizeRows(type, input.data(), out.data(), -3, 0, nullptr), Error);
  }
  // 33 weights: not a block multiple, but f16 and bf16 have no blocks.
  std::vector<float> odd(33);
  for (size_t i = 0; i < odd.size(); ++i) odd[i] = 0.1f * static_cast<float>(i) - 1.0f;
  for (Type type : {Type::kF16, Type::kBF16}) {
    INFO("type " << TypeName(type));
    std::vector<uint16_t> bits(33);
    REQUIRE(reference::QuantizeRows(type, odd.data(), bits.data(), 1, 33, nullptr) == 66);
    for (size_t i = 0; i < odd.size(); ++i) {
      REQUIRE(bits[i] == (type == Type::kF16 ? F32ToF16(odd[i]) : F32ToBF16(odd[i])));
    }
  }
}

TEST_CASE(
    "legacy reference: a null imatrix selects ggml's plain quantizer per "
    "block") {
  // Rows are quantized independently without an imatrix, so quantizing the rows
  // one at a time gives the bytes of quantizing them together; with an imatrix
  // the row statistics (sigma2) differ per row, which the goldens cover.
  test::Rng rng(7);
  std::vector<float> input(3 * 256);
  for (float& v : input) v = rng.UniformSigned() * 0.05f;
  for (Type type : kBlockTypes) {
    INFO("type " << TypeName(type));
    const size_t row_size = RowSize(type, 256);
    std::vector<uint8_t> together(3 * row_size);
    reference::QuantizeRows(type, input.data(), together.data(), 3, 256, nullptr);
    for (int row = 0; row < 3; ++row) {
      std::vector<uint8_t> alone(row_size);
      reference::QuantizeRows(type, input.data() + row * 256, alone.data(), 1, 256, nullptr);
      CHECK(std::memcmp(alone.data(), together.data() + row * row_size, row_size) == 0);
    }
  }
}

TEST_CASE("legacy reference: pins down non-finite inputs as ggml's x86 build does") {
  // C leaves float-to-int casts of NaN and Inf undefined; ggml's x86 build
  // gives INT32_MIN, whose low byte is level 0. The SIMD kernels must reproduce
  // exactly this.
  std::vector<float> input(32, 1.0f);
  input[3] = std::numeric_limits<float>::infinity();
  input[5] = std::numeric_limits<float>::quiet_NaN();

  // q4_0 picks the Inf as the signed maximum (a NaN never compares greater): d
  // = -Inf, id = -0, so finite weights land on level 8 and Inf * -0 = NaN on
  // level 0.
  BlockQ4_0 q4;
  reference::Q4_0::QuantizeRow(input.data(), &q4, 32, nullptr);
  CHECK(q4.d == 0xFC00);
  CHECK((q4.qs[0] & 0x0F) == 8);
  CHECK((q4.qs[3] & 0x0F) == 0);
  CHECK((q4.qs[5] & 0x0F) == 0);

  // q8_0's MAX(amax, |x|) lets the NaN replace the running maximum, and
  // the 1.0s after it win, so d = 1/127: finite weights reach 127, Inf and NaN
  // both become 0.
  BlockQ8_0 q8;
  reference::Q8_0::QuantizeRow(input.data(), &q8, 32, nullptr);
  CHECK(q8.d == F32ToF16(1.0f / 127));
  CHECK(q8.qs[0] == 127);
  CHECK(q8.qs[3] == 0);
  CHECK(q8.qs[5] == 0);
}

TEST_CASE("legacy reference: float-to-int casts behave as x86's cvttss2si") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    float input;
    int32_t expected;
  };
  const Case cases[] = {
      {0.0f, 0},
      {-0.0f, 0},
      {0.999f, 0},
      {-0.999f, 0},
      {16.5f, 16},
      {-16.5f, -16},
      {2147483520.0f, 2147483520},  // largest float below 2^31
      {-2147483648.0f, INT32_MIN},  // exactly -2^31 is in range
      {2147483648.0f, INT32_MIN},   // 2^31 overflows
      {-2147483904.0f, INT32_MIN},  // next float below -2^31
      {1e20f, INT32_MIN},
      {inf, INT32_MIN},
      {-inf, INT32_MIN},
      {nan, INT32_MIN},
  };
  for (const Case& c : cases) {
    INFO("input " << c.input << " (0x" << std::hex << BitsOfF32(c.input) << ")");
    CHECK(reference::TruncateToInt32LikeX86(c.input) == c.expected);
#if defined(__x86_64__) || defined(__i386__)
    CHECK(reference::TruncateToInt32LikeX86(c.input) == _mm_cvtt_ss2si(_mm_set_ss(c.input)));
#endif
  }
  // The level helper narrows to int8_t before clamping: 200 wraps to -56, which
  // the MIN keeps, and the uint8_t store turns back into 200.
  CHECK(reference::TruncatedLevel(200.7f, 15) == 200);
  CHECK(reference::TruncatedLevel(15.9f, 15) == 15);
  CHECK(reference::TruncatedLevel(16.5f, 15) == 15);
  CHECK(reference::TruncatedLevel(nan, 31) == 0);
}

}  // namespace
}  // namespace hwyquant
