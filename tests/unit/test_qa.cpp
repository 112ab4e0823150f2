// PNG encoder (decoded here with zlib and, when available, by a pure-Python decoder) and the QA tool.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/npz_writer.hpp"
#include "amosprep/pickle_writer.hpp"
#include "amosprep/png_writer.hpp"
#include "amosprep/qa.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace amosprep;

namespace {

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

// A strict decoder for what encode_png may produce (8-bit RGB, no interlace, any of the 5 filter types).
// Fails the test (ADD_FAILURE) and returns an empty picture on any violation.
RgbImage decode_png_for_test(const std::string& png, std::vector<int>* filter_types = nullptr) {
  RgbImage img;
  if (png.size() < 8 || png.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) {
    ADD_FAILURE() << "bad PNG signature";
    return {};
  }
  size_t at = 8;
  std::string idat;
  bool seen_ihdr = false, seen_iend = false;
  int chunk_index = 0;
  while (at < png.size()) {
    if (at + 12 > png.size()) {
      ADD_FAILURE() << "truncated chunk";
      return {};
    }
    const uint32_t len = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    if (at + 12 + len > png.size()) {
      ADD_FAILURE() << "chunk " << type << " overruns the file";
      return {};
    }
    const std::string body = png.substr(at + 4, 4 + len);
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size()));
    EXPECT_EQ(be32(png, at + 8 + len), crc) << "CRC of chunk " << type;
    const std::string data = png.substr(at + 8, len);
    if (chunk_index == 0 && type != "IHDR") ADD_FAILURE() << "first chunk is " << type;
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      img.width = static_cast<int>(be32(data, 0));
      img.height = static_cast<int>(be32(data, 4));
      EXPECT_EQ(uint8_t(data[8]), 8) << "bit depth";
      EXPECT_EQ(uint8_t(data[9]), 2) << "colour type";
      EXPECT_EQ(uint8_t(data[10]), 0);
      EXPECT_EQ(uint8_t(data[11]), 0);
      EXPECT_EQ(uint8_t(data[12]), 0) << "interlace";
      seen_ihdr = true;
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      EXPECT_EQ(len, 0u);
      seen_iend = true;
      EXPECT_EQ(at + 12, png.size()) << "bytes after IEND";
    }
    at += 12 + len;
    ++chunk_index;
  }
  if (!seen_ihdr || !seen_iend || img.width <= 0 || img.height <= 0) {
    ADD_FAILURE() << "missing IHDR/IEND";
    return {};
  }
  const size_t row = size_t(img.width) * 3;
  std::string raw((row + 1) * size_t(img.height), '\0');
  uLongf raw_len = raw.size();
  const int rc = uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_len,
                            reinterpret_cast<const Bytef*>(idat.data()), idat.size());
  if (rc != Z_OK || raw_len != raw.size()) {
    ADD_FAILURE() << "IDAT does not inflate to the expected size (rc " << rc << ", " << raw_len << ")";
    return {};
  }
  img.rgb.assign(row * size_t(img.height), 0);
  for (int y = 0; y < img.height; ++y) {
    const int ft = uint8_t(raw[size_t(y) * (row + 1)]);
    if (filter_types) filter_types->push_back(ft);
    const uint8_t* src = reinterpret_cast<const uint8_t*>(raw.data()) + size_t(y) * (row + 1) + 1;
    uint8_t* dst = img.rgb.data() + size_t(y) * row;
    const uint8_t* up = y > 0 ? dst - row : nullptr;
    for (size_t i = 0; i < row; ++i) {
      const int a = i >= 3 ? dst[i - 3] : 0, b = up ? up[i] : 0, c = (up && i >= 3) ? up[i - 3] : 0;
      int pred = 0;
      switch (ft) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default: ADD_FAILURE() << "filter type " << ft; return {};
      }
      dst[i] = static_cast<uint8_t>(src[i] + pred);
    }
  }
  return img;
}

RgbImage pattern_image(int w, int h) {
  RgbImage img(w, h);
  uint32_t s = 12345;
  for (auto& b : img.rgb) {
    s = s * 1103515245u + 12345u;
    b = static_cast<uint8_t>(s >> 16);
  }
  return img;
}

using test::TempDir;

