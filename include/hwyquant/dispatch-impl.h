// Definitions of hwyquant.h's functions with Highway dynamic dispatch over every x86 target.
// Include from exactly one .cc of a program (the hwyquant::dispatch library does so).
//
// Each target builds a KernelTable (hwyquant/static-inl.h); the best one the CPU supports is
// picked at the first call (and again after hwy::SetSupportedTargetsForTest). Arguments are
// validated once here. K-quant slots that are still null in a target's table are served by
// the scalar reference when it is on the include path (it is inside this project's build).
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL  // compile the AVX-512 VBMI/VNNI target too
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "hwyquant/static-inl.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwyquant/static-inl.h"

#if HWY_ONCE
#ifndef HWYQUANT_DISPATCH_IMPL_H_
#define HWYQUANT_DISPATCH_IMPL_H_

#include <algorithm>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "hwyquant/hwyquant.h"

#if __has_include("reference/reference.h")
#include "reference/reference.h"
#define HWYQUANT_HAVE_REFERENCE_FALLBACK 1
#else
#define HWYQUANT_HAVE_REFERENCE_FALLBACK 0
#endif

namespace hwyquant {
namespace kernels {

HWY_EXPORT(GetKernelTable);

namespace {

const KernelTable* ChosenTable() { return HWY_DYNAMIC_DISPATCH(GetKernelTable)(); }

#if HWYQUANT_HAVE_REFERENCE_FALLBACK
bool IsKQuant(Type type) {
  return type == Type::kQ2_K || type == Type::kQ3_K || type == Type::kQ4_K || type == Type::kQ5_K ||
         type == Type::kQ6_K;
}
#endif

// Runs the chosen target's quantizer, or the scalar reference for K types without a kernel.
void QuantizeWith(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                  const float* imatrix) {
  if (nrows == 0 || n_per_row == 0) return;
  const KernelTable* table = ChosenTable();
  const QuantizeRowsFn fn = table->quantize[TypeSlot(type)];
  if (fn != nullptr) {
    fn(src, dst, nrows, n_per_row, imatrix);
    return;
  }
#if HWYQUANT_HAVE_REFERENCE_FALLBACK
  if (IsKQuant(type)) {
    reference::QuantizeRows(type, src, dst, nrows, n_per_row, imatrix);
    return;
  }
#endif
  ThrowNoKernel("Quantize", type, table->target_name);
}

// Throws before any work when the type cannot be quantized at all.
void CheckQuantizable(const char* what, Type type) {
  const TypeTraits& traits = TraitsOf(type);
  const KernelTable* table = ChosenTable();
  if (table->quantize[TypeSlot(type)] != nullptr) return;
#if HWYQUANT_HAVE_REFERENCE_FALLBACK
  if (IsKQuant(type)) return;
#endif
  throw Error(std::string(what) + ": hwyquant cannot produce type " + traits.name);
}

void CheckDequantizable(const char* what, Type type) {
  const TypeTraits& traits = TraitsOf(type);
  const KernelTable* table = ChosenTable();
  if (table->dequantize[TypeSlot(type)] != nullptr) return;
#if HWYQUANT_HAVE_REFERENCE_FALLBACK
  if (IsKQuant(type)) return;
#endif
  throw Error(std::string(what) + ": hwyquant cannot expand type " + traits.name);
}

// Rows widened from 16-bit floats at a time: about 64 KiB of f32, at least one row.
int64_t WidenChunkRows(int64_t n_per_row) {
  constexpr int64_t kChunkFloats = 16384;
  return std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, n_per_row));
}

size_t QuantizeFromHalf(const char* what, Type type, const uint16_t* src, void* dst, int64_t nrows,
                        int64_t n_per_row, const float* imatrix, bool bf16) {
  const size_t row_size = CheckRowArguments(what, type, src, dst, nrows, n_per_row, dst);
  CheckQuantizable(what, type);
  if (nrows == 0 || n_per_row == 0) return 0;
  const KernelTable* table = ChosenTable();
  const WidenFn widen = bf16 ? table->widen_bf16 : table->widen_f16;
  const int64_t chunk_rows = std::min(nrows, WidenChunkRows(n_per_row));
  std::vector<float> scratch(static_cast<size_t>(chunk_rows * n_per_row));
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t row = 0; row < nrows; row += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, nrows - row);
    widen(src + row * n_per_row, scratch.data(), static_cast<size_t>(rows * n_per_row));
    QuantizeWith(type, scratch.data(), out + static_cast<size_t>(row) * row_size, rows, n_per_row,
                 imatrix);
  }
  return row_size * static_cast<size_t>(nrows);
}

}  // namespace
}  // namespace kernels

