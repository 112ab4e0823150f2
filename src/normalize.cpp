#include "amosprep/normalize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

namespace amosprep {

namespace {

constexpr int64_t kParallelMinVoxels = 1 << 16;

void subtract_divide(float* v, int64_t n, float mn, float denom) {
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
  for (int64_t i = 0; i < n; ++i) {
    const float centered = v[i] - mn;
    v[i] = centered / denom;
  }
}

}  // namespace

void normalize_ct(Array3<float>& x, const IntensityStats& s) { normalize_ct(x.data(), static_cast<int64_t>(x.size()), s); }

void normalize_ct(float* v, int64_t n, const IntensityStats& s) { normalize_ct(v, n, CtNormalization(s)); }

void normalize_ct(float* v, int64_t n, const CtNormalization& ct) {
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
  for (int64_t i = 0; i < n; ++i) v[i] = ct(v[i]);
}

void normalize_ct2(Array3<float>& x, const IntensityStats& s) {
  const auto lo = static_cast<float>(s.percentile_00_5);
  const auto hi = static_cast<float>(s.percentile_99_5);
  float* v = x.data();
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> inside;  // clipped values of the mask voxels, C order
  for (int64_t i = 0; i < n; ++i) {
    const float orig = v[i];
    const float clipped = clip_f32(orig, lo, hi);
    if (orig > lo && orig < hi) inside.push_back(clipped);
    v[i] = clipped;
  }
  float mn = std::numeric_limits<float>::quiet_NaN(), sd = mn;  // numpy: mean/std of an empty selection
  if (!inside.empty()) {
    mn = np_mean_f32(inside.data(), static_cast<int64_t>(inside.size()));
    sd = np_std_f32(inside.data(), static_cast<int64_t>(inside.size()));
  }
  subtract_divide(v, n, mn, sd);
}

void normalize_nonct(Array3<float>& x, const Array3<float>* seg_for_mask) {
  float* v = x.data();
  const auto n = static_cast<int64_t>(x.size());
  if (seg_for_mask == nullptr) {
    const float mn = np_mean_f32(v, n);
    const float sd = np_std_f32(v, n);
    subtract_divide(v, n, mn, static_cast<float>(static_cast<double>(sd) + 1e-8));
    return;
  }
  if (seg_for_mask->shape != x.shape) throw std::invalid_argument("normalize_nonct: seg and data shapes differ");
  const float* seg = seg_for_mask->data();
  std::vector<float> inside;
  for (int64_t i = 0; i < n; ++i)
    if (seg[i] >= 0) inside.push_back(v[i]);
  if (inside.empty()) {  // numpy assigns nothing to the empty selection, then zeroes everything
    std::fill(v, v + n, 0.0f);
    return;
  }
  const float mn = np_mean_f32(inside.data(), static_cast<int64_t>(inside.size()));
  const float sd = np_std_f32(inside.data(), static_cast<int64_t>(inside.size()));
  const auto denom = static_cast<float>(static_cast<double>(sd) + 1e-8);
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
  for (int64_t i = 0; i < n; ++i) {
    if (seg[i] >= 0) {
      const float centered = v[i] - mn;
      v[i] = centered / denom;
    } else {
      v[i] = 0.0f;
    }
  }
}

}  // namespace amosprep
