// Public kernel API: quantize and dequantize GGUF rows with the best SIMD target of this CPU.
//
// Include this header anywhere; it never includes highway.h. The functions are defined by the
// dynamic-dispatch translation unit (link hwyquant::dispatch, or compile one .cc that includes
// "hwyquant/dispatch-impl.h").
#ifndef HWYQUANT_HWYQUANT_H_
#define HWYQUANT_HWYQUANT_H_

#include <cstddef>
#include <cstdint>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

namespace hwyquant {

// Quantizes nrows rows of n_per_row weights into dst, exactly as ggml_quantize_chunk does.
// dst must hold nrows * RowSize(type, n_per_row) bytes; imatrix (n_per_row weights) may be
// null. Returns the bytes written. Throws Error for an unsupported type or a row length that
// is not a whole number of blocks.
size_t Quantize(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                const float* imatrix = nullptr);

// The same from f16 or bf16 source rows, widened block by block (no f32 copy of the tensor).
size_t QuantizeF16(Type type, const HalfBits* src, void* dst, int64_t nrows, int64_t n_per_row,
                   const float* imatrix = nullptr);
size_t QuantizeBF16(Type type, const BF16Bits* src, void* dst, int64_t nrows, int64_t n_per_row,
                    const float* imatrix = nullptr);

// Expands nrows rows of type into f32, as ggml's to_float does.
void Dequantize(Type type, const void* src, float* dst, int64_t nrows, int64_t n_per_row);

// Quantize split by rows over nthreads threads (0: every core). Bytes equal Quantize's.
size_t QuantizeParallel(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                        const float* imatrix, int nthreads);

// Name of the SIMD target the dispatcher picked for this CPU, e.g. "AVX3".
const char* ActiveTarget();

}  // namespace hwyquant

#endif  // HWYQUANT_HWYQUANT_H_
