// SIMD q5_0 codec: symmetric 5-bit blocks, bit-identical to reference/q5_0.h on every target.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_Q5_0_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_Q5_0_INL_H_
#undef HWYQUANT_SIMD_Q5_0_INL_H_
#else
#define HWYQUANT_SIMD_Q5_0_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/legacy_common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecQ5_0 {
  static constexpr Type kType = Type::kQ5_0;
  using Block = BlockQ5_0;

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
                          MakeQxQuantsLanes(df, 16, b);
                          const size_t N = hn::Lanes(df);
                          Block* HWY_RESTRICT y = dst + first;
                          for (size_t lane = 0; lane < count; ++lane) {
                            y[lane].d = F32ToF16(b.scale[lane]);
                            PackFiveBitLevels(b.levels + lane, N, y[lane].qs, y[lane].qh);
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
      uint32_t qh;
      memcpy(&qh, src[ib].qh, sizeof(qh));
      float* HWY_RESTRICT y = dst + ib * kLegacyBlock;
      for (size_t j = 0; j < 16; j += N) {
        const auto packed = LoadBytesAsInt32(di, src[ib].qs + j);
        const int first = static_cast<int>(j);
        const auto low =
            hn::Sub(hn::Or(hn::And(packed, hn::Set(di, 0x0F)), FifthBitLanes(di, qh, first)),
                    hn::Set(di, 16));
        const auto high = hn::Sub(
            hn::Or(hn::ShiftRight<4>(packed), FifthBitLanes(di, qh, first + 16)), hn::Set(di, 16));
        hn::StoreU(hn::Mul(hn::ConvertTo(df, low), d), df, y + j);
        hn::StoreU(hn::Mul(hn::ConvertTo(df, high), d), df, y + 16 + j);
      }
    }
  }

 private:
  // quantize_row_q5_0_ref for one block: levels are (int8_t)(x * id + 16.5) capped at 31.
  template <class DF>
  static HWY_INLINE void QuantizeBlock(DF df, const float* HWY_RESTRICT xb, Block* HWY_RESTRICT y) {
    const hn::RebindToSigned<DF> di;
    const size_t N = hn::Lanes(df);
    const float max = FirstLargestMagnitude<kLegacyBlock>(df, xb);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = F32ToF16(d);
    const auto vid = hn::Set(df, id);
    const auto bias = hn::Set(df, 16.5f);
    const auto cap = hn::Set(di, 31);
    const auto byte = hn::Set(di, 0xFF);
    uint32_t qh = 0;
    for (size_t j = 0; j < 16; j += N) {
      const auto x0 = hn::Mul(hn::LoadU(df, xb + j), vid);
      const auto x1 = hn::Mul(hn::LoadU(df, xb + 16 + j), vid);
      const auto q0 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x0, bias)))), byte);
      const auto q1 =
          hn::And(hn::Min(cap, LowByteSigned(di, TruncateLikeX86(df, hn::Add(x1, bias)))), byte);
      const auto nibble = hn::Set(di, 0x0F);
      StoreBytes(di, hn::Or(hn::And(q0, nibble), hn::ShiftLeft<4>(hn::And(q1, nibble))), y->qs + j);
      qh |= FifthBits(di, q0) << j;
      qh |= FifthBits(di, q1) << (j + 16);
    }
    memcpy(y->qh, &qh, sizeof(qh));
  }

 public:
  // Low nibbles into qs, fifth bits into qh, from 32 levels spaced `stride` apart.
  static HWY_INLINE void PackFiveBitLevels(const int32_t* HWY_RESTRICT levels, size_t stride,
                                           uint8_t* HWY_RESTRICT qs, uint8_t* HWY_RESTRICT qh_out) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const uint32_t xi0 = static_cast<uint8_t>(levels[j * stride]);
      const uint32_t xi1 = static_cast<uint8_t>(levels[(j + 16) * stride]);
      qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << j;
      qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    memcpy(qh_out, &qh, sizeof(qh));
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_Q5_0_INL_H_
