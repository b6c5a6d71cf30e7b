// Hugging Face safetensors folders as a streaming ModelSource: the GGUF that
// convert_hf_to_gguf.py writes, produced one tensor at a time (for `convert`
// and `run`).
#ifndef HWYQUANT_PIPELINE_CONVERT_H_
#define HWYQUANT_PIPELINE_CONVERT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/hf_model.h"
#include "pipeline/model_source.h"
#include "pipeline/safetensors.h"

namespace CLI {
class App;
}

namespace hwyquant {

// convert_hf_to_gguf.py's --outtype values we support.
enum class OutType { kAuto, kF32, kF16, kBF16, kQ8_0 };
std::optional<OutType> ParseOutType(std::string_view name);  // "auto", "f16", ... (any case)

struct ConvertOptions {
  OutType outtype = OutType::kAuto;
  // For `run --from-source`: every tensor the converter would write as
  // f16/bf16/q8_0 keeps its checkpoint precision instead (f32, f16 or bf16;
  // other dtypes become f32), so a quantizer reads the original values rather
  // than the 16-bit intermediate.
  bool source_precision = false;
  // What general.name and friends are derived from, in place of the folder's
  // own name: a Hub snapshot folder is named by its commit, so `run ORG/NAME`
  // passes the repo id, as convert_hf_to_gguf.py --remote names by repo.
  std::string name_from;
};

// numpy's float32 -> float16 (astype), which convert_hf_to_gguf.py uses: round
// to nearest even; NaNs keep their top payload bits.
HalfBits NumpyF32ToF16(float value);

// One output tensor and where its data comes from.
struct ConvertPlan {
  const StEntry* source;  // null for a generated tensor
  std::vector<float> generated;
  RowTransform transform = RowTransform::kNone;
  int64_t groups = 0;
  // Added to every element in the checkpoint's arithmetic precision (f16 stays
  // f16, as torch adds), before the output conversion.
  float add = 0.0f;
};

class HfModelSource : public ModelSource {
 public:
  // Reads config.json, the tokenizer files and every safetensors header of dir;
  // tensor data is only read by LoadTensor. Throws Error naming the file and
  // field on any problem.
  HfModelSource(const std::string& dir, ConvertOptions options = {});

  std::string Describe() const override { return dir_; }
  const std::vector<GgufKv>& Metadata() const override { return kv_; }
  const std::vector<TensorDescriptor>& Tensors() const override { return tensors_; }
  TensorBytes LoadTensor(size_t index) override;
  // Every file of the folder but GGUF files: config, tokenizer and weights are read from there,
  // and a GGUF written into the model's folder (as convert_hf_to_gguf.py does by default) may be
  // replaced by the next one.
  std::vector<std::string> InputFiles() const override;

  // general.file_type as convert_hf_to_gguf.py sets it (auto resolved to f16 or
  // bf16).
  uint32_t file_type() const { return file_type_; }
  const HfArchitecture& architecture() const { return *arch_; }

 private:
  std::string dir_;
  ConvertOptions options_;
  std::unique_ptr<HfArchitecture> arch_;
  std::unique_ptr<SafetensorsModel> checkpoint_;
  std::vector<GgufKv> kv_;
  std::vector<TensorDescriptor> tensors_;
  std::vector<ConvertPlan> plans_;
  uint32_t file_type_ = 1;
};

// Streams any ModelSource into a GGUF file at out_path (temporary name, renamed
// when complete).
void WriteModelSource(ModelSource& source, const std::string& out_path);

// Adds `hwyquant convert HF_DIR OUT.gguf [--outtype ...]` and `hwyquant run SRC
// TYPE [-o OUT]` (pipeline/convert_command.cc, linked into the CLI).
void RegisterConvertCommands(CLI::App& app);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_CONVERT_H_
