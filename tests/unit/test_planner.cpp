// The four nnU-Net v1 planners (spec §5, §8 items 5, 6, 15, 16, 21-26, test vectors §9.11).
// Random fingerprints: tests/data/planner_cases.json, written once by tests/python/gen_planner_cases.py from the
// spec's reference planner. Real plans: the pickles of the shared fixtures (skipped when ../shared is absent).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "amosprep/error.hpp"
#include "amosprep/np_reductions.hpp"
#include "amosprep/planner.hpp"

namespace fs = std::filesystem;
using namespace amosprep;
using I3 = std::array<int64_t, 3>;
using D3 = std::array<double, 3>;
using Kernels = std::vector<I3>;

namespace {

uint64_t bits(double x) { uint64_t b; std::memcpy(&b, &x, 8); return b; }

::testing::AssertionResult same_doubles(const D3& got, const D3& want) {
  for (int a = 0; a < 3; ++a)
    if (bits(got[a]) != bits(want[a])) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "axis %d: got %.17g, want %.17g", a, got[a], want[a]);
      return ::testing::AssertionFailure() << buf;
    }
  return ::testing::AssertionSuccess();
}

Kernels repeat(const I3& k, int n) { return Kernels(static_cast<size_t>(n), k); }
Kernels concat(Kernels a, const Kernels& b) { a.insert(a.end(), b.begin(), b.end()); return a; }

// The 12-case synthetic fingerprint of §9.11.
PlannerInput synthetic12() {
  PlannerInput in;
  in.spacings = {{5.0, 0.78125, 0.78125}, {5.0, 0.6875, 0.6875}, {2.0, 0.703125, 0.703125},
                 {5.0, 0.9765625, 0.9765625}, {1.25, 0.6640625, 0.6640625}, {2.0, 0.75, 0.75},
                 {5.0, 0.7421875, 0.7421875}, {0.8, 0.68359375, 0.68359375}, {2.0, 0.6875, 0.6875},
                 {5.0, 0.568359375, 0.568359375}, {1.0, 0.7734375, 0.7734375}, {2.5, 0.830078125, 0.830078125}};
  in.sizes = {{67, 512, 512}, {80, 512, 512}, {201, 512, 512}, {72, 512, 512}, {310, 512, 512}, {160, 512, 512},
              {90, 512, 512}, {420, 512, 512}, {180, 512, 512}, {75, 512, 512}, {350, 512, 512}, {128, 512, 512}};
  in.num_cases = 12;
  in.modalities = {"CT"};
  in.num_classes = 15;
  in.size_reductions.assign(12, 1.0);
  return in;
}

PlannerInput uniform_fingerprint(int cases, const D3& spacing, const Shape3& size) {
  PlannerInput in;
  in.spacings.assign(static_cast<size_t>(cases), spacing);
  in.sizes.assign(static_cast<size_t>(cases), size);
  in.num_cases = cases;
  in.modalities = {"CT"};
  in.size_reductions.assign(static_cast<size_t>(cases), 1.0);
  return in;
}

}  // namespace

// ---- names and planner settings ---------------------------------------------------------------------------------

TEST(PlannerNames, RoundTripAndUnknownNameListsValidOnes) {
  for (PlannerKind k : all_planner_kinds()) EXPECT_EQ(planner_from_name(planner_name(k)), k);
  EXPECT_EQ(planner_from_name("ExperimentPlanner3D_v21"), PlannerKind::v21);
  EXPECT_EQ(planner_from_name("ExperimentPlanner3D_residual_v21_bfnnUNet_31_spRegnnU"),
            PlannerKind::bfnnUNet_31_spRegnnU);
  try {
    planner_from_name("ExperimentPlanner3D_v2");
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ExperimentPlanner3D_v2'"), std::string::npos) << msg;
    for (PlannerKind k : all_planner_kinds()) EXPECT_NE(msg.find(planner_name(k)), std::string::npos) << msg;
  }
}

