// Test helpers comparing a GGUF file with a golden/convert/expected.json entry
// (KV values, tensor order, types, dims and sha256 of the data), naming the
// model, key or tensor on failure.
#ifndef HWYQUANT_TESTS_GOLDEN_GGUF_H_
#define HWYQUANT_TESTS_GOLDEN_GGUF_H_

#include <dirent.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "pipeline/gguf.h"
#include "tests/support.h"

namespace hwyquant::test {

// A fresh temporary directory, removed with its files at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    char pattern[] = "/tmp/hwyquant-convert-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline const nlohmann::json& GoldenConvert() {
  static const nlohmann::json golden = [] {
    const std::string shared = SharedDir();
    if (shared.empty()) return nlohmann::json::object();
    return nlohmann::json::parse(ReadTextFile(shared + "/golden/convert/expected.json"));
  }();
  return golden;
}

inline std::string UpperTypeName(Type type) {
  std::string name = FindType(type)->name;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

// Empty when value equals expected, else a description of the difference.
inline std::string CompareValue(const GgufValue& value, const nlohmann::json& expected) {
  auto scalar_at = [&](size_t i) -> nlohmann::json {
    const std::vector<uint8_t>& b = value.scalar_bytes();
    const size_t size = GgufScalarSize(value.element_type());
    const uint8_t* p = b.data() + i * size;
    switch (value.element_type()) {
      case GgufType::kF32: {
        float f;
        std::memcpy(&f, p, 4);
        return static_cast<double>(f);
      }
      case GgufType::kF64: {
        double f;
        std::memcpy(&f, p, 8);
        return f;
      }
      case GgufType::kBool:
        return *p != 0;
      case GgufType::kI32: {
        int32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
      case GgufType::kU32: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
      default: {
        int64_t v = 0;
        std::memcpy(&v, p, size);
        return v;
      }
    }
  };
  if (value.type() == GgufType::kArray) {
    if (!expected.is_array()) return "is an array, expected " + expected.dump().substr(0, 80);
    if (value.array_size() != expected.size()) {
      return "has " + std::to_string(value.array_size()) + " items, expected " +
             std::to_string(expected.size());
    }
    for (size_t i = 0; i < expected.size(); ++i) {
      nlohmann::json got;
      if (value.element_type() == GgufType::kString) {
        got = value.strings()[i];
      } else if (value.element_type() == GgufType::kArray) {
        return "nested arrays are not compared";
      } else {
        got = scalar_at(i);
      }
      const nlohmann::json& want = expected[i];
      const bool equal =
          (got.is_number() && want.is_number())
              ? got.get<double>() == want.get<double>() &&
                    std::signbit(got.get<double>()) == std::signbit(want.get<double>())
              : got == want;
      if (!equal) {
        return "item " + std::to_string(i) + " is " + got.dump() + ", expected " + want.dump();
      }
    }
    return "";
  }
  nlohmann::json got;
  switch (value.type()) {
    case GgufType::kString:
      got = value.AsString();
      break;
    case GgufType::kBool:
      got = value.AsBool();
      break;
    case GgufType::kF32:
    case GgufType::kF64:
      got = value.AsDouble();
      break;
    default:
      got = value.AsInt();
  }
  const bool equal = (got.is_number() && expected.is_number())
                         ? got.get<double>() == expected.get<double>()
                         : got == expected;
  return equal ? "" : "is " + got.dump() + ", expected " + expected.dump();
}

// Checks every expected KV (and, when all_keys, that the file has no other
// keys), the tensor order and each tensor's type, dims and sha256.
inline void CheckAgainstGolden(const std::string& label, const std::string& gguf_path,
                               const nlohmann::json& expected, bool all_keys) {
  std::unique_ptr<GgufFile> file = GgufFile::Open(gguf_path);
  size_t keys_checked = 0, tensors_checked = 0;
  for (auto it = expected["kv"].begin(); it != expected["kv"].end(); ++it) {
    INFO(label << ": KV " << it.key());
    const GgufValue* value = file->FindKey(it.key());
    if (value == nullptr) FAIL(label << ": KV " << it.key() << " is missing");
    const std::string diff = CompareValue(*value, it.value());
    if (!diff.empty()) FAIL(label << ": KV " << it.key() << " " << diff);
    ++keys_checked;
  }
  if (all_keys) {
    for (const GgufKv& kv : file->kv()) {
      if (!expected["kv"].contains(kv.key)) {
        FAIL(label << ": unexpected KV " << kv.key << " = " << kv.value.ToString());
      }
    }
  }
  const nlohmann::json& order = expected["order"];
  REQUIRE(file->tensors().size() == order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const GgufTensorInfo& t = file->tensors()[i];
    if (t.name != order[i].get<std::string>()) {
      FAIL(label << ": tensor " << i << " is " << t.name << ", expected " << order[i]);
    }
    const nlohmann::json& want = expected["tensors"][t.name];
    if (UpperTypeName(t.type) != want[0].get<std::string>()) {
      FAIL(label << ": tensor " << t.name << " type " << UpperTypeName(t.type) << ", expected "
                 << want[0]);
    }
    if (nlohmann::json(t.dims) != want[1]) {
      FAIL(label << ": tensor " << t.name << " dims " << nlohmann::json(t.dims).dump()
                 << ", expected " << want[1].dump());
    }
    const std::string sha = Sha256Hex(file->TensorData(i), t.size);
    if (sha != want[2].get<std::string>()) {
      FAIL(label << ": tensor " << t.name << " data sha256 " << sha << ", expected " << want[2]);
    }
    ++tensors_checked;
  }
  CHECK(keys_checked == expected["kv"].size());
  CHECK(tensors_checked == expected["tensors"].size());
}

inline std::vector<std::string> SharedModels() {
  std::vector<std::string> models;
  for (auto it = GoldenConvert().begin(); it != GoldenConvert().end(); ++it) {
    const std::string key = it.key();
    const size_t slash = key.find('/');
    if (key.substr(slash + 1) == "convert") models.push_back(key.substr(0, slash));
  }
  return models;
}

}  // namespace hwyquant::test

#endif  // HWYQUANT_TESTS_GOLDEN_GGUF_H_
