// Console progress: a live line on terminals, one line per tensor elsewhere.
#include "pipeline/quantize_progress.h"

#include <unistd.h>

namespace hwyquant {

const char* QuantizeStageName(QuantizeStage stage) {
  switch (stage) {
    case QuantizeStage::kPlanning:
      return "planning";
    case QuantizeStage::kTensorDone:
      return "quantizing";
    case QuantizeStage::kFinishing:
      return "writing";
    case QuantizeStage::kDone:
      return "done";
  }
  return "unknown";
}

ConsoleProgress::ConsoleProgress(std::FILE* stream)
    : stream_(stream),
      live_(::isatty(::fileno(stream)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ConsoleProgress::ClearLiveLine() {
  if (live_ && line_shown_) {
    std::fputs("\r\x1b[K", stream_);
    line_shown_ = false;
  }
}

void ConsoleProgress::OnWarning(std::string_view message) {
  ClearLiveLine();
  std::fprintf(stream_, "warning: %.*s\n", static_cast<int>(message.size()), message.data());
  std::fflush(stream_);
}

void ConsoleProgress::OnProgress(const QuantizeProgress& p) {
  if (p.stage == QuantizeStage::kPlanning) {
    start_ = std::chrono::steady_clock::now();
    return;
  }
  if (p.stage != QuantizeStage::kTensorDone) {
    ClearLiveLine();
    return;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double mb_per_s = seconds > 0 ? p.bytes_done / 1e6 / seconds : 0.0;
  const int width = static_cast<int>(std::to_string(p.tensor_count).size());
  if (!live_) {
    std::fprintf(stream_, "[%*zu/%zu] %-36.*s %.*s\n", width, p.tensor_index, p.tensor_count,
                 static_cast<int>(p.tensor_name.size()), p.tensor_name.data(),
                 static_cast<int>(p.detail.size()), p.detail.data());
    std::fflush(stream_);
    return;
  }
  const double fraction =
      p.bytes_total > 0 ? static_cast<double>(p.bytes_done) / p.bytes_total : 1.0;
  const double eta = fraction > 0 && fraction < 1 ? seconds * (1 - fraction) / fraction : 0.0;
  std::fprintf(stream_, "\r\x1b[K[%*zu/%zu] %3.0f%% %8.1f MB/s  ETA %3d:%02d  %.*s", width,
               p.tensor_index, p.tensor_count, fraction * 100, mb_per_s, static_cast<int>(eta) / 60,
               static_cast<int>(eta) % 60, static_cast<int>(p.tensor_name.size()),
               p.tensor_name.data());
  std::fflush(stream_);
  line_shown_ = true;
}

}  // namespace hwyquant