TEST(PlannerSettings, PerPlannerIdentifiersOrdersAndConstants) {  // §5.1 table
  const PlannerInput in = synthetic12();
  struct Want {
    PlannerKind kind;
    const char *ident, *file, *pre;
    int64_t base;
    int order_seg;
    std::optional<bool> force;
    int order_z;
    bool export_params;
  };
  const Want wants[] = {
      {PlannerKind::v21, "nnUNetData_plans_v2.1", "nnUNetPlansv2.1_plans_3D.pkl", "GenericPreprocessor", 32, 1,
       std::nullopt, 0, false},
      {PlannerKind::bfnnUNet, "nnUNetData_bfnnUNet", "nnUNetPlans_bfnnUNet_fabresnet_plans_3D.pkl",
       "GenericPreprocessor", 30, 1, false, 0, false},
      {PlannerKind::bfnnUNet_31, "nnUNetData_bfnnUNet_31", "nnUNetPlans_bfnnUNet_fabresnet_31_plans_3D.pkl",
       "Preprocessor3DBetterResampling", 30, 3, false, 99999, true},
      {PlannerKind::bfnnUNet_31_spRegnnU, "nnUNetData_bfnnUNet_31_spnnU",
       "nnUNetPlans_bfnnUNet_fabresnet_31_spnnU_plans_3D.pkl", "Preprocessor3DBetterResampling", 30, 3, false, 99999,
       true},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(planner_name(w.kind));
    const Plan p = make_plan(w.kind, in);
    EXPECT_EQ(p.data_identifier, w.ident);
    EXPECT_EQ(p.plans_file_name, w.file);
    EXPECT_EQ(p.preprocessor_name, w.pre);
    EXPECT_EQ(p.base_num_features, w.base);
    EXPECT_EQ(p.order_data, 3);
    EXPECT_EQ(p.order_seg, w.order_seg);
    EXPECT_EQ(p.force_separate_z, w.force);
    EXPECT_EQ(p.order_z_data, w.order_z);
    EXPECT_EQ(p.order_z_seg, w.order_z);
    EXPECT_EQ(p.has_segmentation_export_params, w.export_params);
    EXPECT_EQ(p.normalization_schemes, std::vector<std::string>{"CT"});
    EXPECT_EQ(p.use_mask_for_norm, std::vector<bool>{false});
    EXPECT_EQ(p.transpose_forward, (I3{0, 1, 2}));
    EXPECT_EQ(p.transpose_backward, (I3{0, 1, 2}));
  }
  EXPECT_TRUE(same_doubles(make_plan(PlannerKind::bfnnUNet_31_spRegnnU, in).target_spacing,
                           D3{2.0, 0.68825001, 0.68825001}));  // the literal, not f32(0.68825)
  EXPECT_NE(0.68825001, static_cast<double>(0.68825001f));
}

// ---- §9.11 building blocks --------------------------------------------------------------------------------------

TEST(PlannerPoolConvProps, SpecVectors) {
  {
    const PoolConvProps r = get_pool_and_conv_props({1.5, 1, 1}, {240, 370, 370});
    EXPECT_EQ(r.num_pool_per_axis, (I3{6, 6, 6}));
    EXPECT_EQ(r.pool_op_kernel_sizes, repeat({2, 2, 2}, 6));
    EXPECT_EQ(r.conv_kernel_sizes, repeat({3, 3, 3}, 7));
    EXPECT_EQ(r.padded_patch, (I3{256, 384, 384}));
    EXPECT_EQ(r.must_be_divisible_by, (I3{64, 64, 64}));
  }
  {
    const PoolConvProps r = get_pool_and_conv_props({2.0, 0.68825001, 0.68825001}, {180, 538, 538});
    EXPECT_EQ(r.num_pool_per_axis, (I3{5, 7, 7}));
    EXPECT_EQ(r.pool_op_kernel_sizes, concat(concat({{1, 2, 2}}, repeat({2, 2, 2}, 5)), {{1, 2, 2}}));
    EXPECT_EQ(r.conv_kernel_sizes, concat({{1, 3, 3}}, repeat({3, 3, 3}, 7)));
    EXPECT_EQ(r.padded_patch, (I3{192, 640, 640}));
    EXPECT_EQ(r.must_be_divisible_by, (I3{32, 128, 128}));
  }
  {
    const PoolConvProps r = get_pool_and_conv_props({5, 0.8, 0.8}, {40, 320, 320});
    EXPECT_EQ(r.num_pool_per_axis, (I3{3, 6, 6}));
    EXPECT_EQ(r.pool_op_kernel_sizes,
              concat(concat({{1, 2, 2}, {1, 2, 2}}, repeat({2, 2, 2}, 3)), {{1, 2, 2}}));
    EXPECT_EQ(r.conv_kernel_sizes, concat({{1, 3, 3}, {1, 3, 3}}, repeat({3, 3, 3}, 5)));
    EXPECT_EQ(r.padded_patch, (I3{40, 320, 320}));
    EXPECT_EQ(r.must_be_divisible_by, (I3{8, 64, 64}));
  }
}

