// Dataset integrity checks (verify.hpp) on small synthetic datasets written into a temp dir.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "amosprep/error.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/verify.hpp"

namespace amosprep {
namespace {

namespace fs = std::filesystem;

// ---- byte helpers -----------------------------------------------------------------------------------------------

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string gzip_bytes(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

template <class T>
void poke(std::string& bytes, size_t offset, T v) {
  std::memcpy(bytes.data() + offset, &v, sizeof v);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Header offsets (NIfTI-1).
constexpr size_t kDim = 40, kPixdim = 76, kSclSlope = 112, kSclInter = 116, kSrowX = 280;

// ---- dataset builder ----------------------------------------------------------------------------------------------

Geometry geometry(const Shape3& shape, std::array<double, 3> itk_spacing = {0.8, 0.8, 2.5}) {
  Geometry g;
  g.shape = shape;
  g.itk_spacing = itk_spacing;
  for (int i = 0; i < 3; ++i) g.spacing[2 - i] = static_cast<float>(itk_spacing[i]);
  g.itk_origin = {-10.0, -20.0, 30.0};
  return g;
}

Array3<float> ct_volume(const Shape3& s) {
  Array3<float> a(s);
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[2]; ++x) a(z, y, x) = static_cast<float>(-1000 + 7 * x + 13 * y + 29 * z);
  return a;
}

Array3<float> label_volume(const Shape3& s) {
  Array3<float> a(s);
  for (int64_t z = 1; z < s[0] - 1; ++z)
    for (int64_t y = 2; y < 6; ++y)
      for (int64_t x = 2; x < 6; ++x) a(z, y, x) = (x < 4) ? 1.0f : 2.0f;
  return a;
}

/// Writes a NIfTI with write_nifti, lets `patch` edit the uncompressed bytes (header at offset 0), then stores it
/// gzip-compressed at `path`.
void write_patched(const std::string& path, const Array3<float>& v, const Geometry& g, NiftiPixel pixel,
                   const std::function<void(std::string&)>& patch) {
  const std::string plain = path + ".plain.nii";
  write_nifti(plain, v, g, pixel, 1);
  std::string bytes = slurp(plain);
  fs::remove(plain);
  patch(bytes);
  spit(path, gzip_bytes(bytes));
}

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/amosprep_verify_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  static constexpr Shape3 kShape{6, 9, 10};
  const std::vector<std::string> train_ids_{"amos_0001", "amos_0002", "amos_0003"};
  const std::string test_id_ = "amos_0100";

  std::string dir() const { return root_ + "/amos"; }
  std::string img(const std::string& id) const { return dir() + "/imagesTr/" + id + ".nii.gz"; }
  std::string lbl(const std::string& id) const { return dir() + "/labelsTr/" + id + ".nii.gz"; }
  std::string json() const { return dir() + "/task1_dataset.json"; }

  static std::string json_text(const std::vector<std::string>& train, const std::vector<std::string>& test,
                               const std::string& labels = R"({"0": "background", "1": "spleen", "2": "kidney"})",
                               int num_training = -1) {
    std::string s = "{\n  \"name\": \"AMOS\",\n  \"labels\": " + labels + ",\n  \"numTraining\": " +
                    std::to_string(num_training < 0 ? static_cast<int>(train.size()) : num_training) +
                    ",\n  \"training\": [";
    for (size_t i = 0; i < train.size(); ++i)
      s += std::string(i ? "," : "") + "\n    {\"image\": \"./imagesTr/" + train[i] +
           ".nii.gz\", \"label\": \"./labelsTr/" + train[i] + ".nii.gz\"}";
    s += "\n  ],\n  \"test\": [";
    for (size_t i = 0; i < test.size(); ++i) s += std::string(i ? ", " : "") + "\"./imagesTs/" + test[i] + ".nii.gz\"";
    return s + "]\n}\n";
  }

  /// A valid AMOS22 folder: 3 training cases, 1 test case.
  void make_dataset() {
    for (const char* sub : {"imagesTr", "labelsTr", "imagesTs"}) fs::create_directories(dir() + "/" + sub);
    const Geometry g = geometry(kShape);
    for (const std::string& id : train_ids_) {
      write_nifti(img(id), ct_volume(kShape), g, NiftiPixel::int16);
      write_nifti(lbl(id), label_volume(kShape), g, NiftiPixel::uint8);
    }
    write_nifti(dir() + "/imagesTs/" + test_id_ + ".nii.gz", ct_volume(kShape), g, NiftiPixel::int16);
    spit(json(), json_text(train_ids_, {test_id_}));
  }

  /// The problems of `r` that name `case_id` (any file) and contain `reason_part`.
  static std::vector<Problem> find(const VerifyReport& r, const std::string& severity, const std::string& case_id,
                                   const std::string& reason_part) {
    std::vector<Problem> out;
    for (const Problem& p : r.problems)
      if (p.severity == severity && p.case_id == case_id && contains(p.reason, reason_part)) out.push_back(p);
    return out;
  }

  std::string root_;
};

// ---- gzip stream check ------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyGzipAcceptsValidSingleAndMultiMemberStreams) {
  const std::string p = root_ + "/a.nii.gz";
  write_nifti(p, ct_volume(kShape), geometry(kShape), NiftiPixel::int16);
  GzipCheck g = check_gzip_file(p);
  EXPECT_TRUE(g.ok) << g.reason;
  EXPECT_EQ(g.members, 1);
  EXPECT_EQ(g.uncompressed_bytes, 352u + 2u * 6 * 9 * 10);
  EXPECT_FALSE(g.trailing_garbage);

