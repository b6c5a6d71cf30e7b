// Tests of `hwyquant convert`: every shared model against
// convert_hf_to_gguf.py's output, the other --outtype values, the naming
// heuristics, the tokenizer parser and the error paths.
#include "pipeline/convert.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "hwyquant/half.h"
#include "hwyquant/hwyquant.h"
#include "pipeline/gguf.h"
#include "pipeline/hf_model.h"
#include "pipeline/quantize.h"
#include "pipeline/tokenizer.h"
#include "tests/golden_gguf.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

using test::ScratchDir;

std::string ConvertTo(const std::string& model_dir, const std::string& out_path,
                      OutType outtype = OutType::kAuto) {
  HfModelSource source(model_dir, ConvertOptions{outtype, false, ""});
  WriteModelSource(source, out_path);
  return out_path;
}

void CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  REQUIRE(out.good());
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

// A copy of a shared model folder (symlinks would keep the folder name out of
// our control).
std::string CopyModel(const std::string& model, const std::string& to_dir) {
  const std::string from = test::SharedDir() + "/models/" + model;
  REQUIRE(::mkdir(to_dir.c_str(), 0755) == 0);
  for (const char* f :
       {"config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    if (test::FileExists(from + "/" + f)) CopyFile(from + "/" + f, to_dir + "/" + f);
  }
  return to_dir;
}

TEST_CASE("convert matches convert_hf_to_gguf.py on every shared model") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::vector<std::string> models = test::SharedModels();
  REQUIRE(models.size() >= 4);
  ScratchDir scratch;
  for (const std::string& model : models) {
    SECTION(model) {
      const std::string out = ConvertTo(shared + "/models/" + model, scratch.path() + "/out.gguf");
      test::CheckAgainstGolden(model + "/convert", out, test::GoldenConvert()[model + "/convert"],
                               /*all_keys=*/true);
    }
  }
}

TEST_CASE("convert writes KV pairs in convert_hf_to_gguf.py's order") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  HfModelSource source(shared + "/models/synth-llama-bf16-sharded");
  std::vector<std::string> keys;
  for (const GgufKv& kv : source.Metadata()) keys.push_back(kv.key);
  const std::vector<std::string> expected = {"general.architecture",
                                             "general.type",
                                             "general.name",
                                             "general.finetune",
                                             "general.basename",
                                             "general.size_label",
                                             "llama.block_count",
                                             "llama.context_length",
                                             "llama.embedding_length",
                                             "llama.feed_forward_length",
                                             "llama.attention.head_count",
                                             "llama.attention.head_count_kv",
                                             "llama.rope.freq_base",
                                             "llama.attention.layer_norm_rms_epsilon",
                                             "llama.attention.key_length",
                                             "llama.attention.value_length",
                                             "general.file_type",
                                             "llama.vocab_size",
                                             "llama.rope.dimension_count",
                                             "general.quantization_version",
                                             "tokenizer.ggml.model",
                                             "tokenizer.ggml.pre",
                                             "tokenizer.ggml.tokens",
                                             "tokenizer.ggml.scores",
                                             "tokenizer.ggml.token_type",
                                             "tokenizer.ggml.bos_token_id",
                                             "tokenizer.ggml.eos_token_id",
                                             "tokenizer.ggml.unknown_token_id",
                                             "tokenizer.ggml.add_bos_token",
                                             "tokenizer.ggml.add_sep_token",
                                             "tokenizer.ggml.add_eos_token"};
  CHECK(keys == expected);
  // Python's writer stores token types as int32 and the hyperparameters as u32
  // / f32.
  CHECK(FindKv(source.Metadata(), "tokenizer.ggml.token_type")->element_type() == GgufType::kI32);
  CHECK(FindKv(source.Metadata(), "llama.block_count")->type() == GgufType::kU32);
  CHECK(FindKv(source.Metadata(), "llama.rope.freq_base")->type() == GgufType::kF32);
}

TEST_CASE("convert --outtype f32, f16, bf16 and q8_0 follow the per-tensor rules") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string model = shared + "/models/stories260K";
  const std::string f32_path = ConvertTo(model, scratch.path() + "/f32.gguf", OutType::kF32);
  const std::string q8_path = ConvertTo(model, scratch.path() + "/q8.gguf", OutType::kQ8_0);
  const std::string bf16_path = ConvertTo(model, scratch.path() + "/bf16.gguf", OutType::kBF16);
  auto f32 = GgufFile::Open(f32_path);
  auto q8 = GgufFile::Open(q8_path);
  auto bf16 = GgufFile::Open(bf16_path);
  CHECK(f32->FindKey("general.file_type")->AsUInt() == 0);
  CHECK(q8->FindKey("general.file_type")->AsUInt() == 7);
  CHECK(bf16->FindKey("general.file_type")->AsUInt() == 32);
  // The golden auto (f16) output must be exactly numpy's f16 rounding of the
  // f32 output.
  const nlohmann::json& golden = test::GoldenConvert()["stories260K/convert"];
  for (size_t i = 0; i < f32->tensors().size(); ++i) {
    const GgufTensorInfo& t = f32->tensors()[i];
    INFO("tensor " << t.name);
    REQUIRE(t.type == Type::kF32);
    const float* values = reinterpret_cast<const float*>(f32->TensorData(i));
    const size_t n = static_cast<size_t>(t.ElementCount());
    const std::string golden_type = golden["tensors"][t.name][0];
    std::vector<uint8_t> expected;
    if (golden_type == "F16") {
      std::vector<HalfBits> halves(n);
      for (size_t k = 0; k < n; ++k) halves[k] = NumpyF32ToF16(values[k]);
      expected.assign(reinterpret_cast<uint8_t*>(halves.data()),
                      reinterpret_cast<uint8_t*>(halves.data()) + 2 * n);
    } else {
      expected.assign(f32->TensorData(i), f32->TensorData(i) + t.size);
    }
    CHECK(test::Sha256Hex(expected.data(), expected.size()) == golden["tensors"][t.name][2]);

    // bf16 output: every 2-D tensor rounded, norms kept f32.
    const GgufTensorInfo& b = bf16->tensors()[i];
    REQUIRE(b.name == t.name);
    if (t.dims.size() == 1) {
      CHECK(b.type == Type::kF32);
    } else {
      REQUIRE(b.type == Type::kBF16);
      const BF16Bits* got = reinterpret_cast<const BF16Bits*>(bf16->TensorData(i));
      for (size_t k = 0; k < n; k += 97) REQUIRE(got[k] == F32ToBF16(values[k]));
    }

    // q8_0: 2-D tensors with 32-multiple rows quantized, ffn_down (172 columns)
    // falls back to f16.
    const GgufTensorInfo& q = q8->tensors()[i];
    REQUIRE(q.name == t.name);
    if (t.dims.size() == 1) {
      CHECK(q.type == Type::kF32);
    } else if (t.dims[0] % 32 != 0) {
      CHECK(q.type == Type::kF16);
    } else {
      REQUIRE(q.type == Type::kQ8_0);
      std::vector<uint8_t> want(q.size);
      Quantize(Type::kQ8_0, values, want.data(), t.dims[1], t.dims[0]);
      CHECK(std::memcmp(want.data(), q8->TensorData(i), q.size) == 0);
    }
  }
}