TEST(PlannerVram, SpecVectors) {
  EXPECT_EQ(vram_generic_unet({128, 128, 128}, 32, 320, 1, 16, repeat({2, 2, 2}, 5)), 482156544);
  EXPECT_EQ(vram_fabians_unet({128, 192, 192}, 30, 320, 1, 16, concat({{1, 1, 1}}, repeat({2, 2, 2}, 5)),
                              {1, 2, 3, 4, 4, 4}, {1, 1, 1, 1, 1}, 2, 2),
            2288314368.0);
  // The v21 patch of the synthetic fingerprint (§9.11).
  EXPECT_EQ(vram_generic_unet({96, 160, 128}, 32, 320, 1, 16, concat(repeat({2, 2, 2}, 4), {{1, 2, 2}})), 452060160);
}

TEST(PlannerPadShape, SpecVectors) {
  EXPECT_EQ(pad_shape({100, 150, 151}, {16, 32, 32}), (std::vector<int64_t>{112, 160, 160}));
  EXPECT_EQ(pad_shape({96, 160}, {32, 32}), (std::vector<int64_t>{96, 160}));
}

TEST(PlannerTargetSpacing, AnisotropyRuleUsesTenthPercentileAndClamp) {  // §5.2, §8.21
  const PlannerInput in = synthetic12();
  EXPECT_TRUE(same_doubles(target_spacing_v21(in.spacings, in.sizes), D3{1.025, 0.72265625, 0.72265625}));
  // Thick slices: P_10(z) = 4 + (5 - 4) * 0.4 is above the in-plane spacing, so it is used as is.
  PlannerInput thick = uniform_fingerprint(5, {5.0, 1.0, 1.0}, {40, 512, 512});
  thick.spacings[0][0] = 4.0;
  EXPECT_TRUE(same_doubles(target_spacing_v21(thick.spacings, thick.sizes), D3{4.4, 1.0, 1.0}));
  // P_10(z) below the in-plane spacing: clamped to max(in-plane) + 1e-5.
  PlannerInput clamp = uniform_fingerprint(5, {5.0, 1.0, 1.0}, {40, 512, 512});
  clamp.spacings[0][0] = clamp.spacings[1][0] = 0.5;
  EXPECT_TRUE(same_doubles(target_spacing_v21(clamp.spacings, clamp.sizes), D3{1.0 + 1e-5, 1.0, 1.0}));
  // The rule needs few voxels along z too (cropped sizes, §8.21): 200 slices is not "few".
  PlannerInput many_slices = uniform_fingerprint(5, {5.0, 1.0, 1.0}, {200, 512, 512});
  many_slices.spacings[0][0] = many_slices.spacings[1][0] = 0.5;
  EXPECT_TRUE(same_doubles(target_spacing_v21(many_slices.spacings, many_slices.sizes), D3{5.0, 1.0, 1.0}));
}

// ---- §9.11 synthetic 12-case fingerprint ------------------------------------------------------------------------

TEST(PlannerSynthetic, V21TwoStages) {
  const Plan p = make_plan(PlannerKind::v21, synthetic12());
  EXPECT_TRUE(same_doubles(p.target_spacing, D3{1.025, 0.72265625, 0.72265625}));
  EXPECT_TRUE(same_doubles(p.median_shape, D3{351.219512195122, 512, 512}));
  ASSERT_EQ(p.stages.size(), 2u);
  const StagePlan& lo = p.stages[0];
  EXPECT_TRUE(same_doubles(lo.current_spacing, D3{2.340981002615223, 1.650462978215762, 1.650462978215762}));
  EXPECT_TRUE(same_doubles(lo.original_spacing, D3{1.025, 0.72265625, 0.72265625}));
  EXPECT_EQ(lo.median_patient_size_in_voxels, (I3{154, 224, 224}));
  EXPECT_EQ(lo.patch_size, (I3{96, 160, 128}));  // argsort tie -> highest axis (§8.24)
  EXPECT_EQ(lo.num_pool_per_axis, (I3{4, 5, 5}));
  EXPECT_EQ(lo.pool_op_kernel_sizes, concat(repeat({2, 2, 2}, 4), {{1, 2, 2}}));
  EXPECT_EQ(lo.batch_size, 2);
  const StagePlan& hi = p.stages[1];
  EXPECT_TRUE(same_doubles(hi.current_spacing, D3{1.025, 0.72265625, 0.72265625}));
  EXPECT_EQ(hi.median_patient_size_in_voxels, (I3{351, 512, 512}));
  EXPECT_EQ(hi.patch_size, (I3{96, 160, 128}));
  EXPECT_EQ(hi.num_pool_per_axis, (I3{4, 5, 5}));
  EXPECT_EQ(hi.batch_size, 2);
  EXPECT_EQ(hi.conv_kernel_sizes, repeat({3, 3, 3}, 6));
  EXPECT_FALSE(hi.do_dummy_2D_data_aug);
  EXPECT_TRUE(hi.num_blocks_encoder.empty() && hi.num_blocks_decoder.empty());
}

