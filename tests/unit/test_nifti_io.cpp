// NIfTI reading against values computed once with nibabel 5.0 and nnU-Net's own cropped pkl/npz (phantom-tiny),
// fast path vs ITK path, rescaling, byte order, multi-member gzip, errors, and write/read round trips.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/nifti_io.hpp"
#include "test_support.hpp"

namespace amosprep {
namespace {

namespace fs = std::filesystem;

using test::shared_dir;
using test::TempDir;

bool have_fixtures() { return fs::exists(shared_dir() + "/fixtures/phantom-tiny/amos/task1_dataset.json"); }
#define REQUIRE_FIXTURES() \
  if (!have_fixtures()) GTEST_SKIP() << "shared fixtures not found at " << shared_dir() << "/fixtures"

struct Sample {
  int z, y, x;
  float value;
};
struct NibabelGolden {
  const char* file;  // under fixtures/
  int64_t shape[3];  // (z, y, x)
  double itk_spacing[3];
  double itk_origin[3];
  double itk_direction[9];
  double sum, min;
  Sample samples[6];
};

// nibabel 5.0: arr = np.asarray(img.dataobj).astype(np.float32).T; zooms float32; LPS = diag(-1,-1,1) @ affine.
const NibabelGolden kNibabel[] = {
    {"phantom-tiny/amos/imagesTr/amos_0064.nii.gz", {33, 96, 96}, {0.837890625, 0.837890625, 5.0},
     {-40.21875, -10.21875, -400.0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}, -224534792.0, -1024.0,
     {{0, 0, 0, -1010}, {32, 95, 95, -996}, {14, 61, 16, -979}, {9, 8, 62, -1024}, {27, 30, 80, -1019}, {7, 76, 15, -982}}},
    {"phantom-tiny/amos/imagesTr/amos_0130.nii.gz", {40, 96, 96}, {0.7943130135536194, 0.7943130135536194, 0.800000011920929},
     {37.33271026611328, 67.33271026611328, -403.0}, {-1, 0, 0, 0, -1, 0, 0, 0, 1}, -269584381.0, -1024.0,
     {{0, 0, 0, -1013}, {39, 95, 95, -1005}, {39, 80, 27, -1024}, {13, 75, 65, -984}, {30, 84, 86, -1004}, {18, 9, 41, -996}}},
    {"phantom-tiny/amos/imagesTr/amos_0295.nii.gz", {47, 96, 96}, {0.8783550262451172, 0.9134889841079712, 1.25},
     {41.282684326171875, -13.847472190856934, -409.0}, {-1, 0, 0, 0, 1, 0, 0, 0, 1}, -310512939.0, -1024.0,
     {{0, 0, 0, -995}, {46, 95, 95, -977}, {41, 62, 1, -993}, {18, 16, 78, -1009}, {5, 58, 0, -977}, {16, 4, 36, -980}}},
    // uint16 on disk with scl_inter = -1024, LAI orientation.
    {"phantom-tiny/amos/imagesTr/amos_0394.nii.gz", {41, 84, 84}, {0.7346090078353882, 0.7346090078353882, 1.5},
     {-30.853578567504883, 60.11896896362305, -355.0}, {1, 0, 0, 0, -1, 0, 0, 0, -1}, -108065449.0, -1024.0,
     {{0, 0, 0, 0}, {40, 83, 83, 0}, {27, 31, 2, 0}, {4, 38, 83, 0}, {19, 18, 7, 0}, {36, 30, 62, 62}}},
    {"phantom-tiny/amos/labelsTr/amos_0394.nii.gz", {41, 84, 84}, {0.7346090078353882, 0.7346090078353882, 1.5},
     {-30.853578567504883, 60.11896896362305, -355.0}, {1, 0, 0, 0, -1, 0, 0, 0, -1}, 39090.0, 0.0,
     {{0, 0, 0, 0}, {40, 83, 83, 0}, {11, 67, 65, 0}, {3, 78, 27, 0}, {29, 33, 7, 0}, {16, 14, 31, 0}}},
    // sform only (code 2), qform_code 0.
    {"real-ct/amos/imagesTr/amos_0017.nii.gz", {30, 101, 122}, {3.0, 3.0, 3.0},
     {177.95632934570312, -11.319000244140625, 94.3017578125}, {-1, 0, 0, 0, -1, 0, 0, 0, 1}, -130894872.0, -1100.0,
     {{0, 0, 0, -1024}, {29, 100, 121, -997}, {9, 38, 47, 57}, {16, 5, 34, -829}, {13, 59, 24, -80}, {13, 31, 32, 10}}},
    // int16 LAS with scl_inter = -1024 (dcm2niix).
    {"real-ct/amos/imagesTr/amos_0042.nii.gz", {20, 512, 512}, {0.9765625, 0.9765625, 2.0},
     {-249.51171875, 61.51171875, -804.5}, {1, 0, 0, 0, -1, 0, 0, 0, 1}, -3272217339.0, -1024.0,
     {{0, 0, 0, -1024}, {19, 511, 511, -1024}, {12, 172, 389, 16}, {14, 175, 94, -31}, {18, 384, 487, -1024}, {7, 214, 507, -1005}}},
    {"real-ct/amos/labelsTr/amos_0042.nii.gz", {20, 512, 512}, {0.9765625, 0.9765625, 2.0},
     {-249.51171875, 61.51171875, -804.5}, {1, 0, 0, 0, -1, 0, 0, 0, 1}, 3013392.0, 0.0,
     {{0, 0, 0, 0}, {19, 511, 511, 0}, {16, 64, 264, 0}, {12, 126, 165, 0}, {11, 389, 233, 0}, {5, 210, 188, 6}}},
};

double sum_of(const Array3<float>& a) {
  double s = 0;
  for (float v : a.v) s += v;
  return s;
}

void expect_same_image(const Image& a, const Image& b) {
  ASSERT_EQ(a.voxels.shape, b.voxels.shape);
  EXPECT_EQ(0, std::memcmp(a.voxels.data(), b.voxels.data(), a.voxels.size() * sizeof(float)));
  EXPECT_EQ(a.geom.shape, b.geom.shape);
  EXPECT_EQ(a.geom.spacing, b.geom.spacing);
  EXPECT_EQ(a.geom.itk_spacing, b.geom.itk_spacing);
  EXPECT_EQ(a.geom.itk_origin, b.geom.itk_origin);
  EXPECT_EQ(a.geom.itk_direction, b.geom.itk_direction);
}

TEST(NiftiIo, ReadsFixturesLikeNibabelAndItk) {
  REQUIRE_FIXTURES();
  for (const NibabelGolden& g : kNibabel) {
    SCOPED_TRACE(g.file);
    const std::string path = shared_dir() + "/fixtures/" + g.file;
    const Image im = read_nifti(path, "case");
    ASSERT_EQ(im.voxels.shape, (Shape3{g.shape[0], g.shape[1], g.shape[2]}));
    EXPECT_EQ(im.geom.shape, im.voxels.shape);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(im.geom.itk_spacing[i], g.itk_spacing[i]);
      EXPECT_EQ(im.geom.spacing[2 - i], g.itk_spacing[i]);
      EXPECT_EQ(im.geom.itk_origin[i], g.itk_origin[i]);
    }
    for (int i = 0; i < 9; ++i) EXPECT_EQ(im.geom.itk_direction[i], g.itk_direction[i]);
    EXPECT_EQ(sum_of(im.voxels), g.sum);
    EXPECT_EQ(*std::min_element(im.voxels.v.begin(), im.voxels.v.end()), g.min);
    for (const Sample& s : g.samples) EXPECT_EQ(im.voxels(s.z, s.y, s.x), s.value) << s.z << "," << s.y << "," << s.x;
    expect_same_image(im, read_nifti_with_itk(path, "case"));
  }
}

struct CroppedGolden {
  const char* id;
  int64_t original_size[3];
  double original_spacing[3];
  double itk_origin[3], itk_spacing[3], itk_direction[9];
  int64_t bbox[6];
  double image_sum, image_sum_sq, seg_positive_sum;
};

// From nnU-Net v1's cropped <id>.pkl and <id>.npz (phantom-tiny, ExperimentPlanner3D_v21).
const CroppedGolden kCropped[] = {
    {"amos_0064", {33, 96, 96}, {5.0, 0.837890625, 0.837890625}, {-40.21875, -10.21875, -400.0},
     {0.837890625, 0.837890625, 5.0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}, {0, 33, 0, 96, 0, 96}, -224534792.0,
     226627745996.0, 46277.0},
    {"amos_0130", {40, 96, 96}, {0.800000011920929, 0.7943130135536194, 0.7943130135536194},
     {37.33271026611328, 67.33271026611328, -403.0}, {0.7943130135536194, 0.7943130135536194, 0.800000011920929},
     {-1, 0, 0, 0, -1, 0, 0, 0, 1}, {0, 40, 0, 96, 0, 96}, -269584381.0, 272275737541.0, 58123.0},
    {"amos_0280", {46, 84, 96}, {2.0, 0.904296875, 0.904296875}, {-43.40625, -7.98046875, -406.0},
     {0.904296875, 0.904296875, 2.0}, {1, 0, 0, 0, 1, 0, 0, 0, 1}, {2, 44, 3, 81, 9, 87}, -107048839.0,
     109968644539.0, 63708.0},
    {"amos_0295", {47, 96, 96}, {1.25, 0.9134889841079712, 0.8783550262451172},
     {41.282684326171875, -13.847472190856934, -409.0}, {0.8783550262451172, 0.9134889841079712, 1.25},
     {-1, 0, 0, 0, 1, 0, 0, 0, 1}, {0, 47, 0, 96, 0, 96}, -310512939.0, 314132688613.0, 64610.0},
    {"amos_0345", {47, 108, 108}, {3.0, 0.625, 0.625}, {-33.75, -3.75, -412.0}, {0.625, 0.625, 3.0},
     {1, 0, 0, 0, 1, 0, 0, 0, 1}, {0, 47, 0, 108, 0, 108}, -387811188.0, 391713287826.0, 73028.0},
    {"amos_0394", {41, 84, 84}, {1.5, 0.7346090078353882, 0.7346090078353882},
     {-30.853578567504883, 60.11896896362305, -355.0}, {0.7346090078353882, 0.7346090078353882, 1.5},
     {1, 0, 0, 0, -1, 0, 0, 0, -1}, {2, 39, 3, 81, 3, 81}, -108065449.0, 110466595663.0, 39090.0},
};

TEST(NiftiIo, MatchesNnunetCroppedProperties) {
  REQUIRE_FIXTURES();
  for (const CroppedGolden& g : kCropped) {
    SCOPED_TRACE(g.id);
    const std::string amos = shared_dir() + "/fixtures/phantom-tiny/amos/";
    const Image im = read_nifti(amos + "imagesTr/" + g.id + ".nii.gz", g.id);
    const Image seg = read_nifti(amos + "labelsTr/" + g.id + ".nii.gz", g.id);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(im.geom.shape[i], g.original_size[i]);
      EXPECT_EQ(im.geom.spacing[i], g.original_spacing[i]);
      EXPECT_EQ(im.geom.itk_origin[i], g.itk_origin[i]);
      EXPECT_EQ(im.geom.itk_spacing[i], g.itk_spacing[i]);
    }
    for (int i = 0; i < 9; ++i) EXPECT_EQ(im.geom.itk_direction[i], g.itk_direction[i]);
    double s = 0, s2 = 0, lab = 0;
    for (int64_t z = g.bbox[0]; z < g.bbox[1]; ++z)
      for (int64_t y = g.bbox[2]; y < g.bbox[3]; ++y)
        for (int64_t x = g.bbox[4]; x < g.bbox[5]; ++x) {
          const double v = im.voxels(z, y, x);
          s += v;
          s2 += v * v;
          lab += std::max(0.0f, seg.voxels(z, y, x));
        }
    EXPECT_EQ(s, g.image_sum);
    EXPECT_EQ(s2, g.image_sum_sq);
    EXPECT_EQ(lab, g.seg_positive_sum);
  }
}

