#pragma once
// nnU-Net v1 3-D experiment planning: ExperimentPlanner3D_v21 and the three AMOS2022 residual bfnnUNet planners
// (target spacing, stages, patch size, pooling, VRAM models, batch size) and the plans dict they pickle.
// (spec: nnunet-v1-semantics.md §5, §8 items 5, 6, 15, 16, 21-26)
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "amosprep/pyobj.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

enum class PlannerKind { v21, bfnnUNet, bfnnUNet_31, bfnnUNet_31_spRegnnU };

/// "ExperimentPlanner3D_v21", "ExperimentPlanner3D_residual_v21_bfnnUNet", "..._bfnnUNet_31",
/// "..._bfnnUNet_31_spRegnnU"; throws UsageError listing the valid names.
PlannerKind planner_from_name(const std::string& name);
/// The nnU-Net class name of a planner (inverse of planner_from_name).
std::string planner_name(PlannerKind k);
/// All four planners, in the order of the enum.
const std::vector<PlannerKind>& all_planner_kinds();

/// The dataset fingerprint the planners read (§4).
struct PlannerInput {
  std::vector<std::array<double, 3>> spacings;  ///< original_spacing per case (z,y,x), sorted case order
  std::vector<Shape3> sizes;                    ///< size_after_cropping per case
  int64_t num_cases = 0;                        ///< number of cropped npz files (nnU-Net counts them, stale ones too)
  std::vector<std::string> modalities;          ///< {"CT"}
  int num_classes = 15;                         ///< len(all_classes); K = num_classes + 1
  std::vector<double> size_reductions;          ///< per case, for use_mask_for_norm of non-CT modalities
};

/// One entry of plans_per_stage.
struct StagePlan {
  int64_t batch_size = 0;
  /// True when nnU-Net's batch size ends up as the numpy int64 dataset cap (2 <= cap < uncapped batch size)
  /// instead of a Python int; only the pickled type differs.
  bool batch_size_is_np_int64 = false;
  std::array<int64_t, 3> num_pool_per_axis{}, patch_size{}, median_patient_size_in_voxels{};
  std::array<double, 3> current_spacing{}, original_spacing{};
  bool do_dummy_2D_data_aug = false;
  std::vector<std::array<int64_t, 3>> pool_op_kernel_sizes, conv_kernel_sizes;
  std::vector<int64_t> num_blocks_encoder, num_blocks_decoder;  ///< residual planners only (empty for v21)
};

/// What a planner decides: stages and every setting preprocessing needs.
struct Plan {
  PlannerKind kind = PlannerKind::v21;
  std::string data_identifier, plans_file_name, preprocessor_name;
  int64_t base_num_features = 0;
  std::array<int64_t, 3> transpose_forward{0, 1, 2}, transpose_backward{0, 1, 2};
  std::array<double, 3> target_spacing{};  ///< untransposed
  std::array<double, 3> median_shape{};    ///< untransposed median of the resampled case shapes (float, §5.6 step 4)
  std::vector<StagePlan> stages;           ///< stage 0 = 3d_lowres when there are two
  std::vector<std::string> normalization_schemes;
  std::vector<bool> use_mask_for_norm;
  // preprocessing behaviour implied by the planner (§5.1, §6.1, §6.7):
  int order_data = 3, order_seg = 1;
  std::optional<bool> force_separate_z;  ///< nullopt: decided per case (v21)
  int order_z_data = 0, order_z_seg = 0;
  bool has_segmentation_export_params = false;
};

/// Runs planner `kind` on a fingerprint (§5.6 steps 1-9). Throws InputError on an empty or invalid fingerprint.
Plan make_plan(PlannerKind kind, const PlannerInput& in);

/// Everything of the plans pickle that the planner itself does not know.
struct PlansContext {
  py::Value dataset_properties;                ///< the dataset_properties object (§4), embedded as-is
  std::vector<std::string> list_of_npz_files;  ///< sorted absolute paths of cropped npz (nnU-Net layout)
  std::string preprocessed_data_folder;        ///< absolute path of the preprocessed task dir
  std::vector<int64_t> all_classes;            ///< [1,10,11,...,15,2,...,9]
  std::vector<std::array<double, 3>> original_spacings;  ///< = all_spacings
  std::vector<Shape3> original_sizes;                     ///< = all_sizes
};

/// The plans dict with every key, in nnU-Net's order and Python types (§5.6 step 10, §6.10 'Exact Python types').
py::Value plans_to_py(const Plan& plan, const PlannerInput& in, const PlansContext& ctx);

// ---- building blocks, exposed for tests ------------------------------------------------------------------------

/// Result of nnU-Net's get_pool_and_conv_props (§5.3).
struct PoolConvProps {
  std::array<int64_t, 3> num_pool_per_axis{};
  std::vector<std::array<int64_t, 3>> pool_op_kernel_sizes;
  std::vector<std::array<int64_t, 3>> conv_kernel_sizes;  ///< one more than pools (bottleneck [3,3,3])
  std::array<int64_t, 3> padded_patch{};                  ///< patch padded up to multiples of must_be_divisible_by
  std::array<int64_t, 3> must_be_divisible_by{};          ///< 2**num_pool_per_axis
};
/// get_pool_and_conv_props(spacing, patch, min_feature_map_size=4, max_numpool=999).
PoolConvProps get_pool_and_conv_props(const std::array<double, 3>& spacing, const std::array<int64_t, 3>& patch,
                                      int64_t min_feature_map_size = 4, int64_t max_numpool = 999);
/// nnU-Net's pad_shape: each entry rounded up to a multiple of its divisor (any dimension).
std::vector<int64_t> pad_shape(const std::vector<int64_t>& shape, const std::vector<int64_t>& divisible_by);
/// Generic_UNet.compute_approx_vram_consumption without deep supervision (§5.4), int64.
int64_t vram_generic_unet(const std::array<int64_t, 3>& patch, int64_t base_num_features, int64_t max_num_features,
                          int64_t num_modalities, int64_t num_classes,
                          const std::vector<std::array<int64_t, 3>>& pool_op_kernel_sizes, int64_t conv_per_stage = 2);
/// FabiansUNet.compute_approx_vram_consumption (§5.5); pools include the leading [1,1,1].
double vram_fabians_unet(const std::array<int64_t, 3>& patch, int64_t base_num_features, int64_t max_num_features,
                         int64_t num_modalities, int64_t num_classes,
                         const std::vector<std::array<int64_t, 3>>& pool_op_kernel_sizes,
                         const std::vector<int64_t>& blocks_encoder, const std::vector<int64_t>& blocks_decoder,
                         int64_t feat_map_mul_on_downscale = 2, int64_t batch_size = 2);
/// ExperimentPlanner3D_v21.get_target_spacing (§5.2): median spacing plus the anisotropy rule.
std::array<double, 3> target_spacing_v21(const std::vector<std::array<double, 3>>& spacings,
                                         const std::vector<Shape3>& sizes);

}  // namespace amosprep
