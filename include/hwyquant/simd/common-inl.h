// Shared SIMD building blocks for every codec: ggml's exact scalar idioms (nearest_int, roundf,
// x86 float->int casts, first-wins max) as vector ops, and lane-per-group transposition.
//
// Stability contract (other kernel files build on this; only add, never change meaning):
//   namespace hwyquant::kernels::HWY_NAMESPACE, `hn` = hwy::HWY_NAMESPACE.
//   Tags: FloatTag = CappedTag<float, kMaxGroupLanes>; every codec uses it so that a group of
//   32 weights is a whole number of vectors on all x86 targets (16 AVX3, 8 AVX2, 4 SSE4/SSSE3,
//   1 on the scalar fallback, which is HWY_SCALAR with GCC < 12.3 and EMU128 otherwise).
//   NearestInt(df, v)            ggml nearest_int bit trick (ties to even, wraps like ggml).
//   TruncateLikeX86(df, v)       C (int) cast as cvttss2si: INT32_MIN for NaN / out of range.
//   LowByteSigned(di, v)         (int8_t) of an int32: sign-extends the low 8 bits.
//   RoundHalfAway(df, v)         roundf: halves away from zero.
//   IsTruthy(df, v)              C's `v != 0` on a float (true for NaN), as a mask.
//   GroupOffsets(di, stride, n)  per-lane int32 offsets lane*stride, lanes >= n repeat n-1.
//   GatherTransposed(df, base, offsets, count, t)
//                                t[i*N + lane] = base[offsets[lane] + i], i < count.
//   MaxLane / MinLane(d, v)      horizontal extreme as a scalar (exact only without NaN lanes).
//   FirstLargestMagnitude<n>(df, x)  ggml's first value of largest magnitude (NaNs never win).
//   FirstLargestPerLane<first, n>(df, xt, &amax, &max)  the same scan per lane, transposed.
//   StoreBytes(di, v, out)       N int32 lanes holding 0..255 -> N bytes.
// Related files: half-inl.h (exact f16/bf16 vectors), legacy_common-inl.h (first-wins block
// extremes, one-block-per-lane imatrix searches), hwyquant/static-inl.h (the per-target
// KernelTable and its K-QUANT SLOT, where K-quant codecs are registered).
// Exactness rules the helpers follow: -ffp-contract=off (no MulAdd), true IEEE division, and
// each lane executing the reference's statements in the reference's order.

// Non-target part: constants compiled once.
#ifndef HWYQUANT_SIMD_COMMON_SHARED_H_
#define HWYQUANT_SIMD_COMMON_SHARED_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace hwyquant::kernels {

// Widest float vector used by the codecs (AVX-512: 16 lanes). Scratch buffers use it.
inline constexpr size_t kMaxGroupLanes = 16;
// ggml's GROUP_MAX_EPS: groups whose largest magnitude is below it quantize to zero.
inline constexpr float kGroupMaxEps = 1e-15f;

}  // namespace hwyquant::kernels

#endif  // HWYQUANT_SIMD_COMMON_SHARED_H_

#if defined(HWYQUANT_SIMD_COMMON_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_COMMON_INL_H_
#undef HWYQUANT_SIMD_COMMON_INL_H_
#else
#define HWYQUANT_SIMD_COMMON_INL_H_
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::CappedTag<float, kMaxGroupLanes>;

// nearest_int(f): (bits(f + 1.5*2^23) & 0x7fffff) - 0x400000, on integer bits so that NaN,
// Inf and out-of-range inputs give exactly ggml's (meaningless but deterministic) values.
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> NearestInt(DF df, hn::Vec<DF> v) {
  const hn::RebindToSigned<DF> di;
  const auto bits = hn::BitCast(di, hn::Add(v, hn::Set(df, 12582912.f)));
  return hn::Sub(hn::And(bits, hn::Set(di, 0x007fffff)), hn::Set(di, 0x00400000));
}