TEST(NiftiIo, HeaderInfoOfFixtures) {
  REQUIRE_FIXTURES();
  const NiftiHeaderInfo u16 = read_nifti_header(shared_dir() + "/fixtures/phantom-tiny/amos/imagesTr/amos_0394.nii.gz");
  EXPECT_EQ(u16.ndim, 3);
  EXPECT_EQ(u16.dim[0], 84);
  EXPECT_EQ(u16.dim[2], 41);
  EXPECT_EQ(u16.datatype, 512);
  EXPECT_EQ(u16.scl_slope, 1.0);
  EXPECT_EQ(u16.scl_inter, -1024.0);
  EXPECT_EQ(u16.pixdim[3], 1.5);
  EXPECT_FALSE(u16.qform_sform_disagree);
  const NiftiHeaderInfo sform_only = read_nifti_header(shared_dir() + "/fixtures/real-ct/amos/imagesTr/amos_0017.nii.gz");
  EXPECT_EQ(sform_only.qform_code, 0);
  EXPECT_EQ(sform_only.sform_code, 2);
  EXPECT_EQ(sform_only.datatype, 4);
  EXPECT_FALSE(sform_only.qform_sform_disagree);
}

// ---- files made here ----------------------------------------------------------------------------------------

Geometry oblique_geometry(const Shape3& shape) {
  Geometry g;
  g.shape = shape;
  g.itk_spacing = {0.7, 0.9, 3.0};
  g.spacing = {static_cast<float>(3.0), static_cast<float>(0.9), static_cast<float>(0.7)};
  g.itk_origin = {-120.5, 33.25, -402.0};
  const double c = std::cos(0.35), s = std::sin(0.35);
  // rotation about z combined with a flip of the second axis (determinant -1)
  g.itk_direction = {c, s, 0, s, -c, 0, 0, 0, 1};
  return g;
}

