// SIMD q6_K codec: ggml's quantize_row_q6_K_ref / _impl and dequantize_row_q6_K, bit-exact.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q6_K_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q6_K_INL_H_
#undef HWYQUANT_SIMD_Q6_K_INL_H_
#else
#define HWYQUANT_SIMD_Q6_K_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/k_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Q6KCodec {
  static constexpr Type kType = Type::kQ6_K;
  using Block = BlockQ6_K;

  // Quantizes one row of n weights (a multiple of 256); imatrix (n weights) may be null. Both
  // ggml paths are make_qx_quants per 16 weights, with weights x*x or the imatrix itself.
  template <class DF>
  static void QuantizeRow(DF df, const float* HWY_RESTRICT x, Block* HWY_RESTRICT y, int64_t n,
                          const float* HWY_RESTRICT imatrix) {
    using V = hn::Vec<DF>;
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    constexpr int kGroups = kSuperBlock / 16;
    HWY_ALIGN float xt[16 * kMaxGroupLanes];
    HWY_ALIGN float wt[16 * kMaxGroupLanes];
    HWY_ALIGN int32_t lt_chunk[kKChunkSuperBlocks * kSuperBlock];
    HWY_ALIGN float lane_scale[kMaxGroupLanes];
    float scales[kKChunkSuperBlocks * kGroups];
    uint8_t L[kKChunkSuperBlocks * kSuperBlock];

    const size_t nb = static_cast<size_t>(n / kSuperBlock);
    for (size_t sb0 = 0; sb0 < nb; sb0 += kKChunkSuperBlocks) {
      const size_t nsb = std::min<size_t>(kKChunkSuperBlocks, nb - sb0);
      const float* HWY_RESTRICT xc = x + sb0 * kSuperBlock;
      const size_t groups = nsb * kGroups;
      for (size_t g0 = 0; g0 < groups; g0 += N) {
        const size_t cnt = std::min(N, groups - g0);
        int32_t* HWY_RESTRICT lt = lt_chunk + g0 * 16;
        KTransposeIn(df, xc + g0 * 16, cnt, 16, xt);
        if (imatrix) {
          KTransposeIn(df, imatrix + sb0 * kSuperBlock + g0 * 16, cnt, 16, wt);
        } else {
          for (int i = 0; i < 16; ++i) {
            const V xi = hn::Load(df, xt + i * N);
            hn::Store(hn::Mul(xi, xi), df, wt + i * N);
          }
        }
        hn::Store(KMakeQxQuants<16>(df, 32, xt, wt, lt), df, lane_scale);
        for (size_t lane = 0; lane < cnt; ++lane) scales[g0 + lane] = lane_scale[lane];
      }

      for (size_t s = 0; s < nsb; ++s) {
        Block& b = y[sb0 + s];
        const float* HWY_RESTRICT sc = scales + s * kGroups;
        const float* HWY_RESTRICT xs = xc + s * kSuperBlock;
        uint8_t* HWY_RESTRICT Lb = L + s * kSuperBlock;
        const float max_scale = FirstLargestMagnitude<kGroups>(df, sc);
        if (std::fabs(max_scale) < kGroupMaxEps) {
          std::memset(&b, 0, sizeof(Block));
          b.d = F32ToF16(0.f);
          continue;
        }
        const float iscale = -128.f / max_scale;
        b.d = F32ToF16(1 / iscale);
        QuantizeSubBlockScales(df, iscale, sc, b.scales);
        const float d_all = F16ToF32(b.d);
        for (int j = 0; j < kGroups; ++j) {
          const float d = d_all * b.scales[j];
          if (!d) {
            KLevelsOfGroup(df, lt_chunk, 16, s * kGroups + j, Lb + 16 * j);
            continue;
          }
          const V vd = hn::Set(df, d);
          for (size_t k = 0; k < 16; k += N) {
            const auto l =
                KClamp(di, NearestInt(df, hn::Div(hn::LoadU(df, xs + 16 * j + k), vd)), -32, 31);
            KStoreLevels(di, hn::Add(l, hn::Set(di, 32)), Lb + 16 * j + k);
          }
        }
        uint8_t* HWY_RESTRICT ql = b.ql;
        uint8_t* HWY_RESTRICT qh = b.qh;
        for (int j = 0; j < kSuperBlock; j += 128) {
          for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = Lb[j + l + 0] & 0xF;
            const uint8_t q2 = Lb[j + l + 32] & 0xF;
            const uint8_t q3 = Lb[j + l + 64] & 0xF;
            const uint8_t q4 = Lb[j + l + 96] & 0xF;
            ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
            ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
            qh[l] =
                static_cast<uint8_t>((Lb[j + l] >> 4) | ((Lb[j + l + 32] >> 4) << 2) |
                                     ((Lb[j + l + 64] >> 4) << 4) | ((Lb[j + l + 96] >> 4) << 6));
          }
          ql += 64;
          qh += 32;
        }
      }
    }
  }

  // ggml's (int8_t)MIN(127, nearest_int(iscale * sc[j])) for the 16 sub-blocks.
  template <class DF>
  static void QuantizeSubBlockScales(DF df, float iscale, const float* HWY_RESTRICT sc,
                                     int8_t* HWY_RESTRICT out) {
    const hn::RebindToSigned<DF> di;
    const hn::Rebind<int8_t, decltype(di)> d8;
    const size_t N = hn::Lanes(df);
    const auto viscale = hn::Set(df, iscale);
    for (size_t j = 0; j < kSuperBlock / 16; j += N) {
      const auto l =
          hn::Min(NearestInt(df, hn::Mul(viscale, hn::LoadU(df, sc + j))), hn::Set(di, 127));
      hn::StoreU(hn::DemoteTo(d8, LowByteSigned(di, l)), d8, out + j);
    }
  }

  // Expands n weights: (d * scale) * (q - 32), in ggml's order.
  template <class DF>
  static void DequantizeRow(DF df, const Block* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t nb = n / kSuperBlock;
    const auto low_nibble = hn::Set(di, 0xF);
    const auto three = hn::Set(di, 3);
    const auto bias = hn::Set(di, 32);
    for (int64_t i = 0; i < nb; ++i) {
      const float d = F16ToF32(x[i].d);
      const uint8_t* HWY_RESTRICT ql = x[i].ql;
      const uint8_t* HWY_RESTRICT qh = x[i].qh;
      const int8_t* HWY_RESTRICT sc = x[i].scales;
      for (int n128 = 0; n128 < kSuperBlock; n128 += 128) {
        for (size_t l = 0; l < 32; l += N) {
          // Lanes never straddle the 16-weight scale boundary: N divides 16.
          const int is = static_cast<int>(l / 16);
          const auto lo = KLoadBytes(di, ql + l);
          const auto lo2 = KLoadBytes(di, ql + 32 + l);
          const auto hi = KLoadBytes(di, qh + l);
          const auto q1 =
              hn::Sub(hn::Or(hn::And(lo, low_nibble), hn::ShiftLeft<4>(hn::And(hi, three))), bias);
          const auto q2 = hn::Sub(hn::Or(hn::And(lo2, low_nibble),
                                         hn::ShiftLeft<4>(hn::And(hn::ShiftRight<2>(hi), three))),
                                  bias);
          const auto q3 = hn::Sub(hn::Or(hn::ShiftRight<4>(lo),
                                         hn::ShiftLeft<4>(hn::And(hn::ShiftRight<4>(hi), three))),
                                  bias);
          const auto q4 = hn::Sub(hn::Or(hn::ShiftRight<4>(lo2),
                                         hn::ShiftLeft<4>(hn::And(hn::ShiftRight<6>(hi), three))),
                                  bias);
          hn::StoreU(hn::Mul(hn::Set(df, d * sc[is + 0]), hn::ConvertTo(df, q1)), df, y + l);
          hn::StoreU(hn::Mul(hn::Set(df, d * sc[is + 2]), hn::ConvertTo(df, q2)), df, y + 32 + l);
          hn::StoreU(hn::Mul(hn::Set(df, d * sc[is + 4]), hn::ConvertTo(df, q3)), df, y + 64 + l);
          hn::StoreU(hn::Mul(hn::Set(df, d * sc[is + 6]), hn::ConvertTo(df, q4)), df, y + 96 + l);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
      }
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q6_K_INL_H_