  const std::string two = root_ + "/two.gz";
  spit(two, gzip_bytes("hello ") + gzip_bytes("world"));
  g = check_gzip_file(two);
  EXPECT_TRUE(g.ok) << g.reason;
  EXPECT_EQ(g.members, 2);
  EXPECT_EQ(g.uncompressed_bytes, 11u);

  spit(two, gzip_bytes("hello") + std::string(100, '\0'));
  g = check_gzip_file(two);
  EXPECT_TRUE(g.ok);
  EXPECT_TRUE(g.trailing_garbage);
}

TEST_F(VerifyTest, VerifyGzipDetectsCrcLengthTruncationAndNonGzip) {
  const std::string raw(200000, 'x');
  const std::string good = gzip_bytes(raw + "tail");
  const std::string p = root_ + "/f.gz";

  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0x01;  // first byte of the CRC32 trailer
  spit(p, bad_crc);
  GzipCheck g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "CRC32")) << g.reason;

  std::string bad_len = good;
  bad_len[bad_len.size() - 4] ^= 0x01;  // ISIZE
  spit(p, bad_len);
  g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "ISIZE")) << g.reason;

  spit(p, good.substr(0, good.size() / 2));
  g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "truncated")) << g.reason;

  spit(p, good.substr(0, good.size() - 3));  // only the trailer is cut
  g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "truncated")) << g.reason;

  spit(p, "this is not gzip at all");
  g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "not gzip")) << g.reason;

  spit(p, "");
  g = check_gzip_file(p);
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "empty")) << g.reason;

  g = check_gzip_file(root_ + "/does_not_exist.gz");
  EXPECT_FALSE(g.ok);
  EXPECT_TRUE(contains(g.reason, "cannot open")) << g.reason;
}

// ---- a clean dataset --------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyCleanAmosDatasetHasNoProblems) {
  make_dataset();
  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(r.errors(), 0) << r.text();
  EXPECT_EQ(r.warnings(), 0) << r.text();
  EXPECT_EQ(r.training_cases, 3);
  EXPECT_EQ(r.test_cases, 1);
  EXPECT_EQ(r.exit_code(), kExitOk);
  EXPECT_EQ(r.text(), "amos-prep: verify: 0 errors, 0 warnings (3 training cases, 1 test case)\n");
  // A trailing slash on the folder changes nothing.
  EXPECT_EQ(verify_amos_dir(dir() + "/").problems.size(), 0u);
}

