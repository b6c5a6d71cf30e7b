// Quantization planning (llama-quantize's order, types and metadata) and the streaming run.
#include "pipeline/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <thread>

#include "hwyquant/hwyquant.h"
#include "pipeline/conversion_workers.h"
#include "pipeline/output_file.h"
#include "pipeline/quantize_stats.h"

namespace hwyquant {
namespace {

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION
constexpr size_t kMaxOverrideString = 127;    // llama_model_kv_override's char[128]

std::vector<int64_t> TrimTrailingOnes(std::vector<int64_t> dims) {
  while (dims.size() > 1 && dims.back() == 1) dims.pop_back();
  if (dims.empty()) dims.push_back(1);
  return dims;
}

std::string FormatDims(const std::vector<int64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(dims[i]);
  }
  return out + "]";
}

std::string FormatMiB(uint64_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.2f MiB", bytes / 1024.0 / 1024.0);
  return buffer;
}

// Sets key as gguf_set_val does: an existing key moves to the end.
void SetKvLast(std::vector<GgufKv>& kv, const std::string& key, GgufValue value) {
  RemoveKv(kv, key);
  kv.push_back({key, std::move(value)});
}

// llama-quantize --prune-layers: drops the tensors of the listed layers (sorted, unique) and
// renumbers the layers met after the first pruned one consecutively, in `order`, as llama's
// remap_layer does. Returns what is left of `order`; sets output names in `names` (by source
// index) and, in *block_count, the layer count to write; listed layers that no tensor has go
// to *absent (llama-quantize ignores them silently).
std::vector<size_t> PruneLayers(const std::vector<TensorDescriptor>& tensors,
                                const std::vector<size_t>& order, const std::vector<int>& prune,
                                std::vector<std::string>& names, int* block_count,
                                std::vector<int>* absent) {
  std::map<int, std::string> mapped;  // old layer -> new number, "" when pruned
  int next_id = 0;
  std::vector<size_t> kept;
  for (size_t index : order) {
    const std::string& name = tensors[index].name;
    // The leftmost "blk.DIGITS." (what llama's regex blk\.(\d+)\. finds).
    size_t digits = std::string::npos, digits_end = 0;
    for (size_t at = name.find("blk."); at != std::string::npos; at = name.find("blk.", at + 1)) {
      size_t end = at + 4;
      while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
      if (end > at + 4 && end < name.size() && name[end] == '.') {
        digits = at + 4;
        digits_end = end;
        break;
      }
    }
    if (digits == std::string::npos) {
      kept.push_back(index);
      continue;
    }
    int layer = 0;
    try {
      layer = std::stoi(name.substr(digits, digits_end - digits));
    } catch (const std::exception&) {
      throw Error("--prune-layers: tensor '" + name + "' has an out-of-range layer number");
    }
    if (mapped.count(layer) == 0) {
      if (std::binary_search(prune.begin(), prune.end(), layer)) {
        mapped[layer] = "";
      } else if (layer < prune.front()) {
        mapped[layer] = std::to_string(layer);
        next_id = layer + 1;
      } else {
        mapped[layer] = std::to_string(next_id++);
      }
    }
    if (mapped[layer].empty()) continue;
    names[index] = std::string(name).replace(digits, digits_end - digits, mapped[layer]);
    kept.push_back(index);
  }
  *block_count = next_id;
  for (int layer : prune) {
    if (mapped.count(layer) == 0) absent->push_back(layer);
  }
  return kept;
}

// Converting tensors are worked on in pieces of at most one huge page of output, each with its
// own buffer, so that the buffers in flight stay a few pages whatever the tensors' sizes. On a
// VM that hands freed memory back to its host, every fresh page costs a host fault on first
// touch: with whole-tensor buffers (two of 14 and 8 MiB for hwyquant-e2e's output and
// token_embd) zeroing them took 11-22% of a Q3_K_S run's CPU time and 57% of a Q8_0 run's.
constexpr uint64_t kPieceOutputBytes = kHugePageBytes;

// Load-ahead limits: enough pieces that the workers never wait for the main thread's reading
// and writing, few enough that memory stays near one piece's size. The slack lets small
// tensors (norms, or all of a small model) stream past the byte budget's largest-piece terms.
// Workers that pread their sources need no pages mapped ahead of them.
constexpr size_t kMaxPiecesAhead = 16;
constexpr size_t kMaxPiecesAheadReadingFiles = 2;
constexpr uint64_t kLoadAheadSlackBytes = uint64_t{16} << 20;

// Rows [first_row, first_row + rows) of plan.tensors[tensor]; a tensor that has no weights, or
// that is kept as it is and not copied from a file, is one piece.
struct Piece {
  size_t tensor = 0;
  int64_t first_row = 0;
  int64_t rows = 0;
  bool last = true;  // the tensor's last piece
};

std::vector<Piece> PlanPieces(const QuantizePlan& plan, bool whole_tensors, bool copies_kept,
                              uint64_t piece_output_bytes) {
  std::vector<Piece> pieces;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& t = plan.tensors[i];
    const int64_t elements = t.ElementCount();
    if (elements == 0) {
      pieces.push_back({i, 0, 0, true});
      continue;
    }
    const int64_t n_per_row = t.dims[0];
    const int64_t rows = elements / n_per_row;
    if (!t.converts() && !copies_kept) {
      pieces.push_back({i, 0, rows, true});
      continue;
    }
    const int64_t piece_rows =
        whole_tensors
            ? rows
            : std::max<int64_t>(
                  1, static_cast<int64_t>(piece_output_bytes / RowSize(t.target_type, n_per_row)));
    for (int64_t row = 0; row < rows; row += piece_rows) {
      pieces.push_back({i, row, std::min(piece_rows, rows - row), row + piece_rows >= rows});
    }
  }
  return pieces;
}

