// Scalar q8_0 codec: ggml's symmetric 8-bit blocks (32 weights, one f16 scale).
#ifndef HWYQUANT_REFERENCE_Q8_0_H_
#define HWYQUANT_REFERENCE_Q8_0_H_

#include <cmath>
#include <cstdint>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

struct Q8_0 {
  static constexpr Type kType = Type::kQ8_0;
  using Block = BlockQ8_0;
  static constexpr int kBlock = 32;

  // quantize_row_q8_0_ref; quantize_q8_0 ignores the importance matrix, so does
  // this. Throws Error when n is not a whole number of blocks.
  static void QuantizeRow(const float* x, Block* y, int64_t n,
                          const float* /*imatrix: ignored, as in ggml*/) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float* xb = x + ib * kBlock;
      float amax = 0.0f;
      for (int j = 0; j < kBlock; ++j) amax = MaxLikeGgml(amax, std::fabs(xb[j]));
      const float d = amax / ((1 << 7) - 1);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[ib].d = F32ToF16(d);
      for (int j = 0; j < kBlock; ++j) {
        // roundf: halves go away from zero, unlike nearest_int's ties to even.
        const float rounded = std::round(xb[j] * id);
        y[ib].qs[j] = static_cast<int8_t>(TruncateToInt32LikeX86(rounded));
      }
    }
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float d = F16ToF32(x[ib].d);
      for (int j = 0; j < kBlock; ++j) {
        y[ib * kBlock + j] = static_cast<float>(x[ib].qs[j]) * d;
      }
    }
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q8_0_H_
