// SIMD K-quant helpers: ggml's per-group searches run with one independent group per lane.
//
// Every helper here works on "transposed" data: element i of the group in lane j lives at
// t[i * N + j] (N = Lanes(d)). Each lane then executes the scalar algorithm of ggml-quants.c
// statement by statement: the same IEEE operations in the same order, data-dependent branches
// turned into masks that select exactly what the branch would have assigned, and sequential
// sums kept sequential per lane. That is what makes every target's bytes equal ggml's.

// Non-target-specific part: plain scalar data and includes, compiled once.
#ifndef HWYQUANT_SIMD_K_COMMON_SHARED_H_
#define HWYQUANT_SIMD_K_COMMON_SHARED_H_

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "hwyquant/format.h"
#include "hwyquant/half.h"
#include "hwyquant/rounding.h"  // scalar NearestInt for per-super-block steps

namespace hwyquant::kernels {

// Super-blocks quantized together: enough sub-blocks to fill the widest vector several times.
inline constexpr int kKChunkSuperBlocks = 4;

// KMakeQ3QuantsFour pays from 16 lanes (AVX3: q3_K +18-25%); with 8 lanes (AVX2) it measured
// no faster and with 4 (SSE4) 8% slower, their first passes skipping more idle elements.
inline constexpr size_t kQ3FourMinLanes = 16;

// Vectors of groups that KMakeQkxQuants searches side by side: one leaves the FP pipes idle
// while each lane's chain of dependent adds and divisions runs; two measured 14-60% faster
// (q2_K, q4_K, q5_K on AVX3 and AVX2), four only -1% to +10% more for q2_K.
inline constexpr size_t kKMaxSearchVectors = 2;

// Sequential sum of x*x over one super-block, as ggml accumulates it (one chain, in order).
inline float KSumSquares256(const float* x) {
  float sum = 0;
  for (int l = 0; l < kSuperBlock; ++l) sum += x[l] * x[l];
  return sum;
}

// What q4_K and q5_K's quantizers differ in (ggml passes these as literals).
struct KScaleMinParams {
  int nmax;            // largest level: 15 or 31
  float rmin;          // make_qkx2_quants search start (no imatrix)
  float rdelta;        // and step
  int nstep;           // and number of steps
  bool clamp_imatrix;  // the imatrix path clamps qp levels to 63 (q5_K) or not (q4_K)
};

}  // namespace hwyquant::kernels

#endif  // HWYQUANT_SIMD_K_COMMON_SHARED_H_

#if defined(HWYQUANT_SIMD_K_COMMON_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_K_COMMON_INL_H_
#undef HWYQUANT_SIMD_K_COMMON_INL_H_
#else
#define HWYQUANT_SIMD_K_COMMON_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"  // NearestInt, kMaxGroupLanes, kGroupMaxEps

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// MAX(lo, MIN(hi, v)) on ints.
template <class DI>
HWY_INLINE hn::Vec<DI> KClamp(DI di, hn::Vec<DI> v, int lo, int hi) {
  return hn::Max(hn::Set(di, lo), hn::Min(hn::Set(di, hi), v));
}

// Copies `count` groups of `group` consecutive floats at src into t (t[i * N + lane]); lanes at
// and beyond count are zero so they run harmlessly and are discarded by the caller.
template <class DF>
HWY_INLINE void KTransposeIn(DF df, const float* HWY_RESTRICT src, size_t count, int group,
                             float* HWY_RESTRICT t) {
  const size_t N = hn::Lanes(df);
  if (count < N) {
    for (int i = 0; i < group; ++i) hn::Store(hn::Zero(df), df, t + i * N);
  }
  for (size_t lane = 0; lane < count; ++lane) {
    const float* HWY_RESTRICT s = src + lane * static_cast<size_t>(group);
    for (int i = 0; i < group; ++i) t[i * N + lane] = s[i];
  }
}

// ggml's imatrix weights for the `count` groups of `group` values from group index first on
// (of a chunk whose imatrix slice is `imatrix` and whose per-super-block sigma2 is sigma2):
// w = qw * sqrt(sigma2 + x*x) with xt the groups' transposed values, stored transposed in wt.
// Returns each lane's sum of its weights, added in order as ggml does.
template <class DF>
HWY_INLINE hn::Vec<DF> KImatrixWeights(DF df, int group, const float* HWY_RESTRICT imatrix,
                                       const float* HWY_RESTRICT sigma2, size_t first, size_t count,
                                       const float* HWY_RESTRICT xt, float* HWY_RESTRICT wt) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  const size_t groups_per_super_block = static_cast<size_t>(kSuperBlock / group);
  HWY_ALIGN float lane_sigma2[kMaxGroupLanes];
  KTransposeIn(df, imatrix + first * static_cast<size_t>(group), count, group, wt);
  for (size_t lane = 0; lane < N; ++lane) {
    lane_sigma2[lane] = lane < count ? sigma2[(first + lane) / groups_per_super_block] : 0.0f;
  }
  const V vsigma2 = hn::Load(df, lane_sigma2);
  V sumw = hn::Zero(df);
  for (int i = 0; i < group; ++i) {
    const V xi = hn::Load(df, xt + i * N);
    const V w = hn::Mul(hn::Load(df, wt + i * N), hn::Sqrt(hn::Add(vsigma2, hn::Mul(xi, xi))));
    hn::Store(w, df, wt + i * N);
    sumw = hn::Add(sumw, w);
  }
  return sumw;
}

// The inverse for quantized levels: lt holds int32 levels, L receives bytes in group order.
template <class DF>
HWY_INLINE void KTransposeLevelsOut(DF df, const int32_t* HWY_RESTRICT lt, size_t count, int group,
                                    uint8_t* HWY_RESTRICT L) {
  const size_t N = hn::Lanes(df);
  for (size_t lane = 0; lane < count; ++lane) {
    uint8_t* HWY_RESTRICT out = L + lane * static_cast<size_t>(group);
    for (int i = 0; i < group; ++i) out[i] = static_cast<uint8_t>(lt[i * N + lane]);
  }
}

// Copies the levels of group g out of chunk-wide transposed storage, where the groups
// [v * N, v * N + N) of a chunk occupy lt[v * group * N ...] as KTransposeIn lays them out.
// The searches' levels only survive for groups whose final scale is zero, so the quantizers
// fetch them here on demand instead of transposing every group back.
template <class DF>
HWY_INLINE void KLevelsOfGroup(DF df, const int32_t* HWY_RESTRICT lt, int group, size_t g,
                               uint8_t* HWY_RESTRICT out) {
  const size_t N = hn::Lanes(df);
  const int32_t* HWY_RESTRICT base = lt + (g / N) * N * static_cast<size_t>(group);
  const size_t lane = g % N;
  for (int i = 0; i < group; ++i) out[i] = static_cast<uint8_t>(base[i * N + lane]);
}

// Stores int32 levels (already in 0..255) as bytes.
template <class DI>
HWY_INLINE void KStoreLevels(DI /*di*/, hn::Vec<DI> v, uint8_t* HWY_RESTRICT p) {
  const hn::Rebind<uint8_t, DI> d8;
  hn::StoreU(hn::DemoteTo(d8, v), d8, p);
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Highway 1.0.3 demotes 16 int32 to bytes with two packs, a mask and a permute; AVX-512 has one
// truncating move, which is the same for levels in 0..255 (q3_K 4%, q6_K 2% faster on Zen 4).
HWY_INLINE void KStoreLevels(hn::Full512<int32_t> /*di*/, hn::Vec512<int32_t> v,
                             uint8_t* HWY_RESTRICT p) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v.raw));
}
#endif

// Loads Lanes(di) bytes widened to int32.
template <class DI>
HWY_INLINE hn::Vec<DI> KLoadBytes(DI di, const uint8_t* HWY_RESTRICT p) {
  const hn::Rebind<uint8_t, DI> d8;
  return hn::PromoteTo(di, hn::LoadU(d8, p));
}

