// Resampling: spec test vectors (§9.4-9.9) and golden hashes of outputs of the real scipy 1.10.1 /
// skimage 0.19.3 (and the nnU-Net glue of docs/nnunet-v1-reference) for inputs built from integer formulas.
//
// Golden generation (run once, /usr/bin/python3): inputs are the formulas below (noise, data_a/b/c, seg_a), the
// outputs come from skimage.transform.resize(x.astype(float64), shape, order, mode='edge', anti_aliasing=False)
// cast to float32, batchgenerators' resize_segmentation semantics on top of it, and the separate-z glue of
// nnunet_resample.py. hash = sum_i bits_f32(out[i]) * (2i + 1) mod 2^64 over C order.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "amosprep/error.hpp"
#include "amosprep/isa.hpp"
#include "amosprep/resample.hpp"

using namespace amosprep;

namespace {

uint64_t hash_f32(const Array3<float>& a) {
  uint64_t h = 0;
  for (size_t i = 0; i < a.v.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &a.v[i], 4);
    h += static_cast<uint64_t>(b) * (2 * static_cast<uint64_t>(i) + 1);
  }
  return h;
}

int64_t noise(int64_t z, int64_t y, int64_t x, int64_t mod = 2001, int64_t off = 1000) {
  return ((z * 7919 + y * 104729 + x * 1299709 + z * y * 31 + y * x * 17 + z * x * 13) % mod) - off;
}

template <class F>
Array3<float> make(const Shape3& s, F f) {
  Array3<float> a(s);
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[2]; ++x) a(z, y, x) = f(z, y, x);
  return a;
}

// int16-like noise in [-1000, 1000]
Array3<float> data_a(const Shape3& s) {
  return make(s, [](int64_t z, int64_t y, int64_t x) { return static_cast<float>(noise(z, y, x)); });
}
// values >= 0 with an exact-zero region (tiny interpolated values next to the clip bound 0)
Array3<float> data_b(const Shape3& s) {
  return make(
      s, [](int64_t z, int64_t y, int64_t x) { return y + x < 30 ? 0.0f : static_cast<float>(noise(z, y, x) + 1000); });
}
// non-integer float32 values
Array3<float> data_c(const Shape3& s) {
  return make(s, [](int64_t z, int64_t y, int64_t x) { return static_cast<float>(noise(z, y, x, 997, 500)) / 7.0f; });
}
// labels -1, 0, 1..5; 1 touches the border, 4 is tiny, 5 is a slanted slab every 7 slices
Array3<float> seg_a(const Shape3& s) {
  const int64_t Z = s[0], Y = s[1], X = s[2];
  return make(s, [=](int64_t z, int64_t y, int64_t x) {
    int64_t v = 0;
    if (y < Y / 5 && x < X / 6) v = -1;
    if (z * 3 < Z * 2 && y > Y / 2 && x > X / 3 && x < X / 3 + X / 4) v = 1;
    if ((z - Z / 2) * (z - Z / 2) * 16 + (y - Y / 3) * (y - Y / 3) + (x - X / 2) * (x - X / 2) * 2 < (Y / 4) * (Y / 4))
      v = 2;
    if (std::abs(y - (Y * 3) / 4) + std::abs(x - X / 5) < Y / 6 && z >= 1) v = 3;
    if (z == Z / 3 && y == Y / 2 && x >= X - 4) v = 4;
    if (x + 2 * y > X + Y && z % 7 < 3) v = 5;
    return static_cast<float>(v);
  });
}

std::vector<std::array<int64_t, 3>> probes(const Shape3& s) {
  return {{0, 0, 0}, {s[0] - 1, s[1] - 1, s[2] - 1}, {s[0] / 2, s[1] / 3, s[2] / 2}, {s[0] / 3, s[1] - 2, 1}};
}

void expect_probes(const Array3<float>& r, const std::array<float, 4>& want) {
  const auto p = probes(r.shape);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r(p[i][0], p[i][1], p[i][2]), want[i]) << "probe " << i;
}

std::map<float, int64_t> counts(const Array3<float>& a) {
  std::map<float, int64_t> c;
  for (float v : a.v) ++c[v];
  return c;
}

Array3<double> line3(const std::vector<double>& v) {
  Array3<double> a(Shape3{1, 1, static_cast<int64_t>(v.size())});
  a.v = v;
  return a;
}

void expect_line(const Array3<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.v.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got.v[i], want[i]) << "index " << i;
}

}  // namespace

// ---- §9.4 1-D resize and the prefilter --------------------------------------------------------------------

TEST(ResampleSpec, OneDimensionalResizeIsBitExact) {
  using resample_detail::resize_f64;
  const auto x = line3({0, 1, 4, 9, 16, 25});
  expect_line(resize_f64(x, {1, 1, 9}, 3, 1, true),
              {0.0, 0.3000740192551422, 1.3461682893063145, 3.3445148940875886, 6.313466520526789, 9.950349519946794,
               14.52133831654023, 21.088457268119893, 25.0});
  expect_line(resize_f64(x, {1, 1, 4}, 3, 1, true),
              {0.1090258773869572, 3.0403741174614116, 10.441826211353318, 23.372772149724693});
  expect_line(resize_f64(x, {1, 1, 9}, 1, 1, true), {0.0, 0.5, 1.4999999999999996, 3.499999999999999, 6.5,
                                                     10.166666666666666, 14.833333333333332, 20.5, 25.0});
  expect_line(resize_f64(x, {1, 1, 4}, 1, 1, true), {0.25, 3.25, 10.75, 22.75});
  expect_line(resize_f64(x, {1, 1, 9}, 0, 1, true), {0, 1, 1, 4, 9, 9, 16, 25, 25});
  expect_line(resize_f64(x, {1, 1, 4}, 0, 1, true), {0, 4, 9, 25});
  // overshoot removed by the clip
  expect_line(resize_f64(line3({0, 0, 10, 0, 0}), {1, 1, 8}, 3, 1, true),
              {0.2830942014179997, 0.0, 0.5538713498315626, 8.220356649794132, 8.220356649794132, 0.5538713498315629,
               0.0, 0.28309420141799946});
  // the separable evaluation agrees to rounding
  const auto sep = resize_f64(x, {1, 1, 9}, 3, 1, false);
  const auto ex = resize_f64(x, {1, 1, 9}, 3, 1, true);
  for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(sep.v[i], ex.v[i], 1e-13);
}

