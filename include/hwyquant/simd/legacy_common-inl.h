// Pieces shared by the 32-weight legacy codecs (q4_0 ... q8_0): per-block extremes with ggml's
// first-wins rules, and the importance-matrix searches run with one block per lane.
//
// Two strategies, both exact:
// - Without imatrix every weight of a block is quantized independently once the block's scale
//   is known, so a block is processed horizontally; only the extreme needs care, and it is
//   reduced with NaN lanes masked out (order-free), then the first winner is located (from a
//   mask of hits in FirstLargestMagnitude, common-inl.h; by a scan for a zero extreme in
//   FirstMinMax) so that the sign of zero and of the max come from it.
// - With imatrix the scale search is a long sequential computation per block; blocks are
//   transposed so that lane j runs block j's loop statement by statement.

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "hwyquant/format.h"
#include "hwyquant/half.h"

#if defined(HWYQUANT_SIMD_LEGACY_COMMON_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HWYQUANT_SIMD_LEGACY_COMMON_INL_H_
#undef HWYQUANT_SIMD_LEGACY_COMMON_INL_H_
#else
#define HWYQUANT_SIMD_LEGACY_COMMON_INL_H_
#endif

#include "hwy/highway.h"
#include "hwyquant/simd/common-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hwyquant::kernels::HWY_NAMESPACE {

// Weights per legacy block.
inline constexpr int kLegacyBlock = 32;

// q4_1 / q5_1's scan `if (v < min) min = v; if (v > max) max = v;` from FLT_MAX / -FLT_MAX.
// Ties keep the first element, which only matters for the sign of a zero extreme.
template <class DF>
HWY_INLINE void FirstMinMax(DF df, const float* HWY_RESTRICT xb, float* min_out, float* max_out) {
  const size_t N = hn::Lanes(df);
  auto vmin = hn::Set(df, FLT_MAX);
  auto vmax = hn::Set(df, -FLT_MAX);
  for (size_t i = 0; i < kLegacyBlock; i += N) {
    const auto v = hn::LoadU(df, xb + i);
    const auto ok = hn::Eq(v, v);
    vmin = hn::Min(vmin, hn::IfThenElse(ok, v, hn::Set(df, FLT_MAX)));
    vmax = hn::Max(vmax, hn::IfThenElse(ok, v, hn::Set(df, -FLT_MAX)));
  }
  float min = MinLane(df, vmin);
  float max = MaxLane(df, vmax);
  // Equal non-zero floats have equal bits; only a zero extreme needs its first occurrence.
  if (min == 0.0f || max == 0.0f) {
    bool min_found = min != 0.0f;
    bool max_found = max != 0.0f;
    for (int j = 0; j < kLegacyBlock && !(min_found && max_found); ++j) {
      if (!min_found && xb[j] == 0.0f) {
        min = xb[j];
        min_found = true;
      }
      if (!max_found && xb[j] == 0.0f) {
        max = xb[j];
        max_found = true;
      }
    }
  }
  *min_out = min;
  *max_out = max;
}

// Loads N level bytes (or nibble bytes) as int32 lanes.
template <class DI>
HWY_INLINE hn::Vec<DI> LoadBytesAsInt32(DI di, const uint8_t* HWY_RESTRICT p) {
  const hn::Rebind<uint8_t, DI> du8;
  return hn::PromoteTo(di, hn::LoadU(du8, p));
}

// The fifth bits (bit 4) of N levels as a bit field, lane 0 in bit 0.
template <class DI>
HWY_INLINE uint32_t FifthBits(DI di, hn::Vec<DI> levels) {
  const auto mask = hn::Ne(hn::And(levels, hn::Set(di, 0x10)), hn::Zero(di));
  uint8_t bytes[8] = {0};
  hn::StoreMaskBits(di, mask, bytes);
  uint32_t bits;
  memcpy(&bits, bytes, sizeof(bits));
  return bits;
}

// Lane j gets bit (first + j) of qh, as 0 or 0x10 (q5_0 / q5_1 dequantization).
template <class DI>
HWY_INLINE hn::Vec<DI> FifthBitLanes(DI di, uint32_t qh, int first) {
  const hn::RebindToUnsigned<DI> du;
  const auto shifted = hn::Shr(hn::Set(du, qh), hn::Iota(du, static_cast<uint32_t>(first)));
  return hn::BitCast(di, hn::ShiftLeft<4>(hn::And(shifted, hn::Set(du, 1u))));
}

