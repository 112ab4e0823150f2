// Cropping to the non-zero region: spec §9.10, golden values from scipy 1.10.1 binary_fill_holes + nnU-Net's
// crop_to_nonzero run once and embedded, and a comparison with the real nnU-Net v1 cropped fixture.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "amosprep/crop.hpp"
#include "amosprep/error.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

namespace {

// Spec §9.10: (5,5,5) of -1000 with a zero plane [:,0,:], an enclosed hole [2,2,2] and a hole [0,1:4,1:4] open to
// the z = 0 face.
Array3<float> spec_volume() {
  Array3<float> a({5, 5, 5}, -1000.0f);
  for (int z = 0; z < 5; ++z)
    for (int x = 0; x < 5; ++x) a(z, 0, x) = 0;
  a(2, 2, 2) = 0;
  for (int y = 1; y < 4; ++y)
    for (int x = 1; x < 4; ++x) a(0, y, x) = 0;
  return a;
}

using BBox = std::array<std::array<int64_t, 2>, 3>;

// (23,29,31) volume whose zero voxels form many small pockets (727 of them are holes for 6-connectivity, none for
// 26-connectivity), with zero margins; labels scattered inside and outside the mask and one -4 label.
void structured_case(Array3<float>& img, Array3<float>& seg) {
  img = Array3<float>({23, 29, 31}, 0.0f);
  seg = Array3<float>({23, 29, 31}, 0.0f);
  for (int64_t z = 0; z < 23; ++z)
    for (int64_t y = 0; y < 29; ++y)
      for (int64_t x = 0; x < 31; ++x) {
        const int64_t h = ((z * 73856093) ^ (y * 19349663) ^ (x * 83492791)) % 1000003 % 100;
        const bool margin = z < 2 || y >= 26 || x < 1;
        img(z, y, x) = (h < 62 && !margin) ? static_cast<float>(h * 7 - 200) : 0.0f;
        seg(z, y, x) = (h % 5 == 1) ? static_cast<float>(1 + h % 3) : 0.0f;
      }
  seg(5, 6, 7) = -4;
}

}  // namespace

TEST(Crop, SpecVectorFilledHoleAndBoundaryHole) {
  const Array3<float> img = spec_volume();
  const Array3<float> seg({5, 5, 5}, 0.0f);
  const CropResult r = crop_to_nonzero({img}, &seg);
  EXPECT_EQ(r.bbox, (BBox{{{0, 5}, {1, 5}, {0, 5}}}));
  EXPECT_EQ(r.size_after_cropping, (Shape3{5, 4, 5}));
  EXPECT_EQ(r.classes, (std::vector<float>{-1.0f, 0.0f}));
  ASSERT_EQ(r.data.size(), 1u);
  ASSERT_EQ(r.data[0].shape, (Shape3{5, 4, 5}));
  EXPECT_EQ(r.data[0](2, 1, 2), 0.0f);  // the filled hole keeps its image value
  EXPECT_EQ(r.data[0](2, 0, 2), -1000.0f);
  ASSERT_EQ(r.seg.shape, (Shape3{5, 4, 5}));
  // -1 exactly on the open hole: original [0, 1:4, 1:4] = cropped [0, 0:3, 1:4] (scipy run).
  for (int64_t z = 0; z < 5; ++z)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x) {
        const bool open_hole = z == 0 && y < 3 && x >= 1 && x <= 3;
        EXPECT_EQ(r.seg(z, y, x), open_hole ? -1.0f : 0.0f) << z << "," << y << "," << x;
      }
  EXPECT_EQ(r.seg(2, 1, 2), 0.0f);   // mask[2,2,2] is True (filled)
  EXPECT_EQ(r.seg(0, 1, 2), -1.0f);  // mask[0,2,2] is False (touches the boundary)
}

TEST(Crop, SixConnectedFillMatchesScipyOnStructuredVolume) {
  Array3<float> img, seg;
  structured_case(img, seg);
  const CropResult r = crop_to_nonzero({img}, &seg);
  EXPECT_EQ(r.bbox, (BBox{{{2, 23}, {0, 26}, {1, 31}}}));
  EXPECT_EQ(r.classes, (std::vector<float>{-4.0f, -1.0f, 0.0f, 1.0f, 2.0f, 3.0f}));
  uint64_t count = 0, sum = 0, sumsq = 0;
  for (size_t i = 0; i < r.seg.size(); ++i)
    if (r.seg.v[i] == -1.0f) ++count, sum += i, sumsq += static_cast<uint64_t>(i) * i;
  EXPECT_EQ(count, 4402u);
  EXPECT_EQ(sum, 36280444u);
  EXPECT_EQ(sumsq, 399448550062u);
  EXPECT_EQ(r.seg(5 - 2, 6 - 0, 7 - 1), 0.0f);  // -4 is listed in classes, then reset to 0
  for (float v : r.seg.v) EXPECT_GE(v, -1.0f);
  // Non-zero labels keep their value, also on zero image voxels outside the filled mask (scipy run: 3332 and 1159).
  int64_t labels = 0, labels_on_zero = 0;
  for (size_t i = 0; i < r.seg.size(); ++i) {
    labels += r.seg.v[i] > 0 ? 1 : 0;
    labels_on_zero += (r.seg.v[i] > 0 && r.data[0].v[i] == 0.0f) ? 1 : 0;
  }
  EXPECT_EQ(labels, 3332);
  EXPECT_EQ(labels_on_zero, 1159);
}