TEST(ResampleSpec, PrefilterKeepsScipysInPlaceQuirk) {
  const auto c = resample_detail::spline_filter_line({1, 5, 2, 7, 3, 4, 9});
  const std::vector<double> want = {-0.40364138286951406, 8.018206807818464,  -1.6691858484043403, 10.658536585798899,
                                    1.0350395052087458,   3.2013053933661206, 10.159738921326776};
  ASSERT_EQ(c.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(c[i], want[i]) << i;
  EXPECT_EQ(resample_detail::spline_filter_line({3.5}), std::vector<double>{3.5});  // n <= 1: unchanged
}

namespace {
// scipy 1.10 spline_filter1d (order 3, mode 'nearest' -> reflect initialisation) of one line, written as its C loops:
// the full initial sum, in place.
std::vector<double> scipy_prefilter(std::vector<double> c) {
  const double z = -0.267949192431122706472553658494127633;
  const auto n = static_cast<int64_t>(c.size());
  if (n <= 1) return c;
  const double gain = (1.0 - z) * (1.0 - 1.0 / z);
  for (double& v : c) v *= gain;
  double z_i = z;
  const double z_n = std::pow(z, static_cast<double>(n));
  const double c0 = c[0];
  c[0] = c[0] + z_n * c[static_cast<size_t>(n - 1)];
  for (int64_t i = 1; i < n; ++i) {
    c[0] += z_i * (c[static_cast<size_t>(i)] + z_n * c[static_cast<size_t>(n - 1 - i)]);
    z_i *= z;
  }
  c[0] *= z / (1 - z_n * z_n);
  c[0] += c0;
  for (int64_t i = 1; i < n; ++i) c[static_cast<size_t>(i)] += z * c[static_cast<size_t>(i - 1)];
  c[static_cast<size_t>(n - 1)] *= z / (z - 1);
  for (int64_t i = n - 2; i >= 0; --i)
    c[static_cast<size_t>(i)] = z * (c[static_cast<size_t>(i + 1)] - c[static_cast<size_t>(i)]);
  return c;
}
}  // namespace

// The initial sum stops once its remaining terms cannot change it; the coefficients must still be scipy's bit for
// bit, including lines whose sum starts at zero or tiny, lines of zeros, -0.0 and NaN.
TEST(ResampleSpec, PrefilterEqualsScipysFullInitialSumBitForBit) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> hu(-1024, 3000);
  std::vector<std::vector<double>> lines;
  for (int64_t n : {9, 40, 64, 166, 300, 536}) {
    std::vector<double> ct(static_cast<size_t>(n)), fov(static_cast<size_t>(n), 0.0), tiny(static_cast<size_t>(n)),
        late(static_cast<size_t>(n), 0.0), mixed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      ct[static_cast<size_t>(i)] = hu(rng);
      if (i > n / 3 && i < n - 5) fov[static_cast<size_t>(i)] = hu(rng);
      tiny[static_cast<size_t>(i)] = (i % 3 == 0 ? 1e-300 : 1.0) * hu(rng);
      mixed[static_cast<size_t>(i)] = i % 2 ? 1e6 : -1e-6;
    }
    late[static_cast<size_t>(n - 1)] = 1000.0;  // a sum of zeros until the very last term
    std::vector<double> middle(static_cast<size_t>(n), 0.0);  // zeros at both ends: the sum is +0 for a while
    for (int64_t i = n / 4; i < n - n / 4; ++i) middle[static_cast<size_t>(i)] = hu(rng);
    lines.push_back(middle);
    lines.insert(lines.end(), {ct, fov, tiny, late, mixed, std::vector<double>(static_cast<size_t>(n), -0.0)});
    std::vector<double> nan = ct;
    nan[static_cast<size_t>(n / 2)] = std::nan("");
    lines.push_back(nan);
  }
  for (size_t k = 0; k < lines.size(); ++k) {
    const std::vector<double> got = resample_detail::spline_filter_line(lines[k]);
    const std::vector<double> want = scipy_prefilter(lines[k]);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(double)))
        << "line " << k << " (length " << got.size() << ")";
  }
}

// ---- §9.5 3-D resize ------------------------------------------------------------------------------------------

TEST(ResampleSpec, ThreeDimensionalResize) {
  // numpy's arange(24) ** 1.5 (its SIMD power differs from libm pow in the last bit for 7 of these)
  Array3<double> a(Shape3{2, 3, 4});
  a.v = {0.0,
         0x1.0000000000000p+0,
         0x1.6a09e667f3bcdp+1,
         0x1.4c8dc2e423980p+2,
         0x1.0000000000000p+3,
         0x1.65c55827df1d1p+3,
         0x1.d64d51e0db1c5p+3,
         0x1.2852fb49899ccp+4,
         0x1.6a09e667f3bcdp+4,
         0x1.b000000000000p+4,
         0x1.f9f6e4990f228p+4,
         0x1.23dcec5be3c73p+5,
         0x1.4c8dc2e423980p+5,
         0x1.76fa3278f1916p+5,
         0x1.a310ccf3b3760p+5,
         0x1.d0c20c63a59ecp+5,
         0x1.0000000000000p+6,
         0x1.185f05d1aebd7p+6,
         0x1.31785a67b5a74p+6,
         0x1.4b46bce371c97p+6,
         0x1.65c55827df1d1p+6,
         0x1.80efb52ebb80fp+6,
         0x1.9cc1afad3f725p+6,
         0x1.b9376c8db15e0p+6};
  const auto r3 = resample_detail::resize_f64(a, {3, 5, 6}, 3, 3, true);
  EXPECT_EQ(r3(0, 0, 0), 0.0);
  EXPECT_EQ(r3(1, 2, 3), 44.64424529705371);
  EXPECT_EQ(r3(2, 4, 5), 110.30412503619254);
  double s3 = 0;
  for (double v : r3.v) s3 += v;
  EXPECT_NEAR(s3, 4015.110172234819, 1e-10);
  const auto r1 = resample_detail::resize_f64(a, {3, 5, 6}, 1, 3, true);
  EXPECT_EQ(r1(1, 2, 3), 44.71629080393584);
  EXPECT_EQ(r1(2, 4, 5), 110.30412503619254);
  double s1 = 0;
  for (double v : r1.v) s1 += v;
  EXPECT_NEAR(s1, 4009.4410661717784, 1e-10);
}

// ---- §9.6 label resize, §9.7 shapes, §9.8 tie -------------------------------------------------------------

TEST(ResampleSpec, LabelResize2D) {
  const float in[4][5] = {{-1, -1, 0, 0, 1}, {-1, 0, 0, 1, 1}, {0, 0, 2, 2, 1}, {0, 2, 2, 2, 0}};
  const float want[6][7] = {{-1, -1, -1, 0, 0, 0, 1}, {-1, -1, 0, 0, 0, 1, 1}, {-1, 0, 0, 0, 1, 1, 1},
                            {0, 0, 0, 2, 2, 1, 1},    {0, 0, 2, 2, 2, 2, 1},   {0, 2, 2, 2, 2, 2, 0}};
  Array3<float> seg(Shape3{1, 4, 5});
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) seg(0, y, x) = in[y][x];
  for (int order : {1, 3}) {
    Array3<float> out;
    resize_segmentation_slices(seg, {1, 6, 7}, order, out);
    ASSERT_EQ(out.shape, (Shape3{1, 6, 7}));
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 7; ++x) EXPECT_EQ(out(0, y, x), want[y][x]) << "order " << order << " at " << y << "," << x;
  }
}