// ---- every problem at once, errors first ---------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyReportsEveryProblemAtOnceErrorsFirst) {
  make_dataset();
  const Geometry g = geometry(kShape);
  // amos_0001: NaN and Inf voxels in the image.
  Array3<float> v = ct_volume(kShape);
  v(1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  v(2, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  v(3, 3, 3) = std::numeric_limits<float>::infinity();
  write_nifti(img("amos_0001"), v, g, NiftiPixel::float32);
  // amos_0002: label value 42 (5 voxels); a stray file in labelsTr.
  Array3<float> l = label_volume(kShape);
  for (int x = 0; x < 5; ++x) l(0, 0, x) = 42;
  write_nifti(lbl("amos_0002"), l, g, NiftiPixel::uint8);
  spit(dir() + "/labelsTr/amos_9999.nii.gz", "stray");
  // test case image missing.
  fs::remove(dir() + "/imagesTs/" + test_id_ + ".nii.gz");

  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(r.exit_code(), kExitBadInput);
  ASSERT_EQ(find(r, "error", "amos_0001", "2 NaN voxel(s)").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0001", "2 NaN voxel(s)")[0].file, img("amos_0001"));
  EXPECT_EQ(find(r, "error", "amos_0001", "1 infinite voxel(s)").size(), 1u) << r.text();
  const auto unexpected = find(r, "error", "amos_0002", "unexpected label values 42 (5 voxels)");
  ASSERT_EQ(unexpected.size(), 1u) << r.text();
  EXPECT_EQ(unexpected[0].file, lbl("amos_0002"));
  EXPECT_TRUE(contains(unexpected[0].reason, "declares 0..2")) << unexpected[0].reason;
  EXPECT_EQ(find(r, "error", test_id_, "image file is missing").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "", "not listed in task1_dataset.json").size(), 1u) << r.text();
  EXPECT_EQ(r.errors(), 4) << r.text();
  EXPECT_EQ(r.warnings(), 1) << r.text();

  // text(): errors first, then warnings, then the summary; the line format of docs/exit-codes.md.
  const std::string t = r.text();
  EXPECT_TRUE(contains(t, "amos-prep: error: case amos_0001: " + img("amos_0001") + ": 2 NaN voxel(s) in the image\n"))
      << t;
  EXPECT_LT(t.rfind("amos-prep: error:"), t.find("amos-prep: warning:"));
  EXPECT_TRUE(contains(t, "amos-prep: warning: " + dir() + "/labelsTr/amos_9999.nii.gz: not listed")) << t;
  const std::string last_line = "amos-prep: verify: 4 errors, 1 warning (3 training cases, 1 test case)\n";
  ASSERT_GE(t.size(), last_line.size());
  EXPECT_EQ(t.substr(t.size() - last_line.size()), last_line);
}

// ---- geometry ---------------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyGeometryMismatchesBetweenImageAndLabel) {
  make_dataset();
  const Geometry g = geometry(kShape);
  // amos_0001: label shape differs.
  const Shape3 other{6, 9, 11};
  write_nifti(lbl("amos_0001"), label_volume(other), geometry(other), NiftiPixel::uint8);
  // amos_0002: label spacing differs, and its origin is 2 mm off.
  Geometry g2 = geometry(kShape, {0.8, 0.8, 3.0});
  g2.itk_origin[1] += 2.0;
  write_nifti(lbl("amos_0002"), label_volume(kShape), g2, NiftiPixel::uint8);
  // amos_0003: direction differs (x axis flipped); image origin off by 1e-4 mm only (within tolerance).
  Geometry g3 = g;
  g3.itk_direction = {-1, 0, 0, 0, 1, 0, 0, 0, 1};
  write_nifti(lbl("amos_0003"), label_volume(kShape), g3, NiftiPixel::uint8);
  Geometry g3i = g;
  g3i.itk_origin[0] += 1e-4;
  write_nifti(img("amos_0003"), ct_volume(kShape), g3i, NiftiPixel::int16);

  const VerifyReport r = verify_amos_dir(dir());
  const auto shape = find(r, "error", "amos_0001", "shape (z,y,x) 6x9x11 differs from 6x9x10");
  ASSERT_EQ(shape.size(), 1u) << r.text();
  EXPECT_EQ(shape[0].file, lbl("amos_0001"));
  EXPECT_EQ(find(r, "error", "amos_0002", "spacing (z,y,x) (3, 0.8").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0002", "origin").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "direction differs").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "origin").size(), 0u) << r.text();
  EXPECT_EQ(r.errors(), 4) << r.text();
}

TEST_F(VerifyTest, VerifyOrientationWarningUsesNibabelAxisCodes) {
  make_dataset();
  Geometry flipped = geometry(kShape);
  flipped.itk_direction = {-1, 0, 0, 0, 1, 0, 0, 0, 1};  // ITK (LPS) x reversed: nibabel calls it R, P, S
  write_nifti(img("amos_0002"), ct_volume(kShape), flipped, NiftiPixel::int16);
  write_nifti(lbl("amos_0002"), label_volume(kShape), flipped, NiftiPixel::uint8);
  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(r.errors(), 0) << r.text();
  ASSERT_EQ(r.warnings(), 1) << r.text();
  EXPECT_EQ(r.problems[0].reason,
            "training images differ in axis orientation (LPS: 2 cases (amos_0001, amos_0003); RPS: 1 case "
            "(amos_0002)); nnU-Net works on the voxel grid as stored");
}

// ---- header --------------------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyHeaderChecks) {
  make_dataset();
  const Geometry g = geometry(kShape);
  const Array3<float> ct = ct_volume(kShape);
  // amos_0001: 4-D image with t = 2 (error); its label has t = 1 (fine: ITK reads it as 3-D).
  write_patched(img("amos_0001"), ct, g, NiftiPixel::int16, [](std::string& b) {
    poke<int16_t>(b, kDim, 4);
    poke<int16_t>(b, kDim + 8, 2);
    b += b.substr(352);  // the second volume
  });
  write_patched(lbl("amos_0001"), label_volume(kShape), g, NiftiPixel::uint8,
                [](std::string& b) { poke<int16_t>(b, kDim, 4); });
  // amos_0002: pixdim[2] = 0 in the image; scl_slope = 2 in the label would change labels: make it an image issue
  // instead (scl_slope = 2 on the image is a warning only).
  write_patched(img("amos_0002"), ct, g, NiftiPixel::int16, [](std::string& b) { poke<float>(b, kPixdim + 8, 0.0f); });
  // amos_0003: scl_slope = 2 (warning); qform/sform disagree in image and label alike (warnings, no mismatch).
  write_patched(img("amos_0003"), ct, g, NiftiPixel::int16, [](std::string& b) {
    poke<float>(b, kSclSlope, 2.0f);
    poke<float>(b, kSrowX + 12, 123.0f);
  });
  write_patched(lbl("amos_0003"), label_volume(kShape), g, NiftiPixel::uint8,
                [](std::string& b) { poke<float>(b, kSrowX + 12, 123.0f); });
  // test case: a single slice.
  const Shape3 one{1, 9, 10};
  write_nifti(dir() + "/imagesTs/" + test_id_ + ".nii.gz", ct_volume(one), geometry(one), NiftiPixel::int16);

  const VerifyReport r = verify_amos_dir(dir());
  const auto four_d = find(r, "error", "amos_0001", "4-D image (10x9x6x2)");
  ASSERT_EQ(four_d.size(), 1u) << r.text();
  EXPECT_EQ(four_d[0].file, img("amos_0001"));
  EXPECT_EQ(find(r, "error", "amos_0001", "").size(), 1u) << r.text();  // the t = 1 label is fine
  EXPECT_EQ(find(r, "error", "amos_0002", "pixdim[2] = 0").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0003", "scl_slope = 2").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0003", "qform (code 1) and sform (code 1) disagree").size(), 2u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "").size(), 0u) << r.text();
  // What the warning says: with sform_code 1, ITK 5.2 places the image by the sform (RAS x 123 -> LPS x -123).
  EXPECT_EQ(read_nifti_with_itk(img("amos_0003")).geom.itk_origin[0], -123.0);
  EXPECT_EQ(find(r, "error", test_id_, "single-slice volume (10x9x1)").size(), 1u) << r.text();
}

