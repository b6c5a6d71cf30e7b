// Bit-exact regression test of the scalar reference on inputs the project
// generates itself.
//
// Every quantizable type is run over a few generated shapes, with and without a
// generated importance matrix, and the SHA-256 of reference::QuantizeRows's
// output is compared with data/regression/digests.txt (one line per case: `name
// type imatrix sha256`). It needs no
// ../shared, so it guards the reference wherever the repository is checked out.
// The inputs come from test::Rng and plain float arithmetic (no libm, no
// <random>), so they, and the digests, are the same on every platform.
//
// Regenerating the digests (only after the golden tests pass, since the digests
// then inherit ggml's exactness: `ctest -R 'reference_(legacy|kquants)'`):
//
//   HWYQUANT_UPDATE_DIGESTS=1 ./tests/regression_test
//
// writes data/regression/digests.txt in the source tree (or
// $HWYQUANT_DATA/regression/) and then checks against what it wrote. Review the
// diff before committing: a changed line means the reference's bytes changed.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hwyquant/format.h"
#include "reference/reference.h"
#include "tests/support.h"

namespace hwyquant {
namespace {

// One generated input: rows x cols weights and the importance matrix used with
// it.
struct Shape {
  std::string name;
  int64_t rows;
  int64_t cols;
  std::vector<float> values;
  std::vector<float> imatrix;
};

// Roughly normal with standard deviation ~0.02 (sum of four uniforms), like LLM
// weights.
float GaussLike(test::Rng& rng) {
  const float sum =
      rng.UniformSigned() + rng.UniformSigned() + rng.UniformSigned() + rng.UniformSigned();
  return sum * 0.0173f;
}

std::vector<float> GenerateImatrix(test::Rng& rng, int64_t cols) {
  std::vector<float> weights(static_cast<size_t>(cols));
  // Positive, spanning two orders of magnitude, with occasional large columns
  // as real activation statistics have.
  for (float& w : weights) {
    const float u = rng.UniformSigned() + 1.0f;  // [0, 2)
    w = 0.01f + u * u;
    if ((rng.Next() & 31) == 0) w *= 50.0f;
  }
  return weights;
}

// The shapes: row lengths are multiples of 256 so the K-quants take them too.
std::vector<Shape> GenerateShapes() {
  std::vector<Shape> shapes;
  auto add = [&shapes](const std::string& name, int64_t rows, int64_t cols, uint64_t seed,
                       auto&& generate) {
    test::Rng rng(seed);
    Shape shape{name, rows, cols, std::vector<float>(static_cast<size_t>(rows * cols)), {}};
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        shape.values[static_cast<size_t>(r * cols + c)] = generate(rng, r);
      }
    }
    shape.imatrix = GenerateImatrix(rng, cols);
    shapes.push_back(std::move(shape));
  };
  add("gauss_3x512", 3, 512, 1, [](test::Rng& rng, int64_t) { return GaussLike(rng); });
  add("heavy_1x4096", 1, 4096, 2,
      [](test::Rng& rng, int64_t) { return rng.HeavyTailed() * 0.01f; });
  // Rows whose scales differ by up to 10^6: exercises per-row statistics of the
  // imatrix paths.
  add("scales_4x1024", 4, 1024, 3, [](test::Rng& rng, int64_t row) {
    const float row_scale[] = {1e-4f, 1e-2f, 1.0f, 100.0f};
    return rng.UniformSigned() * row_scale[row];
  });
  add("zeros_2x256", 2, 256, 4, [](test::Rng&, int64_t) { return 0.0f; });
  // Multiples of 1/8 in [-2, 2]: many values land exactly on rounding
  // midpoints.
  add("ties_2x512", 2, 512, 5, [](test::Rng& rng, int64_t) {
    return static_cast<float>(static_cast<int>(rng.Next() % 33) - 16) / 8.0f;
  });
  // Mostly zero and non-negative: the min-clamping and all-zero-group paths.
  add("sparse_relu_2x768", 2, 768, 6, [](test::Rng& rng, int64_t) {
    const bool keep = (rng.Next() & 7) == 0;
    const float v = rng.UniformSigned();
    return keep && v > 0 ? v : 0.0f;
  });
  return shapes;
}

const Type kTypes[] = {Type::kF16,  Type::kBF16, Type::kQ4_0, Type::kQ4_1,
                       Type::kQ5_0, Type::kQ5_1, Type::kQ8_0, Type::kQ2_K,
                       Type::kQ3_K, Type::kQ4_K, Type::kQ5_K, Type::kQ6_K};

std::string CaseKey(const std::string& name, const std::string& type, const std::string& imat) {
  return name + " " + type + " " + imat;
}

// Digests of the generated inputs themselves, stored as the two lines `inputs
// f32 none` (all values) and `inputs f32 imatrix` (all importance matrices), so
// that a change of the generator is reported as such rather than as twelve
// quantizers changing at once.
std::map<std::string, std::string> InputDigests(const std::vector<Shape>& shapes) {
  std::string values;
  std::string imatrices;
  for (const Shape& shape : shapes) {
    values += shape.name + "=" +
              test::Sha256Hex(shape.values.data(), shape.values.size() * sizeof(float)) + "\n";
    imatrices += shape.name + "=" +
                 test::Sha256Hex(shape.imatrix.data(), shape.imatrix.size() * sizeof(float)) + "\n";
  }
  return {
      {CaseKey("inputs", "f32", "none"), test::Sha256Hex(values.data(), values.size())},
      {CaseKey("inputs", "f32", "imatrix"), test::Sha256Hex(imatrices.data(), imatrices.size())}};
}

