#include "amosprep/synth.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "amosprep/error.hpp"
#include "amosprep/fsutil.hpp"
#include "amosprep/nifti_io.hpp"
#include "amosprep/pyjson.hpp"
#include "amosprep/volume.hpp"

namespace amosprep {
namespace {

/// splitmix64: tiny, fast, and fully specified, so phantoms are identical on every platform.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  ///< [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int64_t integer(int64_t lo, int64_t hi) {  ///< [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
};

uint64_t substream(uint64_t seed, uint64_t index) {
  SplitMix64 m{seed ^ (index * 0xD1B54A32D192ED03ull + 0x2545F4914F6CDD1Dull)};
  m.next();
  return m.next();
}

struct Organ {
  int label;
  std::array<double, 3> center;  ///< normalised (u, v, w) in [-1, 1]: x, y, z
  std::array<double, 3> radius;  ///< normalised semi-axes
  double hu;
};

// AMOS's 15 organs as ellipsoids, painted in this order (large first, small last).
const Organ kOrganTemplate[15] = {
    {6, {-0.35, -0.05, 0.35}, {0.33, 0.33, 0.35}, 62},   // liver
    {1, {0.45, 0.20, 0.30}, {0.14, 0.15, 0.25}, 48},     // spleen
    {7, {0.25, -0.22, 0.35}, {0.18, 0.14, 0.20}, 25},    // stomach
    {2, {-0.35, 0.28, 0.00}, {0.10, 0.12, 0.20}, 155},   // right kidney
    {3, {0.35, 0.28, 0.00}, {0.10, 0.12, 0.20}, 168},    // left kidney
    {13, {-0.10, -0.05, -0.05}, {0.10, 0.07, 0.10}, 40}, // duodenum
    {10, {0.05, 0.10, 0.05}, {0.20, 0.06, 0.08}, 85},    // pancreas
    {4, {-0.25, -0.18, 0.10}, {0.07, 0.07, 0.10}, 12},   // gall bladder
    {14, {0.00, -0.10, -0.72}, {0.15, 0.12, 0.15}, 8},   // bladder
    {15, {0.00, 0.12, -0.88}, {0.07, 0.06, 0.08}, 55},   // prostate/uterus
    {8, {0.08, 0.32, 0.00}, {0.05, 0.05, 0.95}, 210},    // aorta
    {9, {-0.10, 0.30, 0.00}, {0.05, 0.06, 0.90}, 135},   // postcava
    {5, {0.05, 0.30, 0.78}, {0.04, 0.04, 0.25}, 35},     // esophagus
    {11, {-0.25, 0.28, 0.30}, {0.04, 0.04, 0.06}, 22},   // right adrenal gland
    {12, {0.25, 0.28, 0.30}, {0.04, 0.04, 0.06}, 28},    // left adrenal gland
};

const char* const kLabelNames[16] = {"background", "spleen", "right kidney", "left kidney", "gall bladder",
                                     "esophagus", "liver", "stomach", "arota", "postcava", "pancreas",
                                     "right adrenal gland", "left adrenal gland", "duodenum", "bladder",
                                     "prostate/uterus"};

const double kSliceSpacings[8] = {5.0, 0.8, 2.0, 1.25, 3.0, 1.5, 2.5, 1.0};

struct CaseParams {
  std::string id;
  bool train = true;
  int index = 0;  // position in generation order
  int64_t nx = 0, ny = 0, nz = 0;
  double sx = 1, sy = 1, sz = 1;
  std::array<int, 3> sign{1, 1, 1};
  std::array<double, 3> origin{0, 0, 0};
  bool zero_fov = false;
  uint64_t seed = 0;
  std::vector<Organ> organs;
};

double as_float32(double v) { return static_cast<double>(static_cast<float>(v)); }

CaseParams draw_case(const SynthOptions& opt, int index, const std::string& id, bool train) {
  CaseParams c;
  c.id = id;
  c.train = train;
  c.index = index;
  c.seed = substream(opt.seed, 1000 + static_cast<uint64_t>(index));
  SplitMix64 rng{c.seed};
  if (opt.size == "tiny") {
    c.nx = rng.integer(64, 96);
    c.ny = (index % 4 == 2) ? rng.integer(64, 96) : c.nx;
    c.nz = rng.integer(30, 48);
  } else if (opt.size == "medium") {
    c.nx = rng.integer(240, 272);
    c.ny = (index % 4 == 2) ? rng.integer(224, 272) : c.nx;
    c.nz = rng.integer(60, 90);
  } else {
    c.nx = 512;
    c.ny = 512;
    c.nz = rng.integer(100, 150);
  }
  c.sx = as_float32(rng.uniform(0.6, 0.95));
  c.sy = (index % 4 == 3) ? as_float32(rng.uniform(0.6, 0.95)) : c.sx;
  c.sz = kSliceSpacings[index % 8];
  for (int a = 0; a < 3; ++a) c.sign[a] = (rng.next() & 1) ? -1 : 1;
  if (index == 1) {
    c.sign[0] = -1;
    c.sign[2] = -1;
  }
  const double n[3] = {static_cast<double>(c.nx), static_cast<double>(c.ny), static_cast<double>(c.nz)};
  const double s[3] = {c.sx, c.sy, c.sz};
  for (int a = 0; a < 3; ++a)
    c.origin[a] = as_float32(-c.sign[a] * (n[a] - 1) / 2 * s[a] + rng.uniform(-20.0, 20.0));
  c.zero_fov = index % 3 == 2;
  for (const Organ& t : kOrganTemplate) {
    Organ o = t;
    for (int a = 0; a < 3; ++a) {
      o.center[a] += rng.uniform(-0.04, 0.04);
      o.radius[a] *= rng.uniform(0.85, 1.15);
    }
    o.hu += static_cast<double>(rng.integer(-5, 5));
    const bool omit = index >= 2 && o.label != 6 && rng.uniform() < 0.12;
    if (!omit) c.organs.push_back(o);
  }
  return c;
}

/// Index-space position of normalised coordinate `u` on an axis of `n` voxels (inverse of (2i+1)/n - 1).
double to_index(double u, int64_t n) { return (u + 1.0) * static_cast<double>(n) / 2.0 - 0.5; }
double to_norm(int64_t i, int64_t n) { return (2.0 * static_cast<double>(i) + 1.0) / static_cast<double>(n) - 1.0; }

bool in_body(double u, double v, double w) {
  const double f = 1.0 - 0.08 * w * w;
  const double a = 0.85 * f, b = 0.65 * f;
  return (u / a) * (u / a) + (v / b) * (v / b) <= 1.0;
}

bool outside_fov(const CaseParams& c, int64_t z, double u, double v) {
  if (!c.zero_fov) return false;
  return z < 2 || z >= c.nz - 2 || u * u + v * v > 0.97 * 0.97;
}

Array3<uint8_t> paint_labels(const CaseParams& c) {
  Array3<uint8_t> lab(Shape3{c.nz, c.ny, c.nx}, 0);
  const int64_t n[3] = {c.nx, c.ny, c.nz};
  for (const Organ& o : c.organs) {
    double ci[3], ri[3];
    int64_t lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      ci[a] = to_index(o.center[a], n[a]);
      ri[a] = std::max(1.0, o.radius[a] * static_cast<double>(n[a]) / 2.0);
      lo[a] = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(ci[a] - ri[a])));
      hi[a] = std::min<int64_t>(n[a] - 1, static_cast<int64_t>(std::floor(ci[a] + ri[a])));
    }
    for (int64_t z = lo[2]; z <= hi[2]; ++z) {
      const double dz = (static_cast<double>(z) - ci[2]) / ri[2];
      const double w = to_norm(z, c.nz);
      for (int64_t y = lo[1]; y <= hi[1]; ++y) {
        const double dy = (static_cast<double>(y) - ci[1]) / ri[1];
        const double v = to_norm(y, c.ny);
        for (int64_t x = lo[0]; x <= hi[0]; ++x) {
          const double dx = (static_cast<double>(x) - ci[0]) / ri[0];
          const double u = to_norm(x, c.nx);
          if (dx * dx + dy * dy + dz * dz <= 1.0 && in_body(u, v, w) && !outside_fov(c, z, u, v))
            lab(z, y, x) = static_cast<uint8_t>(o.label);
        }
      }
    }
  }
  return lab;
}

