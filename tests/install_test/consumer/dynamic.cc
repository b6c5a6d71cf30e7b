// Defines hwyquant.h's API from the installed dispatch-impl.h (dynamic dispatch) and checks a
// q4_0 row quantized through it against q4_0's definition computed here.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hwyquant/dispatch-impl.h"
#include "hwyquant/hwyquant.h"

int main() {
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = std::sin(0.7f * static_cast<float>(i)) * 3.0f;
  hwyquant::BlockQ4_0 block;
  hwyquant::Quantize(hwyquant::Type::kQ4_0, x, &block, 1, 32);
  // q4_0: the signed value of largest magnitude maps to -8; levels are trunc(x / d + 8.5), <= 15.
  float amax = 0.0f, max = 0.0f;
  for (float v : x) {
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  const float d = max / -8;
  const float id = 1.0f / d;
  int errors = block.d == hwyquant::F32ToF16(d) ? 0 : 1;
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
    const int hi = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
    if (block.qs[j] != (lo | (hi << 4))) ++errors;
  }
  float back[32];
  hwyquant::Dequantize(hwyquant::Type::kQ4_0, &block, back, 1, 32);
  for (int j = 0; j < 16; ++j) {
    if (back[j] != static_cast<float>((block.qs[j] & 15) - 8) * hwyquant::F16ToF32(block.d)) {
      ++errors;
    }
  }
  if (errors != 0) {
    std::printf("FAIL: %d mismatches\n", errors);
    return 1;
  }
  std::printf("OK: q4_0 via dynamic dispatch on %s\n", hwyquant::ActiveTarget());
  return 0;
}
