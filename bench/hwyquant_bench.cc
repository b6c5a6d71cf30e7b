// hwyquant-bench: throughput of every SIMD target x type x op x thread count, and the speedup
// over the scalar reference measured in the same run.
//
//   hwyquant-bench [--json] [--quick] [--types q4_0,q8_0] [--targets AVX2,AVX3]
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hwy/targets.h"
#include "hwyquant/format.h"
#include "hwyquant/hwyquant.h"
#include "reference/reference.h"

namespace hwyquant {
namespace {

// f32 (a plain copy) is the memory-bandwidth baseline the others can be compared with.
constexpr Type kBenchTypes[] = {Type::kF32,  Type::kF16,  Type::kBF16, Type::kQ4_0, Type::kQ4_1,
                                Type::kQ5_0, Type::kQ5_1, Type::kQ8_0, Type::kQ2_K, Type::kQ3_K,
                                Type::kQ4_K, Type::kQ5_K, Type::kQ6_K};
const char* const kOps[] = {"quantize", "quantize_imatrix", "dequantize"};

struct Options {
  bool json = false;
  bool quick = false;
  std::set<std::string> types;    // empty: all
  std::set<std::string> targets;  // empty: all
};

std::set<std::string> SplitList(const char* list) {
  std::set<std::string> out;
  std::string item;
  for (const char* p = list;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (!item.empty()) out.insert(item);
      item.clear();
      if (*p == '\0') break;
    } else {
      item += *p;
    }
  }
  return out;
}

[[noreturn]] void Usage(const char* message) {
  fprintf(stderr,
          "hwyquant-bench: %s\nusage: hwyquant-bench [--json] [--quick] [--types t1,t2] "
          "[--targets AVX2,AVX3]\n",
          message);
  exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      options.json = true;
    } else if (arg == "--quick") {
      options.quick = true;
    } else if ((arg == "--types" || arg == "--targets") && i + 1 < argc) {
      (arg == "--types" ? options.types : options.targets) = SplitList(argv[++i]);
    } else {
      Usage(("unknown argument " + arg).c_str());
    }
  }
  for (const std::string& name : options.types) {
    const TypeTraits* traits = FindTypeByName(name);
    if (traits == nullptr || std::find(std::begin(kBenchTypes), std::end(kBenchTypes),
                                       traits->type) == std::end(kBenchTypes)) {
      Usage(("unknown or unbenchmarked type " + name).c_str());
    }
  }
  return options;
}

// Runs body(begin_row, end_row) on `threads` threads over nrows rows.
void SplitRows(int threads, int64_t nrows, const std::function<void(int64_t, int64_t)>& body) {
  if (threads <= 1) {
    body(0, nrows);
    return;
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = nrows * t / threads;
    const int64_t end = nrows * (t + 1) / threads;
    workers.emplace_back([&body, begin, end] { body(begin, end); });
  }
  for (std::thread& worker : workers) worker.join();
}

// Seconds of CPU time this thread has run: robust to other processes sharing the cores.
double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best throughput (weights per second) over a few timed repetitions of fn. Single-threaded
// runs are timed in thread CPU time (the machine may be shared); multi-threaded runs in wall
// time, which is what parallel speed means.
double MeasureWeightsPerSecond(const std::function<void()>& fn, double weights, double min_seconds,
                               bool cpu_time, int repetitions) {
  const auto now = cpu_time ? &ThreadCpuSeconds : &WallSeconds;
  fn();  // warm caches and the dispatch table
  double best = 0.0;
  for (int rep = 0; rep < repetitions; ++rep) {
    int iterations = 0;
    const double start = now();
    double elapsed = 0.0;
    do {
      fn();
      ++iterations;
      elapsed = now() - start;
    } while (elapsed < min_seconds);
    best = std::max(best, weights * iterations / elapsed);
  }
  return best;
}

struct Workload {
  int64_t nrows;
  int64_t n_per_row;
  std::vector<float> input;
  std::vector<float> imatrix;
  std::vector<uint8_t> quantized;
  std::vector<float> output;
};

Workload MakeWorkload(bool quick) {
  Workload w;
  w.nrows = quick ? 16 : 256;
  w.n_per_row = 4096;
  const size_t n = static_cast<size_t>(w.nrows * w.n_per_row);
  w.input.resize(n);
  uint64_t state = 0x1234567;
  for (float& v : w.input) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    // Roughly Gaussian weights: a sum of uniforms, scaled like an LLM layer.
    float sum = 0.0f;
    for (int k = 0; k < 4; ++k) {
      sum += static_cast<float>((state >> (16 * k)) & 0xFFFF) / 65536.0f - 0.5f;
    }
    v = sum * 0.04f;
  }
  w.imatrix.resize(static_cast<size_t>(w.n_per_row));
  for (size_t i = 0; i < w.imatrix.size(); ++i)
    w.imatrix[i] = 0.5f + static_cast<float>(i % 17) / 8.0f;
  w.quantized.resize(static_cast<size_t>(w.nrows * w.n_per_row) * sizeof(float) + 64);
  w.output.resize(n);
  return w;
}

