// Scalar q5_K codec mirroring ggml: quantize_row_q5_K_ref,
// quantize_row_q5_K_impl, dequantize_row_q5_K.
#ifndef HWYQUANT_REFERENCE_Q5_K_H_
#define HWYQUANT_REFERENCE_Q5_K_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

// 256 weights in 8 groups of 32; each group has a 6-bit scale and 6-bit min
// relative to the block's f16 d and dmin, and each weight a 5-bit level (4 bits
// in qs, the fifth in qh): x ~ d*scale*q - dmin*min.
struct Q5K {
  static constexpr Type kType = Type::kQ5_K;
  using Block = BlockQ5_K;

  // imatrix null: ggml's quantize_row_q5_K_ref; otherwise
  // quantize_row_q5_K_impl, exactly as quantize_q5_K chooses. n must be a
  // multiple of 256 (the caller checks).
  static void QuantizeRow(const float* x, Block* y, int64_t n, const float* imatrix) {
    if (imatrix == nullptr) {
      QuantizeRowRef(x, y, n);
    } else {
      QuantizeRowImpl(x, y, n, imatrix);
    }
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    const int64_t nb = n / kSuperBlock;
    for (int64_t i = 0; i < nb; i++) {
      const uint8_t* ql = x[i].qs;
      const uint8_t* qh = x[i].qh;
      const float d = F16ToF32(x[i].d);
      const float min = F16ToF32(x[i].dmin);
      int is = 0;
      uint8_t sc, m;
      uint8_t u1 = 1, u2 = 2;
      for (int j = 0; j < kSuperBlock; j += 64) {
        GetScaleMinK4(is + 0, x[i].scales, &sc, &m);
        const float d1 = d * sc;
        const float m1 = min * m;
        GetScaleMinK4(is + 1, x[i].scales, &sc, &m);
        const float d2 = d * sc;
        const float m2 = min * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = static_cast<uint8_t>(u1 << 2);
        u2 = static_cast<uint8_t>(u2 << 2);
      }
    }
  }

 private:
  static void QuantizeRowRef(const float* x, Block* y, int64_t n) {
    const int64_t nb = n / kSuperBlock;
    uint8_t L[kSuperBlock];
    float mins[kSuperBlock / 32];
    float scales[kSuperBlock / 32];
    float weights[32];
    uint8_t Laux[32];

    for (int64_t i = 0; i < nb; i++) {
      float max_scale = 0;  // the min is subtracted, so scales are never negative
      float max_min = 0;
      for (int j = 0; j < kSuperBlock / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = MakeQkx2Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, false);
        const float scale = scales[j];
        if (scale > max_scale) max_scale = scale;
        const float min = mins[j];
        if (min > max_min) max_min = min;
      }

      const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      for (int j = 0; j < kSuperBlock / 32; ++j) {
        // ggml narrows to uint8_t before clamping to 63; keep that order.
        uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        SetScaleMinK4(j, ls, lm, y[i].scales);
      }
      y[i].d = F32ToF16(max_scale / 63.f);
      y[i].dmin = F32ToF16(max_min / 63.f);
      RequantizeAndPack(x, y[i], L);
      x += kSuperBlock;
    }
  }

  static void QuantizeRowImpl(const float* x, Block* y, int64_t n_per_row,
                              const float* quant_weights) {
    const int64_t nb = n_per_row / kSuperBlock;
    uint8_t L[kSuperBlock];
    uint8_t Laux[32];
    uint8_t Ls[kSuperBlock / 32];
    uint8_t Lm[kSuperBlock / 32];
    float mins[kSuperBlock / 32];
    float scales[kSuperBlock / 32];
    float sw[kSuperBlock / 32];
    float weights[32];

    for (int64_t i = 0; i < nb; i++) {
      float sum_x2 = 0;
      for (int l = 0; l < kSuperBlock; ++l) sum_x2 += x[l] * x[l];
      const float sigma2 = 2 * sum_x2 / kSuperBlock;
      const float av_x = std::sqrt(sigma2);

      for (int j = 0; j < kSuperBlock / 32; ++j) {
        if (quant_weights) {
          const float* qw = quant_weights + kSuperBlock * i + 32 * j;
          for (int l = 0; l < 32; ++l) {
            weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
          }
        } else {
          for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        }
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = MakeQkx3Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                                   0.05f, 36, false);
      }

      const float d_block = MakeQpQuants(kSuperBlock / 32, 63, scales, Ls, sw);
      const float m_block = MakeQpQuants(kSuperBlock / 32, 63, mins, Lm, sw);
      for (int j = 0; j < kSuperBlock / 32; ++j) {
        const uint8_t ls = std::min<uint8_t>(63, Ls[j]);
        const uint8_t lm = std::min<uint8_t>(63, Lm[j]);
        SetScaleMinK4(j, ls, lm, y[i].scales);
      }
      y[i].d = F32ToF16(d_block);
      y[i].dmin = F32ToF16(m_block);
      RequantizeAndPack(x, y[i], L);
      x += kSuperBlock;
    }
  }

  // Both paths end alike: redo each group's levels against the rounded scale
  // and min (groups whose scale rounded to zero keep their first levels), then
  // split each level into a low nibble (groups 2k and 2k+1 share 32 bytes of
  // qs) and a fifth bit (bits 2k and 2k+1 of qh).
  static void RequantizeAndPack(const float* x, Block& block, uint8_t* L) {
    uint8_t sc, m;
    for (int j = 0; j < kSuperBlock / 32; ++j) {
      GetScaleMinK4(j, block.scales, &sc, &m);
      const float d = F16ToF32(block.d) * sc;
      if (d == 0) continue;
      const float dm = F16ToF32(block.dmin) * m;
      for (int ii = 0; ii < 32; ++ii) {
        int l = NearestInt((x[32 * j + ii] + dm) / d);
        l = ClampInt(l, 0, 31);
        L[32 * j + ii] = static_cast<uint8_t>(l);
      }
    }

    uint8_t* qh = block.qh;
    uint8_t* ql = block.qs;
    std::memset(qh, 0, sizeof(block.qh));
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kSuperBlock; n += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
      ql += 32;
    }
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q5_K_H_
