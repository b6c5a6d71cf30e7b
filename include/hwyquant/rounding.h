// ggml's scalar nearest_int, shared by the reference and the kernels' per-super-block steps.
#ifndef HWYQUANT_ROUNDING_H_
#define HWYQUANT_ROUNDING_H_

#include <cstdint>
#include <cstring>

namespace hwyquant {

// Rounds to the nearest integer, ties to even, by adding 1.5 * 2^23 and reading the mantissa
// (nearest_int). Exact for |fval| <= 2^22 - 1; beyond that it returns the same wrapped value ggml
// does, since ggml's range assert is compiled out in release builds.
inline int NearestInt(float fval) {
  const float val = fval + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &val, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace hwyquant

#endif  // HWYQUANT_ROUNDING_H_