// (int32_t)f as x86 executes it: truncation toward zero; NaN and |f| >= 2^31 give INT32_MIN.
// On x86 SIMD targets that is exactly cvttps2dq; Highway's ConvertTo saturates positive
// overflow instead, so elsewhere out-of-range lanes are replaced explicitly.
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
namespace detail {
HWY_INLINE __m128i CvttPs(__m128 v) { return _mm_cvttps_epi32(v); }
#if HWY_TARGET <= HWY_AVX2
HWY_INLINE __m256i CvttPs(__m256 v) { return _mm256_cvttps_epi32(v); }
#endif
#if HWY_TARGET <= HWY_AVX3
HWY_INLINE __m512i CvttPs(__m512 v) { return _mm512_cvttps_epi32(v); }
#endif
}  // namespace detail

template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> TruncateLikeX86(DF /*df*/, hn::Vec<DF> v) {
  return hn::Vec<hn::RebindToSigned<DF>>{detail::CvttPs(v.raw)};
}
#else
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> TruncateLikeX86(DF df, hn::Vec<DF> v) {
  const hn::RebindToSigned<DF> di;
  const auto in_range = hn::RebindMask(
      di, hn::And(hn::Ge(v, hn::Set(df, -2147483648.0f)), hn::Lt(v, hn::Set(df, 2147483648.0f))));
  // Zero first so the conversion itself never sees an out-of-range value.
  const auto safe = hn::IfThenElseZero(hn::RebindMask(df, in_range), v);
  return hn::IfThenElse(in_range, hn::ConvertTo(di, safe), hn::Set(di, INT32_MIN));
}
#endif

// (int8_t) of an int32: the low byte, sign-extended.
template <class DI>
HWY_INLINE hn::Vec<DI> LowByteSigned(DI /*di*/, hn::Vec<DI> v) {
  return hn::ShiftRight<24>(hn::ShiftLeft<24>(v));
}

// roundf: nearest integer, halves away from zero. v - trunc(v) is exact for every float, so
// the comparison with 0.5 decides exactly as libm does; Inf and NaN pass through.
template <class DF>
HWY_INLINE hn::Vec<DF> RoundHalfAway(DF df, hn::Vec<DF> v) {
  const auto t = hn::Trunc(v);
  const auto frac = hn::Abs(hn::Sub(v, t));
  const auto step = hn::CopySign(hn::Set(df, 1.0f), v);
  return hn::IfThenElse(hn::Ge(frac, hn::Set(df, 0.5f)), hn::Add(t, step), t);
}

// C truthiness of a float (`f != 0`, or `f ? a : b`): NaN counts as true.
template <class DF>
HWY_INLINE hn::Mask<DF> IsTruthy(DF df, hn::Vec<DF> v) {
  return hn::Not(hn::Eq(v, hn::Zero(df)));
}

// Lane j reads group j at offset j * stride; lanes beyond `valid` repeat the last valid group
// so gathers never leave the caller's buffers.
template <class DI>
HWY_INLINE hn::Vec<DI> GroupOffsets(DI di, int32_t stride, size_t valid) {
  const auto lane = hn::Min(hn::Iota(di, 0), hn::Set(di, static_cast<int32_t>(valid) - 1));
  return hn::Mul(lane, hn::Set(di, stride));
}

// Transposes `count` consecutive elements of each lane's group into t (t[i*N + lane]).
template <class DF>
HWY_INLINE void GatherTransposed(DF df, const float* HWY_RESTRICT base,
                                 hn::Vec<hn::RebindToSigned<DF>> offsets, size_t count,
                                 float* HWY_RESTRICT t) {
  const size_t N = hn::Lanes(df);
  for (size_t i = 0; i < count; ++i) {
    hn::Store(hn::GatherIndex(df, base + i, offsets), df, t + i * N);
  }
}

