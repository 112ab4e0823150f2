#pragma once
// nnU-Net v1 cropping to the non-zero region (`ImageCropper.crop` / `crop_to_nonzero`, spec:
// nnunet-v1-semantics.md §3 steps 2-8, vectors §9.10).
#include <array>
#include <cstdint>
#include <vector>

#include "amosprep/volume.hpp"

namespace amosprep {

/// What cropping produces for one case.
struct CropResult {
  std::vector<Array3<float>> data;  ///< every channel cropped to bbox
  /// The cropped seg with -1 where seg == 0 outside the hole-filled non-zero mask. Without an input seg (nnU-Net's
  /// test-case path), -1 outside the filled mask and 0 inside. Values < -1 are set to 0 (after `classes`).
  Array3<float> seg;
  std::array<std::array<int64_t, 2>, 3> bbox{};  ///< crop_bbox [[z0, z1], [y0, y1], [x0, x1]], half-open
  /// Sorted unique values of the cropped seg before the `< -1` reset (includes -1 when present). nnU-Net stores
  /// these as a float32 ndarray (for the no-seg path numpy would give int64 values; the values are the same).
  std::vector<float> classes;
  Shape3 size_after_cropping{0, 0, 0};
};

/// Non-zero mask = OR over channels of (x != 0), holes filled (background not 6-connected to the outside becomes
/// foreground, like scipy binary_fill_holes), bbox of that mask, crop of all channels and seg, -1 marking.
/// Throws InputError (case id and file left empty for the caller to fill in) when every voxel is zero, when the
/// channels differ in shape, or when the seg shape differs from the image shape.
CropResult crop_to_nonzero(const std::vector<Array3<float>>& channels, const Array3<float>* seg);

/// The same crop held in the on-disk types of CT and labels (int16 channels, int8 seg with the -1 marking): 3 instead
/// of 8 bytes per voxel, and no float32 copies. Values are exactly those of the float32 crop.
struct CompactCrop {
  std::vector<Array3<int16_t>> data;
  Array3<int8_t> seg;
  std::array<std::array<int64_t, 2>, 3> bbox{};
  std::vector<float> classes;
  Shape3 size_after_cropping{0, 0, 0};
};

/// crop_to_nonzero of int16 channels and a uint8 label map. Throws InputError like the float32 form, and when a
/// label exceeds 127 (the caller then uses the float32 form).
CompactCrop crop_to_nonzero(const std::vector<Array3<int16_t>>& channels, const Array3<uint8_t>& seg);

/// The same, cropping inside the buffers it is given (a uint8 label map held as int8: a negative value is a label
/// above 127 and throws InputError): the input's storage becomes the crop's, so no second copy of the case is
/// allocated. A box under half of the volume is copied out, so the crop never holds much more than it needs.
/// `scratch` holds the hole-filling state (one byte per cropped voxel); passing the same one to every call saves
/// fresh pages.
CompactCrop crop_to_nonzero(std::vector<Array3<int16_t>>&& channels, Array3<int8_t>&& seg,
                            std::vector<uint8_t>& scratch);

}  // namespace amosprep
