#include "amosprep/crop.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_set>

#include "amosprep/error.hpp"

namespace amosprep {

namespace {

constexpr int64_t kParallelMinVoxels = 1 << 16;

// Cell states of the cropped region during hole filling.
constexpr uint8_t kBackground = 0;  // zero in every channel, not (yet) known to reach the outside
constexpr uint8_t kForeground = 1;  // non-zero in some channel
constexpr uint8_t kOutside = 2;     // background 6-connected to the outside of the array

std::string shape_str(const Shape3& s) {
  return "(" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) + ")";
}

// Half-open bbox of the voxels that are non-zero in any channel; false when there are none. The filled mask has the
// same bbox: a hole voxel outside it would reach the array border along a straight background line.
template <class T>
bool nonzero_bbox(const std::vector<Array3<T>>& channels, std::array<std::array<int64_t, 2>, 3>& bbox) {
  const Shape3 sh = channels[0].shape;
  const int64_t ny = sh[1], nx = sh[2];
  int64_t z0 = sh[0], z1 = -1, y0 = ny, y1 = -1, x0 = nx, x1 = -1;
#pragma omp parallel for schedule(static) reduction(min : z0, y0, x0) reduction(max : z1, y1, x1) \
    if (voxel_count(sh) > kParallelMinVoxels)
  for (int64_t z = 0; z < sh[0]; ++z) {
    for (int64_t y = 0; y < ny; ++y) {
      int64_t first = nx, last = -1;
      for (const Array3<T>& ch : channels) {
        const T* row = ch.data() + (z * ny + y) * nx;
        int64_t f = 0;
        while (f < std::min(first, nx) && row[f] == T(0)) ++f;  // NaN counts as non-zero, like numpy's != 0
        if (f < first) first = f;
        if (first == nx) continue;
        int64_t l = nx - 1;
        while (l > last && row[l] == T(0)) --l;
        if (l > last) last = l;
      }
      if (last < 0) continue;
      z0 = std::min(z0, z), z1 = std::max(z1, z);
      y0 = std::min(y0, y), y1 = std::max(y1, y);
      x0 = std::min(x0, first), x1 = std::max(x1, last);
    }
  }
  if (z1 < 0) return false;
  bbox = {{{z0, z1 + 1}, {y0, y1 + 1}, {x0, x1 + 1}}};
  return true;
}

// Marks every kBackground cell reachable from the box border through 6-connected background as kOutside.
// Scanline flood fill: each popped seed is grown to its full x-run, and the four neighbouring rows get one seed
// per background segment along that run. Iterative; the stack holds seeds, not voxels.
void mark_outside(std::vector<uint8_t>& st, const Shape3& sh) {
  const int64_t nz = sh[0], ny = sh[1], nx = sh[2];
  std::vector<int64_t> stack;
  auto flood = [&](int64_t seed) {
    stack.push_back(seed);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      if (st[static_cast<size_t>(p)] != kBackground) continue;
      const int64_t row = p / nx;
      const int64_t base = row * nx;
      int64_t a = p - base, b = a;
      while (a > 0 && st[static_cast<size_t>(base + a - 1)] == kBackground) --a;
      while (b + 1 < nx && st[static_cast<size_t>(base + b + 1)] == kBackground) ++b;
      std::memset(st.data() + base + a, kOutside, static_cast<size_t>(b - a + 1));
      const int64_t z = row / ny, y = row - z * ny;
      const int64_t neighbours[4] = {y > 0 ? row - 1 : -1, y + 1 < ny ? row + 1 : -1, z > 0 ? row - ny : -1,
                                     z + 1 < nz ? row + ny : -1};
      for (int64_t nrow : neighbours) {
        if (nrow < 0) continue;
        const uint8_t* n = st.data() + nrow * nx;
        bool in_segment = false;
        for (int64_t x = a; x <= b; ++x) {
          if (n[x] == kBackground) {
            if (!in_segment) stack.push_back(nrow * nx + x);
            in_segment = true;
          } else {
            in_segment = false;
          }
        }
      }
    }
  };
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y) {
      const int64_t base = (z * ny + y) * nx;
      if (z == 0 || z == nz - 1 || y == 0 || y == ny - 1) {
        for (int64_t x = 0; x < nx; ++x)
          if (st[static_cast<size_t>(base + x)] == kBackground) flood(base + x);
      } else {
        if (st[static_cast<size_t>(base)] == kBackground) flood(base);
        if (st[static_cast<size_t>(base + nx - 1)] == kBackground) flood(base + nx - 1);
      }
    }
}

template <class T>
Array3<T> crop_array(const Array3<T>& src, const std::array<std::array<int64_t, 2>, 3>& bb) {
  const Shape3 out_shape = {bb[0][1] - bb[0][0], bb[1][1] - bb[1][0], bb[2][1] - bb[2][0]};
  Array3<T> out(out_shape);
  const int64_t rows = out_shape[0] * out_shape[1];
#pragma omp parallel for schedule(static) if (voxel_count(out_shape) > kParallelMinVoxels)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t z = r / out_shape[1], y = r - z * out_shape[1];
    std::memcpy(&out(z, y, 0), &src(z + bb[0][0], y + bb[1][0], bb[2][0]), sizeof(T) * static_cast<size_t>(out_shape[2]));
  }
  return out;
}

