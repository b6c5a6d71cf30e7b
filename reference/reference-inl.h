// Definitions behind reference.h: argument checks, then one codec per type, row by row.
#ifndef HWYQUANT_REFERENCE_REFERENCE_INL_H_
#define HWYQUANT_REFERENCE_REFERENCE_INL_H_

#include <cstring>
#include <string>

#include "hwyquant/format.h"

namespace hwyquant::reference {
namespace detail {

inline void CheckRowArguments(Type type, const void* src, const void* dst,
                              int64_t nrows, int64_t n_per_row) {
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
size_t QuantizeRowsWith(const float* src, void* dst, int64_t nrows,
                        int64_t n_per_row, const float* imatrix) {
  const size_t row_size = RowSize(Codec::kType, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t row = 0; row < nrows; ++row) {
    Codec::QuantizeRow(src + row * n_per_row,
                       reinterpret_cast<typename Codec::Block*>(out + row * row_size),
                       n_per_row, imatrix);
  }
  return row_size * static_cast<size_t>(nrows);
}

template <class Codec>
void DequantizeRowsWith(const void* src, float* dst, int64_t nrows,
                        int64_t n_per_row) {
  const size_t row_size = RowSize(Codec::kType, n_per_row);
  const auto* in = static_cast<const uint8_t*>(src);
  for (int64_t row = 0; row < nrows; ++row) {
    Codec::DequantizeRow(
        reinterpret_cast<const typename Codec::Block*>(in + row * row_size),
        dst + row * n_per_row, n_per_row);
  }
}

[[noreturn]] inline void ThrowUnsupported(Type type) {
  throw Error(std::string("the reference has no quantizer for type ") +
              TypeName(type));
}

}  // namespace detail

inline size_t QuantizeRows(Type type, const float* src, void* dst, int64_t nrows,
                           int64_t n_per_row, const float* imatrix) {
  detail::CheckRowArguments(type, src, dst, nrows, n_per_row);
  switch (type) {
    case Type::kF32: {
      const size_t bytes = static_cast<size_t>(nrows * n_per_row) * sizeof(float);
      if (bytes != 0) std::memcpy(dst, src, bytes);
      return bytes;
    }
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
    default:
      detail::ThrowUnsupported(type);
  }
}

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_REFERENCE_INL_H_
