// Test helpers: locating ../shared and data/, reading files, digests and deterministic inputs.
#ifndef HWYQUANT_TESTS_SUPPORT_H_
#define HWYQUANT_TESTS_SUPPORT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hwyquant::test {

// The shared reference material directory (HWYQUANT_SHARED env, else the configured default),
// or "" when absent. When HWYQUANT_REQUIRE_SHARED=1 is set, absence fails the calling test.
std::string SharedDir();

// The project's data/ directory (HWYQUANT_DATA env, else the source tree's).
std::string DataDir();

bool FileExists(const std::string& path);
// The whole file; fails the calling test (naming the path) when it cannot be read.
std::vector<uint8_t> ReadFileBytes(const std::string& path);
std::vector<float> ReadF32File(const std::string& path);
std::string ReadTextFile(const std::string& path);
// "" when the bytes are the same, else their sizes and where they first differ: for CHECK, whose
// message for two unequal byte vectors would print every byte (minutes for a model file).
std::string BytesDifference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);
// BytesDifference of two files' contents, naming the files.
std::string FileDifference(const std::string& path_a, const std::string& path_b);

std::string Sha256Hex(const void* data, size_t size);

// Runs body in a child process whose files may not grow past `limit` bytes (RLIMIT_FSIZE) and
// returns the child's exit code, body's result; -1 when the child was killed (by SIGXFSZ, say).
int ExitCodeUnderFileSizeLimit(uint64_t limit, const std::function<int()>& body);

// SplitMix64: the same sequence on every platform and compiler, unlike <random> distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [-1, 1), from 24 random bits: exactly representable, platform independent.
  float UniformSigned();
  // Heavy-tailed values built from arithmetic only (no libm), so digests are portable.
  float HeavyTailed();

 private:
  uint64_t state_;
};

}  // namespace hwyquant::test

#endif  // HWYQUANT_TESTS_SUPPORT_H_