// np.unique of a float32 array: ascending, -0.0 merged with 0.0, NaNs collapsed into one trailing NaN.
std::vector<float> sorted_unique(const Array3<float>& a) {
  std::unordered_set<uint32_t> all;
  const int64_t n = static_cast<int64_t>(a.size());
  const float* v = a.data();
#pragma omp parallel if (n > kParallelMinVoxels)
  {
    std::unordered_set<uint32_t> seen;
    uint32_t last = 0xffffffffu;  // a NaN pattern never produced below
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      float f = v[i];
      if (f == 0.0f) f = 0.0f;
      uint32_t key;
      if (std::isnan(f)) {
        key = 0x7fc00000u;
      } else {
        std::memcpy(&key, &f, 4);
      }
      if (key == last) continue;
      last = key;
      seen.insert(key);
    }
#pragma omp critical(amosprep_crop_unique)
    all.insert(seen.begin(), seen.end());
  }
  std::vector<float> out;
  out.reserve(all.size());
  bool has_nan = false;
  for (uint32_t key : all) {
    float f;
    std::memcpy(&f, &key, 4);
    if (std::isnan(f)) has_nan = true;
    else out.push_back(f);
  }
  std::sort(out.begin(), out.end());
  if (has_nan) out.push_back(std::numeric_limits<float>::quiet_NaN());
  return out;
}

template <class TD>
void check_shapes(const std::vector<Array3<TD>>& channels, const Shape3* seg_shape) {
  if (channels.empty()) throw InputError("", "", "no image channels to crop");
  const Shape3 sh = channels[0].shape;
  for (const Array3<TD>& ch : channels) {
    if (ch.shape != sh)
      throw InputError("", "", "image channels differ in shape: " + shape_str(sh) + " vs " + shape_str(ch.shape));
    if (static_cast<int64_t>(ch.size()) != voxel_count(ch.shape))
      throw InternalError("crop_to_nonzero: channel size does not match its shape");
  }
  if (seg_shape != nullptr && *seg_shape != sh)
    throw InputError("", "", "label shape " + shape_str(*seg_shape) + " differs from image shape " + shape_str(sh));
}

template <class TD>
Shape3 find_bbox(const std::vector<Array3<TD>>& channels, std::array<std::array<int64_t, 2>, 3>& bbox) {
  if (voxel_count(channels[0].shape) == 0 || !nonzero_bbox(channels, bbox))
    throw InputError("", "", "image is all zero: nothing to crop");
  return {bbox[0][1] - bbox[0][0], bbox[1][1] - bbox[1][0], bbox[2][1] - bbox[2][0]};
}

// Crops `a` to `bb` inside its own storage: rows move towards the front (a destination never lies after its
// source), so no second buffer is touched. A box much smaller than the array is copied out instead, so that the
// kept crop does not hold the storage of the whole input.
template <class T>
void crop_in_place(Array3<T>& a, const std::array<std::array<int64_t, 2>, 3>& bb) {
  const Shape3 out_shape = {bb[0][1] - bb[0][0], bb[1][1] - bb[1][0], bb[2][1] - bb[2][0]};
  if (out_shape == a.shape) return;
  if (2 * voxel_count(out_shape) < voxel_count(a.shape)) {
    a = crop_array(a, bb);
    return;
  }
  T* base = a.data();
  const int64_t rows = out_shape[0] * out_shape[1];
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t z = r / out_shape[1], y = r - z * out_shape[1];
    std::memmove(base + r * out_shape[2], &a(z + bb[0][0], y + bb[1][0], bb[2][0]),
                 sizeof(T) * static_cast<size_t>(out_shape[2]));
  }
  a.v.resize(static_cast<size_t>(voxel_count(out_shape)));
  a.shape = out_shape;
}