TEST_CASE("convert names models like gguf-py's Metadata heuristics") {
  CHECK(ModelIdToTitle("stories260K-bf16") == "stories260K Bf16");
  CHECK(ModelIdToTitle("synth-llama-bf16-sharded") == "Synth Llama Bf16 Sharded");
  CHECK(ModelIdToTitle("Llama-2-7b-chat-hf") == "Llama 2 7b Chat Hf");
  CHECK(ModelIdToTitle("tiny-v1.2-x") == "Tiny v1.2 X");

  ModelIdComponents c = ParseModelId("synth-llama-bf16-sharded", 3'300'000);
  CHECK(c.basename == std::optional<std::string>("synth-llama"));
  CHECK(c.finetune == std::optional<std::string>("sharded"));
  CHECK(!c.size_label);

  c = ParseModelId("meta-llama/Llama-2-7b-chat-hf", 6'738'415'616);
  CHECK(c.org == std::optional<std::string>("meta-llama"));
  CHECK(c.basename == std::optional<std::string>("Llama-2"));
  CHECK(!c.version);
  CHECK(c.size_label == std::optional<std::string>("7B"));
  CHECK(c.finetune == std::optional<std::string>("chat-hf"));

  // A size far from the real parameter count is a context length, so a
  // finetune.
  c = ParseModelId("Mistral-7B-32k", 7'000'000'000);
  CHECK(c.size_label == std::optional<std::string>("7B"));
  CHECK(c.finetune == std::optional<std::string>("32k"));

  c = ParseModelId("babyllama-tok105", 936'448);
  CHECK(!c.basename);
  CHECK(!c.size_label);

  CHECK(SizeLabel(260'032) == "260K");
  CHECK(SizeLabel(936'448) == "936K");
  CHECK(SizeLabel(3'281'152) == "3.3M");
  CHECK(SizeLabel(6'738'415'616) == "6.7B");
  CHECK(SizeLabel(1'500) == "1.5K");
}

TEST_CASE("convert reads generation_config sampling values and _name_or_path") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string dir = CopyModel("stories260K", scratch.path() + "/my-model-v2");
  WriteFile(dir + "/generation_config.json", R"({"temperature": 0.7, "top_k": 40})");
  HfModelSource source(dir);
  CHECK(FindKv(source.Metadata(), "general.sampling.top_k")->AsInt() == 40);
  CHECK(FindKv(source.Metadata(), "general.sampling.temp")->AsDouble() == static_cast<float>(0.7));
  CHECK(FindKv(source.Metadata(), "general.name")->AsString() == "My Model v2");
  CHECK(FindKv(source.Metadata(), "general.basename")->AsString() == "my-model");
  CHECK(FindKv(source.Metadata(), "general.version")->AsString() == "v2");
  // A README without front matter adds nothing.
  WriteFile(dir + "/README.md", "# My model, no front matter\n");
  CHECK(HfModelSource(dir).Metadata().size() == source.Metadata().size());
}

// The general.* pairs of a converted folder, in order, as "key=value" lines.
std::vector<std::string> GeneralKv(const std::vector<GgufKv>& kv) {
  std::vector<std::string> out;
  for (const GgufKv& e : kv) {
    if (e.key.rfind("general.", 0) == 0 && e.key != "general.architecture" &&
        e.key != "general.type" && e.key.rfind("general.sampling.", 0) != 0 &&
        e.key != "general.file_type" && e.key != "general.quantization_version") {
      out.push_back(
          e.key + "=" +
          (e.value.type() == GgufType::kString ? e.value.AsString() : e.value.ToString()));
    }
  }
  return out;
}

TEST_CASE(
    "convert reads the model card's YAML front matter as gguf-py's Metadata "
    "does") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string dir = CopyModel("stories260K", scratch.path() + "/my-model-v2");
  // Hub-style card: license fields, a "no" language (YAML 1.1 would make it
  // false), tags plus pipeline_tag, base models as an id, a Hub URL and a
  // mapping, a dataset id, and other creators' keys.
  WriteFile(dir + "/README.md", R"(---
license: apache-2.0
license_name: my-license
license_link: https://example.com/LICENSE
language:
- en
- no
tags:
- text-generation
- llama
pipeline_tag: text-generation
base_model:
- meta-llama/Llama-3.2-1B
- https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct
- name: Custom Base
  organization: Someone
datasets: HuggingFaceFW/fineweb-edu
model_creator: Jane Doe
description: "A tiny test model"
---
# Title
)");
  HfModelSource source(dir);
  // What gguf-py 0.18's Metadata.load + set_gguf_meta_model write for this
  // folder (size_label comes from the parameter count, as in convert).
  const std::vector<std::string> expected = {
      "general.name=My Model v2",
      "general.author=Jane Doe",
      "general.version=v2",
      "general.basename=my-model",
      "general.description=A tiny test model",
      "general.size_label=" + FindKv(source.Metadata(), "general.size_label")->AsString(),
      "general.license=apache-2.0",
      "general.license.name=my-license",
      "general.license.link=https://example.com/LICENSE",
      "general.base_model.count=3",
      "general.base_model.0.name=Llama 3.2 1B",
      "general.base_model.0.organization=Meta Llama",
      "general.base_model.0.repo_url=https://huggingface.co/meta-llama/"
      "Llama-3.2-1B",
      "general.base_model.1.name=Qwen2.5 0.5B Instruct",
      "general.base_model.1.organization=Qwen",
      "general.base_model.1.repo_url=https://huggingface.co/Qwen/"
      "Qwen2.5-0.5B-Instruct",
      "general.base_model.2.name=Custom Base",
      "general.base_model.2.organization=Someone",
      "general.dataset.count=1",
      "general.dataset.0.name=Fineweb Edu",
      "general.dataset.0.organization=HuggingFaceFW",
      "general.dataset.0.repo_url=https://huggingface.co/HuggingFaceFW/"
      "fineweb-edu",
      "general.tags=" +
          GgufValue::StringArray({"text-generation", "llama", "text-generation"}).ToString(),
      "general.languages=" + GgufValue::StringArray({"en", "no"}).ToString(),
  };
  CHECK(GeneralKv(source.Metadata()) == expected);

  // The card's own names win over the folder's; a list of licenses is joined.
  WriteFile(dir + "/README.md",
            "---\nmodel_name: Card Name\nversion: \"3\"\nlicense:\n- mit\n"
            "- other\nbase_model: []\n---\n");
  HfModelSource named(dir);
  CHECK(FindKv(named.Metadata(), "general.name")->AsString() == "Card Name");
  CHECK(FindKv(named.Metadata(), "general.version")->AsString() == "3");
  CHECK(FindKv(named.Metadata(), "general.license")->AsString() == "mit,other");
  CHECK(FindKv(named.Metadata(), "general.base_model.count")->AsUInt() == 0);

  // Values convert_hf_to_gguf.py cannot write, and broken YAML, are errors
  // naming the file and the field.
  WriteFile(dir + "/README.md", "---\nversion: 1.0\n---\n");
  CHECK_THROWS_WITH(HfModelSource(dir),
                    Catch::Contains("README.md") && Catch::Contains("'version'"));
  WriteFile(dir + "/README.md", "---\ntags: [a, b\n---\n");
  CHECK_THROWS_WITH(HfModelSource(dir), Catch::Contains("README.md: invalid YAML front matter"));
}

std::string Varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  s += static_cast<char>(v);
  return s;
}

std::string PieceProto(const std::string& piece, float score, int type) {
  std::string body;
  body += Varint((1 << 3) | 2) + Varint(piece.size()) + piece;
  uint32_t bits;
  std::memcpy(&bits, &score, 4);
  body += Varint((2 << 3) | 5);
  for (int i = 0; i < 4; ++i) body += static_cast<char>((bits >> (8 * i)) & 0xFF);
  if (type != 1) body += Varint((3 << 3) | 0) + Varint(type);
  return Varint((1 << 3) | 2) + Varint(body.size()) + body;
}

TEST_CASE("sentencepiece parser decodes pieces and rejects malformed models") {
  std::string model = PieceProto("<unk>", 0.0f, 2) + PieceProto("<s>", 0.0f, 3) +
                      PieceProto("\xE2\x96\x81the", -1.5f, 1) + PieceProto("<0x0A>", 0.0f, 6);
  // A trainer spec (field 2) the parser must skip.
  model += Varint((2 << 3) | 2) + Varint(3) + std::string("\x08\x01\x10", 3);
  auto bytes = reinterpret_cast<const uint8_t*>(model.data());
  const std::vector<SentencePiece> pieces = ParseSentencePieceModel(bytes, model.size(), "t.model");
  REQUIRE(pieces.size() == 4);
  CHECK(pieces[0].type == PieceType::kUnknown);
  CHECK(pieces[2].piece == "\xE2\x96\x81the");
  CHECK(pieces[2].score == -1.5f);
  CHECK(pieces[2].type == PieceType::kNormal);
  CHECK(pieces[3].type == PieceType::kByte);

  // Every truncation fails cleanly (or parses a shorter valid prefix), never
  // crashes.
  for (size_t cut = 1; cut < model.size(); ++cut) {
    try {
      ParseSentencePieceModel(bytes, cut, "t.model");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("t.model") != std::string::npos);
    }
  }
  const std::string bad_type = PieceProto("x", 0.0f, 9);
  CHECK_THROWS_WITH(ParseSentencePieceModel(reinterpret_cast<const uint8_t*>(bad_type.data()),
                                            bad_type.size(), "bad.model"),
                    Catch::Contains("unknown type 9"));
  const std::string bad_utf8 = PieceProto("\xC3", 0.0f, 1);
  CHECK_THROWS_WITH(ParseSentencePieceModel(reinterpret_cast<const uint8_t*>(bad_utf8.data()),
                                            bad_utf8.size(), "bad.model"),
                    Catch::Contains("UTF-8"));
  CHECK_THROWS_WITH(ParseSentencePieceModel(nullptr, 0, "empty.model"),
                    Catch::Contains("no pieces"));
}

TEST_CASE("convert and run never write over a file of the model folder they read") {
  if (test::SharedDir().empty()) return;
  ScratchDir scratch;
  const std::string dir = CopyModel("stories260K", scratch.path() + "/model");
  const std::string weights = dir + "/model.safetensors";
  CopyFile(weights, scratch.path() + "/weights.orig");
  for (const std::string name : {"model.safetensors", "config.json", "tokenizer.model"}) {
    INFO(name);
    CHECK_THROWS_WITH(ConvertTo(dir, dir + "/" + name),
                      Catch::Contains("input and output are the same file: '" + dir + "/" + name));
  }
  // Through a symbolic link elsewhere, and for `run` (convert and quantize in one pass).
  const std::string link = scratch.path() + "/link.gguf";
  REQUIRE(::symlink(weights.c_str(), link.c_str()) == 0);
  CHECK_THROWS_WITH(ConvertTo(dir, link), Catch::Contains("the same file: '" + weights + "'"));
  HfModelSource source(dir, ConvertOptions{});
  QuantizeOptions options;
  options.preset = "Q8_0";
  CHECK_THROWS_WITH(QuantizeModel(source, weights, options, nullptr),
                    Catch::Contains("the same file"));
  CHECK(test::FileDifference(weights, scratch.path() + "/weights.orig") == "");
  // A GGUF in the model's folder (convert_hf_to_gguf.py's default place) is an output, and the
  // next conversion may replace it.
  ConvertTo(dir, dir + "/model-f32.gguf");
  CHECK_NOTHROW(ConvertTo(dir, dir + "/model-f32.gguf"));
}

TEST_CASE("convert reports unsupported architectures and broken folders clearly") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string dir = CopyModel("stories260K", scratch.path() + "/m");
  WriteFile(dir + "/config.json", R"({"architectures": ["BertModel"], "num_hidden_layers": 2})");
  CHECK_THROWS_WITH(HfModelSource(dir), Catch::Contains("BertModel") &&
                                            Catch::Contains("LlamaForCausalLM") &&
                                            Catch::Contains("config.json"));

  WriteFile(dir + "/config.json", "{not json");
  CHECK_THROWS_WITH(HfModelSource(dir),
                    Catch::Contains("config.json") && Catch::Contains("not valid JSON"));

  CopyFile(shared + "/models/stories260K/config.json", dir + "/config.json");
  ::unlink((dir + "/tokenizer.model").c_str());
  CHECK_THROWS_WITH(HfModelSource(dir), Catch::Contains("tokenizer.model"));

  CopyFile(shared + "/models/stories260K/tokenizer.model", dir + "/tokenizer.model");
  ::unlink((dir + "/model.safetensors").c_str());
  CHECK_THROWS_WITH(HfModelSource(dir), Catch::Contains("safetensors"));
}

TEST_CASE("convert undoes llama's q/k head permutation") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  // stories260K: 8 heads of dim 8, 4 kv heads; hidden 64.
  HfModelSource source(shared + "/models/stories260K", ConvertOptions{OutType::kF32, false, ""});
  SafetensorsFile st(shared + "/models/stories260K/model.safetensors");
  for (const char* which : {"q", "k"}) {
    const std::string hf = std::string("model.layers.3.self_attn.") + which + "_proj.weight";
    const std::string gguf = std::string("blk.3.attn_") + which + ".weight";
    const StTensor* t = st.Find(hf);
    REQUIRE(t != nullptr);
    const float* in = reinterpret_cast<const float*>(st.Data(*t));
    size_t index = 0;
    while (source.Tensors()[index].name != gguf) ++index;
    TensorBytes bytes = source.LoadTensor(index);
    const float* out = reinterpret_cast<const float*>(bytes.data());
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const int64_t heads = which[0] == 'q' ? 8 : 4;
    const int64_t half = rows / heads / 2;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < half; ++i) {
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t out_row = h * 2 * half + i * 2 + j;
          const int64_t in_row = h * 2 * half + j * half + i;
          for (int64_t c = 0; c < cols; ++c) {
            REQUIRE(out[out_row * cols + c] == in[in_row * cols + c]);
          }
        }
      }
    }
  }
}

// A checkpoint tensor for the synthetic models below: f16 values from a fixed
// seed.
struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  std::string dtype = "F16";
};

SynthTensor RandomF16(test::Rng& rng, const std::string& name, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  SynthTensor t{name, shape, std::vector<uint8_t>(2 * n)};
  for (int64_t i = 0; i < n; ++i) {
    const HalfBits h = F32ToF16(rng.UniformSigned() * 0.1f);
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

void WriteSafetensors(const std::string& path, const std::vector<SynthTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const SynthTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  const std::string text = header.dump();
  std::string file;
  for (int i = 0; i < 8; ++i) file += static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  file += text;
  for (const SynthTensor& t : tensors) file.append(t.bytes.begin(), t.bytes.end());
  WriteFile(path, file);
}

// A tiny Qwen2/Qwen3 folder: 2 layers, hidden 64, 4 heads of 16, 2 kv heads,
// ffn 96, GPT-2 style BPE tokenizer.json (12 byte-level tokens, 2 merges, 2
// special added tokens).
std::string MakeQwenModel(const std::string& dir, bool qwen3) {
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  test::Rng rng(qwen3 ? 3 : 2);
  std::vector<SynthTensor> tensors;
  tensors.push_back(RandomF16(rng, "model.embed_tokens.weight", {20, 64}));
  tensors.push_back(RandomF16(rng, "lm_head.weight", {20, 64}));
  tensors.push_back(RandomF16(rng, "model.norm.weight", {64}));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back(RandomF16(rng, p + "input_layernorm.weight", {64}));
    tensors.push_back(RandomF16(rng, p + "post_attention_layernorm.weight", {64}));
    tensors.push_back(RandomF16(rng, p + "self_attn.q_proj.weight", {64, 64}));
    tensors.push_back(RandomF16(rng, p + "self_attn.k_proj.weight", {32, 64}));
    tensors.push_back(RandomF16(rng, p + "self_attn.v_proj.weight", {32, 64}));
    tensors.push_back(RandomF16(rng, p + "self_attn.o_proj.weight", {64, 64}));
    if (qwen3) {
      tensors.push_back(RandomF16(rng, p + "self_attn.q_norm.weight", {16}));
      tensors.push_back(RandomF16(rng, p + "self_attn.k_norm.weight", {16}));
    } else {
      tensors.push_back(RandomF16(rng, p + "self_attn.q_proj.bias", {64}));
      tensors.push_back(RandomF16(rng, p + "self_attn.k_proj.bias", {32}));
      tensors.push_back(RandomF16(rng, p + "self_attn.v_proj.bias", {32}));
    }
    tensors.push_back(RandomF16(rng, p + "mlp.gate_proj.weight", {96, 64}));
    tensors.push_back(RandomF16(rng, p + "mlp.up_proj.weight", {96, 64}));
    tensors.push_back(RandomF16(rng, p + "mlp.down_proj.weight", {64, 96}));
  }
  WriteSafetensors(dir + "/model.safetensors", tensors);
  nlohmann::json config = {{"architectures", {qwen3 ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM"}},
                           {"hidden_size", 64},
                           {"intermediate_size", 96},
                           {"num_attention_heads", 4},
                           {"num_key_value_heads", 2},
                           {"num_hidden_layers", 2},
                           {"vocab_size", 20},
                           {"max_position_embeddings", 4096},
                           {"rms_norm_eps", 1e-6},
                           {"rope_theta", 1000000.0},
                           {"bos_token_id", 16},
                           {"eos_token_id", 17},
                           {"tie_word_embeddings", false},
                           {"torch_dtype", "float16"}};
  if (qwen3) config["head_dim"] = 16;
  WriteFile(dir + "/config.json", config.dump(2));
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  const char* pieces[] = {"a",        "b",  "c",  "d",    "e", "h", "l", "o",
                          "\xC4\xA0", "he", "ll", "hell", "!", "?", "x", "y"};
  for (int i = 0; i < 16; ++i) vocab[pieces[i]] = i;
  const char* pattern =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+"
      "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  nlohmann::ordered_json tokenizer = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 16}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}},
        {{"id", 17}, {"content", "<|im_end|>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", "he ll"}}}}};
  WriteFile(dir + "/tokenizer.json", tokenizer.dump(2));
  WriteFile(dir + "/tokenizer_config.json",
            R"({"bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})");
  return dir;
}

