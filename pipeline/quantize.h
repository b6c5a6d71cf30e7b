// The quantization driver: plans every tensor's type as llama-quantize would, then streams the
// model tensor by tensor into a GGUF file (or only reports types and sizes for a dry run).
#ifndef HWYQUANT_PIPELINE_QUANTIZE_H_
#define HWYQUANT_PIPELINE_QUANTIZE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/gguf.h"
#include "pipeline/model_source.h"
#include "pipeline/quantize_imatrix.h"
#include "pipeline/quantize_mix.h"
#include "pipeline/quantize_progress.h"

namespace hwyquant {

// --override-kv KEY=TYPE:VALUE with TYPE one of int, float, bool, str (llama's syntax). As in
// llama-quantize, ints are stored as u32 (absolute value), floats as f32.
struct KvOverride {
  std::string key;
  GgufValue value;
};
KvOverride ParseKvOverride(const std::string& text);

struct QuantizeOptions {
  std::string preset;  // llama-quantize's name (case-insensitive) or file type number
  int nthreads = 0;    // 0: every core
  std::string imatrix_path;
  std::vector<std::string> include_weights;
  std::vector<std::string> exclude_weights;
  std::optional<Type> output_tensor_type;
  std::optional<Type> token_embedding_type;
  std::vector<std::pair<std::string, Type>> tensor_types;  // --tensor-type REGEX=TYPE
  bool pure = false;
  bool leave_output_tensor = false;
  bool allow_requantize = false;
  bool dry_run = false;
  bool stats = false;  // per-tensor error statistics (slower)
  // llama-quantize --keep-split: one output file per split of the input, its tensors in the
  // input's order, named PREFIX-0000i-of-0000N.gguf from the output path as prefix.
  bool keep_split = false;
  // llama-quantize --prune-layers: layers to drop (sorted, unique); the rest are renumbered.
  std::vector<int> prune_layers;
  std::vector<KvOverride> kv_overrides;
  // Most output bytes a piece of a tensor is converted and written in; 0 means one huge page.
  // Smaller values only cost time (tests use them to split small tensors).
  uint64_t piece_output_bytes = 0;
};

struct TensorPlan {
  size_t source_index = 0;
  std::string name;
  std::vector<int64_t> dims;  // as written: trailing 1s dropped, as ggml does
  Type source_type = Type::kF32;
  Type target_type = Type::kF32;
  uint64_t source_bytes = 0;
  uint64_t target_bytes = 0;
  size_t split = 0;                             // the output file it goes to, with keep_split
  const std::vector<float>* imatrix = nullptr;  // per row element (per expert), or null
  std::string fallback_note;                    // why target_type is not the preferred type, if so

  int64_t ElementCount() const;
  bool converts() const { return source_type != target_type; }
};

struct QuantizePlan {
  Preset preset{};
  uint32_t file_type = 0;           // written as general.file_type
  std::vector<GgufKv> kv;           // the output's metadata, in order
  std::vector<TensorPlan> tensors;  // in output order
  // With keep_split: how many output files (tensors[i].split < split_count); 0 without.
  size_t split_count = 0;
  std::vector<std::string> warnings;
  uint64_t source_bytes = 0;
  uint64_t target_bytes = 0;
  uint64_t weights = 0;

  // The file output split `split` goes to: output_path itself, or with keep_split
  // output_path-0000i-of-0000N.gguf.
  std::string OutputPath(const std::string& output_path, size_t split) const;
};

// Decides output order, types, metadata; checks everything that can be checked before writing
// (unsupported types, requantization, imatrix sizes). imatrix may be null.
QuantizePlan PlanQuantization(const ModelSource& source, const QuantizeOptions& options,
                              const Imatrix* imatrix);

struct TensorStats {
  std::string name;
  Type type = Type::kF32;
  double rmse = 0;
  double max_abs_error = 0;
  double relative_output_error = 0;  // ||Wx - W'x|| / ||Wx|| over random activations x
};

struct QuantizeResult {
  uint64_t source_bytes = 0;       // tensor data read
  uint64_t target_bytes = 0;       // tensor data written (without padding)
  uint64_t file_bytes = 0;         // size of the output file(s) (0 for a dry run)
  std::vector<std::string> files;  // what was written: the output, or its splits
  uint64_t weights = 0;
  double seconds = 0;
  std::vector<TensorStats> stats;
};

// Streams the plan into output_path (ignored for a dry run): worker threads convert tensors in
// row chunks with the public kernel API while this thread writes the previous tensor and loads
// the next ones (a few at most, bounded by the largest tensor's size), releasing each after
// writing it. On any error nothing is left at output_path.
QuantizeResult RunQuantization(ModelSource& source, const QuantizePlan& plan,
                               const std::string& output_path, const QuantizeOptions& options,
                               QuantizeProgressListener* progress);

// The imatrix options.imatrix_path names, filtered by --include/--exclude-weights; nullopt
// without one.
std::optional<Imatrix> LoadImatrixFor(const QuantizeOptions& options);

// The whole job: loads the imatrix if any, plans, runs.
QuantizeResult QuantizeModel(ModelSource& source, const std::string& output_path,
                             const QuantizeOptions& options, QuantizeProgressListener* progress);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_QUANTIZE_H_
