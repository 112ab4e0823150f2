#include "amosprep/class_locations.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "amosprep/np_random.hpp"

namespace amosprep {

namespace {

constexpr int64_t kNumSamples = 10000;
constexpr double kMinPercentCoverage = 0.01;
constexpr int64_t kParallelMinVoxels = 1 << 18;  // below this, thread start-up costs more than the scan

// Maps a seg value to its bucket (distinct float32 class value) or -1. numpy compares the float32 seg with the
// Python int class in float32, so classes are keyed by (float)c.
class BucketOf {
 public:
  explicit BucketOf(const std::vector<float>& bucket_values) : values_(bucket_values) {
    bool integral = !values_.empty();
    for (float v : values_) integral = integral && std::fabs(v) <= 16777216.0f && std::nearbyint(v) == v;
    if (!integral) return;
    float lo = values_[0], hi = values_[0];
    for (float v : values_) lo = std::min(lo, v), hi = std::max(hi, v);
    if (static_cast<int64_t>(hi) - static_cast<int64_t>(lo) > (1 << 20)) return;
    use_table_ = true;
    lo_ = static_cast<int64_t>(lo);
    flo_ = lo;
    fhi_ = hi;
    table_.assign(static_cast<size_t>(static_cast<int64_t>(hi) - lo_ + 1), -1);
    for (size_t b = 0; b < values_.size(); ++b) table_[static_cast<size_t>(static_cast<int64_t>(values_[b]) - lo_)] =
        static_cast<int32_t>(b);
  }

  int32_t operator()(float v) const {
    if (use_table_) {
      if (!(v >= flo_ && v <= fhi_)) return -1;  // also rejects NaN
      const auto iv = static_cast<int64_t>(v);
      if (static_cast<float>(iv) != v) return -1;
      return table_[static_cast<size_t>(iv - lo_)];
    }
    for (size_t b = 0; b < values_.size(); ++b)
      if (v == values_[b]) return static_cast<int32_t>(b);
    return -1;
  }

 private:
  std::vector<float> values_;
  bool use_table_ = false;
  int64_t lo_ = 0;
  float flo_ = 0, fhi_ = 0;
  std::vector<int32_t> table_;
};

// Linear voxel indices per bucket, each in C order (what np.argwhere returns, flattened). Count pass, then a fill
// pass at per-slice offsets, both parallel over z; the result does not depend on the thread count.
// int8 labels: a 256-entry table of BucketOf's answers; other types ask BucketOf.
template <class T>
class BucketLookup {
 public:
  explicit BucketLookup(const BucketOf& b) : b_(b) {
    if constexpr (std::is_same_v<T, int8_t>) {
      for (int v = -128; v < 128; ++v) lut_[static_cast<uint8_t>(static_cast<int8_t>(v))] = b(static_cast<float>(v));
      zero_has_no_bucket_ = lut_[0] < 0;
    }
  }
  // True when value 0 maps to no bucket: then runs of zeros (background) can be skipped wholesale.
  bool zero_has_no_bucket() const { return zero_has_no_bucket_; }
  int32_t operator()(T v) const {
    if constexpr (std::is_same_v<T, int8_t>)
      return lut_[static_cast<uint8_t>(v)];
    else
      return b_(static_cast<float>(v));
  }