// The start of make_qkx2/qkx3_quants for one vector of groups (xv, wv transposed): the group
// statistics, and the fit and error of the scale from the data's own range. Results go through
// pointers because scalable targets' sizeless vectors cannot be struct members.
template <int kGroup, bool kUseMad, bool kStrictEqual, class DF>
HWY_INLINE void KQkxInitialFit(DF df, const float* HWY_RESTRICT xv, const float* HWY_RESTRICT wv,
                               int nmax, hn::Vec<DF>* min, hn::Vec<DF>* max, hn::Vec<DF>* sum_w,
                               hn::Vec<DF>* sum_x, hn::Vec<DF>* data_min, hn::Mask<DF>* has_nan,
                               hn::Mask<DF>* degenerate, hn::Vec<DF>* scale, hn::Vec<DF>* iscale,
                               hn::Vec<DF>* error) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  V lo = hn::Load(df, xv);
  V hi = lo;
  V sw = hn::Load(df, wv);
  V sx = hn::Mul(sw, lo);
  // NaN payloads reach nearest_int's integer result, which the float path below cannot mimic.
  auto nan = hn::IsNaN(lo);
  for (int i = 1; i < kGroup; ++i) {
    const V x = hn::Load(df, xv + i * N);
    nan = hn::Or(nan, hn::IsNaN(x));
    lo = hn::IfThenElse(hn::Lt(x, lo), x, lo);
    hi = hn::IfThenElse(hn::Gt(x, hi), x, hi);
    const V w = hn::Load(df, wv + i * N);
    sw = hn::Add(sw, w);
    sx = hn::Add(sx, hn::Mul(w, x));
  }
  const V zero = hn::Zero(df);
  const V m = hn::IfThenElse(hn::Gt(lo, zero), zero, lo);
  const V is = hn::Div(hn::Set(df, static_cast<float>(nmax)), hn::Sub(hi, m));
  const V sc = hn::Div(hn::Set(df, 1.0f), is);
  V err = zero;
  for (int i = 0; i < kGroup; ++i) {
    const V x = hn::Load(df, xv + i * N);
    const V w = hn::Load(df, wv + i * N);
    const auto l = KClamp(di, NearestInt(df, hn::Mul(is, hn::Sub(x, m))), 0, nmax);
    V diff = hn::Sub(hn::Add(hn::Mul(sc, hn::ConvertTo(df, l)), m), x);
    diff = kUseMad ? hn::Abs(diff) : hn::Mul(diff, diff);
    err = hn::Add(err, hn::Mul(w, diff));
  }
  *min = m;
  *max = hi;
  *sum_w = sw;
  *sum_x = sx;
  *data_min = lo;
  *has_nan = nan;
  *degenerate = kStrictEqual ? hn::Eq(hi, m) : hn::Le(hi, m);
  *scale = sc;
  *iscale = is;
  *error = err;
}

// The end of make_qkx2/qkx3_quants for one vector of groups: the winner's levels (zero in
// degenerate lanes, which return early in ggml) to lv, its scale to scale_out and -min to min_out.
template <int kGroup, class DF>
HWY_INLINE void KQkxStoreResult(DF df, const float* HWY_RESTRICT xv, int nmax,
                                hn::Vec<DF> best_iscale, hn::Vec<DF> best_level_min,
                                hn::Mask<DF> degenerate, hn::Vec<DF> scale, hn::Vec<DF> min,
                                int32_t* HWY_RESTRICT lv, float* HWY_RESTRICT scale_out,
                                float* HWY_RESTRICT min_out) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const auto drop = hn::RebindMask(di, degenerate);
  for (int i = 0; i < kGroup; ++i) {
    const V x = hn::Load(df, xv + i * N);
    const auto l =
        KClamp(di, NearestInt(df, hn::Mul(best_iscale, hn::Sub(x, best_level_min))), 0, nmax);
    hn::Store(hn::IfThenZeroElse(drop, l), di, lv + i * N);
  }
  hn::Store(hn::IfThenElse(degenerate, hn::Zero(df), scale), df, scale_out);
  hn::Store(hn::Neg(min), df, min_out);
}

#if HWY_HAVE_SCALABLE
// Scalable targets (SVE, RVV): their vectors are sizeless and cannot form arrays, so they
// search one vector at a time, with the single-vector form of the search below.
template <int kGroup, bool kUseMad, bool kStrictEqual, int kVectors, class DF>
HWY_INLINE void KMakeQkxQuants(DF df, const float* HWY_RESTRICT xt, const float* HWY_RESTRICT wt,
                               int nmax, float rmin, float rdelta, int nstep,
                               float* HWY_RESTRICT scale_out, float* HWY_RESTRICT min_out,
                               int32_t* HWY_RESTRICT lt) {
  static_assert(kVectors == 1, "sizeless vectors cannot form the arrays two vectors need");
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  HWY_ALIGN float laux[kGroup * kMaxGroupLanes];

  V min, max, sum_w, sum_x, data_min, scale, iscale, best_error;
  hn::Mask<DF> has_nan, degenerate;
  KQkxInitialFit<kGroup, kUseMad, kStrictEqual>(df, xt, wt, nmax, &min, &max, &sum_w, &sum_x,
                                                &data_min, &has_nan, &degenerate, &scale, &iscale,
                                                &best_error);
  const V zero = hn::Zero(df);
  // Degenerate lanes return early in ggml; they must not pick up search results here.
  const auto live = hn::Not(degenerate);
  // The winning levels are recomputed at the end from the winner's iscale and min.
  V best_iscale = iscale;
  V best_level_min = min;

  for (int is = 0; is <= nstep; ++is) {
    const float numerator = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
    iscale = hn::Div(hn::Set(df, numerator), hn::Sub(max, min));
    // Every x - min lies between data_min - min and max - min (rounding is monotonic), so this
    // bounds |iscale * (x - min)|. Below 2^21, rounding in float (ties to even) and clamping
    // equal nearest_int's wrapped integer result exactly; lanes past it (huge spans, Inf, NaN)
    // (and groups holding a NaN) take the integer path. Non-live lanes are discarded, so they do
    // not count. A -0.0 from rounding a tiny negative product only ever meets sums that start at +0
    // and products that are squared or added to nonzero values, so it cannot change a result bit.
    const V span = hn::Max(hn::Abs(hn::Sub(max, min)), hn::Abs(hn::Sub(data_min, min)));
    const auto in_range =
        hn::AndNot(has_nan, hn::Lt(hn::Mul(hn::Abs(iscale), span), hn::Set(df, 2097152.0f)));
    V sum_l = zero, sum_l2 = zero, sum_xl = zero;
    if (hn::AllFalse(df, hn::AndNot(in_range, live))) {
      const V vnmax = hn::Set(df, static_cast<float>(nmax));
      for (int i = 0; i < kGroup; ++i) {
        const V x = hn::Load(df, xt + i * N);
        const V w = hn::Load(df, wt + i * N);
        const V lf = hn::Min(hn::Max(hn::Round(hn::Mul(iscale, hn::Sub(x, min))), zero), vnmax);
        hn::Store(lf, df, laux + i * N);
        const V wl = hn::Mul(w, lf);
        sum_l = hn::Add(sum_l, wl);
        sum_l2 = hn::Add(sum_l2, hn::Mul(wl, lf));
        sum_xl = hn::Add(sum_xl, hn::Mul(wl, x));
      }
    } else {
      for (int i = 0; i < kGroup; ++i) {
        const V x = hn::Load(df, xt + i * N);
        const V w = hn::Load(df, wt + i * N);
        const auto l = KClamp(di, NearestInt(df, hn::Mul(iscale, hn::Sub(x, min))), 0, nmax);
        const V lf = hn::ConvertTo(df, l);
        hn::Store(lf, df, laux + i * N);
        const V wl = hn::Mul(w, lf);
        sum_l = hn::Add(sum_l, wl);
        sum_l2 = hn::Add(sum_l2, hn::Mul(wl, lf));
        sum_xl = hn::Add(sum_xl, hn::Mul(wl, x));
      }
    }
    const V D = hn::Sub(hn::Mul(sum_w, sum_l2), hn::Mul(sum_l, sum_l));
    const auto positive = hn::And(live, hn::Gt(D, zero));
    if (hn::AllFalse(df, positive)) continue;
    V this_scale = hn::Div(hn::Sub(hn::Mul(sum_w, sum_xl), hn::Mul(sum_x, sum_l)), D);
    V this_min = hn::Div(hn::Sub(hn::Mul(sum_l2, sum_x), hn::Mul(sum_l, sum_xl)), D);
    const auto min_positive = hn::Gt(this_min, zero);
    this_min = hn::IfThenElse(min_positive, zero, this_min);
    this_scale = hn::IfThenElse(min_positive, hn::Div(sum_xl, sum_l2), this_scale);
    V cur_error = zero;
    for (int i = 0; i < kGroup; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const V w = hn::Load(df, wt + i * N);
      V diff = hn::Sub(hn::Add(hn::Mul(this_scale, hn::Load(df, laux + i * N)), this_min), x);
      diff = kUseMad ? hn::Abs(diff) : hn::Mul(diff, diff);
      cur_error = hn::Add(cur_error, hn::Mul(w, diff));
    }
    const auto better = hn::And(positive, hn::Lt(cur_error, best_error));
    best_error = hn::IfThenElse(better, cur_error, best_error);
    scale = hn::IfThenElse(better, this_scale, scale);
    best_iscale = hn::IfThenElse(better, iscale, best_iscale);
    best_level_min = hn::IfThenElse(better, min, best_level_min);
    min = hn::IfThenElse(better, this_min, min);
  }

  KQkxStoreResult<kGroup>(df, xt, nmax, best_iscale, best_level_min, degenerate, scale, min, lt,
                          scale_out, min_out);
}