// Largest lane of a vector, as a scalar. Only exact (order-free) when no lane is NaN.
template <class D>
HWY_INLINE hn::TFromD<D> MaxLane(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::MaxOfLanes(d, v));
}
template <class D>
HWY_INLINE hn::TFromD<D> MinLane(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::MinOfLanes(d, v));
}

// The scan `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` from amax = max = 0 over kCount
// values (q4_0 / q5_0's blocks, q3_K / q6_K's sub-block scales): returns max, the first value
// whose magnitude is the largest (NaNs never win). kCount must be a multiple of Lanes(df).
template <size_t kCount, class DF>
HWY_INLINE float FirstLargestMagnitude(DF df, const float* HWY_RESTRICT xb) {
  static_assert(kCount <= 64, "one 64-bit mask of hits");
  const size_t N = hn::Lanes(df);
  auto amax = hn::Zero(df);
  for (size_t i = 0; i < kCount; i += N) {
    const auto v = hn::LoadU(df, xb + i);
    amax = hn::Max(amax, hn::IfThenElseZero(hn::Eq(v, v), hn::Abs(v)));
  }
  const float largest = MaxLane(df, amax);
  if (!(largest > 0.0f)) return 0.0f;  // nothing beat the initial 0: max stays +0
  // Which value comes first is data-dependent and unpredictable, so it is found from one
  // 64-bit mask (no branch per vector).
  const auto target = hn::Set(df, largest);
  uint64_t hits = 0;
  for (size_t i = 0; i < kCount; i += N) {
    uint8_t bytes[8] = {0};
    hn::StoreMaskBits(df, hn::Eq(hn::Abs(hn::LoadU(df, xb + i)), target), bytes);
    uint64_t chunk;
    memcpy(&chunk, bytes, sizeof(chunk));
    hits |= chunk << i;
  }
  // Some value equals the largest magnitude, so hits != 0.
  return xb[hwy::Num0BitsBelowLS1Bit_Nonzero64(hits)];
}

// ggml's scan `if (ax > amax) { amax = ax; max = x; }` from amax = max = 0 over elements
// [kFirst, kFirst + kCount) of each lane's group (transposed in xt), as a tree of pairwise
// picks in which the later half wins only when strictly larger: log2(kCount) compares deep
// where the scan's chain is kCount long. Elements that cannot beat the initial 0 (zeros,
// NaNs) enter as (0, +0), so the first strict maximum wins as in the scan.
template <int kFirst, int kCount, class DF>
HWY_INLINE void FirstLargestPerLane(DF df, const float* HWY_RESTRICT xt, hn::Vec<DF>* amax,
                                    hn::Vec<DF>* max) {
  static_assert((kCount & (kCount - 1)) == 0, "halves must split evenly");
  if constexpr (kCount == 1) {
    const hn::Vec<DF> x = hn::Load(df, xt + kFirst * hn::Lanes(df));
    const hn::Vec<DF> ax = hn::Abs(x);
    const auto wins = hn::Gt(ax, hn::Zero(df));
    *amax = hn::IfThenElseZero(wins, ax);
    *max = hn::IfThenElseZero(wins, x);
  } else {
    hn::Vec<DF> amax_later, max_later;
    FirstLargestPerLane<kFirst, kCount / 2>(df, xt, amax, max);
    FirstLargestPerLane<kFirst + kCount / 2, kCount / 2>(df, xt, &amax_later, &max_later);
    const auto later = hn::Gt(amax_later, *amax);
    *amax = hn::IfThenElse(later, amax_later, *amax);
    *max = hn::IfThenElse(later, max_later, *max);
  }
}

// Packs the low byte of each int32 lane into N bytes at out (values must already be 0..255).
template <class DI>
HWY_INLINE void StoreBytes(DI di, hn::Vec<DI> v, uint8_t* HWY_RESTRICT out) {
  const hn::Rebind<uint8_t, DI> du8;
  hn::StoreU(hn::DemoteTo(du8, v), du8, out);
  (void)di;
}

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_COMMON_INL_H_
