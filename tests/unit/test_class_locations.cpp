// class_locations: spec §9.2 example and a larger case (a class with N > 1,000,000, so k = ceil(0.01 N) > 10000),
// golden values from numpy 1.24.2 running nnU-Net's loop (argwhere + RandomState(1234).choice), embedded.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "amosprep/class_locations.hpp"

using namespace amosprep;

namespace {
using Rows = std::vector<std::array<int64_t, 3>>;

// sum over rows t of (t + 1) * (z * 1e6 + y * 1e3 + x), modulo 2^64 (same as the numpy uint64 computation).
uint64_t row_checksum(const Rows& rows) {
  uint64_t sum = 0;
  for (size_t t = 0; t < rows.size(); ++t) {
    const uint64_t key = static_cast<uint64_t>(rows[t][0]) * 1000000u + static_cast<uint64_t>(rows[t][1]) * 1000u +
                         static_cast<uint64_t>(rows[t][2]);
    sum += key * (t + 1);
  }
  return sum;
}

Array3<float> spec_example_seg() {
  Array3<float> s({4, 5, 6}, 0.0f);
  for (int z = 1; z < 3; ++z)
    for (int y = 1; y < 4; ++y)
      for (int x = 2; x < 5; ++x) s(z, y, x) = 1;
  s(0, 0, 0) = 2;
  s(3, 4, 5) = -1;
  return s;
}
}  // namespace

TEST(ClassLocations, SpecExample) {
  const ClassLocations cl = sample_class_locations(spec_example_seg(), {1, 10, 2});
  ASSERT_EQ(cl.classes, (std::vector<int64_t>{1, 10, 2}));
  ASSERT_EQ(cl.coords.size(), 3u);
  const Rows expect1 = {{2, 1, 4}, {1, 2, 2}, {2, 3, 4}, {2, 1, 3}, {2, 2, 3}, {2, 2, 4}, {1, 1, 2}, {1, 1, 4}, {2, 3, 3},
                        {1, 3, 3}, {1, 1, 3}, {2, 1, 2}, {1, 3, 4}, {1, 2, 3}, {2, 2, 2}, {1, 2, 4}, {1, 3, 2}, {2, 3, 2}};
  EXPECT_EQ(cl.coords[0], expect1);
  EXPECT_TRUE(cl.coords[1].empty());
  EXPECT_EQ(cl.coords[2], (Rows{{0, 0, 0}}));
}

TEST(ClassLocations, PythonValueIsDictOfArraysAndEmptyLists) {
  const py::Value v = class_locations_to_py(sample_class_locations(spec_example_seg(), {1, 10, 2}));
  ASSERT_TRUE(v.is<py::Dict>());
  const auto& d = v.as<py::Dict>();
  EXPECT_FALSE(d.ordered);
  ASSERT_EQ(d.items.size(), 3u);
  EXPECT_EQ(d.items[0].first, py::Value(int64_t{1}));
  EXPECT_EQ(d.items[1].first, py::Value(int64_t{10}));
  EXPECT_EQ(d.items[2].first, py::Value(int64_t{2}));
  ASSERT_TRUE(d.items[0].second.is<py::NdArray>());
  const auto& a = d.items[0].second.as<py::NdArray>();
  EXPECT_EQ(a.dtype, py::DType::i8);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{18, 3}));
  ASSERT_EQ(a.bytes.size(), 18u * 3u * 8u);
  const auto* first = reinterpret_cast<const int64_t*>(a.bytes.data());
  EXPECT_EQ(first[0], 2);
  EXPECT_EQ(first[1], 1);
  EXPECT_EQ(first[2], 4);
  ASSERT_TRUE(d.items[1].second.is<py::List>());
  EXPECT_TRUE(d.items[1].second.as<py::List>().items.empty());
  ASSERT_TRUE(d.items[2].second.is<py::NdArray>());
  EXPECT_EQ(d.items[2].second.as<py::NdArray>().shape, (std::vector<int64_t>{1, 3}));
}