TEST(PlannerSynthetic, BfnnUNetOneStageLowResRejected) {
  for (PlannerKind k : {PlannerKind::bfnnUNet, PlannerKind::bfnnUNet_31}) {
    SCOPED_TRACE(planner_name(k));
    const Plan p = make_plan(k, synthetic12());
    EXPECT_EQ(p.base_num_features, 30);
    ASSERT_EQ(p.stages.size(), 1u);
    const StagePlan& s = p.stages[0];
    EXPECT_TRUE(same_doubles(s.current_spacing, D3{1.5, 1.0, 1.0}));
    EXPECT_EQ(s.median_patient_size_in_voxels, (I3{240, 370, 370}));
    EXPECT_EQ(s.patch_size, (I3{128, 192, 192}));
    EXPECT_EQ(s.num_pool_per_axis, (I3{5, 5, 5}));
    EXPECT_EQ(s.pool_op_kernel_sizes, concat({{1, 1, 1}}, repeat({2, 2, 2}, 5)));
    EXPECT_EQ(s.num_blocks_encoder, (std::vector<int64_t>{1, 2, 3, 4, 4, 4}));
    EXPECT_EQ(s.num_blocks_decoder, (std::vector<int64_t>{1, 1, 1, 1, 1}));
    EXPECT_EQ(s.batch_size, 2);
  }
}

TEST(PlannerSynthetic, SpRegnnUTwoStages) {
  const Plan p = make_plan(PlannerKind::bfnnUNet_31_spRegnnU, synthetic12());
  ASSERT_EQ(p.stages.size(), 2u);
  const StagePlan& lo = p.stages[0];
  EXPECT_TRUE(same_doubles(lo.current_spacing, D3{2.2989484264752447, 1.1546694169737608, 1.1546694169737608}));
  EXPECT_EQ(lo.median_patient_size_in_voxels, (I3{157, 320, 320}));
  EXPECT_EQ(lo.patch_size, (I3{96, 224, 192}));
  EXPECT_EQ(lo.num_pool_per_axis, (I3{4, 5, 5}));
  EXPECT_EQ(lo.pool_op_kernel_sizes, concat(concat({{1, 1, 1}}, repeat({2, 2, 2}, 4)), {{1, 2, 2}}));
  EXPECT_EQ(lo.batch_size, 2);
  const StagePlan& hi = p.stages[1];
  EXPECT_TRUE(same_doubles(hi.current_spacing, D3{2.0, 0.68825001, 0.68825001}));
  EXPECT_EQ(hi.median_patient_size_in_voxels, (I3{180, 538, 538}));
  EXPECT_EQ(hi.patch_size, (I3{64, 224, 224}));
  EXPECT_EQ(hi.num_pool_per_axis, (I3{4, 5, 5}));
  EXPECT_EQ(hi.pool_op_kernel_sizes, concat({{1, 1, 1}, {1, 2, 2}}, repeat({2, 2, 2}, 4)));
  EXPECT_EQ(hi.conv_kernel_sizes, concat({{1, 3, 3}}, repeat({3, 3, 3}, 5)));
  EXPECT_TRUE(hi.do_dummy_2D_data_aug);
  EXPECT_EQ(hi.batch_size, 2);
}

// ---- batch size cap, stale npz count, modalities, bad input -----------------------------------------------------

TEST(PlannerBatchSize, DatasetCapAndItsPythonType) {
  // 64^3 cases at 1 mm: v21's VRAM estimate allows 18, the 5 % dataset cap decides. Reference planner: batch 2, 2,
  // 3 for 10, 30, 60 cases. nnU-Net's max/min keep the numpy int64 cap only when 2 <= cap < 18 (30 cases: round(1.5)
  // = 2; 60 cases: 3); with 10 cases round(0.5) = 0 and the Python int 2 wins.
  struct Case { int cases; int64_t batch; bool np_int64; };
  for (const Case& c : {Case{10, 2, false}, Case{30, 2, true}, Case{60, 3, true}}) {
    SCOPED_TRACE(c.cases);
    const Plan p = make_plan(PlannerKind::v21, uniform_fingerprint(c.cases, {1, 1, 1}, {64, 64, 64}));
    ASSERT_EQ(p.stages.size(), 1u);
    EXPECT_EQ(p.stages[0].patch_size, (I3{64, 64, 64}));
    EXPECT_EQ(p.stages[0].batch_size, c.batch);
    EXPECT_EQ(p.stages[0].batch_size_is_np_int64, c.np_int64);
    const py::Value plans = plans_to_py(p, uniform_fingerprint(c.cases, {1, 1, 1}, {64, 64, 64}), PlansContext{});
    const py::Value* stage = py::dict_get(*py::dict_get(plans, "plans_per_stage"), int64_t(0));
    ASSERT_NE(stage, nullptr);
    EXPECT_TRUE(*py::dict_get(*stage, "batch_size") ==
                (c.np_int64 ? py::np_int64(c.batch) : py::Value(c.batch)));
  }
}

