// Presets and the per-tensor type rules of llama-quantize, for the presets hwyquant supports.
#include "pipeline/quantize_mix.h"

#include <cctype>
#include <climits>
#include <map>

namespace hwyquant {
namespace {

constexpr Preset kPresets[] = {
    {"Q4_0", FileType::kQ4_0, Type::kQ4_0, false},
    {"Q4_1", FileType::kQ4_1, Type::kQ4_1, false},
    {"Q5_0", FileType::kQ5_0, Type::kQ5_0, false},
    {"Q5_1", FileType::kQ5_1, Type::kQ5_1, false},
    {"Q2_K", FileType::kQ2_K, Type::kQ2_K, false},
    {"Q3_K", FileType::kQ3_K_M, Type::kQ3_K, false},  // alias of Q3_K_M, as in llama-quantize
    {"Q3_K_S", FileType::kQ3_K_S, Type::kQ3_K, false},
    {"Q3_K_M", FileType::kQ3_K_M, Type::kQ3_K, false},
    {"Q3_K_L", FileType::kQ3_K_L, Type::kQ3_K, false},
    {"Q4_K", FileType::kQ4_K_M, Type::kQ4_K, false},
    {"Q4_K_S", FileType::kQ4_K_S, Type::kQ4_K, false},
    {"Q4_K_M", FileType::kQ4_K_M, Type::kQ4_K, false},
    {"Q5_K", FileType::kQ5_K_M, Type::kQ5_K, false},
    {"Q5_K_S", FileType::kQ5_K_S, Type::kQ5_K, false},
    {"Q5_K_M", FileType::kQ5_K_M, Type::kQ5_K, false},
    {"Q6_K", FileType::kQ6_K, Type::kQ6_K, false},
    {"Q8_0", FileType::kQ8_0, Type::kQ8_0, false},
    {"F16", FileType::kF16, Type::kF16, false},
    {"BF16", FileType::kBF16, Type::kBF16, false},
    {"F32", FileType::kAllF32, Type::kF32, false},
    // After F32 so that file type 0 given as a number means F32, as in llama-quantize.
    {"COPY", FileType::kAllF32, Type::kF32, true},
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool IsQuantizedType(Type type) { return TraitsOf(type).block_size > 1; }

bool UseMoreBits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// sscanf(name, "blk.%d.")'s reading of a layer number: whitespace, sign, digits after "blk.".
bool ParseLayer(const std::string& name, int& layer) {
  if (name.compare(0, 4, "blk.") != 0) return false;
  size_t i = 4;
  while (i < name.size() && std::isspace(static_cast<unsigned char>(name[i]))) ++i;
  bool negative = false;
  if (i < name.size() && (name[i] == '+' || name[i] == '-')) negative = name[i++] == '-';
  if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return false;
  long long value = 0;
  for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) {
    value = value * 10 + (name[i] - '0');
    if (value > INT_MAX) value = INT_MAX;  // sscanf's overflow is undefined; saturate
  }
  layer = static_cast<int>(negative ? -value : value);
  return true;
}

uint32_t FileTypeOfTensorType(Type type) {
  switch (type) {
    case Type::kF32:
      return 0;
    case Type::kF16:
      return 1;
    case Type::kBF16:
      return 32;
    case Type::kQ4_0:
      return 2;
    case Type::kQ4_1:
      return 3;
    case Type::kQ5_0:
      return 8;
    case Type::kQ5_1:
      return 9;
    case Type::kQ8_0:
      return 7;
    case Type::kQ2_K:
      return 10;
    case Type::kQ3_K:
      return 12;
    case Type::kQ4_K:
      return 15;
    case Type::kQ5_K:
      return 17;
    case Type::kQ6_K:
      return 18;
    case Type::kTQ1_0:
      return 36;
    case Type::kTQ2_0:
      return 37;
    case Type::kIQ2_XXS:
      return 19;
    case Type::kIQ2_XS:
      return 20;
    case Type::kIQ2_S:
      return 28;
    case Type::kIQ3_XXS:
      return 23;
    case Type::kIQ1_S:
      return 24;
    case Type::kIQ1_M:
      return 31;
    case Type::kIQ4_NL:
      return 25;
    case Type::kIQ4_XS:
      return 30;
    case Type::kIQ3_S:
      return 26;
    default:
      return 0;
  }
}

// The unsigned value of metadata key `key`; any other kind of value is an error naming the key.
uint64_t UnsignedOf(const GgufValue& value, const std::string& key) {
  try {
    return value.AsUInt();
  } catch (const Error& e) {
    throw Error(key + ": " + e.what());
  }
}

// Per-layer hyperparameters may be arrays; llama's n_head() is layer 0's value.
uint32_t FirstOfScalarOrArray(const GgufValue& value, const std::string& key) {
  const bool array = value.type() == GgufType::kArray;
  if (array && value.array_size() == 0) throw Error(key + " is an empty array");
  const uint64_t count = UnsignedOf(array ? value.Element(0) : value, key);
  if (count > UINT32_MAX) throw Error(key + " value " + std::to_string(count) + " is too large");
  return static_cast<uint32_t>(count);
}

}  // namespace

std::optional<Preset> FindPreset(std::string_view name) {
  for (const Preset& preset : kPresets) {
    if (EqualsIgnoreCase(preset.name, name)) return preset;
  }
  // A number names the first preset with that file type, as llama-quantize accepts.
  if (!name.empty() && name.size() < 6) {
    uint32_t value = 0;
    for (char c : name) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<uint32_t>(c - '0');
    }
    for (const Preset& preset : kPresets) {
      if (static_cast<uint32_t>(preset.file_type) == value) return preset;
    }
  }
  return std::nullopt;
}

