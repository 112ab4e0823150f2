#pragma once
// 3-D arrays in numpy C order (z, y, x) and image geometry with nnU-Net's (SimpleITK) conventions.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace amosprep {

/// Shape (z, y, x), slowest axis first, like numpy's C order.
using Shape3 = std::array<int64_t, 3>;

inline int64_t voxel_count(const Shape3& s) { return s[0] * s[1] * s[2]; }

/// A dense 3-D array in C order: element (z, y, x) sits at (z*ny + y)*nx + x.
template <class T>
struct Array3 {
  Shape3 shape{0, 0, 0};
  std::vector<T> v;

  Array3() = default;
  explicit Array3(const Shape3& s, T fill = T{}) : shape(s), v(static_cast<size_t>(voxel_count(s)), fill) {}
  size_t size() const { return v.size(); }
  T* data() { return v.data(); }
  const T* data() const { return v.data(); }
  size_t index(int64_t z, int64_t y, int64_t x) const {
    return static_cast<size_t>((z * shape[1] + y) * shape[2] + x);
  }
  T& operator()(int64_t z, int64_t y, int64_t x) { return v[index(z, y, x)]; }
  const T& operator()(int64_t z, int64_t y, int64_t x) const { return v[index(z, y, x)]; }
};

/// A (z, y, x) volume whose z slices may repeat: slice z is slice `plane_of[z]` of `planes`. The separate-z
/// resampling (nearest along z) gives this without copying the repeated slices; a plain volume has plane_of[z] = z.
template <class T>
struct SliceMapped {
  Shape3 shape{0, 0, 0};          ///< the full (z, y, x) shape
  Array3<T> planes;               ///< the distinct slices, shape (n, y, x)
  std::vector<int64_t> plane_of;  ///< for each z, its slice in `planes`

  const T* slice(int64_t z) const { return planes.data() + plane_of[static_cast<size_t>(z)] * shape[1] * shape[2]; }
  /// One pointer per z slice (y * x contiguous values each).
  std::vector<const T*> slice_pointers() const {
    std::vector<const T*> p(static_cast<size_t>(shape[0]));
    for (int64_t z = 0; z < shape[0]; ++z) p[static_cast<size_t>(z)] = slice(z);
    return p;
  }
  bool repeats_slices() const { return planes.shape[0] != shape[0]; }
};
/// Image channels (float32).
using SliceMappedVolume = SliceMapped<float>;
/// Label maps whose values fit int8 (a quarter of the float32 memory).
using SliceMappedLabels = SliceMapped<int8_t>;

/// Takes `a` over as a SliceMapped volume with one plane per slice (no copy).
template <class T>
SliceMapped<T> slice_mapped(Array3<T>&& a) {
  SliceMapped<T> m;
  m.shape = a.shape;
  m.plane_of.resize(static_cast<size_t>(a.shape[0]));
  for (int64_t z = 0; z < a.shape[0]; ++z) m.plane_of[static_cast<size_t>(z)] = z;
  m.planes = std::move(a);
  return m;
}

/// The full volume of `m` (repeated slices copied out).
template <class T>
Array3<T> expand_slices(const SliceMapped<T>& m) {
  Array3<T> a;
  a.shape = m.shape;
  a.v.resize(static_cast<size_t>(voxel_count(m.shape)));
  const int64_t plane = m.shape[1] * m.shape[2];
  for (int64_t z = 0; z < m.shape[0]; ++z) {
    const T* s = m.slice(z);
    std::copy(s, s + plane, a.v.begin() + z * plane);
  }
  return a;
}

/// Geometry of a NIfTI image as SimpleITK reports it (what nnU-Net stores in its properties).
struct Geometry {
  Shape3 shape{0, 0, 0};                 ///< (z, y, x) voxel counts
  std::array<double, 3> spacing{1, 1, 1};  ///< (z, y, x) spacing: ITK spacing reversed (float32 pixdim widened)
  std::array<double, 3> itk_origin{0, 0, 0};   ///< ITK (x, y, z), LPS
  std::array<double, 3> itk_spacing{1, 1, 1};  ///< ITK (x, y, z)
  std::array<double, 9> itk_direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  ///< row-major 3x3, LPS
};

/// One image (a single modality channel or a label map) as float32 voxels plus geometry.
struct Image {
  Array3<float> voxels;
  Geometry geom;
};

}  // namespace amosprep
