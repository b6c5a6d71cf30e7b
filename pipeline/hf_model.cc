// config.json handling, per-architecture conversion rules and gguf-py's naming
// heuristics.
#include "pipeline/hf_model.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "hwyquant/format.h"
#include "pipeline/model_card.h"
#include "pipeline/paths.h"
#include "pipeline/text.h"
#include "pipeline/tokenizer.h"

namespace hwyquant {

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return buffer.str();
}

Json LoadJsonFile(const std::string& path) {
  const std::string text = ReadTextFile(path);
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

std::optional<Json> LoadJsonFileIfExists(const std::string& path) {
  if (!PathIsFile(path)) return std::nullopt;
  return LoadJsonFile(path);
}

bool JsonTruthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  if (v.is_number_unsigned()) return v.get<uint64_t>() != 0;
  if (v.is_number_float()) return v.get<double>() != 0.0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return !v.empty();
}

namespace {

std::string ConfigPath(const std::string& dir) { return dir + "/config.json"; }

// find_hparam: the first key present (value may be anything, even null).
const Json* FindHparam(const Json& hparams, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    auto it = hparams.find(k);
    if (it != hparams.end()) return &*it;
  }
  return nullptr;
}

uint32_t AsU32(const Json& v, const std::string& dir, const std::string& what) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 0xFFFFFFFFll) {
    throw Error(ConfigPath(dir) + ": " + what + " must be a non-negative integer, got " + v.dump());
  }
  return static_cast<uint32_t>(v.get<int64_t>());
}

float AsF32(const Json& v, const std::string& dir, const std::string& what) {
  if (!v.is_number()) {
    throw Error(ConfigPath(dir) + ": " + what + " must be a number, got " + v.dump());
  }
  return static_cast<float>(v.get<double>());
}

int64_t RequireInt(const Json& hparams, const char* key, const std::string& dir) {
  auto it = hparams.find(key);
  if (it == hparams.end() || !it->is_number_integer() || it->get<int64_t>() <= 0) {
    throw Error(ConfigPath(dir) + ": field '" + key + "' must be a positive integer");
  }
  return it->get<int64_t>();
}

// Tensors of multimodal checkpoints that text conversion drops
// (TextModel.filter_tensors).
bool IsMultimodalTensor(const std::string& name) {
  static const char* kPrefixes[] = {
      "mlp",     "vit.",       "vpm.",           "siglip2.",          "conformer.",
      "merger.", "resampler.", "sound_encoder.", "sound_projection.", "speech_embeddings."};
  for (const char* p : kPrefixes) {
    if (name.rfind(p, 0) == 0) return true;
  }
  static const char* kInfixes[] = {"visual.",         "vision.",
                                   "audio.",          "talker.",
                                   "vision_",         "audio_",
                                   "token2wav.",      "code2wav.",
                                   "projector.",      "pre_mm_projector_norm",
                                   "image_newline",   "view_seperator",
                                   "patch_embed",     "patch_embedding",
                                   "patch_merger.",   "patch_merge_mlp.",
                                   "model.connector."};
  for (const char* p : kInfixes) {
    if (name.find(p) != std::string::npos) return true;
  }
  return false;
}

// Rules shared by the llama-like decoder families: the HF layer names and GGUF
// block names.
class DecoderArchitecture : public HfArchitecture {
 public:
  struct Spec {
    const char* hf;
    const char* gguf;
    bool undo_permute;
    // Per-layer HF suffix -> GGUF block tensor.
    std::vector<std::pair<std::string, std::string>> layer_names;
  };

  DecoderArchitecture(std::string dir, Json hparams, Spec spec)
      : dir_(std::move(dir)), spec_(std::move(spec)) {
    hparams_ = std::move(hparams);
    const Json* n_layers =
        FindHparam(hparams_, {"n_layers", "num_hidden_layers", "n_layer", "num_layers"});
    if (!n_layers || !n_layers->is_number_integer() || n_layers->get<int64_t>() <= 0) {
      throw Error(ConfigPath(dir_) + ": num_hidden_layers must be a positive integer");
    }
    block_count_ = n_layers->get<int64_t>();
    n_head_ = RequireInt(hparams_, "num_attention_heads", dir_);
    n_head_kv_ = RequireInt(hparams_, "num_key_value_heads", dir_);
  }

  std::string hf_name() const override { return spec_.hf; }
  std::string gguf_name() const override { return spec_.gguf; }

  std::optional<Mapped> MapTensor(const std::string& original) const override {
    std::string name = original;
    if (EndsWith(name, ".attention.masked_bias") || EndsWith(name, ".attention.bias") ||
        EndsWith(name, ".rotary_emb.inv_freq")) {
      return std::nullopt;
    }
    if (name.find("language_model.") != std::string::npos) {
      name.erase(name.find("language_model."), std::string("language_model.").size());
    }
    if (IsMultimodalTensor(name)) return std::nullopt;

    std::string suffix;
    std::string base;
    if (EndsWith(name, ".weight")) {
      suffix = ".weight";
    } else if (EndsWith(name, ".bias")) {
      suffix = ".bias";
    } else {
      throw Error("cannot map tensor '" + original + "' to a GGUF name (not .weight or .bias)");
    }
    base = name.substr(0, name.size() - suffix.size());

    Mapped m;
    if (base == "model.embed_tokens") {
      m.name = "token_embd";
    } else if (base == "model.norm") {
      m.name = "output_norm";
    } else if (base == "lm_head") {
      m.name = "output";
    } else {
      const std::string prefix = "model.layers.";
      size_t digits_end = prefix.size();
      if (base.rfind(prefix, 0) == 0) {
        while (digits_end < base.size() &&
               std::isdigit(static_cast<unsigned char>(base[digits_end]))) {
          ++digits_end;
        }
      }
      if (digits_end == prefix.size() || digits_end >= base.size() || base[digits_end] != '.') {
        throw Error("cannot map tensor '" + original + "' to a GGUF name for " + spec_.hf);
      }
      const std::string bid_text = base.substr(prefix.size(), digits_end - prefix.size());
      const std::string rest = base.substr(digits_end + 1);
      const int64_t bid = std::stoll(bid_text);
      if (bid >= block_count_ || (bid_text.size() > 1 && bid_text[0] == '0')) {
        throw Error("cannot map tensor '" + original + "': block " + bid_text +
                    " is outside num_hidden_layers " + std::to_string(block_count_));
      }
      std::string gguf_part;
      for (const auto& [hf_part, g] : spec_.layer_names) {
        if (rest == hf_part) gguf_part = g;
      }
      if (gguf_part.empty()) {
        throw Error("cannot map tensor '" + original + "' to a GGUF name for " + spec_.hf);
      }
      m.name = "blk." + std::to_string(bid) + "." + gguf_part;
      if (spec_.undo_permute && rest == "self_attn.q_proj") {
        m.transform = RowTransform::kPermuteQ;
        m.groups = n_head_;
      } else if (spec_.undo_permute && rest == "self_attn.k_proj") {
        m.transform = RowTransform::kPermuteK;
        m.groups = n_head_kv_ != n_head_ ? n_head_kv_ : n_head_;
      }
    }
    m.name += suffix;
    return m;
  }

