#include "amosprep/planner.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "amosprep/error.hpp"
#include "amosprep/np_reductions.hpp"

namespace amosprep {

namespace {

using I3 = std::array<int64_t, 3>;
using D3 = std::array<double, 3>;

// ExperimentPlanner.__init__ constants (§5.1).
constexpr int64_t kMaxNumFilters = 320;
constexpr int64_t kMaxNumPool = 999;
constexpr int64_t kMinBatchSize = 2;
constexpr int64_t kFeatureMapMinEdge = 4;
constexpr double kAnisotropyThreshold = 3.0;
constexpr double kPatientFractionAtStage0 = 4.0;
constexpr double kBatchCoversMaxFractionOfDataset = 0.05;
constexpr int64_t kConvPerStage = 2;
// Generic_UNet / FabiansUNet class constants (§5.4, §5.5).
constexpr int64_t kGenericRefVram = 520000000;
constexpr int64_t kGenericBaseFeatures3D = 30;
constexpr int64_t kDefaultBatchSize3D = 2;
constexpr double kFabiansRefVram = 1230348801.0;
const std::vector<int64_t> kFabiansBlocksEncoder = {1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4};
const std::vector<int64_t> kFabiansBlocksDecoder = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

struct PlannerTraits {
  PlannerKind kind;
  const char* name;
  const char* data_identifier;
  const char* plans_file_name;
  const char* preprocessor_name;
  int64_t base_num_features;
  bool residual;
};

const PlannerTraits kPlanners[] = {
    {PlannerKind::v21, "ExperimentPlanner3D_v21", "nnUNetData_plans_v2.1", "nnUNetPlansv2.1_plans_3D.pkl",
     "GenericPreprocessor", 32, false},
    {PlannerKind::bfnnUNet, "ExperimentPlanner3D_residual_v21_bfnnUNet", "nnUNetData_bfnnUNet",
     "nnUNetPlans_bfnnUNet_fabresnet_plans_3D.pkl", "GenericPreprocessor", 30, true},
    {PlannerKind::bfnnUNet_31, "ExperimentPlanner3D_residual_v21_bfnnUNet_31", "nnUNetData_bfnnUNet_31",
     "nnUNetPlans_bfnnUNet_fabresnet_31_plans_3D.pkl", "Preprocessor3DBetterResampling", 30, true},
    {PlannerKind::bfnnUNet_31_spRegnnU, "ExperimentPlanner3D_residual_v21_bfnnUNet_31_spRegnnU",
     "nnUNetData_bfnnUNet_31_spnnU", "nnUNetPlans_bfnnUNet_fabresnet_31_spnnU_plans_3D.pkl",
     "Preprocessor3DBetterResampling", 30, true},
};

const PlannerTraits& traits(PlannerKind k) {
  for (const auto& t : kPlanners)
    if (t.kind == k) return t;
  throw InternalError("unknown PlannerKind " + std::to_string(static_cast<int>(k)));
}

// np.round: round half to even.
int64_t rne(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

int64_t prod3(const I3& x) { return x[0] * x[1] * x[2]; }
double prod3(const D3& x) { return x[0] * x[1] * x[2]; }

// Index of the maximum, first one on ties (np.argmax).
int argmax_first(const D3& v) {
  int best = 0;
  for (int a = 1; a < 3; ++a)
    if (v[a] > v[best]) best = a;
  return best;
}

template <class T>
std::array<T, 3> permute(const std::array<T, 3>& v, const I3& order) {
  return {v[order[0]], v[order[1]], v[order[2]]};
}

// get_pool_and_conv_props without heap allocation: the stage search calls it thousands of times.
constexpr int kMaxLevels = 200;  // every level halves at least one axis of at most 2^63 voxels
struct Levels {
  I3 npool{0, 0, 0};
  int count = 0;
  std::array<I3, kMaxLevels> pools, convs;  // convs[count] is the bottleneck [3,3,3]
  I3 divisor() const { return {int64_t(1) << npool[0], int64_t(1) << npool[1], int64_t(1) << npool[2]}; }
};

void pool_levels(const D3& spacing, const I3& patch, int64_t min_feature_map_size, int64_t max_numpool, Levels& out) {
  D3 sp = spacing;
  I3 size = patch;
  out.npool = {0, 0, 0};
  out.count = 0;
  for (;;) {
    const double smallest = std::min({sp[0], sp[1], sp[2]});
    // Conv kernel of this level: the first axis whose spacing partners (within a factor 2) outnumber the best.
    int best_mask = 0, best_count = 0;
    for (int a = 0; a < 3; ++a) {
      int mask = 0, count = 0;
      for (int i = 0; i < 3; ++i)
        if (sp[i] / sp[a] < 2 && sp[a] / sp[i] < 2) {
          mask |= 1 << i;
          ++count;
        }
      if (count > best_count) {
        best_mask = mask;
        best_count = count;
      }
    }
    bool pool_axis[3];
    for (int a = 0; a < 3; ++a)
      pool_axis[a] = sp[a] / smallest < 2 && size[a] >= 2 * min_feature_map_size && out.npool[a] < max_numpool;
    if (!pool_axis[0] && !pool_axis[1] && !pool_axis[2]) break;
    if (out.count + 1 >= kMaxLevels) throw InternalError("get_pool_and_conv_props: too many pooling levels");
    I3& pool = out.pools[out.count];
    I3& conv = out.convs[out.count];
    for (int a = 0; a < 3; ++a) {
      conv[a] = (best_mask >> a) & 1 ? 3 : 1;
      pool[a] = 1;
      if (pool_axis[a]) {
        pool[a] = 2;
        out.npool[a] += 1;
        sp[a] *= 2;
        size[a] = (size[a] + 1) / 2;  // np.ceil(size / 2) for size >= 8
      }
    }
    ++out.count;
  }
  out.convs[out.count] = {3, 3, 3};
}

// pad_shape: round each entry up to a multiple of its divisor (Python's floor modulo).
int64_t pad_to_multiple(int64_t size, int64_t divisor) {
  const int64_t rem = ((size % divisor) + divisor) % divisor;
  return rem == 0 ? size : size + divisor - rem;
}

I3 padded(const I3& patch, const I3& divisor) {
  return {pad_to_multiple(patch[0], divisor[0]), pad_to_multiple(patch[1], divisor[1]),
          pad_to_multiple(patch[2], divisor[2])};
}

int64_t vram_generic_core(const I3& patch, int64_t base, int64_t max_features, int64_t modalities, int64_t classes,
                          const I3* pools, int levels, int64_t conv_per_stage) {
  I3 map = patch;
  const int64_t voxels = prod3(map);
  int64_t total = (conv_per_stage * 2 + 1) * voxels * base + modalities * voxels + classes * voxels;
  int64_t features = base;
  for (int p = 0; p < levels; ++p) {
    for (int a = 0; a < 3; ++a) map[a] = map[a] / pools[p][a];  // nnU-Net stores back as int
    features = std::min(features * 2, max_features);
    const int64_t blocks = p + 1 < levels ? conv_per_stage * 2 + 1 : conv_per_stage;
    total += blocks * prod3(map) * features;
  }
  return total;
}

// `pools` excludes the leading [1,1,1]; levels = len(pool_op_kernel_sizes) - 1 in nnU-Net's terms.
double vram_fabians_core(const I3& patch, int64_t base, int64_t max_features, int64_t modalities, int64_t classes,
                         const I3* pools, int levels, const int64_t* blocks_encoder, const int64_t* blocks_decoder,
                         int64_t mul, int64_t batch_size) {
  const D3 full{static_cast<double>(patch[0]), static_cast<double>(patch[1]), static_cast<double>(patch[2])};
  const double fbase = static_cast<double>(base);
  // ResidualUNetEncoder
  D3 s = full;
  double encoder = static_cast<double>(blocks_encoder[0] * 2 + 1) * prod3(s) * fbase +
                   static_cast<double>(modalities) * prod3(s);
  int64_t features = base;
  for (int p = 1; p <= levels; ++p) {
    for (int a = 0; a < 3; ++a) s[a] = s[a] / static_cast<double>(pools[p - 1][a]);
    features = std::min(features * mul, max_features);
    encoder += static_cast<double>(blocks_encoder[p] * 2 + 1) * prod3(s) * static_cast<double>(features);
  }
  // PlainConvUNetDecoder (the bottleneck belongs to the encoder); blocks_decoder has `levels` entries
  s = full;
  double decoder = static_cast<double>(blocks_decoder[levels - 1] + 1) * prod3(s) * fbase +
                   static_cast<double>(classes) * prod3(s);
  features = base;
  for (int p = 1; p < levels; ++p) {
    for (int a = 0; a < 3; ++a) s[a] = s[a] / static_cast<double>(pools[p - 1][a]);
    features = std::min(features * mul, max_features);
    decoder += static_cast<double>(blocks_decoder[levels - 1 - p] + 1) * prod3(s) * static_cast<double>(features);
  }
  const double batch = static_cast<double>(batch_size);
  return encoder * batch + decoder * batch;
}

struct StageContext {
  int64_t num_cases, num_modalities, num_classes_incl_background, base_num_features;
  bool residual;
};

// Estimated VRAM of the network for `patch` with the planner's model.
double estimate_vram(const StageContext& ctx, const I3& patch, const Levels& lv) {
  if (!ctx.residual)
    return static_cast<double>(vram_generic_core(patch, ctx.base_num_features, kMaxNumFilters, ctx.num_modalities,
                                                 ctx.num_classes_incl_background, lv.pools.data(), lv.count,
                                                 kConvPerStage));
  if (lv.count == 0)  // num_blocks_decoder would be empty and nnU-Net's decoder[-1] raises IndexError
    throw InputError("", "", "planner: the patch allows no pooling at all; nnU-Net's FabiansUNet estimate fails here");
  if (static_cast<size_t>(lv.count) + 1 > kFabiansBlocksEncoder.size())
    throw InputError("", "", "planner: more pooling levels (" + std::to_string(lv.count + 1) +
                                 ") than FabiansUNet defines blocks for; nnU-Net would fail here");
  return vram_fabians_core(patch, ctx.base_num_features, kMaxNumFilters, ctx.num_modalities,
                           ctx.num_classes_incl_background, lv.pools.data(), lv.count, kFabiansBlocksEncoder.data(),
                           kFabiansBlocksDecoder.data(), 2, kMinBatchSize);
}

// get_properties_for_stage of ExperimentPlanner3D_v21 (§5.4) or of the residual planners (§5.5).
StagePlan stage_properties(const StageContext& ctx, const D3& current_spacing, const D3& original_spacing,
                           const D3& median_shape) {
  StagePlan st;
  I3 median{};
  for (int a = 0; a < 3; ++a) median[a] = rne((original_spacing[a] / current_spacing[a]) * median_shape[a]);
  const int64_t dataset_voxels = prod3(median) * ctx.num_cases;

  // Starting patch: an isotropic 512 mm cube in voxels, clipped to the median shape.
  D3 vox_per_mm{};
  for (int a = 0; a < 3; ++a) vox_per_mm[a] = 1.0 / current_spacing[a];
  const double mean = (((0.0 + vox_per_mm[0]) + vox_per_mm[1]) + vox_per_mm[2]) / 3.0;
  for (int a = 0; a < 3; ++a) vox_per_mm[a] = vox_per_mm[a] / mean;
  const double scale = 1.0 / std::min({vox_per_mm[0], vox_per_mm[1], vox_per_mm[2]}) * 512.0;
  I3 start{};
  for (int a = 0; a < 3; ++a) start[a] = std::min(rne(vox_per_mm[a] * scale), median[a]);

  Levels lv, trial_lv;
  pool_levels(current_spacing, start, kFeatureMapMinEdge, kMaxNumPool, lv);
  I3 divisor = lv.divisor();
  I3 shape = padded(start, divisor);
  double ref, here;
  if (ctx.residual) {
    ref = kFabiansRefVram * 15 / 8;
    here = estimate_vram(ctx, start, lv);  // quirk §8.6: un-padded patch
  } else {
    ref = static_cast<double>(kGenericRefVram * ctx.base_num_features) / static_cast<double>(kGenericBaseFeatures3D);
    here = estimate_vram(ctx, shape, lv);
  }
  while (here > ref) {
    // np.argsort(shape / median)[-1]: the largest ratio, the highest axis on ties.
    int axis = 0;
    for (int a = 1; a < 3; ++a)
      if (static_cast<double>(shape[a]) / static_cast<double>(median[a]) >=
          static_cast<double>(shape[axis]) / static_cast<double>(median[axis]))
        axis = a;
    I3 trial = shape;
    trial[axis] -= divisor[axis];
    pool_levels(current_spacing, trial, kFeatureMapMinEdge, kMaxNumPool, trial_lv);
    shape[axis] -= trial_lv.divisor()[axis];
    if (shape[axis] <= 0)
      throw InputError("", "", "planner: the patch size shrank to zero before the VRAM estimate fit");
    pool_levels(current_spacing, shape, kFeatureMapMinEdge, kMaxNumPool, lv);
    divisor = lv.divisor();
    shape = padded(shape, divisor);
    here = estimate_vram(ctx, shape, lv);
  }

  const int64_t uncapped = static_cast<int64_t>(std::floor(std::max(ref / here, 1.0) * kDefaultBatchSize3D));
  const int64_t cap_raw = rne(kBatchCoversMaxFractionOfDataset * static_cast<double>(dataset_voxels) /
                              static_cast<double>(prod3(shape)));
  const int64_t cap = std::max(cap_raw, kMinBatchSize);
  st.batch_size = std::max<int64_t>(1, std::min(uncapped, cap));
  // Python's min/max return the first of equal items: the numpy int64 cap survives only when it is strictly
  // smaller than the batch size and not replaced by the Python int 2.
  st.batch_size_is_np_int64 = cap_raw >= kMinBatchSize && cap_raw < uncapped;

  st.num_pool_per_axis = lv.npool;
  st.patch_size = shape;
  st.median_patient_size_in_voxels = median;
  st.current_spacing = current_spacing;
  st.original_spacing = original_spacing;
  st.do_dummy_2D_data_aug =
      static_cast<double>(std::max({shape[0], shape[1], shape[2]})) / static_cast<double>(shape[0]) >
      kAnisotropyThreshold;
  st.conv_kernel_sizes.assign(lv.convs.begin(), lv.convs.begin() + lv.count + 1);
  if (ctx.residual) {
    st.pool_op_kernel_sizes = {I3{1, 1, 1}};
    st.pool_op_kernel_sizes.insert(st.pool_op_kernel_sizes.end(), lv.pools.begin(), lv.pools.begin() + lv.count);
    const size_t levels = st.pool_op_kernel_sizes.size();
    st.num_blocks_encoder.assign(kFabiansBlocksEncoder.begin(), kFabiansBlocksEncoder.begin() + levels);
    st.num_blocks_decoder.assign(kFabiansBlocksDecoder.begin(), kFabiansBlocksDecoder.begin() + levels - 1);
  } else {
    st.pool_op_kernel_sizes.assign(lv.pools.begin(), lv.pools.begin() + lv.count);
  }
  return st;
}

void validate(const PlannerInput& in) {
  auto bad = [](const std::string& why) { throw InputError("", "", "planner: " + why); };
  if (in.spacings.empty()) bad("the fingerprint has no cases");
  if (in.spacings.size() != in.sizes.size()) bad("spacings and sizes differ in length");
  if (in.num_cases <= 0) bad("num_cases must be positive");
  if (in.modalities.empty()) bad("no modalities");
  if (in.num_classes < 0) bad("negative num_classes");
  for (size_t i = 0; i < in.spacings.size(); ++i)
    for (int a = 0; a < 3; ++a) {
      if (!(in.spacings[i][a] > 0.0) || !std::isfinite(in.spacings[i][a]))
        bad("case " + std::to_string(i) + " has a non-positive spacing");
      if (in.sizes[i][a] <= 0) bad("case " + std::to_string(i) + " has an empty cropped size");
    }
}

}  // namespace

// ---- names ------------------------------------------------------------------------------------------------------

PlannerKind planner_from_name(const std::string& name) {
  for (const auto& t : kPlanners)
    if (name == t.name) return t.kind;
  std::string valid;
  for (const auto& t : kPlanners) valid += std::string(valid.empty() ? "" : ", ") + t.name;
  throw UsageError("unknown planner '" + name + "'; valid planners: " + valid);
}

std::string planner_name(PlannerKind k) { return traits(k).name; }

const std::vector<PlannerKind>& all_planner_kinds() {
  static const std::vector<PlannerKind> kinds = {PlannerKind::v21, PlannerKind::bfnnUNet, PlannerKind::bfnnUNet_31,
                                                 PlannerKind::bfnnUNet_31_spRegnnU};
  return kinds;
}

// ---- building blocks -------------------------------------------------------------------------------------------

PoolConvProps get_pool_and_conv_props(const D3& spacing, const I3& patch, int64_t min_feature_map_size,
                                      int64_t max_numpool) {
  Levels lv;
  pool_levels(spacing, patch, min_feature_map_size, max_numpool, lv);
  PoolConvProps r;
  r.num_pool_per_axis = lv.npool;
  r.pool_op_kernel_sizes.assign(lv.pools.begin(), lv.pools.begin() + lv.count);
  r.conv_kernel_sizes.assign(lv.convs.begin(), lv.convs.begin() + lv.count + 1);
  r.must_be_divisible_by = lv.divisor();
  r.padded_patch = padded(patch, r.must_be_divisible_by);
  return r;
}

std::vector<int64_t> pad_shape(const std::vector<int64_t>& shape, const std::vector<int64_t>& divisible_by) {
  if (shape.size() != divisible_by.size()) throw InternalError("pad_shape: shape and divisors differ in length");
  std::vector<int64_t> out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) out[i] = pad_to_multiple(shape[i], divisible_by[i]);
  return out;
}

int64_t vram_generic_unet(const I3& patch, int64_t base_num_features, int64_t max_num_features,
                          int64_t num_modalities, int64_t num_classes, const std::vector<I3>& pool_op_kernel_sizes,
                          int64_t conv_per_stage) {
  return vram_generic_core(patch, base_num_features, max_num_features, num_modalities, num_classes,
                           pool_op_kernel_sizes.data(), static_cast<int>(pool_op_kernel_sizes.size()), conv_per_stage);
}

double vram_fabians_unet(const I3& patch, int64_t base_num_features, int64_t max_num_features,
                         int64_t num_modalities, int64_t num_classes, const std::vector<I3>& pool_op_kernel_sizes,
                         const std::vector<int64_t>& blocks_encoder, const std::vector<int64_t>& blocks_decoder,
                         int64_t feat_map_mul_on_downscale, int64_t batch_size) {
  if (pool_op_kernel_sizes.empty()) throw InternalError("vram_fabians_unet: no pooling levels");
  const size_t levels = pool_op_kernel_sizes.size() - 1;
  if (blocks_encoder.size() < levels + 1 || blocks_decoder.size() < levels || levels == 0)
    throw InternalError("vram_fabians_unet: too few blocks per stage");
  // nnU-Net indexes the decoder blocks from the end: use exactly the `levels` given.
  const std::vector<int64_t> dec(blocks_decoder.begin(), blocks_decoder.begin() + levels);
  return vram_fabians_core(patch, base_num_features, max_num_features, num_modalities, num_classes,
                           pool_op_kernel_sizes.data() + 1, static_cast<int>(levels), blocks_encoder.data(),
                           dec.data(), feat_map_mul_on_downscale, batch_size);
}

D3 target_spacing_v21(const std::vector<D3>& spacings, const std::vector<Shape3>& sizes) {
  D3 target{}, target_size{};
  for (int a = 0; a < 3; ++a) {
    std::vector<double> sp, sz;
    for (const auto& s : spacings) sp.push_back(s[a]);
    for (const auto& s : sizes) sz.push_back(static_cast<double>(s[a]));
    target[a] = np_percentile_f64(sp, 50.0);
    target_size[a] = np_percentile_f64(sz, 50.0);  // cropped voxel counts, not resampled ones (§8.21)
  }
  const int worst = argmax_first(target);
  double max_other_spacing = -std::numeric_limits<double>::infinity();
  double min_other_size = std::numeric_limits<double>::infinity();
  for (int a = 0; a < 3; ++a)
    if (a != worst) {
      max_other_spacing = std::max(max_other_spacing, target[a]);
      min_other_size = std::min(min_other_size, target_size[a]);
    }
  const bool aniso_spacing = target[worst] > kAnisotropyThreshold * max_other_spacing;
  const bool aniso_voxels = target_size[worst] * kAnisotropyThreshold < min_other_size;
  if (aniso_spacing && aniso_voxels) {
    std::vector<double> sp;
    for (const auto& s : spacings) sp.push_back(s[worst]);
    double t10 = np_percentile_f64(sp, 10.0);
    if (t10 < max_other_spacing) t10 = std::max(max_other_spacing, t10) + 1e-5;
    target[worst] = t10;
  }
  return target;
}

// ---- plan_experiment -------------------------------------------------------------------------------------------

Plan make_plan(PlannerKind kind, const PlannerInput& in) {
  validate(in);
  const PlannerTraits& t = traits(kind);
  Plan plan;
  plan.kind = kind;
  plan.data_identifier = t.data_identifier;
  plan.plans_file_name = t.plans_file_name;
  plan.preprocessor_name = t.preprocessor_name;
  plan.base_num_features = t.base_num_features;
  switch (kind) {
    case PlannerKind::v21:
      plan.order_seg = 1;
      plan.force_separate_z = std::nullopt;
      plan.order_z_data = plan.order_z_seg = 0;
      break;
    case PlannerKind::bfnnUNet:
      plan.order_seg = 1;
      plan.force_separate_z = false;
      plan.order_z_data = plan.order_z_seg = 0;
      break;
    case PlannerKind::bfnnUNet_31:
    case PlannerKind::bfnnUNet_31_spRegnnU:
      plan.order_seg = 3;
      plan.force_separate_z = false;
      plan.order_z_data = plan.order_z_seg = 99999;  // Preprocessor3DBetterResampling; never used
      plan.has_segmentation_export_params = true;
      break;
  }
  plan.order_data = 3;

  // §5.7 and §5.6 step 9
  for (const std::string& m : in.modalities) {
    if (m.find("CT") != std::string::npos) {
      plan.use_mask_for_norm.push_back(false);
    } else {
      const double median_reduction = np_median_f64(in.size_reductions);
      plan.use_mask_for_norm.push_back(median_reduction < 3.0 / 4.0);
    }
    plan.normalization_schemes.push_back(m == "CT" || m == "ct" ? "CT" : m == "noNorm" ? "noNorm" : "nonCT");
  }

  // §5.2
  D3 target{};
  switch (kind) {
    case PlannerKind::v21: target = target_spacing_v21(in.spacings, in.sizes); break;
    case PlannerKind::bfnnUNet:
    case PlannerKind::bfnnUNet_31: target = {1.5, 1.0, 1.0}; break;
    case PlannerKind::bfnnUNet_31_spRegnnU: target = {2.0, 0.68825001, 0.68825001}; break;  // literal, §8.26
  }
  plan.target_spacing = target;

  // §5.6 steps 2-4
  const int max_axis = argmax_first(target);
  plan.transpose_forward[0] = max_axis;
  for (int a = 0, k = 1; a < 3; ++a)
    if (a != max_axis) plan.transpose_forward[k++] = a;
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k)
      if (plan.transpose_forward[k] == i) plan.transpose_backward[i] = k;
  D3 median_shape{};
  for (int a = 0; a < 3; ++a) {
    std::vector<double> new_sizes;
    for (size_t i = 0; i < in.spacings.size(); ++i)
      new_sizes.push_back((in.spacings[i][a] / target[a]) * static_cast<double>(in.sizes[i][a]));
    median_shape[a] = np_median_f64(std::move(new_sizes));
  }
  plan.median_shape = median_shape;

