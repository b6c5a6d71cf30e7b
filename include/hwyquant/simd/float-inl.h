// SIMD codecs of the float types (f32 copy, f16 and bf16 rounding), bit-identical to
// reference/float.h; ggml ignores the importance matrix for these types, and so do they.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_FLOAT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_FLOAT_INL_H_
#undef HWYQUANT_SIMD_FLOAT_INL_H_
#else
#define HWYQUANT_SIMD_FLOAT_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/half-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

struct CodecF32 {
  static constexpr Type kType = Type::kF32;
  using Block = float;

  template <class DF>
  static void QuantizeRows(DF /*df*/, const float* HWY_RESTRICT src, Block* HWY_RESTRICT dst,
                           int64_t nrows, int64_t n_per_row, const float* /*imatrix*/) {
    const size_t n = static_cast<size_t>(nrows * n_per_row);
    if (n != 0) memcpy(dst, src, n * sizeof(float));
  }

  template <class DF>
  static void DequantizeRows(DF /*df*/, const Block* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                             int64_t nrows, int64_t n_per_row) {
    const size_t n = static_cast<size_t>(nrows * n_per_row);
    if (n != 0) memcpy(dst, src, n * sizeof(float));
  }
};

struct CodecF16 {
  static constexpr Type kType = Type::kF16;
  using Block = HalfBits;

  template <class DF>
  static void QuantizeRows(DF df, const float* HWY_RESTRICT src, Block* HWY_RESTRICT dst,
                           int64_t nrows, int64_t n_per_row, const float* /*imatrix*/) {
    F32ToF16Array(df, src, dst, static_cast<size_t>(nrows * n_per_row));
  }

  template <class DF>
  static void DequantizeRows(DF df, const Block* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                             int64_t nrows, int64_t n_per_row) {
    F16ToF32Array(df, src, dst, static_cast<size_t>(nrows * n_per_row));
  }
};

struct CodecBF16 {
  static constexpr Type kType = Type::kBF16;
  using Block = BF16Bits;

  template <class DF>
  static void QuantizeRows(DF df, const float* HWY_RESTRICT src, Block* HWY_RESTRICT dst,
                           int64_t nrows, int64_t n_per_row, const float* /*imatrix*/) {
    F32ToBF16Array(df, src, dst, static_cast<size_t>(nrows * n_per_row));
  }

  template <class DF>
  static void DequantizeRows(DF df, const Block* HWY_RESTRICT src, float* HWY_RESTRICT dst,
                             int64_t nrows, int64_t n_per_row) {
    BF16ToF32Array(df, src, dst, static_cast<size_t>(nrows * n_per_row));
  }
};

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_FLOAT_INL_H_