TEST(PlannerBatchSize, StaleNpzFilesCountInTheCap) {  // §8.25: num_cases = number of npz files, not of spacings
  PlannerInput in = uniform_fingerprint(30, {1, 1, 1}, {64, 64, 64});
  EXPECT_EQ(make_plan(PlannerKind::v21, in).stages[0].batch_size, 2);
  in.num_cases = 60;
  EXPECT_EQ(make_plan(PlannerKind::v21, in).stages[0].batch_size, 3);
}

TEST(PlannerModalities, NormalizationSchemesAndNonzeroMask) {  // §5.6 step 9, §5.7
  PlannerInput in = synthetic12();
  in.modalities = {"CT", "MR", "noNorm", "ct"};
  in.size_reductions = {0.5, 0.7, 0.9, 1.0};  // median 0.8: no mask
  Plan p = make_plan(PlannerKind::v21, in);
  EXPECT_EQ(p.normalization_schemes, (std::vector<std::string>{"CT", "nonCT", "noNorm", "CT"}));
  EXPECT_EQ(p.use_mask_for_norm, (std::vector<bool>{false, false, false, false}));
  in.size_reductions = {0.5, 0.7, 0.74, 1.0};  // median 0.72 < 3/4
  p = make_plan(PlannerKind::v21, in);
  EXPECT_EQ(p.use_mask_for_norm, (std::vector<bool>{false, true, true, true}));  // "ct" lacks the substring "CT"
}

TEST(PlannerInputErrors, EmptyOrInconsistentFingerprintIsInputError) {
  PlannerInput in = synthetic12();
  in.sizes.pop_back();
  EXPECT_THROW(make_plan(PlannerKind::v21, in), InputError);
  EXPECT_THROW(make_plan(PlannerKind::v21, PlannerInput{}), InputError);
  in = synthetic12();
  in.spacings[3][1] = 0.0;
  EXPECT_THROW(make_plan(PlannerKind::bfnnUNet, in), InputError);
}

// ---- random fingerprints vs the reference planner ---------------------------------------------------------------

namespace {

Kernels parse_kernels(const std::string& s) {  // "122.222" -> [[1,2,2],[2,2,2]]
  Kernels out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, '.')) out.push_back({item[0] - '0', item[1] - '0', item[2] - '0'});
  return out;
}

I3 i3(const nlohmann::json& j) { return {j[0].get<int64_t>(), j[1].get<int64_t>(), j[2].get<int64_t>()}; }
D3 d3(const nlohmann::json& j) { return {j[0].get<double>(), j[1].get<double>(), j[2].get<double>()}; }

}  // namespace