TEST(ClassLocations, LargeClassGetsOnePercentAndGeneratorIsSharedAcrossClasses) {
  // numpy: seg (64,128,160): 1 where (131z + 71y + 37x) % 97 < 82; else 2 where (x+y+z) % 5 == 0; else 5 where
  // z < 3; then -1 where x == 0; seg[7,9,11] = 12. Classes visited [1, 3, 2, 12, 5].
  Array3<float> seg({64, 128, 160}, 0.0f);
  for (int64_t z = 0; z < 64; ++z)
    for (int64_t y = 0; y < 128; ++y)
      for (int64_t x = 0; x < 160; ++x) {
        float v = 0;
        if ((z * 131 + y * 71 + x * 37) % 97 < 82) v = 1;
        else if ((x + y + z) % 5 == 0) v = 2;
        else if (z < 3) v = 5;
        if (x == 0) v = -1;
        seg(z, y, x) = v;
      }
  seg(7, 9, 11) = 12;
  const ClassLocations cl = sample_class_locations(seg, {1, 3, 2, 12, 5});
  ASSERT_EQ(cl.classes, (std::vector<int64_t>{1, 3, 2, 12, 5}));

  const Rows& c1 = cl.coords[0];  // N = 1101105 -> k = ceil(11011.05) = 11012
  ASSERT_EQ(c1.size(), 11012u);
  EXPECT_EQ(Rows(c1.begin(), c1.begin() + 4), (Rows{{54, 57, 122}, {0, 111, 86}, {13, 15, 72}, {29, 103, 87}}));
  EXPECT_EQ(Rows(c1.end() - 2, c1.end()), (Rows{{46, 59, 4}, {16, 21, 1}}));
  EXPECT_EQ(row_checksum(c1), 1913518907455765ull);

  EXPECT_TRUE(cl.coords[1].empty());

  const Rows& c2 = cl.coords[2];  // N = 40272 -> k = 10000
  ASSERT_EQ(c2.size(), 10000u);
  EXPECT_EQ(Rows(c2.begin(), c2.begin() + 4), (Rows{{45, 73, 112}, {55, 69, 121}, {51, 65, 4}, {37, 92, 46}}));
  EXPECT_EQ(Rows(c2.end() - 2, c2.end()), (Rows{{31, 11, 8}, {29, 36, 90}}));
  EXPECT_EQ(row_checksum(c2), 1569114374541322ull);

  EXPECT_EQ(cl.coords[3], (Rows{{7, 9, 11}}));

  const Rows& c5 = cl.coords[4];  // N = 7568 -> k = N
  ASSERT_EQ(c5.size(), 7568u);
  EXPECT_EQ(Rows(c5.begin(), c5.begin() + 4), (Rows{{2, 75, 22}, {0, 47, 80}, {2, 120, 22}, {0, 89, 133}}));
  EXPECT_EQ(Rows(c5.end() - 2, c5.end()), (Rows{{1, 77, 129}, {1, 57, 39}}));
  EXPECT_EQ(row_checksum(c5), 30638824508850ull);
}

TEST(ClassLocations, RepeatedClassKeepsPositionAndTakesTheLastDraw) {
  // numpy/Python: for c in [1, 2, 1]: d[c] = ... -> keys (1, 2); d[1] comes from the third choice, drawn again
  // from the C-order argwhere list.
  const ClassLocations cl = sample_class_locations(spec_example_seg(), {1, 2, 1});
  ASSERT_EQ(cl.classes, (std::vector<int64_t>{1, 2}));
  const Rows expect1 = {{1, 2, 3}, {2, 2, 3}, {2, 2, 4}, {2, 3, 4}, {1, 3, 4}, {1, 1, 3}, {1, 1, 2}, {2, 1, 2}, {1, 3, 3},
                        {1, 2, 2}, {2, 1, 3}, {1, 3, 2}, {1, 1, 4}, {1, 2, 4}, {2, 2, 2}, {2, 1, 4}, {2, 3, 3}, {2, 3, 2}};
  EXPECT_EQ(cl.coords[0], expect1);
  EXPECT_EQ(cl.coords[1], (Rows{{0, 0, 0}}));
}