// The memory a loaded piece holds until it is written: its output buffer, where it has one
// (the tensor converts, or is kept as it is and its rows are copied with pread), and its
// tensor's source unless the workers pread it and nothing else reads the mapping.
struct HeldBytes {
  bool reads_file = false;     // the workers pread sources (ModelSource::ReadsTensorsFromFile)
  bool keeps_sources = false;  // --stats reads converting tensors' sources after conversion

  bool HasOutput(const TensorPlan& t) const { return t.converts() || reads_file; }
  uint64_t Source(const TensorPlan& t) const {
    return reads_file && !(keeps_sources && t.converts()) ? 0 : t.source_bytes;
  }
  uint64_t Output(const TensorPlan& t, const Piece& piece) const {
    return HasOutput(t) ? static_cast<uint64_t>(piece.rows) * RowSize(t.target_type, t.dims[0]) : 0;
  }
};

int ThreadCount(int requested) {
  if (requested > 0) return requested;
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

// Runs fn(first_row, row_count) over contiguous row ranges on up to nthreads threads.
template <class Fn>
void ParallelOverRows(int64_t nrows, int nthreads, const Fn& fn) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(nthreads, nrows));
  if (workers == 1) {
    fn(0, nrows);
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  const int64_t per_worker = nrows / workers;
  const int64_t extra = nrows % workers;
  int64_t first = 0;
  for (int64_t w = 0; w < workers; ++w) {
    const int64_t count = per_worker + (w < extra ? 1 : 0);
    threads.emplace_back([&fn, &errors, w, first, count] {
      try {
        fn(first, count);
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
    });
    first += count;
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// The tensor's weights as f32 (widened or dequantized), for requantization and statistics.
void ToFloat(Type type, const uint8_t* src, int64_t n_per_row, int64_t nrows, float* dst,
             int nthreads) {
  const size_t row_size = RowSize(type, n_per_row);
  std::vector<uint16_t> aligned;
  if (type != Type::kF32 && type != Type::kF16 && type != Type::kBF16) {
    src = AlignedBlocks(src, static_cast<size_t>(nrows) * row_size, aligned);
  }
  ParallelOverRows(nrows, nthreads, [&](int64_t first, int64_t count) {
    const uint8_t* rows = src + static_cast<size_t>(first) * row_size;
    float* out = dst + first * n_per_row;
    const int64_t n = count * n_per_row;
    if (type == Type::kF32) {
      std::memcpy(out, rows, static_cast<size_t>(n) * sizeof(float));
    } else if (type == Type::kF16) {
      for (int64_t i = 0; i < n; ++i) {
        HalfBits h;
        std::memcpy(&h, rows + 2 * i, 2);
        out[i] = F16ToF32(h);
      }
    } else if (type == Type::kBF16) {
      for (int64_t i = 0; i < n; ++i) {
        BF16Bits h;
        std::memcpy(&h, rows + 2 * i, 2);
        out[i] = BF16ToF32(h);
      }
    } else {
      Dequantize(type, rows, out, count, n_per_row);
    }
  });
}

}  // namespace

int64_t TensorPlan::ElementCount() const {
  int64_t count = 1;
  for (int64_t d : dims) count *= d;
  return count;
}

KvOverride ParseKvOverride(const std::string& text) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw Error("--override-kv '" + text + "': expected KEY=TYPE:VALUE");
  }
  KvOverride result;
  result.key = text.substr(0, equals);
  if (result.key.size() > kMaxOverrideString) {
    throw Error("--override-kv: key '" + result.key + "' is longer than 127 bytes");
  }
  const std::string rest = text.substr(equals + 1);
  const auto starts = [&](const char* prefix) { return rest.rfind(prefix, 0) == 0; };
  if (starts("int:")) {
    const std::string digits = rest.substr(4);
    char* end = nullptr;
    const long long value = std::strtoll(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0') {
      throw Error("--override-kv " + result.key + ": '" + digits + "' is not an integer");
    }
    // llama-quantize stores integer overrides as u32 of the absolute value.
    result.value = GgufValue::U32(static_cast<uint32_t>(std::llabs(value)));
  } else if (starts("float:")) {
    const std::string number = rest.substr(6);
    char* end = nullptr;
    const double value = std::strtod(number.c_str(), &end);
    if (number.empty() || *end != '\0') {
      throw Error("--override-kv " + result.key + ": '" + number + "' is not a number");
    }
    result.value = GgufValue::F32(static_cast<float>(value));
  } else if (starts("bool:")) {
    const std::string word = rest.substr(5);
    if (word != "true" && word != "false") {
      throw Error("--override-kv " + result.key + ": bool value must be true or false, not '" +
                  word + "'");
    }
    result.value = GgufValue::Bool(word == "true");
  } else if (starts("str:")) {
    const std::string value = rest.substr(4);
    if (value.size() > kMaxOverrideString) {
      throw Error("--override-kv " + result.key + ": string value longer than 127 bytes");
    }
    result.value = GgufValue::String(value);
  } else {
    throw Error("--override-kv '" + text + "': TYPE must be int, float, bool or str");
  }
  return result;
}

