#pragma once
// numpy 1.24-exact reductions: float32 pairwise sums in 8192-element chunks, mean, std, median, percentile.
// (spec: nnunet-v1-semantics.md §7.2, §7.3)
#include <cstdint>
#include <vector>

namespace amosprep {

/// The seven intensity statistics nnU-Net's DatasetAnalyzer stores per case and globally (§4).
/// median/mean/sd/mn/mx are float32 values; the percentiles are float64. All NaN for an empty sample.
struct IntensityStats {
  float median = 0, mean = 0, sd = 0, mn = 0, mx = 0;
  double percentile_99_5 = 0, percentile_00_5 = 0;
};

/// numpy float32 `sum` of a contiguous vector (pairwise inside 8192-element chunks, chunks added sequentially).
float np_sum_f32(const float* v, int64_t n);
/// numpy float32 `mean`.
float np_mean_f32(const float* v, int64_t n);
/// numpy float32 `std` (ddof = 0).
float np_std_f32(const float* v, int64_t n);
/// numpy `median` of float32 values (uses a scratch copy).
float np_median_f32(std::vector<float> v);
/// numpy `percentile(v, q)` with the default linear method, float32 input, float64 result (uses a scratch copy).
double np_percentile_f32(std::vector<float> v, double q);
/// numpy `percentile(v, q)` of float64 values.
double np_percentile_f64(std::vector<double> v, double q);
/// numpy `median` of float64 values ((a+b)/2 for even n).
double np_median_f64(std::vector<double> v);
/// All seven statistics of a sample, exactly as nnU-Net computes them. Makes one scratch copy (for the order
/// statistics, O(n) selection); the chunk sums run in parallel (OpenMP) without changing any bit.
IntensityStats compute_intensity_stats(const std::vector<float>& sample);
/// The same, reordering `sample` in place instead of a copy.
IntensityStats compute_intensity_stats(std::vector<float>&& sample);

namespace np_reductions_detail {
/// Order statistics of integral samples in a narrow range (CT values) by counting instead of selection (default
/// on; the values are the same). Tests switch it off to compare. Not thread-safe: set it before computing.
void set_counting_selection(bool on);
bool counting_selection();
}  // namespace np_reductions_detail

}  // namespace amosprep
