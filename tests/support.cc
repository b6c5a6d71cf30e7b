// Test helpers shared by every test executable.
#include "tests/support.h"

#include <openssl/evp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace hwyquant::test {

std::string SharedDir() {
  const char* env = std::getenv("HWYQUANT_SHARED");
  const std::string dir = (env && *env) ? env : HWYQUANT_SHARED_DIR_DEFAULT;
  if (FileExists(dir + "/golden")) return dir;
  const char* require = std::getenv("HWYQUANT_REQUIRE_SHARED");
  if (require && std::strcmp(require, "1") == 0) {
    FAIL("HWYQUANT_REQUIRE_SHARED=1 but no shared material at " << dir);
  }
  WARN("no shared material at " << dir << "; golden comparisons not run");
  return "";
}

std::string DataDir() {
  const char* env = std::getenv("HWYQUANT_DATA");
  return (env && *env) ? env : HWYQUANT_DATA_DIR_DEFAULT;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FAIL("cannot read " << path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> ReadF32File(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  if (bytes.size() % 4 != 0) FAIL(path << " is not a whole number of floats");
  std::vector<float> values(bytes.size() / 4);
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

std::string ReadTextFile(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  return std::string(bytes.begin(), bytes.end());
}

std::string BytesDifference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  const auto [at_a, at_b] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  if (at_a == a.end() && at_b == b.end()) return "";
  const std::string sizes =
      std::to_string(a.size()) + " and " + std::to_string(b.size()) + " bytes, ";
  const size_t offset = static_cast<size_t>(at_a - a.begin());
  if (at_a == a.end() || at_b == b.end()) {
    return sizes + "the same up to the shorter's end at byte " + std::to_string(offset);
  }
  return sizes + "first different at byte " + std::to_string(offset) + " (" +
         std::to_string(*at_a) + " vs " + std::to_string(*at_b) + ")";
}

std::string FileDifference(const std::string& path_a, const std::string& path_b) {
  const std::string difference = BytesDifference(ReadFileBytes(path_a), ReadFileBytes(path_b));
  return difference.empty() ? "" : path_a + " and " + path_b + ": " + difference;
}

int ExitCodeUnderFileSizeLimit(uint64_t limit, const std::function<int()>& body) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    struct rlimit rlimit = {limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &rlimit);
    ::_exit(body());
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Sha256Hex(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data, size, digest, &length, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Rng::UniformSigned() {
  const int32_t bits = static_cast<int32_t>(Next() >> 40);  // 24 bits
  return static_cast<float>(bits - (1 << 23)) / static_cast<float>(1 << 23);
}

float Rng::HeavyTailed() {
  // Ratio of uniforms has Cauchy-like tails; clamp the denominator away from zero.
  const float numerator = UniformSigned();
  float denominator = UniformSigned();
  if (denominator > -1.0f / 1024 && denominator < 1.0f / 1024) denominator = 1.0f / 1024;
  return numerator / denominator;
}

}  // namespace hwyquant::test