TEST(ResampleSpec, NewShapeRoundsHalfToEven) {
  EXPECT_EQ(resampled_shape({5.0, 0.78125, 0.78125}, {1.5, 1, 1}, {67, 400, 401}), (Shape3{223, 312, 313}));
  EXPECT_EQ(resampled_shape({2.5, 0.7, 0.7}, {2.0, 0.68825001, 0.68825001}, {81, 512, 512}), (Shape3{101, 521, 521}));
  EXPECT_EQ(resampled_shape({3, 1, 1}, {2, 1, 1}, {5, 7, 9}), (Shape3{8, 7, 9}));
}

TEST(ResampleSpec, OrderOneTieDecidedLikeScipy) {
  Array3<float> s(Shape3{2, 2, 2}, 0.0f);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 2; ++x) s(0, y, x) = 1.0f;
  Array3<float> out;
  resize_segmentation(s, {5, 5, 3}, 1, out);
  const float plane2[5][3] = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 0}};
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 3; ++x) EXPECT_EQ(out(2, y, x), plane2[y][x]) << y << "," << x;
  const int want_counts[5] = {15, 15, 14, 0, 0};
  for (int z = 0; z < 5; ++z) {
    int n = 0;
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 3; ++x) n += out(z, y, x) == 1.0f;
    EXPECT_EQ(n, want_counts[z]) << "plane " << z;
  }
}

// ---- §9.9 resample_patient table --------------------------------------------------------------------------

namespace {
void spec99_inputs(Array3<float>& d, Array3<float>& s) {
  const int v[120] = {
      204,  -256, 42,  -57,  -45,  -22, -202, -23, -87,  332,  23,  -35, -28,  -67,  -106, -39,  48,   -24,  96,  -20,
      2,    155,  55,  -51,  -18,  54,  194,  -27, -24,  100,  -89, -29, 88,   58,   9,    67,   -283, 102,  -96, -167,
      28,   70,   -44, -108, 3,    -5,  141,  75,  19,   111,  -21, -93, 58,   58,   -21,  -78,  23,   -249, 69,  49,
      -164, 6,    -96, 76,   -203, -91, 71,   116, -216, -50,  33,  -61, 159,  -119, 35,   -105, 141,  -2,   -37, -172,
      168,  75,   75,  114,  35,   -64, -80,  -80, 137,  -146, -60, -32, 22,   58,   -125, -173, 0,    121,  76,  22,
      -32,  29,   -24, 82,   -79,  13,  -11,  54,  22,   255,  150, 150, -204, -34,  -61,  53,   -228, 117,  107, -130};
  d = Array3<float>(Shape3{4, 6, 5});
  for (int i = 0; i < 120; ++i) d.v[static_cast<size_t>(i)] = static_cast<float>(v[i]);
  s = Array3<float>(Shape3{4, 6, 5}, 0.0f);
  for (int z = 1; z < 3; ++z)
    for (int y = 2; y < 5; ++y)
      for (int x = 1; x < 4; ++x) s(z, y, x) = 1;
  s(2, 3, 2) = 2;
  for (int x = 0; x < 5; ++x) s(0, 0, x) = -1;
}
}  // namespace

TEST(ResampleSpec, ResamplePatientTable) {
  Array3<float> d, s;
  spec99_inputs(d, s);
  struct Row {
    std::array<double, 3> osp, tsp;
    std::optional<bool> force;
    int seg_order;
    bool separate;
    Shape3 shape;
    double sum;
    float first, last;
    int64_t c_m1, c_0, c_1, c_2;
    uint64_t dhash, shash;
  };
  const Row rows[] = {
      {{5, 1, 1},
       {2, .8, .8},
       std::nullopt,
       1,
       true,
       {10, 8, 6},
       -1390.9017221927643,
       244.9681f,
       -136.5532f,
       12,
       398,
       66,
       4,
       495503506403136u,
       35020861341696u},
      {{5, 1, 1},
       {2, .8, .8},
       false,
       1,
       false,
       {10, 8, 6},
       -1578.5889749452472,
       278.1025f,
       -126.34029f,
       12,
       408,
       60,
       0,
       498110106086669u,
       31511235526656u},
      {{1.5, 1, 1},
       {1, .9, .9},
       std::nullopt,
       1,
       false,
       {6, 7, 6},
       -857.77901148796082,
       262.85358f,
       -130.68517f,
       6,
       214,
       32,
       0,
       139238575788826u,
       8450985689088u},
      {{5, 1, 1},
       {2, .8, .8},
       false,
       3,
       false,
       {10, 8, 6},
       -1578.5889749452472,
       278.1025f,
       -126.34029f,
       18,
       394,
       64,
       4,
       498110106086669u,
       39949940293632u},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.sum);
    ResampleSettings st;
    st.order_seg = r.seg_order;
    st.force_separate_z = r.force;
    EXPECT_EQ(decide_separate_z(r.osp, r.tsp, r.force).separate, r.separate);
    std::vector<Array3<float>> dout;
    Array3<float> sout;
    resample_patient({d}, s, r.osp, r.tsp, st, dout, sout);
    ASSERT_EQ(dout.size(), 1u);
    ASSERT_EQ(dout[0].shape, r.shape);
    ASSERT_EQ(sout.shape, r.shape);
    double sum = 0;
    for (float v : dout[0].v) sum += v;
    EXPECT_NEAR(sum, r.sum, 1e-9);
    EXPECT_EQ(dout[0].v.front(), r.first);
    EXPECT_EQ(dout[0].v.back(), r.last);
    auto c = counts(sout);
    EXPECT_EQ(c[-1.0f], r.c_m1);
    EXPECT_EQ(c[0.0f], r.c_0);
    EXPECT_EQ(c[1.0f], r.c_1);
    EXPECT_EQ(c[2.0f], r.c_2);
    EXPECT_EQ(hash_f32(dout[0]), r.dhash);
    EXPECT_EQ(hash_f32(sout), r.shash);
  }
}

// ---- golden hashes from the real scipy/skimage ----------------------------------------------------------------

namespace {
struct DataCase {
  Array3<float> (*gen)(const Shape3&);
  Shape3 in, out;
  int order;
  bool slices;
  uint64_t hash;
  std::array<float, 4> probe;
};
}  // namespace