#else
// make_qkx2_quants (kStrictEqual: max == min means an all-equal group) and make_qkx3_quants
// (max <= min), n = kGroup, with weights, for kVectors * Lanes(df) groups. xt/wt are
// transposed inputs, vector v's at xt + v * kGroup * N; stores the scale per lane at
// scale_out + v * N and -min at min_out + v * N, and the levels in lt (transposed int32, laid out
// as xt).
// Note that ggml updates `min` inside the search, so later candidate scales depend on earlier
// winners; every lane tracks its own. Each lane's sums are one dependent chain of adds, and
// the search alternates two of them with divisions between, so a single vector leaves the
// FP pipes idle for much of each step; the kVectors independent vectors fill them.
template <int kGroup, bool kUseMad, bool kStrictEqual, int kVectors, class DF>
HWY_INLINE void KMakeQkxQuants(DF df, const float* HWY_RESTRICT xt, const float* HWY_RESTRICT wt,
                               int nmax, float rmin, float rdelta, int nstep,
                               float* HWY_RESTRICT scale_out, float* HWY_RESTRICT min_out,
                               int32_t* HWY_RESTRICT lt) {
  using V = hn::Vec<DF>;
  using M = hn::Mask<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const size_t stride = kGroup * N;
  HWY_ALIGN float laux[kVectors * kGroup * kMaxGroupLanes];
  const V zero = hn::Zero(df);

  V min[kVectors], max[kVectors], sum_w[kVectors], sum_x[kVectors], data_min[kVectors];
  M has_nan[kVectors], live[kVectors], degenerate[kVectors];
  V scale[kVectors], best_error[kVectors], best_iscale[kVectors], best_level_min[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    const float* HWY_RESTRICT xv = xt + v * stride;
    const float* HWY_RESTRICT wv = wt + v * stride;
    V iscale;
    KQkxInitialFit<kGroup, kUseMad, kStrictEqual>(
        df, xv, wv, nmax, &min[v], &max[v], &sum_w[v], &sum_x[v], &data_min[v], &has_nan[v],
        &degenerate[v], &scale[v], &iscale, &best_error[v]);
    // Degenerate lanes return early in ggml; they must not pick up search results here.
    live[v] = hn::Not(degenerate[v]);
    // The winning levels are recomputed at the end from the winner's iscale and min.
    best_iscale[v] = iscale;
    best_level_min[v] = min[v];
  }

  const V vnmax = hn::Set(df, static_cast<float>(nmax));
  for (int is = 0; is <= nstep; ++is) {
    const float numerator = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
    V iscale[kVectors];
    bool all_in_range = true;
    for (int v = 0; v < kVectors; ++v) {
      iscale[v] = hn::Div(hn::Set(df, numerator), hn::Sub(max[v], min[v]));
      // Every x - min lies between data_min - min and max - min (rounding is monotonic), so
      // this bounds |iscale * (x - min)|. Below 2^21, rounding in float (ties to even) and
      // clamping equal nearest_int's wrapped integer result exactly; lanes past it (huge spans,
      // Inf, NaN) (and groups holding a NaN) take the integer path. Non-live lanes are
      // discarded, so they do not count. A -0.0 from rounding a tiny negative product only ever
      // meets sums that start at +0 and products that are squared or added to nonzero values,
      // so it cannot change a result bit.
      const V span =
          hn::Max(hn::Abs(hn::Sub(max[v], min[v])), hn::Abs(hn::Sub(data_min[v], min[v])));
      const auto in_range = hn::AndNot(
          has_nan[v], hn::Lt(hn::Mul(hn::Abs(iscale[v]), span), hn::Set(df, 2097152.0f)));
      all_in_range = all_in_range && hn::AllFalse(df, hn::AndNot(in_range, live[v]));
    }
    V sum_l[kVectors], sum_l2[kVectors], sum_xl[kVectors];
    for (int v = 0; v < kVectors; ++v) sum_l[v] = sum_l2[v] = sum_xl[v] = zero;
    if (all_in_range) {
      for (int i = 0; i < kGroup; ++i) {
        for (int v = 0; v < kVectors; ++v) {
          const V x = hn::Load(df, xt + v * stride + i * N);
          const V w = hn::Load(df, wt + v * stride + i * N);
          const V lf =
              hn::Min(hn::Max(hn::Round(hn::Mul(iscale[v], hn::Sub(x, min[v]))), zero), vnmax);
          hn::Store(lf, df, laux + v * stride + i * N);
          const V wl = hn::Mul(w, lf);
          sum_l[v] = hn::Add(sum_l[v], wl);
          sum_l2[v] = hn::Add(sum_l2[v], hn::Mul(wl, lf));
          sum_xl[v] = hn::Add(sum_xl[v], hn::Mul(wl, x));
        }
      }
    } else {
      for (int i = 0; i < kGroup; ++i) {
        for (int v = 0; v < kVectors; ++v) {
          const V x = hn::Load(df, xt + v * stride + i * N);
          const V w = hn::Load(df, wt + v * stride + i * N);
          const auto l =
              KClamp(di, NearestInt(df, hn::Mul(iscale[v], hn::Sub(x, min[v]))), 0, nmax);
          const V lf = hn::ConvertTo(df, l);
          hn::Store(lf, df, laux + v * stride + i * N);
          const V wl = hn::Mul(w, lf);
          sum_l[v] = hn::Add(sum_l[v], wl);
          sum_l2[v] = hn::Add(sum_l2[v], hn::Mul(wl, lf));
          sum_xl[v] = hn::Add(sum_xl[v], hn::Mul(wl, x));
        }
      }
    }
    M positive[kVectors];
    V D[kVectors];
    bool any_positive = false;
    for (int v = 0; v < kVectors; ++v) {
      D[v] = hn::Sub(hn::Mul(sum_w[v], sum_l2[v]), hn::Mul(sum_l[v], sum_l[v]));
      positive[v] = hn::And(live[v], hn::Gt(D[v], zero));
      any_positive = any_positive || !hn::AllFalse(df, positive[v]);
    }
    if (!any_positive) continue;
    V this_scale[kVectors], this_min[kVectors], cur_error[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      this_scale[v] =
          hn::Div(hn::Sub(hn::Mul(sum_w[v], sum_xl[v]), hn::Mul(sum_x[v], sum_l[v])), D[v]);
      this_min[v] =
          hn::Div(hn::Sub(hn::Mul(sum_l2[v], sum_x[v]), hn::Mul(sum_l[v], sum_xl[v])), D[v]);
      const auto min_positive = hn::Gt(this_min[v], zero);
      this_min[v] = hn::IfThenElse(min_positive, zero, this_min[v]);
      this_scale[v] = hn::IfThenElse(min_positive, hn::Div(sum_xl[v], sum_l2[v]), this_scale[v]);
      cur_error[v] = zero;
    }
    for (int i = 0; i < kGroup; ++i) {
      for (int v = 0; v < kVectors; ++v) {
        const V x = hn::Load(df, xt + v * stride + i * N);
        const V w = hn::Load(df, wt + v * stride + i * N);
        const V l = hn::Load(df, laux + v * stride + i * N);
        V diff = hn::Sub(hn::Add(hn::Mul(this_scale[v], l), this_min[v]), x);
        diff = kUseMad ? hn::Abs(diff) : hn::Mul(diff, diff);
        cur_error[v] = hn::Add(cur_error[v], hn::Mul(w, diff));
      }
    }
    for (int v = 0; v < kVectors; ++v) {
      const auto better = hn::And(positive[v], hn::Lt(cur_error[v], best_error[v]));
      best_error[v] = hn::IfThenElse(better, cur_error[v], best_error[v]);
      scale[v] = hn::IfThenElse(better, this_scale[v], scale[v]);
      best_iscale[v] = hn::IfThenElse(better, iscale[v], best_iscale[v]);
      best_level_min[v] = hn::IfThenElse(better, min[v], best_level_min[v]);
      min[v] = hn::IfThenElse(better, this_min[v], min[v]);
    }
  }

  for (int v = 0; v < kVectors; ++v) {
    KQkxStoreResult<kGroup>(df, xt + v * stride, nmax, best_iscale[v], best_level_min[v],
                            degenerate[v], scale[v], min[v], lt + v * stride, scale_out + v * N,
                            min_out + v * N);
  }
}
#endif  // HWY_HAVE_SCALABLE