  const StageContext ctx{in.num_cases, static_cast<int64_t>(in.modalities.size()), in.num_classes + 1,
                         t.base_num_features, t.residual};
  const D3 target_t = permute(target, plan.transpose_forward);
  const D3 median_t = permute(median_shape, plan.transpose_forward);

  // §5.6 steps 5-8
  const StagePlan fullres = stage_properties(ctx, target_t, target_t, median_t);
  int64_t arch_voxels = prod3(fullres.patch_size);
  std::vector<StagePlan> stages = {fullres};
  if (!(prod3(median_shape) / static_cast<double>(arch_voxels) < kPatientFractionAtStage0)) {
    D3 lowres_spacing = target;
    double num_voxels = prod3(median_shape);
    std::optional<StagePlan> lowres;
    int iterations = 0;
    while (num_voxels > static_cast<double>(4 * arch_voxels)) {
      if (++iterations > 1000000) throw InternalError("planner: the low-resolution stage search does not end");
      const double top = *std::max_element(lowres_spacing.begin(), lowres_spacing.end());
      bool coarser[3];
      bool any = false;
      for (int a = 0; a < 3; ++a) {
        coarser[a] = top / lowres_spacing[a] > 2;
        any = any || coarser[a];
      }
      for (int a = 0; a < 3; ++a)
        if (!any || coarser[a]) lowres_spacing[a] *= 1.01;
      D3 shrunk{};
      for (int a = 0; a < 3; ++a) shrunk[a] = target[a] / lowres_spacing[a] * median_shape[a];
      num_voxels = prod3(shrunk);
      lowres = stage_properties(ctx, permute(lowres_spacing, plan.transpose_forward), target_t, median_t);
      arch_voxels = prod3(lowres->patch_size);
    }
    if (!lowres)
      throw InputError("", "", "planner: median shape is exactly 4x the patch; nnU-Net v1 fails here (NameError)");
    if (2 * prod3(lowres->median_patient_size_in_voxels) < prod3(fullres.median_patient_size_in_voxels))
      stages.insert(stages.begin(), *lowres);
  }
  plan.stages = std::move(stages);
  return plan;
}