Array3<int16_t> paint_image(const CaseParams& c, const Array3<uint8_t>& lab) {
  Array3<int16_t> img(Shape3{c.nz, c.ny, c.nx});
  std::array<double, 16> organ_hu{};
  for (const Organ& o : c.organs) organ_hu[static_cast<size_t>(o.label)] = o.hu;
#pragma omp parallel for schedule(static)
  for (int64_t z = 0; z < c.nz; ++z) {
    SplitMix64 noise{substream(c.seed, static_cast<uint64_t>(z))};
    const double w = to_norm(z, c.nz);
    for (int64_t y = 0; y < c.ny; ++y) {
      const double v = to_norm(y, c.ny);
      for (int64_t x = 0; x < c.nx; ++x) {
        const double u = to_norm(x, c.nx);
        const uint64_t r = noise.next();  // one draw per voxel, used or not, keeps streams aligned
        if (outside_fov(c, z, u, v)) {
          img(z, y, x) = 0;
          continue;
        }
        double hu = -1000.0;
        if (in_body(u, v, w)) {
          hu = in_body(u / 0.92, v / 0.9, w) ? 40.0 : -100.0;  // soft tissue inside a fat layer
          const double du = u / 0.09, dv = (v - 0.5) / 0.09;     // spine: cortical ring, marrow inside
          const double d2 = du * du + dv * dv;
          if (d2 <= 1.0) hu = d2 > 0.55 ? 900.0 : 250.0;
        }
        const uint8_t l = lab(z, y, x);
        if (l > 0) hu = organ_hu[l];
        // Approximately normal noise (sum of four 16-bit uniforms), sd about 12 HU.
        const double s4 = static_cast<double>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
        hu += (s4 / 65535.0 - 2.0) * 20.0;
        img(z, y, x) = static_cast<int16_t>(std::clamp(std::nearbyint(hu), -1024.0, 3071.0));
      }
    }
  }
  return img;
}

