// Error statistics of a quantized tensor against its original weights (hwyquant quantize --stats).
#ifndef HWYQUANT_PIPELINE_QUANTIZE_STATS_H_
#define HWYQUANT_PIPELINE_QUANTIZE_STATS_H_

#include <cstdint>

#include "pipeline/quantize.h"

namespace hwyquant {

// Activations per statistics batch: enough columns for a stable output-error estimate.
inline constexpr int kStatsBatch = 16;

// RMSE and max |error| over all weights, and ||W x - W' x|| / ||W x|| for kStatsBatch random
// activation vectors x (deterministic from seed), with W as rows x n_per_row. Computed in double.
TensorStats ComputeTensorStats(const float* original, const float* restored, int64_t n_per_row,
                               int64_t rows, uint64_t seed);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_QUANTIZE_STATS_H_
