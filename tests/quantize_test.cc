// Tests of `quantize`: byte-for-byte agreement with llama-quantize on every golden entry (synthetic
// mixes and converted real models), the options, and failures that must leave no output.
#include "pipeline/quantize.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hwyquant/hwyquant.h"
#include "pipeline/convert.h"
#include "pipeline/gguf.h"
#include "pipeline/model_source.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

using nlohmann::json;

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

size_t DirectoryEntryCount(const std::string& path) {
  size_t count = 0;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") ++count;
  }
  ::closedir(dir);
  return count;
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/hwyquant-quantize-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  size_t EntryCount() const { return DirectoryEntryCount(path_); }

 private:
  std::string path_;
};

// Inputs made by the shared generator (never stored in the repo), each variant on first use
// and once per test process.
class SynthInputs {
 public:
  explicit SynthInputs(std::string tool) : tool_(std::move(tool)) {}
  std::string Model(const std::string& variant) {
    Make(variant);
    return dir_.path() + "/" + variant + ".gguf";
  }
  std::string Imatrix(const std::string& variant) {
    Make(variant);
    return dir_.path() + "/" + variant + ".imatrix.gguf";
  }

 private:
  void Make(const std::string& variant) {
    if (made_.count(variant)) return;
    const std::string model = dir_.path() + "/" + variant + ".gguf";
    const std::string imatrix = dir_.path() + "/" + variant + ".imatrix.gguf";
    REQUIRE(std::system((tool_ + "'" + model + "' " + variant).c_str()) == 0);
    REQUIRE(std::system((tool_ + "--imatrix '" + model + "' '" + imatrix + "'").c_str()) == 0);
    made_[variant] = true;
  }

  TempDir dir_;
  std::string tool_;
  std::map<std::string, bool> made_;
};

SynthInputs* Synth() {
  static std::unique_ptr<SynthInputs> inputs;
  if (inputs) return inputs.get();
  const std::string shared = test::SharedDir();
  if (shared.empty()) return nullptr;
  inputs = std::make_unique<SynthInputs>("python3 '" + shared + "/tools/gguf_synth.py' ");
  return inputs.get();
}

json LoadJson(const std::string& path) { return json::parse(test::ReadTextFile(path)); }

// Records warnings and progress for the checks that need them.
class RecordingProgress : public QuantizeProgressListener {
 public:
  void OnProgress(const QuantizeProgress& p) override {
    if (p.stage == QuantizeStage::kTensorDone) {
      ++tensors_done;
      last_weights_done = p.weights_done;
      weights_total = p.weights_total;
    }
    if (p.stage == QuantizeStage::kDone) done = true;
  }
  void OnWarning(std::string_view message) override { warnings.emplace_back(message); }
  std::vector<std::string> warnings;
  size_t tensors_done = 0;
  uint64_t last_weights_done = 0;
  uint64_t weights_total = 0;
  bool done = false;
};

