// One side of hwyquant-kernel-ab: quantizes with the kernels of one source tree.
//
// Built twice, each time with the hwyquant namespace renamed (-Dhwyquant=...) and its own entry
// point name (-DKERNEL_AB_ENTRY=...), so two trees' kernels, inline headers and all, can live in
// one process. Static dispatch: the compiler flags choose the target.
#include <stdint.h>
#include <stdio.h>

#include <exception>

#include "hwyquant/static-inl.h"

#ifndef KERNEL_AB_ENTRY
#error "define KERNEL_AB_ENTRY to this side's entry point name"
#endif

// Quantizes nrows rows of type (ggml's name); returns the target's name, or nullptr after
// printing why not.
extern "C" const char* KERNEL_AB_ENTRY(const char* type_name, const float* src, void* dst,
                                       int64_t nrows, int64_t n_per_row, const float* imatrix) {
  try {
    const hwyquant::TypeTraits* traits = hwyquant::FindTypeByName(type_name);
    if (traits == nullptr || !traits->quantizable) {
      fprintf(stderr, "hwyquant-kernel-ab: %s is not a type hwyquant quantizes\n", type_name);
      return nullptr;
    }
    hwyquant::kernels::HWY_STATIC_DISPATCH(QuantizeRows)(traits->type, src, dst, nrows, n_per_row,
                                                         imatrix);
    return hwy::TargetName(HWY_STATIC_TARGET);
  } catch (const std::exception& e) {
    fprintf(stderr, "hwyquant-kernel-ab: %s\n", e.what());
    return nullptr;
  }
}