TEST(Crop, WithoutSegTheSegComesFromTheMask) {
  Array3<float> img, seg;
  structured_case(img, seg);
  const CropResult r = crop_to_nonzero({img}, nullptr);
  EXPECT_EQ(r.bbox, (BBox{{{2, 23}, {0, 26}, {1, 31}}}));
  EXPECT_EQ(r.classes, (std::vector<float>{-1.0f, 0.0f}));
  int64_t minus_one = 0;
  for (float v : r.seg.v) {
    EXPECT_TRUE(v == -1.0f || v == 0.0f);
    minus_one += v == -1.0f ? 1 : 0;
  }
  EXPECT_EQ(minus_one, 5413);
}

TEST(Crop, MaskIsTheUnionOfChannels) {
  Array3<float> a({4, 6, 7}, 0.0f), b({4, 6, 7}, 0.0f);
  a(1, 2, 3) = 5;
  b(3, 5, 0) = -2;
  const CropResult r = crop_to_nonzero({a, b}, nullptr);
  EXPECT_EQ(r.bbox, (BBox{{{1, 4}, {2, 6}, {0, 4}}}));
  ASSERT_EQ(r.data.size(), 2u);
  EXPECT_EQ(r.data[0](0, 0, 3), 5.0f);
  EXPECT_EQ(r.data[1](2, 3, 0), -2.0f);
  EXPECT_EQ(r.seg(0, 0, 3), 0.0f);
  EXPECT_EQ(r.seg(0, 0, 0), -1.0f);
}

TEST(Crop, AllZeroImageIsAnInputError) {
  const Array3<float> img({3, 4, 5}, 0.0f);
  try {
    crop_to_nonzero({img}, nullptr);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.code(), kExitBadInput);
    EXPECT_EQ(e.reason(), "image is all zero: nothing to crop");
    EXPECT_TRUE(e.case_id().empty());
  }
}

TEST(Crop, ShapeMismatchIsAnInputError) {
  const Array3<float> img({3, 4, 5}, 1.0f), seg({3, 4, 6}, 0.0f);
  EXPECT_THROW(crop_to_nonzero({img}, &seg), InputError);
}

// ---- real nnU-Net v1 fixture ----------------------------------------------------------------------------------

namespace {

const char* kConvertScript = R"PY(
import sys, os, pickle
try:
    import numpy as np, nibabel as nib
except ImportError:
    sys.exit(77)
raw, cropped, out = sys.argv[1:4]
cases = sorted(f[:-4] for f in os.listdir(cropped) if f.endswith('.pkl') and f.startswith('amos_'))
with open(os.path.join(out, 'cases.txt'), 'w') as listing:
    for c in cases:
        img = np.asanyarray(nib.load(os.path.join(raw, 'imagesTr', c + '.nii.gz')).dataobj)
        seg = np.asanyarray(nib.load(os.path.join(raw, 'labelsTr', c + '.nii.gz')).dataobj)
        img = np.ascontiguousarray(img.transpose(2, 1, 0).astype(np.float32))
        seg = np.ascontiguousarray(seg.transpose(2, 1, 0).astype(np.float32))
        p = pickle.load(open(os.path.join(cropped, c + '.pkl'), 'rb'))
        a = np.load(os.path.join(cropped, c + '.npz'))['data'].astype(np.float32)
        for name, arr in (('img', img), ('seg', seg), ('cdata', a[0]), ('cseg', a[1])):
            np.ascontiguousarray(arr).tofile(os.path.join(out, c + '_' + name + '.f32'))
        bb = [v for b in p['crop_bbox'] for v in b]
        listing.write('%s %d %d %d %s %d %s\n' % (c, *img.shape, ' '.join(map(str, bb)), len(p['classes']),
                                                ' '.join(repr(float(v)) for v in p['classes'])))
)PY";

std::vector<float> read_f32(const fs::path& p, size_t n) {
  std::vector<float> v(n);
  std::ifstream f(p, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  if (!f || f.gcount() != static_cast<std::streamsize>(n * sizeof(float))) ADD_FAILURE() << "short read " << p;
  return v;
}

}  // namespace