TEST_F(VerifyTest, VerifySclSlopeZeroFollowsItk) {
  // A zero scl_slope means "no scaling" for ITK and nibabel alike; only a non-zero intercept with it is ambiguous.
  make_dataset();
  const Geometry g = geometry(kShape);
  write_patched(img("amos_0001"), ct_volume(kShape), g, NiftiPixel::int16,
                [](std::string& b) { poke<float>(b, kSclSlope, 0.0f); });
  write_patched(img("amos_0002"), ct_volume(kShape), g, NiftiPixel::int16, [](std::string& b) {
    poke<float>(b, kSclSlope, 0.0f);
    poke<float>(b, kSclInter, 5.0f);
  });
  write_patched(lbl("amos_0003"), label_volume(kShape), g, NiftiPixel::uint8,
                [](std::string& b) { poke<float>(b, kSclSlope, std::numeric_limits<float>::quiet_NaN()); });
  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(r.errors(), 0) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0001", "").size(), 0u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0002", "scl_slope = 0 with scl_inter = 5").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0003", "").size(), 0u) << r.text();
  EXPECT_EQ(r.warnings(), 1) << r.text();

  // What the warning says about ITK (the reader nnU-Net uses): slope 0 is taken as 1 and the intercept is added.
  const Image itk = read_nifti_with_itk(img("amos_0002"));
  const Array3<float> raw = ct_volume(kShape);
  EXPECT_EQ(itk.voxels(2, 3, 4), raw(2, 3, 4) + 5.0f);
  EXPECT_EQ(read_nifti(img("amos_0002")).voxels(2, 3, 4), raw(2, 3, 4) + 5.0f);
  EXPECT_EQ(read_nifti_with_itk(img("amos_0001")).voxels(2, 3, 4), raw(2, 3, 4));
}