// A legacy llama-imatrix .dat file: per entry its name, the call count and the values times the
// call count (the format stores sums), then the chunk count and dataset name when there are any.
struct LegacyImatrixEntry {
  std::string name;
  std::vector<float> values;
};
void WriteLegacyImatrix(const std::string& path, const std::vector<LegacyImatrixEntry>& entries,
                        int32_t calls, int32_t chunks = 0, const std::string& dataset = "") {
  std::ofstream f(path, std::ios::binary);
  const auto put = [&](int32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  put(static_cast<int32_t>(entries.size()));
  for (const LegacyImatrixEntry& e : entries) {
    put(static_cast<int32_t>(e.name.size()));
    f.write(e.name.data(), static_cast<std::streamsize>(e.name.size()));
    put(calls);
    put(static_cast<int32_t>(e.values.size()));
    for (float v : e.values) {
      const float sum = v * static_cast<float>(calls);
      f.write(reinterpret_cast<const char*>(&sum), 4);
    }
  }
  if (chunks == 0) return;
  put(chunks);
  put(static_cast<int32_t>(dataset.size()));
  f.write(dataset.data(), static_cast<std::streamsize>(dataset.size()));
}

QuantizeResult Quantize(const std::string& in, const std::string& out, QuantizeOptions options,
                        QuantizeProgressListener* progress = nullptr) {
  GgufModelSource source(in);
  return QuantizeModel(source, out, options, progress);
}

// Quantizes in a child process whose files may not grow past `limit` bytes. Says how that went:
// "named" when it failed with an error that contains `named`, else "succeeded", "other error"
// or "crashed".
std::string QuantizeUnderFileSizeLimit(const std::string& in, const std::string& out,
                                       const QuantizeOptions& options, uint64_t limit,
                                       const std::string& named) {
  const int code = test::ExitCodeUnderFileSizeLimit(limit, [&] {
    try {
      Quantize(in, out, options);
      return 1;
    } catch (const Error& e) {
      return std::string(e.what()).find(named) != std::string::npos ? 0 : 2;
    }
  });
  return code == 0 ? "named" : code == 1 ? "succeeded" : code == 2 ? "other error" : "crashed";
}

std::string TensorSha(const GgufFile& file, size_t i) {
  return test::Sha256Hex(file.TensorData(i), file.tensors()[i].size);
}

// Compares a written file with a golden entry {order, tensors: name -> [TYPE, dims, sha], kv}.
void CheckAgainstGolden(const std::string& entry, const json& expected, const GgufFile& file,
                        const std::string& imatrix_path) {
  INFO("golden entry " << entry << ", file " << file.path());
  std::vector<std::string> order;
  for (const GgufTensorInfo& t : file.tensors()) order.push_back(t.name);
  CHECK(order == expected["order"].get<std::vector<std::string>>());
  for (const auto& [name, want] : expected["tensors"].items()) {
    INFO("tensor " << name);
    const int64_t index = file.FindTensor(name);
    REQUIRE(index >= 0);
    const GgufTensorInfo& t = file.tensors()[static_cast<size_t>(index)];
    CHECK(Upper(TypeName(t.type)) == Upper(want[0].get<std::string>()));
    CHECK(t.dims == want[1].get<std::vector<int64_t>>());
    CHECK(TensorSha(file, static_cast<size_t>(index)) == want[2].get<std::string>());
  }
  for (const auto& [key, want] : expected["kv"].items()) {
    INFO("metadata key " << key);
    const GgufValue* value = file.FindKey(key);
    REQUIRE(value != nullptr);
    if (key == "quantize.imatrix.file") {
      CHECK(value->AsString() == imatrix_path);  // llama-quantize records the path it was given
    } else if (want.is_string() && value->type() == GgufType::kString) {
      CHECK(value->AsString() == want.get<std::string>());
    } else if (want.is_string()) {
      CHECK(std::to_string(value->AsUInt()) == want.get<std::string>());
    } else {
      CHECK(value->AsUInt() == want.get<uint64_t>());
    }
  }
}

TEST_CASE("quantize matches llama-quantize on every synthetic mix", "[quantize][golden]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  const json golden = LoadJson(test::SharedDir() + "/golden/mixes/expected.json");
  REQUIRE(golden.size() >= 57);
  TempDir out_dir;
  for (const auto& [entry, expected] : golden.items()) {
    const size_t slash = entry.find('/');
    const std::string variant = entry.substr(0, slash);
    std::string preset = entry.substr(slash + 1);
    const bool with_imatrix =
        preset.size() > 8 && preset.compare(preset.size() - 8, 8, "+imatrix") == 0;
    if (with_imatrix) preset.resize(preset.size() - 8);
    QuantizeOptions options;
    options.preset = preset;
    if (with_imatrix) options.imatrix_path = synth->Imatrix(variant);
    const std::string out = out_dir.path() + "/" + variant + "-" + preset + ".gguf";
    INFO("golden entry " << entry);
    Quantize(synth->Model(variant), out, options);
    const auto file = GgufFile::Open(out);
    CheckAgainstGolden(entry, expected, *file, options.imatrix_path);
    std::remove(out.c_str());
    // These tensors fit in one piece; pieces of at most 1000 output bytes hold a few rows each
    // (one where a row is longer), so they split each tensor many times over.
    INFO("in pieces of at most 1000 output bytes");
    options.piece_output_bytes = 1000;
    Quantize(synth->Model(variant), out, options);
    CheckAgainstGolden(entry, expected, *GgufFile::Open(out), options.imatrix_path);
    std::remove(out.c_str());
  }
}

TEST_CASE("quantize converts stacked experts in pieces, each with its expert's imatrix",
          "[quantize]") {
  TempDir dir;
  constexpr int64_t kRow = 256, kRows = 48, kExperts = 4;
  const std::vector<GgufKv> kv = {
      {"general.architecture", GgufValue::String("llama")},
      {"llama.block_count", GgufValue::U32(1)},
      {"llama.attention.head_count", GgufValue::U32(4)},
      {"llama.attention.head_count_kv", GgufValue::U32(4)},
      {"llama.expert_count", GgufValue::U32(kExperts)},
      {"llama.expert_used_count", GgufValue::U32(2)},
  };
  std::vector<GgufTensorInfo> tensors = {
      {"token_embd.weight", {kRow, 32}, Type::kF32},
      {"blk.0.ffn_up_exps.weight", {kRow, kRows, kExperts}, Type::kF32},
      {"output.weight", {kRow, 32}, Type::kF32},
  };
  std::vector<std::vector<uint8_t>> data;
  std::vector<float> experts;
  uint32_t state = 12345;
  for (GgufTensorInfo& t : tensors) {
    std::vector<float> values(static_cast<size_t>(t.ElementCount()));
    for (float& v : values) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) / (1 << 23);
    }
    if (t.name == "blk.0.ffn_up_exps.weight") experts = values;
    const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
    data.emplace_back(bytes, bytes + values.size() * sizeof(float));
  }
  const std::string model = dir.path() + "/moe.gguf";
  WriteGgufFile(model, kv, tensors, data);
  // A legacy imatrix with a different row of weights per expert (call count 1).
  std::vector<float> importance(static_cast<size_t>(kRow * kExperts));
  for (size_t i = 0; i < importance.size(); ++i) {
    importance[i] = 0.25f + static_cast<float>((i * 37) % 101) / 16.0f;
  }
  const std::string imatrix = dir.path() + "/moe.dat";
  WriteLegacyImatrix(imatrix, {{"blk.0.ffn_up_exps.weight", importance}}, /*calls=*/1);

  QuantizeOptions options;
  options.preset = "Q4_K_M";
  options.pure = true;
  options.imatrix_path = imatrix;
  const Type type = Type::kQ4_K;
  const size_t row_bytes = RowSize(type, kRow);
  std::vector<uint8_t> want(row_bytes * kRows * kExperts);
  for (int64_t e = 0; e < kExperts; ++e) {
    hwyquant::Quantize(type, experts.data() + e * kRows * kRow, want.data() + e * kRows * row_bytes,
                       kRows, kRow, importance.data() + e * kRow);
  }
  // One piece per tensor, then 9-row pieces (1300 bytes of 144-byte rows) that straddle the
  // experts' 48-row matrices, then one row per piece.
  for (const uint64_t piece_bytes : {uint64_t{0}, uint64_t{1300}, uint64_t{1}}) {
    INFO("pieces of at most " << piece_bytes << " output bytes (0: the default)");
    options.piece_output_bytes = piece_bytes;
    const std::string out = dir.path() + "/moe-q4_k.gguf";
    Quantize(model, out, options);
    const auto file = GgufFile::Open(out);
    const int64_t index = file->FindTensor("blk.0.ffn_up_exps.weight");
    REQUIRE(index >= 0);
    const GgufTensorInfo& t = file->tensors()[static_cast<size_t>(index)];
    REQUIRE(t.type == type);
    REQUIRE(t.size == want.size());
    const uint8_t* got = file->TensorData(static_cast<size_t>(index));
    for (int64_t row = 0; row < kRows * kExperts; ++row) {
      INFO("expert " << row / kRows << ", row " << row % kRows);
      REQUIRE(std::memcmp(got + row * row_bytes, want.data() + row * row_bytes, row_bytes) == 0);
    }
  }
}

TEST_CASE("quantize matches llama-quantize on converted real models", "[quantize][golden]") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const json golden = LoadJson(shared + "/golden/convert/expected.json");
  TempDir dir;
  std::map<std::string, std::string> converted;
  size_t compared = 0;
  size_t refused = 0;
  for (const auto& [entry, expected] : golden.items()) {
    const size_t slash = entry.find('/');
    const std::string model = entry.substr(0, slash);
    const std::string preset = entry.substr(slash + 1);
    if (preset == "convert") continue;
    INFO("golden entry " << entry);
    if (!converted.count(model)) {
      // The converted GGUF (what llama-quantize was given), written by our converter.
      HfModelSource hf(shared + "/models/" + model);
      converted[model] = dir.path() + "/" + model + ".gguf";
      WriteModelSource(hf, converted[model]);
    }
    QuantizeOptions options;
    options.preset = preset;
    const std::string out = dir.path() + "/" + model + "-" + preset + ".gguf";
    RecordingProgress progress;
    Quantize(converted[model], out, options, &progress);
    const auto file = GgufFile::Open(out);
    if (!expected.contains("llama_quantize_error")) {
      CheckAgainstGolden(entry, expected, *file, "");
      ++compared;
      continue;
    }
    // llama-quantize refused: rows not divisible by 32 under a legacy type. hwyquant succeeds
    // with those tensors in f16, bytes equal to the F16 preset's, and says so.
    ++refused;
    const json& f16 = golden[model + "/F16"];
    size_t fallbacks = 0;
    for (size_t i = 0; i < file->tensors().size(); ++i) {
      const GgufTensorInfo& t = file->tensors()[i];
      if (t.dims.size() < 2 || t.dims[0] % 32 == 0) continue;
      INFO("tensor " << t.name);
      CHECK(t.type == Type::kF16);
      CHECK(TensorSha(*file, i) == f16["tensors"][t.name][2].get<std::string>());
      const bool warned = std::any_of(
          progress.warnings.begin(), progress.warnings.end(), [&](const std::string& w) {
            return w.find(t.name) != std::string::npos && w.find("f16") != std::string::npos;
          });
      CHECK(warned);
      ++fallbacks;
    }
    CHECK(fallbacks > 0);
  }
  CHECK(compared >= 46);
  CHECK(refused == 6);
}