// ---- plans dict ------------------------------------------------------------------------------------------------

namespace {

py::Value int_list(const I3& v) { return py::list({py::Value(v[0]), py::Value(v[1]), py::Value(v[2])}); }

py::Value kernel_lists(const std::vector<I3>& kernels) {
  std::vector<py::Value> items;
  for (const auto& k : kernels) items.push_back(int_list(k));
  return py::list(std::move(items));
}

py::Value int_tuple(const std::vector<int64_t>& v) {
  std::vector<py::Value> items(v.begin(), v.end());
  return py::tuple(std::move(items));
}

py::Value stage_to_py(const StagePlan& st, bool residual) {
  std::vector<std::pair<py::Value, py::Value>> items = {
      {"batch_size", st.batch_size_is_np_int64 ? py::np_int64(st.batch_size) : py::Value(st.batch_size)},
      {"num_pool_per_axis", int_list(st.num_pool_per_axis)},
      {"patch_size", py::nd_i8({st.patch_size.begin(), st.patch_size.end()})},
      {"median_patient_size_in_voxels",
       py::nd_i8({st.median_patient_size_in_voxels.begin(), st.median_patient_size_in_voxels.end()})},
      {"current_spacing", py::nd_f8({st.current_spacing.begin(), st.current_spacing.end()})},
      {"original_spacing", py::nd_f8({st.original_spacing.begin(), st.original_spacing.end()})},
      {"do_dummy_2D_data_aug", py::np_bool(st.do_dummy_2D_data_aug)},
      {"pool_op_kernel_sizes", kernel_lists(st.pool_op_kernel_sizes)},
      {"conv_kernel_sizes", kernel_lists(st.conv_kernel_sizes)},
  };
  if (residual) {
    items.emplace_back("num_blocks_encoder", int_tuple(st.num_blocks_encoder));
    items.emplace_back("num_blocks_decoder", int_tuple(st.num_blocks_decoder));
  }
  return py::dict(std::move(items));
}

}  // namespace