Geometry geometry_of(const CaseParams& c) {
  Geometry g;
  g.shape = {c.nz, c.ny, c.nx};
  g.itk_spacing = {c.sx, c.sy, c.sz};
  g.spacing = {c.sz, c.sy, c.sx};
  g.itk_origin = c.origin;
  g.itk_direction = {static_cast<double>(c.sign[0]), 0, 0, 0, static_cast<double>(c.sign[1]), 0,
                     0, 0, static_cast<double>(c.sign[2])};
  return g;
}

}  // namespace

void synth_amos_dataset(const SynthOptions& opt) {
  if (opt.out_dir.empty()) throw UsageError("synth: no output directory given");
  if (opt.size != "tiny" && opt.size != "medium" && opt.size != "realistic")
    throw UsageError("synth: size must be tiny, medium or realistic, got \"" + opt.size + "\"");
  if (opt.n_train < 0 || opt.n_test < 0 || opt.n_train + opt.n_test > 600)
    throw UsageError("synth: need 0 <= n_train, n_test and n_train + n_test <= 600");

  // Distinct AMOS-like ids in 1..600, drawn from the seed; training first, then test.
  SplitMix64 ids_rng{substream(opt.seed, 0)};
  std::set<int64_t> used;
  std::vector<CaseParams> cases;
  for (int i = 0; i < opt.n_train + opt.n_test; ++i) {
    int64_t num;
    do num = ids_rng.integer(1, 600);
    while (!used.insert(num).second);
    char id[16];
    std::snprintf(id, sizeof id, "amos_%04lld", static_cast<long long>(num));
    cases.push_back(draw_case(opt, i, id, i < opt.n_train));
  }

  const std::string dir = opt.out_dir;
  make_dirs(dir + "/imagesTr");
  make_dirs(dir + "/labelsTr");
  make_dirs(dir + "/imagesTs");
  std::vector<std::string> train_ids, test_ids;
  for (const CaseParams& c : cases) {
    const Geometry g = geometry_of(c);
    const Array3<uint8_t> lab = paint_labels(c);
    write_nifti(dir + (c.train ? "/imagesTr/" : "/imagesTs/") + c.id + ".nii.gz", paint_image(c, lab), g);
    if (c.train) {
      write_nifti(dir + "/labelsTr/" + c.id + ".nii.gz", lab, g);
      train_ids.push_back(c.id);
    } else {
      test_ids.push_back(c.id);
    }
  }
  std::sort(train_ids.begin(), train_ids.end());
  std::sort(test_ids.begin(), test_ids.end());

  nlohmann::ordered_json j;
  j["name"] = "AMOS";
  j["description"] =
      "MICCAI2022 Multi-Modality Abdominal Multi-Organ Segmentation Task 1 (SYNTHETIC PHANTOM generated by "
      "amos-prep synth, size " + opt.size + ", seed " + std::to_string(opt.seed) + ")";
  j["tensorImageSize"] = "3D";
  j["reference"] = "SRIBD, CUHK-SZ";
  j["licence"] = "CC-BY-SA 4.0";
  j["release"] = "1.0 01/05/2022";
  j["modality"] = nlohmann::ordered_json::object({{"0", "CT"}});
  nlohmann::ordered_json labels = nlohmann::ordered_json::object();
  for (int l = 0; l < 16; ++l) labels[std::to_string(l)] = kLabelNames[l];
  j["labels"] = labels;
  j["numTraining"] = static_cast<int64_t>(train_ids.size());
  j["numValidation"] = 0;
  j["numTest"] = static_cast<int64_t>(test_ids.size());
  nlohmann::ordered_json tr = nlohmann::ordered_json::array();
  for (const std::string& id : train_ids)
    tr.push_back(nlohmann::ordered_json::object(
        {{"image", "./imagesTr/" + id + ".nii.gz"}, {"label", "./labelsTr/" + id + ".nii.gz"}}));
  j["training"] = tr;
  j["validation"] = nlohmann::ordered_json::array();
  nlohmann::ordered_json ts = nlohmann::ordered_json::array();
  for (const std::string& id : test_ids) ts.push_back("./imagesTs/" + id + ".nii.gz");
  j["test"] = ts;
  write_file_atomic(dir + "/task1_dataset.json", python_json_dumps(j, 4, false));
}

}  // namespace amosprep