TEST_CASE("quantize streams straight from the converter", "[quantize]") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const json golden = LoadJson(shared + "/golden/convert/expected.json");
  TempDir dir;
  for (const char* entry : {"stories260K-bf16/Q4_K_M", "synth-llama-bf16-sharded/Q5_K_S"}) {
    const std::string name = entry;
    const std::string model = name.substr(0, name.find('/'));
    HfModelSource hf(shared + "/models/" + model);
    QuantizeOptions options;
    options.preset = name.substr(name.find('/') + 1);
    const std::string out = dir.path() + "/direct.gguf";
    QuantizeModel(hf, out, options, nullptr);
    CheckAgainstGolden(entry, golden[entry], *GgufFile::Open(out), "");
  }
}

TEST_CASE("quantize options change types as llama-quantize's do", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  const json golden = LoadJson(test::SharedDir() + "/golden/mixes/expected.json");
  TempDir dir;
  const std::string out = dir.path() + "/out.gguf";
  const auto type_of = [](const GgufFile& f, const std::string& name) {
    const int64_t i = f.FindTensor(name);
    REQUIRE(i >= 0);
    return f.tensors()[static_cast<size_t>(i)].type;
  };

  SECTION("--exclude-weights drops imatrix entries by substring") {
    QuantizeOptions options;
    options.preset = "q4_k_m";  // case-insensitive
    options.imatrix_path = synth->Imatrix("pub");
    options.exclude_weights = {"ffn_down"};
    Quantize(synth->Model("pub"), out, options);
    const auto file = GgufFile::Open(out);
    CHECK(file->FindKey("quantize.imatrix.entries_count")->AsUInt() == 44 - 6);
    const json& with = golden["pub/Q4_K_M+imatrix"]["tensors"];
    const json& without = golden["pub/Q4_K_M"]["tensors"];
    for (size_t i = 0; i < file->tensors().size(); ++i) {
      const std::string& name = file->tensors()[i].name;
      INFO("tensor " << name);
      const json& want = name.find("ffn_down") != std::string::npos ? without : with;
      CHECK(TensorSha(*file, i) == want[name][2].get<std::string>());
    }
  }
  SECTION("--include-weights keeps only matching imatrix entries") {
    QuantizeOptions options;
    options.preset = "Q4_K_M";
    options.imatrix_path = synth->Imatrix("pub");
    options.include_weights = {"attn_q"};
    Quantize(synth->Model("pub"), out, options);
    const auto file = GgufFile::Open(out);
    CHECK(file->FindKey("quantize.imatrix.entries_count")->AsUInt() == 6);
    const int64_t q = file->FindTensor("blk.0.attn_q.weight");
    const int64_t k = file->FindTensor("blk.0.attn_k.weight");
    CHECK(TensorSha(*file, q) ==
          golden["pub/Q4_K_M+imatrix"]["tensors"]["blk.0.attn_q.weight"][2].get<std::string>());
    CHECK(TensorSha(*file, k) ==
          golden["pub/Q4_K_M"]["tensors"]["blk.0.attn_k.weight"][2].get<std::string>());
  }
  SECTION("type overrides, --pure, --leave-output-tensor") {
    QuantizeOptions options;
    options.preset = "Q4_K_M";
    options.tensor_types = {{"attn_q", Type::kQ8_0}, {"ffn_.*", Type::kQ5_0}};
    options.output_tensor_type = Type::kF16;
    options.token_embedding_type = Type::kQ8_0;
    Quantize(synth->Model("pub"), out, options);
    auto file = GgufFile::Open(out);
    CHECK(type_of(*file, "blk.3.attn_q.weight") == Type::kQ8_0);
    CHECK(type_of(*file, "blk.3.ffn_down.weight") == Type::kQ5_0);
    CHECK(type_of(*file, "blk.3.attn_k.weight") == Type::kQ4_K);
    CHECK(type_of(*file, "output.weight") == Type::kF16);
    CHECK(type_of(*file, "token_embd.weight") == Type::kQ8_0);
    CHECK(type_of(*file, "output_norm.weight") == Type::kF32);

    options = QuantizeOptions();
    options.preset = "Q4_K_M";
    options.pure = true;
    options.leave_output_tensor = true;
    Quantize(synth->Model("pub"), out, options);
    file = GgufFile::Open(out);
    CHECK(type_of(*file, "output.weight") == Type::kF32);
    CHECK(type_of(*file, "blk.0.ffn_down.weight") == Type::kQ4_K);  // no mix
    CHECK(type_of(*file, "blk.0.attn_v.weight") == Type::kQ4_K);
    CHECK(type_of(*file, "token_embd.weight") == Type::kQ4_K);
  }
  SECTION("--override-kv values land at the end, as llama-quantize writes them") {
    QuantizeOptions options;
    options.preset = "Q8_0";
    options.kv_overrides = {
        ParseKvOverride("general.name=str:renamed"), ParseKvOverride("test.count=int:-7"),
        ParseKvOverride("test.scale=float:0.5"), ParseKvOverride("test.flag=bool:true")};
    Quantize(synth->Model("pub_odd"), out, options);
    const auto file = GgufFile::Open(out);
    const std::vector<GgufKv>& kv = file->kv();
    REQUIRE(kv.size() >= 6);
    CHECK(kv[kv.size() - 6].key == "general.quantization_version");
    CHECK(kv[kv.size() - 5].key == "general.file_type");
    CHECK(kv[kv.size() - 4].key == "general.name");
    CHECK(kv[kv.size() - 4].value.AsString() == "renamed");
    CHECK(kv[kv.size() - 3].value == GgufValue::U32(7));
    CHECK(kv[kv.size() - 2].value == GgufValue::F32(0.5f));
    CHECK(kv[kv.size() - 1].value == GgufValue::Bool(true));
    CHECK_THROWS_WITH(ParseKvOverride("x=double:1"), Catch::Contains("int, float, bool or str"));
    CHECK_THROWS_WITH(ParseKvOverride("x=bool:yes"), Catch::Contains("true or false"));
    CHECK_THROWS_WITH(ParseKvOverride("novalue"), Catch::Contains("KEY=TYPE:VALUE"));
    // An override that the type choice cannot read is blamed on the override, naming the key,
    // and leaves no output.
    std::remove(out.c_str());
    options.kv_overrides = {ParseKvOverride("llama.block_count=str:six")};
    CHECK_THROWS_WITH(Quantize(synth->Model("pub_odd"), out, options),
                      Catch::Contains("--override-kv breaks the model's metadata") &&
                          Catch::Contains("llama.block_count: GGUF value of type string"));
    options.kv_overrides = {ParseKvOverride("general.architecture=int:1")};
    CHECK_THROWS_WITH(Quantize(synth->Model("pub_odd"), out, options),
                      Catch::Contains("--override-kv breaks the model's metadata") &&
                          Catch::Contains("no general.architecture string"));
    CHECK_FALSE(test::FileExists(out));
  }
  SECTION("COPY keeps every tensor and records the input's file type") {
    QuantizeOptions options;
    options.preset = "copy";
    const auto in = GgufFile::Open(synth->Model("pub_odd"));
    // Kept rows are copied from the file in pieces: one per tensor, then as many rows as fit in
    // 1000 bytes (two of 96 f32 weights, one of 160), then one row each.
    for (const uint64_t piece_bytes : {uint64_t{0}, uint64_t{1000}, uint64_t{1}}) {
      INFO("pieces of at most " << piece_bytes << " bytes (0: the default)");
      options.piece_output_bytes = piece_bytes;
      Quantize(synth->Model("pub_odd"), out, options);
      const auto file = GgufFile::Open(out);
      CHECK(file->FindKey("general.file_type")->AsUInt() == 0);
      REQUIRE(file->tensors().size() == in->tensors().size());
      for (size_t i = 0; i < file->tensors().size(); ++i) {
        INFO("tensor " << file->tensors()[i].name);
        const int64_t j = in->FindTensor(file->tensors()[i].name);
        CHECK(file->tensors()[i].type == in->tensors()[static_cast<size_t>(j)].type);
        CHECK(TensorSha(*file, i) == TensorSha(*in, static_cast<size_t>(j)));
      }
    }
  }
}

