// Quantization presets and per-tensor type choice, as llama-quantize (src/llama-quant.cpp) makes
// them for llama-family models: the K-quant mixes, output/embedding rules, shape fallbacks.
#ifndef HWYQUANT_PIPELINE_QUANTIZE_MIX_H_
#define HWYQUANT_PIPELINE_QUANTIZE_MIX_H_

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/gguf.h"

namespace hwyquant {

// llama_ftype values, as stored in general.file_type.
enum class FileType : uint32_t {
  kAllF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
  kQ2_K = 10,
  kQ3_K_S = 11,
  kQ3_K_M = 12,
  kQ3_K_L = 13,
  kQ4_K_S = 14,
  kQ4_K_M = 15,
  kQ5_K_S = 16,
  kQ5_K_M = 17,
  kQ6_K = 18,
  kBF16 = 32,
};

// llama's marker for a file type guessed from the tensor types rather than read from the file.
inline constexpr uint32_t kFileTypeGuessed = 1024;

struct Preset {
  const char* name;  // llama-quantize's spelling, e.g. "Q4_K_M"
  FileType file_type;
  Type default_type;  // the type most tensors get
  bool copy_only;     // COPY: tensors keep their types
};

// The preset named (case-insensitively) by name, or by its numeric file type; nullopt if none.
std::optional<Preset> FindPreset(std::string_view name);
// Every preset name, for help and error messages.
std::string PresetNames();

// What type selection needs to know of the model (llama_hparams and the model type).
struct ModelShape {
  std::string architecture;
  int n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_expert = 0;
  bool is_70b = false;  // llama with 80 layers and grouped-query attention

  uint32_t n_gqa() const { return n_head_kv == 0 ? 0 : n_head / n_head_kv; }
  // Reads {arch}.block_count, head counts and expert count; throws Error naming what is missing.
  static ModelShape FromMetadata(const std::vector<GgufKv>& kv, const std::string& model_name);
};

struct MixOptions {
  Preset preset{};
  std::optional<Type> output_tensor_type;
  std::optional<Type> token_embedding_type;
  // --tensor-type: first regex that matches (searched anywhere in the name) wins.
  std::vector<std::pair<std::string, Type>> tensor_types;
  bool pure = false;
  bool quantize_output_tensor = true;  // false with --leave-output-tensor
  bool has_imatrix = false;
};

// One tensor's choice.
struct TypeChoice {
  Type type;
  bool quantized = false;  // the tensor is eligible for quantization at all
  // Non-empty when the preferred type did not fit the row length and another was used.
  std::string fallback_note;
};

// Chooses every tensor's type in the order given (which must be the output order: the
// per-layer counters of the mixes depend on it), exactly as llama-quantize's preliminary pass.
class TypeSelector {
 public:
  TypeSelector(const ModelShape& shape, const MixOptions& options,
               const std::vector<std::string>& all_tensor_names);

  // Next tensor: name, ggml dims (trailing 1s trimmed) and current type.
  TypeChoice Choose(const std::string& name, const std::vector<int64_t>& dims, Type current);

  int fallback_count() const { return n_fallback_; }

 private:
  enum class Category {
    kTokenEmbd,
    kAttnQ,
    kAttnV,
    kAttnK,
    kAttnQkv,
    kAttnKvB,
    kAttnOutput,
    kFfnUp,
    kFfnGate,
    kFfnDown,
    kOutput,
    kOther
  };
  static Category CategoryOf(const std::string& name);
  bool AllowsQuantization(const std::string& name, const std::vector<int64_t>& dims) const;
  Type MixType(Type type, const std::string& name, const std::vector<int64_t>& dims,
               Category category);
  Type ShapeFallback(const std::string& name, int64_t ncols, Type type, std::string& note);
  std::pair<int, int> LayerInfo(int counter, int n_layer, const std::string& name) const;

  ModelShape shape_;
  MixOptions options_;
  std::vector<std::pair<std::regex, Type>> patterns_;
  int n_attention_wv_ = 0;
  int n_layer_ = 0;
  int i_attention_wv_ = 0;
  int i_ffn_down_ = 0;
  int i_ffn_gate_ = 0;
  int i_ffn_up_ = 0;
  int n_fallback_ = 0;
  bool has_tied_embeddings_ = true;
};

// llama's tensor order: tensors outside blk.N first, then by layer number, then by name.
bool WeightNameLess(const std::string& a, const std::string& b);

// The file type llama's loader reports for a model: general.file_type if present, else guessed
// from the most common tensor type (with kFileTypeGuessed set).
uint32_t ModelFileType(const std::vector<GgufKv>& kv,
                       const std::vector<Type>& tensor_types_in_order);

// Parses a ggml type name for --output-tensor-type etc. (case-insensitive); throws Error for an
// unknown name or one hwyquant cannot produce.
Type ParseQuantizableType(std::string_view name, std::string_view option);
// The std::regex of a --tensor-type pattern; throws Error starting with `where` when it is not
// a valid regular expression.
std::regex TensorTypePattern(const std::string& pattern, const std::string& where);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_QUANTIZE_MIX_H_
