// Exhaustive checks of the exact f32 <-> f16 / bf16 conversions against independent oracles.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "hwyquant/half.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

bool IsNanF16(HalfBits h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }

// The oracle: the CPU's own half conversions (x86 F16C, or Arm's fcvt through __fp16), which
// round to nearest even and keep NaN payloads.
#if defined(__x86_64__) || defined(__i386__)
bool HaveHardwareHalf() { return __builtin_cpu_supports("f16c"); }
__attribute__((target("f16c"))) float HardwareF16ToF32(HalfBits h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) HalfBits HardwareF32ToF16(float f) {
  return static_cast<HalfBits>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
#elif defined(__aarch64__)
bool HaveHardwareHalf() { return true; }
float HardwareF16ToF32(HalfBits h) {
  __fp16 half;
  std::memcpy(&half, &h, sizeof(h));
  return static_cast<float>(half);
}
HalfBits HardwareF32ToF16(float f) {
  const __fp16 half = static_cast<__fp16>(f);
  HalfBits h;
  std::memcpy(&h, &half, sizeof(h));
  return h;
}
#else
bool HaveHardwareHalf() { return false; }
float HardwareF16ToF32(HalfBits) { return 0.0f; }
HalfBits HardwareF32ToF16(float) { return 0; }
#endif

TEST_CASE("F16ToF32 matches the CPU's conversion on all 65536 patterns") {
  if (!HaveHardwareHalf()) {
    FAIL("this test needs hardware half conversions as the oracle (x86 F16C or aarch64)");
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ours = F16ToF32(static_cast<HalfBits>(h));
    const float hardware = HardwareF16ToF32(static_cast<HalfBits>(h));
    // Both quiet a signalling NaN and keep its payload, so the bits agree everywhere.
    if (BitsOfF32(ours) != BitsOfF32(hardware)) {
      FAIL("f16 0x" << std::hex << h << " -> 0x" << BitsOfF32(ours) << ", CPU gives 0x"
                    << BitsOfF32(hardware));
    }
  }
}

TEST_CASE("F32ToF16 round-trips every non-NaN half and canonicalises NaN") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const HalfBits half = static_cast<HalfBits>(h);
    const HalfBits back = F32ToF16(F16ToF32(half));
    const HalfBits expected = IsNanF16(half) ? ((half & 0x8000) | 0x7E00) : half;
    if (back != expected) {
      FAIL("f16 0x" << std::hex << h << " round-trips to 0x" << back);
    }
  }
}

TEST_CASE("F32ToF16 matches the CPU's round-to-nearest-even on all 2^32 floats") {
  if (!HaveHardwareHalf()) {
    FAIL("this test needs hardware half conversions as the oracle (x86 F16C or aarch64)");
  }
  uint64_t mismatches = 0;
  uint32_t first_bad = 0;
  for (uint64_t i = 0; i < (1ull << 32); ++i) {
    const float f = F32FromBits(static_cast<uint32_t>(i));
    HalfBits expected = HardwareF32ToF16(f);
    // ggml maps every NaN to the canonical quiet NaN (sign kept); the CPU keeps payload bits.
    if (std::isnan(f)) expected = (expected & 0x8000) | 0x7E00;
    if (F32ToF16(f) != expected && mismatches++ == 0) first_bad = static_cast<uint32_t>(i);
  }
  INFO("first mismatch at f32 bits 0x" << std::hex << first_bad);
  CHECK(mismatches == 0);
}

TEST_CASE("BF16 conversions: exact widening, nearest-even narrowing, quiet NaN") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float wide = BF16ToF32(static_cast<BF16Bits>(b));
    REQUIRE(BitsOfF32(wide) == (b << 16));
  }
  // Every high half with low halves that cover exact values, ties and near-ties.
  const uint32_t lows[] = {0x0000, 0x0001, 0x3FFF, 0x7FFF, 0x8000,
                           0x8001, 0xBFFF, 0xC000, 0xFFFE, 0xFFFF};
  for (uint32_t high = 0; high < 65536; ++high) {
    for (uint32_t low : lows) {
      const uint32_t bits = (high << 16) | low;
      const float f = F32FromBits(bits);
      const BF16Bits ours = F32ToBF16(f);
      if (std::isnan(f)) {
        REQUIRE(ours == static_cast<BF16Bits>((bits >> 16) | 0x40));
        continue;
      }
      // Oracle in double: the nearer of the two neighbouring bf16 values, ties to even mantissa.
      const uint32_t down = bits >> 16;
      const uint32_t up = down + 1;
      const double x = f;
      const double d_down = std::fabs(x - static_cast<double>(BF16ToF32(down)));
      // Past the largest finite bf16 the next step up is 2^128, which rounds to Inf.
      const double up_value = (up & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), x)
                                                      : static_cast<double>(BF16ToF32(up));
      const double d_up = std::fabs(x - up_value);
      uint32_t expected;
      if (low == 0) {
        expected = down;
      } else if (d_down < d_up) {
        expected = down;
      } else if (d_up < d_down) {
        expected = up;
      } else {
        expected = (down & 1) ? up : down;
      }
      if (ours != expected) {
        FAIL("f32 0x" << std::hex << bits << " -> bf16 0x" << ours << ", expected 0x" << expected);
      }
    }
  }
}

TEST_CASE("specials golden input: f16 and bf16 bytes equal ggml's") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string base = shared + "/golden/kquants/specials";
  const std::vector<float> input = test::ReadF32File(base + ".f32");
  const std::vector<uint8_t> f16 = test::ReadFileBytes(base + ".f16.bin");
  const std::vector<uint8_t> bf16 = test::ReadFileBytes(base + ".bf16.bin");
  const std::vector<float> f16_back = test::ReadF32File(base + ".f16.dequant.f32");
  const std::vector<float> bf16_back = test::ReadF32File(base + ".bf16.dequant.f32");
  REQUIRE(f16.size() == input.size() * 2);
  REQUIRE(bf16.size() == input.size() * 2);
  for (size_t i = 0; i < input.size(); ++i) {
    HalfBits golden_f16, golden_bf16;
    std::memcpy(&golden_f16, &f16[2 * i], 2);
    std::memcpy(&golden_bf16, &bf16[2 * i], 2);
    INFO("element " << i << " input bits 0x" << std::hex << BitsOfF32(input[i]));
    REQUIRE(F32ToF16(input[i]) == golden_f16);
    REQUIRE(F32ToBF16(input[i]) == golden_bf16);
    REQUIRE(BitsOfF32(F16ToF32(golden_f16)) == BitsOfF32(f16_back[i]));
    REQUIRE(BitsOfF32(BF16ToF32(golden_bf16)) == BitsOfF32(bf16_back[i]));
  }
}

}  // namespace
}  // namespace hwyquant