TEST(Crop, MatchesRealNnunetCroppedFixture) {
  const fs::path shared = fs::path(AMOSPREP_SOURCE_DIR) / ".." / "shared";
  const fs::path set = shared / "fixtures" / "phantom-tiny";
  const fs::path cropped = set / "nnunet-v1" / "ExperimentPlanner3D_v21" / "nnUNet_raw_data_base" /
                           "nnUNet_cropped_data" / "Task216_AMOS2022_task1";
  if (!fs::is_directory(cropped) || !fs::is_directory(set / "amos" / "imagesTr"))
    GTEST_SKIP() << "shared fixtures not found next to the source tree (" << set << ")";
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is needed to decode the fixture";

  const fs::path tmp = fs::temp_directory_path() / ("amosprep_crop_fixture_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  struct RemoveOnExit {
    fs::path dir;
    ~RemoveOnExit() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{tmp};
  {
    std::ofstream(tmp / "convert.py") << kConvertScript;
  }
  const std::string cmd = "/usr/bin/python3 '" + (tmp / "convert.py").string() + "' '" + (set / "amos").string() +
                          "' '" + cropped.string() + "' '" + tmp.string() + "'";
  const int status = std::system(cmd.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    GTEST_SKIP() << "/usr/bin/python3 lacks numpy or nibabel, needed to decode the fixture";
  }
  ASSERT_EQ(status, 0) << "fixture conversion failed: " << cmd;

  std::ifstream listing(tmp / "cases.txt");
  std::string line;
  int n_cases = 0;
  while (std::getline(listing, line)) {
    std::istringstream in(line);
    std::string id;
    Shape3 sh;
    BBox bb;
    size_t n_classes = 0;
    in >> id >> sh[0] >> sh[1] >> sh[2] >> bb[0][0] >> bb[0][1] >> bb[1][0] >> bb[1][1] >> bb[2][0] >> bb[2][1] >>
        n_classes;
    std::vector<float> classes(n_classes);
    for (float& c : classes) in >> c;
    ASSERT_FALSE(in.fail()) << line;
    SCOPED_TRACE(id);
    ++n_cases;

    Array3<float> img(sh), seg(sh);
    img.v = read_f32(tmp / (id + "_img.f32"), img.size());
    seg.v = read_f32(tmp / (id + "_seg.f32"), seg.size());
    const CropResult r = crop_to_nonzero({img}, &seg);
    EXPECT_EQ(r.bbox, bb);
    EXPECT_EQ(r.classes, classes);
    const Shape3 csh = {bb[0][1] - bb[0][0], bb[1][1] - bb[1][0], bb[2][1] - bb[2][0]};
    EXPECT_EQ(r.size_after_cropping, csh);
    ASSERT_EQ(r.data.size(), 1u);
    ASSERT_EQ(r.data[0].shape, csh);
    ASSERT_EQ(r.seg.shape, csh);
    const std::vector<float> want_data = read_f32(tmp / (id + "_cdata.f32"), r.data[0].size());
    const std::vector<float> want_seg = read_f32(tmp / (id + "_cseg.f32"), r.seg.size());
    size_t data_diff = 0, seg_diff = 0;
    for (size_t i = 0; i < want_data.size(); ++i) data_diff += r.data[0].v[i] != want_data[i];
    for (size_t i = 0; i < want_seg.size(); ++i) seg_diff += r.seg.v[i] != want_seg[i];
    EXPECT_EQ(data_diff, 0u);
    EXPECT_EQ(seg_diff, 0u);
  }
  EXPECT_GE(n_cases, 6);
}

TEST(Crop, CompactCropEqualsTheFloatCrop) {
  Array3<float> img, seg;
  structured_case(img, seg);
  for (auto& x : seg.v)
    if (x < 0) x = 9;  // labels on disk are uint8
  Array3<int16_t> img16(img.shape);
  Array3<uint8_t> seg8(seg.shape);
  for (size_t i = 0; i < img.size(); ++i) {
    img16.v[i] = static_cast<int16_t>(img.v[i]);
    seg8.v[i] = static_cast<uint8_t>(seg.v[i]);
  }
  const CropResult ref = crop_to_nonzero(std::vector<Array3<float>>{img}, &seg);
  const CompactCrop c = crop_to_nonzero(std::vector<Array3<int16_t>>{img16}, seg8);
  EXPECT_EQ(c.bbox, ref.bbox);
  EXPECT_EQ(c.size_after_cropping, ref.size_after_cropping);
  EXPECT_EQ(c.classes, ref.classes);
  ASSERT_EQ(c.data.size(), 1u);
  ASSERT_EQ(c.data[0].v.size(), ref.data[0].v.size());
  int marked = 0;
  for (size_t i = 0; i < ref.seg.v.size(); ++i) {
    ASSERT_EQ(static_cast<float>(c.data[0].v[i]), ref.data[0].v[i]) << i;
    ASSERT_EQ(static_cast<float>(c.seg.v[i]), ref.seg.v[i]) << i;
    marked += c.seg.v[i] == -1;
  }
  EXPECT_GT(marked, 0) << "the case should exercise the -1 marking";
  seg8.v[17] = 200;
  EXPECT_THROW(crop_to_nonzero(std::vector<Array3<int16_t>>{img16}, seg8), InputError);
  Array3<int8_t> negative(img16.shape, int8_t{0});  // the int8 entry point checks the same (a uint8 label > 127)
  negative.v[negative.v.size() - 3] = -56;
  std::vector<uint8_t> scratch;
  try {
    crop_to_nonzero(std::vector<Array3<int16_t>>{img16}, std::move(negative), scratch);
    ADD_FAILURE() << "a negative int8 label must not be cropped";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("label value 200"), std::string::npos) << e.what();
  }
}