QuantizePlan PlanQuantization(const ModelSource& source, const QuantizeOptions& options,
                              const Imatrix* imatrix) {
  QuantizePlan plan;
  const std::optional<Preset> preset = FindPreset(options.preset);
  if (!preset) {
    throw Error("unknown quantization type '" + options.preset + "' (known: " + PresetNames() +
                ")");
  }
  plan.preset = *preset;
  const std::string model = source.Describe();
  const bool use_imatrix = imatrix != nullptr && !imatrix->entries.empty();

  // Output order: llama's weight map order.
  const std::vector<TensorDescriptor>& tensors = source.Tensors();
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return WeightNameLess(tensors[a].name, tensors[b].name);
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (tensors[order[i]].name == tensors[order[i - 1]].name) {
      throw Error(model + ": duplicate tensor name '" + tensors[order[i]].name + "'");
    }
  }
  std::vector<std::string> names(tensors.size());  // as written, by source index
  for (size_t i = 0; i < tensors.size(); ++i) names[i] = tensors[i].name;
  int pruned_block_count = 0;
  if (!options.prune_layers.empty()) {
    std::vector<int> absent;
    order = PruneLayers(tensors, order, options.prune_layers, names, &pruned_block_count, &absent);
    for (int layer : absent) {
      plan.warnings.push_back("--prune-layers: " + model + " has no layer " +
                              std::to_string(layer) + ", so nothing was pruned for it");
    }
  }
  if (options.keep_split) {
    // --keep-split: the input's own order, split by split, which the type choice then follows.
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return source.StoragePosition(a) < source.StoragePosition(b);
    });
    for (size_t index : order) {
      plan.split_count = std::max(plan.split_count, source.StoragePosition(index).first + 1);
    }
  }

  // Metadata: the input's, then quantization version and file type moved to the end, split
  // keys removed, then overrides (the user's first, then the imatrix's), as llama-quantize.
  plan.kv = source.Metadata();
  std::vector<Type> types_in_order;
  for (size_t index : order) types_in_order.push_back(tensors[index].type);
  plan.file_type = preset->copy_only ? ModelFileType(plan.kv, types_in_order)
                                     : static_cast<uint32_t>(preset->file_type);
  SetKvLast(plan.kv, "general.quantization_version", GgufValue::U32(kQuantizationVersion));
  SetKvLast(plan.kv, "general.file_type", GgufValue::U32(plan.file_type));
  RemoveKv(plan.kv, "split.no");
  RemoveKv(plan.kv, "split.count");
  RemoveKv(plan.kv, "split.tensors.count");
  for (const KvOverride& o : options.kv_overrides) SetKvLast(plan.kv, o.key, o.value);
  if (use_imatrix) {
    SetKvLast(plan.kv, "quantize.imatrix.file",
              GgufValue::String(options.imatrix_path.substr(0, kMaxOverrideString)));
    if (!imatrix->datasets.empty()) {
      SetKvLast(plan.kv, "quantize.imatrix.dataset",
                GgufValue::String(imatrix->datasets[0].substr(0, kMaxOverrideString)));
    }
    SetKvLast(plan.kv, "quantize.imatrix.entries_count",
              GgufValue::U32(static_cast<uint32_t>(imatrix->entries.size())));
    if (imatrix->chunk_count > 0) {
      SetKvLast(plan.kv, "quantize.imatrix.chunks_count",
                GgufValue::U32(static_cast<uint32_t>(imatrix->chunk_count)));
    }
  }
  // The type choice sees the model's own layer count, as llama-quantize's hparams do.
  ModelShape shape;
  if (!preset->copy_only) {
    try {
      shape = ModelShape::FromMetadata(plan.kv, model);
    } catch (const Error& e) {
      if (options.kv_overrides.empty()) throw;
      ModelShape::FromMetadata(source.Metadata(), model);  // the file's own fault comes first
      throw Error("--override-kv breaks the model's metadata: " + std::string(e.what()));
    }
  }
  if (!options.prune_layers.empty()) {
    const GgufValue* arch = FindKv(plan.kv, "general.architecture");
    if (arch == nullptr || arch->type() != GgufType::kString) {
      throw Error(model + ": --prune-layers needs general.architecture");
    }
    SetKvLast(plan.kv, arch->AsString() + ".block_count",
              GgufValue::U32(static_cast<uint32_t>(pruned_block_count)));
  }
  if (plan.split_count > 1) {
    // llama-quantize --keep-split puts them after the first split's other metadata; the other
    // splits have only them.
    for (const GgufKv& kv : GgufSplitKeys(0, plan.split_count, order.size())) {
      SetKvLast(plan.kv, kv.key, kv.value);
    }
  }
  GgufAlignmentOf(plan.kv);  // a bad general.alignment fails here, before any writing

  MixOptions mix;
  mix.preset = *preset;
  mix.output_tensor_type = options.output_tensor_type;
  mix.token_embedding_type = options.token_embedding_type;
  mix.tensor_types = options.tensor_types;
  mix.pure = options.pure;
  mix.quantize_output_tensor = !options.leave_output_tensor;
  mix.has_imatrix = use_imatrix;
  std::vector<std::string> names_in_order;
  for (size_t index : order) names_in_order.push_back(names[index]);
  TypeSelector selector(shape, mix, names_in_order);

  for (size_t index : order) {
    const TensorDescriptor& d = tensors[index];
    TensorPlan t;
    t.source_index = index;
    t.name = names[index];
    t.dims = TrimTrailingOnes(d.dims);
    t.source_type = d.type;
    t.source_bytes = d.ByteSize();
    if (options.keep_split) t.split = source.StoragePosition(index).first;
    const TypeChoice choice = selector.Choose(t.name, t.dims, d.type);
    t.target_type = choice.type;
    t.fallback_note = choice.fallback_note;
    if (!t.fallback_note.empty()) plan.warnings.push_back(t.fallback_note);
    t.target_bytes = TensorByteSize(t.name, t.target_type, t.dims);
    if (t.converts()) {
      const TypeTraits& target = TraitsOf(t.target_type);
      if (!target.quantizable) {
        throw Error("tensor '" + t.name + "': hwyquant cannot produce type " + target.name);
      }
      const bool source_is_float = t.source_type == Type::kF32 || t.source_type == Type::kF16 ||
                                   t.source_type == Type::kBF16;
      if (!source_is_float) {
        if (!options.allow_requantize) {
          throw Error("tensor '" + t.name + "' is already " + TypeName(t.source_type) +
                      ": requantizing is disabled (use --allow-requantize)");
        }
        if (!TraitsOf(t.source_type).quantizable) {
          throw Error("tensor '" + t.name + "': cannot dequantize type " + TypeName(t.source_type));
        }
      }
      if (use_imatrix) {
        const auto it = imatrix->entries.find(d.name);  // the name before --prune-layers
        const int64_t experts = t.dims.size() > 2 ? t.dims[2] : 1;
        const size_t expected = static_cast<size_t>(t.dims[0] * experts);
        if (it == imatrix->entries.end()) {
          plan.warnings.push_back("no importance matrix data for " + t.name);
        } else if (it->second.size() == expected) {
          t.imatrix = &it->second;
        } else if (t.name != "token_embd.weight" && t.name != "per_layer_token_embd.weight") {
          throw Error("imatrix '" + imatrix->path + "' has " + std::to_string(it->second.size()) +
                      " values for tensor '" + t.name + "', which needs " +
                      std::to_string(expected));
        }
      }
    }
    plan.source_bytes += t.source_bytes;
    plan.target_bytes += t.target_bytes;
    plan.weights += static_cast<uint64_t>(d.ElementCount());
    plan.tensors.push_back(std::move(t));
  }
  return plan;
}

