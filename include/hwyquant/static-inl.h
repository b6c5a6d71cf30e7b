// Per-target kernel table and type-dispatched entry points; usable alone with static dispatch.
//
// Static dispatch (header-only; only the Highway headers are needed, no libhwy):
//   #include "hwyquant/static-inl.h"
//   hwyquant::kernels::HWY_STATIC_DISPATCH(QuantizeRows)(hwyquant::Type::kQ8_0, src, dst,
//                                                         nrows, n_per_row, imatrix);
//   hwyquant::kernels::HWY_STATIC_DISPATCH(DequantizeRows)(type, src, dst, nrows, n_per_row);
// Both validate their arguments and throw hwyquant::Error. Dynamic dispatch over every target
// (what hwyquant.h's functions use) is in hwyquant/dispatch-impl.h, which re-includes this file
// once per target.

// Non-target part: the table layout and argument checks, compiled once.
#ifndef HWYQUANT_STATIC_SHARED_H_
#define HWYQUANT_STATIC_SHARED_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

namespace hwyquant::kernels {

// Rows of n_per_row weights; dst / src are whole rows of the type's blocks.
using QuantizeRowsFn = void (*)(const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                                const float* imatrix);
using DequantizeRowsFn = void (*)(const void* src, float* dst, int64_t nrows, int64_t n_per_row);
// Widens n 16-bit floats (f16 or bf16) to f32.
using WidenFn = void (*)(const uint16_t* src, float* dst, size_t n);

// One slot per GGUF type id (0 .. kQ2_0).
inline constexpr size_t kTypeSlots = static_cast<size_t>(Type::kQ2_0) + 1;

// What one SIMD target offers. A null entry means this target has no kernel for the type.
struct KernelTable {
  QuantizeRowsFn quantize[kTypeSlots];
  DequantizeRowsFn dequantize[kTypeSlots];
  WidenFn widen_f16;
  WidenFn widen_bf16;
  const char* target_name;
};

inline size_t TypeSlot(Type type) { return static_cast<size_t>(type); }

// Shared argument validation of every public entry point. Returns the row size in bytes.
// `blocks` is whichever of src and dst holds the typed blocks; the other side is a typed
// float or half pointer, aligned by its type already.
inline size_t CheckRowArguments(const char* what, Type type, const void* src, const void* dst,
                                int64_t nrows, int64_t n_per_row, const void* blocks) {
  const TypeTraits* traits = FindType(type);
  if (traits == nullptr) {
    throw Error(std::string(what) + ": unknown GGUF type id " +
                std::to_string(static_cast<uint32_t>(type)));
  }
  if (nrows < 0 || n_per_row < 0) {
    throw Error(std::string(what) + ": negative shape (" + std::to_string(nrows) + " rows of " +
                std::to_string(n_per_row) + " weights)");
  }
  if (n_per_row % traits->block_size != 0) {
    throw Error(std::string(what) + ": row length " + std::to_string(n_per_row) +
                " is not a multiple of the " + traits->name + " block size " +
                std::to_string(traits->block_size));
  }
  if (nrows > 0 && n_per_row > 0 && (src == nullptr || dst == nullptr)) {
    throw Error(std::string(what) + ": null source or destination buffer");
  }
  // Blocks start with f16 fields (f32 rows with floats): pointers must be aligned for them,
  // as for any C++ object; an odd address is reported instead of being undefined behavior.
  const uintptr_t alignment = type == Type::kF32 ? alignof(float) : alignof(HalfBits);
  if (reinterpret_cast<uintptr_t>(blocks) % alignment != 0) {
    throw Error(std::string(what) + ": " + traits->name + " buffers must be " +
                std::to_string(alignment) + "-byte aligned");
  }
  const size_t row_size = RowSize(type, n_per_row);
  if (nrows > 0 && row_size > 0 && static_cast<uint64_t>(nrows) > (~uint64_t{0} >> 1) / row_size) {
    throw Error(std::string(what) + ": " + std::to_string(nrows) + " rows of " +
                std::to_string(n_per_row) + " weights overflow the address space");
  }
  return row_size;
}

[[noreturn]] inline void ThrowNoKernel(const char* what, Type type, const char* target) {
  throw Error(std::string(what) + ": no kernel for type " + TypeName(type) + " on target " +
              target);
}

}  // namespace hwyquant::kernels

#endif  // HWYQUANT_STATIC_SHARED_H_

#if defined(HWYQUANT_STATIC_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_STATIC_INL_H_
#undef HWYQUANT_STATIC_INL_H_
#else
#define HWYQUANT_STATIC_INL_H_
#endif

#include "hwy/highway.h"
#include "hwy/targets.h"
#include "hwyquant/simd/common-inl.h"
#include "hwyquant/simd/float-inl.h"
#include "hwyquant/simd/half-inl.h"
#include "hwyquant/simd/q2_k-inl.h"
#include "hwyquant/simd/q3_k-inl.h"
#include "hwyquant/simd/q4_0-inl.h"
#include "hwyquant/simd/q4_1-inl.h"
#include "hwyquant/simd/q4_k-inl.h"
#include "hwyquant/simd/q5_0-inl.h"
#include "hwyquant/simd/q5_1-inl.h"
#include "hwyquant/simd/q5_k-inl.h"
#include "hwyquant/simd/q6_k-inl.h"
#include "hwyquant/simd/q8_0-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

