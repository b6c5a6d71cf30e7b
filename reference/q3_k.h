// Scalar q3_K codec mirroring ggml: quantize_row_q3_K_ref,
// quantize_row_q3_K_impl, dequantize_row_q3_K.
#ifndef HWYQUANT_REFERENCE_Q3_K_H_
#define HWYQUANT_REFERENCE_Q3_K_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

// 256 weights in 16 groups of 16; each group has a signed 6-bit scale relative
// to the block's f16 d, and each weight a signed 3-bit level (2 bits in qs, the
// third in hmask): x ~ d*scale*q.
struct Q3K {
  static constexpr Type kType = Type::kQ3_K;
  using Block = BlockQ3_K;

  // imatrix null: ggml's quantize_row_q3_K_ref; otherwise
  // quantize_row_q3_K_impl, exactly as quantize_q3_K chooses. n must be a
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
      const float d_all = F16ToF32(x[i].d);
      const uint8_t* q = x[i].qs;
      const uint8_t* hm = x[i].hmask;
      uint8_t m = 1;
      int is = 0;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
          // Two groups of 16 share each run of 32 bytes; shift picks the
          // 2-bit plane and m the hmask bit. ggml unpacks all 16 scales at
          // once with word masks; GetScaleK3 yields the same values.
          for (int half = 0; half < 2; ++half) {
            const float dl = d_all * GetScaleK3(is++, x[i].scales);
            for (int l = 0; l < 16; ++l) {
              const int low = static_cast<int8_t>((q[l + 16 * half] >> shift) & 3);
              const int high_clear = (hm[l + 16 * half] & m) ? 0 : 4;
              *y++ = dl * (low - high_clear);
            }
          }
          shift += 2;
          m = static_cast<uint8_t>(m << 1);
        }
        q += 32;
      }
    }
  }

 private:
  static void QuantizeRowRef(const float* x, Block* y, int64_t n) {
    const int64_t nb = n / kSuperBlock;
    int8_t L[kSuperBlock];
    float scales[kSuperBlock / 16];

    for (int64_t i = 0; i < nb; i++) {
      float max_scale = 0;
      float amax = 0;
      for (int j = 0; j < kSuperBlock / 16; ++j) {
        scales[j] = MakeQ3Quants(16, 4, x + 16 * j, L + 16 * j, true);
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
          amax = scale;
          max_scale = scales[j];
        }
      }

      std::memset(y[i].scales, 0, sizeof(y[i].scales));
      if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < kSuperBlock / 16; ++j) {
          // ggml narrows to int8_t before clamping; keep that order.
          int8_t l = static_cast<int8_t>(NearestInt(iscale * scales[j]));
          l = static_cast<int8_t>(ClampInt(l, -32, 31) + 32);
          SetScaleK3(j, l, y[i].scales);
        }
        y[i].d = F32ToF16(1 / iscale);
      } else {
        y[i].d = F32ToF16(0.f);
      }
      RequantizeAndPack(x, y[i], L);
      x += kSuperBlock;
    }
  }

  static void QuantizeRowImpl(const float* x, Block* y, int64_t n_per_row,
                              const float* quant_weights) {
    const int64_t nb = n_per_row / kSuperBlock;
    int8_t L[kSuperBlock];
    float scales[kSuperBlock / 16];
    float weight[16];
    float sw[kSuperBlock / 16];
    int8_t Ls[kSuperBlock / 16];

    for (int64_t i = 0; i < nb; i++) {
      float sumx2 = 0;
      for (int j = 0; j < kSuperBlock; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = 2 * sumx2 / kSuperBlock;

      for (int j = 0; j < kSuperBlock / 16; ++j) {
        if (quant_weights) {
          const float* qw = quant_weights + kSuperBlock * i + 16 * j;
          for (int l = 0; l < 16; ++l) {
            weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
          }
        } else {
          for (int l = 0; l < 16; ++l) weight[l] = x[16 * j + l] * x[16 * j + l];
        }
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = MakeQxQuants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
      }

      std::memset(y[i].scales, 0, sizeof(y[i].scales));
      const float d_block = MakeQxQuants(kSuperBlock / 16, 32, scales, Ls, 1, sw);
      for (int j = 0; j < kSuperBlock / 16; ++j) SetScaleK3(j, Ls[j], y[i].scales);
      y[i].d = F32ToF16(d_block);
      RequantizeAndPack(x, y[i], L);
      x += kSuperBlock;
    }
  }

  // Both paths end alike: redo each group's levels against the rounded scale
  // (groups whose scale rounded to zero keep their first levels), move the
  // third bit of every level into hmask (bit b of byte m holds weight 32*b +
  // m), and pack the low two bits four per byte.
  static void RequantizeAndPack(const float* x, Block& block, int8_t* L) {
    for (int j = 0; j < kSuperBlock / 16; ++j) {
      const int8_t sc = GetScaleK3(j, block.scales);
      const float d = F16ToF32(block.d) * sc;
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = NearestInt(x[16 * j + ii] / d);
        l = ClampInt(l, -4, 3);
        L[16 * j + ii] = static_cast<int8_t>(l + 4);
      }
    }

    std::memset(block.hmask, 0, sizeof(block.hmask));
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < kSuperBlock; ++j) {
      if (L[j] > 3) {
        block.hmask[m] |= hm;
        L[j] = static_cast<int8_t>(L[j] - 4);
      }
      if (++m == kSuperBlock / 8) {
        m = 0;
        hm = static_cast<uint8_t>(hm << 1);
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

#endif  // HWYQUANT_REFERENCE_Q3_K_H_
