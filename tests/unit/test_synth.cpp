// The phantom generator: determinism, AMOS22 layout, labels, spacings, flips, zero field of view.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include "amosprep/amos_dataset.hpp"
#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/synth.hpp"
#include "nlohmann/json.hpp"
#include "test_support.hpp"

namespace amosprep {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

using test::TempDir;

std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Synth, SameSeedSameBytesOtherSeedOtherData) {
  TempDir tmp;
  SynthOptions o;
  o.n_train = 3;
  o.n_test = 1;
  o.seed = 7;
  o.out_dir = tmp / "a";
  synth_amos_dataset(o);
  o.out_dir = tmp / "b";
  synth_amos_dataset(o);
  const auto files = files_under(tmp / "a");
  ASSERT_EQ(files.size(), 1u + 3 + 3 + 1);
  EXPECT_EQ(files, files_under(tmp / "b"));
  for (const std::string& f : files) EXPECT_EQ(read_file(tmp / "a/" + f), read_file(tmp / "b/" + f)) << f;

  o.seed = 8;
  o.out_dir = tmp / "c";
  synth_amos_dataset(o);
  EXPECT_NE(files, files_under(tmp / "c"));  // other ids
  EXPECT_NE(read_file(tmp / "a/task1_dataset.json"), read_file(tmp / "c/task1_dataset.json"));
}

TEST(Synth, AmosLayoutLabelsSpacingsFlipsAndZeroFov) {
  TempDir tmp;
  SynthOptions o;
  o.out_dir = tmp / "amos";
  o.n_train = 4;
  o.n_test = 2;
  o.seed = 11;
  synth_amos_dataset(o);

  const ojson j = ojson::parse(read_file(tmp / "amos/task1_dataset.json"));
  EXPECT_EQ(j["name"], "AMOS");
  EXPECT_EQ(j["modality"]["0"], "CT");
  ASSERT_EQ(j["labels"].size(), 16u);
  EXPECT_EQ(j["labels"]["8"], "arota");
  EXPECT_EQ(j["labels"]["15"], "prostate/uterus");
  EXPECT_EQ(j["labels"].begin().key(), "0");
  EXPECT_EQ(j["numTraining"], 4);
  EXPECT_EQ(j["numTest"], 2);
  ASSERT_EQ(j["training"].size(), 4u);
  ASSERT_EQ(j["test"].size(), 2u);

  bool anisotropic = false, flipped = false, zero_fov = false, air_corner = false;
  std::set<int> all_labels;
  for (const auto& e : j["training"]) {
    const std::string image = tmp / ("amos/" + e["image"].get<std::string>().substr(2));
    const std::string label = tmp / ("amos/" + e["label"].get<std::string>().substr(2));
    SCOPED_TRACE(image);
    EXPECT_EQ(read_nifti_header(image).datatype, 4);  // int16
    EXPECT_EQ(read_nifti_header(label).datatype, 2);  // uint8
    const Image im = read_nifti(image);
    const Image lab = read_nifti(label);
    EXPECT_EQ(im.geom.shape, lab.geom.shape);
    EXPECT_EQ(im.geom.itk_origin, lab.geom.itk_origin);
    EXPECT_EQ(im.geom.itk_direction, lab.geom.itk_direction);
    const Shape3 s = im.geom.shape;
    EXPECT_TRUE(s[0] >= 30 && s[0] <= 48 && s[1] >= 64 && s[1] <= 96 && s[2] >= 64 && s[2] <= 96);
    const auto& sp = im.geom.spacing;
    if (sp[0] > 3 * std::max(sp[1], sp[2])) anisotropic = true;
    for (double d : im.geom.itk_direction) flipped = flipped || d < 0;
    std::set<int> present;
    for (float v : lab.voxels.v) {
      ASSERT_EQ(v, std::nearbyint(v));
      ASSERT_TRUE(v >= 0 && v <= 15) << v;
      present.insert(static_cast<int>(v));
    }
    EXPECT_GE(present.size(), 9u);
    all_labels.insert(present.begin(), present.end());
    const auto [lo, hi] = std::minmax_element(im.voxels.v.begin(), im.voxels.v.end());
    EXPECT_GE(*lo, -1024.0f);
    EXPECT_GE(*hi, 800.0f);  // bone
    // organ voxels carry organ HU, not air
    for (size_t i = 0; i < lab.voxels.size(); i += 7)
      if (lab.voxels.v[i] > 0) ASSERT_GT(im.voxels.v[i], -200.0f);
    const float corner = im.voxels(0, 0, 0);
    if (corner == 0.0f) {
      zero_fov = true;
      EXPECT_EQ(im.voxels(s[0] / 2, 0, 0), 0.0f);
      EXPECT_LT(im.voxels(s[0] / 2, s[1] / 2, 2), -900.0f);  // air inside the field of view
    } else {
      air_corner = true;
      EXPECT_LT(corner, -900.0f);
    }
  }
  EXPECT_TRUE(anisotropic);
  EXPECT_TRUE(flipped);
  EXPECT_TRUE(zero_fov);
  EXPECT_TRUE(air_corner);
  EXPECT_EQ(all_labels.size(), 16u);

  // The generated folder converts and reads back as a Task216 raw dataset.
  const std::string task = convert_amos(tmp / "amos", tmp / "raw", 216);
  const RawTask t = read_raw_task(tmp / "raw", 216);
  EXPECT_EQ(t.training.size(), 4u);
  EXPECT_EQ(t.test.size(), 2u);
  EXPECT_EQ(all_classes_of(t).size(), 15u);
  EXPECT_TRUE(fs::exists(task + "/imagesTs/" + t.test[0].id + "_0000.nii.gz"));
}

TEST(Synth, RejectsBadOptions) {
  TempDir tmp;
  SynthOptions o;
  o.out_dir = tmp / "x";
  o.size = "huge";
  EXPECT_THROW(synth_amos_dataset(o), UsageError);
  o.size = "tiny";
  o.n_train = 601;
  EXPECT_THROW(synth_amos_dataset(o), UsageError);
  o.n_train = 1;
  o.out_dir = "";
  EXPECT_THROW(synth_amos_dataset(o), UsageError);
}

}  // namespace
}  // namespace amosprep