// Python: a pure-python (zlib + struct) PNG decoder; prints "W H ADLER32 first-pixel-hex".
const char* kPythonPngCheck = R"PY(
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
pos, idat, w, h = 8, b'', None, None
while pos < len(data):
    n, = struct.unpack('>I', data[pos:pos + 4]); kind = data[pos + 4:pos + 8]; body = data[pos + 8:pos + 8 + n]
    crc, = struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + body) & 0xffffffff == crc, 'crc of %r' % kind
    if kind == b'IHDR':
        w, h, depth, ctype, comp, filt, inter = struct.unpack('>IIBBBBB', body)
        assert (depth, ctype, comp, filt, inter) == (8, 2, 0, 0, 0)
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat); stride = 3 * w; out = bytearray()
assert len(raw) == (stride + 1) * h
prev = bytearray(stride)
for y in range(h):
    ft = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - 3] if i >= 3 else 0; b = prev[i]; c = prev[i - 3] if i >= 3 else 0
        if ft == 0: p = 0
        elif ft == 1: p = a
        elif ft == 2: p = b
        elif ft == 3: p = (a + b) // 2
        elif ft == 4:
            q = a + b - c; pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else: raise SystemExit('filter %d' % ft)
        line[i] = (line[i] + p) & 255
    out += line; prev = line
print(w, h, zlib.adler32(bytes(out)), bytes(out[:3]).hex())
)PY";

std::string run_capture(const std::string& cmd) {
  std::string out;
  const int rc = test::run_command(cmd, &out);
  if (rc != 0) out = "FAILED(" + std::to_string(rc) + "): " + out;
  return out;
}

RgbImage read_png_file(const fs::path& p) { return decode_png_for_test(read_file(p.string())); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

TEST(Png, SmallPictureDecodesToTheSamePixels) {
  RgbImage img(3, 2);
  const uint8_t px[18] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3, 250, 251, 252, 0, 0, 0};
  std::copy(px, px + 18, img.rgb.begin());
  const std::string png = encode_png(img);
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(png, 16), 3u);
  EXPECT_EQ(be32(png, 20), 2u);
  EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));  // the fixed IEND
  std::vector<int> filters;
  const RgbImage back = decode_png_for_test(png, &filters);
  EXPECT_EQ(back.width, 3);
  EXPECT_EQ(back.height, 2);
  EXPECT_EQ(back.rgb, img.rgb);
  EXPECT_EQ(filters, (std::vector<int>{1, 1}));
}

TEST(Png, LargerPictureRoundTripsAtEveryLevel) {
  const RgbImage img = pattern_image(257, 131);
  for (int level : {0, 1, 6, 9}) {
    const RgbImage back = decode_png_for_test(encode_png(img, level));
    EXPECT_EQ(back.width, 257);
    EXPECT_EQ(back.height, 131);
    EXPECT_EQ(back.rgb, img.rgb) << "level " << level;
  }
}

TEST(Png, RejectsEmptyOrInconsistentPictures) {
  EXPECT_THROW(encode_png(RgbImage()), InternalError);
  RgbImage bad(4, 4);
  bad.rgb.pop_back();
  EXPECT_THROW(encode_png(bad), InternalError);
}

TEST(Png, PythonDecoderReadsOurFile) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 not available";
  TempDir tmp("png_py");
  const RgbImage img = pattern_image(37, 23);
  const fs::path png = tmp.path() / "p.png", script = tmp.path() / "check.py";
  write_png(png.string(), img);
  write_file_atomic(script.string(), kPythonPngCheck);
  const std::string out = run_capture("/usr/bin/python3 " + script.string() + " " + png.string() + " 2>&1");
  const uLong adler = adler32(adler32(0, Z_NULL, 0), img.rgb.data(), static_cast<uInt>(img.rgb.size()));
  char first[8];
  std::snprintf(first, sizeof first, "%02x%02x%02x", img.rgb[0], img.rgb[1], img.rgb[2]);
  EXPECT_EQ(out, "37 23 " + std::to_string(adler) + " " + first + "\n");
}

// ---------------------------------------------------------------------------------------------------------------

TEST(Qa, PaletteHasSixteenDistinctColours) {
  for (size_t i = 1; i < 16; ++i)
    for (size_t j = i + 1; j < 16; ++j) EXPECT_NE(kQaLabelPalette[i], kQaLabelPalette[j]) << i << " " << j;
  EXPECT_EQ(kQaLabelPalette[3], (std::array<uint8_t, 3>{255, 225, 25}));
}