Array3<float> ramp(const Shape3& shape, float scale, float offset) {
  Array3<float> a(shape);
  for (size_t i = 0; i < a.size(); ++i) a.v[i] = std::nearbyint(static_cast<float>((i * 7919) % 2001) * scale + offset);
  return a;
}

void patch_bytes(const std::string& path, size_t offset, const void* data, size_t n) {
  std::string bytes = read_file(path);
  ASSERT_LE(offset + n, bytes.size());
  std::memcpy(bytes.data() + offset, data, n);
  write_file_atomic(path, bytes);
}
template <class T>
void patch(const std::string& path, size_t offset, T v) {
  patch_bytes(path, offset, &v, sizeof v);
}

std::string gzip_members(const std::string& raw, size_t pieces) {
  std::string out;
  const size_t step = (raw.size() + pieces - 1) / pieces;
  for (size_t p = 0; p < raw.size(); p += step) {
    const size_t n = std::min(step, raw.size() - p);
    z_stream zs{};
    EXPECT_EQ(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::string buf(deflateBound(&zs, n) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data() + p));
    zs.avail_in = static_cast<uInt>(n);
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out.append(buf.data(), zs.total_out);
    deflateEnd(&zs);
  }
  return out;
}

TEST(NiftiIo, WriteReadRoundTrip) {
  TempDir tmp;
  const Shape3 shape{5, 7, 9};
  const Geometry g = oblique_geometry(shape);
  struct Case {
    const char* name;
    NiftiPixel pixel;
    int datatype;
    float scale, offset;
  };
  const Case cases[] = {{"i16.nii.gz", NiftiPixel::int16, 4, 1.0f, -1000.0f},
                        {"u8.nii", NiftiPixel::uint8, 2, 0.1f, 0.0f},
                        {"u16.nii.gz", NiftiPixel::uint16, 512, 30.0f, 0.0f},
                        {"i32.nii", NiftiPixel::int32, 8, 1000.0f, -5.0f},
                        {"f32.nii.gz", NiftiPixel::float32, 16, 0.37f, 0.25f}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Array3<float> v = ramp(shape, c.scale, c.offset);
    if (c.pixel == NiftiPixel::float32) v.v[3] = 0.123456789f;
    write_nifti(tmp / c.name, v, g, c.pixel);
    const Image fast = read_nifti(tmp / c.name);
    expect_same_image(fast, read_nifti_with_itk(tmp / c.name));
    ASSERT_EQ(fast.voxels.shape, shape);
    EXPECT_EQ(fast.voxels.v, v.v);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(fast.geom.itk_spacing[i], static_cast<double>(static_cast<float>(g.itk_spacing[i])));
      EXPECT_NEAR(fast.geom.itk_origin[i], g.itk_origin[i], 1e-4);
    }
    for (int i = 0; i < 9; ++i) EXPECT_NEAR(fast.geom.itk_direction[i], g.itk_direction[i], 1e-6) << i;
    const NiftiHeaderInfo h = read_nifti_header(tmp / c.name);
    EXPECT_EQ(h.datatype, c.datatype);
    EXPECT_EQ(h.qform_code, 1);
    EXPECT_EQ(h.sform_code, 1);
    EXPECT_FALSE(h.qform_sform_disagree);
    EXPECT_EQ(h.dim[0], 9);
    EXPECT_EQ(h.dim[2], 5);
  }
  EXPECT_FALSE(fs::exists(tmp / "i16.nii.gz.tmp." + std::to_string(::getpid())));
  // The typed overloads write the same bytes as the float path.
  const Array3<float> vi = ramp(shape, 1.0f, -1000.0f);
  Array3<int16_t> i16(shape);
  for (size_t i = 0; i < vi.size(); ++i) i16.v[i] = static_cast<int16_t>(vi.v[i]);
  write_nifti(tmp / "typed_i16.nii.gz", i16, g);
  EXPECT_EQ(read_file(tmp / "typed_i16.nii.gz"), read_file(tmp / "i16.nii.gz"));
  const Array3<float> vu = ramp(shape, 0.1f, 0.0f);
  Array3<uint8_t> u8(shape);
  for (size_t i = 0; i < vu.size(); ++i) u8.v[i] = static_cast<uint8_t>(vu.v[i]);
  write_nifti(tmp / "typed_u8.nii", u8, g);
  EXPECT_EQ(read_file(tmp / "typed_u8.nii"), read_file(tmp / "u8.nii"));
  // Every flip combination round-trips to the same direction exactly.
  for (int mask = 0; mask < 8; ++mask) {
    Geometry f = g;
    f.itk_direction = {mask & 1 ? -1.0 : 1.0, 0, 0, 0, mask & 2 ? -1.0 : 1.0, 0, 0, 0, mask & 4 ? -1.0 : 1.0};
    write_nifti(tmp / "flip.nii", ramp(shape, 1, 0), f, NiftiPixel::int16);
    EXPECT_EQ(read_nifti(tmp / "flip.nii").geom.itk_direction, f.itk_direction) << mask;
  }
}