// The in-place crop (the input's storage becomes the crop's) gives the float crop's values both when the box is
// most of the volume (rows moved inside the buffer) and when it is under half of it (copied out), on two channels,
// with one hole-filling scratch reused from a larger box to a smaller one.
TEST(Crop, InPlaceCropEqualsTheFloatCropForLargeAndSmallBoxes) {
  std::vector<uint8_t> scratch;  // shared by the calls, as the pipeline does
  for (const int64_t margin : {1, 6}) {
    const Shape3 sh{14, 17, 19};
    Array3<float> a(sh, 0.0f), b(sh, 0.0f), seg(sh, 0.0f);
    for (int64_t z = margin; z < sh[0] - 1; ++z)
      for (int64_t y = margin; y < sh[1] - margin; ++y)
        for (int64_t x = 1; x < sh[2] - margin; ++x) {
          const int64_t h = (z * 131 + y * 31 + x * 7) % 23;
          a(z, y, x) = h < 15 ? static_cast<float>(h * 100 - 700) : 0.0f;
          b(z, y, x) = h == 16 ? 5.0f : 0.0f;
          seg(z, y, x) = static_cast<float>(h % 4);
        }
    seg(0, 0, 0) = 2;  // a label outside the box
    const CropResult ref = crop_to_nonzero(std::vector<Array3<float>>{a, b}, &seg);
    std::vector<Array3<int16_t>> channels(2);
    Array3<int8_t> seg8;
    seg8.shape = sh;
    for (auto& ch : channels) ch.shape = sh;
    for (size_t i = 0; i < seg.size(); ++i) {
      channels[0].v.push_back(static_cast<int16_t>(a.v[i]));
      channels[1].v.push_back(static_cast<int16_t>(b.v[i]));
      seg8.v.push_back(static_cast<int8_t>(seg.v[i]));
    }
    const CompactCrop c = crop_to_nonzero(std::move(channels), std::move(seg8), scratch);
    ASSERT_EQ(c.bbox, ref.bbox) << "margin " << margin;
    const int64_t kept = voxel_count(c.size_after_cropping);
    EXPECT_EQ(2 * kept < voxel_count(sh), margin == 6) << "the two margins should take both paths";
    EXPECT_EQ(c.classes, ref.classes);
    ASSERT_EQ(c.data.size(), 2u);
    for (size_t ch = 0; ch < 2; ++ch) {
      ASSERT_EQ(c.data[ch].shape, ref.data[ch].shape);
      ASSERT_EQ(static_cast<int64_t>(c.data[ch].v.size()), kept);
      for (int64_t i = 0; i < kept; ++i)
        ASSERT_EQ(static_cast<float>(c.data[ch].v[static_cast<size_t>(i)]), ref.data[ch].v[static_cast<size_t>(i)])
            << "margin " << margin << " channel " << ch << " voxel " << i;
    }
    ASSERT_EQ(static_cast<int64_t>(c.seg.v.size()), kept);
    for (int64_t i = 0; i < kept; ++i)
      ASSERT_EQ(static_cast<float>(c.seg.v[static_cast<size_t>(i)]), ref.seg.v[static_cast<size_t>(i)]) << i;
  }
  Array3<int8_t> bad({2, 2, 2}, 1);
  bad.v[3] = -56;  // label 200 read into int8 storage
  std::vector<Array3<int16_t>> one{Array3<int16_t>({2, 2, 2}, 1)};
  EXPECT_THROW(crop_to_nonzero(std::move(one), std::move(bad), scratch), InputError);
}
