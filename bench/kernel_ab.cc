// hwyquant-kernel-ab: quantize throughput of two builds of the kernels (A and B) for one type,
// measured in one process, alternating A and B every round.
//
//   hwyquant-kernel-ab TYPE [--rounds N] [--imatrix] [--uniform]
//
// On a busy or throttling machine the speed of separate processes drifts by more than a small
// change; rounds of a fraction of a millisecond that alternate A and B see the same drift, so
// their ratio holds still. scripts/kernel-ab.sh builds A and B from two git revisions.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

extern "C" const char* kernel_ab_quantize_a(const char* type_name, const float* src, void* dst,
                                            int64_t nrows, int64_t n_per_row, const float* imatrix);
extern "C" const char* kernel_ab_quantize_b(const char* type_name, const float* src, void* dst,
                                            int64_t nrows, int64_t n_per_row, const float* imatrix);

namespace {

using Entry = decltype(&kernel_ab_quantize_a);

int Usage() {
  fprintf(stderr, "usage: hwyquant-kernel-ab TYPE [--rounds N] [--imatrix] [--uniform]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const char* type = argv[1];
  int rounds = 2000;
  bool use_imatrix = false;
  bool uniform = false;
  for (int i = 2; i < argc; ++i) {
    if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--imatrix")) {
      use_imatrix = true;
    } else if (!strcmp(argv[i], "--uniform")) {
      uniform = true;
    } else {
      return Usage();
    }
  }
  if (rounds < 1) return Usage();

  // 16 rows of 4096 weights: about 0.1-0.5 ms a call, inside L2 with its output.
  constexpr int64_t kRows = 16;
  constexpr int64_t kPerRow = 4096;
  std::vector<float> input(kRows * kPerRow);
  uint64_t state = 0x1234567;
  for (float& v : input) {
    float sum = 0.0f;
    for (int k = 0; k < (uniform ? 1 : 4); ++k) {  // a sum of four is roughly Gaussian
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      sum += static_cast<float>(state >> 40) / 16777216.0f - 0.5f;
    }
    v = sum * 0.04f;
  }
  std::vector<float> imatrix(kPerRow);
  for (size_t i = 0; i < imatrix.size(); ++i) imatrix[i] = 0.5f + static_cast<float>(i % 17) / 8;
  const float* weights = use_imatrix ? imatrix.data() : nullptr;
  // Room for f32 output, the largest per weight.
  std::vector<uint8_t> out_a(input.size() * 4), out_b(input.size() * 4);

  const char* target_a =
      kernel_ab_quantize_a(type, input.data(), out_a.data(), kRows, kPerRow, weights);
  if (target_a == nullptr) return 1;
  const char* target_b =
      kernel_ab_quantize_b(type, input.data(), out_b.data(), kRows, kPerRow, weights);
  if (target_b == nullptr) return 1;
  const bool identical = out_a == out_b;

  std::vector<double> time_a, time_b;
  for (int r = 0; r < rounds; ++r) {
    for (int side = 0; side < 2; ++side) {
      const bool a = (side == 0) == (r % 2 == 0);  // ABBA...: neither always goes first
      const Entry entry = a ? kernel_ab_quantize_a : kernel_ab_quantize_b;
      uint8_t* out = a ? out_a.data() : out_b.data();
      const auto start = std::chrono::steady_clock::now();
      entry(type, input.data(), out, kRows, kPerRow, weights);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      (a ? time_a : time_b).push_back(took.count());
    }
  }
  double total_a = 0, total_b = 0;
  std::vector<double> ratios;
  for (int r = 0; r < rounds; ++r) {
    total_a += time_a[r];
    total_b += time_b[r];
    ratios.push_back(time_a[r] / time_b[r]);
  }
  std::sort(ratios.begin(), ratios.end());
  const double weights_per_call = static_cast<double>(input.size());
  const double best_a = *std::min_element(time_a.begin(), time_a.end());
  const double best_b = *std::min_element(time_b.begin(), time_b.end());
  const auto quantile = [&](double q) { return ratios[static_cast<size_t>(q * (rounds - 1))]; };
  printf(
      "%s %s%s, %d rounds: A %s %.1f M weights/s (best %.1f), B %s %.1f (best %.1f), "
      "B/A %.3f (rounds' quartiles %.3f %.3f %.3f), output %s\n",
      type, uniform ? "uniform" : "gaussian", use_imatrix ? " with imatrix" : "", rounds, target_a,
      weights_per_call * rounds / total_a / 1e6, weights_per_call / best_a / 1e6, target_b,
      weights_per_call * rounds / total_b / 1e6, weights_per_call / best_b / 1e6, total_a / total_b,
      quantile(0.25), quantile(0.5), quantile(0.75), identical ? "identical" : "DIFFERS");
  return 0;
}