TEST(ClassLocations, NegativeClassValue) {
  const ClassLocations cl = sample_class_locations(spec_example_seg(), {-1, 1});
  ASSERT_EQ(cl.classes, (std::vector<int64_t>{-1, 1}));
  EXPECT_EQ(cl.coords[0], (Rows{{3, 4, 5}}));
  ASSERT_EQ(cl.coords[1].size(), 18u);
  EXPECT_EQ(cl.coords[1][0], (std::array<int64_t, 3>{2, 1, 4}));
  EXPECT_EQ(cl.coords[1][17], (std::array<int64_t, 3>{2, 3, 2}));
}

TEST(ClassLocations, RepeatedSlicesGiveTheSameDrawsAsTheFullVolume) {
  // 3 distinct slices mapped to 7 output slices (as a separate-z upsampling along z produces them).
  SliceMappedVolume m;
  m.shape = {7, 20, 30};
  m.planes = Array3<float>({3, 20, 30});
  for (size_t i = 0; i < m.planes.v.size(); ++i) m.planes.v[i] = static_cast<float>((i * 7 + i / 31) % 5);
  m.plane_of = {0, 0, 1, 1, 1, 2, 2};
  const Array3<float> full = expand_slices(m);
  EXPECT_EQ(full(3, 4, 5), m.planes(1, 4, 5));
  const ClassLocations a = sample_class_locations(m, {0, 1, 2, 3, 4, 9});
  const ClassLocations b = sample_class_locations(full, {0, 1, 2, 3, 4, 9});
  EXPECT_EQ(a.classes, b.classes);
  ASSERT_EQ(a.coords.size(), 6u);
  EXPECT_EQ(a.coords, b.coords);
  EXPECT_FALSE(a.coords[1].empty());
  EXPECT_TRUE(a.coords[5].empty());
  // int8 labels (what the pipeline keeps for compact crops) draw the same locations
  SliceMappedLabels l;
  l.shape = m.shape;
  l.plane_of = m.plane_of;
  l.planes = Array3<int8_t>(m.planes.shape);
  for (size_t i = 0; i < l.planes.v.size(); ++i) l.planes.v[i] = static_cast<int8_t>(m.planes.v[i]);
  const ClassLocations c = sample_class_locations(l, {0, 1, 2, 3, 4, 9});
  EXPECT_EQ(c.classes, b.classes);
  EXPECT_EQ(c.coords, b.coords);
}

TEST(ClassLocations, SparseInt8LabelsSkippingBackgroundDrawTheSameAsFloat) {
  // Mostly background with short runs that straddle the 32-byte blocks and the slice ends (41 * 37 voxels per
  // slice is not a multiple of 32); background is not a class, so zero blocks are skipped in the int8 path.
  SliceMappedLabels l;
  l.shape = {5, 41, 37};
  l.plane_of = {0, 1, 2, 3, 4};
  l.planes = Array3<int8_t>(l.shape);
  SliceMappedVolume m;
  m.shape = l.shape;
  m.plane_of = l.plane_of;
  m.planes = Array3<float>(l.shape);
  for (size_t i = 0; i < l.planes.v.size(); ++i) {
    int8_t v = 0;
    if (i % 97 >= 30 && i % 97 < 34) v = 1;  // runs across a block boundary
    if (i % 389 == 0) v = 5;
    if (i % 1517 == 1516) v = 2;  // the last voxel of every slice
    l.planes.v[i] = v;
    m.planes.v[i] = v;
  }
  const std::vector<int64_t> classes = {1, 2, 5, 7};
  const ClassLocations a = sample_class_locations(l, classes);
  const ClassLocations b = sample_class_locations(m, classes);
  ASSERT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.coords, b.coords);
  EXPECT_EQ(a.coords[1].size(), 5u);  // class 2: one voxel per slice, all drawn
  EXPECT_EQ(a.coords[1][0][1] * 37 + a.coords[1][0][2], 1516);
  EXPECT_TRUE(a.coords[3].empty());
}