// ---- imatrix: one block per lane -------------------------------------------------------------

// Transposed inputs of up to N blocks: x and the weights qw * sqrt(sigma2 + x^2).
struct LegacyBatch {
  alignas(64) float x[kLegacyBlock * kMaxGroupLanes];
  alignas(64) float w[kLegacyBlock * kMaxGroupLanes];
  alignas(64) int32_t levels[kLegacyBlock * kMaxGroupLanes];
  alignas(64) int32_t scratch[kLegacyBlock * kMaxGroupLanes];
  alignas(64) float scale[kMaxGroupLanes];
  alignas(64) float the_min[kMaxGroupLanes];
};

// ggml's per-row variance term of quantize_row_q*_impl: sequential sum of squares / n.
HWY_INLINE float RowSigma2(const float* HWY_RESTRICT x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

// Runs `process(batch, first_block, count)` over all nrows * nb blocks in batches of N lanes,
// after filling batch.x and batch.w. Blocks of a batch may span rows; each lane carries its
// own row's sigma2 and imatrix slice.
template <class DF, class Process>
HWY_INLINE void ForEachImatrixBatch(DF df, const float* HWY_RESTRICT src, int64_t nrows,
                                    int64_t n_per_row, const float* HWY_RESTRICT imatrix,
                                    LegacyBatch& batch, const Process& process) {
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const int64_t nb = n_per_row / kLegacyBlock;
  const int64_t total = nrows * nb;
  std::vector<float> sigma2(static_cast<size_t>(nrows));
  for (int64_t r = 0; r < nrows; ++r) sigma2[r] = RowSigma2(src + r * n_per_row, n_per_row);
  alignas(64) int32_t qw_offsets[kMaxGroupLanes];
  alignas(64) float lane_sigma2[kMaxGroupLanes];
  for (int64_t first = 0; first < total; first += static_cast<int64_t>(N)) {
    const size_t count =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(N), total - first));
    for (size_t lane = 0; lane < N; ++lane) {
      const int64_t block = first + static_cast<int64_t>(std::min(lane, count - 1));
      qw_offsets[lane] = static_cast<int32_t>((block % nb) * kLegacyBlock);
      lane_sigma2[lane] = sigma2[static_cast<size_t>(block / nb)];
    }
    GatherTransposed(df, src + first * kLegacyBlock, GroupOffsets(di, kLegacyBlock, count),
                     kLegacyBlock, batch.x);
    GatherTransposed(df, imatrix, hn::Load(di, qw_offsets), kLegacyBlock, batch.w);
    const auto s2 = hn::Load(df, lane_sigma2);
    for (int i = 0; i < kLegacyBlock; ++i) {
      const auto x = hn::Load(df, batch.x + i * N);
      const auto qw = hn::Load(df, batch.w + i * N);
      hn::Store(hn::Mul(qw, hn::Sqrt(hn::Add(s2, hn::Mul(x, x)))), df, batch.w + i * N);
    }
    process(batch, first, count);
  }
}