// ---- files -------------------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyBrokenFiles) {
  make_dataset();
  const std::string good = slurp(img("amos_0001"));
  spit(img("amos_0001"), good.substr(0, good.size() / 2));  // truncated gzip
  std::string flipped = slurp(lbl("amos_0002"));
  flipped[flipped.size() - 6] ^= 0x40;  // CRC32 trailer
  spit(lbl("amos_0002"), flipped);
  spit(img("amos_0002"), "");  // zero bytes
  fs::remove(img("amos_0003"));
  fs::create_directory(img("amos_0003"));  // a directory where the file should be
  spit(lbl("amos_0003"), std::string(500, 'g'));  // garbage named .nii.gz
  // test image: valid gzip of a NIfTI whose voxel data is cut short.
  const std::string ts = dir() + "/imagesTs/" + test_id_ + ".nii.gz";
  write_patched(ts, ct_volume(kShape), geometry(kShape), NiftiPixel::int16,
                [](std::string& b) { b.resize(b.size() - 100); });

  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(find(r, "error", "amos_0001", "truncated gzip data").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0002", "CRC32 mismatch").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0002", "empty file (0 bytes)").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "is a directory").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "not gzip data").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", test_id_, "truncated").size(), 1u) << r.text();
  EXPECT_EQ(r.errors(), 6) << r.text();
}

TEST_F(VerifyTest, VerifyUnreadableFile) {
  make_dataset();
  chmod(lbl("amos_0001").c_str(), 0);
  if (FILE* f = std::fopen(lbl("amos_0001").c_str(), "rb")) {
    std::fclose(f);
    GTEST_SKIP() << "running with privileges that ignore chmod 000 (root): cannot test an unreadable file";
  }
  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(find(r, "error", "amos_0001", "cannot read: Permission denied").size(), 1u) << r.text();
}

