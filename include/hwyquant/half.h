// Scalar f32 <-> f16 / bf16 conversions that give ggml's exact bits for every input.
#ifndef HWYQUANT_HALF_H_
#define HWYQUANT_HALF_H_

#include <cstdint>
#include <cstring>

#include "hwyquant/format.h"

namespace hwyquant {

inline uint32_t BitsOfF32(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

inline float F32FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// IEEE round-to-nearest-even, overflow to Inf, gradual underflow. Every NaN becomes the quiet NaN
// 0x7E00 with the input's sign, as ggml's conversion does (payloads are not kept).
inline HalfBits F32ToF16(float f) {
  const uint32_t bits = BitsOfF32(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return sign | 0x7E00u;
  // 65520 and above (the midpoint between 65504 and 2^16) round to Inf.
  if (magnitude >= 0x477FF000u) return sign | 0x7C00u;
  if (magnitude >= 0x38800000u) {  // at least 2^-14: a normal half
    const uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);
    // Rebias the exponent from 127 to 15; a mantissa carry rolls into the exponent correctly.
    return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
  }
  // Subnormal half: round |f| * 2^24 to an integer, ties to even.
  const uint32_t exponent = magnitude >> 23;
  const uint32_t shift = 126u - exponent;  // >= 14 here
  if (shift > 24u) return sign;            // below 2^-25: rounds to zero
  const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
  uint32_t result = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
  return sign | static_cast<uint16_t>(result);
}

// Exact widening. A signalling NaN comes back quiet (its payload otherwise kept), as in ggml.
inline float F16ToF32(HalfBits h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) {
    const uint32_t quiet = mantissa != 0 ? 0x400000u : 0u;
    return F32FromBits(sign | 0x7F800000u | (mantissa << 13) | quiet);
  }
  if (exponent != 0) {
    return F32FromBits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  }
  if (mantissa == 0) return F32FromBits(sign);
  // Subnormal half: normalise into an f32 exponent.
  uint32_t f32_exponent = 113u;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --f32_exponent;
  }
  return F32FromBits(sign | (f32_exponent << 23) | ((mantissa & 0x3FFu) << 13));
}

// Round-to-nearest-even truncation of the low 16 bits; NaNs keep their top bits and are made quiet.
// Subnormals are kept, not flushed.
inline BF16Bits F32ToBF16(float f) {
  const uint32_t bits = BitsOfF32(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  }
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

inline float BF16ToF32(BF16Bits b) { return F32FromBits(static_cast<uint32_t>(b) << 16); }

}  // namespace hwyquant

#endif  // HWYQUANT_HALF_H_
