// Scalar q4_0 codec: ggml's symmetric 4-bit blocks (32 weights, one f16 scale),
// both quantizers.
#ifndef HWYQUANT_REFERENCE_Q4_0_H_
#define HWYQUANT_REFERENCE_Q4_0_H_

#include <cmath>
#include <cstdint>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

struct Q4_0 {
  static constexpr Type kType = Type::kQ4_0;
  using Block = BlockQ4_0;
  static constexpr int kBlock = 32;

  // Without imatrix: quantize_row_q4_0_ref. With it: quantize_row_q4_0_impl,
  // which weights each value by imatrix * sqrt(row variance + x^2) and searches
  // scales with make_qx_quants. Throws Error when n is not a whole number of
  // blocks.
  static void QuantizeRow(const float* x, Block* y, int64_t n, const float* imatrix) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    if (imatrix == nullptr) {
      for (int64_t ib = 0; ib < nb; ++ib) QuantizeBlock(x + ib * kBlock, &y[ib]);
      return;
    }
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    const float sigma2 = sum_x2 / static_cast<float>(n);
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float* xb = x + ib * kBlock;
      const float* qw = imatrix + ib * kBlock;
      float weight[kBlock];
      for (int j = 0; j < kBlock; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
      int8_t levels[kBlock];
      const float d = MakeQxQuants(kBlock, 8, xb, levels, 1, weight);
      y[ib].d = F32ToF16(d);
      for (int j = 0; j < 16; ++j) {
        y[ib].qs[j] = static_cast<uint8_t>(levels[j] | (levels[j + 16] << 4));
      }
    }
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float d = F16ToF32(x[ib].d);
      float* yb = y + ib * kBlock;
      for (int j = 0; j < 16; ++j) {
        const int x0 = (x[ib].qs[j] & 0x0F) - 8;
        const int x1 = (x[ib].qs[j] >> 4) - 8;
        yb[j] = static_cast<float>(x0) * d;
        yb[j + 16] = static_cast<float>(x1) * d;
      }
    }
  }

 private:
  // The scale maps the signed largest-magnitude value to -8; levels are
  // truncated after adding 8.5 (not nearest_int), which is what makes q4_0
  // round half up.
  static void QuantizeBlock(const float* xb, Block* y) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kBlock; ++j) {
      const float v = xb[j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = xb[j] * id;
      const float x1 = xb[j + 16] * id;
      const uint8_t xi0 = TruncatedLevel(x0 + 8.5f, 15);
      const uint8_t xi1 = TruncatedLevel(x1 + 8.5f, 15);
      y->qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q4_0_H_