TEST(NiftiIo, RejectsValuesTheTypeCannotHold) {
  TempDir tmp;
  const Shape3 shape{2, 2, 2};
  Geometry g;
  g.shape = shape;
  Array3<float> v(shape, 1.0f);
  v.v[5] = 1.5f;
  EXPECT_THROW(write_nifti(tmp / "a.nii.gz", v, g, NiftiPixel::int16), InternalError);
  v.v[5] = 256.0f;
  EXPECT_THROW(write_nifti(tmp / "a.nii.gz", v, g, NiftiPixel::uint8), InternalError);
  v.v[5] = -1.0f;
  EXPECT_THROW(write_nifti(tmp / "a.nii.gz", v, g, NiftiPixel::uint16), InternalError);
  EXPECT_FALSE(fs::exists(tmp / "a.nii.gz"));
  g.shape = {2, 2, 3};
  EXPECT_THROW(write_nifti(tmp / "b.nii", Array3<float>(shape), g, NiftiPixel::float32), InternalError);
}

TEST(NiftiIo, RescaleLikeItk) {
  TempDir tmp;
  const Shape3 shape{3, 4, 5};
  const Geometry g = oblique_geometry(shape);
  // int32 with slope 0.3, inter 0.1: float(double(float(raw)) * 0.3f + 0.1f), both paths bit-identical.
  Array3<float> v = ramp(shape, 40000.0f, -30000000.0f);
  write_nifti(tmp / "i32.nii", v, g, NiftiPixel::int32);
  patch<int32_t>(tmp / "i32.nii", 352, 16777217);  // not a float: ITK rounds it to float before scaling
  patch<float>(tmp / "i32.nii", 112, 0.3f);
  patch<float>(tmp / "i32.nii", 116, 0.1f);
  const Image fast = read_nifti(tmp / "i32.nii");
  expect_same_image(fast, read_nifti_with_itk(tmp / "i32.nii"));
  for (size_t i = 0; i < v.size(); ++i) {
    const int32_t raw = i == 0 ? 16777217 : static_cast<int32_t>(v.v[i]);
    double e = static_cast<double>(static_cast<float>(raw)) * static_cast<double>(0.3f);
    e += static_cast<double>(0.1f);
    ASSERT_EQ(fast.voxels.v[i], static_cast<float>(e)) << i;
  }
  // uint16 with scl_inter -1024 (the phantom-tiny amos_0394 layout), gzip.
  Array3<float> u = ramp(shape, 1.0f, 0.0f);
  write_nifti(tmp / "u16.nii", u, g, NiftiPixel::uint16);
  patch<float>(tmp / "u16.nii", 116, -1024.0f);
  const Image u16 = read_nifti(tmp / "u16.nii");
  expect_same_image(u16, read_nifti_with_itk(tmp / "u16.nii"));
  for (size_t i = 0; i < u.size(); ++i) ASSERT_EQ(u16.voxels.v[i], u.v[i] - 1024.0f);
  // scl_slope 0 means "no scaling"; a float32 file with a real slope goes through ITK.
  write_nifti(tmp / "u16z.nii", u, g, NiftiPixel::uint16);
  patch<float>(tmp / "u16z.nii", 112, 0.0f);
  patch<float>(tmp / "u16z.nii", 116, 5.0f);
  expect_same_image(read_nifti(tmp / "u16z.nii"), read_nifti_with_itk(tmp / "u16z.nii"));
  write_nifti(tmp / "f32.nii", u, g, NiftiPixel::float32);
  patch<float>(tmp / "f32.nii", 112, 2.0f);
  patch<float>(tmp / "f32.nii", 116, 0.5f);
  const Image f32 = read_nifti(tmp / "f32.nii");
  expect_same_image(f32, read_nifti_with_itk(tmp / "f32.nii"));
  EXPECT_EQ(f32.voxels.v[7], u.v[7] * 2.0f + 0.5f);
}