TEST(Qa, PictureSizeKeepsPhysicalAspect) {
  // (z, y, x) = (6, 8, 10) at (2, 0.5, 0.5) mm: axial 8x10 (x25), coronal 24x10 (x10), sagittal 24x8 (x10).
  const Shape3 s{6, 8, 10};
  const std::array<double, 3> sp{2.0, 0.5, 0.5};
  EXPECT_EQ(qa_picture_size(s, sp, SliceView::axial), (std::array<int, 2>{200, 250}));
  EXPECT_EQ(qa_picture_size(s, sp, SliceView::coronal), (std::array<int, 2>{240, 100}));
  EXPECT_EQ(qa_picture_size(s, sp, SliceView::sagittal), (std::array<int, 2>{240, 80}));
  // Realistic CT: 512x512 at 0.7 mm, 100 slices of 5 mm: no magnification, coronal rows = 100*5/0.7 = 714.29.
  const Shape3 ct{100, 512, 512};
  const std::array<double, 3> ctsp{5.0, 0.7, 0.7};
  EXPECT_EQ(qa_picture_size(ct, ctsp, SliceView::axial), (std::array<int, 2>{512, 512}));
  EXPECT_EQ(qa_picture_size(ct, ctsp, SliceView::coronal), (std::array<int, 2>{714, 512}));
  // Longer than 1024 after aspect: shrunk to 1024 (300 slices of 3 mm at 0.6 mm: 1500 rows -> 1024 x 349.53).
  const Shape3 tall{300, 512, 512};
  EXPECT_EQ(qa_picture_size(tall, {3.0, 0.6, 0.6}, SliceView::sagittal), (std::array<int, 2>{1024, 350}));
  // Non-positive spacing is treated as 1 mm.
  EXPECT_EQ(qa_picture_size({4, 5, 6}, {0.0, -1.0, 1.0}, SliceView::axial), (std::array<int, 2>{210, 252}));
}