std::string PresetNames() {
  std::string names;
  for (const Preset& preset : kPresets) {
    if (!names.empty()) names += ", ";
    names += preset.name;
  }
  return names;
}

ModelShape ModelShape::FromMetadata(const std::vector<GgufKv>& kv, const std::string& model_name) {
  ModelShape shape;
  const GgufValue* arch = FindKv(kv, "general.architecture");
  if (arch == nullptr || arch->type() != GgufType::kString) {
    throw Error(model_name + ": no general.architecture string in the metadata");
  }
  shape.architecture = arch->AsString();
  const std::string prefix = shape.architecture + ".";
  try {
    const GgufValue* blocks = FindKv(kv, prefix + "block_count");
    if (blocks == nullptr) throw Error("missing " + prefix + "block_count");
    const uint64_t n_layer = UnsignedOf(*blocks, prefix + "block_count");
    if (n_layer > 100000)
      throw Error(prefix + "block_count " + std::to_string(n_layer) + " is absurd");
    shape.n_layer = static_cast<int>(n_layer);
    if (const GgufValue* v = FindKv(kv, prefix + "attention.head_count")) {
      shape.n_head = FirstOfScalarOrArray(*v, prefix + "attention.head_count");
    }
    shape.n_head_kv = shape.n_head;
    if (const GgufValue* v = FindKv(kv, prefix + "attention.head_count_kv")) {
      shape.n_head_kv = FirstOfScalarOrArray(*v, prefix + "attention.head_count_kv");
    }
    if (const GgufValue* v = FindKv(kv, prefix + "expert_count")) {
      shape.n_expert = static_cast<uint32_t>(UnsignedOf(*v, prefix + "expert_count"));
    }
  } catch (const Error& e) {
    throw Error(model_name + ": bad model metadata: " + e.what());
  }
  shape.is_70b = shape.architecture == "llama" && shape.n_expert != 8 && shape.n_layer == 80 &&
                 shape.n_head != shape.n_head_kv;
  return shape;
}

bool WeightNameLess(const std::string& a, const std::string& b) {
  int a_layer = -1;
  int b_layer = -1;
  ParseLayer(a, a_layer);
  ParseLayer(b, b_layer);
  if (a_layer != b_layer) return a_layer < b_layer;
  return a < b;
}

uint32_t ModelFileType(const std::vector<GgufKv>& kv, const std::vector<Type>& types_in_order) {
  if (const GgufValue* value = FindKv(kv, "general.file_type")) {
    return static_cast<uint32_t>(value->AsUInt());
  }
  std::map<Type, uint32_t> counts;
  uint32_t best_count = 0;
  Type best = Type::kF32;
  for (Type type : types_in_order) {
    const uint32_t count = ++counts[type];
    if (count > best_count) {
      best_count = count;
      best = type;
    }
  }
  return FileTypeOfTensorType(best) | kFileTypeGuessed;
}

