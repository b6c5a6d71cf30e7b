// SIMD q4_1 codec: asymmetric 4-bit blocks, bit-identical to reference/q4_1.h on every target.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q4_1_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q4_1_INL_H_
#undef HWYQUANT_SIMD_Q4_1_INL_H_
#else
#define HWYQUANT_SIMD_Q4_1_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/legacy_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecQ4_1 {
  static constexpr Type kType = Type::kQ4_1;
  using Block = BlockQ4_1;

  template <class DF>
  static void QuantizeRows(DF df, const float* HWY_RESTRICT src, Block* HWY_RESTRICT dst,
                           int64_t nrows, int64_t n_per_row, const float* HWY_RESTRICT imatrix) {
    const int64_t total = nrows * (n_per_row / kLegacyBlock);
    if (imatrix == nullptr) {
      for (int64_t ib = 0; ib < total; ++ib) QuantizeBlock(df, src + ib * kLegacyBlock, dst + ib);
      return;
    }
    LegacyBatch batch;
    ForEachImatrixBatch(df, src, nrows, n_per_row, imatrix, batch,
                        [&](LegacyBatch& b, int64_t first, size_t count) {
                          MakeQkx3QuantsLanes(df, 15, b);
                          const size_t N = hn::Lanes(df);
                          Block* HWY_RESTRICT y = dst + first;
                          for (size_t lane = 0; lane < count; ++lane) {
                            y[lane].d = F32ToF16(b.scale[lane]);
                            y[lane].m = F32ToF16(-b.the_min[lane]);
                            for (int j = 0; j < 16; ++j) {
                              y[lane].qs[j] = static_cast<uint8_t>(
                                  b.levels[j * N + lane] | (b.levels[(j + 16) * N + lane] << 4));
                            }
                          }
                        });
  }

  template <class DF>
  static void DequantizeRows(DF df, const Block* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                             int64_t nrows, int64_t n_per_row) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const int64_t total = nrows * (n_per_row / kLegacyBlock);
    for (int64_t ib = 0; ib < total; ++ib) {
      const auto d = hn::Set(df, F16ToF32(src[ib].d));
      const auto m = hn::Set(df, F16ToF32(src[ib].m));
      float* HWY_RESTRICT y = dst + ib * kLegacyBlock;
      for (size_t j = 0; j < 16; j += N) {
        const auto packed = LoadBytesAsInt32(di, src[ib].qs + j);
        const auto low = hn::And(packed, hn::Set(di, 0x0F));
        const auto high = hn::ShiftRight<4>(packed);
        hn::StoreU(hn::Add(hn::Mul(hn::ConvertTo(df, low), d), m), df, y + j);
        hn::StoreU(hn::Add(hn::Mul(hn::ConvertTo(df, high), d), m), df, y + 16 + j);
      }
    }
  }

 private:
  // quantize_row_q4_1_ref for one block: levels are (int8_t)((x - min) * id + 0.5) capped at 15.
  template <class DF>
  static HWY_INLINE void QuantizeBlock(DF df, const float* HWY_RESTRICT xb, Block* HWY_RESTRICT y) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    float min, max;
    FirstMinMax(df, xb, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    y->m = F32ToF16(min);
    const auto vid = hn::Set(df, id);
    const auto vmin = hn::Set(df, min);
    const auto half = hn::Set(df, 0.5f);
    const auto cap = hn::Set(di, 15);
    const auto byte = hn::Set(di, 0xFF);
    for (size_t j = 0; j < 16; j += N) {
      const auto x0 = hn::Mul(hn::Sub(hn::LoadU(df, xb + j), vmin), vid);
      const auto x1 = hn::Mul(hn::Sub(hn::LoadU(df, xb + 16 + j), vmin), vid);
      const auto q0 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x0, half)))), byte);
      const auto q1 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x1, half)))), byte);
      StoreBytes(di, hn::And(hn::Or(q0, hn::ShiftLeft<4>(q1)), byte), y->qs + j);
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q4_1_INL_H_