// make_qx_quants(32, nmax, x, L, rmse_type = 1, weights) per lane: batch.levels gets
// L = nmax + clamp(l), batch.scale the returned scale.
template <class DF>
HWY_INLINE void MakeQxQuantsLanes(DF df, int nmax, LegacyBatch& batch) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  const float* HWY_RESTRICT xt = batch.x;
  const float* HWY_RESTRICT wt = batch.w;
  int32_t* HWY_RESTRICT lt = batch.levels;
  int32_t* HWY_RESTRICT lcur = batch.scratch;
  V max, amax;
  FirstLargestPerLane<0, kLegacyBlock>(df, xt, &amax, &max);
  const auto all_zero = hn::Lt(amax, hn::Set(df, kGroupMaxEps));
  const auto lo = hn::Set(di, -nmax);
  const auto hi = hn::Set(di, nmax - 1);
  const auto offset = hn::Set(di, nmax);
  V iscale = hn::Div(hn::Set(df, static_cast<float>(-nmax)), max);
  V sumlx = hn::Zero(df);
  V suml2 = hn::Zero(df);
  for (int i = 0; i < kLegacyBlock; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const auto l = hn::Max(lo, hn::Min(hi, NearestInt(df, hn::Mul(iscale, x))));
    hn::Store(hn::Add(l, offset), di, lt + i * N);
    const V lf = hn::ConvertTo(df, l);
    const V w = hn::Load(df, wt + i * N);
    sumlx = hn::Add(sumlx, hn::Mul(hn::Mul(w, x), lf));
    suml2 = hn::Add(suml2, hn::Mul(hn::Mul(w, lf), lf));
  }
  V scale = hn::IfThenElseZero(IsTruthy(df, suml2), hn::Div(sumlx, suml2));
  V best = hn::Mul(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float step = static_cast<float>(nmax) + 0.1f * static_cast<float>(is);
    iscale = hn::Div(hn::Set(df, -step), max);
    sumlx = hn::Zero(df);
    suml2 = hn::Zero(df);
    for (int i = 0; i < kLegacyBlock; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const auto l = hn::Max(lo, hn::Min(hi, NearestInt(df, hn::Mul(iscale, x))));
      hn::Store(l, di, lcur + i * N);
      const V lf = hn::ConvertTo(df, l);
      const V w = hn::Load(df, wt + i * N);
      sumlx = hn::Add(sumlx, hn::Mul(hn::Mul(w, x), lf));
      suml2 = hn::Add(suml2, hn::Mul(hn::Mul(w, lf), lf));
    }
    const auto better =
        hn::And(hn::Gt(suml2, hn::Zero(df)), hn::Gt(hn::Mul(sumlx, sumlx), hn::Mul(best, suml2)));
    if (hn::AllFalse(df, better)) continue;
    const auto better_i = hn::RebindMask(di, better);
    for (int i = 0; i < kLegacyBlock; ++i) {
      const auto l = hn::Add(hn::Load(di, lcur + i * N), offset);
      hn::Store(hn::IfThenElse(better_i, l, hn::Load(di, lt + i * N)), di, lt + i * N);
    }
    scale = hn::IfThenElse(better, hn::Div(sumlx, suml2), scale);
    best = hn::IfThenElse(better, hn::Mul(scale, sumlx), best);
  }
  const auto all_zero_i = hn::RebindMask(di, all_zero);
  for (int i = 0; i < kLegacyBlock; ++i) {
    hn::Store(hn::IfThenZeroElse(all_zero_i, hn::Load(di, lt + i * N)), di, lt + i * N);
  }
  hn::Store(hn::IfThenZeroElse(all_zero, scale), df, batch.scale);
}

