#include "amosprep/np_reductions.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace amosprep {

namespace {

// numpy's default ufunc buffer: a reduction is fed to the add loop in blocks of this many elements.
constexpr int64_t kUfuncBuffer = 8192;
// Below this many elements the chunk sums are computed on the calling thread.
constexpr int64_t kParallelThreshold = int64_t(1) << 20;

// numpy's pairwise_sum for float32, every addition rounded to float32.
float pairwise_f32(const float* a, int64_t n) {
  if (n < 8) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += a[i];
    return acc;
  }
  if (n <= 128) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    const int64_t full = n - n % 8;
    for (int64_t i = 8; i < full; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    float acc = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (int64_t i = full; i < n; ++i) acc += a[i];
    return acc;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return pairwise_f32(a, half) + pairwise_f32(a + half, n - half);
}

// Sum of the squared deviations f32(f32(v - m)^2), reduced exactly like numpy reduces the temporary array.
float squared_deviation_chunk(const float* v, int64_t n, float m, float* scratch) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = v[i] - m;
    scratch[i] = d * d;
  }
  return pairwise_f32(scratch, n);
}

// Sequential float32 accumulation of per-chunk values, the only order-dependent step.
float accumulate_chunks(const std::vector<float>& chunk_sums) {
  float acc = 0.0f;
  for (float c : chunk_sums) acc += c;
  return acc;
}

int64_t chunk_count(int64_t n) { return (n + kUfuncBuffer - 1) / kUfuncBuffer; }

float sum_of_squared_deviations(const float* v, int64_t n, float m) {
  const int64_t chunks = chunk_count(n);
  std::vector<float> sums(static_cast<size_t>(chunks));
#pragma omp parallel if (n >= kParallelThreshold)
  {
    std::vector<float> scratch(static_cast<size_t>(kUfuncBuffer));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t begin = c * kUfuncBuffer;
      sums[static_cast<size_t>(c)] =
          squared_deviation_chunk(v + begin, std::min(kUfuncBuffer, n - begin), m, scratch.data());
    }
  }
  return accumulate_chunks(sums);
}

// Places the order statistics `wanted` (sorted ascending, unique, inside [first, last)) at their sorted positions
// in v, like a partial sort restricted to those ranks.
template <class T>
void select_ranks(std::vector<T>& v, int64_t first, int64_t last, const int64_t* wanted, size_t count) {
  if (count == 0 || first >= last) return;
  const size_t mid = count / 2;
  const int64_t k = wanted[mid];
  std::nth_element(v.begin() + first, v.begin() + k, v.begin() + last);
  select_ranks(v, first, k, wanted, mid);
  select_ranks(v, k + 1, last, wanted + mid + 1, count - mid - 1);
}

// The two ranks numpy's linear percentile reads, and the interpolation weight.
struct PercentileRanks {
  int64_t lo, hi;
  double gamma;
};

PercentileRanks percentile_ranks(int64_t n, double q) {
  const double virtual_index = static_cast<double>(n - 1) * (q / 100.0);
  const double lo_d = std::floor(virtual_index);
  PercentileRanks r;
  r.gamma = virtual_index - lo_d;
  if (virtual_index >= static_cast<double>(n - 1)) {
    r.lo = r.hi = n - 1;
  } else {
    r.lo = static_cast<int64_t>(lo_d);
    r.hi = std::min(r.lo + 1, n - 1);
  }
  return r;
}

bool g_counting_selection = true;

// The values at `ranks` (ascending) of a sample of integers in [mn, mx] by counting them: the same values a
// selection finds. False (nothing done) when some value is not an integer, is -0.0 or NaN, or the range is too
// wide for a count table.
bool ranks_by_counting(const std::vector<float>& v, float mn, float mx, const std::vector<int64_t>& ranks,
                       std::vector<float>& values) {
  const int64_t n = static_cast<int64_t>(v.size());
  constexpr float kExactInt = 16777216.0f;  // 2^24: every integer up to here is a float
  if (!(mn >= -kExactInt && mx <= kExactInt) || n >= (int64_t{1} << 32)) return false;
  const int64_t base = static_cast<int64_t>(mn), range = static_cast<int64_t>(mx) - base + 1;
  if (static_cast<float>(base) != mn || range > std::max<int64_t>(int64_t{1} << 16, n)) return false;
  std::vector<uint32_t> count(static_cast<size_t>(range), 0);
  bool integral = true;
  for (int64_t j = 0; j < n; ++j) {
    const float x = v[static_cast<size_t>(j)];
    const bool inside = x >= mn && x <= mx;  // false for NaN
    const float xc = inside ? x : mn;
    const int64_t i = static_cast<int64_t>(xc);
    integral &= inside & (static_cast<float>(i) == xc) & !(xc == 0.0f && std::signbit(xc));
    ++count[static_cast<size_t>(i - base)];
  }
  if (!integral) return false;
  values.resize(ranks.size());
  int64_t below = 0;  // sample values in the bins before `b`
  size_t r = 0;
  for (int64_t b = 0; b < range && r < ranks.size(); ++b) {
    below += count[static_cast<size_t>(b)];
    while (r < ranks.size() && ranks[r] < below) values[r++] = static_cast<float>(base + b);
  }
  return r == ranks.size();
}