TEST(PlannerRandomFingerprints, MatchReferencePlanner) {
  std::ifstream f(std::string(AMOSPREP_SOURCE_DIR) + "/tests/data/planner_cases.json");
  ASSERT_TRUE(f.good()) << "tests/data/planner_cases.json missing";
  const nlohmann::json data = nlohmann::json::parse(f);
  const std::vector<std::string> fields = data.at("stage_fields").get<std::vector<std::string>>();
  ASSERT_EQ(fields, (std::vector<std::string>{"batch_size", "num_pool_per_axis", "patch_size",
                                              "median_patient_size_in_voxels", "current_spacing", "original_spacing",
                                              "do_dummy_2D_data_aug", "pool_op_kernel_sizes", "conv_kernel_sizes"}));
  const std::pair<const char*, PlannerKind> planners[] = {{"v21", PlannerKind::v21},
                                                          {"bfnnUNet", PlannerKind::bfnnUNet},
                                                          {"bfnnUNet_31", PlannerKind::bfnnUNet_31},
                                                          {"bfnnUNet_31_spRegnnU", PlannerKind::bfnnUNet_31_spRegnnU}};
  int plans = 0, two_stage = 0, batch_above_2 = 0, transposed = 0, anisotropy_rule = 0, failures = 0;
  for (const auto& c : data.at("cases")) {
    PlannerInput in;
    for (const auto& s : c.at("spacings_f32"))  // float32 values written as their shortest float32 decimal
      in.spacings.push_back({static_cast<double>(static_cast<float>(s[0].get<double>())),
                             static_cast<double>(static_cast<float>(s[1].get<double>())),
                             static_cast<double>(static_cast<float>(s[2].get<double>()))});
    for (const auto& s : c.at("sizes")) in.sizes.push_back(i3(s));
    in.num_cases = static_cast<int64_t>(in.sizes.size());
    in.num_classes = c.at("num_classes").get<int>();
    in.modalities.assign(c.at("num_modalities").get<size_t>(), "CT");
    for (const auto& [key, kind] : planners) {
      SCOPED_TRACE("case " + std::to_string(c.at("id").get<int>()) + " " + key);
      const nlohmann::json& want = c.at("plans").at(key);
      const Plan p = make_plan(kind, in);
      ++plans;
      if (kind == PlannerKind::v21) {  // did the 10th-percentile rule replace the median spacing?
        D3 median{};
        for (int a = 0; a < 3; ++a) {
          std::vector<double> axis;
          for (const auto& sp : in.spacings) axis.push_back(sp[a]);
          median[a] = np_percentile_f64(axis, 50.0);
        }
        anisotropy_rule += !same_doubles(p.target_spacing, median);
      }
      EXPECT_EQ(p.transpose_forward, i3(want.at("transpose_forward")));
      transposed += p.transpose_forward != I3{0, 1, 2};
      ASSERT_EQ(p.stages.size(), want.at("stages").size());
      two_stage += p.stages.size() == 2;
      for (size_t i = 0; i < p.stages.size(); ++i) {
        const StagePlan& s = p.stages[i];
        const nlohmann::json& w = want.at("stages")[i];
        const bool ok = s.batch_size == w[0].get<int64_t>() && s.num_pool_per_axis == i3(w[1]) &&
                        s.patch_size == i3(w[2]) && s.median_patient_size_in_voxels == i3(w[3]) &&
                        same_doubles(s.current_spacing, d3(w[4])) && same_doubles(s.original_spacing, d3(w[5])) &&
                        s.do_dummy_2D_data_aug == w[6].get<bool>() &&
                        s.pool_op_kernel_sizes == parse_kernels(w[7].get<std::string>()) &&
                        s.conv_kernel_sizes == parse_kernels(w[8].get<std::string>());
        EXPECT_TRUE(ok) << "stage " << i << " differs; want " << w.dump();
        failures += !ok;
        batch_above_2 += s.batch_size > 2;
        if (kind == PlannerKind::v21) {
          EXPECT_TRUE(s.num_blocks_encoder.empty());
        } else {  // FabiansUNet defaults, cut to the number of resolution levels
          const size_t levels = s.pool_op_kernel_sizes.size();
          const std::vector<int64_t> enc = {1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4};
          EXPECT_EQ(s.num_blocks_encoder, std::vector<int64_t>(enc.begin(), enc.begin() + levels));
          EXPECT_EQ(s.num_blocks_decoder, std::vector<int64_t>(levels - 1, 1));
        }
      }
      if (failures > 20) FAIL() << "too many differences, stopping";
    }
  }
  // The data must really cover what it is meant to cover.
  EXPECT_EQ(plans, 1200);
  EXPECT_GT(two_stage, 300);
  EXPECT_GT(batch_above_2, 50);
  EXPECT_GT(transposed, 30);
  EXPECT_GT(anisotropy_rule, 50);
}

// ---- the real nnU-Net plans pickles of the shared fixtures ------------------------------------------------------

