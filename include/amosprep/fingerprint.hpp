#pragma once
// Dataset fingerprint (nnU-Net's DatasetAnalyzer, spec §4) as mergeable per-case summaries.
// Each case contributes a CaseSummary; the merge runs in sorted case order, so the result does not depend on how
// cases were split across ranks.
#include <array>
#include <string>
#include <vector>

#include "amosprep/distributed.hpp"
#include "amosprep/np_reductions.hpp"
#include "amosprep/pyobj.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {

/// What one training case contributes to the fingerprint.
struct CaseSummary {
  std::string id;
  Shape3 original_size{0, 0, 0};             ///< raw (z, y, x) voxel counts
  std::array<double, 3> original_spacing{};  ///< (z, y, x)
  Shape3 size_after_cropping{0, 0, 0};
  /// Per modality: channel voxels where seg > 0, every 10th in C order (nnU-Net's foreground sample).
  std::vector<std::vector<float>> foreground_samples;
  /// Per modality: the statistics of that sample (nnU-Net's local_props), computed by the rank that cropped the
  /// case (summarize_intensities); empty when not computed, then merge_fingerprint computes them.
  std::vector<IntensityStats> local_stats;
};

/// Fills s.local_stats from s.foreground_samples.
void summarize_intensities(CaseSummary& s);

/// Serialisation of a summary for the exchange between ranks and the per-case cache (samples optional).
void write_summary(ByteWriter& w, const CaseSummary& s, bool with_samples);
CaseSummary read_summary(ByteReader& r);

/// nnU-Net's foreground sample of one channel: voxels with seg > 0 in C order, indices 0, 10, 20, ...
std::vector<float> foreground_sample(const Array3<float>& channel, const Array3<float>& seg);
/// The same for a compact crop (int16 channel, int8 seg).
std::vector<float> foreground_sample(const Array3<int16_t>& channel, const Array3<int8_t>& seg);

/// The merged dataset fingerprint (dataset_properties.pkl).
struct DatasetFingerprint {
  std::vector<std::string> case_ids;                 ///< sorted
  std::vector<Shape3> sizes;                         ///< all_sizes (after cropping)
  std::vector<std::array<double, 3>> spacings;       ///< all_spacings
  std::vector<double> size_reductions;               ///< prod(cropped) / prod(original), per case
  std::vector<int64_t> all_classes;                  ///< dataset.json label order, > 0
  std::vector<std::string> modalities;
  std::vector<IntensityStats> global_stats;          ///< per modality (CT datasets only; empty otherwise)
  std::vector<std::vector<IntensityStats>> local_stats;  ///< [modality][case]
};

/// Merges summaries (any order in; sorted by id inside). Intensity statistics are computed when a modality is
/// "CT"/"ct" (nnU-Net collects intensity properties if any modality contains "CT").
DatasetFingerprint merge_fingerprint(std::vector<CaseSummary> cases, const std::vector<int64_t>& all_classes,
                                     const std::vector<std::string>& modalities);

/// `intensityproperties` as nnU-Net pickles it: OrderedDict{mod: OrderedDict{local_props, median, ...}}.
py::Value intensity_properties_to_py(const DatasetFingerprint& fp);
/// `dataset_properties.pkl`: dict with all_sizes, all_spacings, all_classes, modalities, intensityproperties,
/// size_reductions.
py::Value dataset_properties_to_py(const DatasetFingerprint& fp);

}  // namespace amosprep
