#pragma once
// Deterministic AMOS22-layout phantom datasets for tests and benchmarks.
#include <cstdint>
#include <string>

namespace amosprep {

/// What synth_amos_dataset generates.
struct SynthOptions {
  std::string out_dir;      ///< created if missing; gets task1_dataset.json, imagesTr/, labelsTr/, imagesTs/
  int n_train = 4, n_test = 1;
  std::string size = "tiny";  ///< "tiny" (64-96 in-plane x 30-48 slices), "medium" (~256^2 x 60-90),
                              ///< "realistic" (512^2 x 100-150)
  uint64_t seed = 0;
};

/// Writes an AMOS22-layout phantom dataset: `task1_dataset.json` (AMOS's structure and 16 labels, cases in
/// sorted id order) and `amos_XXXX.nii.gz` images (int16 HU-like: air -1000, an elliptical soft-tissue body,
/// 15 ellipsoid organs with distinct HU, a spine, noise) with uint8 labels 0..15. Per case: in-plane spacing
/// 0.6-0.95 mm (sometimes sx != sy), slice spacing cycling through 5, 0.8, 2, 1.25, 3, 1.5, 2.5, 1 mm (so the
/// first case is anisotropic, > 3x), random axis flips (negative ITK direction; the second case always flips x
/// and z), every third case with zeros outside a circular field of view and in its first/last slices, some
/// organs missing in later cases. Same options -> byte-identical files (own splitmix64 RNG; per-slice streams,
/// so OpenMP thread count does not matter). Throws UsageError for bad options, IoError on write failure.
void synth_amos_dataset(const SynthOptions& opt);

}  // namespace amosprep