TEST(NiftiIo, BigEndianAndMultiMemberGzip) {
  TempDir tmp;
  const Shape3 shape{4, 6, 8};
  const Geometry g = oblique_geometry(shape);
  const Array3<float> v = ramp(shape, 3.0f, -3000.0f);
  write_nifti(tmp / "le.nii", v, g, NiftiPixel::int16);
  std::string bytes = read_file(tmp / "le.nii");
  // Swap every multi-byte header field we wrote, then the int16 voxels.
  auto swap_at = [&](size_t off, size_t n) { std::reverse(bytes.begin() + off, bytes.begin() + off + n); };
  swap_at(0, 4);
  for (int i = 0; i < 8; ++i) swap_at(40 + 2 * i, 2);
  swap_at(70, 2);
  swap_at(72, 2);
  for (int i = 0; i < 8; ++i) swap_at(76 + 4 * i, 4);
  for (size_t off : {108, 112, 116}) swap_at(off, 4);
  swap_at(252, 2);
  swap_at(254, 2);
  for (int i = 0; i < 18; ++i) swap_at(256 + 4 * i, 4);
  for (size_t off = 352; off < bytes.size(); off += 2) swap_at(off, 2);
  write_file_atomic(tmp / "be.nii", bytes);
  const Image be = read_nifti(tmp / "be.nii");
  expect_same_image(be, read_nifti_with_itk(tmp / "be.nii"));
  EXPECT_EQ(be.voxels.v, v.v);
  EXPECT_EQ(read_nifti_header(tmp / "be.nii").datatype, 4);

  // Three concatenated gzip members (like bgzip / pigz -i output) decode through the streaming path.
  write_file_atomic(tmp / "multi.nii.gz", gzip_members(read_file(tmp / "le.nii"), 3));
  const Image multi = read_nifti(tmp / "multi.nii.gz");
  expect_same_image(multi, read_nifti_with_itk(tmp / "multi.nii.gz"));
  EXPECT_EQ(multi.voxels.v, v.v);
}

