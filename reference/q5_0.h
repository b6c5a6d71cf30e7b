// Scalar q5_0 codec: ggml's symmetric 5-bit blocks (32 weights, f16 scale,
// fifth bits apart).
#ifndef HWYQUANT_REFERENCE_Q5_0_H_
#define HWYQUANT_REFERENCE_Q5_0_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

struct Q5_0 {
  static constexpr Type kType = Type::kQ5_0;
  using Block = BlockQ5_0;
  static constexpr int kBlock = 32;

  // Without imatrix: quantize_row_q5_0_ref. With it: quantize_row_q5_0_impl
  // (weighted make_qx_quants search). Throws Error when n is not a whole number
  // of blocks.
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
      const float d = MakeQxQuants(kBlock, 16, xb, levels, 1, weight);
      y[ib].d = F32ToF16(d);
      uint8_t level_bytes[kBlock];
      for (int j = 0; j < kBlock; ++j) level_bytes[j] = static_cast<uint8_t>(levels[j]);
      Pack(level_bytes, &y[ib]);
    }
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    const int64_t nb = static_cast<int64_t>(RowSize(kType, n) / sizeof(Block));
    for (int64_t ib = 0; ib < nb; ++ib) {
      const float d = F16ToF32(x[ib].d);
      uint32_t qh;
      std::memcpy(&qh, x[ib].qh, sizeof(qh));
      float* yb = y + ib * kBlock;
      for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = static_cast<uint8_t>(((qh >> j) << 4) & 0x10);
        const uint8_t xh_1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
        const int32_t x0 = ((x[ib].qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((x[ib].qs[j] >> 4) | xh_1) - 16;
        yb[j] = static_cast<float>(x0) * d;
        yb[j + 16] = static_cast<float>(x1) * d;
      }
    }
  }

  // Stores 32 five-bit levels: low nibbles pair weight j with j+16, bit 4 of
  // weight j goes to bit j of the little-endian qh word.
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
  // The scale maps the signed largest-magnitude value to -16; levels are
  // truncated after adding 16.5.
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
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    uint8_t levels[kBlock];
    for (int j = 0; j < kBlock; ++j) {
      const float x0 = xb[j] * id;
      levels[j] = TruncatedLevel(x0 + 16.5f, 31);
    }
    Pack(levels, y);
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q5_0_H_
