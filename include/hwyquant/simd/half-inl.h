// Vector f32 <-> f16 / bf16 conversions with integer ops, equal to hwyquant/half.h on every input
// (hardware and Highway conversions differ on NaN payloads and, on some targets, rounding).

#include <stddef.h>
#include <stdint.h>

#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_HALF_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_HALF_INL_H_
#undef HWYQUANT_SIMD_HALF_INL_H_
#else
#define HWYQUANT_SIMD_HALF_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

// F32ToF16 of every lane, as int32 lanes holding the 16-bit pattern.
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> F16BitsFromF32(DF df, hn::Vec<DF> v) {
  // Arithmetic in unsigned lanes (wrapping is defined); compares on the magnitude, which fits
  // in a non-negative int32.
  const hn::RebindToSigned<DF> di;
  const hn::RebindToUnsigned<DF> du;
  const auto bits = hn::BitCast(du, v);
  const auto sign = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 0x8000u));
  const auto magnitude = hn::And(bits, hn::Set(du, 0x7FFFFFFFu));
  const auto signed_magnitude = hn::BitCast(di, magnitude);
  // Normal halves: add the rounding bias (ties to even via the lowest kept bit), rebias the
  // exponent; a mantissa carry rolls into the exponent as it should.
  const auto odd = hn::And(hn::ShiftRight<13>(magnitude), hn::Set(du, 1u));
  const auto rounded = hn::Add(hn::Add(magnitude, hn::Set(du, 0xFFFu)), odd);
  const auto normal = hn::ShiftRight<13>(hn::Sub(rounded, hn::Set(du, 0x38000000u)));
  // Subnormal halves: |f| * 2^24 is exact, and adding 2^23 rounds it to an integer with ties to
  // even, exactly the scalar shift-and-round. Results reach 0x400 (the smallest normal) too.
  const auto scaled = hn::Mul(hn::BitCast(df, magnitude), hn::Set(df, 16777216.0f));
  const auto subnormal =
      hn::Sub(hn::BitCast(du, hn::Add(scaled, hn::Set(df, 8388608.0f))), hn::Set(du, 0x4B000000u));
  auto result = hn::IfThenElse(
      hn::RebindMask(du, hn::Gt(signed_magnitude, hn::Set(di, 0x387FFFFF))), normal, subnormal);
  result = hn::IfThenElse(hn::RebindMask(du, hn::Gt(signed_magnitude, hn::Set(di, 0x477FEFFF))),
                          hn::Set(du, 0x7C00u), result);
  result = hn::IfThenElse(hn::RebindMask(du, hn::Gt(signed_magnitude, hn::Set(di, 0x7F800000))),
                          hn::Set(du, 0x7E00u), result);
  return hn::BitCast(di, hn::Or(result, sign));
}

// F16ToF32 of int32 lanes holding 16-bit patterns.
template <class DF>
HWY_INLINE hn::Vec<DF> F32FromF16Bits(DF df, hn::Vec<hn::RebindToSigned<DF>> h) {
  const hn::RebindToSigned<DF> di;
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(di, 0x8000)));
  const auto exponent = hn::And(hn::ShiftRight<10>(h), hn::Set(di, 0x1F));
  const auto mantissa = hn::And(h, hn::Set(di, 0x3FF));
  const auto shifted_mantissa = hn::ShiftLeft<13>(mantissa);
  const auto normal =
      hn::Or(hn::ShiftLeft<23>(hn::Add(exponent, hn::Set(di, 112))), shifted_mantissa);
  const auto quiet = hn::IfThenElseZero(hn::Ne(mantissa, hn::Zero(di)), hn::Set(di, 0x400000));
  const auto inf_nan = hn::Or(hn::Or(hn::Set(di, 0x7F800000), shifted_mantissa), quiet);
  // Subnormal (and zero) halves are mantissa * 2^-24: both steps exact in f32.
  const auto subnormal =
      hn::BitCast(di, hn::Mul(hn::ConvertTo(df, mantissa), hn::Set(df, 5.9604644775390625e-8f)));
  auto result = hn::IfThenElse(hn::Eq(exponent, hn::Zero(di)), subnormal, normal);
  result = hn::IfThenElse(hn::Eq(exponent, hn::Set(di, 0x1F)), inf_nan, result);
  return hn::BitCast(df, hn::Or(result, sign));
}

// F32ToBF16 of every lane, as int32 lanes holding the 16-bit pattern.
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> BF16BitsFromF32(DF /*df*/, hn::Vec<DF> v) {
  const hn::RebindToSigned<DF> di;
  const hn::RebindToUnsigned<DF> du;
  const auto bits = hn::BitCast(du, v);
  const auto high = hn::ShiftRight<16>(bits);
  const auto is_nan =
      hn::Gt(hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu))), hn::Set(di, 0x7F800000));
  const auto nan_bits = hn::Or(high, hn::Set(du, 0x40u));
  const auto bias = hn::Add(hn::Set(du, 0x7FFFu), hn::And(high, hn::Set(du, 1u)));
  const auto rounded = hn::ShiftRight<16>(hn::Add(bits, bias));
  return hn::BitCast(di, hn::IfThenElse(hn::RebindMask(du, is_nan), nan_bits, rounded));
}

