// Scalar q2_K codec mirroring ggml: quantize_row_q2_K_ref,
// quantize_row_q2_K_impl, dequantize_row_q2_K.
#ifndef HWYQUANT_REFERENCE_Q2_K_H_
#define HWYQUANT_REFERENCE_Q2_K_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

// 256 weights in 16 groups of 16; each group has a 4-bit scale and 4-bit min
// relative to the block's f16 d and dmin, and each weight a 2-bit level: x ~
// d*scale*q - dmin*min.
struct Q2K {
  static constexpr Type kType = Type::kQ2_K;
  using Block = BlockQ2_K;

  // imatrix null: ggml's quantize_row_q2_K_ref; otherwise
  // quantize_row_q2_K_impl, exactly as quantize_q2_K chooses. n must be a
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
      const float d = F16ToF32(x[i].d);
      const float min = F16ToF32(x[i].dmin);
      const uint8_t* q = x[i].qs;
      int is = 0;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
          // Two groups of 16 share each run of 32 bytes; shift picks the 2-bit
          // plane.
          for (int half = 0; half < 2; ++half) {
            const uint8_t sc = x[i].scales[is++];
            const float dl = d * (sc & 0xF);
            const float ml = min * (sc >> 4);
            for (int l = 0; l < 16; ++l) {
              *y++ = dl * static_cast<int8_t>((q[l + 16 * half] >> shift) & 3) - ml;
            }
          }
          shift += 2;
        }
        q += 32;
      }
    }
  }

 private:
  static constexpr float kQ4Scale = 15.f;

  static void QuantizeRowRef(const float* x, Block* y, int64_t n) {
    const int64_t nb = n / kSuperBlock;
    uint8_t L[kSuperBlock];
    uint8_t Laux[16];
    float weights[16];
    float mins[kSuperBlock / 16];
    float scales[kSuperBlock / 16];

    for (int64_t i = 0; i < nb; i++) {
      float max_scale = 0;  // the min is subtracted, so scales are never negative
      float max_min = 0;
      for (int j = 0; j < kSuperBlock / 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = MakeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, true);
        const float scale = scales[j];
        if (scale > max_scale) max_scale = scale;
        const float min = mins[j];
        if (min > max_min) max_min = min;
      }

      if (max_scale > 0) {
        const float iscale = kQ4Scale / max_scale;
        for (int j = 0; j < kSuperBlock / 16; ++j) {
          const int l = NearestInt(iscale * scales[j]);
          y[i].scales[j] = static_cast<uint8_t>(l);
        }
        y[i].d = F32ToF16(max_scale / kQ4Scale);
      } else {
        for (int j = 0; j < kSuperBlock / 16; ++j) y[i].scales[j] = 0;
        y[i].d = F32ToF16(0.f);
      }
      if (max_min > 0) {
        const float iscale = kQ4Scale / max_min;
        for (int j = 0; j < kSuperBlock / 16; ++j) {
          const int l = NearestInt(iscale * mins[j]);
          // Shift as unsigned: l is negative for NaN scales, and the bits are what ggml stores.
          y[i].scales[j] |= static_cast<uint8_t>(static_cast<uint32_t>(l) << 4);
        }
        y[i].dmin = F32ToF16(max_min / kQ4Scale);
      } else {
        y[i].dmin = F32ToF16(0.f);
      }
      RequantizeAndPack(x, y[i], F16ToF32(y[i].d), F16ToF32(y[i].dmin), L);
      x += kSuperBlock;
    }
  }

  static void QuantizeRowImpl(const float* x, Block* y, int64_t n_per_row,
                              const float* quant_weights) {
    const int64_t nb = n_per_row / kSuperBlock;
    uint8_t L[kSuperBlock];
    uint8_t Laux[16];
    float mins[kSuperBlock / 16];
    float scales[kSuperBlock / 16];
    float sw[kSuperBlock / 16];
    float weight[16];
    uint8_t Ls[kSuperBlock / 16], Lm[kSuperBlock / 16];

    for (int64_t i = 0; i < nb; i++) {
      std::memset(sw, 0, sizeof(sw));
      float sumx2 = 0;
      for (int j = 0; j < kSuperBlock; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = sumx2 / kSuperBlock;
      for (int j = 0; j < kSuperBlock / 16; ++j) {
        const float* qw = quant_weights + kSuperBlock * i + 16 * j;
        for (int l = 0; l < 16; ++l) {
          weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        }
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        scales[j] = MakeQkx3Quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f,
                                   0.05f, 36, false);
      }

      float dm = MakeQpQuants(kSuperBlock / 16, 15, scales, Ls, sw);
      float mm = MakeQpQuants(kSuperBlock / 16, 15, mins, Lm, sw);
      y[i].d = F32ToF16(dm);
      y[i].dmin = F32ToF16(mm);
      dm = F16ToF32(y[i].d);
      mm = F16ToF32(y[i].dmin);
      for (int j = 0; j < kSuperBlock / 16; ++j) {
        y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
      }
      RequantizeAndPack(x, y[i], dm, mm, L);
      x += kSuperBlock;
    }
  }

  // Both paths end alike: redo each group's levels against the rounded scales
  // (groups whose scale rounded to zero keep their first levels), then pack
  // four 2-bit planes per byte.
  static void RequantizeAndPack(const float* x, Block& block, float dm, float mm, uint8_t* L) {
    for (int j = 0; j < kSuperBlock / 16; ++j) {
      const float d = dm * (block.scales[j] & 0xF);
      if (d == 0) continue;
      const float m = mm * (block.scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        int l = NearestInt((x[16 * j + ii] + m) / d);
        l = ClampInt(l, 0, 3);
        L[16 * j + ii] = static_cast<uint8_t>(l);
      }
    }
    for (int j = 0; j < kSuperBlock; j += 128) {
      for (int l = 0; l < 32; ++l) {
        block.qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) |
                                                   (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
      }
    }
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q2_K_H_