// KMakeQkxQuants for `vectors` (1 to kKMaxSearchVectors) vectors of groups, laid out as there.
template <int kGroup, bool kUseMad, bool kStrictEqual, class DF>
HWY_INLINE void KMakeQkxQuantsOf(DF df, int vectors, const float* HWY_RESTRICT xt,
                                 const float* HWY_RESTRICT wt, int nmax, float rmin, float rdelta,
                                 int nstep, float* HWY_RESTRICT scale_out,
                                 float* HWY_RESTRICT min_out, int32_t* HWY_RESTRICT lt) {
#if !HWY_HAVE_SCALABLE
  if (vectors == 2) {
    KMakeQkxQuants<kGroup, kUseMad, kStrictEqual, 2>(df, xt, wt, nmax, rmin, rdelta, nstep,
                                                     scale_out, min_out, lt);
    return;
  }
#endif
  (void)vectors;
  KMakeQkxQuants<kGroup, kUseMad, kStrictEqual, 1>(df, xt, wt, nmax, rmin, rdelta, nstep, scale_out,
                                                   min_out, lt);
}

// ggml's scale-and-min search for every group of kGroup values in a chunk of nsb super-blocks at
// x, kKMaxSearchVectors vectors of groups at a time. Without an imatrix it is make_qkx2_quants
// with (nmax, rmin, rdelta, nstep) and kUseMad, its weights written by unweighted(xt, wt) for one
// vector's transposed values; with one (the chunk's slice, and each super-block's sigma2) it is
// make_qkx3_quants with ggml's literals. Writes each group's scale, -min and (with an imatrix)
// weight sum, and the levels to lt_chunk as KTransposeIn lays them out.
template <int kGroup, bool kUseMad, class DF, class Unweighted>
HWY_INLINE void KSearchScaleMinGroups(DF df, const float* HWY_RESTRICT x, size_t nsb,
                                      const float* HWY_RESTRICT imatrix,
                                      const float* HWY_RESTRICT sigma2, int nmax, float rmin,
                                      float rdelta, int nstep, const Unweighted& unweighted,
                                      float* HWY_RESTRICT scales, float* HWY_RESTRICT mins,
                                      float* HWY_RESTRICT sw, int32_t* HWY_RESTRICT lt_chunk) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  const size_t search_vectors = HWY_HAVE_SCALABLE ? 1 : kKMaxSearchVectors;
  HWY_ALIGN float xt[kKMaxSearchVectors * kGroup * kMaxGroupLanes];
  HWY_ALIGN float wt[kKMaxSearchVectors * kGroup * kMaxGroupLanes];
  HWY_ALIGN float lane_scale[kKMaxSearchVectors * kMaxGroupLanes];
  HWY_ALIGN float lane_min[kKMaxSearchVectors * kMaxGroupLanes];
  HWY_ALIGN float lane_sw[kKMaxSearchVectors * kMaxGroupLanes];
  const size_t groups = nsb * static_cast<size_t>(kSuperBlock / kGroup);
  for (size_t g0 = 0; g0 < groups; g0 += search_vectors * N) {
    const size_t cnt = std::min(search_vectors * N, groups - g0);
    const int vectors = static_cast<int>((cnt + N - 1) / N);
    int32_t* HWY_RESTRICT lt = lt_chunk + g0 * kGroup;
    for (int v = 0; v < vectors; ++v) {
      const size_t vg0 = g0 + v * N;
      const size_t vcnt = std::min(N, groups - vg0);
      float* HWY_RESTRICT xv = xt + v * kGroup * N;
      float* HWY_RESTRICT wv = wt + v * kGroup * N;
      KTransposeIn(df, x + vg0 * kGroup, vcnt, kGroup, xv);
      if (imatrix == nullptr) {
        unweighted(xv, wv);
      } else {
        const V sumw = KImatrixWeights(df, kGroup, imatrix, sigma2, vg0, vcnt, xv, wv);
        hn::Store(sumw, df, lane_sw + v * N);
      }
    }
    if (imatrix == nullptr) {
      KMakeQkxQuantsOf<kGroup, kUseMad, true>(df, vectors, xt, wt, nmax, rmin, rdelta, nstep,
                                              lane_scale, lane_min, lt);
    } else {
      KMakeQkxQuantsOf<kGroup, false, false>(df, vectors, xt, wt, nmax, -0.9f, 0.05f, 36,
                                             lane_scale, lane_min, lt);
    }
    for (size_t lane = 0; lane < cnt; ++lane) {
      scales[g0 + lane] = lane_scale[lane];
      mins[g0 + lane] = lane_min[lane];
      sw[g0 + lane] = imatrix ? lane_sw[lane] : 0.0f;
    }
  }
}

// make_qx_quants with rmse_type 1 and explicit weights (x*x when ggml passes no weights; the
// caller computes them), n = kGroup, for Lanes(df) groups. Levels (l + nmax) go to lt.
template <int kGroup, class DF>
HWY_INLINE hn::Vec<DF> KMakeQxQuants(DF df, int nmax, const float* HWY_RESTRICT xt,
                                     const float* HWY_RESTRICT wt, int32_t* HWY_RESTRICT lt) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const V zero = hn::Zero(df);
  // ggml's w*x[i]*l multiplies w*x first; that product does not depend on the scale tried.
  HWY_ALIGN float wxt[kGroup * kMaxGroupLanes];

  V max, amax;
  FirstLargestPerLane<0, kGroup>(df, xt, &amax, &max);
  auto non_finite = hn::Not(hn::IsFinite(zero));  // all false
  for (int i = 0; i < kGroup; ++i) {
    const V x = hn::Load(df, xt + i * N);
    non_finite = hn::Or(non_finite, hn::Not(hn::IsFinite(x)));
    hn::Store(hn::Mul(hn::Load(df, wt + i * N), x), df, wxt + i * N);
  }
  const auto all_zero = hn::Lt(amax, hn::Set(df, kGroupMaxEps));
  // In a kept lane of finite weights, |x| <= |max| bounds |iscale * x| by about nmax + 1, where
  // rounding in float (ties to even) and clamping give nearest_int's level exactly, as a float.
  // Its only difference, -0.0 for a tiny negative product, is added to sums that start at +0
  // or multiplied into such terms, so no sum changes. Lanes with NaN or Inf (which reach
  // nearest_int's integer bits) take the integer path; all-zero lanes are discarded anyway.
  const bool float_levels = hn::AllFalse(df, hn::AndNot(all_zero, non_finite));
  const V lowest = hn::Set(df, static_cast<float>(-nmax));
  const V highest = hn::Set(df, static_cast<float>(nmax - 1));
  const auto live = hn::Not(all_zero);
  const auto sums = [&](V iscale, V* sumlx, V* suml2) {
    const auto accumulate = [&](auto level) {
      V lx = zero, l2 = zero;
      for (int i = 0; i < kGroup; ++i) {
        const V l = level(hn::Load(df, xt + i * N));
        lx = hn::Add(lx, hn::Mul(hn::Load(df, wxt + i * N), l));
        l2 = hn::Add(l2, hn::Mul(hn::Mul(hn::Load(df, wt + i * N), l), l));
      }
      *sumlx = lx;
      *suml2 = l2;
    };
    if (float_levels) {
      // Most scales tried cannot reach one bound or either, and skipping a clamp that binds in
      // no live lane made q6_K about 4% faster (README): |iscale * x| is at most top = |iscale *
      // max| (monotonic rounding, |x| <= |max|), so below nmax - 0.5 no level passes nmax - 1 and
      // below nmax + 0.5 none passes -nmax. All-zero lanes are discarded.
      const V top = hn::Abs(hn::Mul(iscale, max));
      const auto binds = [&](float bound) {
        return !hn::AllFalse(df, hn::AndNot(hn::Lt(top, hn::Set(df, bound)), live));
      };
      const auto rounded = [&](auto low, auto high) {
        return [&, low, high](V x) {
          V l = hn::Round(hn::Mul(iscale, x));
          if (decltype(low)::value) l = hn::Max(l, lowest);
          if (decltype(high)::value) l = hn::Min(l, highest);
          return l;
        };
      };
      using Yes = std::true_type;
      using No = std::false_type;
      const float n = static_cast<float>(nmax);
      if (!binds(n + 0.5f)) {
        binds(n - 0.5f) ? accumulate(rounded(No(), Yes())) : accumulate(rounded(No(), No()));
      } else {
        accumulate(rounded(Yes(), Yes()));
      }
    } else {
      accumulate([&](V x) {
        return hn::ConvertTo(df, KClamp(di, NearestInt(df, hn::Mul(iscale, x)), -nmax, nmax - 1));
      });
    }
  };

  V iscale = hn::Div(hn::Set(df, static_cast<float>(-nmax)), max);
  V sumlx, suml2;
  sums(iscale, &sumlx, &suml2);
  // C's `suml2 ? ... : 0` is true for NaN; Highway's Ne is an ordered compare, so use !Eq.
  V scale = hn::IfThenZeroElse(hn::Eq(suml2, zero), hn::Div(sumlx, suml2));
  V best = hn::Mul(scale, sumlx);
  V best_iscale = iscale;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float numerator = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is));
    iscale = hn::Div(hn::Set(df, numerator), max);
    sums(iscale, &sumlx, &suml2);
    const auto better =
        hn::And(hn::Gt(suml2, zero), hn::Gt(hn::Mul(sumlx, sumlx), hn::Mul(best, suml2)));
    // No early exit when no lane improves: that branch mispredicts more than the division
    // it saves costs.
    const V new_scale = hn::Div(sumlx, suml2);
    scale = hn::IfThenElse(better, new_scale, scale);
    best = hn::IfThenElse(better, hn::Mul(new_scale, sumlx), best);
    best_iscale = hn::IfThenElse(better, iscale, best_iscale);
  }
  const auto keep = hn::RebindMask(di, hn::Not(all_zero));
  for (int i = 0; i < kGroup; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const auto l = hn::Add(KClamp(di, NearestInt(df, hn::Mul(best_iscale, x)), -nmax, nmax - 1),
                           hn::Set(di, nmax));
    hn::Store(hn::IfThenElseZero(keep, l), di, lt + i * N);
  }
  return hn::IfThenElse(all_zero, zero, scale);
}