Type ParseQuantizableType(std::string_view name, std::string_view option) {
  const TypeTraits* traits = FindTypeByName(name);
  if (traits == nullptr) {
    throw Error(std::string(option) + ": unknown ggml type '" + std::string(name) + "'");
  }
  if (!traits->quantizable) {
    throw Error(std::string(option) + ": hwyquant cannot produce type " + traits->name);
  }
  return traits->type;
}

std::regex TensorTypePattern(const std::string& pattern, const std::string& where) {
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw Error(where + ": bad regular expression '" + pattern + "': " + e.what());
  }
}

// --- TypeSelector ---

TypeSelector::TypeSelector(const ModelShape& shape, const MixOptions& options,
                           const std::vector<std::string>& all_tensor_names)
    : shape_(shape), options_(options), n_layer_(shape.n_layer) {
  for (const auto& [pattern, type] : options_.tensor_types) {
    patterns_.emplace_back(TensorTypePattern(pattern, "--tensor-type"), type);
  }
  for (const std::string& name : all_tensor_names) {
    const Category category = CategoryOf(name);
    if (category == Category::kAttnV || category == Category::kAttnQkv ||
        category == Category::kAttnKvB) {
      ++n_attention_wv_;
    }
    if (category == Category::kOutput) has_tied_embeddings_ = false;
  }
}

