// SIMD q4_0 codec: symmetric 4-bit blocks, bit-identical to reference/q4_0.h on every target.

#include <stddef.h>
#include <stdint.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q4_0_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q4_0_INL_H_
#undef HWYQUANT_SIMD_Q4_0_INL_H_
#else
#define HWYQUANT_SIMD_Q4_0_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/legacy_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecQ4_0 {
  static constexpr Type kType = Type::kQ4_0;
  using Block = BlockQ4_0;

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
                          MakeQxQuantsLanes(df, 8, b);
                          StoreBatch(df, b, dst + first, count);
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
      float* HWY_RESTRICT y = dst + ib * kLegacyBlock;
      for (size_t j = 0; j < 16; j += N) {
        const auto packed = LoadBytesAsInt32(di, src[ib].qs + j);
        const auto low = hn::Sub(hn::And(packed, hn::Set(di, 0x0F)), hn::Set(di, 8));
        const auto high = hn::Sub(hn::ShiftRight<4>(packed), hn::Set(di, 8));
        hn::StoreU(hn::Mul(hn::ConvertTo(df, low), d), df, y + j);
        hn::StoreU(hn::Mul(hn::ConvertTo(df, high), d), df, y + 16 + j);
      }
    }
  }

 private:
  // quantize_row_q4_0_ref for one block: levels are (int8_t)(x * id + 8.5) capped at 15.
  template <class DF>
  static HWY_INLINE void QuantizeBlock(DF df, const float* HWY_RESTRICT xb, Block* HWY_RESTRICT y) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const float max = FirstLargestMagnitude<kLegacyBlock>(df, xb);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    const auto vid = hn::Set(df, id);
    const auto bias = hn::Set(df, 8.5f);
    const auto cap = hn::Set(di, 15);
    const auto byte = hn::Set(di, 0xFF);
    for (size_t j = 0; j < 16; j += N) {
      const auto x0 = hn::Mul(hn::LoadU(df, xb + j), vid);
      const auto x1 = hn::Mul(hn::LoadU(df, xb + 16 + j), vid);
      const auto q0 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x0, bias)))), byte);
      const auto q1 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x1, bias)))), byte);
      StoreBytes(di, hn::And(hn::Or(q0, hn::ShiftLeft<4>(q1)), byte), y->qs + j);
    }
  }

  template <class DF>
  static HWY_INLINE void StoreBatch(DF df, const LegacyBatch& b, Block* HWY_RESTRICT y,
                                    size_t count) {
    const size_t N = hn::Lanes(df);
    for (size_t lane = 0; lane < count; ++lane) {
      y[lane].d = F32ToF16(b.scale[lane]);
      for (int j = 0; j < 16; ++j) {
        const int32_t l0 = b.levels[j * N + lane];
        const int32_t l1 = b.levels[(j + 16) * N + lane];
        y[lane].qs[j] = static_cast<uint8_t>(l0 | (l1 << 4));
      }
    }
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q4_0_INL_H_