// Working storage of make_q3_quants for one vector of groups (transposed, as xt).
struct KQ3Scratch {
  HWY_ALIGN float lf[16 * kMaxGroupLanes];   // levels as floats
  HWY_ALIGN float wt[16 * kMaxGroupLanes];   // x*x, ggml's weight
  HWY_ALIGN float wxt[16 * kMaxGroupLanes];  // (x*x)*x, as w*x[i] rounds it
  HWY_ALIGN float sumlx[kMaxGroupLanes];     // running sums, where another step takes them over
  HWY_ALIGN float suml2[kMaxGroupLanes];
};

// make_q3_quants' first levels and running sums for one vector of 16-value groups.
template <class DF>
HWY_INLINE void KQ3Start(DF df, int nmax, const float* HWY_RESTRICT xt, KQ3Scratch* s,
                         hn::Vec<DF>* sumlx_out, hn::Vec<DF>* suml2_out, hn::Mask<DF>* all_zero) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const V zero = hn::Zero(df);
  V max, amax;
  FirstLargestPerLane<0, 16>(df, xt, &amax, &max);
  *all_zero = hn::Lt(amax, hn::Set(df, kGroupMaxEps));
  const V iscale = hn::Div(hn::Set(df, static_cast<float>(-nmax)), max);
  V sumlx = zero, suml2 = zero;
  for (int i = 0; i < 16; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const V l = hn::ConvertTo(df, KClamp(di, NearestInt(df, hn::Mul(iscale, x)), -nmax, nmax - 1));
    hn::Store(l, df, s->lf + i * N);
    const V w = hn::Mul(x, x);
    const V wx = hn::Mul(w, x);
    hn::Store(w, df, s->wt + i * N);
    hn::Store(wx, df, s->wxt + i * N);
    sumlx = hn::Add(sumlx, hn::Mul(wx, l));
    suml2 = hn::Add(suml2, hn::Mul(hn::Mul(w, l), l));
  }
  *sumlx_out = sumlx;
  *suml2_out = suml2;
}

// One element of a make_q3_quants refinement pass: level i of each active lane moves where
// ggml's branch would move it. kSkipIdle returns early when no lane has a candidate, which pays
// where candidates are sparse; without it the steps of independent vectors can overlap.
template <bool kSkipIdle, class DF>
HWY_INLINE void KQ3Step(DF df, int nmax, const float* HWY_RESTRICT xt, KQ3Scratch* s, int i,
                        hn::Mask<DF> active, hn::Vec<DF>* sumlx_io, hn::Vec<DF>* suml2_io,
                        hn::Mask<DF>* changed) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const V zero = hn::Zero(df);
  const V sumlx = *sumlx_io;
  const V suml2 = *suml2_io;
  const V x = hn::Load(df, xt + i * N);
  const V L = hn::Load(df, s->lf + i * N);
  const V w = hn::Load(df, s->wt + i * N);
  const V wx = hn::Load(df, s->wxt + i * N);
  V slx = hn::Sub(sumlx, hn::Mul(wx, L));
  const auto slx_positive = hn::Gt(slx, zero);
  V sl2 = hn::Sub(suml2, hn::Mul(hn::Mul(w, L), L));
  const V new_l =
      hn::ConvertTo(df, KClamp(di, NearestInt(df, hn::Div(hn::Mul(x, sl2), slx)), -nmax, nmax - 1));
  const auto candidate = hn::And(hn::And(active, slx_positive), hn::Ne(new_l, L));
  if (kSkipIdle && hn::AllFalse(df, candidate)) return;
  slx = hn::Add(slx, hn::Mul(wx, new_l));
  sl2 = hn::Add(sl2, hn::Mul(hn::Mul(w, new_l), new_l));
  const auto improves = hn::And(hn::Gt(sl2, zero), hn::Gt(hn::Mul(hn::Mul(slx, slx), suml2),
                                                          hn::Mul(hn::Mul(sumlx, sumlx), sl2)));
  const auto take = hn::And(candidate, improves);
  hn::Store(hn::IfThenElse(take, new_l, L), df, s->lf + i * N);
  *sumlx_io = hn::IfThenElse(take, slx, sumlx);
  *suml2_io = hn::IfThenElse(take, sl2, suml2);
  *changed = hn::Or(*changed, take);
}

// Refinement passes first_pass..4 of make_q3_quants for one vector; a lane that had a pass
// without change stops, as ggml breaks.
template <class DF>
HWY_INLINE void KQ3Refine(DF df, int nmax, const float* HWY_RESTRICT xt, KQ3Scratch* s,
                          int first_pass, hn::Mask<DF> active, hn::Vec<DF>* sumlx,
                          hn::Vec<DF>* suml2) {
  for (int itry = first_pass; itry < 5 && !hn::AllFalse(df, active); ++itry) {
    auto changed = hn::FirstN(df, 0);
    // Converged elements are the common case: most steps find no lane that can change.
    for (int i = 0; i < 16; ++i) KQ3Step<true>(df, nmax, xt, s, i, active, sumlx, suml2, &changed);
    active = hn::And(active, changed);
  }
}

// The levels (biased by nmax, zero for all-zero groups) to lt and the scale.
template <class DF>
HWY_INLINE hn::Vec<DF> KQ3Finish(DF df, int nmax, const KQ3Scratch* s, hn::Mask<DF> all_zero,
                                 hn::Vec<DF> sumlx, hn::Vec<DF> suml2, int32_t* HWY_RESTRICT lt) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const V zero = hn::Zero(df);
  const auto keep = hn::RebindMask(di, hn::Not(all_zero));
  for (int i = 0; i < 16; ++i) {
    const auto l = hn::Add(hn::ConvertTo(di, hn::Load(df, s->lf + i * N)), hn::Set(di, nmax));
    hn::Store(hn::IfThenElseZero(keep, l), di, lt + i * N);
  }
  const V result = hn::IfThenElseZero(hn::Gt(suml2, zero), hn::Div(sumlx, suml2));
  return hn::IfThenElse(all_zero, zero, result);
}

// make_q3_quants with do_rmse (weights x*x), n = 16, for Lanes(df) groups. The refinement
// visits elements in order and updates each lane's running sums only where ggml's branch would
// have, for up to five passes; a lane that had a pass without change stops as ggml breaks.
template <class DF>
HWY_INLINE hn::Vec<DF> KMakeQ3Quants(DF df, int nmax, const float* HWY_RESTRICT xt,
                                     int32_t* HWY_RESTRICT lt) {
  KQ3Scratch s;
  hn::Vec<DF> sumlx, suml2;
  hn::Mask<DF> all_zero;
  KQ3Start(df, nmax, xt, &s, &sumlx, &suml2, &all_zero);
  KQ3Refine(df, nmax, xt, &s, 0, hn::Not(all_zero), &sumlx, &suml2);
  return KQ3Finish(df, nmax, &s, all_zero, sumlx, suml2, lt);
}

// Groups of up to four vectors that still refine after their first pass, packed into the lanes
// of one vector so that the later passes run once instead of four times.
struct KQ3Packed {
  HWY_ALIGN float xt[16 * kMaxGroupLanes];
  KQ3Scratch s;
  // Per source vector: the source lane of each packed lane (from) and the packed lane of each
  // source lane (to); only the source's active lanes are meaningful.
  HWY_ALIGN int32_t from[4 * kMaxGroupLanes];
  HWY_ALIGN int32_t to[4 * kMaxGroupLanes];
};

// Assigns the active lanes of source vector v the next packed lanes, from *count on.
template <class DF>
HWY_INLINE void KQ3MapLanes(DF df, hn::Mask<DF> active, size_t v, KQ3Packed* p, size_t* count) {
  const size_t N = hn::Lanes(df);
  uint8_t bits[(kMaxGroupLanes + 7) / 8] = {};
  hn::StoreMaskBits(df, active, bits);
  int32_t* HWY_RESTRICT from = p->from + v * N;
  int32_t* HWY_RESTRICT to = p->to + v * N;
  for (size_t j = 0; j < N; ++j) {
    from[j] = 0;
    to[j] = 0;
  }
  for (size_t j = 0; j < N; ++j) {
    if ((bits[j / 8] >> (j % 8)) & 1) {
      from[*count] = static_cast<int32_t>(j);
      to[j] = static_cast<int32_t>((*count)++);
    }
  }
}

