// Tests of the safetensors reader: valid files, sharded folders, and every kind
// of malformed header (which must fail with an Error naming the file and the
// field, never crash).
#include "pipeline/safetensors.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/golden_gguf.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

using test::ScratchDir;

std::string FileWithHeader(const std::string& header, size_t data_bytes) {
  std::string file;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file += static_cast<char>((n >> (8 * i)) & 0xFF);
  file += header;
  file += std::string(data_bytes, '\x01');
  return file;
}

StHeader Parse(const std::string& file) {
  return ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(file.data()), file.size(),
                                file.size(), "x.safetensors");
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  REQUIRE(out.good());
}

TEST_CASE("safetensors header parses dtypes, shapes and offsets, sorted by name") {
  const std::string file = FileWithHeader(
      R"({"__metadata__": {"format": "pt"},
          "b": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [16, 28]},
          "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "z": {"dtype": "F16", "shape": [0, 5], "data_offsets": [28, 28]},
          "c": {"dtype": "F8_E4M3", "shape": [3], "data_offsets": [28, 31]}})",
      31);
  const StHeader h = Parse(file);
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[1].name == "b");
  CHECK(h.tensors[1].dtype == StDtype::kBF16);
  CHECK(h.tensors[1].shape == std::vector<int64_t>{2, 3});
  CHECK(h.tensors[2].dtype == StDtype::kF8E4M3);
  CHECK(h.tensors[3].ElementCount() == 0);
}

TEST_CASE("safetensors rejects malformed headers with the file and field named") {
  struct Case {
    const char* what;
    std::string file;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"too short", std::string("\x05\x00\x00", 3), "too short"},
      {"huge length", std::string("\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F", 8) + "{}", "exceeds"},
      {"past end", std::string("\x40\x00\x00\x00\x00\x00\x00\x00{}", 10), "past the end"},
      {"not json", FileWithHeader("{\"a\": ", 0), "not valid JSON"},
      {"not object", FileWithHeader("[1, 2]", 0), "JSON object"},
      {"duplicate",
       FileWithHeader(
           R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                      "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
           8),
       "twice"},
      {"unknown dtype",
       FileWithHeader(R"({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", 1),
       "unknown dtype"},
      {"negative dim",
       FileWithHeader(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
       "'shape'"},
      {"float dim",
       FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4),
       "'shape'"},
      {"missing offsets", FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1]}})", 4),
       "data_offsets"},
      {"size mismatch",
       FileWithHeader(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 4),
       "need 8"},
      {"reversed",
       FileWithHeader(R"({"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", 4),
       "end before"},
      {"overflowing shape",
       FileWithHeader(
           R"({"a": {"dtype": "F64", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]}})",
           0),
       "more bytes than the whole file"},
      {"overlap",
       FileWithHeader(
           R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
           8),
       "overlaps"},
      {"gap", FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
       "gap"},
      {"trailing bytes",
       FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 6),
       "cover 4"},
      {"offset past end",
       FileWithHeader(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 2),
       "past the data section"},
      {"bad metadata", FileWithHeader(R"({"__metadata__": {"k": 1}})", 0), "__metadata__"},
      {"invalid utf8", FileWithHeader("{\"a\xFF\": {}}", 0), "not valid JSON"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK_THROWS_WITH(Parse(c.file),
                      Catch::Contains("x.safetensors") && Catch::Contains(c.message));
  }
}

TEST_CASE("safetensors never crashes on truncated or byte-flipped shared files") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::vector<uint8_t> bytes =
      test::ReadFileBytes(shared + "/models/stories260K/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  const size_t prefix = 8 + header_len;
  std::string base(bytes.begin(), bytes.begin() + prefix);
  // Flip every header byte in turn (data bytes do not affect validation).
  size_t rejected = 0;
  for (size_t i = 0; i < prefix; i += 7) {
    std::string mutated = base;
    mutated[i] = static_cast<char>(mutated[i] ^ 0x5A);
    try {
      ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(mutated.data()), mutated.size(),
                             bytes.size(), "mut.safetensors");
    } catch (const Error& e) {
      ++rejected;
      REQUIRE(std::string(e.what()).find("mut.safetensors") != std::string::npos);
    }
  }
  CHECK(rejected > 0);
  for (size_t cut = 0; cut < prefix; cut += 13) {
    CHECK_THROWS_AS(ParseSafetensorsHeader(bytes.data(), cut, cut, "cut.safetensors"), Error);
  }
}

TEST_CASE("sharded folders follow the index and reject inconsistent ones") {
  const std::string shared = test::SharedDir();
  if (shared.empty()) return;
  const std::string dir = shared + "/models/synth-llama-bf16-sharded";
  SafetensorsModel model(dir);
  REQUIRE(model.files().size() == 2);
  REQUIRE(model.entries().size() == 39);
  // Shard order, then name order inside a shard: lm_head opens the second
  // shard.
  CHECK(model.entries()[0].tensor->name == "model.embed_tokens.weight");
  CHECK(model.entries()[20].tensor->name == "lm_head.weight");
  CHECK(model.entries()[20].file->path().find("00002") != std::string::npos);

  ScratchDir scratch;
  const std::string copy = scratch.path() + "/m";
  REQUIRE(::mkdir(copy.c_str(), 0755) == 0);
  const std::string shard1 = test::ReadTextFile(dir + "/model-00001-of-00002.safetensors");
  const std::string shard2 = test::ReadTextFile(dir + "/model-00002-of-00002.safetensors");
  std::string index = test::ReadTextFile(dir + "/model.safetensors.index.json");
  WriteFile(copy + "/model-00001-of-00002.safetensors", shard1);
  WriteFile(copy + "/model.safetensors.index.json", index);
  CHECK_THROWS_WITH(SafetensorsModel(copy), Catch::Contains("model-00002-of-00002.safetensors") &&
                                                Catch::Contains("missing"));
  WriteFile(copy + "/model-00002-of-00002.safetensors", shard2);
  const size_t at = index.find("\"lm_head.weight\"");
  REQUIRE(at != std::string::npos);
  std::string renamed = index;
  renamed.replace(at, 16, "\"lm_head.weights\"");
  WriteFile(copy + "/model.safetensors.index.json", renamed);
  CHECK_THROWS_WITH(SafetensorsModel(copy),
                    Catch::Contains("lm_head.weights") && Catch::Contains("index.json"));
}

}  // namespace
}  // namespace hwyquant