TEST_CASE("quantize presets, names and order helpers", "[quantize]") {
  CHECK(FindPreset("q4_k_m")->file_type == FileType::kQ4_K_M);
  CHECK(FindPreset("Q4_K")->file_type == FileType::kQ4_K_M);
  CHECK(FindPreset("15")->file_type == FileType::kQ4_K_M);
  CHECK(FindPreset("0")->copy_only == false);  // F32 before COPY, as llama-quantize
  CHECK(FindPreset("COPY")->copy_only);
  CHECK(FindPreset("bf16")->default_type == Type::kBF16);
  CHECK_FALSE(FindPreset("Q4_K_X").has_value());
  CHECK_FALSE(FindPreset("IQ2_XXS").has_value());
  std::vector<std::string> names = {"blk.10.a", "blk.2.b",           "output.weight",
                                    "blk.2.a",  "token_embd.weight", "blk.x.y"};
  std::sort(names.begin(), names.end(), WeightNameLess);
  CHECK(names == std::vector<std::string>{"blk.x.y", "output.weight", "token_embd.weight",
                                          "blk.2.a", "blk.2.b", "blk.10.a"});
  CHECK_THROWS_WITH(ParseQuantizableType("iq2_xxs", "--tensor-type"),
                    Catch::Contains("cannot produce"));
  CHECK_THROWS_WITH(ParseQuantizableType("q9_9", "--tensor-type"), Catch::Contains("unknown"));
}

TEST_CASE("quantize from f16 and bf16 sources, requantize, threads, legacy imatrix", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string model = synth->Model("pub_gqa");

  SECTION("thread count does not change the bytes") {
    QuantizeOptions options;
    options.preset = "Q4_K_M";
    options.nthreads = 1;
    Quantize(model, dir.path() + "/t1.gguf", options);
    options.nthreads = 3;
    Quantize(model, dir.path() + "/t3.gguf", options);
    CHECK(test::FileDifference(dir.path() + "/t1.gguf", dir.path() + "/t3.gguf") == "");
  }
  SECTION("requantizing needs --allow-requantize and dequantizes first") {
    QuantizeOptions q8;
    q8.preset = "Q8_0";
    const std::string q8_path = dir.path() + "/q8.gguf";
    Quantize(model, q8_path, q8);
    QuantizeOptions q4;
    q4.preset = "Q4_0";
    q4.pure = true;
    const std::string out = dir.path() + "/requant.gguf";
    CHECK_THROWS_WITH(Quantize(q8_path, out, q4), Catch::Contains("--allow-requantize"));
    CHECK_FALSE(test::FileExists(out));
    q4.allow_requantize = true;
    Quantize(q8_path, out, q4);
    const auto source = GgufFile::Open(q8_path);
    const auto file = GgufFile::Open(out);
    const int64_t s = source->FindTensor("blk.1.ffn_up.weight");
    const int64_t o = file->FindTensor("blk.1.ffn_up.weight");
    const GgufTensorInfo& t = source->tensors()[static_cast<size_t>(s)];
    REQUIRE(t.type == Type::kQ8_0);
    std::vector<float> f32(static_cast<size_t>(t.ElementCount()));
    Dequantize(Type::kQ8_0, source->TensorData(static_cast<size_t>(s)), f32.data(), t.dims[1],
               t.dims[0]);
    std::vector<uint8_t> want(RowSize(Type::kQ4_0, t.dims[0]) * t.dims[1]);
    hwyquant::Quantize(Type::kQ4_0, f32.data(), want.data(), t.dims[1], t.dims[0]);
    REQUIRE(file->tensors()[static_cast<size_t>(o)].size == want.size());
    CHECK(std::memcmp(file->TensorData(static_cast<size_t>(o)), want.data(), want.size()) == 0);
    // In pieces of a few rows, each dequantizing its own rows: the same file.
    QuantizeOptions q4_pieces = q4;
    q4_pieces.piece_output_bytes = 1000;
    const std::string out_pieces = dir.path() + "/requant-pieces.gguf";
    Quantize(q8_path, out_pieces, q4_pieces);
    CHECK(test::FileDifference(out_pieces, out) == "");

    // general.alignment 1 and a header of odd length put quantized tensors at odd addresses,
    // where the kernels refuse f16 block scales: requantizing still works, with the same bytes.
    QuantizeOptions copy_odd;
    copy_odd.preset = "COPY";
    copy_odd.kv_overrides.push_back(ParseKvOverride("general.alignment=int:1"));
    copy_odd.kv_overrides.push_back(ParseKvOverride("general.name=str:odd"));
    const std::string odd_path = dir.path() + "/q8-odd.gguf";
    Quantize(q8_path, odd_path, copy_odd);
    const auto odd = GgufFile::Open(odd_path);
    REQUIRE(odd->alignment() == 1);
    bool any_odd = false;
    for (size_t i = 0; i < odd->tensors().size(); ++i) {
      any_odd |= reinterpret_cast<uintptr_t>(odd->TensorData(i)) % 2 != 0;
    }
    if (!any_odd) {  // flip the header's parity with a name one byte longer
      copy_odd.kv_overrides.back() = ParseKvOverride("general.name=str:odds");
      Quantize(q8_path, odd_path, copy_odd);
    }
    const auto odd2 = GgufFile::Open(odd_path);
    const int64_t oi = odd2->FindTensor("blk.1.ffn_up.weight");
    REQUIRE(reinterpret_cast<uintptr_t>(odd2->TensorData(static_cast<size_t>(oi))) % 2 != 0);
    const std::string out_odd = dir.path() + "/requant-odd.gguf";
    Quantize(odd_path, out_odd, q4);
    const auto file_odd = GgufFile::Open(out_odd);
    const int64_t oo = file_odd->FindTensor("blk.1.ffn_up.weight");
    REQUIRE(file_odd->tensors()[static_cast<size_t>(oo)].size == want.size());
    CHECK(std::memcmp(file_odd->TensorData(static_cast<size_t>(oo)), want.data(), want.size()) ==
          0);
    Quantize(odd_path, out_pieces, q4_pieces);
    CHECK(test::FileDifference(out_pieces, out_odd) == "");
    // Kept q8_0 rows at odd offsets, copied in pieces of a few rows: the same file.
    const std::string copy_whole = dir.path() + "/copy-whole.gguf";
    QuantizeOptions copy_again;
    copy_again.preset = "COPY";
    Quantize(odd_path, copy_whole, copy_again);
    copy_again.piece_output_bytes = 1000;
    Quantize(odd_path, out_pieces, copy_again);
    CHECK(test::FileDifference(out_pieces, copy_whole) == "");
  }
  SECTION("a legacy .dat imatrix gives the same bytes as the GGUF one") {
    const auto gguf = GgufFile::Open(synth->Imatrix("pub_gqa"));
    const Imatrix loaded = LoadImatrix(synth->Imatrix("pub_gqa"));
    const std::string legacy = dir.path() + "/legacy.dat";
    std::vector<LegacyImatrixEntry> entries;
    for (const auto& [name, values] : loaded.entries) entries.push_back({name, values});
    // Values are stored times the call count; 4 divides exactly.
    WriteLegacyImatrix(legacy, entries, /*calls=*/4, /*chunks=*/10, "synthetic.txt");
    QuantizeOptions options;
    options.preset = "Q3_K_M";
    options.imatrix_path = synth->Imatrix("pub_gqa");
    Quantize(model, dir.path() + "/gguf-im.gguf", options);
    options.imatrix_path = legacy;
    Quantize(model, dir.path() + "/legacy-im.gguf", options);
    const auto a = GgufFile::Open(dir.path() + "/gguf-im.gguf");
    const auto b = GgufFile::Open(dir.path() + "/legacy-im.gguf");
    REQUIRE(a->tensors().size() == b->tensors().size());
    for (size_t i = 0; i < a->tensors().size(); ++i) {
      INFO("tensor " << a->tensors()[i].name);
      CHECK(TensorSha(*a, i) == TensorSha(*b, i));
    }
    CHECK(b->FindKey("quantize.imatrix.chunks_count")->AsUInt() == 10);
    CHECK(b->FindKey("quantize.imatrix.dataset")->AsString() == "synthetic.txt");
    CHECK(b->FindKey("quantize.imatrix.entries_count")->AsUInt() == loaded.entries.size());
  }
}