TEST(NiftiIo, ReadsFourDWithOneVolumeRejectsMore) {
  TempDir tmp;
  const Shape3 shape{4, 3, 5};
  Geometry g;
  g.shape = shape;
  const Array3<float> v = ramp(shape, 1.0f, 0.0f);
  write_nifti(tmp / "t1.nii", v, g, NiftiPixel::int16);
  patch<int16_t>(tmp / "t1.nii", 40, 4);  // dim[0] = 4, dim[4] = 1
  const Image t1 = read_nifti(tmp / "t1.nii");
  EXPECT_EQ(t1.voxels.shape, shape);
  EXPECT_EQ(t1.voxels.v, v.v);

  write_nifti(tmp / "t2.nii", v, g, NiftiPixel::int16);
  patch<int16_t>(tmp / "t2.nii", 40, 4);
  patch<int16_t>(tmp / "t2.nii", 46, 2);  // dim[3] = 2
  patch<int16_t>(tmp / "t2.nii", 48, 2);  // dim[4] = 2
  try {
    read_nifti(tmp / "t2.nii", "amos_0001");
    FAIL() << "4-D image accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.case_id(), "amos_0001");
    EXPECT_EQ(e.file(), tmp / "t2.nii");
    EXPECT_NE(e.reason().find("3-D"), std::string::npos) << e.reason();
  }
}