// numpy's _lerp: the difference is taken in the array dtype, the interpolation in float64.
template <class T>
double lerp_percentile(T lo_value, T hi_value, double gamma) {
  const T diff = hi_value - lo_value;
  if (gamma >= 0.5) return static_cast<double>(hi_value) - static_cast<double>(diff) * (1.0 - gamma);
  return static_cast<double>(lo_value) + static_cast<double>(diff) * gamma;
}

template <class T>
double percentile_of(std::vector<T>& v, double q) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const PercentileRanks r = percentile_ranks(n, q);
  const int64_t ranks[2] = {r.lo, r.hi};
  select_ranks(v, 0, n, ranks, r.lo == r.hi ? 1 : 2);
  return lerp_percentile(v[static_cast<size_t>(r.lo)], v[static_cast<size_t>(r.hi)], r.gamma);
}

}  // namespace

float np_sum_f32(const float* v, int64_t n) {
  if (n <= 0) return 0.0f;
  const int64_t chunks = chunk_count(n);
  std::vector<float> sums(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kUfuncBuffer;
    sums[static_cast<size_t>(c)] = pairwise_f32(v + begin, std::min(kUfuncBuffer, n - begin));
  }
  return accumulate_chunks(sums);
}

float np_mean_f32(const float* v, int64_t n) {
  if (n <= 0) return std::numeric_limits<float>::quiet_NaN();
  return static_cast<float>(static_cast<double>(np_sum_f32(v, n)) / static_cast<double>(n));
}

float np_std_f32(const float* v, int64_t n) {
  if (n <= 0) return std::numeric_limits<float>::quiet_NaN();
  const float m = np_mean_f32(v, n);
  const float var =
      static_cast<float>(static_cast<double>(sum_of_squared_deviations(v, n, m)) / static_cast<double>(n));
  return static_cast<float>(std::sqrt(static_cast<double>(var)));
}

// numpy median: the middle order statistic, or (a + b) / 2 of the two middle ones in the array's dtype.
template <class T>
T median_of(std::vector<T> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 0) return std::numeric_limits<T>::quiet_NaN();
  if (n % 2 == 1) {
    const int64_t k = n / 2;
    select_ranks(v, 0, n, &k, 1);
    return v[static_cast<size_t>(k)];
  }
  const int64_t ranks[2] = {n / 2 - 1, n / 2};
  select_ranks(v, 0, n, ranks, 2);
  return (v[static_cast<size_t>(ranks[0])] + v[static_cast<size_t>(ranks[1])]) / T(2);
}

float np_median_f32(std::vector<float> v) { return median_of(std::move(v)); }

double np_median_f64(std::vector<double> v) { return median_of(std::move(v)); }

double np_percentile_f32(std::vector<float> v, double q) { return percentile_of(v, q); }

double np_percentile_f64(std::vector<double> v, double q) { return percentile_of(v, q); }

IntensityStats compute_intensity_stats(const std::vector<float>& sample) {
  return compute_intensity_stats(std::vector<float>(sample));
}

IntensityStats compute_intensity_stats(std::vector<float>&& sample) {
  IntensityStats s;
  const int64_t n = static_cast<int64_t>(sample.size());
  if (n == 0) {
    const float nan_f = std::numeric_limits<float>::quiet_NaN();
    const double nan_d = std::numeric_limits<double>::quiet_NaN();
    s.median = s.mean = s.sd = s.mn = s.mx = nan_f;
    s.percentile_99_5 = s.percentile_00_5 = nan_d;
    return s;
  }
  // The sums first, in the sample's order; then every order statistic needed (median and both percentiles) is
  // selected in one pass, reordering the sample itself.
  s.mean = np_mean_f32(sample.data(), n);
  s.sd = np_std_f32(sample.data(), n);
  const auto [mn, mx] = std::minmax_element(sample.begin(), sample.end());
  s.mn = *mn;
  s.mx = *mx;

  const PercentileRanks p_hi = percentile_ranks(n, 99.5);
  const PercentileRanks p_lo = percentile_ranks(n, 0.5);
  const int64_t med_lo = (n - 1) / 2, med_hi = n / 2;
  std::vector<int64_t> ranks = {p_lo.lo, p_lo.hi, med_lo, med_hi, p_hi.lo, p_hi.hi};
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::vector<float> values;
  if (!(g_counting_selection && ranks_by_counting(sample, s.mn, s.mx, ranks, values))) {
    select_ranks(sample, 0, n, ranks.data(), ranks.size());
    for (int64_t k : ranks) values.push_back(sample[static_cast<size_t>(k)]);
  }
  auto at = [&](int64_t k) {
    return values[static_cast<size_t>(std::lower_bound(ranks.begin(), ranks.end(), k) - ranks.begin())];
  };

  s.median = (n % 2 == 1) ? at(med_lo) : (at(med_lo) + at(med_hi)) / 2.0f;
  s.percentile_99_5 = lerp_percentile(at(p_hi.lo), at(p_hi.hi), p_hi.gamma);
  s.percentile_00_5 = lerp_percentile(at(p_lo.lo), at(p_lo.hi), p_lo.gamma);
  return s;
}

namespace np_reductions_detail {
void set_counting_selection(bool on) { g_counting_selection = on; }
bool counting_selection() { return g_counting_selection; }
}  // namespace np_reductions_detail

}  // namespace amosprep