TEST_CASE(
    "convert Qwen2 and Qwen3: names, shapes, types and KV follow "
    "convert_hf_to_gguf.py") {
  ScratchDir scratch;
  for (bool qwen3 : {false, true}) {
    const std::string arch = qwen3 ? "qwen3" : "qwen2";
    INFO(arch);
    const std::string dir = MakeQwenModel(scratch.path() + "/tiny-" + arch, qwen3);
    HfModelSource source(dir);
    const auto& kv = source.Metadata();
    CHECK(FindKv(kv, "general.architecture")->AsString() == arch);
    CHECK(FindKv(kv, "general.file_type")->AsUInt() == 1);  // f16 checkpoint: f16
    CHECK(FindKv(kv, arch + ".block_count")->AsUInt() == 2);
    CHECK(FindKv(kv, arch + ".context_length")->AsUInt() == 4096);
    CHECK(FindKv(kv, arch + ".embedding_length")->AsUInt() == 64);
    CHECK(FindKv(kv, arch + ".feed_forward_length")->AsUInt() == 96);
    CHECK(FindKv(kv, arch + ".attention.head_count")->AsUInt() == 4);
    CHECK(FindKv(kv, arch + ".attention.head_count_kv")->AsUInt() == 2);
    CHECK(FindKv(kv, arch + ".rope.freq_base")->AsDouble() == 1000000.0);
    CHECK(FindKv(kv, arch + ".attention.layer_norm_rms_epsilon")->AsDouble() == 1e-6f);
    // Qwen3Config always has head_dim; Qwen2's config here does not, so no
    // key/value length.
    CHECK((FindKv(kv, arch + ".attention.key_length") != nullptr) == qwen3);
    CHECK(FindKv(kv, arch + ".vocab_size") == nullptr);
    CHECK(FindKv(kv, arch + ".rope.dimension_count") == nullptr);
    CHECK(FindKv(kv, "tokenizer.ggml.model")->AsString() == "gpt2");
    CHECK(FindKv(kv, "tokenizer.ggml.pre")->AsString() == "qwen2");
    const GgufValue* tokens = FindKv(kv, "tokenizer.ggml.tokens");
    REQUIRE(tokens->array_size() == 20);
    CHECK(tokens->strings()[9] == "he");
    CHECK(tokens->strings()[16] == "<|endoftext|>");
    CHECK(tokens->strings()[18] == "[PAD18]");
    const GgufValue* types = FindKv(kv, "tokenizer.ggml.token_type");
    std::vector<int32_t> type_values(20);
    std::memcpy(type_values.data(), types->scalar_bytes().data(), 80);
    CHECK(type_values[0] == 1);
    CHECK(type_values[17] == 3);
    CHECK(type_values[19] == 5);
    CHECK(FindKv(kv, "tokenizer.ggml.merges")->strings() ==
          std::vector<std::string>{"h e", "l l", "he ll"});
    CHECK(FindKv(kv, "tokenizer.ggml.eos_token_id")->AsUInt() == 17);
    CHECK(FindKv(kv, "tokenizer.ggml.padding_token_id")->AsUInt() == 16);
    CHECK(FindKv(kv, "tokenizer.ggml.bos_token_id")->AsUInt() == 16);  // from config.json
    CHECK(FindKv(kv, "tokenizer.chat_template") != nullptr);
    CHECK(FindKv(kv, "tokenizer.ggml.scores") == nullptr);

    // Tensor order is the checkpoint's name order; 2-D weights f16, norms and
    // biases f32.
    std::vector<std::string> names;
    for (const TensorDescriptor& t : source.Tensors()) names.push_back(t.name);
    CHECK(names[0] == "output.weight");
    CHECK(names[1] == "token_embd.weight");
    CHECK(names[2] == "blk.0.attn_norm.weight");
    size_t q_index = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      const TensorDescriptor& t = source.Tensors()[i];
      INFO(t.name);
      const bool small = t.dims.size() == 1;
      CHECK(t.type == (small ? Type::kF32 : Type::kF16));
      if (t.name == "blk.1.attn_q.weight") q_index = i;
    }
    CHECK(std::count(names.begin(), names.end(), "blk.1.attn_q_norm.weight") == (qwen3 ? 1 : 0));
    CHECK(std::count(names.begin(), names.end(), "blk.0.attn_k.bias") == (qwen3 ? 0 : 1));
    CHECK(names.size() == (qwen3 ? 3 + 2 * 11 : 3 + 2 * 12));
    CHECK(source.Tensors()[q_index].dims == std::vector<int64_t>{64, 64});
    // No rotary permutation for Qwen: attn_q is the checkpoint's bytes.
    SafetensorsFile st(dir + "/model.safetensors");
    const StTensor* q = st.Find("model.layers.1.self_attn.q_proj.weight");
    TensorBytes bytes = source.LoadTensor(q_index);
    REQUIRE(bytes.size() == q->end - q->begin);
    CHECK(std::memcmp(bytes.data(), st.Data(*q), bytes.size()) == 0);

    // The whole file round-trips through the GGUF writer and reader.
    const std::string out = scratch.path() + "/" + arch + ".gguf";
    WriteModelSource(source, out);
    CHECK(GgufFile::Open(out)->tensors().size() == names.size());
  }
}

