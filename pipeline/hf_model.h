// Hugging Face model folders: config.json with transformers' defaults, the
// architecture rules of convert_hf_to_gguf.py (GGUF arch, hyperparameter KV,
// tensor names and transforms) and the general.* naming heuristics of gguf-py's
// Metadata.
#ifndef HWYQUANT_PIPELINE_HF_MODEL_H_
#define HWYQUANT_PIPELINE_HF_MODEL_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/gguf.h"

namespace hwyquant {

// Object key order matters for some files (added tokens, templates), as in
// Python's json.
using Json = nlohmann::ordered_json;

// Whole-file readers; throw Error naming the path.
std::string ReadTextFile(const std::string& path);
Json LoadJsonFile(const std::string& path);
// nullopt when the file does not exist.
std::optional<Json> LoadJsonFileIfExists(const std::string& path);

// Python truthiness of a JSON value (null, false, 0, "", [] and {} are false).
bool JsonTruthy(const Json& value);

// What happens to a source tensor's rows before it is written.
enum class RowTransform {
  kNone,
  kPermuteQ,  // llama's rotary reorder with n_head groups
  kPermuteK,  // the same with n_head_kv groups
};

// The architecture-specific part of a conversion.
class HfArchitecture {
 public:
  virtual ~HfArchitecture() = default;
  // config.json "architectures"[0], e.g. "LlamaForCausalLM"; GGUF arch, e.g.
  // "llama".
  virtual std::string hf_name() const = 0;
  virtual std::string gguf_name() const = 0;

  // Maps a checkpoint tensor name to its GGUF name and transform; nullopt for
  // tensors the converter drops (rotary inv_freq). Unknown names throw Error
  // naming the tensor.
  struct Mapped {
    std::string name;
    RowTransform transform = RowTransform::kNone;
    int64_t groups = 0;  // head count the permutation groups rows by
    // Added to every element after conversion to f32 (gemma's norm weights
    // store w - 1).
    float add_one = 0.0f;
    // Rows kept from the start of the tensor, or -1 for all (Gemma 3 drops
    // the embedding rows of ids its vocabulary does not have).
    int64_t keep_rows = -1;
  };
  virtual std::optional<Mapped> MapTensor(const std::string& hf_name) const = 0;

  // Appends the {arch}.* hyperparameters and general.file_type in
  // convert_hf_to_gguf.py's order (TextModel.set_gguf_parameters followed by
  // the model class's additions).
  virtual void AppendParameters(uint32_t file_type, std::vector<GgufKv>& kv) const = 0;
  // Appends tokenizer.* for the folder.
  virtual void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const = 0;

  // Tensors the converter makes up (rope factors), written before the
  // checkpoint's, and the KV pairs convert_hf_to_gguf.py adds while making them
  // (right after general.architecture).
  struct GeneratedTensor {
    std::string name;
    std::vector<float> values;  // 1-D, written as f32
  };
  virtual std::vector<GeneratedTensor> GenerateTensors(std::vector<GgufKv>& kv) const {
    (void)kv;
    return {};
  }

  const Json& hparams() const { return hparams_; }
  int64_t block_count() const { return block_count_; }

 protected:
  Json hparams_;
  int64_t block_count_ = 0;
};

// Reads dir/config.json, applies transformers' config defaults for the
// architecture, and returns its rules. Throws Error listing the supported
// architectures for any other.
std::unique_ptr<HfArchitecture> LoadHfArchitecture(const std::string& dir);
// "LlamaForCausalLM, MistralForCausalLM, ..." for messages and --help.
std::string SupportedArchitectures();

// gguf-py Metadata heuristics on a folder name (its last path component) and
// config.json: general.name, basename, finetune, version, size_label, plus
// sampling defaults from generation_config.json. total_params is the converted
// tensors' element count.
// The README.md model card's YAML front matter contributes first (license,
// tags, languages, base models, datasets, names; see model_card.h).
// name_from, when not empty, replaces dir as the path whose last component
// names the model.
void AppendGeneralMetadata(const std::string& dir, int64_t total_params, std::vector<GgufKv>& kv,
                           const std::string& name_from = "");

// Helpers exposed for tests.
struct ModelIdComponents {
  std::optional<std::string> full_name, org, basename, finetune, version, size_label;
};
ModelIdComponents ParseModelId(const std::string& model_id, int64_t total_params);
std::string ModelIdToTitle(const std::string& id);
std::string SizeLabel(int64_t total_params);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_HF_MODEL_H_