TEST(ResampleGolden, DataMatchesSkimage) {
  const DataCase cases[] = {
      {data_a,
       {19, 33, 28},
       {31, 25, 40},
       1,
       false,
       2108975364436056137u,
       {-891.679993f, 622.119995f, 71.1819992f, 133.42923f}},
      {data_a, {19, 33, 28}, {19, 33, 28}, 1, false, 680692085304360960u, {-1000, 573, -167, 895}},
      {data_a,
       {19, 33, 28},
       {8, 50, 11},
       1,
       false,
       42692544027648749u,
       {80.2159119f, -159.014206f, -154.865936f, -69.8458557f}},
      {data_a, {19, 33, 28}, {47, 34, 29}, 1, false, 4716706905609162647u, {-1000, 573, 88.9264679f, 598.471436f}},
      {data_a,
       {19, 33, 28},
       {31, 25, 40},
       3,
       false,
       2113676199760478567u,
       {-1000, 817.496155f, 388.276062f, 348.063293f}},
      {data_a, {19, 33, 28}, {19, 33, 28}, 3, false, 681059912514562328u, {-1000, 573, -167, 895}},
      {data_a,
       {19, 33, 28},
       {8, 50, 11},
       3,
       false,
       42897626191726994u,
       {139.955811f, -302.68692f, -368.662048f, -159.895615f}},
      {data_a,
       {19, 33, 28},
       {47, 34, 29},
       3,
       false,
       4761368561674522578u,
       {-1000, 707.616516f, 523.019653f, 875.925415f}},
      {data_b, {16, 40, 40}, {27, 31, 55}, 3, false, 2021297497790685851u, {0, 0, 1012.96625f, 372.206451f}},
      {data_b, {16, 40, 40}, {9, 67, 23}, 1, false, 164128090599567342u, {0, 182.431152f, 1065.69592f, 1164.74451f}},
      {data_c,
       {12, 21, 17},
       {30, 16, 25},
       3,
       false,
       311166067809376940u,
       {-71.4285736f, 20.2820988f, 36.2174072f, 47.0423164f}},
      {data_a, {6, 40, 33}, {6, 29, 45}, 3, true, 134623109162964519u, {-1000, 362.422607f, 192.275375f, 582.374146f}},
      {data_b, {5, 40, 40}, {5, 40, 40}, 3, true, 59328159351277432u, {4.44782356e-29f, 74, 1560, 524}},
  };
  for (const DataCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.in[0] << "x" << c.in[1] << "x" << c.in[2] << " -> " << c.out[0] << "x"
                                      << c.out[1] << "x" << c.out[2] << " order " << c.order
                                      << (c.slices ? " slices" : ""));
    const Array3<float> in = c.gen(c.in);
    Array3<float> out;
    if (c.slices)
      resize_data_slices(in, c.out, c.order, out);
    else
      resize_data(in, c.out, c.order, out);
    ASSERT_EQ(out.shape, c.out);
    expect_probes(out, c.probe);
    EXPECT_EQ(hash_f32(out), c.hash);
  }
}

namespace {
struct SegCase {
  Shape3 in, out;
  int order;
  bool slices;
  uint64_t hash;
  std::map<float, int64_t> counts;
};
}  // namespace

TEST(ResampleGolden, LabelsMatchResizeSegmentation) {
  const SegCase cases[] = {
      {{24, 70, 80},
       {41, 53, 61},
       1,
       false,
       5865389511600504832u,
       {{-1, 4510}, {0, 98197}, {1, 7952}, {2, 3568}, {3, 4992}, {5, 13334}}},
      {{10, 70, 80},
       {25, 70, 80},
       1,
       false,
       8315566178491695104u,
       {{-1, 4550}, {0, 93373}, {1, 9147}, {2, 9339}, {3, 5083}, {4, 12}, {5, 18496}}},
      {{20, 90, 100},
       {20, 45, 50},
       1,
       false,
       701009871889235968u,
       {{-1, 1440}, {0, 32186}, {1, 2967}, {2, 2054}, {3, 1995}, {4, 2}, {5, 4356}}},
      {{7, 50, 60},
       {7, 61, 45},
       1,
       true,
       106944106046947328u,
       {{-1, 588}, {0, 14152}, {1, 1133}, {2, 1134}, {3, 618}, {4, 6}, {5, 1584}}},
      {{24, 70, 80},
       {41, 53, 61},
       3,
       false,
       5866858720620707840u,
       {{-1, 4510}, {0, 98186}, {1, 7946}, {2, 3581}, {3, 4993}, {4, 3}, {5, 13334}}},
      {{10, 70, 80},
       {25, 70, 80},
       3,
       false,
       8284321424798121984u,
       {{-1, 4550}, {0, 93521}, {1, 8999}, {2, 9339}, {3, 5083}, {4, 12}, {5, 18496}}},
      {{20, 90, 100},
       {20, 45, 50},
       3,
       false,
       698163379713343488u,
       {{-1, 1440}, {0, 32243}, {1, 2973}, {2, 1991}, {3, 1995}, {4, 2}, {5, 4356}}},
      {{7, 50, 60},
       {7, 61, 45},
       3,
       true,
       109373337144131584u,
       {{-1, 637}, {0, 14119}, {1, 1133}, {2, 1115}, {3, 624}, {4, 6}, {5, 1581}}},
      {{30, 120, 130},
       {12, 150, 110},
       3,
       false,
       15169682189636861952u,
       {{-1, 6480}, {0, 138956}, {1, 12494}, {2, 8352}, {3, 9645}, {5, 22073}}},
  };
  for (const SegCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.in[0] << "x" << c.in[1] << "x" << c.in[2] << " -> " << c.out[0] << "x"
                                      << c.out[1] << "x" << c.out[2] << " order " << c.order
                                      << (c.slices ? " slices" : ""));
    const Array3<float> in = seg_a(c.in);
    Array3<float> out;
    if (c.slices)
      resize_segmentation_slices(in, c.out, c.order, out);
    else
      resize_segmentation(in, c.out, c.order, out);
    ASSERT_EQ(out.shape, c.out);
    EXPECT_EQ(counts(out), c.counts);
    EXPECT_EQ(hash_f32(out), c.hash);
  }
}

TEST(ResampleGolden, ResamplePatientMatchesNnunetGlue) {
  struct Case {
    Array3<float> (*gen)(const Shape3&);
    Shape3 shape;
    std::array<double, 3> osp, tsp;
    std::optional<bool> force;
    int seg_order;
    SeparateZ sz;
    Shape3 out;
    uint64_t dhash, shash;
  };
  const Case cases[] = {
      {data_a,
       {9, 30, 28},
       {5.0, 0.8, 0.8},
       {2.0, 1.0, 1.0},
       std::nullopt,
       1,
       {true, 0},
       {22, 24, 22},
       297002818412452117u,
       47406850089418752u},
      {data_a,
       {20, 24, 7},
       {1.0, 1.0, 4.0},
       {1.0, 1.5, 1.5},
       std::nullopt,
       1,
       {true, 2},
       {20, 16, 19},
       81689301835076062u,
       14712958753964032u},
      {data_c,
       {22, 6, 19},
       {0.9, 3.5, 1.0},
       {1.0, 1.0, 1.0},
       std::nullopt,
       1,
       {true, 1},
       {20, 21, 19},
       140052096173154453u,
       7896408520654848u},
      {data_a,
       {9, 30, 28},
       {5.0, 0.8, 0.8},
       {2.0, 1.0, 1.0},
       false,
       3,
       {false, -1},
       {22, 24, 22},
       296529124617270762u,
       47590588851159040u},
      {data_a,
       {12, 18, 16},
       {1.5, 1.0, 1.0},
       {1.0, 0.9, 0.9},
       std::nullopt,
       1,
       {false, -1},
       {18, 20, 18},
       92476236945567820u,
       10063402995023872u},
      {data_a,
       {9, 30, 28},
       {5.0, 0.8, 0.8},
       {5.0, 1.6, 1.6},
       std::nullopt,
       1,
       {true, 0},
       {9, 15, 14},
       7876352082295311u,
       1268344109924352u},
      {data_a,
       {10, 20, 20},
       {2.0, 2.0, 1.0},
       {2.0, 2.0, 1.0},
       std::nullopt,
       1,
       {false, -1},
       {10, 20, 20},
       35400561182408704u,
       5414029874954240u},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "input " << c.shape[0] << "x" << c.shape[1] << "x" << c.shape[2]
                                      << " seg order " << c.seg_order);
    const SeparateZ sz = decide_separate_z(c.osp, c.tsp, c.force);
    EXPECT_EQ(sz.separate, c.sz.separate);
    EXPECT_EQ(sz.axis, c.sz.axis);
    ResampleSettings st;
    st.order_seg = c.seg_order;
    st.force_separate_z = c.force;
    const Array3<float> d = c.gen(c.shape), s = seg_a(c.shape);
    std::vector<Array3<float>> dout;
    Array3<float> sout;
    resample_patient({d, d}, s, c.osp, c.tsp, st, dout, sout);
    ASSERT_EQ(dout.size(), 2u);
    ASSERT_EQ(dout[0].shape, c.out);
    EXPECT_EQ(hash_f32(dout[0]), c.dhash);
    EXPECT_EQ(dout[1].v, dout[0].v);
    EXPECT_EQ(hash_f32(sout), c.shash);
    if (c.out == c.shape) {  // nothing changes: bit copies
      EXPECT_EQ(dout[0].v, d.v);
      EXPECT_EQ(sout.v, s.v);
    }
  }
}

