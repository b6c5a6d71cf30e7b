// SIMD q2_K codec: ggml's quantize_row_q2_K_ref / _impl and dequantize_row_q2_K, bit-exact.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q2_K_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q2_K_INL_H_
#undef HWYQUANT_SIMD_Q2_K_INL_H_
#else
#define HWYQUANT_SIMD_Q2_K_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/k_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Q2KCodec {
  static constexpr Type kType = Type::kQ2_K;
  using Block = BlockQ2_K;

  // Quantizes one row of n weights (a multiple of 256); imatrix (n weights) may be null, which
  // selects ggml's _ref path as quantize_q2_K does.
  template <class DF>
  static void QuantizeRow(DF df, const float* HWY_RESTRICT x, Block* HWY_RESTRICT y, int64_t n,
                          const float* HWY_RESTRICT imatrix) {
    using V = hn::Vec<DF>;
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    constexpr int kGroups = kSuperBlock / 16;
    HWY_ALIGN int32_t lt_chunk[kKChunkSuperBlocks * kSuperBlock];
    float scales[kKChunkSuperBlocks * kGroups];
    float mins[kKChunkSuperBlocks * kGroups];
    float sw[kKChunkSuperBlocks * kGroups];
    float sigma2[kKChunkSuperBlocks];
    float d_block[kKChunkSuperBlocks], m_block[kKChunkSuperBlocks];
    uint8_t Ls[kKChunkSuperBlocks * kGroups], Lm[kKChunkSuperBlocks * kGroups];
    uint8_t L[kKChunkSuperBlocks * kSuperBlock];

    const size_t nb = static_cast<size_t>(n / kSuperBlock);
    for (size_t sb0 = 0; sb0 < nb; sb0 += kKChunkSuperBlocks) {
      const size_t nsb = std::min<size_t>(kKChunkSuperBlocks, nb - sb0);
      const float* HWY_RESTRICT xc = x + sb0 * kSuperBlock;
      if (imatrix) {
        for (size_t s = 0; s < nsb; ++s) {
          sigma2[s] = KSumSquares256(xc + s * kSuperBlock) / kSuperBlock;
        }
      }
      // make_qkx2_quants' weights: |x|.
      const auto unweighted = [&](const float* HWY_RESTRICT xv, float* HWY_RESTRICT wv) {
        for (int i = 0; i < 16; ++i) hn::Store(hn::Abs(hn::Load(df, xv + i * N)), df, wv + i * N);
      };
      KSearchScaleMinGroups<16, true>(df, xc, nsb, imatrix ? imatrix + sb0 * kSuperBlock : nullptr,
                                      sigma2, 3, -0.5f, 0.1f, 15, unweighted, scales, mins, sw,
                                      lt_chunk);
      if (imatrix) {
        KMakeQpQuantsSets(df, kGroups, 15, scales, sw, nsb, d_block, Ls);
        KMakeQpQuantsSets(df, kGroups, 15, mins, sw, nsb, m_block, Lm);
      }

      for (size_t s = 0; s < nsb; ++s) {
        Block& b = y[sb0 + s];
        const float* HWY_RESTRICT sc = scales + s * kGroups;
        const float* HWY_RESTRICT mn = mins + s * kGroups;
        if (imatrix == nullptr) {
          const float q4scale = 15.f;
          float max_scale = 0;
          float max_min = 0;
          for (int j = 0; j < kGroups; ++j) {
            if (sc[j] > max_scale) max_scale = sc[j];
            if (mn[j] > max_min) max_min = mn[j];
          }
          if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < kGroups; ++j) {
              b.scales[j] = static_cast<uint8_t>(::hwyquant::NearestInt(iscale * sc[j]));
            }
            b.d = F32ToF16(max_scale / q4scale);
          } else {
            for (int j = 0; j < kGroups; ++j) b.scales[j] = 0;
            b.d = F32ToF16(0.f);
          }
          if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < kGroups; ++j) {
              const int l = ::hwyquant::NearestInt(iscale * mn[j]);
              // Unsigned shift: l is negative for NaN scales; the stored bits match ggml's.
              b.scales[j] = static_cast<uint8_t>(b.scales[j] | (static_cast<uint32_t>(l) << 4));
            }
            b.dmin = F32ToF16(max_min / q4scale);
          } else {
            b.dmin = F32ToF16(0.f);
          }
        } else {
          b.d = F32ToF16(d_block[s]);
          b.dmin = F32ToF16(m_block[s]);
          for (int j = 0; j < kGroups; ++j) {
            b.scales[j] = static_cast<uint8_t>(Ls[s * kGroups + j] | (Lm[s * kGroups + j] << 4));
          }
        }

        const float d_all = F16ToF32(b.d);
        const float m_all = F16ToF32(b.dmin);
        const float* HWY_RESTRICT xs = xc + s * kSuperBlock;
        uint8_t* HWY_RESTRICT Lb = L + s * kSuperBlock;
        for (int j = 0; j < kGroups; ++j) {
          const float d = d_all * (b.scales[j] & 0xF);
          if (!d) {
            KLevelsOfGroup(df, lt_chunk, 16, s * kGroups + j, Lb + 16 * j);
            continue;
          }
          const float m = m_all * (b.scales[j] >> 4);
          const V vd = hn::Set(df, d);
          const V vm = hn::Set(df, m);
          for (size_t k = 0; k < 16; k += N) {
            const V q = hn::Div(hn::Add(hn::LoadU(df, xs + 16 * j + k), vm), vd);
            KStoreLevels(di, KClamp(di, NearestInt(df, q), 0, 3), Lb + 16 * j + k);
          }
        }
        KPack2Bits(Lb, b.qs);
      }
    }
  }

  // Expands n weights: d * scale * q - dmin * min per 16 weights, as ggml rounds it.
  template <class DF>
  static void DequantizeRow(DF df, const Block* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t nb = n / kSuperBlock;
    const auto three = hn::Set(di, 3);
    for (int64_t i = 0; i < nb; ++i) {
      const float d = F16ToF32(x[i].d);
      const float min = F16ToF32(x[i].dmin);
      const uint8_t* HWY_RESTRICT q = x[i].qs;
      int is = 0;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
          for (int half = 0; half < 2; ++half) {
            const uint8_t sc = x[i].scales[is++];
            const auto dl = hn::Set(df, d * (sc & 0xF));
            const auto ml = hn::Set(df, min * (sc >> 4));
            for (size_t l = 0; l < 16; l += N) {
              const auto bytes = KLoadBytes(di, q + 16 * half + l);
              const auto level = hn::And(hn::ShiftRightSame(bytes, shift), three);
              hn::StoreU(hn::Sub(hn::Mul(dl, hn::ConvertTo(df, level)), ml), df, y + l);
            }
            y += 16;
          }
        }
        q += 32;
      }
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q2_K_INL_H_
