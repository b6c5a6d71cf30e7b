// Quantization error statistics with Eigen: element errors and the error of W x.
#include "pipeline/quantize_stats.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

namespace hwyquant {

TensorStats ComputeTensorStats(const float* original, const float* restored, int64_t n_per_row,
                               int64_t rows, uint64_t seed) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RowMajor> w(original, rows, n_per_row);
  const Eigen::Map<const RowMajor> w_quant(restored, rows, n_per_row);
  TensorStats stats;
  const Eigen::MatrixXd difference = (w.cast<double>() - w_quant.cast<double>());
  const double count = static_cast<double>(rows) * static_cast<double>(n_per_row);
  stats.rmse = count > 0 ? std::sqrt(difference.squaredNorm() / count) : 0.0;
  stats.max_abs_error = count > 0 ? difference.cwiseAbs().maxCoeff() : 0.0;

  // Activations from a fixed-seed SplitMix64, uniform in [-1, 1): reproducible across runs.
  Eigen::MatrixXd x(n_per_row, kStatsBatch);
  uint64_t state = seed;
  for (int64_t i = 0; i < x.size(); ++i) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    x.data()[i] = static_cast<double>(z >> 11) / static_cast<double>(1ull << 52) - 1.0;
  }
  const Eigen::MatrixXd reference = w.cast<double>() * x;
  const double reference_norm = reference.norm();
  const double error_norm = (difference * x).norm();
  stats.relative_output_error = reference_norm > 0 ? error_norm / reference_norm : 0.0;
  return stats;
}

}  // namespace hwyquant
