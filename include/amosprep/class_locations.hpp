#pragma once
// nnU-Net v1 `class_locations`: per class, a random sample of voxel coordinates drawn with one
// RandomState(1234) shared across classes (spec: nnunet-v1-semantics.md §6.9, vectors §9.2).
#include <array>
#include <cstdint>
#include <vector>

#include "amosprep/pyobj.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

/// The `class_locations` dict: keys in `all_classes` order (first occurrence), one coordinate list per key.
struct ClassLocations {
  std::vector<int64_t> classes;
  /// (z, y, x) rows in permutation order; an empty vector stands for Python's `[]` (class absent).
  std::vector<std::vector<std::array<int64_t, 3>>> coords;
};

/// For each c in all_classes (in order): L = np.argwhere(seg == c); if L is empty, []; else
/// L[rs.choice(N, k, replace=False)] with k = max(min(10000, N), ceil(N * 0.01)), one RandomState(seed) for the
/// whole call. The seg is scanned once (in parallel) to bucket voxel indices per class.
ClassLocations sample_class_locations(const Array3<float>& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed = 1234);
/// The same for a volume with repeated slices (the scan follows seg.slice(z); results equal those of the full
/// volume).
ClassLocations sample_class_locations(const SliceMappedVolume& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed = 1234);
/// The same for int8 labels (results equal those of the float32 volume with the same values).
ClassLocations sample_class_locations(const SliceMappedLabels& seg, const std::vector<int64_t>& all_classes,
                                      uint32_t seed = 1234);

/// dict{int: (k, 3) int64 ndarray, or [] for an absent class}, as nnU-Net pickles it.
py::Value class_locations_to_py(const ClassLocations& locations);

}  // namespace amosprep
