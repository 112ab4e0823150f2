#pragma once
// nnU-Net v1 resample_patient, bit-exact to scipy 1.10.1 / skimage 0.19.3 / batchgenerators (spec §6.3-6.7, §7.5).
//
// Data: skimage.transform.resize(order, mode='edge', anti_aliasing=False) = scipy.ndimage.zoom(mode='nearest',
// grid_mode=True) + clip to the input range, computed as separable 1-D passes in double; voxels whose float32
// result is not certain from the separable value (error bound from a parallel |.| pass) are recomputed in scipy's
// tensor order. Labels: one-hot per label (batchgenerators resize_segmentation), each label only over its own
// bounding box (plus the cubic prefilter's decay margin), values within 1e-9 of 0.5 recomputed in tensor order.
// OpenMP inside; results do not depend on the thread count.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "amosprep/normalize.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

/// Interpolation orders of a preprocessor (nnU-Net's GenericPreprocessor defaults).
struct ResampleSettings {
  int order_data = 3;                     ///< data interpolation order (3)
  int order_seg = 1;                      ///< 1 = GenericPreprocessor, 3 = Preprocessor3DBetterResampling
  std::optional<bool> force_separate_z;   ///< nullopt = decide per case (v21); false for the residual planners
  int order_z_data = 0, order_z_seg = 0;  ///< along the low-res axis in the separate-z path (only 0 is supported)
};

/// nnU-Net's separate-z decision (§6.3): `separate` and the low-resolution axis (-1 when not separate).
struct SeparateZ {
  bool separate = false;
  int axis = -1;
};

/// get_do_separate_z / get_lowres_axis logic of resample_patient (threshold 3, strict `>`).
SeparateZ decide_separate_z(const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                            std::optional<bool> force_separate_z);

/// new_shape = RNE((spacing/target)*shape) per axis (§6.3).
Shape3 resampled_shape(const std::array<double, 3>& spacing, const std::array<double, 3>& target, const Shape3& shape);

/// nnU-Net resample_patient for C data channels and one seg channel (float32 in, float32 out). If no axis
/// changes, outputs are bit-copies. `seg` may be empty (shape 0,0,0): `seg_out` is then empty too. Every data
/// channel must have the same shape, and so must a non-empty seg. The outputs reuse the capacity of the arrays
/// passed in (keeping them from case to case avoids page faults). Throws UsageError for orders other than 0/1/3
/// and for order_z != 0 where the separate-z path would use it, InputError for empty or mismatching shapes.
void resample_patient(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                      const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                      const ResampleSettings& settings, std::vector<Array3<float>>& data_out, Array3<float>& seg_out);

/// resample_patient with outputs that keep repeated slices once: when the separate-z path runs along axis 0
/// (nearest along z), each output holds the in-plane resized slices and the z mapping instead of the full
/// volume (a 5 mm CT upsampled to 1.6 mm needs a third of the memory). Otherwise plane_of is the identity.
/// expand_slices() of the outputs equals what resample_patient returns.
void resample_patient_mapped(const std::vector<Array3<float>>& data, const Array3<float>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out);
/// The same from a CT in int16 and labels in int8 as cropped (values exact in float32, so the results equal
/// those of the float32 form), without float32 copies of the inputs.
void resample_patient_mapped(const std::vector<Array3<int16_t>>& data, const Array3<int8_t>& seg,
                             const std::array<double, 3>& spacing, const std::array<double, 3>& target,
                             const ResampleSettings& settings, std::vector<SliceMappedVolume>& data_out,
                             SliceMappedVolume& seg_out);
/// The segmentation of resample_patient_mapped from int8 labels, kept as int8 (every output value is an input
/// label, so it fits): a quarter of the float32 memory.
void resample_seg_mapped(const Array3<int8_t>& seg, const std::array<double, 3>& spacing,
                         const std::array<double, 3>& target, const ResampleSettings& settings, SliceMappedLabels& out);

