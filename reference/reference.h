// The scalar reference, type-dispatched: ggml_quantize_chunk's contract over every supported type.
#ifndef HWYQUANT_REFERENCE_REFERENCE_H_
#define HWYQUANT_REFERENCE_REFERENCE_H_

#include <cstdint>
#include <string>

#include "hwyquant/format.h"

namespace hwyquant::reference {

// Quantizes nrows rows of n_per_row floats into dst (nrows * RowSize bytes); imatrix may be
// null. Returns the bytes written. Throws Error naming the problem for an unsupported type,
// a row length that is not a whole number of blocks, negative counts or null buffers.
size_t QuantizeRows(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                    const float* imatrix);

// Dequantizes nrows rows of n_per_row weights into dst.
void DequantizeRows(Type type, const void* src, float* dst, int64_t nrows, int64_t n_per_row);

}  // namespace hwyquant::reference

#include "reference/reference-inl.h"

#endif  // HWYQUANT_REFERENCE_REFERENCE_H_