// ---- decisions, errors, exactness guard, threads -------------------------------------------------------------

TEST(ResampleDecision, SeparateZRules) {
  // ratio exactly 3 is not anisotropic; 3.2 is
  EXPECT_FALSE(decide_separate_z({3, 1, 1}, {1, 1, 1}, std::nullopt).separate);
  EXPECT_EQ(decide_separate_z({3.2, 1, 1}, {1, 1, 1}, std::nullopt).axis, 0);
  // anisotropic target decides when the source is not
  EXPECT_EQ(decide_separate_z({1, 1, 1}, {1, 4, 1}, std::nullopt).axis, 1);
  // two equal maxima: no separate z, also when forced
  EXPECT_FALSE(decide_separate_z({4, 4, 1}, {1, 1, 1}, std::nullopt).separate);
  EXPECT_FALSE(decide_separate_z({4, 4, 1}, {1, 1, 1}, true).separate);
  EXPECT_FALSE(decide_separate_z({5, 1, 1}, {1, 1, 1}, false).separate);
  const SeparateZ f = decide_separate_z({1, 1, 1.5}, {1, 1, 1}, true);
  EXPECT_TRUE(f.separate);
  EXPECT_EQ(f.axis, 2);
}

TEST(ResampleDecision, UnsupportedSettingsAreRejected) {
  Array3<float> a(Shape3{3, 4, 5}, 1.0f), out;
  EXPECT_THROW(resize_data(a, {4, 4, 4}, 2, out), UsageError);
  EXPECT_THROW(resize_data(a, {0, 4, 4}, 3, out), InputError);
  ResampleSettings st;
  st.order_z_data = 3;
  std::vector<Array3<float>> dout;
  EXPECT_THROW(resample_patient({a}, a, {5, 1, 1}, {1, 1, 1}, st, dout, out), UsageError);
}

TEST(ResampleGuard, GuardedSeparableEqualsTensorOrderEverywhere) {
  // non-integer data, a zero region and a clip bound at 0: many voxels are near float32 rounding points
  Array3<float> f = make({14, 37, 29}, [](int64_t z, int64_t y, int64_t x) {
    return (y + 2 * x < 25) ? 0.0f : static_cast<float>(noise(z, y, x, 1009, 0)) / 13.0f;
  });
  Array3<double> d(f.shape);
  for (size_t i = 0; i < f.v.size(); ++i) d.v[i] = f.v[i];
  for (int order : {1, 3}) {
    for (const Shape3& os : {Shape3{23, 30, 41}, Shape3{14, 37, 29}}) {
      Array3<float> got;
      resize_data(f, os, order, got);
      const Array3<double> ex = resample_detail::resize_f64(d, os, order, 3, true);
      const Array3<double> sep = resample_detail::resize_f64(d, os, order, 3, false);
      int64_t mismatches = 0, raw_f32_diffs = 0;
      for (size_t i = 0; i < ex.v.size(); ++i) {
        mismatches += got.v[i] != static_cast<float>(ex.v[i]);
        raw_f32_diffs += static_cast<float>(sep.v[i]) != static_cast<float>(ex.v[i]);
        ASSERT_NEAR(sep.v[i], ex.v[i], 1e-11);
      }
      EXPECT_EQ(mismatches, 0) << "order " << order << " (unguarded separable float32 differences: " << raw_f32_diffs
                               << ")";
    }
  }
}

TEST(ResampleThreads, ResultsDoNotDependOnThreadCount) {
  const Shape3 in{18, 44, 52};
  const Array3<float> d = data_c(in), s = seg_a(in);
  auto run = [&](int threads, std::vector<Array3<float>>& dout, Array3<float>& sout, std::optional<bool> force,
                 int so) {
    const int old = omp_get_max_threads();
    const int64_t old_grain = resample_detail::parallel_grain();
    resample_detail::set_parallel_grain(1);  // every job on every thread, however small
    omp_set_num_threads(threads);
    ResampleSettings st;
    st.force_separate_z = force;
    st.order_seg = so;
    resample_patient({d}, s, {2.5, 0.7, 0.7}, {1.5, 1.0, 1.0}, st, dout, sout);
    omp_set_num_threads(old);
    resample_detail::set_parallel_grain(old_grain);
  };
  for (auto [force, so] : {std::pair<std::optional<bool>, int>{false, 3}, {false, 1}, {std::nullopt, 1}}) {
    std::vector<Array3<float>> d1, d2;
    Array3<float> s1, s2;
    run(1, d1, s1, force, so);
    run(2, d2, s2, force, so);
    ASSERT_EQ(d1.size(), 1u);
    EXPECT_EQ(d1[0].shape, d2[0].shape);
    EXPECT_EQ(d1[0].v, d2[0].v);
    EXPECT_EQ(s1.v, s2.v);
  }
}

TEST(ResampleDecision, DataOnlyAndSegOnlyCalls) {
  const Array3<float> d = data_a({9, 30, 28}), s = seg_a({9, 30, 28});
  ResampleSettings st;
  std::vector<Array3<float>> dout;
  Array3<float> sout;
  // same golden as the first resample_patient case: data only, then seg only
  resample_patient({d}, Array3<float>(), {5.0, 0.8, 0.8}, {2.0, 1.0, 1.0}, st, dout, sout);
  ASSERT_EQ(dout.size(), 1u);
  EXPECT_EQ(hash_f32(dout[0]), 297002818412452117u);
  EXPECT_EQ(sout.size(), 0u);
  resample_patient({}, s, {5.0, 0.8, 0.8}, {2.0, 1.0, 1.0}, st, dout, sout);
  EXPECT_TRUE(dout.empty());
  EXPECT_EQ(sout.shape, (Shape3{22, 24, 22}));
  EXPECT_EQ(hash_f32(sout), 47406850089418752u);
  EXPECT_THROW(resample_patient({}, Array3<float>(), {1, 1, 1}, {1, 1, 1}, st, dout, sout), UsageError);
  EXPECT_THROW(resample_patient({d}, seg_a({9, 30, 27}), {1, 1, 1}, {1, 1, 1}, st, dout, sout), InputError);
}