size_t Quantize(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                const float* imatrix) {
  const size_t row_size =
      kernels::CheckRowArguments("Quantize", type, src, dst, nrows, n_per_row, dst);
  kernels::CheckQuantizable("Quantize", type);
  kernels::QuantizeWith(type, src, dst, nrows, n_per_row, imatrix);
  return row_size * static_cast<size_t>(nrows);
}

size_t QuantizeF16(Type type, const HalfBits* src, void* dst, int64_t nrows, int64_t n_per_row,
                   const float* imatrix) {
  return kernels::QuantizeFromHalf("QuantizeF16", type, src, dst, nrows, n_per_row, imatrix,
                                   /*bf16=*/false);
}

size_t QuantizeBF16(Type type, const BF16Bits* src, void* dst, int64_t nrows, int64_t n_per_row,
                    const float* imatrix) {
  return kernels::QuantizeFromHalf("QuantizeBF16", type, src, dst, nrows, n_per_row, imatrix,
                                   /*bf16=*/true);
}

void Dequantize(Type type, const void* src, float* dst, int64_t nrows, int64_t n_per_row) {
  kernels::CheckRowArguments("Dequantize", type, src, dst, nrows, n_per_row, src);
  kernels::CheckDequantizable("Dequantize", type);
  if (nrows == 0 || n_per_row == 0) return;
  const kernels::KernelTable* table = kernels::ChosenTable();
  const kernels::DequantizeRowsFn fn = table->dequantize[kernels::TypeSlot(type)];
  if (fn != nullptr) {
    fn(src, dst, nrows, n_per_row);
    return;
  }
#if HWYQUANT_HAVE_REFERENCE_FALLBACK
  reference::DequantizeRows(type, src, dst, nrows, n_per_row);
#endif
}

size_t QuantizeParallel(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                        const float* imatrix, int nthreads) {
  const size_t row_size =
      kernels::CheckRowArguments("QuantizeParallel", type, src, dst, nrows, n_per_row, dst);
  kernels::CheckQuantizable("QuantizeParallel", type);
  if (nthreads < 0) {
    throw Error("QuantizeParallel: negative thread count " + std::to_string(nthreads));
  }
  int64_t threads = nthreads == 0 ? static_cast<int64_t>(std::thread::hardware_concurrency())
                                  : static_cast<int64_t>(nthreads);
  threads = std::max<int64_t>(1, std::min(threads, nrows));
  if (threads <= 1) {
    kernels::QuantizeWith(type, src, dst, nrows, n_per_row, imatrix);
    return row_size * static_cast<size_t>(nrows);
  }
  // Resolve the target on this thread so workers only read the dispatch table.
  (void)kernels::ChosenTable();
  std::vector<std::thread> workers;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t begin = nrows * t / threads;
    const int64_t end = nrows * (t + 1) / threads;
    workers.emplace_back([=, &errors] {
      try {
        kernels::QuantizeWith(type, src + begin * n_per_row,
                              out + static_cast<size_t>(begin) * row_size, end - begin, n_per_row,
                              imatrix);
      } catch (...) {
        errors[static_cast<size_t>(t)] = std::current_exception();
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return row_size * static_cast<size_t>(nrows);
}

const char* ActiveTarget() { return kernels::ChosenTable()->target_name; }

}  // namespace hwyquant

#endif  // HWYQUANT_DISPATCH_IMPL_H_
#endif  // HWY_ONCE
