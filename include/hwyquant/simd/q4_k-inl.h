// SIMD q4_K codec: ggml's quantize_row_q4_K_ref / _impl and dequantize_row_q4_K, bit-exact.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q4_K_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q4_K_INL_H_
#undef HWYQUANT_SIMD_Q4_K_INL_H_
#else
#define HWYQUANT_SIMD_Q4_K_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/k_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Q4KCodec {
  static constexpr Type kType = Type::kQ4_K;
  using Block = BlockQ4_K;

  // Quantizes one row of n weights (a multiple of 256); imatrix (n weights) may be null, which
  // selects ggml's _ref path as quantize_q4_K does.
  template <class DF>
  static void QuantizeRow(DF df, const float* HWY_RESTRICT x, Block* HWY_RESTRICT y, int64_t n,
                          const float* HWY_RESTRICT imatrix) {
    static constexpr KScaleMinParams kParams = {15, -1.f, 0.1f, 20, false};
    const size_t nb = static_cast<size_t>(n / kSuperBlock);
    uint8_t L[kKChunkSuperBlocks * kSuperBlock];
    HalfBits d[kKChunkSuperBlocks], dmin[kKChunkSuperBlocks];
    uint8_t scales[kKChunkSuperBlocks * kKScaleBytes];
    for (size_t sb0 = 0; sb0 < nb; sb0 += kKChunkSuperBlocks) {
      const size_t nsb = std::min<size_t>(kKChunkSuperBlocks, nb - sb0);
      KQuantizeScaleMin(df, kParams, x + sb0 * kSuperBlock, nsb,
                        imatrix ? imatrix + sb0 * kSuperBlock : nullptr, L, d, dmin, scales);
      for (size_t s = 0; s < nsb; ++s) {
        Block& b = y[sb0 + s];
        b.d = d[s];
        b.dmin = dmin[s];
        for (int k = 0; k < kKScaleBytes; ++k) b.scales[k] = scales[s * kKScaleBytes + k];
        const uint8_t* HWY_RESTRICT Lb = L + s * kSuperBlock;
        uint8_t* HWY_RESTRICT q = b.qs;
        for (int j = 0; j < kSuperBlock; j += 64) {
          for (int l = 0; l < 32; ++l)
            q[l] = static_cast<uint8_t>(Lb[j + l] | (Lb[j + l + 32] << 4));
          q += 32;
        }
      }
    }
  }

  // Expands n weights: d * scale * q - dmin * min per sub-block, as ggml rounds it.
  template <class DF>
  static void DequantizeRow(DF df, const Block* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t nb = n / kSuperBlock;
    const auto low_nibble = hn::Set(di, 0xF);
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* HWY_RESTRICT q = x[i].qs;
      const float d = F16ToF32(x[i].d);
      const float min = F16ToF32(x[i].dmin);
      for (int j = 0; j < 8; j += 2) {
        uint8_t sc, m;
        KGetScaleMinK4(j, x[i].scales, &sc, &m);
        const auto d1 = hn::Set(df, d * sc);
        const auto m1 = hn::Set(df, min * m);
        KGetScaleMinK4(j + 1, x[i].scales, &sc, &m);
        const auto d2 = hn::Set(df, d * sc);
        const auto m2 = hn::Set(df, min * m);
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
        if (N == 16) {
          // All 16 possible outputs fit one vector; each entry is d1 * q - m1 computed with the
          // same two roundings, so a lane permute gives the identical bits at lower cost.
          const auto iota = hn::Iota(df, 0.0f);
          const auto table1 = hn::Sub(hn::Mul(d1, iota), m1);
          const auto table2 = hn::Sub(hn::Mul(d2, iota), m2);
          for (size_t l = 0; l < 32; l += 16) {
            const auto bytes = KLoadBytes(di, q + l);
            const auto lo = hn::IndicesFromVec(df, hn::And(bytes, low_nibble));
            const auto hi = hn::IndicesFromVec(df, hn::ShiftRight<4>(bytes));
            hn::StoreU(hn::TableLookupLanes(table1, lo), df, y + l);
            hn::StoreU(hn::TableLookupLanes(table2, hi), df, y + 32 + l);
          }
          y += 64;
          q += 32;
          continue;
        }
#endif
        for (size_t l = 0; l < 32; l += N) {
          const auto bytes = KLoadBytes(di, q + l);
          const auto lo = hn::ConvertTo(df, hn::And(bytes, low_nibble));
          const auto hi = hn::ConvertTo(df, hn::ShiftRight<4>(bytes));
          hn::StoreU(hn::Sub(hn::Mul(d1, lo), m1), df, y + l);
          hn::StoreU(hn::Sub(hn::Mul(d2, hi), m2), df, y + 32 + l);
        }
        y += 64;
        q += 32;
      }
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q4_K_INL_H_