TEST(ResampleIsa, BaselineAndV3VariantsGiveIdenticalResults) {
  const Isa before = active_isa();
  if (set_active_isa(Isa::x86_64_v3) != Isa::x86_64_v3) {
    set_active_isa(before);
    GTEST_SKIP() << "this binary or CPU has no x86-64-v3 variant";
  }
  const Shape3 in{21, 40, 47};
  const Array3<float> da = data_a(in), db = data_b(in), s = seg_a(in);
  auto run = [&](Isa isa, const Array3<float>& d, std::optional<bool> force, int so, std::vector<Array3<float>>& dout,
                 Array3<float>& sout) {
    set_active_isa(isa);
    ResampleSettings st;
    st.force_separate_z = force;
    st.order_seg = so;
    resample_patient({d}, s, {3.0, 0.8, 0.7}, {1.1, 1.0, 0.9}, st, dout, sout);
  };
  for (const Array3<float>* d : {&da, &db})
    for (auto [force, so] : {std::pair<std::optional<bool>, int>{false, 3}, {false, 1}, {true, 0}, {std::nullopt, 1}}) {
      std::vector<Array3<float>> d_base, d_v3;
      Array3<float> s_base, s_v3;
      run(Isa::baseline, *d, force, so, d_base, s_base);
      run(Isa::x86_64_v3, *d, force, so, d_v3, s_v3);
      ASSERT_EQ(d_base.size(), 1u);
      EXPECT_EQ(hash_f32(d_base[0]), hash_f32(d_v3[0]));
      EXPECT_EQ(d_base[0].v, d_v3[0].v);
      EXPECT_EQ(s_base.v, s_v3.v);
    }
  set_active_isa(before);
}

// ---- outputs with repeated slices (separate-z along axis 0) ----------------------------------------------------

TEST(ResampleMapped, ExpandsToTheGoldenSeparateZResult) {
  const Array3<float> d = data_a({9, 30, 28}), s = seg_a({9, 30, 28});
  ResampleSettings st;
  std::vector<SliceMappedVolume> dout;
  SliceMappedVolume sout;
  resample_patient_mapped({d}, s, {5.0, 0.8, 0.8}, {2.0, 1.0, 1.0}, st, dout, sout);
  ASSERT_EQ(dout.size(), 1u);
  EXPECT_TRUE(dout[0].repeats_slices());
  EXPECT_EQ(dout[0].planes.shape, (Shape3{9, 24, 22}));  // the in-plane resized slices only
  EXPECT_EQ(sout.planes.shape, (Shape3{9, 24, 22}));
  const Array3<float> full_d = expand_slices(dout[0]), full_s = expand_slices(sout);
  EXPECT_EQ(full_d.shape, (Shape3{22, 24, 22}));
  EXPECT_EQ(hash_f32(full_d), 297002818412452117u);  // same goldens as DataOnlyAndSegOnlyCalls
  EXPECT_EQ(hash_f32(full_s), 47406850089418752u);
}

TEST(ResampleMapped, WithoutSeparateZItIsThePlainResultWithIdentityMapping) {
  const Array3<float> d = data_a({9, 30, 28}), s = seg_a({9, 30, 28});
  ResampleSettings st;
  std::vector<Array3<float>> plain_d;
  Array3<float> plain_s;
  resample_patient({d}, s, {2.0, 0.8, 0.8}, {1.5, 1.0, 1.0}, st, plain_d, plain_s);
  std::vector<SliceMappedVolume> dout;
  SliceMappedVolume sout;
  resample_patient_mapped({d}, s, {2.0, 0.8, 0.8}, {1.5, 1.0, 1.0}, st, dout, sout);
  ASSERT_EQ(dout.size(), 1u);
  EXPECT_FALSE(dout[0].repeats_slices());
  EXPECT_EQ(dout[0].planes.v, plain_d[0].v);
  EXPECT_EQ(sout.planes.v, plain_s.v);
  for (int64_t z = 0; z < sout.shape[0]; ++z) EXPECT_EQ(sout.plane_of[static_cast<size_t>(z)], z);
}

TEST(ResampleMapped, SliceBatchesGiveTheSameSlicesAsOneSliceAtATime) {
  // 40 slices: several batches of the slice-wise resize; each slice must equal its resize as a lone slice.
  const Shape3 in{40, 30, 28}, out{40, 24, 21};
  const Array3<float> d = data_a(in);
  Array3<float> all;
  resize_data_slices(d, out, 3, all);
  for (int64_t z = 0; z < in[0]; ++z) {
    Array3<float> one({1, in[1], in[2]});
    std::copy(d.v.begin() + z * in[1] * in[2], d.v.begin() + (z + 1) * in[1] * in[2], one.v.begin());
    Array3<float> r;
    resize_data_slices(one, {1, out[1], out[2]}, 3, r);
    ASSERT_TRUE(std::equal(r.v.begin(), r.v.end(), all.v.begin() + z * out[1] * out[2])) << "slice " << z;
  }
}

TEST(ResampleMapped, Int16DataAndInt8LabelsGiveTheFloatResults) {
  // The pipeline resamples the cropped CT (int16) and labels (int8) as they are; every path must give the bits
  // of the float32 form: separate-z along axis 0 (mapped) and axis 2 (moved axis), 3-D with order-3 labels,
  // nearest, and an unchanged shape (copy).
  const Shape3 in{9, 30, 28};
  const Array3<float> d = data_a(in), s = seg_a(in);
  Array3<int16_t> d16(in);
  Array3<int8_t> s8(in);
  for (size_t i = 0; i < d.v.size(); ++i) {
    d16.v[i] = static_cast<int16_t>(d.v[i]);
    s8.v[i] = static_cast<int8_t>(s.v[i]);
    ASSERT_EQ(static_cast<float>(d16.v[i]), d.v[i]);
    ASSERT_EQ(static_cast<float>(s8.v[i]), s.v[i]);
  }
  struct Case {
    std::array<double, 3> spacing, target;
    int order_data, order_seg;
    std::optional<bool> force;
  };
  const Case cases[] = {{{5.0, 0.8, 0.8}, {2.0, 1.0, 1.0}, 3, 1, std::nullopt},
                        {{0.8, 0.8, 5.0}, {1.0, 1.0, 2.0}, 3, 1, std::nullopt},
                        {{5.0, 0.8, 0.8}, {1.5, 1.0, 1.0}, 3, 3, false},
                        {{2.0, 0.8, 0.8}, {1.5, 1.0, 1.0}, 0, 0, false},
                        {{1.0, 1.0, 1.0}, {1.0, 1.0, 1.0}, 3, 1, std::nullopt}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.spacing[0]) + "/" + std::to_string(c.target[0]) + " orders " +
                 std::to_string(c.order_data) + "/" + std::to_string(c.order_seg));
    ResampleSettings st;
    st.order_data = c.order_data;
    st.order_seg = c.order_seg;
    st.force_separate_z = c.force;
    std::vector<SliceMappedVolume> fd, id;
    SliceMappedVolume fs, is;
    resample_patient_mapped({d}, s, c.spacing, c.target, st, fd, fs);
    resample_patient_mapped({d16}, s8, c.spacing, c.target, st, id, is);
    ASSERT_EQ(id.size(), 1u);
    EXPECT_EQ(id[0].plane_of, fd[0].plane_of);
    EXPECT_EQ(is.plane_of, fs.plane_of);
    ASSERT_EQ(id[0].planes.v.size(), fd[0].planes.v.size());
    EXPECT_EQ(0, std::memcmp(id[0].planes.v.data(), fd[0].planes.v.data(), fd[0].planes.v.size() * 4));
    ASSERT_EQ(is.planes.v.size(), fs.planes.v.size());
    EXPECT_EQ(0, std::memcmp(is.planes.v.data(), fs.planes.v.data(), fs.planes.v.size() * 4));
    // labels kept as int8: the same values and slice mapping
    SliceMappedLabels ls;
    resample_seg_mapped(s8, c.spacing, c.target, st, ls);
    EXPECT_EQ(ls.plane_of, fs.plane_of);
    ASSERT_EQ(ls.planes.v.size(), fs.planes.v.size());
    for (size_t v = 0; v < ls.planes.v.size(); ++v)
      ASSERT_EQ(static_cast<float>(ls.planes.v[v]), fs.planes.v[v]) << "voxel " << v;
  }
}

