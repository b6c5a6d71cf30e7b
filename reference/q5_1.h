// Scalar q5_1 codec: ggml's asymmetric 5-bit blocks (32 weights, f16 scale and
// minimum).
#ifndef HWYQUANT_REFERENCE_Q5_1_H_
#define HWYQUANT_REFERENCE_Q5_1_H_

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

struct Q5_1 {
  static constexpr Type kType = Type::kQ5_1;
  using Block = BlockQ5_1;
  static constexpr int kBlock = 32;

  // Without imatrix: quantize_row_q5_1_ref (min/max range). With it:
  // quantize_row_q5_1_impl, a weighted scale-and-offset search
  // (make_qkx3_quants). Throws Error when n is not a whole number of blocks.
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
      uint8_t levels[kBlock];
      uint8_t scratch[kBlock];
      float min;
      const float d =
          MakeQkx3Quants(kBlock, 31, xb, weight, levels, &min, scratch, -0.9f, 0.05f, 36, false);
      y[ib].d = F32ToF16(d);
      y[ib].m = F32ToF16(-min);
      Pack(levels, &y[ib]);
    }
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float d = F16ToF32(x[ib].d);
      const float m = F16ToF32(x[ib].m);
      uint32_t qh;
      std::memcpy(&qh, x[ib].qh, sizeof(qh));
      float* yb = y + ib * kBlock;
      for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
        const uint8_t xh_1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
        const int x0 = (x[ib].qs[j] & 0x0F) | xh_0;
        const int x1 = (x[ib].qs[j] >> 4) | xh_1;
        yb[j] = static_cast<float>(x0) * d + m;
        yb[j + 16] = static_cast<float>(x1) * d + m;
      }
    }
  }

  // Same layout as q5_0: low nibbles pair weight j with j+16, bit 4 of weight j
  // is bit j of qh.
  static void Pack(const uint8_t* levels, Block* y) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const uint8_t xi0 = levels[j];
      const uint8_t xi1 = levels[j + 16];
      y->qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    std::memcpy(y->qh, &qh, sizeof(qh));
  }

 private:
  // Levels are truncated after adding 0.5 and, unlike q4_1, not clamped: ggml
  // narrows straight to uint8_t.
  static void QuantizeBlock(const float* xb, Block* y) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kBlock; ++j) {
      const float v = xb[j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    y->m = F32ToF16(min);
    uint8_t levels[kBlock];
    for (int j = 0; j < kBlock; ++j) {
      const float x0 = (xb[j] - min) * id;
      levels[j] = static_cast<uint8_t>(TruncateToInt32LikeX86(x0 + 0.5f));
    }
    Pack(levels, y);
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q5_1_H_