/// Output planes of one channel, in order: planes [first, first + count), y * x float32 values each, valid only
/// during the call (the receiver may change them, e.g. normalise them in place).
struct PlaneStream {
  int64_t align = 1;  ///< every call but a channel's last covers a multiple of `align` planes (e.g. a chunk depth)
  std::function<void(int64_t first, int64_t count, float* planes)> take;
};
/// take(channel, first, count, planes), as PlaneStream::take for each image channel in turn.
using ChannelPlaneSink = std::function<void(size_t channel, int64_t first, int64_t count, float* planes)>;

/// The image channels of resample_patient, streamed: where the case is resampled by a 3-D zoom (no separate-z,
/// order > 0, the shape changes), each channel's output planes go to `take` as they are computed, `align` planes
/// at a time, so no channel is ever whole in memory; the planes are bit-identical to resample_patient's. Returns
/// false without calling `take` otherwise (the caller then resamples the whole volume). An exception thrown by
/// `take` ends the resampling and is rethrown.
/// `normalized` (one per channel): the receiver uses the planes only through this CT normalisation. The planes are
/// then bit-identical to resample_patient's after it (not before): scipy's exact evaluation is skipped where both
/// possible float32 roundings normalise to the same value.
bool resample_data_streamed(const std::vector<Array3<int16_t>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized = nullptr);
bool resample_data_streamed(const std::vector<Array3<float>>& data, const std::array<double, 3>& spacing,
                            const std::array<double, 3>& target, const ResampleSettings& settings, int64_t align,
                            const ChannelPlaneSink& take, const std::vector<CtNormalization>* normalized = nullptr);

/// skimage resize(order 0/1/3, mode='edge', anti_aliasing=False) of a 3-D volume incl. the clip to the input
/// range, cast to float32. All three axes are interpolated (also ones whose size does not change).
void resize_data(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out);

/// batchgenerators resize_segmentation (order 0/1/3): one-hot per label present, `>= 0.5`, larger label wins,
/// 0 where no label reaches 0.5.
void resize_segmentation(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out);

/// The same two operations applied to every slice along axis 0 independently, as 2-D images (the in-plane
/// step of the separate-z path: per-slice clip, per-slice labels). out_shape[0] must equal in.shape[0].
void resize_data_slices(const Array3<float>& in, const Shape3& out_shape, int order, Array3<float>& out);
void resize_segmentation_slices(const Array3<float>& seg, const Shape3& out_shape, int order, Array3<float>& out);

/// Frees the calling thread's resampling buffers, kept for reuse between calls (about 8 bytes per padded input
/// voxel for order 3, i.e. ~300 MB for a 512x512x130 CT).
void release_resample_buffers();

namespace resample_detail {
/// For tests: skimage resize (incl. the clip to the input range) of the last `ndim` axes of a float64 array, in
/// double (leading axes must keep their size). `exact` evaluates every voxel in scipy's tensor order (slow);
/// otherwise the separable values are returned.
Array3<double> resize_f64(const Array3<double>& in, const Shape3& out_shape, int order, int ndim, bool exact);
/// Work (in voxels) per extra OpenMP thread; smaller jobs use fewer threads (default 2^19). Tests lower it to
/// run small inputs on several threads. Not thread-safe: set it before resampling starts.
void set_parallel_grain(int64_t voxels);
int64_t parallel_grain();
/// Label 0 after a single negative label is skipped where the labels' values summing to 1 decide it (default on).
/// Tests switch it off to compare with the full evaluation. Not thread-safe, like set_parallel_grain.
void set_background_shortcut(bool on);
bool background_shortcut();
/// How many label-0 passes the shortcut skipped entirely (process-wide count).
void count_background_skipped();
int64_t background_passes_skipped();
/// scipy.ndimage.spline_filter1d(line, order=3, mode='nearest') on an unpadded line.
std::vector<double> spline_filter_line(std::vector<double> line);
}  // namespace resample_detail

}  // namespace amosprep
