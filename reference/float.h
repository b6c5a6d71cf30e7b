// Scalar f16 and bf16 codecs: element-wise rounding as ggml_quantize_chunk does
// for these types.
#ifndef HWYQUANT_REFERENCE_FLOAT_H_
#define HWYQUANT_REFERENCE_FLOAT_H_

#include <cstdint>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

namespace hwyquant::reference {

// ggml_fp32_to_fp16_row: round to nearest even per element. There is no block
// structure, and ggml ignores the importance matrix for float types, so the
// imatrix argument is accepted and unused.
struct F16 {
  static constexpr Type kType = Type::kF16;
  using Block = HalfBits;

  static void QuantizeRow(const float* x, Block* y, int64_t n,
                          const float* /*imatrix: ignored, as in ggml*/) {
    for (int64_t i = 0; i < n; ++i) y[i] = F32ToF16(x[i]);
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = F16ToF32(x[i]);
  }
};

// ggml_fp32_to_bf16_row_ref: nearest even, NaN made quiet, subnormals kept
// (ggml's non-ref variant may flush subnormals on AVX512-BF16 CPUs;
// quantize_chunk uses the ref one).
struct BF16 {
  static constexpr Type kType = Type::kBF16;
  using Block = BF16Bits;

  static void QuantizeRow(const float* x, Block* y, int64_t n,
                          const float* /*imatrix: ignored, as in ggml*/) {
    for (int64_t i = 0; i < n; ++i) y[i] = F32ToBF16(x[i]);
  }

  static void DequantizeRow(const Block* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = BF16ToF32(x[i]);
  }
};

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_FLOAT_H_