// Lane k of the result is lane from_v[k] of source v, where packed lanes [0, end0) come from
// v0, [end0, end1) from v1, [end1, end2) from v2 and the rest from v3.
template <class V, class I, class M>
HWY_INLINE V KQ3Gather4(V v0, V v1, V v2, V v3, I from0, I from1, I from2, I from3, M end0, M end1,
                        M end2) {
  auto packed = hn::TableLookupLanes(v3, from3);
  packed = hn::IfThenElse(end2, hn::TableLookupLanes(v2, from2), packed);
  packed = hn::IfThenElse(end1, hn::TableLookupLanes(v1, from1), packed);
  return hn::IfThenElse(end0, hn::TableLookupLanes(v0, from0), packed);
}

// Copies the refined levels and running sums of source vector v's active lanes back from p.
template <class DF>
HWY_INLINE void KQ3Unpack(DF df, const KQ3Packed& p, hn::Mask<DF> active, size_t v, KQ3Scratch* s) {
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  if (hn::AllFalse(df, active)) return;
  const auto to = hn::IndicesFromVec(df, hn::Load(di, p.to + v * N));
  for (int i = 0; i < 16; ++i) {
    const size_t o = i * N;
    const auto packed = hn::TableLookupLanes(hn::Load(df, p.s.lf + o), to);
    hn::Store(hn::IfThenElse(active, packed, hn::Load(df, s->lf + o)), df, s->lf + o);
  }
  const auto sumlx = hn::TableLookupLanes(hn::Load(df, p.s.sumlx), to);
  hn::Store(hn::IfThenElse(active, sumlx, hn::Load(df, s->sumlx)), df, s->sumlx);
  const auto suml2 = hn::TableLookupLanes(hn::Load(df, p.s.suml2), to);
  hn::Store(hn::IfThenElse(active, suml2, hn::Load(df, s->suml2)), df, s->suml2);
}

// Refinement passes 1..4 of the active lanes of vectors first..last - 1 of four vectors of groups
// (state in s[v], values at xt + v * stride, active lanes all-ones in active + v * N), packed
// into the lanes of one vector.
template <class DF>
HWY_INLINE void KQ3RefinePacked(DF df, int nmax, const float* HWY_RESTRICT xt, size_t stride,
                                KQ3Scratch* s, const float* HWY_RESTRICT active, size_t first,
                                size_t last) {
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const auto in_range = [&](size_t v) {
    return hn::And(hn::MaskFromVec(hn::Load(df, active + v * N)),
                   hn::FirstN(df, v >= first && v < last ? N : 0));
  };
  const auto act0 = in_range(0), act1 = in_range(1), act2 = in_range(2), act3 = in_range(3);
  KQ3Packed p;
  size_t count = 0;
  KQ3MapLanes(df, act0, 0, &p, &count);
  const auto end0 = hn::FirstN(df, count);
  KQ3MapLanes(df, act1, 1, &p, &count);
  const auto end1 = hn::FirstN(df, count);
  KQ3MapLanes(df, act2, 2, &p, &count);
  const auto end2 = hn::FirstN(df, count);
  KQ3MapLanes(df, act3, 3, &p, &count);
  const auto from0 = hn::IndicesFromVec(df, hn::Load(di, p.from));
  const auto from1 = hn::IndicesFromVec(df, hn::Load(di, p.from + N));
  const auto from2 = hn::IndicesFromVec(df, hn::Load(di, p.from + 2 * N));
  const auto from3 = hn::IndicesFromVec(df, hn::Load(di, p.from + 3 * N));
  for (int i = 0; i < 16; ++i) {
    const size_t o = i * N;
    const auto x = KQ3Gather4(hn::Load(df, xt + o), hn::Load(df, xt + stride + o),
                              hn::Load(df, xt + 2 * stride + o), hn::Load(df, xt + 3 * stride + o),
                              from0, from1, from2, from3, end0, end1, end2);
    hn::Store(x, df, p.xt + o);
    // The same two products as KQ3Start, so the packed weights are the same floats.
    const auto w = hn::Mul(x, x);
    hn::Store(w, df, p.s.wt + o);
    hn::Store(hn::Mul(w, x), df, p.s.wxt + o);
    hn::Store(
        KQ3Gather4(hn::Load(df, s[0].lf + o), hn::Load(df, s[1].lf + o), hn::Load(df, s[2].lf + o),
                   hn::Load(df, s[3].lf + o), from0, from1, from2, from3, end0, end1, end2),
        df, p.s.lf + o);
  }
  auto sumlx =
      KQ3Gather4(hn::Load(df, s[0].sumlx), hn::Load(df, s[1].sumlx), hn::Load(df, s[2].sumlx),
                 hn::Load(df, s[3].sumlx), from0, from1, from2, from3, end0, end1, end2);
  auto suml2 =
      KQ3Gather4(hn::Load(df, s[0].suml2), hn::Load(df, s[1].suml2), hn::Load(df, s[2].suml2),
                 hn::Load(df, s[3].suml2), from0, from1, from2, from3, end0, end1, end2);
  KQ3Refine(df, nmax, p.xt, &p.s, 1, hn::FirstN(df, count), &sumlx, &suml2);
  hn::Store(sumlx, df, p.s.sumlx);
  hn::Store(suml2, df, p.s.suml2);
  KQ3Unpack(df, p, act0, 0, &s[0]);
  KQ3Unpack(df, p, act1, 1, &s[1]);
  KQ3Unpack(df, p, act2, 2, &s[2]);
  KQ3Unpack(df, p, act3, 3, &s[3]);
}

// Refinement passes 1..4 of one vector of groups whose running sums are stored in s.
template <class DF>
HWY_INLINE void KQ3RefineStored(DF df, int nmax, const float* HWY_RESTRICT xt, KQ3Scratch* s,
                                hn::Mask<DF> active) {
  auto sumlx = hn::Load(df, s->sumlx);
  auto suml2 = hn::Load(df, s->suml2);
  KQ3Refine(df, nmax, xt, s, 1, active, &sumlx, &suml2);
  hn::Store(sumlx, df, s->sumlx);
  hn::Store(suml2, df, s->suml2);
}

// Refinement passes 1..4 of four vectors of groups (as KQ3RefinePacked): all four packed into one
// vector where their active lanes fit, else two by two, else one by one.
template <class DF>
HWY_INLINE void KQ3RefineLater(DF df, int nmax, const float* HWY_RESTRICT xt, KQ3Scratch* s,
                               const float* HWY_RESTRICT active) {
  const size_t N = hn::Lanes(df);
  const size_t stride = 16 * N;
  size_t count[4];
  for (size_t v = 0; v < 4; ++v) {
    count[v] = hn::CountTrue(df, hn::MaskFromVec(hn::Load(df, active + v * N)));
  }
  const size_t span = count[0] + count[1] + count[2] + count[3] <= N ? 4 : 2;
  for (size_t first = 0; first < 4; first += span) {
    size_t sum = 0;
    for (size_t v = first; v < first + span; ++v) sum += count[v];
    if (sum <= N) {
      if (sum != 0) KQ3RefinePacked(df, nmax, xt, stride, s, active, first, first + span);
      continue;
    }
    for (size_t v = first; v < first + span; ++v) {
      KQ3RefineStored(df, nmax, xt + v * stride, &s[v],
                      hn::MaskFromVec(hn::Load(df, active + v * N)));
    }
  }
}