TEST_CASE("convert refuses unknown BPE pre-tokenizers, listing the known ones") {
  ScratchDir scratch;
  const std::string dir = MakeQwenModel(scratch.path() + "/q", false);
  std::string text = ReadTextFile(dir + "/tokenizer.json");
  const size_t at = text.find("\\\\p{N}|");
  REQUIRE(at != std::string::npos);
  text.replace(at, 7, "\\\\p{N}{1,2}|");
  WriteFile(dir + "/tokenizer.json", text);
  CHECK_THROWS_WITH(HfModelSource(dir), Catch::Contains("pre-tokenizer") &&
                                            Catch::Contains("llama-bpe") &&
                                            Catch::Contains("qwen2"));
}

TEST_CASE(
    "convert Gemma2: block norms renamed and stored as 1 + w, Gemma's KV "
    "list") {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/tiny-gemma2";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  test::Rng rng(7);
  std::vector<SynthTensor> tensors;
  tensors.push_back(RandomF16(rng, "model.embed_tokens.weight", {8, 32}));
  tensors.push_back(RandomF16(rng, "lm_head.weight", {8, 32}));
  tensors.push_back(RandomF16(rng, "model.norm.weight", {32}));
  const std::string p = "model.layers.0.";
  for (const char* norm : {"input_layernorm", "post_attention_layernorm",
                           "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
    tensors.push_back(RandomF16(rng, p + norm + ".weight", {32}));
  }
  tensors.push_back(RandomF16(rng, p + "self_attn.q_proj.weight", {32, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.k_proj.weight", {16, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.v_proj.weight", {16, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.o_proj.weight", {32, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.gate_proj.weight", {64, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.up_proj.weight", {64, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.down_proj.weight", {32, 64}));
  WriteSafetensors(dir + "/model.safetensors", tensors);
  WriteFile(dir + "/config.json",
            R"({"architectures": ["Gemma2ForCausalLM"], "hidden_size": 32,
      "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
      "head_dim": 16, "num_hidden_layers": 1, "vocab_size": 8, "max_position_embeddings": 512,
      "rms_norm_eps": 1e-06, "sliding_window": 128, "final_logit_softcapping": 30.0,
      "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})");
  const std::string spm = PieceProto("<pad>", 0.0f, 3) + PieceProto("<eos>", 0.0f, 3) +
                          PieceProto("<bos>", 0.0f, 3) + PieceProto("<unk>", 0.0f, 2) +
                          PieceProto("\xE2\x96\x81", -1.0f, 1) + PieceProto("a", -2.0f, 1) +
                          PieceProto("b", -3.0f, 1) + PieceProto("<0x0A>", 0.0f, 6);
  WriteFile(dir + "/tokenizer.model", spm);

  HfModelSource source(dir);
  std::vector<std::string> keys;
  for (const GgufKv& kv : source.Metadata()) keys.push_back(kv.key);
  const std::vector<std::string> expected_keys = {"general.architecture",
                                                  "general.type",
                                                  "general.name",
                                                  "general.size_label",
                                                  "gemma2.context_length",
                                                  "gemma2.embedding_length",
                                                  "gemma2.block_count",
                                                  "gemma2.feed_forward_length",
                                                  "gemma2.attention.head_count",
                                                  "gemma2.attention.head_count_kv",
                                                  "gemma2.attention.layer_norm_rms_epsilon",
                                                  "gemma2.attention.key_length",
                                                  "gemma2.attention.value_length",
                                                  "general.file_type",
                                                  "gemma2.attn_logit_softcapping",
                                                  "gemma2.final_logit_softcapping",
                                                  "gemma2.attention.sliding_window",
                                                  "general.quantization_version",
                                                  "tokenizer.ggml.model",
                                                  "tokenizer.ggml.pre",
                                                  "tokenizer.ggml.tokens",
                                                  "tokenizer.ggml.scores",
                                                  "tokenizer.ggml.token_type",
                                                  "tokenizer.ggml.bos_token_id",
                                                  "tokenizer.ggml.eos_token_id",
                                                  "tokenizer.ggml.padding_token_id",
                                                  "tokenizer.ggml.add_space_prefix"};
  CHECK(keys == expected_keys);
  CHECK(FindKv(source.Metadata(), "gemma2.attn_logit_softcapping")->AsDouble() == 50.0);  // default
  CHECK(FindKv(source.Metadata(), "gemma2.attention.sliding_window")->AsUInt() == 128);
  CHECK(FindKv(source.Metadata(), "general.name")->AsString() == "Tiny Gemma2");
  CHECK(FindKv(source.Metadata(), "tokenizer.ggml.add_space_prefix")->AsBool() == false);

  std::vector<std::string> names;
  for (const TensorDescriptor& t : source.Tensors()) names.push_back(t.name);
  const std::vector<std::string> expected_names = {
      "token_embd.weight",          "blk.0.attn_norm.weight", "blk.0.ffn_down.weight",
      "blk.0.ffn_gate.weight",      "blk.0.ffn_up.weight",    "blk.0.post_attention_norm.weight",
      "blk.0.post_ffw_norm.weight", "blk.0.ffn_norm.weight",  "blk.0.attn_k.weight",
      "blk.0.attn_output.weight",   "blk.0.attn_q.weight",    "blk.0.attn_v.weight",
      "output_norm.weight"};
  CHECK(names == expected_names);

  // Norms: (w + 1) rounded to f16 (torch adds f16 tensors in f16), then widened
  // to f32.
  SafetensorsFile st(dir + "/model.safetensors");
  const StTensor* norm = st.Find("model.layers.0.pre_feedforward_layernorm.weight");
  TensorBytes bytes = source.LoadTensor(7);
  REQUIRE(source.Tensors()[7].type == Type::kF32);
  REQUIRE(bytes.size() == 32 * 4);
  for (int i = 0; i < 32; ++i) {
    HalfBits h;
    std::memcpy(&h, st.Data(*norm) + 2 * i, 2);
    float got;
    std::memcpy(&got, bytes.data() + 4 * i, 4);
    REQUIRE(got == F16ToF32(F32ToF16(F16ToF32(h) + 1.0f)));
  }
}

// A tiny Gemma 3 folder: 1 layer, hidden 32, 2 heads of 16, 1 kv head, ffn 64,
// an 8-piece sentencepiece vocabulary and a 10-row embedding (2 rows past the
// vocabulary, as Gemma's checkpoints pad theirs). `multimodal` stores it as the
// language model of a Gemma3ForConditionalGeneration with vision tensors beside.
std::string MakeGemma3Model(const std::string& dir, bool multimodal,
                            const std::string& extra_config = "") {
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  test::Rng rng(11);
  const std::string m = multimodal ? "language_model.model." : "model.";
  std::vector<SynthTensor> tensors;
  tensors.push_back(RandomF16(rng, m + "embed_tokens.weight", {10, 32}));
  tensors.push_back(RandomF16(rng, m + "norm.weight", {32}));
  const std::string p = m + "layers.0.";
  for (const char* norm : {"input_layernorm", "post_attention_layernorm",
                           "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
    tensors.push_back(RandomF16(rng, p + norm + ".weight", {32}));
  }
  tensors.push_back(RandomF16(rng, p + "self_attn.q_norm.weight", {16}));
  tensors.push_back(RandomF16(rng, p + "self_attn.k_norm.weight", {16}));
  tensors.push_back(RandomF16(rng, p + "self_attn.q_proj.weight", {32, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.k_proj.weight", {16, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.v_proj.weight", {16, 32}));
  tensors.push_back(RandomF16(rng, p + "self_attn.o_proj.weight", {32, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.gate_proj.weight", {64, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.up_proj.weight", {64, 32}));
  tensors.push_back(RandomF16(rng, p + "mlp.down_proj.weight", {32, 64}));
  if (multimodal) {
    tensors.push_back(RandomF16(rng, "vision_tower.vision_model.post_layernorm.weight", {8}));
    tensors.push_back(RandomF16(rng, "multi_modal_projector.mm_input_projection_weight", {8, 32}));
  }
  WriteSafetensors(dir + "/model.safetensors", tensors);
  const std::string text_config =
      R"("hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
      "num_key_value_heads": 1, "head_dim": 16, "num_hidden_layers": 1,
      "vocab_size": 8, "max_position_embeddings": 512, "sliding_window": 128)" +
      extra_config;
  // SpecialVocab reads the token ids from config.json's top level.
  const std::string token_ids = R"("bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0)";
  WriteFile(dir + "/config.json",
            multimodal ? R"({"architectures": ["Gemma3ForConditionalGeneration"],
                "model_type": "gemma3", "vision_config": {"hidden_size": 8}, )" +
                             token_ids + R"(, "text_config": {"model_type": "gemma3_text", )" +
                             text_config + "}}"
                       : R"({"architectures": ["Gemma3ForCausalLM"], )" + token_ids + ", " +
                             text_config + "}");
  WriteFile(dir + "/tokenizer.model",
            PieceProto("<pad>", 0.0f, 3) + PieceProto("<eos>", 0.0f, 3) +
                PieceProto("<bos>", 0.0f, 3) + PieceProto("<unk>", 0.0f, 2) +
                PieceProto("\xE2\x96\x81", -1.0f, 1) + PieceProto("a", -2.0f, 1) +
                PieceProto("b", -3.0f, 1) + PieceProto("<0x0A>", 0.0f, 6));
  return dir;
}

TEST_CASE(
    "convert Gemma3: TextModel KV with Gemma 3's defaults, q/k norms, 1 + w "
    "norms and the embedding cut to the vocabulary") {
  ScratchDir scratch;
  const std::string dir = MakeGemma3Model(scratch.path() + "/tiny-gemma3", false);
  HfModelSource source(dir);
  std::vector<std::string> keys;
  for (const GgufKv& kv : source.Metadata()) keys.push_back(kv.key);
  // TextModel's list, then Gemma 3's overrides in place and its additions.
  const std::vector<std::string> expected_keys = {"general.architecture",
                                                  "general.type",
                                                  "general.name",
                                                  "general.size_label",
                                                  "gemma3.block_count",
                                                  "gemma3.context_length",
                                                  "gemma3.embedding_length",
                                                  "gemma3.feed_forward_length",
                                                  "gemma3.attention.head_count",
                                                  "gemma3.attention.head_count_kv",
                                                  "gemma3.rope.freq_base",
                                                  "gemma3.rope.freq_base_swa",
                                                  "gemma3.attention.layer_norm_rms_epsilon",
                                                  "gemma3.attention.key_length",
                                                  "gemma3.attention.value_length",
                                                  "general.file_type",
                                                  "gemma3.attention.sliding_window",
                                                  "general.quantization_version",
                                                  "tokenizer.ggml.model",
                                                  "tokenizer.ggml.pre",
                                                  "tokenizer.ggml.tokens",
                                                  "tokenizer.ggml.scores",
                                                  "tokenizer.ggml.token_type",
                                                  "tokenizer.ggml.bos_token_id",
                                                  "tokenizer.ggml.eos_token_id",
                                                  "tokenizer.ggml.padding_token_id",
                                                  "tokenizer.ggml.add_space_prefix"};
  CHECK(keys == expected_keys);
  const std::vector<GgufKv>& kv = source.Metadata();
  // Gemma3TextConfig's defaults: rope_theta 1e6 for global layers,
  // rope_local_base_freq 1e4 for the sliding ones.
  CHECK(FindKv(kv, "gemma3.rope.freq_base")->AsDouble() == 1000000.0);
  CHECK(FindKv(kv, "gemma3.rope.freq_base_swa")->AsDouble() == 10000.0);
  CHECK(FindKv(kv, "gemma3.attention.sliding_window")->AsUInt() == 128);
  CHECK(FindKv(kv, "gemma3.attention.head_count_kv")->AsUInt() == 1);
  CHECK(FindKv(kv, "gemma3.attention.key_length")->AsUInt() == 16);
  CHECK(FindKv(kv, "tokenizer.ggml.bos_token_id")->AsUInt() == 2);
  CHECK(FindKv(kv, "tokenizer.ggml.eos_token_id")->AsUInt() == 1);
  CHECK(FindKv(kv, "tokenizer.ggml.add_space_prefix")->AsBool() == false);
  CHECK(FindKv(kv, "general.name")->AsString() == "Tiny Gemma3");

  std::vector<std::string> names;
  for (const TensorDescriptor& t : source.Tensors()) names.push_back(t.name);
  const std::vector<std::string> expected_names = {
      "token_embd.weight",          "blk.0.attn_norm.weight",   "blk.0.ffn_down.weight",
      "blk.0.ffn_gate.weight",      "blk.0.ffn_up.weight",      "blk.0.post_attention_norm.weight",
      "blk.0.post_ffw_norm.weight", "blk.0.ffn_norm.weight",    "blk.0.attn_k_norm.weight",
      "blk.0.attn_k.weight",        "blk.0.attn_output.weight", "blk.0.attn_q_norm.weight",
      "blk.0.attn_q.weight",        "blk.0.attn_v.weight",      "output_norm.weight"};
  CHECK(names == expected_names);

  SafetensorsFile st(dir + "/model.safetensors");
  // token_embd keeps the vocabulary's 8 rows of 32, bytes unchanged.
  const TensorDescriptor& embd = source.Tensors()[0];
  CHECK(embd.dims == std::vector<int64_t>{32, 8});
  REQUIRE(embd.type == Type::kF16);
  const TensorBytes embd_bytes = source.LoadTensor(0);
  REQUIRE(embd_bytes.size() == 8 * 32 * 2);
  CHECK(std::memcmp(embd_bytes.data(), st.Data(*st.Find("model.embed_tokens.weight")),
                    embd_bytes.size()) == 0);
  // The per-head q norm is a norm too: (w + 1) rounded to f16, widened to f32.
  const StTensor* q_norm = st.Find("model.layers.0.self_attn.q_norm.weight");
  const TensorBytes q_norm_bytes = source.LoadTensor(11);
  REQUIRE(source.Tensors()[11].type == Type::kF32);
  REQUIRE(q_norm_bytes.size() == 16 * 4);
  for (int i = 0; i < 16; ++i) {
    HalfBits h;
    std::memcpy(&h, st.Data(*q_norm) + 2 * i, 2);
    float got;
    std::memcpy(&got, q_norm_bytes.data() + 4 * i, 4);
    REQUIRE(got == F16ToF32(F32ToF16(F16ToF32(h) + 1.0f)));
  }
}

TEST_CASE(
    "convert Gemma3ForConditionalGeneration: the language model, byte for "
    "byte the text model's") {
  ScratchDir scratch;
  HfModelSource text(MakeGemma3Model(scratch.path() + "/text", false));
  HfModelSource multimodal(MakeGemma3Model(scratch.path() + "/mm", true));
  REQUIRE(multimodal.Tensors().size() == text.Tensors().size());
  for (size_t i = 0; i < text.Tensors().size(); ++i) {
    INFO("tensor " << text.Tensors()[i].name);
    CHECK(multimodal.Tensors()[i].name == text.Tensors()[i].name);
    CHECK(multimodal.Tensors()[i].dims == text.Tensors()[i].dims);
    const TensorBytes a = text.LoadTensor(i);
    const TensorBytes b = multimodal.LoadTensor(i);
    CHECK(std::vector<uint8_t>(a.data(), a.data() + a.size()) ==
          std::vector<uint8_t>(b.data(), b.data() + b.size()));
  }
  REQUIRE(multimodal.Metadata().size() == text.Metadata().size());
  for (size_t i = 0; i < text.Metadata().size(); ++i) {
    const GgufKv& a = text.Metadata()[i];
    const GgufKv& b = multimodal.Metadata()[i];
    INFO("key " << a.key);
    CHECK(b.key == a.key);
    if (a.key != "general.name") {
      CHECK(b.value.ToString() == a.value.ToString());
    }
  }
}

TEST_CASE(
    "convert Gemma3: final softcapping and sliding_window_pattern 1 as "
    "Gemma3Model writes them; attention softcapping is refused") {
  ScratchDir scratch;
  {
    HfModelSource source(MakeGemma3Model(scratch.path() + "/a", false,
                                         R"(, "final_logit_softcapping": 30.0,
                        "sliding_window_pattern": 1)"));
    const std::vector<GgufKv>& kv = source.Metadata();
    REQUIRE(FindKv(kv, "gemma3.final_logit_softcapping") != nullptr);
    CHECK(FindKv(kv, "gemma3.final_logit_softcapping")->AsDouble() == 30.0);
    CHECK(FindKv(kv, "gemma3.attention.sliding_window") == nullptr);
  }
  const std::string dir =
      MakeGemma3Model(scratch.path() + "/b", false, R"(, "attn_logit_softcapping": 50.0)");
  CHECK_THROWS_WITH(HfModelSource(dir),
                    Catch::Contains("config.json") && Catch::Contains("attn_logit_softcapping"));
}

TEST_CASE(
    "convert Phi3: fused projections, longrope factor tensors and Phi3's "
    "vocabulary rules") {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/Phi-3-tiny-128k-instruct";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  test::Rng rng(11);
  std::vector<SynthTensor> tensors;
  tensors.push_back(RandomF16(rng, "model.embed_tokens.weight", {12, 32}));
  tensors.push_back(RandomF16(rng, "lm_head.weight", {12, 32}));
  tensors.push_back(RandomF16(rng, "model.norm.weight", {32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.input_layernorm.weight", {32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.post_attention_layernorm.weight", {32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.self_attn.qkv_proj.weight", {96, 32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.self_attn.o_proj.weight", {32, 32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.mlp.gate_up_proj.weight", {128, 32}));
  tensors.push_back(RandomF16(rng, "model.layers.0.mlp.down_proj.weight", {32, 64}));
  WriteSafetensors(dir + "/model.safetensors", tensors);
  nlohmann::json config = {{"architectures", {"Phi3ForCausalLM"}},
                           {"hidden_size", 32},
                           {"intermediate_size", 64},
                           {"num_attention_heads", 2},
                           {"num_key_value_heads", 2},
                           {"num_hidden_layers", 1},
                           {"vocab_size", 12},
                           {"max_position_embeddings", 1024},
                           {"original_max_position_embeddings", 256},
                           {"rms_norm_eps", 1e-5},
                           {"rope_theta", 10000.0},
                           {"sliding_window", 262},
                           {"bos_token_id", 1},
                           {"eos_token_id", 9},
                           {"rope_scaling",
                            {{"type", "longrope"},
                             {"long_factor", {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5}},
                             {"short_factor", {1.0, 1.0, 1.0, 1.0, 1.1, 1.1, 1.1, 1.1}}}}};
  WriteFile(dir + "/config.json", config.dump(2));
  const std::string spm = PieceProto("<unk>", 0.0f, 2) + PieceProto("<s>", 0.0f, 3) +
                          PieceProto("</s>", 0.0f, 3) + PieceProto("\xE2\x96\x81", -1.0f, 1) +
                          PieceProto("a", -2.0f, 1) + PieceProto("b", -3.0f, 1);
  WriteFile(dir + "/tokenizer.model", spm);
  WriteFile(dir + "/tokenizer_config.json",
            R"({"tokenizer_class": "LlamaTokenizer",
      "add_bos_token": false, "add_eos_token": false, "eos_token": "<|endoftext|>",
      "added_tokens_decoder": {
        "9": {"content": "<|endoftext|>", "special": true},
        "10": {"content": "<|user|>", "special": false}}})");

  HfModelSource source(dir);
  const auto& kv = source.Metadata();
  REQUIRE(kv.size() > 3);
  CHECK(kv[0].key == "general.architecture");
  CHECK(kv[0].value.AsString() == "phi3");
  // Made while generating the rope factor tensors, before any other metadata.
  CHECK(kv[1].key == "phi3.rope.scaling.attn_factor");
  CHECK(kv[1].value.AsDouble() ==
        static_cast<float>(std::sqrt(1.0 + std::log(4.0) / std::log(256.0))));
  CHECK(kv[2].key == "general.type");
  CHECK(FindKv(kv, "general.basename")->AsString() == "Phi-3-tiny");  // as gguf-py decides
  CHECK(FindKv(kv, "general.finetune")->AsString() == "128k-instruct");
  CHECK(FindKv(kv, "phi3.context_length")->AsUInt() == 1024);
  CHECK(FindKv(kv, "phi3.rope.scaling.original_context_length")->AsUInt() == 256);
  CHECK(FindKv(kv, "phi3.rope.dimension_count")->AsUInt() == 16);
  CHECK(FindKv(kv, "phi3.attention.sliding_window")->AsUInt() == 262);
  CHECK(FindKv(kv, "phi3.attention.key_length") == nullptr);
  const GgufValue* tokens = FindKv(kv, "tokenizer.ggml.tokens");
  REQUIRE(tokens->array_size() == 12);
  CHECK(tokens->strings()[10] == "<|user|>");
  CHECK(tokens->strings()[11] == "[PAD11]");
  std::vector<int32_t> types(12);
  std::memcpy(types.data(), FindKv(kv, "tokenizer.ggml.token_type")->scalar_bytes().data(), 48);
  CHECK(types[9] == 3);   // special: control
  CHECK(types[10] == 4);  // Phi3 does not guess "<|...|>" as special
  CHECK(types[11] == 5);
  CHECK(FindKv(kv, "tokenizer.ggml.eos_token_id")->AsUInt() == 9);

  std::vector<std::string> names;
  for (const TensorDescriptor& t : source.Tensors()) names.push_back(t.name);
  const std::vector<std::string> expected_names = {
      "rope_factors_long.weight", "rope_factors_short.weight", "output.weight",
      "token_embd.weight",        "blk.0.attn_norm.weight",    "blk.0.ffn_down.weight",
      "blk.0.ffn_up.weight",      "blk.0.ffn_norm.weight",     "blk.0.attn_output.weight",
      "blk.0.attn_qkv.weight",    "output_norm.weight"};
  CHECK(names == expected_names);
  CHECK(source.Tensors()[0].type == Type::kF32);
  CHECK(source.Tensors()[6].dims == std::vector<int64_t>{32, 128});
  TensorBytes factors = source.LoadTensor(0);
  REQUIRE(factors.size() == 8 * 4);
  float third;
  std::memcpy(&third, factors.data() + 8, 4);
  CHECK(third == 2.0f);
}

TEST_CASE(
    "convert Llama 3 style folders: GPT-2 BPE vocabulary and llama3 "
    "rope_freqs") {
  ScratchDir scratch;
  // The Qwen fixture's checkpoint has llama tensor names (minus the biases we
  // drop here).
  const std::string dir = MakeQwenModel(scratch.path() + "/tiny-llama3", /*qwen3=*/true);
  {
    SafetensorsFile st(dir + "/model.safetensors");
    std::vector<SynthTensor> kept;
    for (const StTensor& t : st.tensors()) {
      if (t.name.find("_norm.weight") != std::string::npos &&
          t.name.find("self_attn") != std::string::npos) {
        continue;  // Qwen3's q_norm / k_norm
      }
      kept.push_back(
          {t.name, t.shape, std::vector<uint8_t>(st.Data(t), st.Data(t) + (t.end - t.begin))});
    }
    WriteSafetensors(dir + "/model.safetensors.new", kept);
  }
  REQUIRE(std::rename((dir + "/model.safetensors.new").c_str(),
                      (dir + "/model.safetensors").c_str()) == 0);
  nlohmann::json config = nlohmann::json::parse(ReadTextFile(dir + "/config.json"));
  config["architectures"] = {"LlamaForCausalLM"};
  config["rope_theta"] = 500000.0;
  config["rope_scaling"] = {{"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 64},
                            {"rope_type", "llama3"}};
  WriteFile(dir + "/config.json", config.dump());
  std::string tokenizer = ReadTextFile(dir + "/tokenizer.json");
  const size_t at = tokenizer.find("\\\\p{N}|");
  REQUIRE(at != std::string::npos);
  tokenizer.replace(at, 7, "\\\\p{N}{1,3}|");
  WriteFile(dir + "/tokenizer.json", tokenizer);

  HfModelSource source(dir);
  CHECK(FindKv(source.Metadata(), "tokenizer.ggml.model")->AsString() == "gpt2");
  CHECK(FindKv(source.Metadata(), "tokenizer.ggml.pre")->AsString() == "llama-bpe");
  CHECK(FindKv(source.Metadata(), "llama.rope.scaling.type") == nullptr);
  REQUIRE(source.Tensors()[0].name == "rope_freqs.weight");
  REQUIRE(source.Tensors()[0].dims == std::vector<int64_t>{8});  // head_dim 16 / 2
  TensorBytes bytes = source.LoadTensor(0);
  std::vector<float> factors(8);
  std::memcpy(factors.data(), bytes.data(), 32);
  // Wavelengths 2*pi*500000^(i/16): short ones keep 1, those past 64 tokens get
  // the factor 8, the band between 16 and 64 is interpolated.
  for (int i = 0; i < 8; ++i) {
    const double wavelen = 2 * M_PI * std::pow(500000.0, 2.0 * i / 16);
    INFO("frequency " << i << " wavelength " << wavelen);
    if (wavelen < 16) {
      CHECK(factors[i] == 1.0f);
    } else if (wavelen > 64) {
      CHECK(factors[i] == 8.0f);
    } else {
      const double smooth = (64 / wavelen - 1) / 3;
      CHECK(factors[i] == Approx(1 / ((1 - smooth) / 8 + smooth)).epsilon(1e-6));
    }
  }
  // Every q/k projection is permuted (llama) and the rest maps as for llama.
  CHECK(source.Tensors()[1].name == "output.weight");
  CHECK(FindKv(source.Metadata(), "llama.rope.dimension_count")->AsUInt() == 16);
}

TEST_CASE("convert widens F8_E4M3, F16 and BF16 checkpoints exactly") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string dir = CopyModel("stories260K", scratch.path() + "/f8");
  std::vector<SynthTensor> tensors;
  {
    SafetensorsFile st(dir + "/model.safetensors");
    for (const StTensor& t : st.tensors()) {
      tensors.push_back({t.name, t.shape,
                         std::vector<uint8_t>(st.Data(t), st.Data(t) + (t.end - t.begin)), "F32"});
    }
  }
  // lm_head as F8_E4M3 holding every byte value twice.
  SynthTensor head{"lm_head.weight", {512, 64}, std::vector<uint8_t>(512 * 64), "F8_E4M3"};
  for (size_t i = 0; i < head.bytes.size(); ++i) head.bytes[i] = static_cast<uint8_t>(i);
  tensors.push_back(head);
  WriteSafetensors(dir + "/model.safetensors", tensors);
  WriteFile(dir + "/config.json", [&] {
    nlohmann::json c = nlohmann::json::parse(ReadTextFile(dir + "/config.json"));
    c["tie_word_embeddings"] = false;
    return c.dump();
  }());

  HfModelSource source(dir, ConvertOptions{OutType::kF32, false, ""});
  size_t index = 0;
  while (source.Tensors()[index].name != "output.weight") ++index;
  TensorBytes bytes = source.LoadTensor(index);
  std::vector<float> v(512 * 64);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  CHECK(v[0x00] == 0.0f);
  CHECK(v[0x01] == std::ldexp(1.0f, -9));  // smallest subnormal
  CHECK(v[0x08] == std::ldexp(1.0f, -6));  // smallest normal
  CHECK(v[0x38] == 1.0f);
  CHECK(v[0x3C] == 1.5f);
  CHECK(v[0x40] == 2.0f);
  CHECK(v[0x7E] == 448.0f);  // largest finite
  CHECK(std::isnan(v[0x7F]));
  CHECK(v[0xB8] == -1.0f);
  CHECK(v[0x100 + 0x38] == 1.0f);

  // outtype auto: the f32 checkpoint's 2-D tensors become f16; f8 values are
  // exact in f16.
  HfModelSource auto_source(dir);
  CHECK(auto_source.file_type() == 1);
  TensorBytes halves = auto_source.LoadTensor(index);
  for (int b = 0; b < 256; ++b) {
    if (b == 0x7F || b == 0xFF) continue;
    HalfBits h;
    std::memcpy(&h, halves.data() + 2 * b, 2);
    REQUIRE(F16ToF32(h) == v[b]);
  }
}

TEST_CASE("convert MistralForCausalLM folders as llama, byte for byte") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  // Same folder name, so the same general.name; MistralForCausalLM converts
  // with llama's rules.
  REQUIRE(::mkdir((scratch.path() + "/m").c_str(), 0755) == 0);
  const std::string dir = CopyModel("stories260K", scratch.path() + "/m/stories260K");
  nlohmann::json c = nlohmann::json::parse(ReadTextFile(dir + "/config.json"));
  c["architectures"] = {"MistralForCausalLM"};
  c["model_type"] = "mistral";
  c["sliding_window"] = 4096;
  WriteFile(dir + "/config.json", c.dump());
  const std::string out = ConvertTo(dir, scratch.path() + "/mistral.gguf");
  test::CheckAgainstGolden("stories260K as MistralForCausalLM", out,
                           test::GoldenConvert()["stories260K/convert"],
                           /*all_keys=*/true);
}

}  // namespace
}  // namespace hwyquant