// Table entries for codecs with whole-call QuantizeRows / DequantizeRows (legacy, float).
template <class Codec>
void QuantizeRowsEntry(const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                       const float* imatrix) {
  Codec::QuantizeRows(FloatTag(), src, static_cast<typename Codec::Block*>(dst), nrows, n_per_row,
                      imatrix);
}
template <class Codec>
void DequantizeRowsEntry(const void* src, float* dst, int64_t nrows, int64_t n_per_row) {
  Codec::DequantizeRows(FloatTag(), static_cast<const typename Codec::Block*>(src), dst, nrows,
                        n_per_row);
}

// Table entries for codecs that work one row at a time: QuantizeRow(df, x, y, n, imatrix) and
// DequantizeRow(df, y, x, n) (the K-quant codecs use this shape).
template <class Codec>
void QuantizeEachRowEntry(const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                          const float* imatrix) {
  auto* out = static_cast<typename Codec::Block*>(dst);
  const int64_t blocks_per_row = n_per_row / TraitsOf(Codec::kType).block_size;
  for (int64_t r = 0; r < nrows; ++r) {
    Codec::QuantizeRow(FloatTag(), src + r * n_per_row, out + r * blocks_per_row, n_per_row,
                       imatrix);
  }
}
template <class Codec>
void DequantizeEachRowEntry(const void* src, float* dst, int64_t nrows, int64_t n_per_row) {
  const auto* in = static_cast<const typename Codec::Block*>(src);
  const int64_t blocks_per_row = n_per_row / TraitsOf(Codec::kType).block_size;
  for (int64_t r = 0; r < nrows; ++r) {
    Codec::DequantizeRow(FloatTag(), in + r * blocks_per_row, dst + r * n_per_row, n_per_row);
  }
}

inline void WidenF16Entry(const uint16_t* src, float* dst, size_t n) {
  F16ToF32Array(FloatTag(), src, dst, n);
}
inline void WidenBF16Entry(const uint16_t* src, float* dst, size_t n) {
  BF16ToF32Array(FloatTag(), src, dst, n);
}

template <class Codec>
void AddCodec(KernelTable& table) {
  table.quantize[TypeSlot(Codec::kType)] = &QuantizeRowsEntry<Codec>;
  table.dequantize[TypeSlot(Codec::kType)] = &DequantizeRowsEntry<Codec>;
}

// K-QUANT SLOT (q2_K .. q6_K): the K-quant SIMD codecs are wired in here, e.g.
//   table.quantize[TypeSlot(Type::kQ4_K)] = &QuantizeEachRowEntry<Q4KCodec>;
//   table.dequantize[TypeSlot(Type::kQ4_K)] = &DequantizeEachRowEntry<Q4KCodec>;
// (plus their #includes above). While a K slot is null, dispatch-impl.h serves that type from
// the scalar reference, and static dispatch reports "no kernel".
template <class Codec>
void AddKCodec(KernelTable& table) {
  table.quantize[TypeSlot(Codec::kType)] = &QuantizeEachRowEntry<Codec>;
  table.dequantize[TypeSlot(Codec::kType)] = &DequantizeEachRowEntry<Codec>;
}
inline void AddKQuantKernels(KernelTable& table) {
  AddKCodec<Q2KCodec>(table);
  AddKCodec<Q3KCodec>(table);
  AddKCodec<Q4KCodec>(table);
  AddKCodec<Q5KCodec>(table);
  AddKCodec<Q6KCodec>(table);
}

inline KernelTable MakeKernelTable() {
  KernelTable table = {};
  AddCodec<CodecF32>(table);
  AddCodec<CodecF16>(table);
  AddCodec<CodecBF16>(table);
  AddCodec<CodecQ4_0>(table);
  AddCodec<CodecQ4_1>(table);
  AddCodec<CodecQ5_0>(table);
  AddCodec<CodecQ5_1>(table);
  AddCodec<CodecQ8_0>(table);
  AddKQuantKernels(table);
  table.widen_f16 = &WidenF16Entry;
  table.widen_bf16 = &WidenBF16Entry;
  table.target_name = hwy::TargetName(HWY_TARGET);
  return table;
}

// This target's table (built once).
inline const KernelTable* GetKernelTable() {
  static const KernelTable table = MakeKernelTable();
  return &table;
}

// Quantizes nrows rows with this target's kernels; returns bytes written. Throws Error for bad
// arguments or a type this target has no kernel for.
inline size_t QuantizeRows(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                           const float* imatrix) {
  const size_t row_size = CheckRowArguments("QuantizeRows", type, src, dst, nrows, n_per_row, dst);
  const KernelTable* table = GetKernelTable();
  const QuantizeRowsFn fn = table->quantize[TypeSlot(type)];
  if (fn == nullptr) ThrowNoKernel("QuantizeRows", type, table->target_name);
  if (nrows > 0 && n_per_row > 0) fn(src, dst, nrows, n_per_row, imatrix);
  return row_size * static_cast<size_t>(nrows);
}

inline void DequantizeRows(Type type, const void* src, float* dst, int64_t nrows,
                           int64_t n_per_row) {
  CheckRowArguments("DequantizeRows", type, src, dst, nrows, n_per_row, src);
  const KernelTable* table = GetKernelTable();
  const DequantizeRowsFn fn = table->dequantize[TypeSlot(type)];
  if (fn == nullptr) ThrowNoKernel("DequantizeRows", type, table->target_name);
  if (nrows > 0 && n_per_row > 0) fn(src, dst, nrows, n_per_row);
}

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_STATIC_INL_H_