TypeSelector::Category TypeSelector::CategoryOf(const std::string& name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") {
    return Category::kTokenEmbd;
  }
  if (Contains(name, "attn_qkv.weight")) return Category::kAttnQkv;
  if (Contains(name, "attn_kv_b.weight")) return Category::kAttnKvB;
  if (Contains(name, "attn_v.weight")) return Category::kAttnV;
  if (Contains(name, "attn_k.weight")) return Category::kAttnK;
  if (Contains(name, "attn_q.weight")) return Category::kAttnQ;
  if (Contains(name, "attn_output.weight")) return Category::kAttnOutput;
  if (Contains(name, "ffn_up")) return Category::kFfnUp;
  if (Contains(name, "ffn_gate")) return Category::kFfnGate;
  if (Contains(name, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

bool TypeSelector::AllowsQuantization(const std::string& name,
                                      const std::vector<int64_t>& dims) const {
  if (options_.preset.copy_only) return false;
  if (dims.size() < 2) return false;  // only matrices (and stacks of experts)
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  if (Contains(name, "_norm.weight")) return false;
  if (!options_.quantize_output_tensor && name == "output.weight") return false;
  // Small or special tensors llama-quantize always keeps as they are.
  static const char* const kKeptSubstrings[] = {"ffn_gate_inp.weight",
                                                "ffn_gate_tid2eid.weight",
                                                "altup",
                                                "laurel",
                                                "per_layer_model_proj",
                                                "ssm_conv1d",
                                                "shortconv.conv.weight",
                                                "indexer.k_proj.weight",
                                                "indexer.q_proj.weight",
                                                "time_mix_first.weight",
                                                "time_mix_w0.weight",
                                                "time_mix_w1.weight",
                                                "time_mix_w2.weight",
                                                "time_mix_v0.weight",
                                                "time_mix_v1.weight",
                                                "time_mix_v2.weight",
                                                "time_mix_a0.weight",
                                                "time_mix_a1.weight",
                                                "time_mix_a2.weight",
                                                "time_mix_g1.weight",
                                                "time_mix_g2.weight",
                                                "time_mix_decay_w1.weight",
                                                "time_mix_decay_w2.weight",
                                                "time_mix_lerp_fused.weight",
                                                "attn_rel_b.weight",
                                                ".position_embd",
                                                "sam.pos_embd",
                                                "sam.neck.",
                                                "sam.net_",
                                                ".rel_pos",
                                                ".patch_embd",
                                                ".patch_merger",
                                                "a.rvq.codebook",
                                                "mm.a.code_embd"};
  for (const char* part : kKeptSubstrings) {
    if (Contains(name, part)) return false;
  }
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

std::pair<int, int> TypeSelector::LayerInfo(int counter, int n_layer,
                                            const std::string& name) const {
  const int n_expert = std::max<int>(1, static_cast<int>(shape_.n_expert));
  if (n_expert > 1) {
    // Expert layers are not consecutive in every model, so the name is the only reliable source.
    int layer = 0;
    if (!ParseLayer(name, layer)) {
      throw Error("cannot determine the layer of tensor '" + name + "'");
    }
    if (layer < 0 || layer >= n_layer) {
      throw Error("tensor '" + name + "' has layer " + std::to_string(layer) + " outside [0, " +
                  std::to_string(n_layer) + ")");
    }
    return {layer, n_layer};
  }
  return {counter, n_layer};
}

Type TypeSelector::MixType(Type type, const std::string& name, const std::vector<int64_t>& dims,
                           Category category) {
  const FileType ftype = options_.preset.file_type;
  const bool falcon = shape_.architecture == "falcon";
  const auto is_attn_v = [](Category c) {
    return c == Category::kAttnV || c == Category::kAttnQkv || c == Category::kAttnKvB;
  };

  if (category == Category::kOutput || (has_tied_embeddings_ && category == Category::kTokenEmbd)) {
    if (options_.output_tensor_type) return *options_.output_tensor_type;
    const int64_t block = TraitsOf(type).block_size;
    if (falcon || dims[0] % block != 0) return Type::kQ8_0;
    if (type != Type::kQ8_0) return Type::kQ6_K;
    return type;
  }
  if (category == Category::kTokenEmbd) {
    if (options_.token_embedding_type) return *options_.token_embedding_type;
    return type;
  }
  if (is_attn_v(category)) {
    if (ftype == FileType::kQ2_K) {
      type = shape_.n_gqa() >= 4 ? Type::kQ4_K : Type::kQ3_K;
    } else if (ftype == FileType::kQ3_K_M) {
      type = i_attention_wv_ < 2 ? Type::kQ5_K : Type::kQ4_K;
    } else if (ftype == FileType::kQ3_K_L) {
      type = Type::kQ5_K;
    } else if ((ftype == FileType::kQ4_K_M || ftype == FileType::kQ5_K_M) &&
               UseMoreBits(i_attention_wv_, n_attention_wv_)) {
      type = Type::kQ6_K;
    } else if (ftype == FileType::kQ4_K_S && i_attention_wv_ < 4) {
      type = Type::kQ5_K;
    }
    // In 70B models eight heads share attn_v, so it is 8x smaller than attn_q: more bits are cheap.
    if (shape_.is_70b && (type == Type::kQ3_K || type == Type::kQ4_K)) type = Type::kQ5_K;
    if (shape_.n_expert == 8) type = Type::kQ8_0;
    ++i_attention_wv_;
    return type;
  }
  if (category == Category::kAttnK) {
    if (shape_.n_expert == 8) type = Type::kQ8_0;
    return type;
  }
  if (category == Category::kAttnQ) return type;
  if (category == Category::kFfnDown) {
    const auto [i_layer, n_layer] = LayerInfo(i_ffn_down_, n_layer_, name);
    if (ftype == FileType::kQ2_K) {
      type = Type::kQ3_K;
    } else if (ftype == FileType::kQ3_K_M) {
      type = i_layer < n_layer / 16                     ? Type::kQ5_K
             : !falcon || UseMoreBits(i_layer, n_layer) ? Type::kQ4_K
                                                        : Type::kQ3_K;
    } else if (ftype == FileType::kQ3_K_L) {
      type = falcon ? Type::kQ4_K : Type::kQ5_K;
    } else if (ftype == FileType::kQ4_K_M) {
      if (falcon) {
        type = i_layer < n_layer / 16          ? Type::kQ6_K
               : UseMoreBits(i_layer, n_layer) ? Type::kQ5_K
                                               : Type::kQ4_K;
      } else if (UseMoreBits(i_layer, n_layer)) {
        type = Type::kQ6_K;
      }
    } else if (ftype == FileType::kQ5_K_M && UseMoreBits(i_layer, n_layer)) {
      type = Type::kQ6_K;
    } else if (ftype == FileType::kQ4_K_S && !falcon && i_layer < n_layer / 8) {
      type = Type::kQ5_K;
    } else if ((ftype == FileType::kQ4_0 || ftype == FileType::kQ5_0) && options_.has_imatrix &&
               i_layer < n_layer / 8) {
      // The first ffn_down layers misbehave under Q4_0/Q5_0 even with an imatrix.
      type = ftype == FileType::kQ4_0 ? Type::kQ4_1 : Type::kQ5_1;
    }
    ++i_ffn_down_;
    return type;
  }
  if (category == Category::kAttnOutput) {
    if (!falcon) {
      if (shape_.n_expert == 8) {
        if (ftype == FileType::kQ2_K || ftype == FileType::kQ3_K_S || ftype == FileType::kQ3_K_M ||
            ftype == FileType::kQ4_K_S || ftype == FileType::kQ4_K_M) {
          type = Type::kQ5_K;
        }
      } else if (ftype == FileType::kQ2_K) {
        type = Type::kQ3_K;
      } else if (ftype == FileType::kQ3_K_M) {
        type = Type::kQ4_K;
      } else if (ftype == FileType::kQ3_K_L) {
        type = Type::kQ5_K;
      }
    } else if (ftype == FileType::kQ3_K_L) {
      type = Type::kQ4_K;
    }
    return type;
  }
  if (category == Category::kFfnGate) {
    LayerInfo(i_ffn_gate_, n_layer_, name);  // validates MoE layer names, as llama does
    ++i_ffn_gate_;
    return type;
  }
  if (category == Category::kFfnUp) {
    LayerInfo(i_ffn_up_, n_layer_, name);
    ++i_ffn_up_;
    return type;
  }
  return type;
}

Type TypeSelector::ShapeFallback(const std::string& name, int64_t ncols, Type type,
                                 std::string& note) {
  const TypeTraits& traits = TraitsOf(type);
  if (ncols % traits.block_size == 0) return type;
  ++n_fallback_;
  Type fallback;
  switch (type) {
    case Type::kQ2_K:
    case Type::kQ3_K:
      fallback = Type::kQ4_0;
      break;
    case Type::kQ4_K:
      fallback = Type::kQ5_0;
      break;
    case Type::kQ5_K:
      fallback = Type::kQ5_1;
      break;
    case Type::kQ6_K:
      fallback = Type::kQ8_0;
      break;
    default:
      // llama-quantize gives up here; f16 keeps every weight of any row length.
      note = name + ": row length " + std::to_string(ncols) + " is not a multiple of " +
             std::to_string(traits.block_size) + " (required by " + traits.name +
             "); using f16 instead (llama-quantize refuses this tensor)";
      return Type::kF16;
  }
  if (ncols % TraitsOf(fallback).block_size != 0) {
    note = name + ": row length " + std::to_string(ncols) + " fits neither " + traits.name +
           " nor " + TypeName(fallback) + "; using f16";
    return Type::kF16;
  }
  note = name + ": row length " + std::to_string(ncols) + " is not a multiple of " +
         std::to_string(traits.block_size) + " (required by " + traits.name + "); using " +
         TypeName(fallback);
  return fallback;
}

TypeChoice TypeSelector::Choose(const std::string& name, const std::vector<int64_t>& dims,
                                Type current) {
  TypeChoice choice{current, false, ""};
  if (!AllowsQuantization(name, dims)) return choice;
  choice.quantized = true;
  const Category category = CategoryOf(name);
  if (options_.token_embedding_type && category == Category::kTokenEmbd) {
    choice.type = *options_.token_embedding_type;
    return choice;
  }
  if (options_.output_tensor_type && category == Category::kOutput) {
    choice.type = *options_.output_tensor_type;
    return choice;
  }
  Type type = options_.preset.default_type;
  if (IsQuantizedType(type)) {
    bool manual = false;
    for (const auto& [pattern, override_type] : patterns_) {
      if (std::regex_search(name, pattern)) {
        type = override_type;
        manual = true;
        break;
      }
    }
    if (!manual && !options_.pure) type = MixType(type, name, dims, category);
    type = ShapeFallback(name, dims[0], type, choice.fallback_note);
  }
  choice.type = type;
  return choice;
}

}  // namespace hwyquant