  void AppendParameters(uint32_t file_type, std::vector<GgufKv>& kv) const override {
    const std::string a = spec_.gguf;
    const Json& h = hparams_;
    SetKv(kv, a + ".block_count", GgufValue::U32(static_cast<uint32_t>(block_count_)));
    if (const Json* v = FindHparam(h, {"max_position_embeddings", "n_ctx", "n_positions",
                                       "max_length", "max_sequence_length", "model_max_length"});
        v && !v->is_null()) {
      SetKv(kv, a + ".context_length", GgufValue::U32(AsU32(*v, dir_, "context length")));
    }
    if (const Json* v = FindHparam(h, {"hidden_size", "n_embd", "dim"}); v && !v->is_null()) {
      SetKv(kv, a + ".embedding_length", GgufValue::U32(AsU32(*v, dir_, "hidden_size")));
    }
    if (const Json* v = FindHparam(h, {"prefix_dense_intermediate_size", "dense_intermediate_size",
                                       "intermediate_size", "n_inner", "hidden_dim"});
        v && !v->is_null()) {
      SetKv(kv, a + ".feed_forward_length", GgufValue::U32(AsU32(*v, dir_, "intermediate_size")));
    }
    if (const Json* v = FindHparam(h, {"num_attention_heads", "n_head", "n_heads"});
        v && !v->is_null()) {
      SetKv(kv, a + ".attention.head_count",
            GgufValue::U32(AsU32(*v, dir_, "num_attention_heads")));
    }
    if (const Json* v = FindHparam(h, {"num_key_value_heads", "n_kv_heads"}); v && !v->is_null()) {
      SetKv(kv, a + ".attention.head_count_kv",
            GgufValue::U32(AsU32(*v, dir_, "num_key_value_heads")));
    }
    if (h.contains("is_causal") && h["is_causal"].is_boolean() && !h["is_causal"].get<bool>()) {
      SetKv(kv, a + ".attention.causal", GgufValue::Bool(false));
    }

    const Json rope = RopeParameters();
    const Json full = rope.contains("full_attention") ? rope["full_attention"] : rope;
    if (full.contains("rope_type") && !full["rope_type"].is_null()) {
      const std::string type = full["rope_type"].is_string() ? full["rope_type"].get<std::string>()
                                                             : full["rope_type"].dump();
      const bool has_factor = full.contains("factor") && !full["factor"].is_null();
      if (type == "linear" && has_factor) {
        SetKv(kv, a + ".rope.scaling.type", GgufValue::String("linear"));
        SetKv(kv, a + ".rope.scaling.factor",
              GgufValue::F32(AsF32(full["factor"], dir_, "factor")));
      } else if (type == "yarn" && has_factor) {
        SetKv(kv, a + ".rope.scaling.type", GgufValue::String("yarn"));
        SetKv(kv, a + ".rope.scaling.factor",
              GgufValue::F32(AsF32(full["factor"], dir_, "factor")));
        if (!full.contains("original_max_position_embeddings")) {
          throw Error(ConfigPath(dir_) +
                      ": yarn rope scaling needs original_max_position_embeddings");
        }
        SetKv(kv, a + ".rope.scaling.original_context_length",
              GgufValue::U32(AsU32(full["original_max_position_embeddings"], dir_,
                                   "original_max_position_embeddings")));
        auto opt = [&](const char* key, const std::string& gguf_key) {
          if (full.contains(key) && !full[key].is_null()) {
            SetKv(kv, a + gguf_key, GgufValue::F32(AsF32(full[key], dir_, key)));
          }
        };
        opt("extrapolation_factor", ".rope.scaling.yarn_ext_factor");
        if (full.contains("attention_factor") && !full["attention_factor"].is_null()) {
          opt("attention_factor", ".rope.scaling.yarn_attn_factor");
        } else {
          opt("attn_factor", ".rope.scaling.yarn_attn_factor");
        }
        opt("beta_fast", ".rope.scaling.yarn_beta_fast");
        opt("beta_slow", ".rope.scaling.yarn_beta_slow");
      } else if (type == "su" || type == "longrope") {
        SetKv(kv, a + ".rope.scaling.type", GgufValue::String("longrope"));
      }
      // Other types add no KV: "llama3" becomes a rope_freqs tensor
      // (LlamaArchitecture), "default" and "dynamic" nothing, as in
      // convert_hf_to_gguf.py.
    }
    if (rope.contains("mrope_section")) {
      throw Error(ConfigPath(dir_) + ": mrope_section is not supported");
    }
    if (full.contains("rope_theta") && !full["rope_theta"].is_null()) {
      SetKv(kv, a + ".rope.freq_base",
            GgufValue::F32(AsF32(full["rope_theta"], dir_, "rope_theta")));
    }
    if (rope.contains("sliding_attention") && rope["sliding_attention"].contains("rope_theta")) {
      SetKv(kv, a + ".rope.freq_base_swa",
            GgufValue::F32(AsF32(rope["sliding_attention"]["rope_theta"], dir_, "rope_theta")));
    }
    if (const Json* v = FindHparam(h, {"rms_norm_eps", "norm_eps"}); v && !v->is_null()) {
      SetKv(kv, a + ".attention.layer_norm_rms_epsilon",
            GgufValue::F32(AsF32(*v, dir_, "rms_norm_eps")));
    }
    if (const Json* v = FindHparam(h, {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"});
        v && !v->is_null()) {
      SetKv(kv, a + ".attention.layer_norm_epsilon",
            GgufValue::F32(AsF32(*v, dir_, "layer_norm_eps")));
    }
    if (const Json* v = FindHparam(h, {"num_local_experts", "num_experts", "n_routed_experts"});
        v && !v->is_null()) {
      throw Error(ConfigPath(dir_) + ": mixture-of-experts models are not supported");
    }
    if (h.contains("head_dim") && !h["head_dim"].is_null()) {
      SetKv(kv, a + ".attention.key_length",
            GgufValue::U32(AsU32(h["head_dim"], dir_, "head_dim")));
      SetKv(kv, a + ".attention.value_length",
            GgufValue::U32(AsU32(h["head_dim"], dir_, "head_dim")));
    }
    SetKv(kv, "general.file_type", GgufValue::U32(file_type));
    AppendModelParameters(kv);
  }

 protected:
  // The model class's additions after the generic parameters.
  virtual void AppendModelParameters(std::vector<GgufKv>& kv) const = 0;

  // rope_parameters (or rope_scaling) with the global rope keys mirrored in, as
  // TextModel does.
  Json RopeParameters() const {
    const Json& h = hparams_;
    Json rope;
    if (h.contains("rope_parameters")) {
      rope = h["rope_parameters"];
    } else if (h.contains("rope_scaling")) {
      rope = h["rope_scaling"];
    }
    if (!JsonTruthy(rope)) rope = Json::object();
    if (!rope.is_object()) throw Error(ConfigPath(dir_) + ": rope_scaling is not an object");
    const Json* theta = FindHparam(h, {"global_rope_theta", "rope_global_theta",
                                       "rope_theta_global", "rope_theta", "rotary_emb_base"});
    const Json* local_theta =
        FindHparam(h, {"local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                       "rope_local_base_freq"});
    const Json* partial = FindHparam(h, {"partial_rotary_factor", "rope_pct", "rope_percent"});
    const Json* orig_ctx = FindHparam(h, {"original_max_position_embeddings"});
    if (!rope.contains("full_attention") && !rope.contains("sliding_attention")) {
      if (local_theta && !local_theta->is_null()) {
        rope["sliding_attention"] = Json::object({{"rope_theta", *local_theta}});
      }
      if (!rope.contains("rope_theta") && theta && !theta->is_null()) rope["rope_theta"] = *theta;
      if (!rope.contains("rope_type") && rope.contains("type") && !rope["type"].is_null()) {
        rope["rope_type"] = rope["type"];
      }
      if (!rope.contains("partial_rotary_factor") && partial && !partial->is_null()) {
        rope["partial_rotary_factor"] = *partial;
      }
      if (!rope.contains("original_max_position_embeddings") && orig_ctx && !orig_ctx->is_null()) {
        rope["original_max_position_embeddings"] = *orig_ctx;
      }
    }
    return rope;
  }

  std::string dir_;
  Spec spec_;
  int64_t n_head_ = 0;
  int64_t n_head_kv_ = 0;
};

const std::vector<std::pair<std::string, std::string>>& LlamaLayerNames() {
  static const std::vector<std::pair<std::string, std::string>> kNames = {
      {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  return kNames;
}

class LlamaArchitecture : public DecoderArchitecture {
 public:
  LlamaArchitecture(std::string dir, Json hparams, const char* hf)
      : DecoderArchitecture(std::move(dir), std::move(hparams),
                            Spec{hf, "llama", /*undo_permute=*/true, LlamaLayerNames()}) {}

  // Llama 3.1-style rope scaling: per-frequency factors in a rope_freqs tensor,
  // computed in float32 as torch does in convert_hf_to_gguf.py.
  std::vector<GeneratedTensor> GenerateTensors(std::vector<GgufKv>&) const override {
    const Json rope = RopeParameters();
    const Json full = rope.contains("full_attention") ? rope["full_attention"] : rope;
    if (!JsonTruthy(full) || !full.contains("rope_type") || !full["rope_type"].is_string())
      return {};
    std::string type = full["rope_type"].get<std::string>();
    for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (type != "llama3") return {};
    auto number = [&](const char* key, double fallback) {
      if (!full.contains(key) || full[key].is_null()) return fallback;
      if (!full[key].is_number())
        throw Error(ConfigPath(dir_) + ": rope " + key + " is not a number");
      return full[key].get<double>();
    };
    const double base = number("rope_theta", 10000.0);
    int64_t dim;
    if (hparams_.contains("head_dim") && !hparams_["head_dim"].is_null()) {
      dim = AsU32(hparams_["head_dim"], dir_, "head_dim");
    } else {
      dim = RequireInt(hparams_, "hidden_size", dir_) /
            RequireInt(hparams_, "num_attention_heads", dir_);
    }
    const float factor = static_cast<float>(number("factor", 8.0));
    const float low_freq_factor = static_cast<float>(number("low_freq_factor", 1.0));
    const float high_freq_factor = static_cast<float>(number("high_freq_factor", 4.0));
    const double old_context_len = number("original_max_position_embeddings", 8192.0);
    const float low_freq_wavelen = static_cast<float>(old_context_len / low_freq_factor);
    const float high_freq_wavelen = static_cast<float>(old_context_len / high_freq_factor);
    const float two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
    std::vector<float> factors;
    for (int64_t i = 0; i < dim; i += 2) {
      const float exponent = static_cast<float>(i) / static_cast<float>(dim);
      const float power = static_cast<float>(
          std::pow(static_cast<double>(static_cast<float>(base)), static_cast<double>(exponent)));
      const float freq = 1.0f / power;
      const float wavelen = two_pi / freq;
      if (wavelen < high_freq_wavelen) {
        factors.push_back(1.0f);
      } else if (wavelen > low_freq_wavelen) {
        factors.push_back(factor);
      } else {
        const float smooth = (static_cast<float>(old_context_len) / wavelen - low_freq_factor) /
                             (high_freq_factor - low_freq_factor);
        factors.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
      }
    }
    return {{"rope_freqs.weight", factors}};
  }

  void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const override {
    const std::string config_path = dir + "/tokenizer_config.json";
    if (std::optional<Json> tc = LoadJsonFileIfExists(config_path)) {
      if (tc->is_object() && tc->contains("add_prefix_space") &&
          !(*tc)["add_prefix_space"].is_null()) {
        SetKv(kv, "tokenizer.ggml.add_space_prefix",
              GgufValue::Bool(JsonTruthy((*tc)["add_prefix_space"])));
      }
      if (tc->is_object() && tc->contains("tokenizer_class") &&
          (*tc)["tokenizer_class"] == "HybridDNATokenizer") {
        throw Error(config_path + ": HybridDNATokenizer is not supported");
      }
    }
    if (PathIsFile(dir + "/tekken.json") && !PathIsFile(dir + "/tokenizer.json")) {
      throw Error(dir + ": Mistral tekken tokenizers are not supported");
    }
    const int64_t vocab_size = hparams_["vocab_size"].get<int64_t>();
    if (HasSentencePieceModel(dir)) {
      AppendSentencePieceVocab(dir, vocab_size, kv);
    } else if (HasTokenizerJson(dir)) {
      // Without tokenizer.model, convert_hf_to_gguf.py reads a byte-fallback
      // BPE tokenizer.json as a sentencepiece-style vocabulary (LlamaHfVocab)
      // and anything else as GPT-2 BPE.
      const Json tj = LoadJsonFile(dir + "/tokenizer.json");
      const Json model = tj.is_object() && tj.contains("model") ? tj["model"] : Json();
      if (model.is_object() && model.value("type", Json()) == "BPE" &&
          JsonTruthy(model.value("byte_fallback", Json()))) {
        throw Error(dir +
                    "/tokenizer.json: sentencepiece-style tokenizer.json without "
                    "tokenizer.model is not supported; supported tokenizers: "
                    "tokenizer.model, "
                    "GPT-2 style BPE tokenizer.json");
      }
      AppendGpt2Vocab(dir, vocab_size, kv);
    } else {
      throw Error(dir + ": no tokenizer.model or tokenizer.json; supported tokenizers for " +
                  spec_.hf + ": sentencepiece tokenizer.model, GPT-2 style BPE tokenizer.json");
    }
    if (vocab_size == 32016) {  // CodeLlama's infill tokens
      AppendFixedSpecialTokens(
          dir, vocab_size,
          {{"prefix", 32007}, {"suffix", 32008}, {"middle", 32009}, {"eot", 32010}}, kv);
    }
    if (vocab_size == 49152) SetKv(kv, "tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
  }

 protected:
  void AppendModelParameters(std::vector<GgufKv>& kv) const override {
    const Json& h = hparams_;
    SetKv(kv, "llama.vocab_size", GgufValue::U32(AsU32(h["vocab_size"], dir_, "vocab_size")));
    int64_t rope_dim;
    if (h.contains("head_dim") && !h["head_dim"].is_null()) {
      rope_dim = AsU32(h["head_dim"], dir_, "head_dim");
    } else {
      rope_dim = RequireInt(h, "hidden_size", dir_) / RequireInt(h, "num_attention_heads", dir_);
    }
    SetKv(kv, "llama.rope.dimension_count", GgufValue::U32(static_cast<uint32_t>(rope_dim)));
  }
};

// Qwen2 and Qwen3 (TextModel rules, no rotary permutation; Qwen3 adds per-head
// q/k norms).
class QwenArchitecture : public DecoderArchitecture {
 public:
  QwenArchitecture(std::string dir, Json hparams, bool qwen3)
      : DecoderArchitecture(
            std::move(dir), std::move(hparams),
            Spec{qwen3 ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM", qwen3 ? "qwen3" : "qwen2",
                 /*undo_permute=*/false, LayerNames(qwen3)}) {
    if (PathIsFile(dir_ + "/modules.json")) {
      throw Error(dir_ +
                  "/modules.json: sentence-transformers pooling models are not "
                  "supported");
    }
    std::string hints = dir_;
    if (hparams_.contains("_name_or_path") && hparams_["_name_or_path"].is_string()) {
      hints += " " + hparams_["_name_or_path"].get<std::string>();
    }
    for (char& c : hints) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (qwen3 && hints.find("qwen3-reranker") != std::string::npos) {
      throw Error(dir_ + ": Qwen3 reranker models are not supported");
    }
  }

  void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const override {
    const int64_t vocab_size = hparams_["vocab_size"].get<int64_t>();
    if (HasSentencePieceModel(dir)) {
      AppendSentencePieceVocab(dir, vocab_size, kv);
    } else if (HasTokenizerJson(dir)) {
      AppendGpt2Vocab(dir, vocab_size, kv);
    } else {
      throw Error(dir + ": no tokenizer.model or tokenizer.json; supported tokenizers for " +
                  spec_.hf + " are sentencepiece and tokenizer.json BPE");
    }
  }

 protected:
  void AppendModelParameters(std::vector<GgufKv>&) const override {}

 private:
  static std::vector<std::pair<std::string, std::string>> LayerNames(bool qwen3) {
    std::vector<std::pair<std::string, std::string>> names = LlamaLayerNames();
    if (qwen3) {
      names.emplace_back("self_attn.q_norm", "attn_q_norm");
      names.emplace_back("self_attn.k_norm", "attn_k_norm");
    }
    return names;
  }
};

// Gemma's block tensors: four norms around attention and the MLP.
const std::vector<std::pair<std::string, std::string>>& GemmaLayerNames() {
  static const std::vector<std::pair<std::string, std::string>> kNames = {
      {"input_layernorm", "attn_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"post_attention_layernorm", "post_attention_norm"},
      {"pre_feedforward_layernorm", "ffn_norm"},
      {"post_feedforward_layernorm", "post_ffw_norm"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  return kNames;
}

// Gemma 2 (Gemma2Model): its own hyperparameter list, four norms per block
// stored as w - 1, no lm_head (tied), sentencepiece vocabulary without a space
// prefix.
class Gemma2Architecture : public DecoderArchitecture {
 public:
  Gemma2Architecture(std::string dir, Json hparams)
      : DecoderArchitecture(
            std::move(dir), std::move(hparams),
            Spec{"Gemma2ForCausalLM", "gemma2", /*undo_permute=*/false, GemmaLayerNames()}) {}

  std::optional<Mapped> MapTensor(const std::string& hf) const override {
    if (hf == "lm_head.weight") return std::nullopt;  // tied; convert skips it
    std::optional<Mapped> m = DecoderArchitecture::MapTensor(hf);
    if (m && m->name == "output.weight") {
      throw Error("cannot map tensor '" + hf + "' for Gemma2ForCausalLM");
    }
    // Gemma's RMSNorm multiplies by (1 + w); GGUF stores the factor itself.
    if (m && EndsWith(hf, "norm.weight")) m->add_one = 1.0f;
    return m;
  }

  void AppendParameters(uint32_t file_type, std::vector<GgufKv>& kv) const override {
    const std::string a = spec_.gguf;
    const Json& h = hparams_;
    auto required = [&](const char* key) -> const Json& {
      if (!h.contains(key) || h[key].is_null()) {
        throw Error(ConfigPath(dir_) + ": field '" + key + "' is required for Gemma 2");
      }
      return h[key];
    };
    SetKv(kv, a + ".context_length",
          GgufValue::U32(
              AsU32(required("max_position_embeddings"), dir_, "max_position_embeddings")));
    SetKv(kv, a + ".embedding_length",
          GgufValue::U32(AsU32(required("hidden_size"), dir_, "hidden_size")));
    SetKv(kv, a + ".block_count", GgufValue::U32(static_cast<uint32_t>(block_count_)));
    SetKv(kv, a + ".feed_forward_length",
          GgufValue::U32(AsU32(required("intermediate_size"), dir_, "intermediate_size")));
    SetKv(kv, a + ".attention.head_count",
          GgufValue::U32(AsU32(required("num_attention_heads"), dir_, "num_attention_heads")));
    SetKv(kv, a + ".attention.head_count_kv",
          GgufValue::U32(AsU32(required("num_key_value_heads"), dir_, "num_key_value_heads")));
    SetKv(kv, a + ".attention.layer_norm_rms_epsilon",
          GgufValue::F32(AsF32(required("rms_norm_eps"), dir_, "rms_norm_eps")));
    SetKv(kv, a + ".attention.key_length",
          GgufValue::U32(AsU32(required("head_dim"), dir_, "head_dim")));
    SetKv(kv, a + ".attention.value_length",
          GgufValue::U32(AsU32(required("head_dim"), dir_, "head_dim")));
    SetKv(kv, "general.file_type", GgufValue::U32(file_type));
    SetKv(
        kv, a + ".attn_logit_softcapping",
        GgufValue::F32(AsF32(required("attn_logit_softcapping"), dir_, "attn_logit_softcapping")));
    SetKv(kv, a + ".final_logit_softcapping",
          GgufValue::F32(
              AsF32(required("final_logit_softcapping"), dir_, "final_logit_softcapping")));
    SetKv(kv, a + ".attention.sliding_window",
          GgufValue::U32(AsU32(required("sliding_window"), dir_, "sliding_window")));
  }

  void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const override {
    if (!HasSentencePieceModel(dir)) {
      throw Error(dir +
                  ": no tokenizer.model; Gemma2ForCausalLM needs its "
                  "sentencepiece model");
    }
    AppendSentencePieceVocab(dir, hparams_["vocab_size"].get<int64_t>(), kv);
    SetKv(kv, "tokenizer.ggml.add_space_prefix", GgufValue::Bool(false));
  }

 protected:
  void AppendModelParameters(std::vector<GgufKv>&) const override {}
};

// Gemma 3 text models (Gemma3Model): TextModel's hyperparameters with Gemma's
// own defaults on top, per-head q/k norms, every norm stored as w - 1, and the
// embedding cut to the rows the vocabulary has ids for.
class Gemma3Architecture : public DecoderArchitecture {
 public:
  Gemma3Architecture(std::string dir, Json hparams, const char* hf)
      : DecoderArchitecture(std::move(dir), std::move(hparams),
                            Spec{hf, "gemma3", /*undo_permute=*/false, LayerNames()}) {
    if (hparams_.contains("attn_logit_softcapping") &&
        !hparams_["attn_logit_softcapping"].is_null()) {
      throw Error(ConfigPath(dir_) + ": attn_logit_softcapping must be null for Gemma 3");
    }
    vocab_rows_ = VocabularyRows();
  }

  std::optional<Mapped> MapTensor(const std::string& hf) const override {
    std::optional<Mapped> m = DecoderArchitecture::MapTensor(hf);
    if (!m) return m;
    // Gemma3RMSNorm multiplies by (1 + w); GGUF stores the factor itself.
    if (EndsWith(hf, "norm.weight")) m->add_one = 1.0f;
    if (hf.find("embed_tokens.weight") != std::string::npos) {
      m->keep_rows = vocab_rows_;
    }
    return m;
  }

  void AppendParameters(uint32_t file_type, std::vector<GgufKv>& kv) const override {
    DecoderArchitecture::AppendParameters(file_type, kv);
    const std::string a = spec_.gguf;
    const Json& h = hparams_;
    // hparams.get(key, default): the default only when the key is absent.
    auto get = [&](const char* key, Json fallback) -> Json {
      return h.contains(key) ? h[key] : fallback;
    };
    SetKv(kv, a + ".context_length",
          GgufValue::U32(
              AsU32(get("max_position_embeddings", 131072), dir_, "max_position_embeddings")));
    SetKv(kv, a + ".attention.head_count",
          GgufValue::U32(AsU32(get("num_attention_heads", 8), dir_, "num_attention_heads")));
    SetKv(kv, a + ".attention.layer_norm_rms_epsilon",
          GgufValue::F32(AsF32(get("rms_norm_eps", 1e-6), dir_, "rms_norm_eps")));
    const Json head_dim = get("head_dim", 256);
    SetKv(kv, a + ".attention.key_length", GgufValue::U32(AsU32(head_dim, dir_, "head_dim")));
    SetKv(kv, a + ".attention.value_length", GgufValue::U32(AsU32(head_dim, dir_, "head_dim")));
    // The global layers' base frequency.
    const Json rope = RopeParameters();
    const Json full = rope.contains("full_attention") ? rope["full_attention"] : rope;
    const Json theta = full.contains("rope_theta") ? full["rope_theta"] : Json(1000000.0);
    SetKv(kv, a + ".rope.freq_base", GgufValue::F32(AsF32(theta, dir_, "rope_theta")));
    if (h.contains("final_logit_softcapping") && JsonTruthy(h["final_logit_softcapping"])) {
      SetKv(kv, a + ".final_logit_softcapping",
            GgufValue::F32(AsF32(h["final_logit_softcapping"], dir_, "final_logit_softcapping")));
    }
    if (get("sliding_window_pattern", Json()) != Json(1)) {
      if (!h.contains("sliding_window")) {
        throw Error(ConfigPath(dir_) + ": field 'sliding_window' is required for Gemma 3");
      }
      SetKv(kv, a + ".attention.sliding_window",
            GgufValue::U32(AsU32(h["sliding_window"], dir_, "sliding_window")));
    }
    SetKv(kv, a + ".attention.head_count_kv",
          GgufValue::U32(AsU32(get("num_key_value_heads", 4), dir_, "num_key_value_heads")));
  }

  void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const override {
    if (HasSentencePieceModel(dir)) {
      AppendSentencePieceVocab(dir, SentencePieceVocabSize(), kv);
      SetKv(kv, "tokenizer.ggml.add_space_prefix", GgufValue::Bool(false));
    } else if (HasTokenizerJson(dir)) {
      AppendGpt2Vocab(dir, SentencePieceVocabSize(), kv);
    } else {
      throw Error(dir +
                  ": no tokenizer.model or tokenizer.json; supported "
                  "tokenizers for " +
                  spec_.hf +
                  ": sentencepiece tokenizer.model, GPT-2 style BPE "
                  "tokenizer.json");
    }
  }

 protected:
  void AppendModelParameters(std::vector<GgufKv>&) const override {}

 private:
  // hparams' vocab_size when set and non-zero (Python's `or`), else the
  // tokenizer's own size.
  std::optional<int64_t> SentencePieceVocabSize() const {
    const Json* v = FindHparam(hparams_, {"vocab_size"});
    if (v && JsonTruthy(*v)) {
      if (!v->is_number_integer() || v->get<int64_t>() < 0) {
        throw Error(ConfigPath(dir_) + ": vocab_size must be a non-negative integer");
      }
      return v->get<int64_t>();
    }
    return std::nullopt;
  }

  // How many embedding rows convert keeps: the sentencepiece vocabulary's
  // length, or tokenizer.json's vocab plus added tokens.
  int64_t VocabularyRows() const {
    if (HasSentencePieceModel(dir_)) {
      if (std::optional<int64_t> n = SentencePieceVocabSize()) return *n;
      const std::string path = dir_ + "/tokenizer.model";
      const std::string bytes = ReadTextFile(path);
      return static_cast<int64_t>(
          ParseSentencePieceModel(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                  path)
              .size());
    }
    if (!HasTokenizerJson(dir_)) return -1;  // AppendVocab names the problem
    const std::string path = dir_ + "/tokenizer.json";
    const Json tj = LoadJsonFile(path);
    if (!tj.is_object() || !tj.contains("model") || !tj["model"].is_object() ||
        !tj["model"].contains("vocab") || !tj["model"]["vocab"].is_object()) {
      throw Error(path + ": field 'model.vocab' must be an object");
    }
    if (!tj.contains("added_tokens") || !tj["added_tokens"].is_array()) {
      throw Error(path + ": field 'added_tokens' must be an array");
    }
    return static_cast<int64_t>(tj["model"]["vocab"].size() + tj["added_tokens"].size());
  }

  // Gemma 2's names plus the per-head q/k norms.
  static std::vector<std::pair<std::string, std::string>> LayerNames() {
    std::vector<std::pair<std::string, std::string>> names = GemmaLayerNames();
    names.emplace_back("self_attn.q_norm", "attn_q_norm");
    names.emplace_back("self_attn.k_norm", "attn_k_norm");
    return names;
  }

  int64_t vocab_rows_ = -1;
};

// Phi-3 (Phi3MiniModel): fused qkv and gate_up projections, its own
// hyperparameter list and vocabulary rules, and rope factor tensors for
// long-context (longrope) checkpoints.
class Phi3Architecture : public DecoderArchitecture {
 public:
  Phi3Architecture(std::string dir, Json hparams)
      : DecoderArchitecture(std::move(dir), std::move(hparams),
                            Spec{"Phi3ForCausalLM",
                                 "phi3",
                                 /*undo_permute=*/false,
                                 {{"input_layernorm", "attn_norm"},
                                  {"self_attn.qkv_proj", "attn_qkv"},
                                  {"self_attn.q_proj", "attn_q"},
                                  {"self_attn.k_proj", "attn_k"},
                                  {"self_attn.v_proj", "attn_v"},
                                  {"self_attn.o_proj", "attn_output"},
                                  {"post_attention_layernorm", "ffn_norm"},
                                  {"mlp.gate_up_proj", "ffn_up"},
                                  {"mlp.down_proj", "ffn_down"}}}) {}

  void AppendParameters(uint32_t file_type, std::vector<GgufKv>& kv) const override {
    const std::string a = spec_.gguf;
    const Shape s = GetShape();
    const Json& h = hparams_;
    SetKv(kv, a + ".context_length", GgufValue::U32(s.max_pos));
    SetKv(kv, a + ".rope.scaling.original_context_length", GgufValue::U32(s.orig_max_pos));
    SetKv(kv, a + ".embedding_length", GgufValue::U32(s.n_embd));
    SetKv(kv, a + ".feed_forward_length",
          GgufValue::U32(AsU32(Need(h, {"intermediate_size"}), dir_, "intermediate_size")));
    SetKv(kv, a + ".block_count", GgufValue::U32(static_cast<uint32_t>(block_count_)));
    SetKv(kv, a + ".attention.head_count", GgufValue::U32(s.n_head));
    SetKv(kv, a + ".attention.head_count_kv",
          GgufValue::U32(
              AsU32(Need(h, {"num_key_value_heads", "n_head_kv"}), dir_, "num_key_value_heads")));
    SetKv(kv, a + ".attention.layer_norm_rms_epsilon",
          GgufValue::F32(AsF32(Need(h, {"rms_norm_eps"}), dir_, "rms_norm_eps")));
    SetKv(kv, a + ".rope.dimension_count", GgufValue::U32(static_cast<uint32_t>(s.rope_dims)));
    const Json rope = RopeParameters();
    const Json full = rope.contains("full_attention") ? rope["full_attention"] : rope;
    if (!full.contains("rope_theta"))
      throw Error(ConfigPath(dir_) + ": rope_theta is required for Phi-3");
    SetKv(kv, a + ".rope.freq_base", GgufValue::F32(AsF32(full["rope_theta"], dir_, "rope_theta")));
    SetKv(kv, "general.file_type", GgufValue::U32(file_type));
    uint32_t sliding_window = 0;  // 0 tells Phi-4 apart from other phi3 models
    if (h.contains("sliding_window") && !h["sliding_window"].is_null()) {
      sliding_window = AsU32(h["sliding_window"], dir_, "sliding_window");
    }
    SetKv(kv, a + ".attention.sliding_window", GgufValue::U32(sliding_window));
  }

  std::vector<GeneratedTensor> GenerateTensors(std::vector<GgufKv>& kv) const override {
    const Shape s = GetShape();
    const Json rope = RopeParameters();
    const Json long_factors = rope.contains("long_factor") ? rope["long_factor"] : Json();
    const Json short_factors = rope.contains("short_factor") ? rope["short_factor"] : Json();
    if (!JsonTruthy(long_factors)) return {};
    const double scale = static_cast<double>(s.max_pos) / static_cast<double>(s.orig_max_pos);
    std::string type = rope.contains("rope_type") && rope["rope_type"].is_string()
                           ? rope["rope_type"].get<std::string>()
                           : std::string();
    for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (type.empty()) throw Error(ConfigPath(dir_) + ": rope_scaling.type is missing");
    double attn_factor;
    if (type == "su" || type == "longrope") {
      attn_factor =
          scale > 1.0
              ? std::sqrt(1 + std::log(scale) / std::log(static_cast<double>(s.orig_max_pos)))
              : 1.0;
    } else if (type == "yarn") {
      attn_factor = scale > 1.0 ? 0.1 * std::log(scale) + 1.0 : 1.0;
    } else {
      throw Error(ConfigPath(dir_) + ": rope scaling type '" + type +
                  "' is not supported for Phi-3");
    }
    SetKv(kv, std::string(spec_.gguf) + ".rope.scaling.attn_factor",
          GgufValue::F32(static_cast<float>(attn_factor)));
    if (!long_factors.is_array() || !short_factors.is_array() ||
        long_factors.size() != short_factors.size() ||
        static_cast<int64_t>(long_factors.size()) * 2 != s.rope_dims) {
      throw Error(ConfigPath(dir_) + ": rope long_factor and short_factor must each have " +
                  std::to_string(s.rope_dims / 2) + " numbers");
    }
    auto values = [&](const Json& list) {
      std::vector<float> out;
      for (const Json& v : list) out.push_back(AsF32(v, dir_, "rope factor"));
      return out;
    };
    return {{"rope_factors_long.weight", values(long_factors)},
            {"rope_factors_short.weight", values(short_factors)}};
  }

  void AppendVocab(const std::string& dir, std::vector<GgufKv>& kv) const override {
    const std::string config_path = dir + "/tokenizer_config.json";
    if (std::optional<Json> tc = LoadJsonFileIfExists(config_path)) {
      if (!tc->is_object() || !tc->contains("tokenizer_class")) {
        throw Error(config_path + ": field 'tokenizer_class' is missing");
      }
      if ((*tc)["tokenizer_class"] == "GPT2Tokenizer") {
        AppendGpt2Vocab(dir, hparams_["vocab_size"].get<int64_t>(), kv);
        return;
      }
    }
    AppendPhi3SentencePieceVocab(dir, hparams_["vocab_size"].get<int64_t>(), kv);
  }

 protected:
  void AppendModelParameters(std::vector<GgufKv>&) const override {}

 private:
  struct Shape {
    uint32_t n_embd, n_head, max_pos, orig_max_pos;
    int64_t rope_dims;
  };
  const Json& Need(const Json& h, std::initializer_list<const char*> keys) const {
    const Json* v = FindHparam(h, keys);
    if (!v || v->is_null()) {
      throw Error(ConfigPath(dir_) + ": field '" + *keys.begin() + "' is required for Phi-3");
    }
    return *v;
  }
  Shape GetShape() const {
    const Json& h = hparams_;
    Shape s;
    s.n_embd = AsU32(Need(h, {"hidden_size", "n_embd"}), dir_, "hidden_size");
    s.n_head = AsU32(Need(h, {"num_attention_heads", "n_head"}), dir_, "num_attention_heads");
    if (s.n_head == 0) throw Error(ConfigPath(dir_) + ": num_attention_heads is 0");
    s.max_pos =
        AsU32(Need(h, {"n_positions", "max_position_embeddings"}), dir_, "max_position_embeddings");
    const Json rope = RopeParameters();
    if (!rope.contains("original_max_position_embeddings")) {
      throw Error(ConfigPath(dir_) + ": original_max_position_embeddings is required for Phi-3");
    }
    s.orig_max_pos =
        AsU32(rope["original_max_position_embeddings"], dir_, "original_max_position_embeddings");
    double pct = 1.0;
    if (rope.contains("partial_rotary_factor")) {
      if (!rope["partial_rotary_factor"].is_number()) {
        throw Error(ConfigPath(dir_) + ": partial_rotary_factor must be a number");
      }
      pct = rope["partial_rotary_factor"].get<double>();
    }
    // int(rot_pct * n_embd) // n_head, in Python's double arithmetic.
    s.rope_dims = static_cast<int64_t>(pct * static_cast<double>(s.n_embd)) / s.n_head;
    return s;
  }
};

void SetDefault(Json& h, const char* key, const Json& value) {
  if (!h.contains(key)) h[key] = value;
}

// The attributes transformers' LlamaConfig / MistralConfig fill in when
// config.json omits them (convert_hf_to_gguf.py reads the config through
// AutoConfig, so it sees these).
void ApplyLlamaDefaults(Json& h, bool mistral) {
  SetDefault(h, "vocab_size", 32000);
  SetDefault(h, "hidden_size", 4096);
  SetDefault(h, "intermediate_size", mistral ? 14336 : 11008);
  SetDefault(h, "num_hidden_layers", 32);
  SetDefault(h, "num_attention_heads", 32);
  if (!h.contains("num_key_value_heads") || h["num_key_value_heads"].is_null()) {
    h["num_key_value_heads"] = mistral ? Json(8) : h["num_attention_heads"];
  }
  SetDefault(h, "max_position_embeddings", mistral ? 4096 * 32 : 2048);
  SetDefault(h, "rms_norm_eps", 1e-6);
  SetDefault(h, "rope_theta", 10000.0);
  SetDefault(h, "bos_token_id", 1);
  SetDefault(h, "eos_token_id", 2);
  SetDefault(h, "tie_word_embeddings", false);
  if (!h.contains("head_dim") || h["head_dim"].is_null()) {
    if (h["hidden_size"].is_number_integer() && h["num_attention_heads"].is_number_integer() &&
        h["num_attention_heads"].get<int64_t>() > 0) {
      h["head_dim"] = h["hidden_size"].get<int64_t>() / h["num_attention_heads"].get<int64_t>();
    }
  }
}

// The attributes transformers' Qwen2Config / Qwen3Config fill in.
void ApplyQwenDefaults(Json& h, bool qwen3) {
  SetDefault(h, "vocab_size", 151936);
  SetDefault(h, "hidden_size", 4096);
  SetDefault(h, "intermediate_size", 22016);
  SetDefault(h, "num_hidden_layers", 32);
  SetDefault(h, "num_attention_heads", 32);
  if (!h.contains("num_key_value_heads") || h["num_key_value_heads"].is_null()) {
    h["num_key_value_heads"] = h["num_attention_heads"];
  }
  SetDefault(h, "max_position_embeddings", 32768);
  SetDefault(h, "rms_norm_eps", 1e-6);
  SetDefault(h, "rope_theta", 10000.0);
  SetDefault(h, "tie_word_embeddings", false);
  if (qwen3) SetDefault(h, "head_dim", 128);
}

// The attributes transformers' Gemma2Config fills in.
void ApplyGemma2Defaults(Json& h) {
  SetDefault(h, "vocab_size", 256000);
  SetDefault(h, "hidden_size", 2304);
  SetDefault(h, "intermediate_size", 9216);
  SetDefault(h, "num_hidden_layers", 26);
  SetDefault(h, "num_attention_heads", 8);
  SetDefault(h, "num_key_value_heads", 4);
  SetDefault(h, "head_dim", 256);
  SetDefault(h, "max_position_embeddings", 8192);
  SetDefault(h, "rms_norm_eps", 1e-6);
  SetDefault(h, "rope_theta", 10000.0);
  SetDefault(h, "attn_logit_softcapping", 50.0);
  SetDefault(h, "final_logit_softcapping", 30.0);
  SetDefault(h, "sliding_window", 4096);
  SetDefault(h, "bos_token_id", 2);
  SetDefault(h, "eos_token_id", 1);
  SetDefault(h, "pad_token_id", 0);
}

// The attributes transformers' Gemma3TextConfig fills in.
void ApplyGemma3Defaults(Json& h) {
  SetDefault(h, "vocab_size", 262208);
  SetDefault(h, "hidden_size", 2304);
  SetDefault(h, "intermediate_size", 9216);
  SetDefault(h, "num_hidden_layers", 26);
  SetDefault(h, "num_attention_heads", 8);
  SetDefault(h, "num_key_value_heads", 4);
  SetDefault(h, "head_dim", 256);
  SetDefault(h, "max_position_embeddings", 131072);
  SetDefault(h, "rms_norm_eps", 1e-6);
  SetDefault(h, "rope_theta", 1000000.0);
  SetDefault(h, "rope_local_base_freq", 10000.0);
  SetDefault(h, "query_pre_attn_scalar", 256);
  SetDefault(h, "sliding_window", 4096);
  SetDefault(h, "sliding_window_pattern", 6);
  SetDefault(h, "final_logit_softcapping", nullptr);
  SetDefault(h, "attn_logit_softcapping", nullptr);
  SetDefault(h, "rope_scaling", nullptr);
  SetDefault(h, "bos_token_id", 2);
  SetDefault(h, "eos_token_id", 1);
  SetDefault(h, "pad_token_id", 0);
  SetDefault(h, "tie_word_embeddings", true);
}

// The attributes transformers' Phi3Config fills in.
void ApplyPhi3Defaults(Json& h) {
  SetDefault(h, "vocab_size", 32064);
  SetDefault(h, "hidden_size", 3072);
  SetDefault(h, "intermediate_size", 8192);
  SetDefault(h, "num_hidden_layers", 32);
  SetDefault(h, "num_attention_heads", 32);
  if (!h.contains("num_key_value_heads") || h["num_key_value_heads"].is_null()) {
    h["num_key_value_heads"] = h["num_attention_heads"];
  }
  SetDefault(h, "max_position_embeddings", 4096);
  SetDefault(h, "original_max_position_embeddings", 4096);
  SetDefault(h, "rms_norm_eps", 1e-5);
  SetDefault(h, "rope_theta", 10000.0);
  SetDefault(h, "partial_rotary_factor", 1.0);
}

const char* const kSupported[] = {"LlamaForCausalLM",   "LLaMAForCausalLM",
                                  "MistralForCausalLM", "Qwen2ForCausalLM",
                                  "Qwen3ForCausalLM",   "Gemma2ForCausalLM",
                                  "Gemma3ForCausalLM",  "Gemma3ForConditionalGeneration (text)",
                                  "Phi3ForCausalLM"};

}  // namespace

std::string SupportedArchitectures() {
  std::string s;
  for (const char* a : kSupported) {
    if (!s.empty()) s += ", ";
    s += a;
  }
  return s;
}

std::unique_ptr<HfArchitecture> LoadHfArchitecture(const std::string& dir) {
  const std::string path = ConfigPath(dir);
  if (!PathIsFile(path)) throw Error(path + ": missing (not a Hugging Face model folder?)");
  Json h = LoadJsonFile(path);
  if (!h.is_object()) throw Error(path + ": not a JSON object");
  if (!h.contains("architectures") || !h["architectures"].is_array() ||
      h["architectures"].empty() || !h["architectures"][0].is_string()) {
    throw Error(path +
                ": field 'architectures' is missing; supported: " + SupportedArchitectures());
  }
  const std::string arch = h["architectures"][0].get<std::string>();
  if (arch == "Gemma3ForConditionalGeneration") {
    // The language model only: its config moves to the root, as TextModel
    // does, over the vision model's.
    if (!h.contains("text_config") || !h["text_config"].is_object()) {
      throw Error(path + ": field 'text_config' must be an object for " + arch);
    }
    Json text = h["text_config"];
    ApplyGemma3Defaults(text);
    for (auto& [key, value] : text.items()) h[key] = value;
    return std::make_unique<Gemma3Architecture>(dir, std::move(h),
                                                "Gemma3ForConditionalGeneration");
  }
  if (h.contains("text_config") && h["text_config"].is_object()) {
    throw Error(path + ": multimodal configs (text_config) are not supported");
  }
  if (arch == "LlamaForCausalLM" || arch == "LLaMAForCausalLM") {
    ApplyLlamaDefaults(h, false);
    return std::make_unique<LlamaArchitecture>(
        dir, std::move(h), arch == "LlamaForCausalLM" ? "LlamaForCausalLM" : "LLaMAForCausalLM");
  }
  if (arch == "MistralForCausalLM") {
    ApplyLlamaDefaults(h, true);
    return std::make_unique<LlamaArchitecture>(dir, std::move(h), "MistralForCausalLM");
  }
  if (arch == "Qwen2ForCausalLM" || arch == "Qwen3ForCausalLM") {
    const bool qwen3 = arch == "Qwen3ForCausalLM";
    ApplyQwenDefaults(h, qwen3);
    return std::make_unique<QwenArchitecture>(dir, std::move(h), qwen3);
  }
  if (arch == "Phi3ForCausalLM") {
    ApplyPhi3Defaults(h);
    return std::make_unique<Phi3Architecture>(dir, std::move(h));
  }
  if (arch == "Gemma3ForCausalLM") {
    ApplyGemma3Defaults(h);
    return std::make_unique<Gemma3Architecture>(dir, std::move(h), "Gemma3ForCausalLM");
  }
  if (arch == "Gemma2ForCausalLM") {
    ApplyGemma2Defaults(h);
    return std::make_unique<Gemma2Architecture>(dir, std::move(h));
  }
  throw Error(path + ": architecture '" + arch +
              "' is not supported; supported: " + SupportedArchitectures());
}

// ---- gguf-py Metadata heuristics ----

namespace {

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool AllAlpha(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsAsciiAlpha(c)) return false;
  }
  return true;
}

bool IsLowerPy(const std::string& s) {
  bool cased = false;
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return false;
    if (c >= 'a' && c <= 'z') cased = true;
  }
  return cased;
}

std::string TitlePy(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (char c : s) {
    if (IsAsciiAlpha(c)) {
      out +=
          previous_cased ? static_cast<char>(std::tolower(c)) : static_cast<char>(std::toupper(c));
      previous_cased = true;
    } else {
      out += c;
      previous_cased = false;
    }
  }
  return out;
}

bool FullMatch(const std::string& s, const char* pattern) {
  static std::map<std::string, std::regex> cache;
  auto it = cache.find(pattern);
  if (it == cache.end()) {
    it = cache.emplace(pattern, std::regex(pattern, std::regex::ECMAScript | std::regex::icase))
             .first;
  }
  return std::regex_match(s, it->second);
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

}  // namespace

std::string ModelIdToTitle(const std::string& id) {
  std::string text = id;
  // strip(), then '-' -> ' ', then split on whitespace.
  for (char& c : text) {
    if (c == '-') c = ' ';
  }
  std::istringstream words(text);
  std::vector<std::string> out;
  std::string w;
  static const std::regex kVersion("^(v\\d+(?:\\.\\d+)*|\\d.*)$");
  while (words >> w) {
    if (IsLowerPy(w) && !std::regex_match(w, kVersion)) {
      out.push_back(TitlePy(w));
    } else {
      out.push_back(w);
    }
  }
  return Join(out, " ");
}

ModelIdComponents ParseModelId(const std::string& model_id, int64_t total_params) {
  ModelIdComponents c;
  if (model_id.find(' ') != std::string::npos) {
    c.full_name = model_id;
    return c;
  }
  std::string org, full;
  bool has_org = false;
  const size_t slash = model_id.find('/');
  if (slash != std::string::npos) {
    org = model_id.substr(0, slash);
    full = model_id.substr(slash + 1);
    has_org = true;
  } else {
    full = model_id;
  }
  if (has_org && !org.empty() && org[0] == '.') has_org = false;

  std::vector<std::string> parts;
  {
    size_t start = 0;
    while (true) {
      const size_t dash = full.find('-', start);
      const std::string part =
          full.substr(start, dash == std::string::npos ? std::string::npos : dash - start);
      if (!part.empty()) parts.push_back(part);
      if (dash == std::string::npos) break;
      start = dash + 1;
    }
  }
  std::vector<std::set<std::string>> types(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part = parts[i];
    if (FullMatch(part, "(v|iter)?\\d+([.]\\d+)*")) {
      types[i].insert("version");
    } else if (FullMatch(part, "i?q\\d(_\\w)*|b?fp?(16|32)")) {
      types[i].insert("type");
      for (char& ch : part) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      parts[i] = part;
    } else if (i > 0 && FullMatch(part,
                                  "(([A]|\\d+[x])?\\d+([._]\\d+)?[KMBT][\\d]?|"
                                  "small|mini|medium|large|x?xl)")) {
      for (char& ch : part) {
        if (ch == '_') ch = '.';
      }
      if (IsAsciiDigit(part.back())) {
        part = part.substr(0, part.size() - 2) + "." + part.back() + part[part.size() - 2];
      }
      if (part.size() > 1 && IsAsciiDigit(part[part.size() - 2])) {
        const char last = part.back();
        if (last == 'k' || last == 'm' || last == 'b' || last == 't') {
          part.back() = static_cast<char>(std::toupper(last));
        }
      }
      if (total_params != 0) {
        const std::string number = part.substr(0, part.size() - 1);
        bool numeric = !number.empty();
        int dots = 0;
        for (char ch : number) {
          if (ch == '.') {
            ++dots;
          } else if (!IsAsciiDigit(ch)) {
            numeric = false;
          }
        }
        if (numeric && dots <= 1 && number != ".") {
          const double value = std::strtod(number.c_str(), nullptr);
          const size_t scale_index = std::string(" KMBT").find(part.back());
          const double scale = scale_index == std::string::npos
                                   ? 0.001
                                   : std::pow(1000.0, static_cast<double>(scale_index));
          const double label_params = value * scale;
          const bool lora_small =
              total_params < 0 && label_params < static_cast<double>((-total_params) / 8);
          const bool far =
              total_params > 0 && std::fabs(label_params - static_cast<double>(total_params)) >
                                      static_cast<double>(7 * total_params / 8);
          if (lora_small || far) {
            types[i].insert("finetune");
            part.back() = static_cast<char>(std::tolower(static_cast<unsigned char>(part.back())));
          }
        }
      }
      if (types[i].empty()) types[i].insert("size_label");
      parts[i] = part;
    } else if (i > 0 && FullMatch(part, "chat|instruct|vision|lora")) {
      if (total_params < 0 && (part == "lora" || part == "LORA" || FullMatch(part, "lora"))) {
        types[i].insert("type");
      } else {
        types[i].insert("finetune");
      }
    }
  }

  bool numeric_size = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (types[i].count("size_label")) {
      for (char ch : parts[i]) numeric_size |= IsAsciiDigit(ch);
    }
  }
  if (numeric_size) {
    for (size_t i = 0; i < parts.size(); ++i) {
      if (types[i].count("size_label") && AllAlpha(parts[i])) types[i].erase("size_label");
    }
  }

  bool at_start = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (at_start &&
        ((types[i].empty() && IsAsciiAlpha(parts[i][0])) || types[i].count("version"))) {
      types[i].insert("basename");
    } else {
      at_start = false;
      if (types[i].empty()) types[i].insert("finetune");
    }
  }
  for (size_t k = parts.size(); k-- > 0;) {
    if (types[k].count("basename") && types[k].size() > 1) {
      types[k].erase("basename");
    } else {
      break;
    }
  }

  std::vector<std::string> basename, sizes, finetune, version;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (types[i].count("basename")) basename.push_back(parts[i]);
    if (types[i].count("size_label") &&
        std::find(sizes.begin(), sizes.end(), parts[i]) == sizes.end()) {
      sizes.push_back(parts[i]);
    }
    if (types[i].count("finetune")) finetune.push_back(parts[i]);
    if (types[i].count("version") && !types[i].count("basename")) version.push_back(parts[i]);
  }
  c.full_name = full;
  if (has_org) c.org = org;
  if (!basename.empty()) c.basename = Join(basename, "-");
  if (!sizes.empty()) c.size_label = Join(sizes, "-");
  if (!finetune.empty()) c.finetune = Join(finetune, "-");
  if (!version.empty()) c.version = Join(version, "-");
  if (!c.size_label && !c.finetune && !c.version) c.basename.reset();
  return c;
}

std::string SizeLabel(int64_t total_params) {
  const double count = static_cast<double>(total_params < 0 ? -total_params : total_params);
  double scaled;
  const char* suffix;
  if (count > 1e12) {
    scaled = count * 1e-12;
    suffix = "T";
  } else if (count > 1e9) {
    scaled = count * 1e-9;
    suffix = "B";
  } else if (count > 1e6) {
    scaled = count * 1e-6;
    suffix = "M";
  } else {
    scaled = count * 1e-3;
    suffix = "K";
  }
  // Python's round() ties to even, like nearbyint in the default rounding mode.
  std::string rounded = std::to_string(static_cast<long long>(std::nearbyint(scaled)));
  rounded.erase(0, rounded.find_first_not_of('0') == std::string::npos
                       ? rounded.size()
                       : rounded.find_first_not_of('0'));
  const int fix = std::max(2 - static_cast<int>(rounded.size()), 0);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f%s", fix, scaled, suffix);
  return buf;
}

void AppendGeneralMetadata(const std::string& dir, int64_t total_params, std::vector<GgufKv>& kv,
                           const std::string& name_from) {
  // The model card's values come first; config.json and the folder name fill
  // what it leaves unset.
  const ModelCardMetadata card = LoadModelCard(dir, total_params);
  std::optional<std::string> name = card.name, organization = card.organization,
                             basename = card.basename, finetune = card.finetune,
                             version = card.version, size_label = card.size_label;
  auto apply = [&](const ModelIdComponents& c) {
    if (!name && c.full_name) name = ModelIdToTitle(*c.full_name);
    if (!organization && c.org) organization = ModelIdToTitle(*c.org);
    if (!basename && c.basename) basename = c.basename;
    if (!finetune && c.finetune) finetune = c.finetune;
    if (!version && c.version) version = c.version;
    if (!size_label && c.size_label) size_label = c.size_label;
  };
  if (std::optional<Json> config = LoadJsonFileIfExists(dir + "/config.json")) {
    if (config->is_object() && config->contains("_name_or_path") &&
        (*config)["_name_or_path"].is_string()) {
      const std::string id = (*config)["_name_or_path"].get<std::string>();
      if (std::count(id.begin(), id.end(), '/') <= 1) apply(ParseModelId(id, total_params));
    }
  }
  // pathlib's Path(dir).name: "." components collapse, "." alone has an empty
  // name.
  std::string folder;
  {
    std::istringstream parts(name_from.empty() ? dir : name_from);
    std::string part;
    while (std::getline(parts, part, '/')) {
      if (!part.empty() && part != ".") folder = part;
    }
  }
  apply(ParseModelId(folder, total_params));
  if (!name) name = folder;
  if (!size_label && total_params > 0) size_label = SizeLabel(total_params);

  // Sampling defaults from generation_config.json (invalid JSON there is
  // ignored, as in gguf-py).
  std::optional<Json> gen;
  try {
    gen = LoadJsonFileIfExists(dir + "/generation_config.json");
  } catch (const Error&) {
    gen.reset();
  }
  if (gen && gen->is_object()) {
    struct Sampling {
      const char* json_key;
      const char* gguf_key;
      GgufType type;
    };
    static const Sampling kSampling[] = {
        {"sequence", "general.sampling.sequence", GgufType::kString},
        {"top_k", "general.sampling.top_k", GgufType::kI32},
        {"top_p", "general.sampling.top_p", GgufType::kF32},
        {"min_p", "general.sampling.min_p", GgufType::kF32},
        {"xtc_probability", "general.sampling.xtc_probability", GgufType::kF32},
        {"xtc_threshold", "general.sampling.xtc_threshold", GgufType::kF32},
        {"temperature", "general.sampling.temp", GgufType::kF32},
        {"penalty_last_n", "general.sampling.penalty_last_n", GgufType::kI32},
        {"penalty_repeat", "general.sampling.penalty_repeat", GgufType::kF32},
        {"mirostat", "general.sampling.mirostat", GgufType::kI32},
        {"mirostat_tau", "general.sampling.mirostat_tau", GgufType::kF32},
        {"mirostat_eta", "general.sampling.mirostat_eta", GgufType::kF32},
    };
    const std::string gen_path = dir + "/generation_config.json";
    for (const Sampling& s : kSampling) {
      if (!gen->contains(s.json_key) || (*gen)[s.json_key].is_null()) continue;
      const Json& v = (*gen)[s.json_key];
      if (s.type == GgufType::kString) {
        if (!v.is_string()) throw Error(gen_path + ": " + s.json_key + " is not a string");
        if (!v.get<std::string>().empty())
          SetKv(kv, s.gguf_key, GgufValue::String(v.get<std::string>()));
      } else if (s.type == GgufType::kI32) {
        if (!v.is_number_integer())
          throw Error(gen_path + ": " + s.json_key + " is not an integer");
        SetKv(kv, s.gguf_key, GgufValue::I32(static_cast<int32_t>(v.get<int64_t>())));
      } else {
        if (!v.is_number()) throw Error(gen_path + ": " + s.json_key + " is not a number");
        SetKv(kv, s.gguf_key, GgufValue::F32(static_cast<float>(v.get<double>())));
      }
    }
  }

  // gguf-py's add_string skips empty values; the order is set_gguf_meta_model's.
  auto put = [&](const std::string& key, const std::optional<std::string>& v) {
    if (v && !v->empty()) SetKv(kv, key, GgufValue::String(*v));
  };
  put("general.name", name);
  put("general.author", card.author);
  put("general.version", version);
  put("general.organization", organization);
  put("general.finetune", finetune);
  put("general.basename", basename);
  put("general.description", card.description);
  put("general.size_label", size_label);
  put("general.license", card.license);
  put("general.license.name", card.license_name);
  put("general.license.link", card.license_link);
  put("general.source.url", card.source_url);
  put("general.source.doi", card.source_doi);
  put("general.source.uuid", card.source_uuid);
  put("general.source.repo_url", card.source_repo_url);
  auto put_sources = [&](const std::string& prefix,
                         const std::optional<std::vector<CardSource>>& sources) {
    if (!sources) return;
    SetKv(kv, prefix + ".count", GgufValue::U32(static_cast<uint32_t>(sources->size())));
    for (size_t i = 0; i < sources->size(); ++i) {
      const CardSource& entry = (*sources)[i];
      for (const char* field : {"name", "author", "version", "organization", "description", "url",
                                "doi", "uuid", "repo_url"}) {
        auto it = entry.find(field);
        if (it != entry.end()) {
          put(prefix + "." + std::to_string(i) + "." + field, it->second);
        }
      }
    }
  };
  put_sources("general.base_model", card.base_models);
  put_sources("general.dataset", card.datasets);
  auto put_strings = [&](const std::string& key, const std::optional<std::vector<std::string>>& v) {
    if (v && !v->empty()) SetKv(kv, key, GgufValue::StringArray(*v));
  };
  put_strings("general.tags", card.tags);
  put_strings("general.languages", card.languages);
}

}  // namespace hwyquant
