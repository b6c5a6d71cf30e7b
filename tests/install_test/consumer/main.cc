// Quantizes one q8_0 row through the installed headers (static dispatch) and checks the bytes
// against q8_0's definition computed here.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "hwyquant/static-inl.h"

int main() {
  float x[64];
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 29 - 11) * 0.37f + 0.01f * i;
  hwyquant::BlockQ8_0 blocks[2];
  const size_t written = hwyquant::kernels::HWY_STATIC_DISPATCH(QuantizeRows)(
      hwyquant::Type::kQ8_0, x, blocks, 1, 64, nullptr);
  if (written != sizeof(blocks)) {
    std::printf("FAIL: wrote %zu bytes, expected %zu\n", written, sizeof(blocks));
    return 1;
  }
  int errors = 0;
  for (int b = 0; b < 2; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (blocks[b].d != hwyquant::F32ToF16(d)) {
      std::printf("FAIL: block %d scale 0x%04x, expected 0x%04x\n", b, blocks[b].d,
                  hwyquant::F32ToF16(d));
      ++errors;
    }
    for (int j = 0; j < 32; ++j) {
      const int expected = static_cast<int>(std::round(x[b * 32 + j] * id));
      if (blocks[b].qs[j] != expected) {
        std::printf("FAIL: block %d weight %d level %d, expected %d\n", b, j, blocks[b].qs[j],
                    expected);
        ++errors;
      }
    }
  }
  try {
    hwyquant::kernels::HWY_STATIC_DISPATCH(QuantizeRows)(hwyquant::Type::kQ8_0, x, blocks, 1, 48,
                                                         nullptr);
    std::printf("FAIL: a 48-weight q8_0 row was accepted\n");
    ++errors;
  } catch (const hwyquant::Error& e) {
    std::printf("rejected as expected: %s\n", e.what());
  }
  if (errors == 0) std::printf("OK: q8_0 via %s\n", hwy::TargetName(HWY_STATIC_TARGET));
  return errors == 0 ? 0 : 1;
}