// ---- voxel content -----------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyLabelAndImageContent) {
  make_dataset();
  const Geometry g = geometry(kShape);
  Array3<float> frac = label_volume(kShape);
  frac(3, 4, 4) = 1.5f;
  write_nifti(lbl("amos_0001"), frac, g, NiftiPixel::float32);
  write_nifti(lbl("amos_0002"), Array3<float>(kShape, 0.0f), g, NiftiPixel::uint8);
  write_nifti(img("amos_0003"), Array3<float>(kShape, -1024.0f), g, NiftiPixel::int16);
  // Integer-valued float labels are fine.
  write_nifti(lbl("amos_0003"), label_volume(kShape), g, NiftiPixel::float32);

  const VerifyReport r = verify_amos_dir(dir());
  EXPECT_EQ(find(r, "error", "amos_0001", "non-integer label values: 1.5 (1 voxel)").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0002", "empty label map").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "amos_0003", "constant image: every finite voxel is -1024").size(), 1u) << r.text();
  EXPECT_EQ(r.errors(), 1) << r.text();
  EXPECT_EQ(r.warnings(), 2) << r.text();
}

// ---- dataset json ----------------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyJsonProblems) {
  make_dataset();
  spit(json(), "{\"training\": [");
  VerifyReport r = verify_amos_dir(dir());
  ASSERT_EQ(r.errors(), 1) << r.text();
  EXPECT_EQ(r.problems[0].file, json());
  EXPECT_TRUE(contains(r.problems[0].reason, "invalid JSON")) << r.text();

  fs::remove(json());
  r = verify_amos_dir(dir());
  ASSERT_EQ(r.errors(), 1) << r.text();
  EXPECT_TRUE(contains(r.problems[0].reason, "missing")) << r.text();

  spit(json(), "{\"labels\": {\"0\": \"bg\", \"1\": \"a\", \"2\": \"b\"}, \"test\": []}");
  r = verify_amos_dir(dir());
  EXPECT_EQ(find(r, "error", "", "no \"training\" key").size(), 1u) << r.text();

  // No "labels": the cases are still checked (the NaN is found), label values cannot be.
  std::string no_labels = json_text(train_ids_, {test_id_});
  no_labels.replace(no_labels.find("\"labels\""), 8, "\"labelz\"");
  spit(json(), no_labels);
  Array3<float> v = ct_volume(kShape);
  v(0, 0, 0) = std::numeric_limits<float>::quiet_NaN();
  write_nifti(img("amos_0003"), v, geometry(kShape), NiftiPixel::float32);
  r = verify_amos_dir(dir());
  EXPECT_EQ(find(r, "error", "", "no \"labels\" key").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0003", "NaN").size(), 1u) << r.text();
  write_nifti(img("amos_0003"), ct_volume(kShape), geometry(kShape), NiftiPixel::int16);

  // Duplicate id, labels with a gap, numTraining off (a warning: the conversion recomputes it).
  spit(json(), json_text({"amos_0001", "amos_0002", "amos_0001", "amos_0003"}, {test_id_},
                         R"({"0": "background", "1": "a", "2": "b", "4": "c"})", 7));
  r = verify_amos_dir(dir());
  const auto dup = find(r, "error", "amos_0001", "duplicate case id");
  ASSERT_EQ(dup.size(), 1u) << r.text();
  EXPECT_EQ(dup[0].file, json());
  EXPECT_EQ(find(r, "error", "", "must be consecutive").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "", "missing: 3").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "warning", "", "\"numTraining\" is 7").size(), 1u) << r.text();
  EXPECT_EQ(r.training_cases, 3);
  EXPECT_EQ(r.errors(), 2) << r.text();
}

// ---- raw task layout ----------------------------------------------------------------------------------------------

