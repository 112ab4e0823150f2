#pragma once
// 3-D arrays in numpy C order (z, y, x) and image geometry with nnU-Net's (SimpleITK) conventions.
#include <array>
#include <cstddef>
#include <cstdint>
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