TEST(ResampleStreamed, PlanesEqualTheWholeVolumeForAnyAlignmentAndThreadCount) {
  const Shape3 in{11, 30, 28};
  const Array3<float> d = data_a(in), d2 = data_c(in);
  Array3<int16_t> d16(in);
  for (size_t i = 0; i < d.v.size(); ++i) d16.v[i] = static_cast<int16_t>(d.v[i]);
  ResampleSettings st;
  st.force_separate_z = false;
  const std::array<double, 3> spacing{5.0, 0.8, 0.8}, target{1.5, 1.0, 1.0};  // 11 -> 37 planes
  std::vector<Array3<float>> whole;
  Array3<float> no_seg;
  resample_patient({d, d2}, Array3<float>(), spacing, target, st, whole, no_seg);
  const int64_t plane = whole[0].shape[1] * whole[0].shape[2];
  const int64_t old_grain = resample_detail::parallel_grain();
  const int old_threads = omp_get_max_threads();
  resample_detail::set_parallel_grain(64);
  for (int threads : {1, 3})
    for (int64_t align : {int64_t{1}, int64_t{5}, int64_t{16}, int64_t{100}}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + " align " + std::to_string(align));
      omp_set_num_threads(threads);
      std::vector<std::vector<float>> got(2);
      std::vector<int64_t> next(2, 0);
      const bool ok = resample_data_streamed(
          std::vector<Array3<float>>{d, d2}, spacing, target, st, align,
          [&](size_t c, int64_t first, int64_t count, float* planes) {
            EXPECT_EQ(first, next[c]);
            next[c] = first + count;
            if (next[c] != whole[c].shape[0]) EXPECT_EQ(count % align, 0);
            got[c].insert(got[c].end(), planes, planes + count * plane);
          });
      ASSERT_TRUE(ok);
      for (size_t c = 0; c < 2; ++c) {
        ASSERT_EQ(got[c].size(), whole[c].v.size());
        EXPECT_EQ(0, std::memcmp(got[c].data(), whole[c].v.data(), got[c].size() * 4)) << "channel " << c;
      }
      std::vector<float> got16;
      ASSERT_TRUE(resample_data_streamed(std::vector<Array3<int16_t>>{d16}, spacing, target, st, align,
                                         [&](size_t, int64_t, int64_t count, float* planes) {
                                           got16.insert(got16.end(), planes, planes + count * plane);
                                         }));
      ASSERT_EQ(got16.size(), whole[0].v.size());
      EXPECT_EQ(0, std::memcmp(got16.data(), whole[0].v.data(), got16.size() * 4));
    }
  omp_set_num_threads(old_threads);
  resample_detail::set_parallel_grain(old_grain);
}

// With the receiver's CT normalisation given, open float32 roundings are left unevaluated only where both
// roundings normalise to the same bits. Zero-filled FOV corners make every corner voxel's rounding open (the
// separable value is a tiny number of either sign), so the skip is exercised; a normalisation that magnifies tiny
// differences must send them all to scipy's evaluation.
TEST(ResampleStreamed, CtNormalisationSkipsOnlyEvaluationsThatCannotChangeTheNormalisedValue) {
  const Shape3 in{12, 40, 36};
  Array3<int16_t> d16(in);
  for (int64_t z = 0; z < in[0]; ++z)
    for (int64_t y = 0; y < in[1]; ++y)
      for (int64_t x = 0; x < in[2]; ++x) {
        const double r = std::hypot(y - 19.5, x - 17.5);
        const int64_t tex = (z * 131 + y * 37 + x * 11) % 97;
        d16(z, y, x) = static_cast<int16_t>(r > 17.0 ? 0 : (r > 12.0 ? -1000 + tex : 30 + 4 * tex));
      }
  Array3<float> d(in);
  for (size_t i = 0; i < d.v.size(); ++i) d.v[i] = d16.v[i];
  ResampleSettings st;
  st.force_separate_z = false;
  const std::array<double, 3> spacing{2.0, 0.8, 0.8}, target{1.5, 1.0, 1.0};
  std::vector<Array3<float>> whole;
  Array3<float> no_seg;
  resample_patient({d}, Array3<float>(), spacing, target, st, whole, no_seg);

  auto streamed = [&](const IntensityStats& stats) {
    const std::vector<CtNormalization> norm{CtNormalization(stats)};
    std::vector<float> got;
    EXPECT_TRUE(resample_data_streamed(std::vector<Array3<int16_t>>{d16}, spacing, target, st, 4,
                                       [&](size_t, int64_t, int64_t count, float* planes) {
                                         got.insert(got.end(), planes, planes + count * whole[0].shape[1] * whole[0].shape[2]);
                                       },
                                       &norm));
    return got;
  };
  IntensityStats ct;
  ct.percentile_00_5 = -990.0;
  ct.percentile_99_5 = 420.0;
  ct.mean = 41.5f;
  ct.sd = 173.25f;
  const std::vector<float> raw = streamed(ct);
  ASSERT_EQ(raw.size(), whole[0].v.size());
  const CtNormalization f(ct);
  int64_t raw_differs = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    raw_differs += std::memcmp(&raw[i], &whole[0].v[i], 4) != 0;
    const float a = f(raw[i]), b = f(whole[0].v[i]);
    ASSERT_EQ(0, std::memcmp(&a, &b, 4)) << "voxel " << i << ": " << raw[i] << " vs " << whole[0].v[i];
  }
  EXPECT_GT(raw_differs, 100) << "the FOV corners should have skipped scipy's evaluation";

  IntensityStats sharp;  // x / 2^-100 is exact, so distinct values stay distinct: nothing may be skipped
  sharp.percentile_00_5 = -1e4;
  sharp.percentile_99_5 = 1e4;
  sharp.mean = 0.0f;
  sharp.sd = std::ldexp(1.0f, -100);
  const std::vector<float> exact = streamed(sharp);
  ASSERT_EQ(exact.size(), whole[0].v.size());
  EXPECT_EQ(0, std::memcmp(exact.data(), whole[0].v.data(), exact.size() * 4));
}