std::string QuantizePlan::OutputPath(const std::string& output_path, size_t split) const {
  return split_count > 0 ? GgufSplitPath(output_path, split, split_count) : output_path;
}

QuantizeResult RunQuantization(ModelSource& source, const QuantizePlan& plan,
                               const std::string& output_path, const QuantizeOptions& options,
                               QuantizeProgressListener* progress) {
  const auto start = std::chrono::steady_clock::now();
  const int nthreads = ThreadCount(options.nthreads);
  QuantizeResult result;
  QuantizeProgress event;
  event.tensor_count = plan.tensors.size();
  event.bytes_total = plan.source_bytes;
  event.weights_total = plan.weights;
  if (progress) {
    progress->OnProgress(event);
    for (const std::string& warning : plan.warnings) progress->OnWarning(warning);
  }

  for (size_t split = 0; !options.dry_run && split < std::max<size_t>(plan.split_count, 1);
       ++split) {
    RefuseToReplaceInputs(source, options.imatrix_path, plan.OutputPath(output_path, split));
  }
  // One output file, or with keep_split one per split, each sealed when its last tensor is
  // written and all renamed to their names together at the end.
  std::vector<std::unique_ptr<OutputFile>> outs;
  std::unique_ptr<GgufWriter> writer;
  const auto open_output = [&](size_t split) {
    std::vector<GgufKv> kv = plan.kv;
    if (plan.split_count > 0 && split > 0) {
      kv = GgufSplitKeys(split, plan.split_count, plan.tensors.size());
    }
    std::vector<GgufTensorInfo> infos;
    for (const TensorPlan& t : plan.tensors) {
      if (plan.split_count == 0 || t.split == split) {
        infos.push_back({t.name, t.dims, t.target_type, 0, 0});
      }
    }
    outs.push_back(std::make_unique<OutputFile>(plan.OutputPath(output_path, split)));
    writer = std::make_unique<GgufWriter>(*outs.back(), std::move(kv), std::move(infos));
  };
  const auto seal_output = [&] {
    writer->Finish();
    outs.back()->Seal();
    result.file_bytes += outs.back()->size();
    writer.reset();
  };
  // Seals files and opens the next until split's is open; splits without tensors get files too.
  const auto open_split = [&](size_t split) {
    while (outs.size() <= split) {
      seal_output();
      open_output(outs.size());
    }
  };
  if (!options.dry_run) open_output(0);

  // Pieces are loaded ahead of the one being written while the bytes in flight (sources not yet
  // released, outputs not yet written) fit the budget: the largest piece's source and output,
  // plus the largest output, which may still be waiting to be written, plus the slack. The
  // first piece not yet converted always loads.
  HeldBytes held;
  held.reads_file = source.ReadsTensorsFromFile();
  held.keeps_sources = options.stats;
  const std::vector<Piece> pieces =
      options.dry_run
          ? std::vector<Piece>()
          : PlanPieces(plan, /*whole_tensors=*/options.stats,
                       /*copies_kept=*/held.reads_file,
                       options.piece_output_bytes ? options.piece_output_bytes : kPieceOutputBytes);
  uint64_t largest = 0;
  uint64_t largest_output = 0;
  for (const Piece& piece : pieces) {
    const TensorPlan& t = plan.tensors[piece.tensor];
    largest = std::max(largest, held.Source(t) + held.Output(t, piece));
    largest_output = std::max(largest_output, held.Output(t, piece));
  }
  const uint64_t budget = largest + largest_output + kLoadAheadSlackBytes;
  // Idle buffers are kept up to the whole budget: on some VMs the first touch of fresh memory
  // costs 1.2 ms per MiB even in huge pages, 2.6 ms in small ones, so memory once faulted in is
  // worth reusing to the end.
  BufferPool outputs(/*max_idle_bytes=*/budget);
  const size_t max_ahead =
      held.reads_file && !held.keeps_sources ? kMaxPiecesAheadReadingFiles : kMaxPiecesAhead;
  std::deque<std::unique_ptr<TensorJob>> in_flight;  // loaded, not yet written; oldest first
  uint64_t in_flight_bytes = 0;
  size_t next_to_load = 0;
  TensorBytes loading_source;  // the tensor whose pieces are being loaded, for the next ones
  std::optional<ConversionWorkers> workers;  // destroyed before in_flight, which it reads
  if (!options.dry_run) workers.emplace(nthreads);
  // Submits pieces (first_needed always, later ones within the limits); their pages are mapped
  // by prefetch_submitted, which can then run after other work that frees memory. A tensor's
  // source counts against the budget from its first piece's loading to its last one's release.
  const auto held_by = [&](const Piece& piece) {
    const TensorPlan& t = plan.tensors[piece.tensor];
    return (piece.first_row == 0 ? held.Source(t) : 0) + held.Output(t, piece);
  };
  const auto load_ahead = [&](size_t first_needed) {
    while (next_to_load < pieces.size() &&
           (next_to_load <= first_needed ||
            (next_to_load - first_needed <= max_ahead &&
             in_flight_bytes + held_by(pieces[next_to_load]) <= budget))) {
      const Piece& piece = pieces[next_to_load];
      const TensorPlan& next = plan.tensors[piece.tensor];
      if (piece.first_row == 0) {
        loading_source = source.LoadTensor(next.source_index);
        if (loading_source.size() != next.source_bytes) {
          throw Error(source.Describe() + ": tensor '" + next.name + "' has " +
                      std::to_string(loading_source.size()) + " bytes, expected " +
                      std::to_string(next.source_bytes));
        }
      }
      in_flight.push_back(
          std::make_unique<TensorJob>(next, loading_source, outputs, piece.first_row, piece.rows));
      if (piece.last) loading_source = TensorBytes();
      in_flight_bytes += held_by(piece);
      workers->Submit(*in_flight.back());
      ++next_to_load;
    }
  };
  size_t next_to_prefetch = 0;
  const auto prefetch_submitted = [&](size_t front) {
    // After Submit, so the workers start on the first rows while the rest is being mapped.
    for (; next_to_prefetch < next_to_load; ++next_to_prefetch) {
      const TensorJob& job = *in_flight[next_to_prefetch - front];
      job.source().Prefetch(job.source_offset(), job.source_size());
    }
  };
  size_t next_piece = 0;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& t = plan.tensors[i];
    for (bool tensor_done = options.dry_run; !tensor_done; ++next_piece) {
      const Piece& piece = pieces[next_piece];
      tensor_done = piece.last;
      load_ahead(next_piece);
      prefetch_submitted(next_piece);
      TensorJob& job = *in_flight.front();
      try {
        workers->Wait(job);
      } catch (const Error& e) {
        throw Error("tensor '" + t.name + "' (" + TypeName(t.source_type) + " -> " +
                    TypeName(t.target_type) + "): " + e.what());
      }
      const bool release_early = held.HasOutput(t) && !options.stats;
      const uint64_t source_released = piece.last ? held.Source(t) : 0;
      if (release_early) {
        // The piece's source is done with (the tensor's, with its last piece): the bytes make
        // room for the next pieces, submitted first so that the workers go on while the pages
        // are released and this piece is written.
        in_flight_bytes -= source_released;
        load_ahead(next_piece + 1);
        job.ReleaseSource();
        prefetch_submitted(next_piece);
      }
      if (plan.split_count > 0) open_split(t.split);
      const uint8_t* data = job.result();
      writer->AppendTensorData(data, job.result_size());
      if (options.stats && t.converts() && t.ElementCount() > 0) {
        const int64_t n_per_row = t.dims[0];
        const int64_t rows = t.ElementCount() / n_per_row;
        std::vector<float> original(static_cast<size_t>(t.ElementCount()));
        std::vector<float> restored(original.size());
        ToFloat(t.source_type, job.source().data(), n_per_row, rows, original.data(), nthreads);
        ToFloat(t.target_type, data, n_per_row, rows, restored.data(), nthreads);
        TensorStats stats = ComputeTensorStats(original.data(), restored.data(), n_per_row, rows,
                                               /*seed=*/i + 1);
        stats.name = t.name;
        stats.type = t.target_type;
        result.stats.push_back(std::move(stats));
      }
      in_flight_bytes -= held.Output(t, piece) + (release_early ? 0 : source_released);
      outputs.Give(job.TakeOutput());
      in_flight.pop_front();  // releases the source pages, if still held
    }
    result.source_bytes += t.source_bytes;
    result.target_bytes += t.target_bytes;
    result.weights += static_cast<uint64_t>(t.ElementCount());
    if (progress) {
      std::string detail = FormatDims(t.dims) + " " + TypeName(t.source_type);
      if (t.converts()) {
        detail += " -> " + std::string(TypeName(t.target_type)) + ", " + FormatMiB(t.source_bytes) +
                  " -> " + FormatMiB(t.target_bytes);
      } else {
        detail += ", " + FormatMiB(t.source_bytes) + " (kept)";
      }
      event.stage = QuantizeStage::kTensorDone;
      event.tensor_index = i + 1;
      event.tensor_name = t.name;
      event.bytes_done = result.source_bytes;
      event.weights_done = result.weights;
      event.detail = detail;
      progress->OnProgress(event);
    }
  }
  event.tensor_name = {};
  event.detail = {};
  if (writer) {
    if (progress) {
      event.stage = QuantizeStage::kFinishing;
      progress->OnProgress(event);
    }
    if (plan.split_count > 0) open_split(plan.split_count - 1);
    seal_output();
    for (const auto& out : outs) {
      out->Publish();
      result.files.push_back(out->path());
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (progress) {
    event.stage = QuantizeStage::kDone;
    progress->OnProgress(event);
  }
  return result;
}

std::optional<Imatrix> LoadImatrixFor(const QuantizeOptions& options) {
  if (options.imatrix_path.empty()) {
    if (!options.include_weights.empty() || !options.exclude_weights.empty()) {
      throw Error("--include-weights/--exclude-weights need --imatrix");
    }
    return std::nullopt;
  }
  Imatrix imatrix = LoadImatrix(options.imatrix_path);
  FilterImatrix(imatrix, options.include_weights, options.exclude_weights);
  return imatrix;
}

QuantizeResult QuantizeModel(ModelSource& source, const std::string& output_path,
                             const QuantizeOptions& options, QuantizeProgressListener* progress) {
  const std::optional<Imatrix> imatrix = LoadImatrixFor(options);
  const QuantizePlan plan = PlanQuantization(source, options, imatrix ? &*imatrix : nullptr);
  return RunQuantization(source, plan, output_path, options, progress);
}

}  // namespace hwyquant