TEST(NiftiIo, CorruptMissingAndTruncatedFilesAreInputErrors) {
  TempDir tmp;
  const Shape3 shape{6, 20, 20};
  Geometry g;
  g.shape = shape;
  write_nifti(tmp / "ok.nii.gz", ramp(shape, 5.0f, -2000.0f), g, NiftiPixel::int16);
  write_nifti(tmp / "ok.nii", ramp(shape, 5.0f, -2000.0f), g, NiftiPixel::int16);
  const std::string gz = read_file(tmp / "ok.nii.gz");
  const std::string raw = read_file(tmp / "ok.nii");
  write_file_atomic(tmp / "trunc.nii.gz", gz.substr(0, gz.size() / 2));
  write_file_atomic(tmp / "trunc.nii", raw.substr(0, raw.size() - 100));
  std::string flipped = gz;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x55);
  flipped[flipped.size() / 2 + 1] = static_cast<char>(flipped[flipped.size() / 2 + 1] ^ 0x55);
  write_file_atomic(tmp / "corrupt.nii.gz", flipped);
  write_file_atomic(tmp / "garbage.nii.gz", std::string(1000, 'x'));
  write_file_atomic(tmp / "empty.nii", "");
  for (const char* name : {"missing.nii.gz", "trunc.nii.gz", "trunc.nii", "corrupt.nii.gz", "garbage.nii.gz",
                           "empty.nii"}) {
    SCOPED_TRACE(name);
    EXPECT_THROW(read_nifti(tmp / name, "amos_0002"), InputError);
  }
  EXPECT_THROW(read_nifti_header(tmp / "missing.nii.gz"), InputError);
  EXPECT_THROW(read_nifti_header(tmp / "garbage.nii.gz"), InputError);
  EXPECT_THROW(read_nifti_header(tmp / "empty.nii"), InputError);
}