TEST_CASE("quantize failures are clear and leave no output", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string out = dir.path() + "/out.gguf";
  QuantizeOptions options;
  options.preset = "Q4_K_M";

  SECTION("unknown type") {
    options.preset = "Q4_K_X";
    CHECK_THROWS_WITH(Quantize(synth->Model("pub_odd"), out, options),
                      Catch::Contains("unknown quantization type 'Q4_K_X'"));
  }
  SECTION("corrupt input") {
    std::vector<uint8_t> bytes = test::ReadFileBytes(synth->Model("pub_odd"));
    bytes.resize(bytes.size() / 2);
    const std::string bad = dir.path() + "/truncated.gguf";
    std::ofstream(bad, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    CHECK_THROWS_WITH(Quantize(bad, out, options),
                      Catch::Contains("truncated.gguf") && Catch::Contains("past the end"));
  }
  SECTION("missing output directory") {
    CHECK_THROWS_WITH(Quantize(synth->Model("pub_odd"), dir.path() + "/no/such/out.gguf", options),
                      Catch::Contains("no/such/out.gguf"));
  }
  SECTION("imatrix with the wrong row length") {
    // A legacy imatrix whose entry has 7 values for a tensor with 96-weight rows.
    const std::string legacy = dir.path() + "/wrong.dat";
    WriteLegacyImatrix(legacy, {{"blk.0.attn_q.weight", std::vector<float>(7, 1.0f)}}, /*calls=*/1);
    options.imatrix_path = legacy;
    CHECK_THROWS_WITH(Quantize(synth->Model("pub_odd"), out, options),
                      Catch::Contains("has 7 values for tensor 'blk.0.attn_q.weight'"));
    std::remove(legacy.c_str());
  }
  SECTION("file size limit mid-write") {
    QuantizeOptions f16;
    f16.preset = "F16";  // the file is ~0.5 MB
    CHECK(QuantizeUnderFileSizeLimit(synth->Model("pub_odd"), out, f16, 100000, "out.gguf") ==
          "named");
  }
  CHECK_FALSE(test::FileExists(out));
  // Nothing else either: no temporary left behind (the truncated input is the only file).
  CHECK(dir.EntryCount() <= 1);
}

TEST_CASE("quantize dry run, progress and statistics", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string out = dir.path() + "/out.gguf";
  QuantizeOptions options;
  options.preset = "Q8_0";
  options.dry_run = true;
  RecordingProgress dry;
  const QuantizeResult sized = Quantize(synth->Model("pub_odd"), out, options, &dry);
  CHECK_FALSE(test::FileExists(out));
  CHECK(dry.tensors_done == 30);
  CHECK(sized.file_bytes == 0);
  CHECK(sized.target_bytes < sized.source_bytes);

  options.dry_run = false;
  options.stats = true;
  RecordingProgress progress;
  const QuantizeResult result = Quantize(synth->Model("pub_odd"), out, options, &progress);
  CHECK(result.target_bytes == sized.target_bytes);
  CHECK(progress.tensors_done == 30);
  CHECK(progress.done);
  CHECK(progress.last_weights_done == progress.weights_total);
  CHECK(result.file_bytes == GgufFile::Open(out)->file_size());
  REQUIRE(result.stats.size() == 23);  // every converted matrix: 3 layers x 7, embd, output
  for (const TensorStats& s : result.stats) {
    INFO("tensor " << s.name);
    CHECK(s.rmse > 0);
    CHECK(s.max_abs_error >= s.rmse);
    CHECK(s.relative_output_error > 0);
    CHECK(s.relative_output_error < 0.02);  // q8_0 keeps ~8 bits
  }
  // --stats works on whole tensors; the file is the same as without it.
  options.stats = false;
  const std::string plain = dir.path() + "/plain.gguf";
  Quantize(synth->Model("pub_odd"), plain, options);
  CHECK(test::FileDifference(plain, out) == "");
}

// Writes `whole` as llama-gguf-split does: PREFIX-0000i-of-0000N.gguf holding runs of its tensors
// in order, every KV in the first file and only split.no, split.count and split.tensors.count in
// the others. edit(i, kv) may change the keys of file i (0-based) before it is written.
std::vector<std::string> WriteSplits(
    const GgufFile& whole, const std::string& prefix, int count,
    const std::function<void(int, std::vector<GgufKv>&)>& edit = nullptr) {
  const size_t n = whole.tensors().size();
  std::vector<std::string> paths;
  for (int i = 0; i < count; ++i) {
    std::vector<GgufKv> kv;
    if (i == 0) kv = whole.kv();
    for (const GgufKv& key : GgufSplitKeys(i, count, n)) SetKv(kv, key.key, key.value);
    if (edit) edit(i, kv);
    std::vector<GgufTensorInfo> infos;
    std::vector<std::vector<uint8_t>> data;
    for (size_t t = n * i / count; t < n * (i + 1) / count; ++t) {
      infos.push_back(whole.tensors()[t]);
      const uint8_t* bytes = whole.TensorData(t);
      data.emplace_back(bytes, bytes + whole.tensors()[t].size);
    }
    paths.push_back(GgufSplitPath(prefix, i, count));
    WriteGgufFile(paths.back(), kv, infos, data);
  }
  return paths;
}

TEST_CASE("a gguf-split model is read from its first split; --keep-split keeps its splits",
          "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub");
  const auto whole = GgufFile::Open(in);
  const std::vector<std::string> splits = WriteSplits(*whole, dir.path() + "/pub", 3);
  const std::string out = dir.path() + "/out.gguf";
  QuantizeOptions options;
  options.preset = "Q4_K_M";

  SECTION("every split's tensors, in order, and the same output") {
    GgufModelSource source(splits[0]);
    CHECK(source.split_count() == 3);
    CHECK(source.Metadata().size() == whole->kv().size() + 3);
    REQUIRE(source.Tensors().size() == whole->tensors().size());
    for (size_t i = 0; i < source.Tensors().size(); ++i) {
      INFO("tensor " << i);
      CHECK(source.Tensors()[i].name == whole->tensors()[i].name);
      const TensorBytes bytes = source.LoadTensor(i);
      std::vector<uint8_t> read(bytes.size());
      bytes.Read(0, bytes.size(), read.data());
      CHECK(std::memcmp(read.data(), whole->TensorData(i), read.size()) == 0);
    }
    const std::string from_whole = dir.path() + "/whole.gguf";
    Quantize(in, from_whole, options);
    Quantize(splits[0], out, options);
    CHECK(test::FileDifference(from_whole, out) == "");
  }
  SECTION("a later split, a renamed first split, a missing or misnumbered split: clear errors") {
    CHECK_THROWS_WITH(GgufModelSource(splits[1]),
                      Catch::Contains(splits[1] + ": this is split 2 of 3") &&
                          Catch::Contains("give its first split '" + splits[0] + "'"));
    const std::string renamed = dir.path() + "/model.gguf";
    REQUIRE(std::rename(splits[0].c_str(), renamed.c_str()) == 0);
    CHECK_THROWS_WITH(Quantize(renamed, out, options),
                      Catch::Contains(renamed) && Catch::Contains("cannot be found"));
    REQUIRE(std::rename(renamed.c_str(), splits[0].c_str()) == 0);
    std::remove(splits[2].c_str());
    CHECK_THROWS_WITH(Quantize(splits[0], out, options),
                      Catch::Contains(splits[2]) && Catch::Contains("(split 3 of 3 of "));
    WriteSplits(*whole, dir.path() + "/pub", 3, [](int i, std::vector<GgufKv>& kv) {
      if (i == 2) SetKv(kv, "split.no", GgufValue::U16(1));
    });
    CHECK_THROWS_WITH(Quantize(splits[0], out, options),
                      Catch::Contains(splits[2] + ": split.no is 1, expected 2"));
    WriteSplits(*whole, dir.path() + "/pub", 3, [](int i, std::vector<GgufKv>& kv) {
      if (i == 0) SetKv(kv, "split.tensors.count", GgufValue::I32(7));
    });
    CHECK_THROWS_WITH(Quantize(splits[0], out, options),
                      Catch::Contains(splits[0] + ": split.tensors.count says 7 tensors"));
    CHECK_FALSE(test::FileExists(out));
  }
  SECTION("--keep-split writes one file per input split, as llama-quantize does") {
    const std::string single = dir.path() + "/single.gguf";
    Quantize(in, single, options);
    const auto one = GgufFile::Open(single);
    options.keep_split = true;
    const std::string prefix = dir.path() + "/out";

    const QuantizeResult result = Quantize(splits[0], prefix, options);
    REQUIRE(result.files.size() == 3);
    std::vector<uint64_t> sizes;
    for (size_t i = 0; i < 3; ++i) {
      INFO("split " << i);
      CHECK(result.files[i] == GgufSplitPath(prefix, i, 3));
      const auto part = GgufFile::Open(result.files[i]);
      const auto input = GgufFile::Open(splits[i]);
      sizes.push_back(part->file_size());
      // The input split's tensors in its order, each as the single output file has it.
      REQUIRE(part->tensors().size() == input->tensors().size());
      for (size_t t = 0; t < part->tensors().size(); ++t) {
        const GgufTensorInfo& info = part->tensors()[t];
        INFO("tensor " << info.name);
        CHECK(info.name == input->tensors()[t].name);
        const int64_t j = one->FindTensor(info.name);
        REQUIRE(j >= 0);
        CHECK(info.type == one->tensors()[static_cast<size_t>(j)].type);
        CHECK(TensorSha(*part, t) == TensorSha(*one, static_cast<size_t>(j)));
      }
      // Metadata: the first split has the single file's, then the split keys; the others only
      // the split keys.
      std::vector<std::string> keys;
      for (const GgufKv& kv : part->kv()) keys.push_back(kv.key);
      std::vector<std::string> expected;
      if (i == 0) {
        for (const GgufKv& kv : one->kv()) expected.push_back(kv.key);
      }
      for (const char* key : {"split.no", "split.count", "split.tensors.count"}) {
        expected.push_back(key);
      }
      CHECK(keys == expected);
      CHECK(part->FindKey("split.no")->AsUInt() == i);
      CHECK(part->FindKey("split.no")->type() == GgufType::kU16);
      CHECK(part->FindKey("split.count")->AsUInt() == 3);
      CHECK(part->FindKey("split.tensors.count")->AsUInt() == whole->tensors().size());
      CHECK(part->FindKey("split.tensors.count")->type() == GgufType::kI32);
    }
    CHECK(result.file_bytes == sizes[0] + sizes[1] + sizes[2]);
    for (const std::string& file : result.files) std::remove(file.c_str());

    // The splits appear together or not at all: a file size limit that lets the first split be
    // written but not the second leaves none of them, and no temporary file.
    const uint64_t limit = sizes[0] + (64 << 10);
    REQUIRE(std::max(sizes[1], sizes[2]) > limit);
    const size_t entries = dir.EntryCount();
    CHECK(QuantizeUnderFileSizeLimit(splits[0], prefix, options, limit, "out-0000") == "named");
    CHECK(dir.EntryCount() == entries);
    for (const std::string& file : result.files) CHECK_FALSE(test::FileExists(file));
  }
}