// KMakeQ3Quants for four vectors of groups, laid out one after another as KTransposeIn
// leaves them (xt + v * 16 * N, levels likewise in lt, scales at scale + v * N). With 16 lanes
// the first pass finds a lane that changes in most elements, so skipping idle elements saves
// little there while each change holds up the next element for a division's chain; this runs
// the four vectors' first passes without skipping, element by element, so their chains overlap.
// The sparse later passes run on the groups still changing, packed four vectors into one where
// they fit and two into one otherwise, skipping idle elements.
template <class DF>
HWY_INLINE void KMakeQ3QuantsFour(DF df, int nmax, const float* HWY_RESTRICT xt,
                                  int32_t* HWY_RESTRICT lt, float* HWY_RESTRICT scale) {
  const size_t N = hn::Lanes(df);
  const size_t stride = 16 * N;
  KQ3Scratch s[4];
  hn::Vec<DF> sumlx0, suml20, sumlx1, suml21, sumlx2, suml22, sumlx3, suml23;
  hn::Mask<DF> zero0, zero1, zero2, zero3;  // all-zero groups
  KQ3Start(df, nmax, xt, &s[0], &sumlx0, &suml20, &zero0);
  KQ3Start(df, nmax, xt + stride, &s[1], &sumlx1, &suml21, &zero1);
  KQ3Start(df, nmax, xt + 2 * stride, &s[2], &sumlx2, &suml22, &zero2);
  KQ3Start(df, nmax, xt + 3 * stride, &s[3], &sumlx3, &suml23, &zero3);
  auto changed0 = hn::FirstN(df, 0), changed1 = changed0;
  auto changed2 = changed0, changed3 = changed0;
  for (int i = 0; i < 16; ++i) {
    KQ3Step<false>(df, nmax, xt, &s[0], i, hn::Not(zero0), &sumlx0, &suml20, &changed0);
    KQ3Step<false>(df, nmax, xt + stride, &s[1], i, hn::Not(zero1), &sumlx1, &suml21, &changed1);
    KQ3Step<false>(df, nmax, xt + 2 * stride, &s[2], i, hn::Not(zero2), &sumlx2, &suml22,
                   &changed2);
    KQ3Step<false>(df, nmax, xt + 3 * stride, &s[3], i, hn::Not(zero3), &sumlx3, &suml23,
                   &changed3);
  }
  hn::Store(sumlx0, df, s[0].sumlx);
  hn::Store(suml20, df, s[0].suml2);
  hn::Store(sumlx1, df, s[1].sumlx);
  hn::Store(suml21, df, s[1].suml2);
  hn::Store(sumlx2, df, s[2].sumlx);
  hn::Store(suml22, df, s[2].suml2);
  hn::Store(sumlx3, df, s[3].sumlx);
  hn::Store(suml23, df, s[3].suml2);
  HWY_ALIGN float active[4 * kMaxGroupLanes];  // lanes that changed in the first pass
  hn::Store(hn::VecFromMask(df, hn::AndNot(zero0, changed0)), df, active);
  hn::Store(hn::VecFromMask(df, hn::AndNot(zero1, changed1)), df, active + N);
  hn::Store(hn::VecFromMask(df, hn::AndNot(zero2, changed2)), df, active + 2 * N);
  hn::Store(hn::VecFromMask(df, hn::AndNot(zero3, changed3)), df, active + 3 * N);
  KQ3RefineLater(df, nmax, xt, s, active);
  hn::Store(
      KQ3Finish(df, nmax, &s[0], zero0, hn::Load(df, s[0].sumlx), hn::Load(df, s[0].suml2), lt), df,
      scale);
  hn::Store(KQ3Finish(df, nmax, &s[1], zero1, hn::Load(df, s[1].sumlx), hn::Load(df, s[1].suml2),
                      lt + stride),
            df, scale + N);
  hn::Store(KQ3Finish(df, nmax, &s[2], zero2, hn::Load(df, s[2].sumlx), hn::Load(df, s[2].suml2),
                      lt + 2 * stride),
            df, scale + 2 * N);
  hn::Store(KQ3Finish(df, nmax, &s[3], zero3, hn::Load(df, s[3].sumlx), hn::Load(df, s[3].suml2),
                      lt + 3 * stride),
            df, scale + 3 * N);
}

// make_qp_quants (n values per lane, transposed in xt with weights wt) for Lanes(df)
// independent sets, e.g. the sub-block scales of several super-blocks. Levels go to lt; the
// first pass keeps ggml's narrowing of levels to uint8_t.
template <class DF>
HWY_INLINE hn::Vec<DF> KMakeQpQuants(DF df, int n, int nmax, const float* HWY_RESTRICT xt,
                                     const float* HWY_RESTRICT wt, int32_t* HWY_RESTRICT lt) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  using VI = hn::Vec<decltype(di)>;
  const size_t N = hn::Lanes(df);
  const V zero = hn::Zero(df);
  const VI vnmax = hn::Set(di, nmax);
  const VI byte_mask = hn::Set(di, 0xFF);

  V max = zero;
  for (int i = 0; i < n; ++i) {
    const V x = hn::Load(df, xt + i * N);
    max = hn::IfThenElse(hn::Gt(max, x), max, x);
  }
  const auto all_zero = hn::Lt(max, hn::Set(df, kGroupMaxEps));
  V iscale = hn::Div(hn::Set(df, static_cast<float>(nmax)), max);
  const V scale = hn::Div(hn::Set(df, 1.0f), iscale);
  V best_mse = zero;
  for (int i = 0; i < n; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const V w = hn::Load(df, wt + i * N);
    const V L = hn::ConvertTo(df, hn::And(NearestInt(df, hn::Mul(iscale, x)), byte_mask));
    const V diff = hn::Sub(x, hn::Mul(scale, L));
    best_mse = hn::Add(best_mse, hn::Mul(hn::Mul(w, diff), diff));
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float numerator = 0.1f * static_cast<float>(is) + static_cast<float>(nmax);
    const V iscale_is = hn::Div(hn::Set(df, numerator), max);
    const V scale_is = hn::Div(hn::Set(df, 1.0f), iscale_is);
    V mse = zero;
    for (int i = 0; i < n; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const V w = hn::Load(df, wt + i * N);
      const V l = hn::ConvertTo(df, hn::Min(vnmax, NearestInt(df, hn::Mul(iscale_is, x))));
      const V diff = hn::Sub(x, hn::Mul(scale_is, l));
      mse = hn::Add(mse, hn::Mul(hn::Mul(w, diff), diff));
    }
    const auto better = hn::Lt(mse, best_mse);
    best_mse = hn::IfThenElse(better, mse, best_mse);
    iscale = hn::IfThenElse(better, iscale_is, iscale);
  }
  V sumlx = zero, suml2 = zero;
  for (int i = 0; i < n; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const V w = hn::Load(df, wt + i * N);
    const VI l = hn::Min(vnmax, NearestInt(df, hn::Mul(iscale, x)));
    hn::Store(hn::And(l, byte_mask), di, lt + i * N);
    const V lf = hn::ConvertTo(df, l);
    sumlx = hn::Add(sumlx, hn::Mul(hn::Mul(w, x), lf));
    suml2 = hn::Add(suml2, hn::Mul(hn::Mul(w, lf), lf));
  }
  auto active = hn::Not(all_zero);
  for (int itry = 0; itry < 5; ++itry) {
    auto changed = hn::Lt(zero, zero);
    for (int i = 0; i < n; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const V w = hn::Load(df, wt + i * N);
      const VI Li = hn::Load(di, lt + i * N);
      const V L = hn::ConvertTo(df, Li);
      const V wx = hn::Mul(w, x);
      V slx = hn::Sub(sumlx, hn::Mul(wx, L));
      V sl2 = hn::Sub(suml2, hn::Mul(hn::Mul(w, L), L));
      const auto both_positive = hn::And(hn::Gt(slx, zero), hn::Gt(sl2, zero));
      const VI new_li = hn::Min(vnmax, NearestInt(df, hn::Div(hn::Mul(x, sl2), slx)));
      const auto differs = hn::RebindMask(df, hn::Ne(new_li, Li));
      const V new_l = hn::ConvertTo(df, new_li);
      slx = hn::Add(slx, hn::Mul(wx, new_l));
      sl2 = hn::Add(sl2, hn::Mul(hn::Mul(w, new_l), new_l));
      const auto improves =
          hn::Gt(hn::Mul(hn::Mul(slx, slx), suml2), hn::Mul(hn::Mul(sumlx, sumlx), sl2));
      const auto take = hn::And(hn::And(active, both_positive), hn::And(differs, improves));
      hn::Store(hn::IfThenElse(hn::RebindMask(di, take), hn::And(new_li, byte_mask), Li), di,
                lt + i * N);
      sumlx = hn::IfThenElse(take, slx, sumlx);
      suml2 = hn::IfThenElse(take, sl2, suml2);
      changed = hn::Or(changed, take);
    }
    active = hn::And(active, changed);
    if (hn::AllFalse(df, active)) break;
  }
  const auto zero_levels = hn::RebindMask(di, all_zero);
  for (int i = 0; i < n; ++i) {
    hn::Store(hn::IfThenZeroElse(zero_levels, hn::Load(di, lt + i * N)), di, lt + i * N);
  }
  const V result = hn::IfThenElseZero(hn::Gt(suml2, zero), hn::Div(sumlx, suml2));
  return hn::IfThenElse(all_zero, zero, result);
}

