// Benchmark of resample_patient on a synthetic AMOS-like CT (512x512x130, spacing 2.5 x 0.78 x 0.78 mm, 15 organ
// labels) resampled to (1.5, 1, 1) mm, in the configurations of the AMOS planners. Prints the median wall time
// and the median CPU time (all threads) of several runs.
//
// usage: bench_resample [runs=5] [threads=omp default] [nz=130] [ny=512] [nx=512]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "amosprep/resample.hpp"

using namespace amosprep;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

uint32_t mix(uint32_t h) {  // integer hash for deterministic texture
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}

// CT-like volume: air (-1000) outside an elliptic body, soft tissue with texture inside, 15 ellipsoidal organs
// with their own HU levels; optionally a zero-filled region outside a circular field of view (label -1), as a
// crop of a scan with zero padding gives.
void make_case(const Shape3& s, bool fov_zero, Array3<float>& ct, Array3<float>& seg) {
  ct = Array3<float>(s);
  seg = Array3<float>(s, 0.0f);
  const double cy = s[1] / 2.0, cx = s[2] / 2.0;
  struct Organ {
    double z, y, x, rz, ry, rx;
    int hu;
  };
  // AMOS-like sizes in voxels of 2.5 x 0.78 x 0.78 mm (radii): liver, stomach, spleen, kidneys, vessels running
  // through most slices, small glands.
  const double radii[15][3] = {{20, 60, 50},  {8, 22, 22},  {8, 22, 22},  {22, 14, 14}, {6, 18, 14},
                               {30, 110, 90}, {10, 40, 55}, {55, 14, 14}, {55, 16, 18}, {6, 30, 40},
                               {5, 10, 8},    {5, 10, 8},   {12, 40, 50}, {8, 30, 30},  {6, 20, 20}};
  std::vector<Organ> organs;
  for (int l = 1; l <= 15; ++l) {
    const uint32_t h = mix(static_cast<uint32_t>(l) * 2654435761U);
    organs.push_back({s[0] * (0.3 + 0.4 * ((h & 255) / 255.0)), cy + s[1] * 0.2 * (((h >> 8) & 255) / 127.5 - 1.0),
                      cx + s[2] * 0.25 * (((h >> 16) & 255) / 127.5 - 1.0), radii[l - 1][0] * s[0] / 130.0,
                      radii[l - 1][1] * s[1] / 512.0, radii[l - 1][2] * s[2] / 512.0, 20 + static_cast<int>(h % 60)});
  }
#pragma omp parallel for schedule(static)
  for (int64_t z = 0; z < s[0]; ++z)
    for (int64_t y = 0; y < s[1]; ++y)
      for (int64_t x = 0; x < s[2]; ++x) {
        const double dy = (y - cy) / (0.42 * s[1]), dx = (x - cx) / (0.47 * s[2]);
        const double fy = (y - cy) / (0.5 * s[1]), fx = (x - cx) / (0.5 * s[2]);
        const uint32_t h = mix(static_cast<uint32_t>((z * s[1] + y) * s[2] + x));
        float v, l = 0;
        if (fov_zero && fy * fy + fx * fx > 1.0) {
          v = 0;
          l = -1;
        } else if (dy * dy + dx * dx > 1.0) {
          v = -1000.0f + static_cast<float>(h % 21) - 10.0f;
        } else {
          v = static_cast<float>(-80 + static_cast<int>(h % 60) + ((y / 16 + x / 16 + z / 4) % 3) * 15);
          for (size_t o = 0; o < organs.size(); ++o) {
            const Organ& g = organs[o];
            const double a = (z - g.z) / g.rz, b = (y - g.y) / g.ry, c = (x - g.x) / g.rx;
            if (a * a + b * b + c * c <= 1.0) {
              l = static_cast<float>(o + 1);
              v = static_cast<float>(g.hu + static_cast<int>(h % 30));
            }
          }
        }
        ct(z, y, x) = v;
        seg(z, y, x) = l;
      }
}

struct Config {
  const char* name;
  std::optional<bool> force;
  int order_seg;
  bool fov_zero;
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 5;
  if (argc > 2) omp_set_num_threads(std::atoi(argv[2]));
  const Shape3 shape{argc > 3 ? std::atoll(argv[3]) : 130, argc > 4 ? std::atoll(argv[4]) : 512,
                     argc > 5 ? std::atoll(argv[5]) : 512};
  const std::array<double, 3> spacing{2.5, 0.78, 0.78}, target{1.5, 1.0, 1.0};
  const Shape3 ns = resampled_shape(spacing, target, shape);
  std::printf(
      "input %lldx%lldx%lld spacing (2.5, 0.78, 0.78) -> target (1.5, 1, 1) = %lldx%lldx%lld, %d threads, "
      "%d runs\n",
      (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)ns[0], (long long)ns[1],
      (long long)ns[2], omp_get_max_threads(), runs);
  const Config configs[] = {
      {"bfnnUNet_31 (3-D, data order 3, labels order 3)", false, 3, false},
      {"bfnnUNet_31 + zero FOV corners (label -1)", false, 3, true},
      {"bfnnUNet (3-D, data order 3, labels order 1)", false, 1, false},
      {"v21 (auto separate-z: in-plane order 3/1, nearest z)", std::nullopt, 1, false},
  };
  for (const Config& c : configs) {
    Array3<float> ct, seg;
    make_case(shape, c.fov_zero, ct, seg);
    ResampleSettings st;
    st.force_separate_z = c.force;
    st.order_seg = c.order_seg;
    const std::vector<Array3<float>> data{ct};
    const Array3<float> no_seg;
    std::vector<double> wall, cpu, wall_data;
    for (int r = 0; r < runs; ++r) {
      std::vector<Array3<float>> dout;  // fresh outputs every run, as for a new case
      Array3<float> sout;
      const double c0 = cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      resample_patient(data, seg, spacing, target, st, dout, sout);
      const auto t1 = std::chrono::steady_clock::now();
      const double c1 = cpu_seconds();
      wall.push_back(std::chrono::duration<double>(t1 - t0).count());
      cpu.push_back(c1 - c0);
      // data channel alone (same settings, empty seg)
      const auto t2 = std::chrono::steady_clock::now();
      resample_patient(data, no_seg, spacing, target, st, dout, sout);
      wall_data.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count());
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf("%-55s wall %.3f s (data only %.3f s), CPU %.3f s  [median of %d]\n", c.name, median(wall),
                median(wall_data), median(cpu), runs);
  }
  release_resample_buffers();
  return 0;
}