// Given the cropped channels and the cropped seg (all zero without an input seg), marks -1 where the seg is 0
// outside the hole-filled non-zero mask, records np.unique of the marked seg, then resets values below -1 to 0.
template <class TD, class SegOut>
void mark_and_classify(const std::vector<Array3<TD>>& data, Array3<SegOut>& seg, std::vector<float>& classes,
                       std::vector<uint8_t>& st) {
  const Shape3 csh = seg.shape;
  const int64_t n = voxel_count(csh);
  // The filled mask restricted to the box equals a fill of the box alone with its border treated as outside:
  // every voxel outside the box is background, and all of it is connected to the array border.
  st.resize(static_cast<size_t>(n));
  uint8_t* mark = st.data();
  if (data.size() == 1) {  // the usual single CT channel: a vectorised compare
    const TD* d = data[0].data();
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
    for (int64_t i = 0; i < n; ++i) mark[i] = d[i] != TD(0) ? kForeground : kBackground;
  } else {
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
    for (int64_t i = 0; i < n; ++i) {
      bool nonzero = false;
      for (const Array3<TD>& ch : data) nonzero = nonzero || ch.v[static_cast<size_t>(i)] != TD(0);
      mark[i] = nonzero ? kForeground : kBackground;
    }
  }
  mark_outside(st, csh);

  SegOut* s = seg.data();
  if constexpr (std::is_same_v<SegOut, int8_t>) {  // marking, np.unique and the reset in one pass
    std::array<bool, 256> seen{};
#pragma omp parallel if (n > kParallelMinVoxels)
    {
      std::array<bool, 256> mine{};
      constexpr int64_t kBlock = 32;
#pragma omp for schedule(static) nowait
      for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t e = std::min(n, b + kBlock);
        // blocks of 0 labels all inside (stay 0) or all outside the filled mask (become -1): no per-voxel work
        uint8_t stays_zero = 0, becomes_minus_one = 0;
        for (int64_t i = b; i < e; ++i) {
          stays_zero |= static_cast<uint8_t>(s[i]) | static_cast<uint8_t>(mark[i] == kOutside);
          becomes_minus_one |= static_cast<uint8_t>(s[i]) | static_cast<uint8_t>(mark[i] != kOutside);
        }
        if (stays_zero == 0) {
          mine[0] = true;
          continue;
        }
        if (becomes_minus_one == 0) {
          std::memset(s + b, -1, static_cast<size_t>(e - b));
          mine[static_cast<uint8_t>(int8_t{-1})] = true;
          continue;
        }
        for (int64_t i = b; i < e; ++i) {
          int8_t v = s[i];
          if (v == 0 && mark[i] == kOutside) v = -1;
          mine[static_cast<uint8_t>(v)] = true;
          s[i] = v < -1 ? int8_t{0} : v;
        }
      }
#pragma omp critical(amosprep_crop_seen)
      for (size_t k = 0; k < 256; ++k) seen[k] = seen[k] || mine[k];
    }
    classes.clear();
    for (int v = -128; v < 128; ++v)
      if (seen[static_cast<uint8_t>(static_cast<int8_t>(v))]) classes.push_back(static_cast<float>(v));
  } else {
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
    for (int64_t i = 0; i < n; ++i)
      if (s[i] == SegOut(0) && mark[i] == kOutside) s[i] = SegOut(-1);

    classes = sorted_unique(seg);
#pragma omp parallel for schedule(static) if (n > kParallelMinVoxels)
    for (int64_t i = 0; i < n; ++i)
      if (s[i] < SegOut(-1)) s[i] = SegOut(0);
  }
}

}  // namespace

CompactCrop crop_to_nonzero(std::vector<Array3<int16_t>>&& channels, Array3<int8_t>&& seg,
                            std::vector<uint8_t>& scratch) {
  check_shapes(channels, &seg.shape);
  uint8_t sign_bits = 0;  // an OR over all labels vectorises; the offending value is looked up only on error
  for (int8_t v : seg.v) sign_bits |= static_cast<uint8_t>(v);
  if (sign_bits & 0x80u)
    for (int8_t v : seg.v)
      if (v < 0)
        throw InputError("", "", "label value " + std::to_string(static_cast<uint8_t>(v)) +
                                     " does not fit the compact crop");
  CompactCrop r;
  r.size_after_cropping = find_bbox(channels, r.bbox);
  r.data = std::move(channels);
  for (Array3<int16_t>& ch : r.data) crop_in_place(ch, r.bbox);
  r.seg = std::move(seg);
  crop_in_place(r.seg, r.bbox);
  mark_and_classify(r.data, r.seg, r.classes, scratch);
  return r;
}

CompactCrop crop_to_nonzero(const std::vector<Array3<int16_t>>& channels, const Array3<uint8_t>& seg) {
  Array3<int8_t> seg8;
  seg8.shape = seg.shape;
  seg8.v.resize(seg.size());
  for (size_t i = 0; i < seg.size(); ++i) {
    if (seg.v[i] > 127)
      throw InputError("", "", "label value " + std::to_string(seg.v[i]) + " does not fit the compact crop");
    seg8.v[i] = static_cast<int8_t>(seg.v[i]);
  }
  std::vector<uint8_t> scratch;
  return crop_to_nonzero(std::vector<Array3<int16_t>>(channels), std::move(seg8), scratch);
}

CropResult crop_to_nonzero(const std::vector<Array3<float>>& channels, const Array3<float>* seg) {
  check_shapes(channels, seg != nullptr ? &seg->shape : nullptr);
  CropResult r;
  r.size_after_cropping = find_bbox(channels, r.bbox);
  r.data.reserve(channels.size());
  for (const Array3<float>& ch : channels) r.data.push_back(crop_array(ch, r.bbox));
  if (seg != nullptr) r.seg = crop_array(*seg, r.bbox);
  else r.seg = Array3<float>(r.size_after_cropping, 0.0f);
  std::vector<uint8_t> scratch;
  mark_and_classify(r.data, r.seg, r.classes, scratch);
  return r;
}

}  // namespace amosprep