namespace {

py::DType dtype_from_descr(const std::string& d) {
  for (py::DType t : {py::DType::f4, py::DType::f8, py::DType::i8, py::DType::i4, py::DType::i2, py::DType::u1,
                      py::DType::b1})
    if (d == py::dtype_descr(t)) return t;
  throw std::runtime_error("unexpected dtype " + d);
}

std::string unhex(const std::string& h) {
  std::string out(h.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

// Decodes the output of tests/python/pickle_to_typed_json.py.
py::Value decode_typed(const nlohmann::json& j) {
  const std::string t = j.at("t").get<std::string>();
  if (t == "None") return py::Value();
  if (t == "bool") return py::Value(j.at("v").get<bool>());
  if (t == "int") return py::Value(j.at("v").get<int64_t>());
  if (t == "float") {
    double d;
    std::memcpy(&d, unhex(j.at("hex").get<std::string>()).data(), 8);
    return py::Value(d);
  }
  if (t == "str") return py::Value(j.at("v").get<std::string>());
  if (t == "list" || t == "tuple") {
    std::vector<py::Value> items;
    for (const auto& x : j.at("items")) items.push_back(decode_typed(x));
    return t == "list" ? py::list(std::move(items)) : py::tuple(std::move(items));
  }
  if (t == "dict" || t == "odict") {
    std::vector<std::pair<py::Value, py::Value>> items;
    for (const auto& kv : j.at("items")) items.emplace_back(decode_typed(kv[0]), decode_typed(kv[1]));
    return t == "dict" ? py::dict(std::move(items)) : py::odict(std::move(items));
  }
  if (t == "nd")
    return py::Value(py::NdArray{dtype_from_descr(j.at("dtype").get<std::string>()),
                                 j.at("shape").get<std::vector<int64_t>>(), unhex(j.at("hex").get<std::string>())});
  if (t == "np")
    return py::Value(py::NpScalar{dtype_from_descr(j.at("dtype").get<std::string>()),
                                  unhex(j.at("hex").get<std::string>())});
  throw std::runtime_error("unknown typed-json tag " + t);
}

std::string describe(const py::Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, py::None>) return "None";
        else if constexpr (std::is_same_v<T, bool>) return x ? "True" : "False";
        else if constexpr (std::is_same_v<T, int64_t>) return "int " + std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return "float " + std::to_string(x);
        else if constexpr (std::is_same_v<T, std::string>) return "'" + x + "'";
        else if constexpr (std::is_same_v<T, py::List>) return "list[" + std::to_string(x.items.size()) + "]";
        else if constexpr (std::is_same_v<T, py::Tuple>) return "tuple[" + std::to_string(x.items.size()) + "]";
        else if constexpr (std::is_same_v<T, py::Dict>)
          return std::string(x.ordered ? "OrderedDict" : "dict") + "[" + std::to_string(x.items.size()) + "]";
        else if constexpr (std::is_same_v<T, py::NdArray>) return std::string("ndarray ") + py::dtype_descr(x.dtype);
        else return std::string("numpy scalar ") + py::dtype_descr(x.dtype);
      },
      v.v);
}

// Path of the first difference between two values ("" when equal).
std::string first_difference(const py::Value& a, const py::Value& b, const std::string& path) {
  if (a == b) return "";
  if (a.v.index() == b.v.index()) {
    if (a.is<py::Dict>()) {
      const auto &x = a.as<py::Dict>().items, &y = b.as<py::Dict>().items;
      for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
        if (!(x[i].first == y[i].first))
          return path + ": key #" + std::to_string(i) + " is " + describe(x[i].first) + ", want " +
                 describe(y[i].first);
        const std::string d = first_difference(x[i].second, y[i].second, path + "[" + describe(x[i].first) + "]");
        if (!d.empty()) return d;
      }
    }
    if (a.is<py::List>() || a.is<py::Tuple>()) {
      const auto& x = a.is<py::List>() ? a.as<py::List>().items : a.as<py::Tuple>().items;
      const auto& y = b.is<py::List>() ? b.as<py::List>().items : b.as<py::Tuple>().items;
      for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
        const std::string d = first_difference(x[i], y[i], path + "[" + std::to_string(i) + "]");
        if (!d.empty()) return d;
      }
    }
  }
  return path + ": got " + describe(a) + ", want " + describe(b);
}

std::string python_exe() {
  const char* env = std::getenv("AMOSPREP_PYTHON");
  return env ? env : "/usr/bin/python3";
}

// Converts pickles with the helper script (one Python start); null json when Python with numpy is unavailable.
nlohmann::json pickles_as_typed_json(const std::vector<fs::path>& pkls, const fs::path& tmp) {
  const fs::path out = tmp / "plans.json";
  std::string cmd = "'" + python_exe() + "' '" + std::string(AMOSPREP_SOURCE_DIR) +
                    "/tests/python/pickle_to_typed_json.py'";
  for (const auto& p : pkls) cmd += " '" + p.string() + "'";
  cmd += " > '" + out.string() + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) return {};
  std::ifstream f(out);
  return nlohmann::json::parse(f);
}

const py::Value& get(const py::Value& d, const char* key) {
  const py::Value* v = py::dict_get(d, key);
  if (!v) throw std::runtime_error(std::string("missing key ") + key);
  return *v;
}