// Runs the CLI; returns its exit code and puts its stderr in `err`.
int RunCli(const std::string& args, const std::string& dir, std::string& err) {
  const std::string err_path = dir + "/stderr.txt";
  const int status = std::system(
      (std::string(HWYQUANT_CLI) + " " + args + " >/dev/null 2>'" + err_path + "'").c_str());
  err = test::ReadTextFile(err_path);
  std::remove(err_path.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Whether directory path holds a temporary of OutputFile (a name starting ".", with ".tmp-").
bool HasTemporary(const std::string& path) {
  bool found = false;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return false;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name[0] == '.' && name.find(".tmp-") != std::string::npos) found = true;
  }
  ::closedir(dir);
  return found;
}

TEST_CASE("no output replaces the input model or one of its splits or the imatrix", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub");
  const std::vector<std::string> splits = WriteSplits(*GgufFile::Open(in), dir.path() + "/pub", 3);
  const auto copy_file = [](const std::string& from, const std::string& to) {
    const std::vector<uint8_t> bytes = test::ReadFileBytes(from);
    std::ofstream(to, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  };
  // Copies of the inputs, kept beside them to show that none was touched.
  for (const std::string& split : splits) copy_file(split, split + ".orig");
  QuantizeOptions options;
  options.preset = "Q4_K_M";

  // A later split, read after the output is opened, by name and through a symbolic link.
  CHECK_THROWS_WITH(Quantize(splits[0], splits[2], options),
                    Catch::Contains("input and output are the same file: '" + splits[2] + "'"));
  const std::string link = dir.path() + "/link.gguf";
  REQUIRE(::symlink(splits[1].c_str(), link.c_str()) == 0);
  CHECK_THROWS_WITH(Quantize(splits[0], link, options),
                    Catch::Contains("input and output are the same file: '" + splits[1] +
                                    "' (output '" + link + "')"));
  // --keep-split onto the input's own names (the library takes the prefix; the CLI drops .gguf).
  options.keep_split = true;
  CHECK_THROWS_WITH(Quantize(splits[0], dir.path() + "/pub", options),
                    Catch::Contains("input and output are the same file: '" + splits[0] + "'"));
  options.keep_split = false;
  for (const std::string& split : splits) CHECK(test::FileDifference(split, split + ".orig") == "");

  // The importance matrix.
  const std::string imatrix = dir.path() + "/pub.imatrix.gguf";
  copy_file(synth->Imatrix("pub"), imatrix);
  copy_file(imatrix, imatrix + ".orig");
  options.imatrix_path = imatrix;
  CHECK_THROWS_WITH(
      Quantize(in, imatrix, options),
      Catch::Contains("the importance matrix and the output are the same file: '" + imatrix + "'"));
  CHECK(test::FileDifference(imatrix, imatrix + ".orig") == "");
  // --dry-run writes nothing, so naming the input there is no error.
  options.imatrix_path.clear();
  options.dry_run = true;
  CHECK_NOTHROW(Quantize(splits[0], splits[0], options));
}

TEST_CASE("hwyquant quantize CLI: a termination signal removes the temporary output",
          "[quantize][cli]") {
  TempDir dir;
  // One 4096 x 2048 f32 tensor: with --stats on one thread the run lasts long enough (about a
  // second) to be caught while its temporary exists.
  const std::vector<GgufKv> kv = {{"general.architecture", GgufValue::String("llama")},
                                  {"llama.block_count", GgufValue::U32(1)}};
  std::vector<GgufTensorInfo> tensors = {{"blk.0.ffn_up.weight", {4096, 2048}, Type::kF32}};
  std::vector<float> values(static_cast<size_t>(tensors[0].ElementCount()));
  uint32_t state = 12345;
  for (float& v : values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(state >> 8) - (1 << 23)) / (1 << 27);
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  const std::string model = dir.path() + "/model.gguf";
  WriteGgufFile(model, kv, tensors, {std::vector<uint8_t>(bytes, bytes + values.size() * 4)});
  const std::string out = dir.path() + "/out.gguf";

  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
    INFO("signal " << strsignal(signal_number));
    // A temporary left by the signal before would be mistaken for this run's.
    REQUIRE_FALSE(HasTemporary(dir.path()));
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Only async-signal-safe calls between fork and exec. The test runner may ignore SIGHUP
      // (nohup); the CLI must see the default dispositions.
      for (const int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);
      const int null_fd = ::open("/dev/null", O_WRONLY);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
      ::execl(HWYQUANT_CLI, HWYQUANT_CLI, "quantize", "--stats", model.c_str(), out.c_str(), "Q4_K",
              "1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    bool seen = false;
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 100000 && !seen && !exited; ++i) {
      seen = HasTemporary(dir.path());
      if (!seen) {
        exited = ::waitpid(child, &status, WNOHANG) == child;
        ::usleep(100);
      }
    }
    if (!seen) {
      if (!exited) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
      }
      FAIL("the run ended (or never started) before its temporary output appeared");
    }
    ::kill(child, signal_number);
    REQUIRE(::waitpid(child, &status, 0) == child);
    // The process still dies of the signal, as a shell expects, but leaves nothing behind.
    CHECK(WIFSIGNALED(status));
    CHECK((WIFSIGNALED(status) ? WTERMSIG(status) : 0) == signal_number);
    CHECK_FALSE(HasTemporary(dir.path()));
    CHECK_FALSE(test::FileExists(out));
    CHECK(dir.EntryCount() == 1);
  }
}

