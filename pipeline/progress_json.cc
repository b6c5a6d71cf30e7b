// JSON-lines progress protocol shared by the CLI commands (writer) and `hwyquant serve` (parser).
#include "pipeline/progress_json.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline/hf_hub.h"

namespace hwyquant {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void WriteAll(int fd, const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // A closed progress pipe must not kill the command doing the real work.
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

std::string TensorCounter(int64_t index, int64_t count) {
  int width = 4;
  for (int64_t c = count; c >= 10000; c /= 10) ++width;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "[%*lld/%*lld]", width, static_cast<long long>(index), width,
                static_cast<long long>(count));
  return buf;
}

std::string ProgressEventToJson(const ProgressEvent& event) {
  nlohmann::json j;
  j["stage"] = event.stage;
  j["done"] = event.done;
  j["total"] = event.total;
  if (!event.unit.empty()) j["unit"] = event.unit;
  if (!event.message.empty()) j["message"] = event.message;
  if (!event.tensor.empty()) j["tensor"] = event.tensor;
  if (event.tensor_index >= 0) j["tensor_index"] = event.tensor_index;
  if (event.tensor_count >= 0) j["tensor_count"] = event.tensor_count;
  for (const auto& [key, value] : event.metrics) j["metrics"][key] = value;
  // Replace invalid UTF-8 (tensor names come from files) instead of throwing mid-run.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<ProgressEvent> ParseProgressLine(const std::string& line) {
  size_t start = line.find_first_not_of(" \t\r");
  if (start == std::string::npos || line[start] != '{') return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("stage") || !j["stage"].is_string()) return std::nullopt;
  ProgressEvent event;
  event.stage = j["stage"].get<std::string>();
  auto get_u64 = [&](const char* key) -> uint64_t {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return 0;
    if (it->is_number_unsigned()) return it->get<uint64_t>();
    if (it->is_number_integer()) return it->get<int64_t>() < 0 ? 0 : it->get<int64_t>();
    double d = it->get<double>();
    return d > 0 ? static_cast<uint64_t>(d) : 0;
  };
  auto get_str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto get_i64 = [&](const char* key) -> int64_t {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
  };
  event.done = get_u64("done");
  event.total = get_u64("total");
  event.unit = get_str("unit");
  event.message = get_str("message");
  event.tensor = get_str("tensor");
  event.tensor_index = get_i64("tensor_index");
  event.tensor_count = get_i64("tensor_count");
  auto metrics = j.find("metrics");
  if (metrics != j.end() && metrics->is_object()) {
    for (auto it = metrics->begin(); it != metrics->end(); ++it) {
      if (it.value().is_number()) event.metrics[it.key()] = it.value().get<double>();
    }
  }
  return event;
}

ProgressJsonSink::ProgressJsonSink(int fd) : fd_(fd), start_seconds_(NowSeconds()) {
  if (const char* delay = std::getenv("HWYQUANT_PROGRESS_DELAY_MS")) {
    delay_ms_ = std::atoi(delay);
    if (delay_ms_ < 0 || delay_ms_ > 60000) delay_ms_ = 0;
  }
}

void ProgressJsonSink::Emit(ProgressEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    event.metrics["elapsed_seconds"] = NowSeconds() - start_seconds_;
    WriteAll(fd_, ProgressEventToJson(event) + "\n");
  }
  if (delay_ms_ > 0 && event.stage != "done" && event.stage != "error") {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
  }
}

void ProgressJsonSink::Tensor(const std::string& stage, int64_t index, int64_t count,
                              const std::string& tensor, uint64_t done, uint64_t total,
                              const std::string& unit) {
  ProgressEvent event;
  event.stage = stage;
  event.done = done;
  event.total = total;
  event.unit = unit;
  event.tensor = tensor;
  event.tensor_index = index;
  event.tensor_count = count;
  event.message = TensorCounter(index, count) + " " + stage + " " + tensor;
  Emit(std::move(event));
}

void ProgressJsonSink::Done(const std::string& output_path, uint64_t file_bytes,
                            uint64_t tensor_bytes, uint64_t n_weights) {
  ProgressEvent event;
  event.stage = "done";
  event.done = 1;
  event.total = 1;
  event.message = "wrote " + output_path;
  event.metrics["output_bytes"] = static_cast<double>(file_bytes);
  if (n_weights > 0) {
    event.metrics["n_weights"] = static_cast<double>(n_weights);
    event.metrics["bits_per_weight"] =
        static_cast<double>(tensor_bytes) * 8.0 / static_cast<double>(n_weights);
  }
  Emit(std::move(event));
}

void QuantizeProgressJson::OnProgress(const QuantizeProgress& progress) {
  switch (progress.stage) {
    case QuantizeStage::kPlanning: {
      ProgressEvent event;
      event.stage = "quantizing";
      event.done = 0;
      event.total = progress.weights_total;
      event.unit = "weights";
      event.tensor_index = 0;
      event.tensor_count = static_cast<int64_t>(progress.tensor_count);
      event.message = "planned " + std::to_string(progress.tensor_count) + " tensors";
      sink_->Emit(std::move(event));
      break;
    }
    case QuantizeStage::kTensorDone: {
      ProgressEvent event;
      event.stage = "quantizing";
      event.done = progress.weights_done;
      event.total = progress.weights_total;
      event.unit = "weights";
      event.tensor = std::string(progress.tensor_name);
      event.tensor_index = static_cast<int64_t>(progress.tensor_index);
      event.tensor_count = static_cast<int64_t>(progress.tensor_count);
      event.message =
          TensorCounter(event.tensor_index, event.tensor_count) + " quantizing " + event.tensor;
      if (!progress.detail.empty()) event.message += " " + std::string(progress.detail);
      event.metrics["bytes_read"] = static_cast<double>(progress.bytes_done);
      sink_->Emit(std::move(event));
      break;
    }
    case QuantizeStage::kFinishing: {
      ProgressEvent event;
      event.stage = "writing";
      event.done = progress.weights_done;
      event.total = progress.weights_total;
      event.unit = "weights";
      event.message = "finishing the output file";
      sink_->Emit(std::move(event));
      break;
    }
    case QuantizeStage::kDone:
      break;  // the command reports "done" with the file size once the file is in place
  }
}

void QuantizeProgressJson::OnWarning(std::string_view message) {
  ProgressEvent event;
  event.stage = "warning";
  event.message = std::string(message);
  sink_->Emit(std::move(event));
}

void EmitDownloadProgress(ProgressJsonSink& sink, const hf::DownloadProgress& progress) {
  ProgressEvent event;
  event.stage = "downloading";
  event.done = progress.done;
  event.total = progress.total;
  event.unit = "bytes";
  char mb[96];
  std::snprintf(mb, sizeof(mb), " (%.1f/%.1f MB)", progress.file_done / 1e6,
                progress.file_total / 1e6);
  event.message = "downloading " + progress.file + mb;
  event.metrics["bytes_downloaded"] = static_cast<double>(progress.done);
  sink.Emit(std::move(event));
}

void ProgressJsonSink::Failed(const std::string& message) {
  ProgressEvent event;
  event.stage = "error";
  event.message = message;
  Emit(std::move(event));
}

}  // namespace hwyquant
