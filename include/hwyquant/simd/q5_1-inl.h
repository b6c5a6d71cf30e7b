// SIMD q5_1 codec: asymmetric 5-bit blocks, bit-identical to reference/q5_1.h on every target.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q5_1_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q5_1_INL_H_
#undef HWYQUANT_SIMD_Q5_1_INL_H_
#else
#define HWYQUANT_SIMD_Q5_1_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/legacy_common-inl.h"
#include "hwyquant/simd/q5_0-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecQ5_1 {
  static constexpr Type kType = Type::kQ5_1;
  using Block = BlockQ5_1;

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
                          MakeQkx3QuantsLanes(df, 31, b);
                          const size_t N = hn::Lanes(df);
                          Block* HWY_RESTRICT y = dst + first;
                          for (size_t lane = 0; lane < count; ++lane) {
                            y[lane].d = F32ToF16(b.scale[lane]);
                            y[lane].m = F32ToF16(-b.the_min[lane]);
                            CodecQ5_0::PackFiveBitLevels(b.levels + lane, N, y[lane].qs,
                                                         y[lane].qh);
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
      uint32_t qh;
      memcpy(&qh, src[ib].qh, sizeof(qh));
      float* HWY_RESTRICT y = dst + ib * kLegacyBlock;
      for (size_t j = 0; j < 16; j += N) {
        const auto packed = LoadBytesAsInt32(di, src[ib].qs + j);
        const int first = static_cast<int>(j);
        const auto low = hn::Or(hn::And(packed, hn::Set(di, 0x0F)), FifthBitLanes(di, qh, first));
        const auto high = hn::Or(hn::ShiftRight<4>(packed), FifthBitLanes(di, qh, first + 16));
        hn::StoreU(hn::Add(hn::Mul(hn::ConvertTo(df, low), d), m), df, y + j);
        hn::StoreU(hn::Add(hn::Mul(hn::ConvertTo(df, high), d), m), df, y + 16 + j);
      }
    }
  }

 private:
  // quantize_row_q5_1_ref for one block: levels are (uint8_t)((x - min) * id + 0.5), uncapped.
  template <class DF>
  static HWY_INLINE void QuantizeBlock(DF df, const float* HWY_RESTRICT xb, Block* HWY_RESTRICT y) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    float min, max;
    FirstMinMax(df, xb, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    y->m = F32ToF16(min);
    const auto vid = hn::Set(df, id);
    const auto vmin = hn::Set(df, min);
    const auto half = hn::Set(df, 0.5f);
    const auto byte = hn::Set(di, 0xFF);
    const auto nibble = hn::Set(di, 0x0F);
    uint32_t qh = 0;
    for (size_t j = 0; j < 16; j += N) {
      const auto x0 = hn::Mul(hn::Sub(hn::LoadU(df, xb + j), vmin), vid);
      const auto x1 = hn::Mul(hn::Sub(hn::LoadU(df, xb + 16 + j), vmin), vid);
      const auto q0 = hn::And(TruncateLikeX86(df, hn::Add(x0, half)), byte);
      const auto q1 = hn::And(TruncateLikeX86(df, hn::Add(x1, half)), byte);
      StoreBytes(di, hn::Or(hn::And(q0, nibble), hn::ShiftLeft<4>(hn::And(q1, nibble))), y->qs + j);
      qh |= FifthBits(di, q0) << j;
      qh |= FifthBits(di, q1) << (j + 16);
    }
    memcpy(y->qh, &qh, sizeof(qh));
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q5_1_INL_H_