TEST_CASE("hwyquant quantize CLI: exit codes, messages, no partial output", "[quantize][cli]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub_odd");
  const std::string out = dir.path() + "/out.gguf";
  std::string err;
  CHECK(RunCli("quantize '" + in + "' '" + out + "' q4_k_m 2", dir.path(), err) == 0);
  CHECK_THAT(err, Catch::Contains("[30/30]"));  // one line per tensor when not on a terminal
  CHECK(GgufFile::Open(out)->FindKey("general.file_type")->AsUInt() == 15);
  // llama-quantize takes a thread count of zero or less as every core.
  const std::string all_cores = dir.path() + "/all-cores.gguf";
  CHECK(RunCli("quantize '" + in + "' '" + all_cores + "' q4_k_m -1", dir.path(), err) == 0);
  CHECK(test::FileDifference(out, all_cores) == "");
  std::remove(all_cores.c_str());
  // Without OUT, llama-quantize writes ggml-model-TYPE.gguf beside IN, TYPE as its table spells
  // it (file type 15 is listed first as Q4_K).
  const std::string link = dir.path() + "/in.gguf";
  REQUIRE(::symlink(in.c_str(), link.c_str()) == 0);
  CHECK(RunCli("quantize '" + link + "' 15", dir.path(), err) == 0);
  CHECK(test::FileDifference(out, dir.path() + "/ggml-model-Q4_K.gguf") == "");
  CHECK(RunCli("quantize '" + link + "' q4_k_m 1", dir.path(), err) == 0);
  CHECK(test::FileDifference(out, dir.path() + "/ggml-model-Q4_K_M.gguf") == "");
  std::remove((dir.path() + "/ggml-model-Q4_K.gguf").c_str());
  std::remove((dir.path() + "/ggml-model-Q4_K_M.gguf").c_str());
  // --keep-split names files from OUT without its .gguf, or from ggml-model-TYPE, even for an
  // input of one file.
  const std::string kept = dir.path() + "/kept-00001-of-00001.gguf";
  CHECK(RunCli("quantize --keep-split '" + link + "' '" + dir.path() + "/kept.gguf' q4_k_m",
               dir.path(), err) == 0);
  CHECK(GgufFile::Open(kept)->tensors().size() == GgufFile::Open(out)->tensors().size());
  CHECK(GgufFile::Open(kept)->FindKey("split.count") == nullptr);
  const std::string auto_kept = dir.path() + "/ggml-model-Q4_K_M-00001-of-00001.gguf";
  CHECK(RunCli("quantize --keep-split '" + link + "' q4_k_m", dir.path(), err) == 0);
  CHECK(test::FileDifference(kept, auto_kept) == "");
  std::remove(kept.c_str());
  std::remove(auto_kept.c_str());
  std::remove(link.c_str());
  std::remove(out.c_str());

  CHECK(RunCli("quantize '" + in + "' '" + out + "' Q9_K", dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("hwyquant: error: unknown quantization type 'Q9_K'"));
  CHECK(RunCli("quantize '" + dir.path() + "/missing.gguf' '" + out + "' Q8_0", dir.path(), err) ==
        1);
  CHECK_THAT(err, Catch::Contains("missing.gguf"));
  CHECK(RunCli("quantize '" + in + "' '" + in + "' Q8_0", dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("same file"));
  CHECK(RunCli("quantize --dry-run '" + in + "' Q6_K", dir.path(), err) == 0);
  CHECK(RunCli("quantize --tensor-type 'attn_q=nope' '" + in + "' '" + out + "' Q8_0", dir.path(),
               err) == 1);
  CHECK_THAT(err, Catch::Contains("unknown ggml type 'nope'"));
  CHECK(RunCli("quantize --imatrix '" + dir.path() + "/none.dat' '" + in + "' '" + out + "' Q8_0",
               dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("none.dat"));
  CHECK(RunCli("quantize '" + in + "' '" + out + "' Q8_0 many", dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("invalid thread count 'many'"));
  CHECK_FALSE(test::FileExists(out));
  CHECK(dir.EntryCount() == 0);
}

TEST_CASE("hwyquant quantize CLI: --tensor-type-file and --tensor-type apply in command-line order",
          "[quantize][cli]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub");
  const std::string out = dir.path() + "/out.gguf";
  const std::string types = dir.path() + "/types.txt";
  // Entries separated by spaces and newlines; patterns are matched lower-cased.
  std::ofstream(types) << "  ATTN_Q=q8_0 ffn_down=q5_K\n\nattn_v=q6_K\n";
  std::string err;
  const auto type_of = [&](const std::string& tensor) {
    const auto file = GgufFile::Open(out);
    return file->tensors()[static_cast<size_t>(file->FindTensor(tensor))].type;
  };
  // The first matching entry wins, whether it came from the file or the option.
  REQUIRE(RunCli("quantize --tensor-type attn_q=q4_1 --tensor-type-file '" + types + "' '" + in +
                     "' '" + out + "' q4_k_m",
                 dir.path(), err) == 0);
  CHECK(type_of("blk.0.attn_q.weight") == Type::kQ4_1);
  CHECK(type_of("blk.0.ffn_down.weight") == Type::kQ5_K);
  CHECK(type_of("blk.0.attn_v.weight") == Type::kQ6_K);
  CHECK(type_of("blk.0.attn_k.weight") == Type::kQ4_K);
  REQUIRE(RunCli("quantize --tensor-type-file '" + types + "' --tensor-type attn_q=q4_1 '" + in +
                     "' '" + out + "' q4_k_m",
                 dir.path(), err) == 0);
  CHECK(type_of("blk.0.attn_q.weight") == Type::kQ8_0);
  std::remove(out.c_str());

  CHECK(RunCli("quantize --tensor-type-file '" + dir.path() + "/none.txt' '" + in + "' '" + out +
                   "' q4_k_m",
               dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("--tensor-type-file '" + dir.path() + "/none.txt'") &&
                      Catch::Contains("No such file"));
  std::ofstream(types) << "attn_q=q8_0 attn_k\n";
  CHECK(RunCli("quantize --tensor-type-file '" + types + "' '" + in + "' '" + out + "' q4_k_m",
               dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("types.txt', entry 'attn_k': expected REGEX=TYPE"));
  std::ofstream(types) << "(attn=q8_0\n";
  CHECK(RunCli("quantize --tensor-type-file '" + types + "' '" + in + "' '" + out + "' q4_k_m",
               dir.path(), err) == 1);
  CHECK_THAT(err, Catch::Contains("types.txt', entry '(attn=q8_0': bad regular expression"));
  CHECK_FALSE(test::FileExists(out));
  std::remove(types.c_str());
  CHECK(dir.EntryCount() == 0);
}

// llama-quantize's --prune-layers (at d32676d77) names, types and sizes the tensors as below,
// but then loads each renamed tensor's data by its new name, so that its blk.N holds the old
// layer N and the last layers are the ones dropped; hwyquant writes each kept layer's own data.
TEST_CASE("quantize --prune-layers drops layers and renumbers the rest", "[quantize]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub");  // 6 layers of 9 tensors
  QuantizeOptions options;
  options.preset = "Q4_0";  // a type per tensor that does not depend on its layer
  options.imatrix_path = synth->Imatrix("pub");
  const std::string full_path = dir.path() + "/full.gguf";
  Quantize(in, full_path, options);
  options.prune_layers = {1, 3};
  const std::string out = dir.path() + "/pruned.gguf";
  Quantize(in, out, options);
  const auto full = GgufFile::Open(full_path);
  const auto pruned = GgufFile::Open(out);
  REQUIRE(pruned->tensors().size() == full->tensors().size() - 2 * 9);
  CHECK(pruned->kv().back().key == "llama.block_count");
  CHECK(pruned->FindKey("llama.block_count")->AsUInt() == 4);
  const std::map<std::string, std::string> old_layer = {
      {"blk.0.", "blk.0."}, {"blk.1.", "blk.2."}, {"blk.2.", "blk.4."}, {"blk.3.", "blk.5."}};
  for (size_t i = 0; i < pruned->tensors().size(); ++i) {
    const std::string& name = pruned->tensors()[i].name;
    INFO("tensor " << name);
    std::string source = name;
    if (name.rfind("blk.", 0) == 0) {
      const auto it = old_layer.find(name.substr(0, 6));
      REQUIRE(it != old_layer.end());
      source = it->second + name.substr(6);
    }
    const int64_t j = full->FindTensor(source);
    REQUIRE(j >= 0);
    // The same type and bytes, quantized with the old name's importance matrix.
    CHECK(pruned->tensors()[i].type == full->tensors()[static_cast<size_t>(j)].type);
    CHECK(TensorSha(*pruned, i) == TensorSha(*full, static_cast<size_t>(j)));
  }
  std::string err;
  // A layer the model does not have is ignored, as by llama-quantize, but with a warning.
  const std::string extra = dir.path() + "/extra.gguf";
  CHECK(RunCli("quantize --imatrix '" + options.imatrix_path + "' --prune-layers 3,1,7 '" + in +
                   "' '" + extra + "' q4_0",
               dir.path(), err) == 0);
  CHECK_THAT(err, Catch::Contains("--prune-layers: " + in + " has no layer 7"));
  CHECK(test::ReadFileBytes(extra) == test::ReadFileBytes(out));
  CHECK(RunCli("quantize --prune-layers 1,x '" + in + "' '" + out + "' q4_0", dir.path(), err) ==
        1);
  CHECK_THAT(err, Catch::Contains("--prune-layers '1,x': invalid layer number 'x'"));
}

TEST_CASE("hwyquant quantize CLI: a full disk (small tmpfs) is a clear error, no output",
          "[quantize][cli]") {
  SynthInputs* synth = Synth();
  if (synth == nullptr) return;
  TempDir dir;
  const std::string in = synth->Model("pub_odd");
  const std::string disk = dir.path() + "/disk";
  REQUIRE(::mkdir(disk.c_str(), 0755) == 0);
  const std::string report = dir.path() + "/report.txt";
  // The child mounts a 256 KiB tmpfs in a mount namespace of its own, so the mount goes away with
  // it whatever happens; the F16 output (~0.5 MB) cannot fit.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=256k") != 0) {
      ::_exit(77);
    }
    std::string err;
    const int code = RunCli("quantize '" + in + "' '" + disk + "/out.gguf' F16", dir.path(), err);
    std::ofstream(report) << code << "\n" << err;
    ::_exit(test::FileExists(disk + "/out.gguf") ? 3 : DirectoryEntryCount(disk) != 0 ? 4 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    // Mounting needs CAP_SYS_ADMIN; the RLIMIT_FSIZE case above covers the same write path.
    WARN("cannot mount a tmpfs here (not root?): full-disk case not run");
    return;
  }
  const std::string text = test::ReadTextFile(report);
  INFO("exit code, then stderr: " << text);
  CHECK(WEXITSTATUS(status) == 0);  // 3: output left, 4: temporary left on the full disk
  CHECK(text.rfind("1\n", 0) == 0);
  CHECK_THAT(text, Catch::Contains("out.gguf") && Catch::Contains("(the disk is full)"));
}

}  // namespace
}  // namespace hwyquant
