// Scalar helpers shared by ggml's K-quant and importance-weighted quantizers,
// in ggml's exact order.
//
// Each function follows the helper of ggml-quants.c named in its comment
// statement by statement: the same float operations in the same order and the
// same integer narrowing, so that compiled with -ffp-contract=off the results
// are bit-identical. Keep them that way: reassociating a sum or hoisting a
// division changes the quantized bytes.
#ifndef HWYQUANT_REFERENCE_QUANT_COMMON_H_
#define HWYQUANT_REFERENCE_QUANT_COMMON_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "hwyquant/rounding.h"  // NearestInt

namespace hwyquant::reference {

// A group whose largest magnitude is below this is quantized as all zeros
// (GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;
// The looser thresholds some i-quants use (GROUP_MAX_EPS_IQ3_XXS, _IQ2_S,
// _IQ1_M, _IQ1_S).
inline constexpr float kGroupMaxEpsIq3Xxs = 1e-8f;
inline constexpr float kGroupMaxEpsIq2S = 1e-8f;
inline constexpr float kGroupMaxEpsIq1M = 1e-7f;
inline constexpr float kGroupMaxEpsIq1S = 1e-12f;

// A C cast from float to a narrow integer, as ggml's x86 build compiles it:
// cvttss2si truncates toward zero into an int32, giving INT32_MIN for NaN and
// out-of-range values, and the low bits are kept. C leaves those inputs
// undefined; this pins down what ggml really produces.
inline int32_t TruncateToInt32LikeX86(float f) {
  if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(f);
}

// MIN(max_level, (int8_t)shifted): how q4_0, q4_1 and q5_0 turn a value
// already offset by the rounding half into a level. The int8_t narrowing
// happens before the clamp, as in ggml.
inline uint8_t TruncatedLevel(float shifted, int max_level) {
  const int8_t narrowed = static_cast<int8_t>(TruncateToInt32LikeX86(shifted));
  return static_cast<uint8_t>(std::min(max_level, static_cast<int>(narrowed)));
}

// ggml's MAX/MIN macros on floats: a NaN in the second argument wins, unlike
// std::max/std::min.
inline float MaxLikeGgml(float a, float b) { return a > b ? a : b; }
inline float MinLikeGgml(float a, float b) { return a < b ? a : b; }

// Clamps an int into [lo, hi] as MAX(lo, MIN(hi, v)) does.
inline int ClampInt(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// The weight of x in make_qx_quants's error when no explicit weights are given.
inline float QxDefaultWeight(int rmse_type, float x) {
  return rmse_type == 1   ? x * x
         : rmse_type == 2 ? 1.0f
         : rmse_type == 3 ? std::fabs(x)
                          : std::sqrt(std::fabs(x));
}

// Symmetric quantization of n values to L in [0, 2*nmax) around the
// largest-magnitude value, searching 18 nearby scales for the least weighted
// squared error; returns the scale (make_qx_quants). qw may be null; rmse_type
// selects the default weights, negative returns after the first estimate and 0
// skips the search.
inline float MakeQxQuants(int n, int nmax, const float* x, int8_t* L, int rmse_type,
                          const float* qw) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = NearestInt(iscale * x[i]);
      L[i] = static_cast<int8_t>(nmax + ClampInt(l, -nmax, nmax - 1));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = ClampInt(l, -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : QxDefaultWeight(rmse_type, x[i]);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = ClampInt(l, -nmax, nmax - 1);
      const float w = qw ? qw[i] : QxDefaultWeight(rmse_type, x[i]);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = NearestInt(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + ClampInt(l, -nmax, nmax - 1));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit style quantization to L in [0, 2*nmax) that, with do_rmse,
// moves single values to better levels (weighted by x^2) for up to five passes;
// returns the scale (make_q3_quants).
inline float MakeQ3Quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = -nmax / max;
  if (do_rmse) {
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * x[i]);
      l = ClampInt(l, -nmax, nmax - 1);
      L[i] = static_cast<int8_t>(l);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
      int n_changed = 0;
      for (int i = 0; i < n; ++i) {
        const float w = x[i] * x[i];
        float slx = sumlx - w * x[i] * L[i];
        if (slx > 0) {
          float sl2 = suml2 - w * L[i] * L[i];
          int new_l = NearestInt(x[i] * sl2 / slx);
          new_l = ClampInt(new_l, -nmax, nmax - 1);
          if (new_l != L[i]) {
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
              L[i] = static_cast<int8_t>(new_l);
              sumlx = slx;
              suml2 = sl2;
              ++n_changed;
            }
          }
        }
      }
      if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
  }
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = ClampInt(l, -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
  }
  return 1 / iscale;
}