TEST(NiftiIo, HeaderReportsQformSformDisagreement) {
  TempDir tmp;
  const Shape3 shape{2, 3, 4};
  const Geometry g = oblique_geometry(shape);
  write_nifti(tmp / "a.nii", Array3<float>(shape), g, NiftiPixel::uint8);
  EXPECT_FALSE(read_nifti_header(tmp / "a.nii").qform_sform_disagree);
  float qx;
  std::memcpy(&qx, read_file(tmp / "a.nii").data() + 268, 4);
  patch<float>(tmp / "a.nii", 268, qx + 10.0f);  // qoffset_x moves, srow_x[3] does not
  const NiftiHeaderInfo h = read_nifti_header(tmp / "a.nii");
  EXPECT_TRUE(h.qform_sform_disagree);
  patch<int16_t>(tmp / "a.nii", 254, 0);  // sform_code 0: nothing to compare
  EXPECT_FALSE(read_nifti_header(tmp / "a.nii").qform_sform_disagree);
}

TEST(NiftiIo, ExactTypedReadEqualsTheFloatRead) {
  TempDir tmp;
  const Shape3 shape{4, 6, 8};
  const Geometry g = oblique_geometry(shape);
  const Array3<float> ct = ramp(shape, 3.0f, -3000.0f), labels = ramp(shape, 0.1f, 0.0f);
  write_nifti(tmp / "ct.nii.gz", ct, g, NiftiPixel::int16);
  write_nifti(tmp / "ct.nii", ct, g, NiftiPixel::int16);
  write_nifti(tmp / "lab.nii.gz", labels, g, NiftiPixel::uint8);
  write_file_atomic(tmp / "multi.nii.gz", gzip_members(read_file(tmp / "ct.nii"), 3));
  for (const char* name : {"ct.nii.gz", "ct.nii", "multi.nii.gz"}) {
    SCOPED_TRACE(name);
    Geometry geom;
    const auto typed = read_nifti_exact<int16_t>(tmp / name, "amos_0001", geom);
    ASSERT_TRUE(typed.has_value());
    const Image ref = read_nifti(tmp / name);
    EXPECT_EQ(typed->shape, ref.voxels.shape);
    ASSERT_EQ(typed->v.size(), ref.voxels.v.size());
    for (size_t i = 0; i < typed->v.size(); ++i) ASSERT_EQ(static_cast<float>(typed->v[i]), ref.voxels.v[i]) << i;
    EXPECT_EQ(geom.itk_direction, ref.geom.itk_direction);
    EXPECT_EQ(geom.spacing, ref.geom.spacing);
  }
  Geometry geom;
  const auto lab = read_nifti_exact<uint8_t>(tmp / "lab.nii.gz", "", geom);
  ASSERT_TRUE(lab.has_value());
  const Image lab_ref = read_nifti(tmp / "lab.nii.gz");
  for (size_t i = 0; i < lab->v.size(); ++i) ASSERT_EQ(static_cast<float>(lab->v[i]), lab_ref.voxels.v[i]) << i;
  // Other on-disk types, or scaling, are not "exact": the caller falls back to read_nifti.
  EXPECT_FALSE(read_nifti_exact<uint8_t>(tmp / "ct.nii.gz", "", geom).has_value());
  EXPECT_FALSE(read_nifti_exact<int16_t>(tmp / "lab.nii.gz", "", geom).has_value());
  write_nifti(tmp / "scaled.nii", ct, g, NiftiPixel::int16);
  patch<float>(tmp / "scaled.nii", 112, 2.0f);
  EXPECT_FALSE(read_nifti_exact<int16_t>(tmp / "scaled.nii", "", geom).has_value());
  // Errors name the case and the file like read_nifti's.
  write_file_atomic(tmp / "short.nii.gz", read_file(tmp / "ct.nii.gz").substr(0, 200));
  try {
    read_nifti_exact<int16_t>(tmp / "short.nii.gz", "amos_0042", geom);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.case_id(), "amos_0042");
  }
}

}  // namespace
}  // namespace amosprep