D3 nd_to_d3(const py::Value& v) {
  D3 out;
  std::memcpy(out.data(), v.as<py::NdArray>().bytes.data(), 24);
  return out;
}

// A Python float or a numpy float64 scalar (size_reductions holds the latter).
double as_float(const py::Value& v) {
  if (v.is<double>()) return v.as<double>();
  double d;
  std::memcpy(&d, v.as<py::NpScalar>().bytes.data(), 8);
  return d;
}

Shape3 tuple_to_shape(const py::Value& v) {
  const auto& items = v.as<py::Tuple>().items;
  return {items[0].as<int64_t>(), items[1].as<int64_t>(), items[2].as<int64_t>()};
}

}  // namespace

TEST(PlannerFixtures, PlansDictEqualsRealNnUNetPickles) {
  const fs::path fixtures = fs::path(AMOSPREP_SOURCE_DIR) / ".." / "shared" / "fixtures";
  if (!fs::is_directory(fixtures)) GTEST_SKIP() << "shared fixtures not found at " << fixtures;
  if (!fs::exists(python_exe())) GTEST_SKIP() << python_exe() << " not found (needed to read the pickles)";
  std::vector<std::pair<PlannerKind, fs::path>> runs;
  for (const auto& set : fs::directory_iterator(fixtures)) {
    if (!fs::is_directory(set.path() / "nnunet-v1")) continue;
    for (const auto& run : fs::directory_iterator(set.path() / "nnunet-v1")) {
      const fs::path task = run.path() / "nnUNet_preprocessed" / "Task216_AMOS2022_task1";
      if (!fs::is_directory(task)) continue;
      const PlannerKind kind = planner_from_name(run.path().filename().string());
      runs.emplace_back(kind, task / make_plan(kind, synthetic12()).plans_file_name);
      ASSERT_TRUE(fs::exists(runs.back().second)) << runs.back().second;
    }
  }
  ASSERT_GE(runs.size(), 6u) << "expected v21 and bfnnUNet_31 plans for three fixture sets";
  const fs::path tmp = fs::temp_directory_path() / ("amosprep_planner_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::vector<fs::path> pkls;
  for (const auto& r : runs) pkls.push_back(r.second);
  const nlohmann::json all = pickles_as_typed_json(pkls, tmp);
  fs::remove_all(tmp);
  if (all.is_null()) GTEST_SKIP() << "could not run " << python_exe() << " with numpy to read the plans pickles";
  ASSERT_EQ(all.size(), runs.size());

  for (size_t r = 0; r < runs.size(); ++r) {
    const PlannerKind kind = runs[r].first;
    SCOPED_TRACE(runs[r].second.string());
    const py::Value want = decode_typed(all[r]);

    // Everything the planner does not compute comes from the pickle itself.
    const py::Value& props = get(want, "dataset_properties");
    PlannerInput in;
    PlansContext ctx;
    ctx.dataset_properties = props;
    for (const auto& s : get(props, "all_spacings").as<py::List>().items) in.spacings.push_back(nd_to_d3(s));
    for (const auto& s : get(props, "all_sizes").as<py::List>().items) in.sizes.push_back(tuple_to_shape(s));
    for (const auto& m : get(props, "modalities").as<py::Dict>().items)
      in.modalities.push_back(m.second.as<std::string>());
    for (const auto& x : get(props, "size_reductions").as<py::Dict>().items)
      in.size_reductions.push_back(as_float(x.second));
    for (const auto& c : get(props, "all_classes").as<py::List>().items) ctx.all_classes.push_back(c.as<int64_t>());
    in.num_classes = static_cast<int>(ctx.all_classes.size());
    for (const auto& p : get(want, "list_of_npz_files").as<py::List>().items)
      ctx.list_of_npz_files.push_back(p.as<std::string>());
    in.num_cases = static_cast<int64_t>(ctx.list_of_npz_files.size());
    ctx.preprocessed_data_folder = get(want, "preprocessed_data_folder").as<std::string>();
    ctx.original_spacings = in.spacings;
    ctx.original_sizes = in.sizes;

    const py::Value got = plans_to_py(make_plan(kind, in), in, ctx);
    EXPECT_TRUE(got == want) << first_difference(got, want, "plans");
    // The stages really are computed: a wrong planner must not pass.
    const PlannerKind other = kind == PlannerKind::v21 ? PlannerKind::bfnnUNet_31 : PlannerKind::v21;
    EXPECT_FALSE(plans_to_py(make_plan(other, in), in, ctx) == want);
  }
}
