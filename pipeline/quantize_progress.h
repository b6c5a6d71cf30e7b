// Progress of a quantization run: a small listener interface (reusable by the job server) and
// the console reporter behind `hwyquant quantize`.
#ifndef HWYQUANT_PIPELINE_QUANTIZE_PROGRESS_H_
#define HWYQUANT_PIPELINE_QUANTIZE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace hwyquant {

enum class QuantizeStage {
  kPlanning,    // types chosen, nothing written yet
  kTensorDone,  // one tensor quantized and written
  kFinishing,   // all data written, committing the file
  kDone,
};

const char* QuantizeStageName(QuantizeStage stage);

struct QuantizeProgress {
  QuantizeStage stage = QuantizeStage::kPlanning;
  size_t tensor_index = 0;  // 1-based index of the tensor just finished (kTensorDone)
  size_t tensor_count = 0;
  std::string_view tensor_name;
  // Source bytes read and weights processed so far, of the totals.
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  uint64_t weights_done = 0;
  uint64_t weights_total = 0;
  // One line about the tensor: shape, type change, sizes ("[4096, 4096] f32 -> q4_K, ...").
  std::string_view detail;
};

// Receives progress; called from the quantizing thread, between tensors.
class QuantizeProgressListener {
 public:
  virtual ~QuantizeProgressListener() = default;
  virtual void OnProgress(const QuantizeProgress& progress) = 0;
  // Warnings (shape fallbacks, missing imatrix entries) as they arise.
  virtual void OnWarning(std::string_view message) = 0;
};

// Console reporting on a stream (stderr): on a terminal a live status line (tensor i/N, MB/s,
// ETA); otherwise one line per tensor, suitable for logs.
class ConsoleProgress : public QuantizeProgressListener {
 public:
  explicit ConsoleProgress(std::FILE* stream);
  void OnProgress(const QuantizeProgress& progress) override;
  void OnWarning(std::string_view message) override;

 private:
  void ClearLiveLine();

  std::FILE* stream_;
  bool live_;
  bool line_shown_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_QUANTIZE_PROGRESS_H_