template <class DF>
HWY_INLINE hn::Vec<DF> F32FromBF16Bits(DF df, hn::Vec<hn::RebindToSigned<DF>> b) {
  return hn::BitCast(df, hn::ShiftLeft<16>(b));
}

// Loads N 16-bit patterns as int32 lanes.
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> LoadHalfBits(DF /*df*/, const uint16_t* HWY_RESTRICT p) {
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(du16, p)));
}

// Stores int32 lanes holding 16-bit patterns (0..0xFFFF) as N uint16.
template <class DF>
HWY_INLINE void StoreHalfBits(DF /*df*/, hn::Vec<hn::RebindToSigned<DF>> bits,
                              uint16_t* HWY_RESTRICT p) {
  const hn::Rebind<uint16_t, DF> du16;
  hn::StoreU(hn::DemoteTo(du16, bits), du16, p);
}

// x86 F16C (AVX2 and AVX3 targets): vcvtph2ps is exact for every half, NaNs included (quiet
// bit set, payload kept, as F16ToF32 does). vcvtps2ph with an immediate round-to-nearest-even
// mode is exact IEEE narrowing for every non-NaN input (subnormals, overflow to Inf, -0); it
// keeps NaN payloads, so vectors holding a NaN take the integer path instead.
#undef HWYQUANT_HAVE_F16C_PATH  // set anew for each target
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
#define HWYQUANT_HAVE_F16C_PATH 1
namespace detail {
constexpr int kF16Rounding = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
HWY_INLINE void StoreF16Hardware(__m256 v, uint16_t* HWY_RESTRICT p) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, kF16Rounding));
}
HWY_INLINE __m256 LoadF16Hardware(const uint16_t* HWY_RESTRICT p, __m256 /*tag*/) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#if HWY_TARGET <= HWY_AVX3
HWY_INLINE void StoreF16Hardware(__m512 v, uint16_t* HWY_RESTRICT p) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kF16Rounding));
}
HWY_INLINE __m512 LoadF16Hardware(const uint16_t* HWY_RESTRICT p, __m512 /*tag*/) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
#endif
}  // namespace detail
#else
#define HWYQUANT_HAVE_F16C_PATH 0
#endif

// Whole arrays; the tail shorter than a vector uses the scalar conversions (same results).
template <class DF>
HWY_INLINE void F32ToF16Array(DF df, const float* HWY_RESTRICT x, uint16_t* HWY_RESTRICT y,
                              size_t n) {
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(df, x + i);
#if HWYQUANT_HAVE_F16C_PATH
    if (HWY_LIKELY(N >= 8 && hn::AllTrue(df, hn::Eq(v, v)))) {
      detail::StoreF16Hardware(v.raw, y + i);
      continue;
    }
#endif
    StoreHalfBits(df, F16BitsFromF32(df, v), y + i);
  }
  for (; i < n; ++i) y[i] = F32ToF16(x[i]);
}

template <class DF>
HWY_INLINE void F16ToF32Array(DF df, const uint16_t* HWY_RESTRICT x, float* HWY_RESTRICT y,
                              size_t n) {
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
#if HWYQUANT_HAVE_F16C_PATH
    if (N >= 8) {
      using Raw = decltype(hn::Zero(df).raw);
      hn::StoreU(hn::Vec<DF>{detail::LoadF16Hardware(x + i, Raw())}, df, y + i);
      continue;
    }
#endif
    hn::StoreU(F32FromF16Bits(df, LoadHalfBits(df, x + i)), df, y + i);
  }
  for (; i < n; ++i) y[i] = F16ToF32(x[i]);
}

template <class DF>
HWY_INLINE void F32ToBF16Array(DF df, const float* HWY_RESTRICT x, uint16_t* HWY_RESTRICT y,
                               size_t n) {
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(df, x + i);
    if (HWY_LIKELY(hn::AllTrue(df, hn::Eq(v, v)))) {
      // No NaN lane: only the rounding, ties to even via the lowest kept bit.
      const auto bits = hn::BitCast(du, v);
      const auto odd = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
      const auto rounded = hn::ShiftRight<16>(hn::Add(hn::Add(bits, hn::Set(du, 0x7FFFu)), odd));
      StoreHalfBits(df, hn::BitCast(di, rounded), y + i);
    } else {
      StoreHalfBits(df, BF16BitsFromF32(df, v), y + i);
    }
  }
  for (; i < n; ++i) y[i] = F32ToBF16(x[i]);
}

template <class DF>
HWY_INLINE void BF16ToF32Array(DF df, const uint16_t* HWY_RESTRICT x, float* HWY_RESTRICT y,
                               size_t n) {
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(F32FromBF16Bits(df, LoadHalfBits(df, x + i)), df, y + i);
  for (; i < n; ++i) y[i] = BF16ToF32(x[i]);
}

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_HALF_INL_H_