 private:
  const BucketOf& b_;
  std::array<int32_t, 256> lut_{};
  bool zero_has_no_bucket_ = false;
};

constexpr int64_t kZeroBlock = 32;  // bytes tested at once for all-background

inline bool all_zero_block(const int8_t* p) {
  uint64_t w[4];
  std::memcpy(w, p, sizeof w);
  return (w[0] | w[1] | w[2] | w[3]) == 0;
}

// Calls visit(t, bucket) for every voxel t of one slice that falls in a bucket, in ascending t. Blocks of int8
// zeros are skipped when 0 has no bucket (most of a label volume is background).
template <class T, class Visit>
inline void for_each_bucketed(const T* p, int64_t n, const BucketLookup<T>& bucket_of, Visit&& visit) {
  int64_t t = 0;
  if constexpr (std::is_same_v<T, int8_t>) {
    if (bucket_of.zero_has_no_bucket()) {
      for (; t + kZeroBlock <= n; t += kZeroBlock) {
        if (all_zero_block(p + t)) continue;
        for (int64_t u = t; u < t + kZeroBlock; ++u) {
          const int32_t b = bucket_of(p[u]);
          if (b >= 0) visit(u, b);
        }
      }
    }
  }
  for (; t < n; ++t) {
    const int32_t b = bucket_of(p[t]);
    if (b >= 0) visit(t, b);
  }
}

template <class Idx, class T>
std::vector<std::vector<Idx>> bucket_voxels(const std::vector<const T*>& slices, const Shape3& shape,
                                            const BucketOf& bucket_of_value, size_t n_buckets) {
  const BucketLookup<T> bucket_of(bucket_of_value);
  const int64_t nz = shape[0];
  const int64_t slice = shape[1] * shape[2];
  std::vector<int64_t> counts(static_cast<size_t>(nz) * n_buckets, 0);
#pragma omp parallel for schedule(static) if (nz * slice > kParallelMinVoxels)
  for (int64_t z = 0; z < nz; ++z) {
    int64_t* c = counts.data() + static_cast<size_t>(z) * n_buckets;
    for_each_bucketed(slices[static_cast<size_t>(z)], slice, bucket_of, [c](int64_t, int32_t b) { ++c[b]; });
  }
  std::vector<std::vector<Idx>> buckets(n_buckets);
  std::vector<int64_t> offsets(counts.size());
  for (size_t b = 0; b < n_buckets; ++b) {
    int64_t run = 0;
    for (int64_t z = 0; z < nz; ++z) {
      offsets[static_cast<size_t>(z) * n_buckets + b] = run;
      run += counts[static_cast<size_t>(z) * n_buckets + b];
    }
    buckets[b].resize(static_cast<size_t>(run));
  }
  std::vector<Idx*> base(n_buckets);
  for (size_t b = 0; b < n_buckets; ++b) base[b] = buckets[b].data();
#pragma omp parallel for schedule(static) if (nz * slice > kParallelMinVoxels)
  for (int64_t z = 0; z < nz; ++z) {
    std::vector<int64_t> pos(offsets.begin() + static_cast<int64_t>(static_cast<size_t>(z) * n_buckets),
                             offsets.begin() + static_cast<int64_t>(static_cast<size_t>(z + 1) * n_buckets));
    const int64_t first = z * slice;
    for_each_bucketed(slices[static_cast<size_t>(z)], slice, bucket_of, [&](int64_t t, int32_t b) {
      base[static_cast<size_t>(b)][pos[static_cast<size_t>(b)]++] = static_cast<Idx>(first + t);
    });
  }
  return buckets;
}

template <class Idx, class T>
ClassLocations sample_impl(const std::vector<const T*>& slices, const Shape3& shape,
                           const std::vector<int64_t>& all_classes, uint32_t seed) {
  // Distinct float32 class values (two int classes that round to the same float share a bucket).
  std::vector<float> bucket_values;
  std::vector<size_t> bucket_of_class(all_classes.size());
  for (size_t i = 0; i < all_classes.size(); ++i) {
    const auto fc = static_cast<float>(all_classes[i]);
    size_t b = 0;
    while (b < bucket_values.size() && bucket_values[b] != fc) ++b;
    if (b == bucket_values.size()) bucket_values.push_back(fc);
    bucket_of_class[i] = b;
  }
  std::vector<std::vector<Idx>> buckets = bucket_voxels<Idx, T>(slices, shape, BucketOf(bucket_values), bucket_values.size());
  std::vector<int> uses_left(bucket_values.size(), 0);
  for (size_t b : bucket_of_class) ++uses_left[b];

  const int64_t ny = shape[1], nx = shape[2];
  LegacyRandomState rs(seed);
  ClassLocations out;
  for (size_t i = 0; i < all_classes.size(); ++i) {
    const size_t b = bucket_of_class[i];
    std::vector<Idx>& bucket = buckets[b];
    const auto n = static_cast<int64_t>(bucket.size());
    std::vector<std::array<int64_t, 3>> rows;
    if (n > 0) {
      const int64_t k = std::max(std::min(kNumSamples, n),
                                 static_cast<int64_t>(std::ceil(static_cast<double>(n) * kMinPercentCoverage)));
      // Shuffling L itself with the permutation's swaps yields L[permutation(n)]. Keep C order if reused.
      std::vector<Idx> copy;
      Idx* work = bucket.data();
      if (--uses_left[b] > 0) {
        copy = bucket;
        work = copy.data();
      }
      rs.shuffle_in_place(work, n);
      rows.resize(static_cast<size_t>(k));
      for (int64_t t = 0; t < k; ++t) {
        const auto lin = static_cast<int64_t>(work[t]);
        const int64_t row = lin / nx;
        rows[static_cast<size_t>(t)] = {row / ny, row % ny, lin % nx};
      }
    }
    // Python dict semantics: a repeated key keeps its first position and takes the newest value.
    size_t slot = 0;
    while (slot < out.classes.size() && out.classes[slot] != all_classes[i]) ++slot;
    if (slot == out.classes.size()) {
      out.classes.push_back(all_classes[i]);
      out.coords.push_back(std::move(rows));
    } else {
      out.coords[slot] = std::move(rows);
    }
  }
  return out;
}

template <class T>
ClassLocations sample_slices(const std::vector<const T*>& slices, const Shape3& shape,
                             const std::vector<int64_t>& all_classes, uint32_t seed) {
  if (voxel_count(shape) <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    return sample_impl<uint32_t>(slices, shape, all_classes, seed);
  return sample_impl<int64_t>(slices, shape, all_classes, seed);
}

}  // namespace

ClassLocations sample_class_locations(const Array3<float>& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed) {
  if (static_cast<int64_t>(seg.size()) != voxel_count(seg.shape))
    throw std::invalid_argument("sample_class_locations: seg size does not match its shape");
  std::vector<const float*> slices(static_cast<size_t>(seg.shape[0]));
  for (int64_t z = 0; z < seg.shape[0]; ++z) slices[static_cast<size_t>(z)] = seg.data() + z * seg.shape[1] * seg.shape[2];
  return sample_slices(slices, seg.shape, all_classes, seed);
}

ClassLocations sample_class_locations(const SliceMappedVolume& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed) {
  return sample_slices(seg.slice_pointers(), seg.shape, all_classes, seed);
}

ClassLocations sample_class_locations(const SliceMappedLabels& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed) {
  return sample_slices(seg.slice_pointers(), seg.shape, all_classes, seed);
}

py::Value class_locations_to_py(const ClassLocations& locations) {
  std::vector<std::pair<py::Value, py::Value>> items;
  items.reserve(locations.classes.size());
  for (size_t i = 0; i < locations.classes.size(); ++i) {
    const auto& rows = locations.coords[i];
    py::Value key(locations.classes[i]);
    if (rows.empty()) {
      items.emplace_back(key, py::list({}));
      continue;
    }
    std::vector<int64_t> flat;
    flat.reserve(rows.size() * 3);
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    items.emplace_back(key, py::nd_i8(flat, {static_cast<int64_t>(rows.size()), 3}));
  }
  return py::dict(std::move(items));
}

}  // namespace amosprep