TEST(ResampleStreamed, DeclinesWhatIsNotA3DZoomAndPassesOnErrors) {
  const Shape3 in{11, 30, 28};
  const std::vector<Array3<float>> d{data_a(in)};
  int calls = 0;
  auto count_calls = [&](size_t, int64_t, int64_t, float*) { ++calls; };
  ResampleSettings st;  // v21: separate-z decided per case
  EXPECT_FALSE(resample_data_streamed(d, {5.0, 0.8, 0.8}, {1.5, 1.0, 1.0}, st, 4, count_calls));  // separate-z
  EXPECT_FALSE(resample_data_streamed(d, {1.0, 1.0, 1.0}, {1.0, 1.0, 1.0}, st, 4, count_calls));  // same shape
  st.order_data = 0;
  st.force_separate_z = false;
  EXPECT_FALSE(resample_data_streamed(d, {2.0, 1.0, 1.0}, {1.0, 1.0, 1.0}, st, 4, count_calls));  // nearest
  EXPECT_EQ(calls, 0);
  st.order_data = 3;
  EXPECT_THROW(resample_data_streamed(d, {2.0, 1.0, 1.0}, {1.0, 1.0, 1.0}, st, 4,
                                      [&](size_t, int64_t, int64_t, float*) {
                                        ++calls;
                                        throw IoError("out.npz", "disk full");
                                      }),
               IoError);
  EXPECT_EQ(calls, 1);  // nothing more is handed on after a failure
}

TEST(ResampleShared, SecondStageReusesCoefficientsAndGivesTheSameBits) {
  // v21 resamples one crop to two stages: the second zoom reuses the first one's prefiltered coefficients. Each
  // result must equal a zoom computed from scratch; a changed input at the same address, or a label zoom in
  // between, must not reuse them.
  const Shape3 in{13, 30, 28};
  Array3<float> d = data_a(in);
  const Shape3 low{9, 21, 20}, high{17, 33, 31};
  auto fresh = [&](const Shape3& shape) {
    release_resample_buffers();
    Array3<float> out;
    resize_data(d, shape, 3, out);
    return out;
  };
  const Array3<float> want_low = fresh(low), want_high = fresh(high);
  release_resample_buffers();
  Array3<float> a, b, c;
  resize_data(d, low, 3, a);
  resize_data(d, high, 3, b);  // reuses the low stage's coefficients
  resize_data(d, low, 3, c);   // and back
  EXPECT_EQ(0, std::memcmp(a.v.data(), want_low.v.data(), a.v.size() * 4));
  EXPECT_EQ(0, std::memcmp(b.v.data(), want_high.v.data(), b.v.size() * 4));
  EXPECT_EQ(0, std::memcmp(c.v.data(), want_low.v.data(), c.v.size() * 4));
  // the same buffer with other values
  for (auto& x : d.v) x = -x;
  const float* before = d.v.data();
  Array3<float> neg;
  resize_data(d, high, 3, neg);
  ASSERT_EQ(before, d.v.data());
  const Array3<float> want_neg = fresh(high);
  EXPECT_EQ(0, std::memcmp(neg.v.data(), want_neg.v.data(), neg.v.size() * 4));
  // a label zoom (windowed coefficients in the same buffer) in between
  Array3<float> labels;
  resize_segmentation(seg_a(in), high, 3, labels);
  Array3<float> again;
  resize_data(d, high, 3, again);
  EXPECT_EQ(0, std::memcmp(again.v.data(), want_neg.v.data(), again.v.size() * 4));
}

// Label 0 after the single negative label is skipped, or narrowed, where the labels' one-hot values summing to 1
// decide it; the result must equal the full evaluation bit for bit: FOV corners (-1 outside a circle) with organs
// far from and touching the circle, and a straight -1 edge sampled exactly between two voxels (halved: order 1
// gives -1 and 0 both exactly 0.5 there, and 0 wins).
TEST(ResampleBackground, ShortcutGivesTheFullEvaluationsLabels) {
  const Shape3 in{20, 64, 64};
  auto fov = [](int64_t edge_organ) {
    return [=](int64_t z, int64_t y, int64_t x) {
      const int64_t dy = y - 32, dx = x - 31;
      const int64_t r2 = dy * dy + dx * dx;
      float v = r2 > 30 * 30 ? -1.0f : 0.0f;
      if (r2 < 9 * 9 && z > 3) v = 2.0f;
      if (z == 10 && y == 30 && x >= 33 && x < 36) v = 1.0f;
      if (edge_organ && r2 <= 30 * 30 && r2 > 26 * 26 && dy > 10 && z < 15) v = 3.0f;
      return v;
    };
  };
  const Array3<float> far_organs = make(in, fov(0)), edge_organ = make(in, fov(1));
  const Array3<float> straight = make(in, [](int64_t z, int64_t y, int64_t x) {
    return x < 17 ? -1.0f : (y > 40 && x > 40 && z > 2 ? 4.0f : 0.0f);
  });
  const int64_t skipped_before = resample_detail::background_passes_skipped();
  int compared = 0;
  for (const Array3<float>* seg : {&far_organs, &edge_organ, &straight}) {
    for (const Shape3& out_shape : {Shape3{14, 43, 43}, Shape3{27, 85, 85}, Shape3{10, 32, 32}}) {
      for (int order : {1, 3}) {
        for (bool slices : {false, true}) {
          const Shape3 s = slices ? Shape3{in[0], out_shape[1], out_shape[2]} : out_shape;
          Array3<float> full, quick;
          resample_detail::set_background_shortcut(false);
          if (slices) resize_segmentation_slices(*seg, s, order, full);
          else resize_segmentation(*seg, s, order, full);
          resample_detail::set_background_shortcut(true);
          if (slices) resize_segmentation_slices(*seg, s, order, quick);
          else resize_segmentation(*seg, s, order, quick);
          ASSERT_EQ(full.shape, quick.shape);
          EXPECT_EQ(full.v, quick.v) << "seg " << (seg == &far_organs ? "far" : seg == &edge_organ ? "edge" : "straight")
                                     << " -> " << s[0] << "x" << s[1] << "x" << s[2] << " order " << order
                                     << (slices ? " slices" : "");
          EXPECT_GT(counts(full)[-1.0f], 0);
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 36);
  // the far-organ FOV cases skip label 0 altogether (else this test would not exercise the shortcut)
  EXPECT_GE(resample_detail::background_passes_skipped() - skipped_before, 4);
}
