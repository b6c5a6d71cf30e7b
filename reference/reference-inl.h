// Definitions behind reference.h: argument checks, then one codec per type, row by row.
#ifndef HWYQUANT_REFERENCE_REFERENCE_INL_H_
#define HWYQUANT_REFERENCE_REFERENCE_INL_H_

#include <cstring>
#include <string>

#include "hwyquant/format.h"
#include "reference/float.h"
#include "reference/q2_k.h"
#include "reference/q3_k.h"
#include "reference/q4_0.h"
#include "reference/q4_1.h"
#include "reference/q4_k.h"
#include "reference/q5_0.h"
#include "reference/q5_1.h"
#include "reference/q5_k.h"
#include "reference/q6_k.h"
#include "reference/q8_0.h"

namespace hwyquant::reference {
namespace detail {

inline void CheckRowArguments(Type type, const void* src, const void* dst, int64_t nrows,
                              int64_t n_per_row) {
  const TypeTraits& traits = TraitsOf(type);
  if (nrows < 0 || n_per_row < 0) {
    throw Error("negative shape: " + std::to_string(nrows) + " rows of " +
                std::to_string(n_per_row));
  }
  if (n_per_row % traits.block_size != 0) {
    throw Error(std::string("row length ") + std::to_string(n_per_row) +
                " is not a multiple of the " + traits.name + " block size " +
                std::to_string(traits.block_size));
  }
  if (nrows > 0 && n_per_row > 0 && (src == nullptr || dst == nullptr)) {
    throw Error("null source or destination buffer");
  }
}

// Runs Codec::QuantizeRow over each row; the codec sees one row and the row's imatrix.
template <class Codec>
size_t QuantizeRowsWith(const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                        const float* imatrix) {
  const size_t row_size = RowSize(Codec::kType, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t row = 0; row < nrows; ++row) {
    Codec::QuantizeRow(src + row * n_per_row,
                       reinterpret_cast<typename Codec::Block*>(out + row * row_size), n_per_row,
                       imatrix);
  }
  return row_size * static_cast<size_t>(nrows);
}

template <class Codec>
void DequantizeRowsWith(const void* src, float* dst, int64_t nrows, int64_t n_per_row) {
  const size_t row_size = RowSize(Codec::kType, n_per_row);
  const auto* in = static_cast<const uint8_t*>(src);
  for (int64_t row = 0; row < nrows; ++row) {
    Codec::DequantizeRow(reinterpret_cast<const typename Codec::Block*>(in + row * row_size),
                         dst + row * n_per_row, n_per_row);
  }
}

[[noreturn]] inline void ThrowUnsupported(Type type) {
  throw Error(std::string("the reference has no quantizer for type ") + TypeName(type));
}

}  // namespace detail

inline size_t QuantizeRows(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                           const float* imatrix) {
  detail::CheckRowArguments(type, src, dst, nrows, n_per_row);
  switch (type) {
    case Type::kF32: {
      const size_t bytes = static_cast<size_t>(nrows * n_per_row) * sizeof(float);
      if (bytes != 0) std::memcpy(dst, src, bytes);
      return bytes;
    }
    case Type::kF16:
      return detail::QuantizeRowsWith<F16>(src, dst, nrows, n_per_row, imatrix);
    case Type::kBF16:
      return detail::QuantizeRowsWith<BF16>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ4_0:
      return detail::QuantizeRowsWith<Q4_0>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ4_1:
      return detail::QuantizeRowsWith<Q4_1>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ5_0:
      return detail::QuantizeRowsWith<Q5_0>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ5_1:
      return detail::QuantizeRowsWith<Q5_1>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ8_0:
      return detail::QuantizeRowsWith<Q8_0>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ2_K:
      return detail::QuantizeRowsWith<Q2K>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ3_K:
      return detail::QuantizeRowsWith<Q3K>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ4_K:
      return detail::QuantizeRowsWith<Q4K>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ5_K:
      return detail::QuantizeRowsWith<Q5K>(src, dst, nrows, n_per_row, imatrix);
    case Type::kQ6_K:
      return detail::QuantizeRowsWith<Q6K>(src, dst, nrows, n_per_row, imatrix);
    default:
      detail::ThrowUnsupported(type);
  }
}

inline void DequantizeRows(Type type, const void* src, float* dst, int64_t nrows,
                           int64_t n_per_row) {
  detail::CheckRowArguments(type, src, dst, nrows, n_per_row);
  switch (type) {
    case Type::kF32: {
      const size_t bytes = static_cast<size_t>(nrows * n_per_row) * sizeof(float);
      if (bytes != 0) std::memcpy(dst, src, bytes);
      return;
    }
    case Type::kF16:
      return detail::DequantizeRowsWith<F16>(src, dst, nrows, n_per_row);
    case Type::kBF16:
      return detail::DequantizeRowsWith<BF16>(src, dst, nrows, n_per_row);
    case Type::kQ4_0:
      return detail::DequantizeRowsWith<Q4_0>(src, dst, nrows, n_per_row);
    case Type::kQ4_1:
      return detail::DequantizeRowsWith<Q4_1>(src, dst, nrows, n_per_row);
    case Type::kQ5_0:
      return detail::DequantizeRowsWith<Q5_0>(src, dst, nrows, n_per_row);
    case Type::kQ5_1:
      return detail::DequantizeRowsWith<Q5_1>(src, dst, nrows, n_per_row);
    case Type::kQ8_0:
      return detail::DequantizeRowsWith<Q8_0>(src, dst, nrows, n_per_row);
    case Type::kQ2_K:
      return detail::DequantizeRowsWith<Q2K>(src, dst, nrows, n_per_row);
    case Type::kQ3_K:
      return detail::DequantizeRowsWith<Q3K>(src, dst, nrows, n_per_row);
    case Type::kQ4_K:
      return detail::DequantizeRowsWith<Q4K>(src, dst, nrows, n_per_row);
    case Type::kQ5_K:
      return detail::DequantizeRowsWith<Q5K>(src, dst, nrows, n_per_row);
    case Type::kQ6_K:
      return detail::DequantizeRowsWith<Q6K>(src, dst, nrows, n_per_row);
    default:
      detail::ThrowUnsupported(type);
  }
}

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_REFERENCE_INL_H_
