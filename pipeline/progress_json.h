// Machine-readable progress: one JSON object per line, written by a command and parsed by a
// supervisor.
//
// `hwyquant run|quantize --progress-json` write these lines on stderr; `hwyquant serve` reads them
// from its child processes. Keeping the writer and the parser in one file keeps the protocol in one
// place. A line looks like
//   {"stage":"quantizing","done":1234,"total":5678,"unit":"weights","message":"[ 2/ 9] quantizing
//    blk.0.attn_k.weight","tensor_index":2,"tensor_count":9,"bytes_written":4096}
// and the last line of a successful run is {"stage":"done",...} with the final metrics.
#ifndef HWYQUANT_PIPELINE_PROGRESS_JSON_H_
#define HWYQUANT_PIPELINE_PROGRESS_JSON_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "pipeline/quantize_progress.h"

namespace hwyquant {

namespace hf {
struct DownloadProgress;
}

// One progress report. `done`/`total` count the stage's real work in `unit` ("bytes" downloaded or
// read, "weights" quantized, "tensors" when nothing finer is known), so a supervisor can weight
// stages by cost instead of by step count.
struct ProgressEvent {
  std::string stage;  // "downloading", "converting", "quantizing", "writing", "done", "error"
  uint64_t done = 0;
  uint64_t total = 0;
  std::string unit;
  std::string message;
  std::string tensor;         // tensor being processed, if any
  int64_t tensor_index = -1;  // 1-based position of `tensor` among `tensor_count`
  int64_t tensor_count = -1;
  // Numeric extras, e.g. bytes_written, n_weights, bits_per_weight, output_bytes.
  std::map<std::string, double> metrics;
};

// Serializes an event as a single JSON line (no trailing newline).
std::string ProgressEventToJson(const ProgressEvent& event);

// Parses a line written by ProgressEventToJson. Returns nullopt for anything else (plain log lines
// interleaved on the same stream), never throws.
std::optional<ProgressEvent> ParseProgressLine(const std::string& line);

// The sink behind --progress-json: thread-safe, one write(2) per event so lines from concurrent
// threads never interleave. Tracks elapsed time and adds it to every event.
class ProgressJsonSink {
 public:
  // Writes to file descriptor `fd` (2 = stderr). The sink does not own the descriptor.
  explicit ProgressJsonSink(int fd = 2);

  void Emit(ProgressEvent event);

  // Convenience for the common per-tensor report: "[ 234/ 567] quantizing blk.5.attn_k.weight".
  void Tensor(const std::string& stage, int64_t index, int64_t count, const std::string& tensor,
              uint64_t done, uint64_t total, const std::string& unit);

  // Final line of a successful command. bits_per_weight counts tensor data only (as
  // llama-quantize's "quant size" line), file_size the whole file.
  void Done(const std::string& output_path, uint64_t file_bytes, uint64_t tensor_bytes,
            uint64_t n_weights);
  // For outputs that are not tensors of weights (e.g. a fetched snapshot).
  void Done(const std::string& output_path, uint64_t file_bytes, uint64_t n_weights) {
    Done(output_path, file_bytes, file_bytes, n_weights);
  }

  void Failed(const std::string& message);

 private:
  int fd_;
  std::mutex mutex_;
  double start_seconds_;
  // Test and demo knob: HWYQUANT_PROGRESS_DELAY_MS pauses after every event so a supervisor's stop
  // and crash handling can be exercised on models that otherwise finish in milliseconds.
  int delay_ms_ = 0;
};

// QuantizeProgressListener that reports through a ProgressJsonSink: one "quantizing" line per
// tensor, counting weights (the cost of quantization), plus "warning" lines.
class QuantizeProgressJson : public QuantizeProgressListener {
 public:
  explicit QuantizeProgressJson(ProgressJsonSink* sink) : sink_(sink) {}
  void OnProgress(const QuantizeProgress& progress) override;
  void OnWarning(std::string_view message) override;

 private:
  ProgressJsonSink* sink_;
};

// Hub download progress as "downloading" lines counting bytes; pass as fetch's on_progress.
void EmitDownloadProgress(ProgressJsonSink& sink, const hf::DownloadProgress& progress);

// Formats the llama-quantize style prefix "[ 234/ 567]" (index right-aligned to count's width).
std::string TensorCounter(int64_t index, int64_t count);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_PROGRESS_JSON_H_
