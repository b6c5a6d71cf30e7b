// SIMD q8_0 codec: symmetric 8-bit blocks, bit-identical to reference/q8_0.h on every target.

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q8_0_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q8_0_INL_H_
#undef HWYQUANT_SIMD_Q8_0_INL_H_
#else
#define HWYQUANT_SIMD_Q8_0_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/legacy_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecQ8_0 {
  static constexpr Type kType = Type::kQ8_0;
  using Block = BlockQ8_0;

  // ggml ignores the importance matrix for q8_0.
  template <class DF>
  static void QuantizeRows(DF df, const float* HWY_RESTRICT src, Block* HWY_RESTRICT dst,
                           int64_t nrows, int64_t n_per_row, const float* /*imatrix*/) {
    const int64_t total = nrows * (n_per_row / kLegacyBlock);
    for (int64_t ib = 0; ib < total; ++ib) QuantizeBlock(df, src + ib * kLegacyBlock, dst + ib);
  }

  template <class DF>
  static void DequantizeRows(DF df, const Block* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                             int64_t nrows, int64_t n_per_row) {
    const hn::RebindToSigned<DF> di;
    const hn::Rebind<int8_t, DF> di8;
    const size_t N = hn::Lanes(df);
    const int64_t total = nrows * (n_per_row / kLegacyBlock);
    for (int64_t ib = 0; ib < total; ++ib) {
      const auto d = hn::Set(df, F16ToF32(src[ib].d));
      float* HWY_RESTRICT y = dst + ib * kLegacyBlock;
      for (size_t j = 0; j < kLegacyBlock; j += N) {
        const auto q = hn::PromoteTo(di, hn::LoadU(di8, src[ib].qs + j));
        hn::StoreU(hn::Mul(hn::ConvertTo(df, q), d), df, y + j);
      }
    }
  }

 private:
  // quantize_row_q8_0_ref for one block. amax folds MAX(amax, |x|), in which a NaN wins only
  // until the next element; blocks holding a NaN take that fold literally, others reduce freely.
  template <class DF>
  static HWY_INLINE void QuantizeBlock(DF df, const float* HWY_RESTRICT xb, Block* HWY_RESTRICT y) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    auto vamax = hn::Zero(df);
    auto nan = hn::Ne(vamax, vamax);
    for (size_t j = 0; j < kLegacyBlock; j += N) {
      const auto v = hn::LoadU(df, xb + j);
      nan = hn::Or(nan, hn::Not(hn::Eq(v, v)));
      vamax = hn::Max(vamax, hn::Abs(v));
    }
    float amax;
    if (HWY_UNLIKELY(!hn::AllFalse(df, nan))) {
      amax = 0.0f;
      for (int j = 0; j < kLegacyBlock; ++j) {
        const float a = fabsf(xb[j]);
        amax = amax > a ? amax : a;
      }
    } else {
      amax = MaxLane(df, vamax);
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    const auto vid = hn::Set(df, id);
    const auto byte = hn::Set(di, 0xFF);
    for (size_t j = 0; j < kLegacyBlock; j += N) {
      const auto rounded = RoundHalfAway(df, hn::Mul(hn::LoadU(df, xb + j), vid));
      StoreBytes(di, hn::And(TruncateLikeX86(df, rounded), byte),
                 reinterpret_cast<uint8_t*>(y->qs) + j);
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q8_0_INL_H_
