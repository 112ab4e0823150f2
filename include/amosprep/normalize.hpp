#pragma once
// nnU-Net v1 intensity normalization of one channel, in place, float32 arithmetic per operation exactly as numpy
// performs it (spec: nnunet-v1-semantics.md §6.8). Element-wise parts run with OpenMP; results do not depend on
// the thread count.
#include <cmath>

#include "amosprep/np_reductions.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

/// np.clip of a float32 value with float64 scalar bounds (numpy 1.24): the bounds rounded to float32, then
/// min(max(x, lo), hi) with max(a, b) = isnan(a) ? a : (a > b ? a : b) (min alike), which fixes the sign of zero
/// results. A NaN bound is ignored (numpy treats it as None).
inline float clip_f32(float v, float lo, float hi) {
  float m = v;
  if (!std::isnan(lo) && !std::isnan(m)) m = (m > lo) ? m : lo;
  if (!std::isnan(hi) && !std::isnan(m)) m = (m < hi) ? m : hi;
  return m;
}

/// Scheme "CT" for one value (see normalize_ct). Non-decreasing in v where `monotone()`: two inputs with the same
/// result then give it to every input between them.
struct CtNormalization {
  float lo, hi, mean, sd;
  explicit CtNormalization(const IntensityStats& s)
      : lo(static_cast<float>(s.percentile_00_5)), hi(static_cast<float>(s.percentile_99_5)), mean(s.mean), sd(s.sd) {}
  float operator()(float v) const {
    const float centered = clip_f32(v, lo, hi) - mean;
    return centered / sd;
  }
  /// Finite mean and a finite, positive sd (so no NaN arises from a non-NaN input).
  bool monotone() const { return std::isfinite(mean) && std::isfinite(sd) && sd > 0.0f; }
};

/// Scheme "CT": x = clip(x, f32(percentile_00_5), f32(percentile_99_5)); x = f32(x - mean); x = f32(x / sd).
/// (nnU-Net's optional `use_nonzero_mask` zeroing is not applied; it is False for CT.)
void normalize_ct(Array3<float>& x, const IntensityStats& s);
/// normalize_ct of `n` values in place (the scheme is pointwise: any part of a volume).
void normalize_ct(float* v, int64_t n, const IntensityStats& s);
/// The same with the scheme's parameters already taken from the statistics.
void normalize_ct(float* v, int64_t n, const CtNormalization& ct);

/// Scheme "CT2": mask = (x > f32(lb)) & (x < f32(ub)) on the unclipped data (float32 comparisons), clip as CT,
/// then mn/sd = numpy float32 mean/std of the clipped masked voxels in C order, x = f32(f32(x - mn) / sd).
void normalize_ct2(Array3<float>& x, const IntensityStats& s);

/// Any other scheme (GenericPreprocessor "nonCT"). Without a mask: mn/sd = float32 mean/std of the whole channel,
/// x = f32(f32(x - mn) / f32(double(sd) + 1e-8)). With `seg_for_mask` (same shape): the same over the voxels with
/// seg >= 0 only, every other voxel set to 0.
void normalize_nonct(Array3<float>& x, const Array3<float>* seg_for_mask);

}  // namespace amosprep