std::string DigestsPath() { return test::DataDir() + "/regression/digests.txt"; }

// Parses `name type imatrix sha256` lines; '#' starts a comment line.
std::map<std::string, std::string> ParseDigests(const std::string& path) {
  std::map<std::string, std::string> digests;
  std::istringstream in(test::ReadTextFile(path));
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, type, imat, digest, extra;
    fields >> name >> type >> imat >> digest;
    const bool well_formed = !digest.empty() && !(fields >> extra) && digest.size() == 64 &&
                             (imat == "none" || imat == "imatrix");
    if (!well_formed) FAIL(path << ":" << line_number << ": malformed line '" << line << "'");
    const std::string key = CaseKey(name, type, imat);
    if (!digests.emplace(key, digest).second) {
      FAIL(path << ":" << line_number << ": duplicate entry for " << key);
    }
  }
  return digests;
}

// Writes the digests to a temporary file beside the target and renames it into
// place.
void WriteDigests(const std::string& path, const std::vector<std::string>& lines) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out)
      FAIL("cannot write " << temporary << " (does " << test::DataDir() << "/regression exist?)");
    out << "# SHA-256 of reference::QuantizeRows output: name type imatrix "
           "sha256.\n"
           "# Generated by HWYQUANT_UPDATE_DIGESTS=1 tests/regression_test; "
           "see regression_test.cc.\n";
    for (const std::string& line : lines) out << line << "\n";
    if (!out.flush()) FAIL("writing " << temporary << " failed");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    FAIL("cannot rename " << temporary << " to " << path);
  }
}

TEST_CASE("regression: reference output digests match data/regression/digests.txt") {
  const std::vector<Shape> shapes = GenerateShapes();
  std::map<std::string, std::string> computed = InputDigests(shapes);
  std::vector<std::string> lines;
  for (const auto& [key, digest] : computed) lines.push_back(key + " " + digest);
  for (const Shape& shape : shapes) {
    for (Type type : kTypes) {
      for (bool with_imatrix : {false, true}) {
        const std::string imat = with_imatrix ? "imatrix" : "none";
        INFO("input " << shape.name << ", type " << TypeName(type) << ", " << imat);
        std::vector<uint8_t> out(static_cast<size_t>(shape.rows) * RowSize(type, shape.cols));
        const size_t written =
            reference::QuantizeRows(type, shape.values.data(), out.data(), shape.rows, shape.cols,
                                    with_imatrix ? shape.imatrix.data() : nullptr);
        REQUIRE(written == out.size());
        const std::string digest = test::Sha256Hex(out.data(), out.size());
        computed[CaseKey(shape.name, TypeName(type), imat)] = digest;
        lines.push_back(CaseKey(shape.name, TypeName(type), imat) + " " + digest);
      }
    }
  }

  const std::string path = DigestsPath();
  const char* update = std::getenv("HWYQUANT_UPDATE_DIGESTS");
  if (update != nullptr && std::strcmp(update, "1") == 0) {
    WriteDigests(path, lines);
    WARN("wrote " << lines.size() << " digests to " << path);
  }

  const std::map<std::string, std::string> stored = ParseDigests(path);
  for (const auto& [key, digest] : computed) {
    INFO("case '" << key << "' in " << path);
    const auto it = stored.find(key);
    if (it == stored.end()) {
      FAIL_CHECK("no stored digest (regenerate with HWYQUANT_UPDATE_DIGESTS=1)");
      continue;
    }
    INFO("stored " << it->second << ", computed " << digest);
    CHECK(it->second == digest);
  }
  // A stored line nothing computes any more is stale: the file must describe
  // exactly this test.
  for (const auto& [key, digest] : stored) {
    INFO("stored case '" << key << "' in " << path);
    CHECK(computed.count(key) == 1);
  }
  CHECK(stored.size() == 2 + shapes.size() * std::size(kTypes) * 2);
}

TEST_CASE("regression: generated inputs are the ones the digests were made from") {
  const std::vector<Shape> shapes = GenerateShapes();
  REQUIRE(shapes.size() == 6);
  for (const Shape& shape : shapes) {
    INFO("shape " << shape.name);
    REQUIRE(shape.values.size() == static_cast<size_t>(shape.rows * shape.cols));
    REQUIRE(shape.imatrix.size() == static_cast<size_t>(shape.cols));
    REQUIRE(shape.cols % kSuperBlock == 0);
    for (float w : shape.imatrix) REQUIRE(w > 0.0f);
  }
  const std::map<std::string, std::string> stored = ParseDigests(DigestsPath());
  for (const auto& [key, digest] : InputDigests(shapes)) {
    INFO("case '" << key << "': test::Rng or the shape generators changed");
    const auto it = stored.find(key);
    REQUIRE(it != stored.end());
    CHECK(it->second == digest);
  }
}

}  // namespace
}  // namespace hwyquant