// get_scale_min_k4: the 6-bit scale and min of sub-block j from q4_K / q5_K's 12 bytes.
HWY_INLINE void KGetScaleMinK4(int j, const uint8_t* HWY_RESTRICT q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// The packing ggml's q4_K / q5_K quantizers do for sub-block j, called for j = 0..7 in order.
// Values above 63 are packed as ggml packs them (their high bits land where ggml's do).
HWY_INLINE void KSetScaleMinK4(int j, uint8_t ls, uint8_t lm, uint8_t* HWY_RESTRICT q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    q[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// Runs KMakeQpQuants over `count` sets of n values (values[s * n + i], weights likewise), in
// batches of Lanes(df) sets; scale_out[s] and levels_out[s * n + i] receive the results.
template <class DF>
HWY_INLINE void KMakeQpQuantsSets(DF df, int n, int nmax, const float* HWY_RESTRICT values,
                                  const float* HWY_RESTRICT weights, size_t count,
                                  float* HWY_RESTRICT scale_out, uint8_t* HWY_RESTRICT levels_out) {
  const size_t N = hn::Lanes(df);
  HWY_ALIGN float vt[16 * kMaxGroupLanes];
  HWY_ALIGN float wt[16 * kMaxGroupLanes];
  HWY_ALIGN int32_t lt[16 * kMaxGroupLanes];
  HWY_ALIGN float result[kMaxGroupLanes];
  for (size_t s0 = 0; s0 < count; s0 += N) {
    const size_t cnt = std::min(N, count - s0);
    KTransposeIn(df, values + s0 * n, cnt, n, vt);
    KTransposeIn(df, weights + s0 * n, cnt, n, wt);
    hn::Store(KMakeQpQuants(df, n, nmax, vt, wt, lt), df, result);
    for (size_t lane = 0; lane < cnt; ++lane) scale_out[s0 + lane] = result[lane];
    KTransposeLevelsOut(df, lt, cnt, n, levels_out + s0 * n);
  }
}

// q4_K / q5_K up to the packed levels: for nsb super-blocks at x (and the matching imatrix
// slice, or null) computes each block's d, dmin and 12 scale bytes and the final level of
// every weight (L, 256 per super-block), as quantize_row_q{4,5}_K_ref / _impl do.
template <class DF>
HWY_INLINE void KQuantizeScaleMin(DF df, const KScaleMinParams& p, const float* HWY_RESTRICT x,
                                  size_t nsb, const float* HWY_RESTRICT imatrix,
                                  uint8_t* HWY_RESTRICT L, HalfBits* d_out, HalfBits* dmin_out,
                                  uint8_t* HWY_RESTRICT scale_bytes) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  constexpr int kGroups = kSuperBlock / 32;
  HWY_ALIGN int32_t lt_chunk[kKChunkSuperBlocks * kSuperBlock];
  float scales[kKChunkSuperBlocks * kGroups];
  float mins[kKChunkSuperBlocks * kGroups];
  float sw[kKChunkSuperBlocks * kGroups];
  float sigma2[kKChunkSuperBlocks];

  if (imatrix) {
    for (size_t s = 0; s < nsb; ++s) {
      sigma2[s] = 2 * KSumSquares256(x + s * kSuperBlock) / kSuperBlock;
    }
  }
  // make_qkx2_quants' weights: each group's rms plus |x|.
  const auto unweighted = [&](const float* HWY_RESTRICT xv, float* HWY_RESTRICT wv) {
    V sum_x2 = hn::Zero(df);
    for (int i = 0; i < 32; ++i) {
      const V xi = hn::Load(df, xv + i * N);
      sum_x2 = hn::Add(sum_x2, hn::Mul(xi, xi));
    }
    const V av_x = hn::Sqrt(hn::Div(sum_x2, hn::Set(df, 32.0f)));
    for (int i = 0; i < 32; ++i) {
      hn::Store(hn::Add(av_x, hn::Abs(hn::Load(df, xv + i * N))), df, wv + i * N);
    }
  };
  KSearchScaleMinGroups<32, false>(df, x, nsb, imatrix, sigma2, p.nmax, p.rmin, p.rdelta, p.nstep,
                                   unweighted, scales, mins, sw, lt_chunk);

  float d_block[kKChunkSuperBlocks], m_block[kKChunkSuperBlocks];
  uint8_t Ls[kKChunkSuperBlocks * kGroups], Lm[kKChunkSuperBlocks * kGroups];
  if (imatrix) {
    KMakeQpQuantsSets(df, kGroups, 63, scales, sw, nsb, d_block, Ls);
    KMakeQpQuantsSets(df, kGroups, 63, mins, sw, nsb, m_block, Lm);
  }
  for (size_t s = 0; s < nsb; ++s) {
    uint8_t* HWY_RESTRICT sb = scale_bytes + s * kKScaleBytes;
    const float* HWY_RESTRICT sc = scales + s * kGroups;
    const float* HWY_RESTRICT mn = mins + s * kGroups;
    if (imatrix == nullptr) {
      float max_scale = 0;
      float max_min = 0;
      for (int j = 0; j < kGroups; ++j) {
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
      }
      const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
      const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
      for (int j = 0; j < kGroups; ++j) {
        uint8_t ls = static_cast<uint8_t>(::hwyquant::NearestInt(inv_scale * sc[j]));
        uint8_t lm = static_cast<uint8_t>(::hwyquant::NearestInt(inv_min * mn[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        KSetScaleMinK4(j, ls, lm, sb);
      }
      d_out[s] = F32ToF16(max_scale / 63.f);
      dmin_out[s] = F32ToF16(max_min / 63.f);
    } else {
      for (int j = 0; j < kGroups; ++j) {
        uint8_t ls = Ls[s * kGroups + j];
        uint8_t lm = Lm[s * kGroups + j];
        if (p.clamp_imatrix) {
          ls = std::min<uint8_t>(63, ls);
          lm = std::min<uint8_t>(63, lm);
        }
        KSetScaleMinK4(j, ls, lm, sb);
      }
      d_out[s] = F32ToF16(d_block[s]);
      dmin_out[s] = F32ToF16(m_block[s]);
    }

    const float d_all = F16ToF32(d_out[s]);
    const float dmin_all = F16ToF32(dmin_out[s]);
    for (int j = 0; j < kGroups; ++j) {
      uint8_t scale_level, min_level;
      KGetScaleMinK4(j, sb, &scale_level, &min_level);
      const float d = d_all * scale_level;
      if (!d) {
        KLevelsOfGroup(df, lt_chunk, 32, s * kGroups + j, L + s * kSuperBlock + 32 * j);
        continue;
      }
      const float dm = dmin_all * min_level;
      const V vd = hn::Set(df, d);
      const V vdm = hn::Set(df, dm);
      const float* HWY_RESTRICT xs = x + s * kSuperBlock + 32 * j;
      uint8_t* HWY_RESTRICT Ls_out = L + s * kSuperBlock + 32 * j;
      for (size_t k = 0; k < 32; k += N) {
        const V q = hn::Div(hn::Add(hn::LoadU(df, xs + k), vdm), vd);
        KStoreLevels(di, KClamp(di, NearestInt(df, q), 0, p.nmax), Ls_out + k);
      }
    }
  }
}

// Packs 2-bit levels of 256 weights as q2_K and q3_K store them: byte j/4 + l of each 128-weight
// half holds weights l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7.
HWY_INLINE void KPack2Bits(const uint8_t* HWY_RESTRICT L, uint8_t* HWY_RESTRICT qs) {
  const hn::CappedTag<uint8_t, 32> d8;
  const size_t N = hn::Lanes(d8);
  for (int j = 0; j < kSuperBlock; j += 128) {
    for (size_t l = 0; l < 32; l += N) {
      const auto q0 = hn::LoadU(d8, L + j + l);
      const auto q1 = hn::ShiftLeft<2>(hn::LoadU(d8, L + j + l + 32));
      const auto q2 = hn::ShiftLeft<4>(hn::LoadU(d8, L + j + l + 64));
      const auto q3 = hn::ShiftLeft<6>(hn::LoadU(d8, L + j + l + 96));
      hn::StoreU(hn::Or(hn::Or(q0, q1), hn::Or(q2, q3)), d8, qs + j / 4 + l);
    }
  }
}

// q3_K's high bits: bit b of hmask[m] is set when level L[32 * b + m] exceeds 3, and those
// levels lose 4 (ggml's loop over j with m = j % 32 and bit j / 32, without its branches).
HWY_INLINE void KSplitHighBitQ3(uint8_t* HWY_RESTRICT L, uint8_t* HWY_RESTRICT hmask) {
  const hn::CappedTag<uint8_t, 32> d8;
  const size_t N = hn::Lanes(d8);
  const auto three = hn::Set(d8, 3);
  const auto four = hn::Set(d8, 4);
  for (size_t m = 0; m < 32; m += N) {
    auto bits = hn::Zero(d8);
    for (int b = 0; b < 8; ++b) {
      const auto level = hn::LoadU(d8, L + 32 * b + m);
      const auto high = hn::Gt(level, three);
      bits = hn::Or(bits, hn::IfThenElseZero(high, hn::Set(d8, static_cast<uint8_t>(1u << b))));
      hn::StoreU(hn::IfThenElse(high, hn::Sub(level, four), level), d8, L + 32 * b + m);
    }
    hn::StoreU(bits, d8, hmask + m);
  }
}

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_K_COMMON_INL_H_
