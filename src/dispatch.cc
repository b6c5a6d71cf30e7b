// Interim definitions of the public API on top of the scalar reference, until the SIMD
// dispatcher replaces this file.
#include <algorithm>
#include <thread>
#include <vector>

#include "hwyquant/hwyquant.h"
#include "reference/reference.h"

namespace hwyquant {
namespace {

template <class Half, float (*Widen)(uint16_t)>
size_t QuantizeFromHalf(Type type, const Half* src, void* dst, int64_t nrows,
                        int64_t n_per_row, const float* imatrix) {
  std::vector<float> row(static_cast<size_t>(std::max<int64_t>(n_per_row, 0)));
  const size_t row_size = RowSize(type, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < nrows; ++r) {
    for (int64_t i = 0; i < n_per_row; ++i) row[i] = Widen(src[r * n_per_row + i]);
    reference::QuantizeRows(type, row.data(), out + r * row_size, 1, n_per_row, imatrix);
  }
  return row_size * static_cast<size_t>(std::max<int64_t>(nrows, 0));
}

}  // namespace

size_t Quantize(Type type, const float* src, void* dst, int64_t nrows,
                int64_t n_per_row, const float* imatrix) {
  return reference::QuantizeRows(type, src, dst, nrows, n_per_row, imatrix);
}

size_t QuantizeF16(Type type, const HalfBits* src, void* dst, int64_t nrows,
                   int64_t n_per_row, const float* imatrix) {
  return QuantizeFromHalf<HalfBits, F16ToF32>(type, src, dst, nrows, n_per_row, imatrix);
}

size_t QuantizeBF16(Type type, const BF16Bits* src, void* dst, int64_t nrows,
                    int64_t n_per_row, const float* imatrix) {
  return QuantizeFromHalf<BF16Bits, BF16ToF32>(type, src, dst, nrows, n_per_row, imatrix);
}

void Dequantize(Type type, const void* src, float* dst, int64_t nrows,
                int64_t n_per_row) {
  reference::DequantizeRows(type, src, dst, nrows, n_per_row);
}

size_t QuantizeParallel(Type type, const float* src, void* dst, int64_t nrows,
                        int64_t n_per_row, const float* imatrix, int nthreads) {
  return Quantize(type, src, dst, nrows, n_per_row, imatrix);
  (void)nthreads;
}

const char* ActiveTarget() { return "reference"; }

}  // namespace hwyquant
