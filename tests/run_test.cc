// Tests of `hwyquant run`: convert + quantize in one pass must equal convert
// then quantize, and llama-quantize's golden output for every shared model and
// preset (f16 fallback where it refused); --from-source must equal quantizing
// an f32 conversion.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pipeline/convert.h"
#include "pipeline/gguf.h"
#include "pipeline/model_source.h"
#include "pipeline/quantize.h"
#include "tests/golden_gguf.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

using test::ScratchDir;

std::vector<std::string> GoldenPresets(const std::string& model) {
  std::vector<std::string> presets;
  for (auto it = test::GoldenConvert().begin(); it != test::GoldenConvert().end(); ++it) {
    const std::string key = it.key();
    if (key.rfind(model + "/", 0) == 0 && key != model + "/convert") {
      presets.push_back(key.substr(model.size() + 1));
    }
  }
  return presets;
}

void Quantize(ModelSource& source, const std::string& preset, const std::string& out,
              uint64_t piece_output_bytes = 0) {
  QuantizeOptions options;
  options.preset = preset;
  options.nthreads = 2;
  options.piece_output_bytes = piece_output_bytes;
  QuantizeModel(source, out, options, nullptr);
}

void RequireSameFile(const std::string& label, const std::string& a, const std::string& b) {
  const std::vector<uint8_t> x = test::ReadFileBytes(a);
  const std::vector<uint8_t> y = test::ReadFileBytes(b);
  if (x != y) {
    size_t first = 0;
    while (first < x.size() && first < y.size() && x[first] == y[first]) ++first;
    FAIL(label << ": one-pass output (" << x.size() << " bytes) differs from convert + quantize ("
               << y.size() << " bytes) first at byte " << first);
  }
}

TEST_CASE(
    "run equals convert + quantize and llama-quantize for every model and "
    "preset") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  size_t compared_with_golden = 0, fallbacks = 0;
  for (const std::string& model : test::SharedModels()) {
    const std::string dir = shared + "/models/" + model;
    const std::string converted = scratch.path() + "/" + model + "-auto.gguf";
    {
      HfModelSource source(dir);
      WriteModelSource(source, converted);
    }
    for (const std::string& preset : GoldenPresets(model)) {
      const std::string label = model + "/" + preset;
      INFO(label);
      const std::string one_pass = scratch.path() + "/one-pass.gguf";
      const std::string two_pass = scratch.path() + "/two-pass.gguf";
      {
        // In pieces of at most 1000 output bytes, which split all but the
        // smallest tensors, against the default pieces in the second pass.
        HfModelSource source(dir);
        Quantize(source, preset, one_pass, /*piece_output_bytes=*/1000);
      }
      {
        GgufModelSource source(converted);
        Quantize(source, preset, two_pass);
      }
      RequireSameFile(label, one_pass, two_pass);

      const nlohmann::json& golden = test::GoldenConvert()[label];
      if (golden.contains("llama_quantize_error")) {
        // llama-quantize refused rows that are not whole 32-blocks; we write
        // those tensors as f16 and everything else as the preset asks.
        auto file = GgufFile::Open(one_pass);
        size_t f16_rows = 0;
        for (const GgufTensorInfo& t : file->tensors()) {
          if (t.dims.size() == 2 && t.dims[0] % 32 != 0) {
            CHECK(t.type == Type::kF16);
            ++f16_rows;
          } else if (t.dims.size() == 2 && t.name != "token_embd.weight") {
            CHECK(FindType(t.type)->block_size == 32);
          }
        }
        CHECK(f16_rows > 0);
        ++fallbacks;
      } else {
        test::CheckAgainstGolden(label, one_pass, golden, /*all_keys=*/false);
        ++compared_with_golden;
      }
    }
  }
  CHECK(compared_with_golden == 46);
  CHECK(fallbacks == 6);
}

TEST_CASE(
    "run --from-source quantizes the checkpoint precision, not the f16 "
    "intermediate") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  ScratchDir scratch;
  const std::string dir = shared + "/models/stories260K";  // f32 checkpoint
  const std::string f32_file = scratch.path() + "/f32.gguf";
  {
    HfModelSource source(dir, ConvertOptions{OutType::kF32, false, ""});
    WriteModelSource(source, f32_file);
  }
  for (const char* preset : {"Q4_K_M", "Q6_K", "Q8_0"}) {
    INFO(preset);
    const std::string from_source = scratch.path() + "/from-source.gguf";
    const std::string via_f32 = scratch.path() + "/via-f32.gguf";
    const std::string via_auto = scratch.path() + "/via-auto.gguf";
    {
      HfModelSource source(dir, ConvertOptions{OutType::kAuto, /*source_precision=*/true, ""});
      Quantize(source, preset, from_source);
    }
    {
      GgufModelSource source(f32_file);
      Quantize(source, preset, via_f32);
    }
    {
      HfModelSource source(dir);
      Quantize(source, preset, via_auto);
    }
    // Only general.file_type's original value could differ; the quantizer
    // rewrites it.
    RequireSameFile(preset, from_source, via_f32);
    CHECK(test::ReadFileBytes(from_source) != test::ReadFileBytes(via_auto));
  }
}

TEST_CASE(
    "data/sample-model is what its generator writes, and runs to Q4_K_M with "
    "K-quants") {
  const std::string dir = test::DataDir() + "/sample-model";
  ScratchDir scratch;
  const std::string script = test::DataDir() + "/../scripts/make_sample_model.py";
  const std::string regenerated = scratch.path() + "/sample-model";
  REQUIRE(std::system(("python3 '" + script + "' '" + regenerated + "' > /dev/null").c_str()) == 0);
  size_t total = 0;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors",
                        "tokenizer.model", "tokenizer_config.json"}) {
    INFO(f);
    const std::vector<uint8_t> checked_in = test::ReadFileBytes(dir + "/" + f);
    CHECK(checked_in == test::ReadFileBytes(regenerated + "/" + f));
    total += checked_in.size();
  }
  CHECK(total < 1000 * 1000);

  const std::string one_pass = scratch.path() + "/one-pass.gguf";
  const std::string converted = scratch.path() + "/auto.gguf";
  const std::string two_pass = scratch.path() + "/two-pass.gguf";
  {
    HfModelSource source(dir);
    CHECK(source.file_type() == 32);  // bf16 checkpoint: bf16 intermediate
    Quantize(source, "Q4_K_M", one_pass);
    WriteModelSource(source, converted);
  }
  {
    GgufModelSource source(converted);
    Quantize(source, "Q4_K_M", two_pass);
  }
  RequireSameFile("sample-model/Q4_K_M", one_pass, two_pass);
  auto file = GgufFile::Open(one_pass);
  CHECK(file->FindKey("general.file_type")->AsUInt() == 15);
  CHECK(file->FindKey("tokenizer.ggml.tokens")->array_size() == 320);
  for (const GgufTensorInfo& t : file->tensors()) {
    INFO(t.name);
    if (t.dims.size() == 2) {
      CHECK(FindType(t.type)->block_size == 256);  // rows of 256: no shape fallbacks
    } else {
      CHECK(t.type == Type::kF32);
    }
  }
}

}  // namespace
}  // namespace hwyquant