// make_qkx3_quants(32, nmax, x, weights, L, &the_min, Laux, -0.9f, 0.05f, 36, false) per lane:
// batch.levels gets L, batch.scale the scale, batch.the_min the returned minimum.
template <class DF>
HWY_INLINE void MakeQkx3QuantsLanes(DF df, int nmax, LegacyBatch& batch) {
  using V = hn::Vec<DF>;
  const hn::RebindToSigned<DF> di;
  const size_t N = hn::Lanes(df);
  constexpr float kRmin = -0.9f;
  constexpr float kRdelta = 0.05f;
  constexpr int kSteps = 36;
  const float* HWY_RESTRICT xt = batch.x;
  const float* HWY_RESTRICT wt = batch.w;
  int32_t* HWY_RESTRICT lt = batch.levels;
  int32_t* HWY_RESTRICT laux = batch.scratch;
  V min = hn::Load(df, xt);
  V max = min;
  V sum_w = hn::Load(df, wt);
  V sum_x = hn::Mul(sum_w, min);
  for (int i = 1; i < kLegacyBlock; ++i) {
    const V x = hn::Load(df, xt + i * N);
    min = hn::IfThenElse(hn::Lt(x, min), x, min);
    max = hn::IfThenElse(hn::Gt(x, max), x, max);
    const V w = hn::Load(df, wt + i * N);
    sum_w = hn::Add(sum_w, w);
    sum_x = hn::Add(sum_x, hn::Mul(w, x));
  }
  min = hn::IfThenZeroElse(hn::Gt(min, hn::Zero(df)), min);
  const auto flat = hn::Le(max, min);
  const V flat_min = min;  // what a flat lane returns; its later (garbage) updates are discarded
  const auto zero_i = hn::Zero(di);
  const auto top = hn::Set(di, nmax);
  V iscale = hn::Div(hn::Set(df, static_cast<float>(nmax)), hn::Sub(max, min));
  V scale = hn::Div(hn::Set(df, 1.0f), iscale);
  V best_mad = hn::Zero(df);
  for (int i = 0; i < kLegacyBlock; ++i) {
    const V x = hn::Load(df, xt + i * N);
    const auto l = hn::Max(zero_i, hn::Min(top, NearestInt(df, hn::Mul(iscale, hn::Sub(x, min)))));
    hn::Store(l, di, lt + i * N);
    V diff = hn::Sub(hn::Add(hn::Mul(scale, hn::ConvertTo(df, l)), min), x);
    diff = hn::Mul(diff, diff);
    best_mad = hn::Add(best_mad, hn::Mul(hn::Load(df, wt + i * N), diff));
  }
  for (int is = 0; is <= kSteps; ++is) {
    const float step = (kRmin + kRdelta * static_cast<float>(is)) + static_cast<float>(nmax);
    // min moves when a step wins, so the range is recomputed each step as ggml does.
    iscale = hn::Div(hn::Set(df, step), hn::Sub(max, min));
    V sum_l = hn::Zero(df);
    V sum_l2 = hn::Zero(df);
    V sum_xl = hn::Zero(df);
    for (int i = 0; i < kLegacyBlock; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const auto l =
          hn::Max(zero_i, hn::Min(top, NearestInt(df, hn::Mul(iscale, hn::Sub(x, min)))));
      hn::Store(l, di, laux + i * N);
      const V lf = hn::ConvertTo(df, l);
      const V wl = hn::Mul(hn::Load(df, wt + i * N), lf);
      sum_l = hn::Add(sum_l, wl);
      sum_l2 = hn::Add(sum_l2, hn::Mul(wl, lf));
      sum_xl = hn::Add(sum_xl, hn::Mul(wl, x));
    }
    const V det = hn::Sub(hn::Mul(sum_w, sum_l2), hn::Mul(sum_l, sum_l));
    const auto solvable = hn::Gt(det, hn::Zero(df));
    if (hn::AllFalse(df, solvable)) continue;
    V this_scale = hn::Div(hn::Sub(hn::Mul(sum_w, sum_xl), hn::Mul(sum_x, sum_l)), det);
    V this_min = hn::Div(hn::Sub(hn::Mul(sum_l2, sum_x), hn::Mul(sum_l, sum_xl)), det);
    const auto positive_min = hn::Gt(this_min, hn::Zero(df));
    this_min = hn::IfThenZeroElse(positive_min, this_min);
    this_scale = hn::IfThenElse(positive_min, hn::Div(sum_xl, sum_l2), this_scale);
    V mad = hn::Zero(df);
    for (int i = 0; i < kLegacyBlock; ++i) {
      const V x = hn::Load(df, xt + i * N);
      const V lf = hn::ConvertTo(df, hn::Load(di, laux + i * N));
      V diff = hn::Sub(hn::Add(hn::Mul(this_scale, lf), this_min), x);
      diff = hn::Mul(diff, diff);
      mad = hn::Add(mad, hn::Mul(hn::Load(df, wt + i * N), diff));
    }
    const auto better = hn::And(solvable, hn::Lt(mad, best_mad));
    if (hn::AllFalse(df, better)) continue;
    const auto better_i = hn::RebindMask(di, better);
    for (int i = 0; i < kLegacyBlock; ++i) {
      hn::Store(hn::IfThenElse(better_i, hn::Load(di, laux + i * N), hn::Load(di, lt + i * N)), di,
                lt + i * N);
    }
    best_mad = hn::IfThenElse(better, mad, best_mad);
    scale = hn::IfThenElse(better, this_scale, scale);
    min = hn::IfThenElse(better, this_min, min);
  }
  const auto flat_i = hn::RebindMask(di, flat);
  for (int i = 0; i < kLegacyBlock; ++i) {
    hn::Store(hn::IfThenZeroElse(flat_i, hn::Load(di, lt + i * N)), di, lt + i * N);
  }
  hn::Store(hn::IfThenZeroElse(flat, scale), df, batch.scale);
  hn::Store(hn::Neg(hn::IfThenElse(flat, flat_min, min)), df, batch.the_min);
}

}  // namespace hwyquant::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HWYQUANT_SIMD_LEGACY_COMMON_INL_H_