// The operation `op` on type with either the dispatched API or the reference, on `threads`.
std::function<void()> MakeOp(Workload& w, Type type, const std::string& op, int threads,
                             bool reference_impl) {
  const size_t row_size = RowSize(type, w.n_per_row);
  const float* imatrix = op == "quantize_imatrix" ? w.imatrix.data() : nullptr;
  if (op == "dequantize") {
    return [&w, type, threads, row_size, reference_impl] {
      SplitRows(threads, w.nrows, [&](int64_t begin, int64_t end) {
        const uint8_t* src = w.quantized.data() + static_cast<size_t>(begin) * row_size;
        float* dst = w.output.data() + begin * w.n_per_row;
        if (reference_impl) {
          reference::DequantizeRows(type, src, dst, end - begin, w.n_per_row);
        } else {
          Dequantize(type, src, dst, end - begin, w.n_per_row);
        }
      });
    };
  }
  if (!reference_impl) {
    return [&w, type, threads, imatrix] {
      QuantizeParallel(type, w.input.data(), w.quantized.data(), w.nrows, w.n_per_row, imatrix,
                       threads);
    };
  }
  return [&w, type, threads, row_size, imatrix] {
    SplitRows(threads, w.nrows, [&](int64_t begin, int64_t end) {
      reference::QuantizeRows(type, w.input.data() + begin * w.n_per_row,
                              w.quantized.data() + static_cast<size_t>(begin) * row_size,
                              end - begin, w.n_per_row, imatrix);
    });
  };
}

// The bytes the last run of op left: the quantized rows, or the dequantized floats.
std::vector<uint8_t> OutputOf(const Workload& w, Type type, const std::string& op) {
  const uint8_t* begin =
      op == "dequantize" ? reinterpret_cast<const uint8_t*>(w.output.data()) : w.quantized.data();
  const size_t size = op == "dequantize"
                          ? w.output.size() * sizeof(float)
                          : RowSize(type, w.n_per_row) * static_cast<size_t>(w.nrows);
  return std::vector<uint8_t>(begin, begin + size);
}

int Run(const Options& options) {
  Workload w = MakeWorkload(options.quick);
  const double weights = static_cast<double>(w.nrows * w.n_per_row);
  // --quick must finish within 40 s on a shared 2-core machine: short, fewer repetitions.
  const double min_seconds = options.quick ? 0.006 : 0.15;
  const int repetitions = options.quick ? 2 : 3;
  const int all_cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<int> thread_counts = {1};
  if (all_cores > 1) thread_counts.push_back(all_cores);

  std::vector<Type> types;
  for (const Type type : kBenchTypes) {
    if (options.types.empty() || options.types.count(TypeName(type))) types.push_back(type);
  }
  std::vector<int64_t> targets;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (options.targets.empty() || options.targets.count(hwy::TargetName(target))) {
      targets.push_back(target);
    }
  }
  if (targets.empty()) Usage("no selected target is supported by this CPU");

  // The reference once per type x op x threads; valid quantized bytes for dequantize first. Its
  // output is kept, and every kernel measured must reproduce it, so that a wrong kernel cannot
  // report a throughput.
  std::map<std::string, double> reference_rate;
  std::map<std::string, std::vector<uint8_t>> reference_output;
  for (const Type type : types) {
    for (const char* op : kOps) {
      for (const int threads : thread_counts) {
        if (std::string(op) == "dequantize") {
          reference::QuantizeRows(type, w.input.data(), w.quantized.data(), w.nrows, w.n_per_row,
                                  nullptr);
        }
        const std::string type_op = std::string(TypeName(type)) + "/" + op;
        reference_rate[type_op + "/" + std::to_string(threads)] = MeasureWeightsPerSecond(
            MakeOp(w, type, op, threads, true), weights, min_seconds, threads == 1, repetitions);
        if (threads == 1) reference_output[type_op] = OutputOf(w, type, op);
      }
    }
  }

  int mismatches = 0;
  if (!options.json) {
    printf("%-8s %-6s %-17s %7s %12s %9s %9s\n", "target", "type", "op", "threads", "Mweights/s",
           "GB/s_f32", "speedup");
  }
  for (const int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    const char* target_name = hwy::TargetName(target);
    for (const Type type : types) {
      for (const char* op : kOps) {
        for (const int threads : thread_counts) {
          if (std::string(op) == "dequantize") {
            Quantize(type, w.input.data(), w.quantized.data(), w.nrows, w.n_per_row);
          }
          const double rate = MeasureWeightsPerSecond(MakeOp(w, type, op, threads, false), weights,
                                                      min_seconds, threads == 1, repetitions);
          const std::string type_op = std::string(TypeName(type)) + "/" + op;
          const std::vector<uint8_t> output = OutputOf(w, type, op);
          const std::vector<uint8_t>& expected = reference_output[type_op];
          if (output != expected) {
            const size_t at = static_cast<size_t>(
                std::mismatch(output.begin(), output.end(), expected.begin()).first -
                output.begin());
            fprintf(stderr,
                    "hwyquant-bench: %s %s %s on %d thread(s) differs from the reference at "
                    "byte %zu of %zu (row %zu)\n",
                    target_name, TypeName(type), op, threads, at, output.size(),
                    at / (output.size() / static_cast<size_t>(w.nrows)));
            mismatches++;
          }
          const double speedup = rate / reference_rate[type_op + "/" + std::to_string(threads)];
          if (options.json) {
            printf(
                "{\"target\":\"%s\",\"type\":\"%s\",\"op\":\"%s\",\"threads\":%d,"
                "\"mweights_per_s\":%.2f,\"gb_per_s_f32\":%.3f,\"speedup_vs_reference\":%.3f}\n",
                target_name, TypeName(type), op, threads, rate / 1e6, rate * 4 / 1e9, speedup);
          } else {
            printf("%-8s %-6s %-17s %7d %12.1f %9.2f %8.2fx\n", target_name, TypeName(type), op,
                   threads, rate / 1e6, rate * 4 / 1e9, speedup);
          }
          fflush(stdout);
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  return mismatches == 0 ? 0 : 1;
}

}  // namespace
}  // namespace hwyquant

int main(int argc, char** argv) {
  try {
    return hwyquant::Run(hwyquant::ParseOptions(argc, argv));
  } catch (const std::exception& e) {
    fprintf(stderr, "hwyquant-bench: %s\n", e.what());
    return 1;
  }
}