py::Value plans_to_py(const Plan& plan, const PlannerInput& in, const PlansContext& ctx) {
  const bool residual = traits(plan.kind).residual;

  py::Value modalities;
  if (const py::Value* m = py::dict_get(ctx.dataset_properties, "modalities")) {
    modalities = *m;  // nnU-Net stores the same object
  } else {
    std::vector<std::pair<py::Value, py::Value>> items;
    for (size_t i = 0; i < in.modalities.size(); ++i) items.emplace_back(static_cast<int64_t>(i), in.modalities[i]);
    modalities = py::dict(std::move(items));
  }
  std::vector<std::pair<py::Value, py::Value>> schemes, use_mask;
  for (size_t i = 0; i < plan.normalization_schemes.size(); ++i)
    schemes.emplace_back(static_cast<int64_t>(i), plan.normalization_schemes[i]);
  for (size_t i = 0; i < plan.use_mask_for_norm.size(); ++i)
    use_mask.emplace_back(static_cast<int64_t>(i), py::Value(static_cast<bool>(plan.use_mask_for_norm[i])));

  std::vector<py::Value> npz_files(ctx.list_of_npz_files.begin(), ctx.list_of_npz_files.end());
  std::vector<py::Value> spacings, sizes, classes;
  for (const auto& s : ctx.original_spacings) spacings.push_back(py::nd_f8({s.begin(), s.end()}));
  for (const auto& s : ctx.original_sizes) sizes.push_back(py::tuple({py::Value(s[0]), py::Value(s[1]), py::Value(s[2])}));
  for (int64_t c : ctx.all_classes) classes.emplace_back(c);

  // transpose_forward = [np.argmax(...)] + [python ints]; transpose_backward = [np.int64] * 3 (§6.10)
  const py::Value transpose_forward = py::list({py::np_int64(plan.transpose_forward[0]),
                                                py::Value(plan.transpose_forward[1]),
                                                py::Value(plan.transpose_forward[2])});
  const py::Value transpose_backward =
      py::list({py::np_int64(plan.transpose_backward[0]), py::np_int64(plan.transpose_backward[1]),
                py::np_int64(plan.transpose_backward[2])});

  std::vector<std::pair<py::Value, py::Value>> stages;
  for (size_t i = 0; i < plan.stages.size(); ++i)
    stages.emplace_back(static_cast<int64_t>(i), stage_to_py(plan.stages[i], residual));

  std::vector<std::pair<py::Value, py::Value>> items = {
      {"num_stages", static_cast<int64_t>(plan.stages.size())},
      {"num_modalities", static_cast<int64_t>(in.modalities.size())},
      {"modalities", modalities},
      {"normalization_schemes", py::odict(std::move(schemes))},
      {"dataset_properties", ctx.dataset_properties},
      {"list_of_npz_files", py::list(std::move(npz_files))},
      {"original_spacings", py::list(std::move(spacings))},
      {"original_sizes", py::list(std::move(sizes))},
      {"preprocessed_data_folder", ctx.preprocessed_data_folder},
      {"num_classes", static_cast<int64_t>(ctx.all_classes.size())},
      {"all_classes", py::list(std::move(classes))},
      {"base_num_features", plan.base_num_features},
      {"use_mask_for_norm", py::odict(std::move(use_mask))},
      {"keep_only_largest_region", py::Value()},
      {"min_region_size_per_class", py::Value()},
      {"min_size_per_class", py::Value()},
      {"transpose_forward", transpose_forward},
      {"transpose_backward", transpose_backward},
      {"data_identifier", plan.data_identifier},
      {"plans_per_stage", py::dict(std::move(stages))},
      {"preprocessor_name", plan.preprocessor_name},
      {"conv_per_stage", kConvPerStage},
  };
  if (plan.has_segmentation_export_params)
    items.emplace_back("segmentation_export_params",
                       py::dict({{"force_separate_z", false}, {"interpolation_order", 1},
                                 {"interpolation_order_z", 999999}}));
  return py::dict(std::move(items));
}

}  // namespace amosprep