// Asymmetric quantization (scale and a non-positive offset) of n values to L in
// [0, nmax), trying nstep+1 scales around nmax/(max-min) and keeping the least
// weighted absolute (use_mad) or squared error; stores -offset in *the_min and
// returns the scale (make_qkx2_quants). Laux is n bytes of scratch.
inline float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                            float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                            bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(ClampInt(l, 0, nmax));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    const float w = weights[i];
    best_error += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = ClampInt(l, 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        const float w = weights[i];
        cur_error += w * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The weight make_qkx3_quants gives x when no weights are passed.
inline float Qkx3Weight(const float* weights, const float* x, int i) {
  return weights ? weights[i] : x[i] * x[i];
}

// MakeQkx2Quants for the imatrix paths: weights may be null (then x^2), and a
// group with max <= min is all zero (make_qkx3_quants).
inline float MakeQkx3Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                            float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                            bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = Qkx3Weight(weights, x, 0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = Qkx3Weight(weights, x, i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(ClampInt(l, 0, nmax));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    const float w = Qkx3Weight(weights, x, i);
    best_mad += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = ClampInt(l, 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = Qkx3Weight(weights, x, i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        const float w = Qkx3Weight(weights, x, i);
        mad += w * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Quantizes n non-negative values (the sub-block scales or mins of a
// super-block) to L in [0, nmax] with weights quant_weights, searching 8 nearby
// scales and then moving single values for up to five passes; returns the scale
// (make_qp_quants).
inline float MakeQpQuants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = MaxLikeGgml(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  // Narrowing to uint8_t wraps as C's implicit conversion does; ggml relies on
  // the same.
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(NearestInt(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    const float w = quant_weights[i];
    best_mse += w * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale_is * x[i]);
      l = std::min(nmax, l);
      const float diff = x[i] - scale_is * l;
      const float w = quant_weights[i];
      mse += w * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::min(nmax, l);
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        int new_l = NearestInt(x[i] * sl2 / slx);
        new_l = std::min(nmax, new_l);
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Reads the 6-bit scale *d and min *m of sub-block j (0..7) from the 12 packed
// bytes of q4_K and q5_K (get_scale_min_k4): bytes 0..3 and 4..7 hold
// sub-blocks 0..3 whole, sub-blocks 4..7 keep their low nibbles in bytes 8..11
// and their top two bits in the spare bits of bytes 0..7.
inline void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Writes the 6-bit scale ls and min lm of sub-block j into the 12 packed bytes;
// call for j = 0..7 in order (the inverse of GetScaleMinK4, as q4_K and q5_K
// quantizers pack them).
inline void SetScaleMinK4(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    q[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// ORs the biased 6-bit scale l (0..63) of sub-block j (0..15) into q3_K's 12
// zeroed scale bytes: low nibbles fill bytes 0..7 (j and j-8), the top two bits
// go to bytes 8..11.
inline void SetScaleK3(int j, int l, uint8_t* scales) {
  if (j < 8) {
    scales[j] = static_cast<uint8_t>(l & 0xF);
  } else {
    scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  }
  l >>= 4;
  scales[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
}

// The signed scale (-32..31) of q3_K sub-block j, unpacked from the 12 scale
// bytes.
inline int8_t GetScaleK3(int j, const uint8_t* scales) {
  int8_t sc = static_cast<int8_t>(j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4);
  sc = static_cast<int8_t>((sc | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
  return sc;
}

}  // namespace hwyquant::reference

#endif  // HWYQUANT_REFERENCE_QUANT_COMMON_H_