TEST_F(VerifyTest, VerifyRawTaskChannelsAndNumTraining) {
  const std::string t = root_ + "/Task216_AMOS2022_task1";
  for (const char* sub : {"imagesTr", "labelsTr", "imagesTs"}) fs::create_directories(t + "/" + sub);
  const Geometry g = geometry(kShape);
  for (const char* id : {"amos_0001", "amos_0002"}) {
    write_nifti(t + "/imagesTr/" + id + "_0000.nii.gz", ct_volume(kShape), g, NiftiPixel::int16);
    write_nifti(t + "/imagesTr/" + id + "_0001.nii.gz", ct_volume(kShape), g, NiftiPixel::int16);
    write_nifti(t + "/labelsTr/" + std::string(id) + ".nii.gz", label_volume(kShape), g, NiftiPixel::uint8);
  }
  const std::string js = R"({"labels": {"0": "background", "1": "a", "2": "b"}, "modality": {"0": "CT", "1": "X"},
    "numTraining": 2, "numTest": 0, "test": [],
    "training": [{"image": "./imagesTr/amos_0001.nii.gz", "label": "./labelsTr/amos_0001.nii.gz"},
                 {"image": "./imagesTr/amos_0002.nii.gz", "label": "./labelsTr/amos_0002.nii.gz"}]})";
  spit(t + "/dataset.json", js);
  VerifyReport r = verify_raw_task(t);
  EXPECT_EQ(r.problems.size(), 0u) << r.text();

  // Second channel of amos_0002 missing, first channel of amos_0001 misaligned with the second.
  fs::remove(t + "/imagesTr/amos_0002_0001.nii.gz");
  Geometry moved = g;
  moved.itk_origin[2] += 5;
  write_nifti(t + "/imagesTr/amos_0001_0001.nii.gz", ct_volume(kShape), moved, NiftiPixel::int16);
  r = verify_raw_task(t);
  EXPECT_EQ(find(r, "error", "amos_0002", "image file is missing").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "amos_0001", "origin").size(), 1u) << r.text();

  // One modality declared, but a _0001 file sits next to a listed case; numTraining off (an error here).
  std::string one = js;
  one.replace(one.find(", \"1\": \"X\""), 10, "");
  one.replace(one.find("\"numTraining\": 2"), 16, "\"numTraining\": 3");
  spit(t + "/dataset.json", one);
  r = verify_raw_task(t);
  EXPECT_EQ(find(r, "error", "amos_0001", "channel file _0001 present").size(), 1u) << r.text();
  EXPECT_EQ(find(r, "error", "", "\"numTraining\" is 3").size(), 1u) << r.text();
  EXPECT_EQ(r.errors(), 2) << r.text();
}

// ---- the shared fixtures are valid data ---------------------------------------------------------------------------

TEST(VerifyFixtures, SharedFixturesHaveNoErrors) {
  const std::string shared = std::string(AMOSPREP_SOURCE_DIR) + "/../shared/fixtures";
  if (!fs::is_directory(shared)) GTEST_SKIP() << "reference fixtures not found at " << shared;
  for (const char* set : {"phantom-tiny", "real-ct", "aniso-2stage"}) {
    const std::string d = shared + "/" + set + "/amos";
    if (!fs::is_directory(d)) continue;
    const VerifyReport r = verify_amos_dir(d);
    EXPECT_EQ(r.errors(), 0) << set << ":\n" << r.text();
    EXPECT_GT(r.training_cases, 0) << set;
    if (std::string(set) == "phantom-tiny") {
      // Axis codes as nibabel.aff2axcodes gives them for these files (computed once with nibabel 5.0).
      EXPECT_TRUE(contains(r.text(), "(LAI: 1 case (amos_0394); LPS: 3 cases (amos_0064, amos_0280, amos_0345); "
                                     "RAS: 1 case (amos_0130); RPS: 1 case (amos_0295))"))
          << r.text();
    }
  }
}

}  // namespace
}  // namespace amosprep
