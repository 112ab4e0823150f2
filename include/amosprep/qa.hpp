#pragma once
// QA pictures of an nnU-Net v1 preprocessed task folder: label overlays on three orthogonal mid-slices, before
// (raw NIfTI) and after preprocessing (stage npz), plus an index.html with key numbers per case.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "amosprep/png_writer.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

/// The fixed label palette, indexed by label value 0..15 (AMOS ids). Entry 0 (background) is never drawn.
extern const std::array<std::array<uint8_t, 3>, 16> kQaLabelPalette;
/// Opacity of a label colour over the grey image.
inline constexpr double kQaLabelAlpha = 0.45;

/// The three orthogonal mid-slices of a (z, y, x) volume, shown in voxel order (no reorientation):
/// axial = slice z = nz/2 (rows y, columns x); coronal = y = ny/2 (rows z, highest z on top, columns x);
/// sagittal = x = nx/2 (rows z, highest z on top, columns y).
enum class SliceView { axial, coronal, sagittal };
const char* slice_view_name(SliceView v);

/// Picture size {height, width} of a mid-slice with physical aspect: rows and columns are first scaled to the
/// finer of the two spacings (rows*sr/p, cols*sc/p with p = min(sr, sc)); then the picture is magnified by the
/// integer floor(256 / longer side) when that side is below 256 pixels, or shrunk to 1024 when above 1024.
/// Sizes are rounded half to even and at least 1.
std::array<int, 2> qa_picture_size(const Shape3& shape, const std::array<double, 3>& spacing, SliceView view);

/// Grey window {lo, hi}: the 0.5 and 99.5 percentiles (nearest rank) of at most ~1M voxels sampled with a fixed
/// stride; NaN voxels are ignored; hi > lo is guaranteed (hi = lo + 1 for constant data).
std::array<float, 2> qa_window(const float* voxels, size_t n);

/// Renders one mid-slice: grey = clamp((v - lo) / (hi - lo)) * 255 rounded half to even; where `labels` (same
/// shape; may be null) holds an integer 1..15, the palette colour is alpha-blended over it (kQaLabelAlpha).
/// Label values 0, -1 and anything else are left grey. Nearest-neighbour sampling to qa_picture_size.
RgbImage render_slice_overlay(const float* image, const float* labels, const Shape3& shape,
                              const std::array<double, 3>& spacing, SliceView view, std::array<float, 2> window);

/// Writes QA pictures for every case of every `<data_identifier>_stage<k>/` folder in `task_dir` (an nnU-Net v1
/// preprocessed task folder: `<case>.npz` with member `data` (C+1, z, y, x), the last channel the seg) into
/// `out_dir`:
///   `<stage folder>/<case>_{axial,coronal,sagittal}.png`   after preprocessing (channel 0 + seg), spacing from
///        the JSON mirror `task_dir/amos-prep/json/<stage folder>_<case>.json` key `spacing_after_resampling`
///        (1 mm isotropic and a note when the mirror is missing);
///   `raw/<case>_{axial,coronal,sagittal}.png`              before preprocessing (first image of the case and
///        its label NIfTI), only when `raw_base` is not empty. Each file is the mirror's `list_of_data_files[0]` /
///        `seg_file` when that exists; otherwise the same file name is looked for under `raw_base` (an
///        nnUNet_raw_data_base or a raw task folder): `nnUNet_raw_data/<listed task>/<listed sub folder>/`,
///        `<listed sub folder>/`, then `nnUNet_raw_data/<basename of task_dir>/` and `raw_base/` with
///        imagesTr|imagesTs (labelsTr for labels). Without a mirror the names are `<case>_0000.nii.gz` and
///        `<case>.nii.gz`;
///   `index.html` listing every case with its pictures, shapes, spacings and the labels present.
/// A raw image that cannot be found or read is reported in index.html and on stderr; the run goes on.
/// Throws InputError when `task_dir` has no stage folder, IoError when an npz cannot be read or a file written.
void run_qa(const std::string& task_dir, const std::string& out_dir, const std::string& raw_base);

}  // namespace amosprep