TEST(Qa, WindowIsRobustPercentilesIgnoringNan) {
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  v.push_back(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(qa_window(v.data(), v.size()), (std::array<float, 2>{5.0f, 994.0f}));
  std::vector<float> c(10, -3.0f);
  EXPECT_EQ(qa_window(c.data(), c.size()), (std::array<float, 2>{-3.0f, -2.0f}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(qa_window(&nan, 1), (std::array<float, 2>{0.0f, 1.0f}));
}

TEST(Qa, OverlayBlendsPaletteColoursOverGrey) {
  // One axial slice 2x2: grey 0 / 100 / 200 / NaN, labels 0 / 3 / 15 / -1; 1 mm -> 256x256 (x128).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> image{0.0f, 100.0f, 200.0f, nan};
  const std::vector<float> labels{0.0f, 3.0f, 15.0f, -1.0f};
  const RgbImage img = render_slice_overlay(image.data(), labels.data(), {1, 2, 2}, {1, 1, 1}, SliceView::axial,
                                            {0.0f, 255.0f});
  ASSERT_EQ(img.width, 256);
  ASSERT_EQ(img.height, 256);
  auto at = [&](int x, int y) { return std::vector<int>(img.pixel(x, y), img.pixel(x, y) + 3); };
  EXPECT_EQ(at(0, 0), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(at(127, 127), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(at(200, 10), (std::vector<int>{170, 156, 66}));   // label 3 over grey 100
  EXPECT_EQ(at(10, 200), (std::vector<int>{168, 110, 110}));  // label 15 over grey 200
  EXPECT_EQ(at(255, 255), (std::vector<int>{0, 0, 0}));       // NaN, label -1: black, no colour
  const RgbImage plain = render_slice_overlay(image.data(), nullptr, {1, 2, 2}, {1, 1, 1}, SliceView::axial,
                                              {0.0f, 255.0f});
  EXPECT_EQ(std::vector<int>(plain.pixel(200, 10), plain.pixel(200, 10) + 3), (std::vector<int>{100, 100, 100}));
}

TEST(Qa, CoronalAndSagittalShowHighestSliceOnTop) {
  // (z, y, x) = (2, 1, 1): z=0 dark, z=1 bright.
  const std::vector<float> image{0.0f, 255.0f};
  for (SliceView v : {SliceView::coronal, SliceView::sagittal}) {
    const RgbImage img = render_slice_overlay(image.data(), nullptr, {2, 1, 1}, {1, 1, 1}, v, {0.0f, 255.0f});
    ASSERT_EQ(img.height, 256) << slice_view_name(v);
    ASSERT_EQ(img.width, 128) << slice_view_name(v);
    EXPECT_EQ(img.pixel(0, 0)[0], 255) << slice_view_name(v);
    EXPECT_EQ(img.pixel(0, 255)[0], 0) << slice_view_name(v);
  }
}

namespace {

// A preprocessed task folder with two cases in one stage: amos_0001 with a JSON mirror pointing at raw NIfTIs,
// amos_0002 with neither mirror nor raw files.
struct SyntheticTask {
  fs::path root, task, raw_task;
  explicit SyntheticTask(const fs::path& base) : root(base) {
    task = root / "nnUNet_preprocessed" / "Task216_AMOS2022_task1";
    raw_task = root / "raw" / "nnUNet_raw_data" / "Task216_AMOS2022_task1";
    const fs::path stage = task / "nnUNetData_plans_v2.1_stage0";
    fs::create_directories(stage);
    fs::create_directories(task / "amos-prep" / "json");
    fs::create_directories(raw_task / "imagesTr");
    fs::create_directories(raw_task / "labelsTr");

    // After: (2, 6, 8, 10), channel 0 a ramp, seg -1 on the border, label 3 in a block, 15 at one voxel.
    {
      const Shape3 s{6, 8, 10};
      const size_t n = size_t(voxel_count(s));
      std::vector<float> data(2 * n);
      for (size_t i = 0; i < n; ++i) data[i] = float(i % 97) * 0.1f - 2.0f;
      float* seg = data.data() + n;
      for (int64_t z = 0; z < 6; ++z)
        for (int64_t y = 0; y < 8; ++y)
          for (int64_t x = 0; x < 10; ++x) {
            float v = 0;
            if (x == 0) v = -1;
            if (y >= 2 && y < 6 && x >= 3 && x < 7) v = 3;
            seg[(z * 8 + y) * 10 + x] = v;
          }
      seg[(3 * 8 + 4) * 10 + 5] = 15;
      write_npz((stage / "amos_0001.npz").string(), "data", data.data(), {2, 6, 8, 10}, NpzCompression::fast);
      std::vector<float> data2(2 * 4 * 5 * 6, 0.5f);
      data2[7] = -1.0f;
      write_npz((stage / "amos_0002.npz").string(), "data", data2.data(), {2, 4, 5, 6}, NpzCompression::none);
      write_pickle((stage / "amos_0001.pkl").string(), py::odict({{"classes", py::nd_f4({-1, 0, 3, 15})}}));
      write_pickle((stage / "amos_0002.pkl").string(), py::odict({{"classes", py::nd_f4({-1, 0})}}));
    }
    // Raw: (7, 9, 11) at ITK spacing (0.75, 0.75, 3), labels 0/2.
    {
      Geometry g;
      g.shape = {7, 9, 11};
      g.itk_spacing = {0.75, 0.75, 3.0};
      g.spacing = {3.0, 0.75, 0.75};
      Array3<float> img(g.shape), lab(g.shape);
      for (size_t i = 0; i < img.size(); ++i) img.v[i] = float(int(i % 200) - 100);
      for (int64_t z = 2; z < 5; ++z)
        for (int64_t y = 3; y < 6; ++y)
          for (int64_t x = 4; x < 8; ++x) lab(z, y, x) = 2;
      write_nifti((raw_task / "imagesTr" / "amos_0001_0000.nii.gz").string(), img, g, NiftiPixel::int16);
      write_nifti((raw_task / "labelsTr" / "amos_0001.nii.gz").string(), lab, g, NiftiPixel::uint8);
    }
    nlohmann::ordered_json mirror;
    // Listed paths that no longer exist: the QA tool falls back to the raw task folder.
    mirror["list_of_data_files"] = {"/moved/away/imagesTr/amos_0001_0000.nii.gz"};
    mirror["seg_file"] = "/moved/away/labelsTr/amos_0001.nii.gz";
    mirror["original_size_of_raw_data"] = {7, 9, 11};
    mirror["crop_bbox"] = {{0, 7}, {0, 9}, {0, 11}};
    mirror["spacing_after_resampling"] = {2.0, 0.5, 0.5};
    write_file_atomic((task / "amos-prep" / "json" / "nnUNetData_plans_v2.1_stage0_amos_0001.json").string(),
                      mirror.dump(2));
  }
};

}  // namespace

TEST(Qa, RunQaWritesPicturesOfExpectedSizeAndAnIndex) {
  TempDir tmp("qa_run");
  SyntheticTask t(tmp.path());
  const fs::path out = tmp.path() / "qa";
  run_qa(t.task.string(), out.string(), (tmp.path() / "raw").string());

  struct Expect {
    std::string rel;
    int h, w;
  };
  const std::vector<Expect> expected = {
      {"nnUNetData_plans_v2.1_stage0/amos_0001_axial.png", 200, 250},
      {"nnUNetData_plans_v2.1_stage0/amos_0001_coronal.png", 240, 100},
      {"nnUNetData_plans_v2.1_stage0/amos_0001_sagittal.png", 240, 80},
      {"raw/amos_0001_axial.png", 207, 253},    // 9x11 at 0.75 mm, x23
      {"raw/amos_0001_coronal.png", 252, 99},   // 7*3/0.75 = 28 rows x 11, x9
      {"raw/amos_0001_sagittal.png", 252, 81},  // 28 x 9, x9
      {"nnUNetData_plans_v2.1_stage0/amos_0002_axial.png", 210, 252},  // no mirror: 1 mm, 5x6 x42
      {"nnUNetData_plans_v2.1_stage0/amos_0002_coronal.png", 168, 252},
      {"nnUNetData_plans_v2.1_stage0/amos_0002_sagittal.png", 204, 255},
  };
  const std::string html = read_file((out / "index.html").string());
  for (const auto& e : expected) {
    SCOPED_TRACE(e.rel);
    ASSERT_TRUE(fs::exists(out / e.rel));
    const RgbImage img = read_png_file(out / e.rel);
    EXPECT_EQ(img.height, e.h);
    EXPECT_EQ(img.width, e.w);
    EXPECT_NE(html.find("src=\"" + e.rel + "\""), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(out / "raw" / "amos_0002_axial.png"));

  // The after-axial mid-slice (z=3) shows label 3 at (y 2..5, x 3..6) and label 15 at (y 4, x 5): picture pixel
  // (x*25 + 12, y*25 + 12) samples voxel (y, x).
  const RgbImage axial = read_png_file(out / "nnUNetData_plans_v2.1_stage0/amos_0001_axial.png");
  const auto px = [&](int64_t y, int64_t x) { return axial.pixel(int(x * 25 + 12), int(y * 25 + 12)); };
  EXPECT_TRUE(px(0, 0)[0] == px(0, 0)[1] && px(0, 0)[1] == px(0, 0)[2]) << "label -1 must stay grey";
  EXPECT_TRUE(px(1, 5)[0] == px(1, 5)[1] && px(1, 5)[1] == px(1, 5)[2]) << "label 0 must stay grey";
  EXPECT_GT(int(px(3, 4)[1]), int(px(3, 4)[2]) + 40) << "label 3 (yellow) must tint";
  EXPECT_GT(int(px(4, 5)[0]), int(px(4, 5)[1]) + 40) << "label 15 (maroon) must tint";

  for (const char* needle : {"amos_0001", "amos_0002", "(6, 8, 10)", "(2, 0.5, 0.5)", "-1 0 3 15", "(7, 9, 11)",
                             "(3, 0.75, 0.75)", "labels present: 0 2", "no JSON mirror", "crop_bbox", "(4, 5, 6)"})
    EXPECT_NE(html.find(needle), std::string::npos) << needle;
}

TEST(Qa, WithoutRawBaseOnlyAfterPictures) {
  TempDir tmp("qa_noraw");
  SyntheticTask t(tmp.path());
  const fs::path out = tmp.path() / "qa";
  run_qa(t.task.string(), out.string(), "");
  EXPECT_TRUE(fs::exists(out / "nnUNetData_plans_v2.1_stage0/amos_0001_sagittal.png"));
  EXPECT_FALSE(fs::exists(out / "raw"));
  const std::string html = read_file((out / "index.html").string());
  EXPECT_EQ(html.find("raw/"), std::string::npos);
  EXPECT_EQ(html.find("raw (before)"), std::string::npos);
}

TEST(Qa, MissingRawFilesAreReportedNotFatal) {
  TempDir tmp("qa_missing");
  SyntheticTask t(tmp.path());
  fs::remove(t.raw_task / "imagesTr" / "amos_0001_0000.nii.gz");
  const fs::path out = tmp.path() / "qa";
  run_qa(t.task.string(), out.string(), (tmp.path() / "raw").string());
  EXPECT_FALSE(fs::exists(out / "raw" / "amos_0001_axial.png"));
  EXPECT_TRUE(fs::exists(out / "nnUNetData_plans_v2.1_stage0/amos_0001_axial.png"));
  EXPECT_NE(read_file((out / "index.html").string()).find("raw image amos_0001_0000.nii.gz not found"),
            std::string::npos);
}

TEST(Qa, NonTaskFolderIsAnInputError) {
  TempDir tmp("qa_bad");
  EXPECT_THROW(run_qa((tmp.path() / "nope").string(), (tmp.path() / "out").string(), ""), InputError);
  EXPECT_THROW(run_qa(tmp.path().string(), (tmp.path() / "out").string(), ""), InputError);
}
