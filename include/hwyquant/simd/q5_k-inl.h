// SIMD q5_K codec: ggml's quantize_row_q5_K_ref / _impl and dequantize_row_q5_K, bit-exact.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q5_K_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q5_K_INL_H_
#undef HWYQUANT_SIMD_Q5_K_INL_H_
#else
#define HWYQUANT_SIMD_Q5_K_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/k_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Q5KCodec {
  static constexpr Type kType = Type::kQ5_K;
  using Block = BlockQ5_K;

  // Quantizes one row of n weights (a multiple of 256); imatrix (n weights) may be null, which
  // selects ggml's _ref path as quantize_q5_K does.
  template <class DF>
  static void QuantizeRow(DF df, const float* HWY_RESTRICT x, Block* HWY_RESTRICT y, int64_t n,
                          const float* HWY_RESTRICT imatrix) {
    static constexpr KScaleMinParams kParams = {31, -0.5f, 0.1f, 15, true};
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
        PackLevels(Lb, b.qs, b.qh);
      }
    }
  }

  // Splits 5-bit levels (0..31) as ggml does: low nibbles of weights l and l + 32 of each
  // 64-weight quarter share a byte of qs, and their fifth bits go to bits 2k and 2k + 1 of
  // qh[l] for quarter k. Branch-free: for levels below 32, l - 16 == (l & 15) when l > 15.
  static HWY_INLINE void PackLevels(const uint8_t* HWY_RESTRICT L, uint8_t* HWY_RESTRICT qs,
                                    uint8_t* HWY_RESTRICT qh) {
    const hn::CappedTag<uint8_t, 32> d8;
    const size_t N = hn::Lanes(d8);
    const auto low_nibble = hn::Set(d8, 15);
    for (size_t j = 0; j < 32; j += N) {
      auto high_bits = hn::Zero(d8);
      for (int k = 0; k < 4; ++k) {
        const auto l1 = hn::LoadU(d8, L + 64 * k + j);
        const auto l2 = hn::LoadU(d8, L + 64 * k + 32 + j);
        hn::StoreU(hn::Or(hn::And(l1, low_nibble), hn::ShiftLeft<4>(hn::And(l2, low_nibble))), d8,
                   qs + 32 * k + j);
        high_bits =
            hn::Or(high_bits, hn::IfThenElseZero(hn::Gt(l1, low_nibble),
                                                 hn::Set(d8, static_cast<uint8_t>(1u << (2 * k)))));
        high_bits =
            hn::Or(high_bits, hn::IfThenElseZero(hn::Gt(l2, low_nibble),
                                                 hn::Set(d8, static_cast<uint8_t>(2u << (2 * k)))));
      }
      hn::StoreU(high_bits, d8, qh + j);
    }
  }

  // Expands n weights: d * scale * (low nibble + 16 * high bit) - dmin * min.
  template <class DF>
  static void DequantizeRow(DF df, const Block* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t nb = n / kSuperBlock;
    const hn::CappedTag<uint8_t, 32> d8;
    const size_t N8 = hn::Lanes(d8);
    for (int64_t i = 0; i < nb; ++i) {
      const uint8_t* HWY_RESTRICT ql = x[i].qs;
      const uint8_t* HWY_RESTRICT qh = x[i].qh;
      const float d = F16ToF32(x[i].d);
      const float min = F16ToF32(x[i].dmin);
      int u1 = 1, u2 = 2;
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
          // Levels 0..15 and 16..31 each fit one vector of precomputed d * q - m (the same two
          // roundings per entry), so permutes and a blend on the high bit give identical bits.
          const auto izero = hn::Zero(di);
          const auto low_nibble = hn::Set(di, 0xF);
          const auto bit1 = hn::Set(di, u1);
          const auto bit2 = hn::Set(di, u2);
          const auto iota = hn::Iota(df, 0.0f);
          const auto iota16 = hn::Iota(df, 16.0f);
          const auto low1 = hn::Sub(hn::Mul(d1, iota), m1);
          const auto high1 = hn::Sub(hn::Mul(d1, iota16), m1);
          const auto low2 = hn::Sub(hn::Mul(d2, iota), m2);
          const auto high2 = hn::Sub(hn::Mul(d2, iota16), m2);
          for (size_t l = 0; l < 32; l += 16) {
            const auto low = KLoadBytes(di, ql + l);
            const auto high = KLoadBytes(di, qh + l);
            const auto i1 = hn::IndicesFromVec(df, hn::And(low, low_nibble));
            const auto i2 = hn::IndicesFromVec(df, hn::ShiftRight<4>(low));
            const auto set1 = hn::RebindMask(df, hn::Ne(hn::And(high, bit1), izero));
            const auto set2 = hn::RebindMask(df, hn::Ne(hn::And(high, bit2), izero));
            hn::StoreU(hn::IfThenElse(set1, hn::TableLookupLanes(high1, i1),
                                      hn::TableLookupLanes(low1, i1)),
                       df, y + l);
            hn::StoreU(hn::IfThenElse(set2, hn::TableLookupLanes(high2, i2),
                                      hn::TableLookupLanes(low2, i2)),
                       df, y + 32 + l);
          }
          y += 64;
          ql += 32;
          u1 <<= 2;
          u2 <<= 2;
          continue;
        }
#endif
        // Assemble the 5-bit levels of both sub-blocks as bytes (32 at a time where the
        // target allows), then widen: fewer ops per weight than splitting bits in int32 lanes.
        HWY_ALIGN uint8_t levels1[32];
        HWY_ALIGN uint8_t levels2[32];
        const auto sixteen8 = hn::Set(d8, 16);
        const auto nibble8 = hn::Set(d8, 15);
        const auto bit1_8 = hn::Set(d8, static_cast<uint8_t>(u1));
        const auto bit2_8 = hn::Set(d8, static_cast<uint8_t>(u2));
        for (size_t l = 0; l < 32; l += N8) {
          const auto low = hn::LoadU(d8, ql + l);
          const auto high = hn::LoadU(d8, qh + l);
          const auto h1 = hn::IfThenElseZero(hn::TestBit(high, bit1_8), sixteen8);
          const auto h2 = hn::IfThenElseZero(hn::TestBit(high, bit2_8), sixteen8);
          hn::Store(hn::Or(hn::And(low, nibble8), h1), d8, levels1 + l);
          hn::Store(hn::Or(hn::ShiftRight<4>(low), h2), d8, levels2 + l);
        }
        for (size_t l = 0; l < 32; l += N) {
          const auto q1 = hn::ConvertTo(df, KLoadBytes(di, levels1 + l));
          const auto q2 = hn::ConvertTo(df, KLoadBytes(di, levels2 + l));
          hn::StoreU(hn::Sub(hn::Mul(d1, q1), m1), df, y + l);
          hn::StoreU(hn::Sub(hn::Mul(d2, q2), m2), df, y + 32 + l);
        }
        y += 64;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
      }
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q5_K_INL_H_
