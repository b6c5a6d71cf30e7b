// SIMD q3_K codec: ggml's quantize_row_q3_K_ref / _impl and dequantize_row_q3_K, bit-exact.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q3_K_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q3_K_INL_H_
#undef HWYQUANT_SIMD_Q3_K_INL_H_
#else
#define HWYQUANT_SIMD_Q3_K_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/k_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Q3KCodec {
  static constexpr Type kType = Type::kQ3_K;
  using Block = BlockQ3_K;

  // Packs the 16 biased 6-bit scales as ggml does: low nibbles of sub-blocks j and j + 8 share
  // byte j, and the top two bits of sub-blocks k, k + 4, k + 8, k + 12 fill byte 8 + k.
  static void PackScales(const int32_t* HWY_RESTRICT biased, uint8_t* HWY_RESTRICT scales) {
    for (int j = 0; j < 8; ++j) {
      scales[j] = static_cast<uint8_t>((biased[j] & 0xF) | ((biased[j + 8] & 0xF) << 4));
    }
    for (int k = 0; k < 4; ++k) {
      scales[8 + k] =
          static_cast<uint8_t>((biased[k] >> 4) | ((biased[k + 4] >> 4) << 2) |
                               ((biased[k + 8] >> 4) << 4) | ((biased[k + 12] >> 4) << 6));
    }
  }

  // ggml's MAX(-32, MIN(31, (int8_t)nearest_int(iscale * sc[j]))) + 32 for the 16 sub-blocks,
  // the int8_t cast included (it only matters for NaN scales).
  template <class DF>
  static void QuantizeSubBlockScales(DF df, float iscale, const float* HWY_RESTRICT sc,
                                     int32_t* HWY_RESTRICT biased) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const auto viscale = hn::Set(df, iscale);
    for (size_t j = 0; j < kSuperBlock / 16; j += N) {
      const auto l = LowByteSigned(di, NearestInt(df, hn::Mul(viscale, hn::LoadU(df, sc + j))));
      hn::StoreU(hn::Add(KClamp(di, l, -32, 31), hn::Set(di, 32)), di, biased + j);
    }
  }

  // The signed scale (-32..31) of sub-block j.
  static int8_t GetScale(int j, const uint8_t* HWY_RESTRICT scales) {
    int8_t sc = static_cast<int8_t>(j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4);
    return static_cast<int8_t>((sc | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
  }

  // Quantizes one row of n weights (a multiple of 256); imatrix (n weights) may be null, which
  // selects ggml's _ref path as quantize_q3_K does.
  template <class DF>
  static void QuantizeRow(DF df, const float* HWY_RESTRICT x, Block* HWY_RESTRICT y, int64_t n,
                          const float* HWY_RESTRICT imatrix) {
    using V = hn::Vec<DF>;
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    constexpr int kGroups = kSuperBlock / 16;
    HWY_ALIGN float xt[4 * 16 * kMaxGroupLanes];
    HWY_ALIGN float wt[16 * kMaxGroupLanes];
    HWY_ALIGN int32_t lt_chunk[kKChunkSuperBlocks * kSuperBlock];
    HWY_ALIGN float lane_scale[4 * kMaxGroupLanes];
    HWY_ALIGN float lane_sw[kMaxGroupLanes];
    float scales[kKChunkSuperBlocks * kGroups];
    float sw[kKChunkSuperBlocks * kGroups];
    float sigma2[kKChunkSuperBlocks];
    uint8_t L[kKChunkSuperBlocks * kSuperBlock];

    const size_t nb = static_cast<size_t>(n / kSuperBlock);
    for (size_t sb0 = 0; sb0 < nb; sb0 += kKChunkSuperBlocks) {
      const size_t nsb = std::min<size_t>(kKChunkSuperBlocks, nb - sb0);
      const float* HWY_RESTRICT xc = x + sb0 * kSuperBlock;
      if (imatrix) {
        for (size_t s = 0; s < nsb; ++s) {
          sigma2[s] = 2 * KSumSquares256(xc + s * kSuperBlock) / kSuperBlock;
        }
      }
      const size_t groups = nsb * kGroups;
      for (size_t g0 = 0; g0 < groups;) {
        int32_t* HWY_RESTRICT lt = lt_chunk + g0 * 16;
        size_t cnt;  // groups done in this step
        if (imatrix == nullptr && N >= kQ3FourMinLanes && groups - g0 >= 4 * N) {
          cnt = 4 * N;
          for (size_t v = 0; v < 4; ++v) {
            KTransposeIn(df, xc + (g0 + v * N) * 16, N, 16, xt + v * 16 * N);
          }
          KMakeQ3QuantsFour(df, 4, xt, lt, lane_scale);
        } else {
          cnt = std::min(N, groups - g0);
          KTransposeIn(df, xc + g0 * 16, cnt, 16, xt);
          V scale;
          if (imatrix == nullptr) {
            scale = KMakeQ3Quants(df, 4, xt, lt);
          } else {
            hn::Store(KImatrixWeights(df, 16, imatrix + sb0 * kSuperBlock, sigma2, g0, cnt, xt, wt),
                      df, lane_sw);
            scale = KMakeQxQuants<16>(df, 4, xt, wt, lt);
          }
          hn::Store(scale, df, lane_scale);
        }
        for (size_t lane = 0; lane < cnt; ++lane) {
          scales[g0 + lane] = lane_scale[lane];
          sw[g0 + lane] = imatrix ? lane_sw[lane] : 0.0f;
        }
        g0 += cnt;
      }

      float d_block[kKChunkSuperBlocks];
      uint8_t Ls[kKChunkSuperBlocks * kGroups];
      if (imatrix) QuantizeBlockScales(df, scales, sw, nsb, d_block, Ls);

      for (size_t s = 0; s < nsb; ++s) {
        Block& b = y[sb0 + s];
        const float* HWY_RESTRICT sc = scales + s * kGroups;
        HWY_ALIGN int32_t biased[kGroups];  // each sub-block's 6-bit scale, ggml's l + 32
        if (imatrix == nullptr) {
          const float max_scale = FirstLargestMagnitude<kGroups>(df, sc);
          if (max_scale) {
            const float iscale = -32.f / max_scale;
            QuantizeSubBlockScales(df, iscale, sc, biased);
            b.d = F32ToF16(1 / iscale);
          } else {
            // ggml leaves the scales zeroed: every sub-block's d is then 0 * -32.
            std::fill(biased, biased + kGroups, 0);
            b.d = F32ToF16(0.f);
          }
        } else {
          for (int j = 0; j < kGroups; ++j) biased[j] = Ls[s * kGroups + j];
          b.d = F32ToF16(d_block[s]);
        }
        PackScales(biased, b.scales);

        const float d_all = F16ToF32(b.d);
        const float* HWY_RESTRICT xs = xc + s * kSuperBlock;
        uint8_t* HWY_RESTRICT Lb = L + s * kSuperBlock;
        for (int j = 0; j < kGroups; ++j) {
          const float d = d_all * static_cast<int8_t>(biased[j] - 32);
          if (!d) {
            KLevelsOfGroup(df, lt_chunk, 16, s * kGroups + j, Lb + 16 * j);
            continue;
          }
          const V vd = hn::Set(df, d);
          for (size_t k = 0; k < 16; k += N) {
            const auto l =
                KClamp(di, NearestInt(df, hn::Div(hn::LoadU(df, xs + 16 * j + k), vd)), -4, 3);
            KStoreLevels(di, hn::Add(l, hn::Set(di, 4)), Lb + 16 * j + k);
          }
        }

        KSplitHighBitQ3(Lb, b.hmask);
        KPack2Bits(Lb, b.qs);
      }
    }
  }

  // Expands n weights: d * scale * (q - (high bit ? 0 : 4)), as ggml rounds it.
  template <class DF>
  static void DequantizeRow(DF df, const Block* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t nb = n / kSuperBlock;
    const auto three = hn::Set(di, 3);
    const auto four = hn::Set(di, 4);
    const auto izero = hn::Zero(di);
    for (int64_t i = 0; i < nb; ++i) {
      const float d_all = F16ToF32(x[i].d);
      const uint8_t* HWY_RESTRICT q = x[i].qs;
      const uint8_t* HWY_RESTRICT hm = x[i].hmask;
      int is = 0;
      int m = 1;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
          const auto bit = hn::Set(di, m);
          for (int half = 0; half < 2; ++half) {
            const auto dl = hn::Set(df, d_all * (GetScale(is++, x[i].scales)));
            for (size_t l = 0; l < 16; l += N) {
              const auto bytes = KLoadBytes(di, q + 16 * half + l);
              const auto high = KLoadBytes(di, hm + 16 * half + l);
              const auto low = hn::And(hn::ShiftRightSame(bytes, shift), three);
              const auto offset = hn::IfThenElse(hn::Eq(hn::And(high, bit), izero), four, izero);
              hn::StoreU(hn::Mul(dl, hn::ConvertTo(df, hn::Sub(low, offset))), df, y + l);
            }
            y += 16;
          }
          m <<= 1;
        }
        q += 32;
      }
    }
  }

 private:
  // make_qx_quants(16, 32, scales, Ls, 1, sw) for each of count super-blocks, batched so each
  // lane handles one super-block's 16 scales.
  template <class DF>
  static void QuantizeBlockScales(DF df, const float* HWY_RESTRICT scales,
                                  const float* HWY_RESTRICT sw, size_t count,
                                  float* HWY_RESTRICT d_out, uint8_t* HWY_RESTRICT Ls) {
    const size_t N = hn::Lanes(df);
    HWY_ALIGN float vt[16 * kMaxGroupLanes];
    HWY_ALIGN float wt[16 * kMaxGroupLanes];
    HWY_ALIGN int32_t lt[16 * kMaxGroupLanes];
    HWY_ALIGN float result[kMaxGroupLanes];
    for (size_t s0 = 0; s0 < count; s0 += N) {
      const size_t cnt = std::min(N, count - s0);
      KTransposeIn(df, scales + s0 * 16, cnt, 16, vt);
      KTransposeIn(df, sw + s0 * 16, cnt, 16, wt);
      hn::Store(KMakeQxQuants<16>(df, 32, vt, wt, lt), df, result);
      for (size_t lane = 0; lane < cnt; ++lane) d_out[s0 + lane] = result[lane];
      KTransposeLevelsOut(df, lt, cnt, 16, Ls + s0 * 16);
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q3_K_INL_H_
