// Scalar q6_K codec mirroring ggml: quantize_row_q6_K_ref,
// quantize_row_q6_K_impl, dequantize_row_q6_K.
#ifndef HWYQUANT_REFERENCE_Q6_K_H_
#define HWYQUANT_REFERENCE_Q6_K_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "reference/quant_common.h"

namespace hwyquant::reference {

// 256 weights in 16 groups of 16; each group has a signed 8-bit scale relative
// to the block's f16 d, and each weight a signed 6-bit level (4 bits in ql, 2
// in qh): x ~ d*scale*q.
struct Q6K {
  static constexpr Type kType = Type::kQ6_K;
  using Block = BlockQ6_K;

  // imatrix null: ggml's quantize_row_q6_K_ref; otherwise
  // quantize_row_q6_K_impl, exactly as quantize_q6_K chooses. n must be a
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
      const uint8_t* ql = x[i].ql;
      const uint8_t* qh = x[i].qh;
      const int8_t* sc = x[i].scales;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        for (int l = 0; l < 32; ++l) {
          const int is = l / 16;
          // Each level is 6 bits (0..63) biased by 32.
          const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[l + 0] = d * sc[is + 0] * q1;
          y[l + 32] = d * sc[is + 2] * q2;
          y[l + 64] = d * sc[is + 4] * q3;
          y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
      }
    }
  }

 private:
  static void QuantizeRowRef(const float* x, Block* y, int64_t n) {
    QuantizeRowImpl(x, y, n, nullptr);
  }

  // quantize_row_q6_K_ref is quantize_row_q6_K_impl with no weights, so one
  // body serves both (the imatrix path passes the raw importance to
  // MakeQxQuants, no sigma2 term).
  static void QuantizeRowImpl(const float* x, Block* y, int64_t n_per_row,
                              const float* quant_weights) {
    const int64_t nb = n_per_row / kSuperBlock;
    int8_t L[kSuperBlock];
    float scales[kSuperBlock / 16];

    for (int64_t i = 0; i < nb; i++) {
      float max_scale = 0;
      float max_abs_scale = 0;
      for (int ib = 0; ib < kSuperBlock / 16; ++ib) {
        const float* qw = quant_weights ? quant_weights + kSuperBlock * i + 16 * ib : nullptr;
        const float scale = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw);
        scales[ib] = scale;
        const float abs_scale = std::fabs(scale);
        if (abs_scale > max_abs_scale) {
          max_abs_scale = abs_scale;
          max_scale = scale;
        }
      }

      if (max_abs_scale < kGroupMaxEps) {
        std::memset(&y[i], 0, sizeof(Block));
        y[i].d = F32ToF16(0.f);
        x += kSuperBlock;
        continue;
      }

      const float iscale = -128.f / max_scale;
      y[i].d = F32ToF16(1 / iscale);
      for (int ib = 0; ib < kSuperBlock / 16; ++ib) {
        y[i].scales[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
      }

      for (int j = 0; j < kSuperBlock / 16; ++j) {
        const float d = F16ToF32(y[i].d) * y[i].scales[j];
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii) {
          int l = NearestInt(x[16 * j + ii] / d);
          l = ClampInt(l, -32, 31);
          L[16 * j + ii] = static_cast<int8_t>(l + 32);
        }
      }

      // Groups 32k..32k+31 of each 128 share bytes: ql holds nibbles of k=0,2
      // (low/high) and k=1,3 in its second half; qh holds the top two bits of
      // all four.
      uint8_t* ql = y[i].ql;
      uint8_t* qh = y[i].qh;
      for (int j = 0; j < kSuperBlock; j += 128) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t q1 = L[j + l + 0] & 0xF;
          const uint8_t q2 = L[j + l + 32] & 0xF;
          const uint8_t q3 = L[j + l + 64] & 0xF;
          const uint8_t q4 = L[j + l + 96] & 0xF;
          ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
          ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
          qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                       ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
      }
      x += kSuperBlock;
    }
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_Q6_K_H_
