#pragma once
// NIfTI-1 reading and writing with nnU-Net's (SimpleITK) conventions: array (z, y, x) in the file's voxel order,
// spacing = ITK spacing (float32 pixdim widened) reversed, origin/direction as ITK reports them (LPS).
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "amosprep/volume.hpp"

namespace amosprep {

/// Reads a 3-D NIfTI (.nii / .nii.gz) as float32 voxels (z, y, x) plus geometry, exactly as SimpleITK's reader
/// followed by numpy `astype(np.float32)` gives them (spec §3 step 1, §8.30):
/// - geometry (size, spacing, origin, direction, qform/sform choice) comes from ITK's own header interpretation;
/// - scl_slope/scl_inter are applied when ITK applies them, with ITK's arithmetic (`float(double(float(raw)) *
///   slope + inter)` for integer files);
/// - pixel types: int8/uint8/int16/uint16/int32/uint32/int64/uint64/float32/float64.
/// A 4-D file whose extra dimensions are all 1 is read as 3-D. NaN voxels are returned as they are.
/// Voxel data of plain single-file NIfTI-1 is decoded by amos-prep itself (libdeflate); anything unusual goes
/// through ITK's full reader. Throws InputError(case_id, path, reason) when the file is missing, unreadable,
/// corrupt, truncated, not 3-D (e.g. 4-D with t > 1) or not scalar.
Image read_nifti(const std::string& path, const std::string& case_id = "");

/// The voxels in their on-disk type T (int16_t: CT, uint8_t: labels), without any float32 copy, when the file is a
/// plain single-file NIfTI-1 of exactly that type, native byte order and no scaling; std::nullopt otherwise (use
/// read_nifti). Converted to float32 the values equal read_nifti's; `geom` is filled either way. Same errors.
/// T = int8_t reads a uint8 file into signed storage (labels up to 127; a label above 127 comes out negative).
template <class T>
std::optional<Array3<T>> read_nifti_exact(const std::string& path, const std::string& case_id, Geometry& geom);

/// Same result as read_nifti, always through ITK's ImageFileReader (the reference path; slower).
Image read_nifti_with_itk(const std::string& path, const std::string& case_id = "");

/// On-disk voxel type for write_nifti.
enum class NiftiPixel { int16, uint8, uint16, int32, float32 };

/// Writes `voxels` (z, y, x) as a single-file NIfTI-1 with the ITK geometry of `geom` (itk_origin, itk_spacing,
/// itk_direction; geom.shape must equal voxels.shape). qform and sform (code 1, scanner) both encode the same
/// affine, scl_slope = 1, scl_inter = 0, units mm. gzip-compressed (libdeflate, `gzip_level`) when the path ends
/// in ".gz". Written atomically (temporary name in the same directory, then rename). Integer pixel types require
/// every value to be an integer in range (else InternalError). Throws IoError on write failure.
void write_nifti(const std::string& path, const Array3<float>& voxels, const Geometry& geom, NiftiPixel pixel,
                 int gzip_level = 1);
/// The same from voxels already in their on-disk type (int16 / uint8): no conversion, no float copy.
void write_nifti(const std::string& path, const Array3<int16_t>& voxels, const Geometry& geom, int gzip_level = 1);
void write_nifti(const std::string& path, const Array3<uint8_t>& voxels, const Geometry& geom, int gzip_level = 1);

/// Header fields needed by integrity checks, parsed from the 348-byte NIfTI-1 header.
struct NiftiHeaderInfo {
  int ndim = 0;                       ///< dim[0]
  std::array<int64_t, 7> dim{};       ///< dim[1..7]
  std::array<double, 8> pixdim{};     ///< pixdim[0..7] (float32 widened)
  int datatype = 0;                   ///< NIfTI datatype code (2 uint8, 4 int16, 16 float32, 512 uint16, ...)
  double scl_slope = 0, scl_inter = 0;  ///< raw header values (may be 0 or NaN)
  int qform_code = 0, sform_code = 0;
  bool qform_sform_disagree = false;  ///< both codes > 0 and their affines differ by more than 1e-3 (mm)
};

/// Parses the header of a .nii or .nii.gz file (either byte order). Throws InputError when the file is missing,
/// too short or not NIfTI-1.
NiftiHeaderInfo read_nifti_header(const std::string& path);

}  // namespace amosprep
