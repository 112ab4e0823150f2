// numpy-exact float32 reductions and percentiles (spec §7.2, §7.3, §9.3).
// Golden values: tests/python/gen_np_reductions_vectors.py, run once with Debian numpy 1.24.2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "amosprep/fingerprint.hpp"
#include "amosprep/np_reductions.hpp"

using namespace amosprep;

namespace {

uint32_t mix(uint32_t i, uint32_t seed) {
  uint32_t h = i * 2654435761u + seed * 97531u + 12345u;
  h ^= h >> 13;
  h *= 1274126177u;
  h ^= h >> 16;
  return h;
}

// Same formula as vector_f32 in gen_np_reductions_vectors.py.
std::vector<float> test_vector_f32(int kind, int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = mix(static_cast<uint32_t>(i), seed);
    if (kind == 0)
      v[i] = static_cast<float>(static_cast<int64_t>(h % 4096) - 1024);
    else if (kind == 1)
      v[i] = static_cast<float>(static_cast<int64_t>(h % 200001) - 100000) * static_cast<float>(0.0371);
    else
      v[i] = static_cast<float>(static_cast<int64_t>(h % 20001) - 10000) *
             static_cast<float>(1.0 / (1 + (h >> 24) % 17));
  }
  return v;
}

std::vector<double> test_vector_f64(int64_t n, uint32_t seed) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<double>(static_cast<int64_t>(mix(static_cast<uint32_t>(i), seed) % 100001) - 50000) / 1024.0 +
           0.1 * static_cast<double>(i % 3);
  return v;
}

uint32_t bits(float x) { uint32_t b; std::memcpy(&b, &x, 4); return b; }
uint64_t bits(double x) { uint64_t b; std::memcpy(&b, &x, 8); return b; }

#define EXPECT_SAME_F32(a, b) EXPECT_EQ(bits(static_cast<float>(a)), bits(static_cast<float>(b))) << (a) << " vs " << (b)
#define EXPECT_SAME_F64(a, b) EXPECT_EQ(bits(static_cast<double>(a)), bits(static_cast<double>(b))) << (a) << " vs " << (b)

struct F32Case {
  int64_t n;
  int kind;
  uint32_t seed;
  float sum, mean, sd, median, mn, mx;
  double p00_5, p10, p50, p99_5;
};

// numpy 1.24.2: add.reduce, mean, std, median, min, max (float32) and percentile 0.5/10/50/99.5 (float64).
const F32Case kF32Cases[] = {
    {1, 0, 0, 0x1.c280000000000p+9f, 0x1.c280000000000p+9f, 0x0.0p+0f, 0x1.c280000000000p+9f, 0x1.c280000000000p+9f, 0x1.c280000000000p+9f, 0x1.c280000000000p+9, 0x1.c280000000000p+9, 0x1.c280000000000p+9, 0x1.c280000000000p+9},
    {2, 1, 1, -0x1.2914080000000p+10f, -0x1.2914080000000p+9f, 0x1.e69a840000000p+9f, -0x1.2914080000000p+9f, -0x1.87d7460000000p+10f, 0x1.7b0cfa0000000p+8f, -0x1.85686bbd70a3dp+10, -0x1.572e38ccccccdp+10, -0x1.2914070000000p+9, 0x1.715190f5c28f6p+8},
    {3, 2, 2, 0x1.66bfcc0000000p+10f, 0x1.de55100000000p+8f, 0x1.c4e47e0000000p+8f, 0x1.c6db700000000p+8f, -0x1.00f0f20000000p+6f, 0x1.0518000000000p+10f, -0x1.d85ae07ae147bp+5, 0x1.3caa626666668p+5, 0x1.c6db700000000p+8, 0x1.039eb56666666p+10},
    {5, 0, 3, 0x1.2e70000000000p+12f, 0x1.e3e6660000000p+9f, 0x1.7144de0000000p+10f, 0x1.d800000000000p+9f, -0x1.8700000000000p+9f, 0x1.7dc0000000000p+11f, -0x1.8430a3d70a3d7p+9, -0x1.4eccccccccccdp+9, 0x1.d800000000000p+9, 0x1.7b6cccccccccdp+11},
    {7, 1, 4, -0x1.4dd6f60000000p+12f, -0x1.7d87f40000000p+9f, 0x1.f334820000000p+10f, -0x1.780bac0000000p+9f, -0x1.7a60d40000000p+11f, 0x1.86d8060000000p+11f, -0x1.7a1d3a9eb851fp+11, -0x1.7518d86666666p+11, -0x1.780bac0000000p+9, 0x1.7c70faccccccbp+11},
    {8, 2, 5, -0x1.d29e540000000p+9f, -0x1.d29e540000000p+6f, 0x1.26da4a0000000p+10f, 0x1.c9a5a60000000p+5f, -0x1.46b5560000000p+11f, 0x1.bd20000000000p+10f, -0x1.3f097a5eb851fp+11, -0x1.5a905bcccccccp+10, 0x1.c9a5a60000000p+5, 0x1.b337d711eb851p+10},
    {9, 0, 6, 0x1.1050000000000p+13f, 0x1.e41c720000000p+9f, 0x1.1be8220000000p+10f, 0x1.af00000000000p+9f, -0x1.f100000000000p+9f, 0x1.4ac0000000000p+11f, -0x1.ddd1eb851eb85p+9, -0x1.c599999999998p+7, 0x1.af00000000000p+9, 0x1.48ce147ae147bp+11},
    {15, 1, 7, 0x1.7234fc0000000p+12f, 0x1.8ae32e0000000p+8f, 0x1.ebe6520000000p+10f, 0x1.0262080000000p+9f, -0x1.c5e4020000000p+11f, 0x1.89ff520000000p+11f, -0x1.bb6c51b851eb8p+11, -0x1.027e493333333p+11, 0x1.0262080000000p+9, 0x1.884a5c0a3d70ap+11},
    {16, 2, 8, -0x1.5e8a680000000p+12f, -0x1.5e8a680000000p+8f, 0x1.8ba9dc0000000p+10f, -0x1.7f7df80000000p+5f, -0x1.2e00000000000p+12f, 0x1.b9ccce0000000p+10f, -0x1.24f4000000000p+12, -0x1.0800000000000p+11, -0x1.7f7df90000000p+5, 0x1.b37971ccccccep+10},
    {17, 0, 9, 0x1.54a8000000000p+13f, 0x1.409e1e0000000p+9f, 0x1.3f65000000000p+10f, 0x1.0500000000000p+9f, -0x1.e000000000000p+9f, 0x1.2a60000000000p+11f, -0x1.dcd70a3d70a3dp+9, -0x1.9b1999999999ap+9, 0x1.0500000000000p+9, 0x1.2a15c28f5c28fp+11},
    {31, 1, 10, -0x1.dc6b700000000p+11f, -0x1.ebc9be0000000p+6f, 0x1.06fc2e0000000p+11f, -0x1.c9ffde0000000p+8f, -0x1.949a720000000p+11f, 0x1.b26fb40000000p+11f, -0x1.93113eb333333p+11, -0x1.78aac20000000p+11, -0x1.c9ffde0000000p+8, 0x1.af0aac6666667p+11},
    {100, 2, 11, 0x1.0640440000000p+14f, 0x1.4fae6c0000000p+7f, 0x1.e94d440000000p+10f, 0x1.2355560000000p+3f, -0x1.1da8000000000p+12f, 0x1.1ce0000000000p+13f, -0x1.0aec70a3d70a4p+12, -0x1.6e40000000000p+10, 0x1.2355560000000p+3, 0x1.17720a3d70a3dp+13},
    {127, 0, 12, 0x1.c265000000000p+16f, 0x1.c5f0e20000000p+9f, 0x1.1e72b80000000p+10f, 0x1.b000000000000p+9f, -0x1.e780000000000p+9f, 0x1.76c0000000000p+11f, -0x1.e6deb851eb852p+9, -0x1.83cccccccccccp+9, 0x1.b000000000000p+9, 0x1.765b333333333p+11},
    {128, 1, 13, -0x1.8fe2c40000000p+13f, -0x1.8fe2c40000000p+6f, 0x1.1e99500000000p+11f, 0x1.de97080000000p+6f, -0x1.c6442c0000000p+11f, 0x1.c13c100000000p+11f, -0x1.c134440f5c28fp+11, -0x1.910d0d6666666p+11, 0x1.de97090000000p+6, 0x1.c0118735c28f6p+11},
    {129, 2, 14, -0x1.bf41600000000p+13f, -0x1.bbc9cc0000000p+6f, 0x1.09c57a0000000p+11f, 0x1.7000000000000p+4f, -0x1.1870000000000p+13f, 0x1.da60000000000p+12f, -0x1.f47999999999ap+12, -0x1.62dfb2cccccccp+10, 0x1.7000000000000p+4, 0x1.d04b851eb851fp+12},
    {130, 0, 15, 0x1.114b000000000p+17f, 0x1.0d16a60000000p+10f, 0x1.30620c0000000p+10f, 0x1.2e80000000000p+10f, -0x1.f480000000000p+9f, 0x1.7ea0000000000p+11f, -0x1.f04eb851eb852p+9, -0x1.5180000000000p+9, 0x1.2e80000000000p+10, 0x1.7a30cccccccccp+11},
    {255, 1, 16, 0x1.b6a0480000000p+12f, 0x1.b858a00000000p+4f, 0x1.0483f00000000p+11f, 0x1.dfa0f80000000p+3f, -0x1.cf6a840000000p+11f, 0x1.cc98b20000000p+11f, -0x1.c7deba75c28f6p+11, -0x1.70cfa2ccccccdp+11, 0x1.dfa0f80000000p+3, 0x1.c918aeb851eb8p+11},
    {256, 2, 17, -0x1.8128940000000p+13f, -0x1.8128940000000p+5f, 0x1.ab11880000000p+10f, -0x1.e655560000000p+5f, -0x1.26b8000000000p+13f, 0x1.b2c0000000000p+12f, -0x1.ec6a000000000p+12, -0x1.0d11250000000p+10, -0x1.e655560000000p+5, 0x1.7388cccccccc7p+12},
    {257, 0, 18, 0x1.2134000000000p+18f, 0x1.2013ec0000000p+10f, 0x1.1ce4d00000000p+10f, 0x1.4240000000000p+10f, -0x1.fd80000000000p+9f, 0x1.7f00000000000p+11f, -0x1.e780000000000p+9, -0x1.0266666666666p+9, 0x1.4240000000000p+10, 0x1.7a9c28f5c28f6p+11},
    {1000, 1, 19, -0x1.7ca9160000000p+14f, -0x1.85cbde0000000p+4f, 0x1.09a8d40000000p+11f, -0x1.4784d00000000p+6f, -0x1.cf9ec00000000p+11f, 0x1.cf8bc20000000p+11f, -0x1.cb33ca7333333p+11, -0x1.6d98ca3333333p+11, -0x1.4784cf0000000p+6, 0x1.c8969aab851ebp+11},
    {1023, 2, 20, -0x1.b93cb80000000p+16f, -0x1.b9ab220000000p+6f, 0x1.f9dd780000000p+10f, 0x1.39999a0000000p+4f, -0x1.3340000000000p+13f, 0x1.3490000000000p+13f, -0x1.16a91eb851eb8p+13, -0x1.a11cccccccccdp+10, 0x1.39999a0000000p+4, 0x1.fe087ae147ad7p+12},
    {4096, 0, 21, 0x1.1085dc0000000p+22f, 0x1.1085dc0000000p+10f, 0x1.2596b80000000p+10f, 0x1.19e0000000000p+10f, -0x1.ff80000000000p+9f, 0x1.7fe0000000000p+11f, -0x1.f500000000000p+9, -0x1.1a40000000000p+9, 0x1.19e0000000000p+10, 0x1.7de0000000000p+11},
    {8191, 1, 22, 0x1.739ae80000000p+17f, 0x1.73a6860000000p+4f, 0x1.0aa2ec0000000p+11f, 0x1.2459160000000p+5f, -0x1.cfb6800000000p+11f, 0x1.cfae300000000p+11f, -0x1.cafd193333333p+11, -0x1.6ef3920000000p+11, 0x1.2459160000000p+5, 0x1.cb67f13333333p+11},
    {8192, 2, 23, -0x1.83f1f00000000p+13f, -0x1.83f1f00000000p+0f, 0x1.c154580000000p+10f, 0x1.e79e7c0000000p+1f, -0x1.3820000000000p+13f, 0x1.3658000000000p+13f, -0x1.04f7eb851eb85p+13, -0x1.3e7259999999ap+10, 0x1.e79e7b0000000p+1, 0x1.0be651eb851eep+13},
    {8193, 0, 24, 0x1.ff916c0000000p+22f, 0x1.ff81700000000p+9f, 0x1.27a5d40000000p+10f, 0x1.fd80000000000p+9f, -0x1.0000000000000p+10f, 0x1.7fe0000000000p+11f, -0x1.f4851eb851eb8p+9, -0x1.3580000000000p+9, 0x1.fd80000000000p+9, 0x1.7d80000000000p+11},
    {12289, 1, 25, 0x1.8be50a0000000p+18f, 0x1.07e8880000000p+5f, 0x1.0cae8a0000000p+11f, 0x1.0f46720000000p+6f, -0x1.cf95420000000p+11f, 0x1.cfb5500000000p+11f, -0x1.cad89a3d70a3dp+11, -0x1.7368b4ccccccdp+11, 0x1.0f46720000000p+6, 0x1.cb85b251eb852p+11},
    {16383, 2, 26, 0x1.f6e7620000000p+16f, 0x1.f6ef3e0000000p+2f, 0x1.c72d0a0000000p+10f, -0x1.5800000000000p+1f, -0x1.3730000000000p+13f, 0x1.3740000000000p+13f, -0x1.0588a3d70a3d7p+13, -0x1.4106d46666666p+10, -0x1.5800000000000p+1, 0x1.0d9dc28f5c290p+13},
    {16384, 0, 27, 0x1.00eab40000000p+24f, 0x1.00eab40000000p+10f, 0x1.2638fa0000000p+10f, 0x1.0240000000000p+10f, -0x1.0000000000000p+10f, 0x1.7fe0000000000p+11f, -0x1.f58ae147ae148p+9, -0x1.2d00000000000p+9, 0x1.0240000000000p+10, 0x1.7d20000000000p+11},
    {16385, 1, 28, 0x1.ebd3aa0000000p+17f, 0x1.ebcbfa0000000p+3f, 0x1.0b24e80000000p+11f, 0x1.337c1c0000000p+4f, -0x1.cfbd9e0000000p+11f, 0x1.cfa9700000000p+11f, -0x1.cb71f0e147ae1p+11, -0x1.7367c26666666p+11, 0x1.337c1c0000000p+4, 0x1.ca8f166666666p+11},
    {24581, 2, 29, -0x1.43cb760000000p+17f, -0x1.afa3780000000p+2f, 0x1.c1117c0000000p+10f, -0x1.aaaaac0000000p+1f, -0x1.3838000000000p+13f, 0x1.3878000000000p+13f, -0x1.08d4ccccccccdp+13, -0x1.4490000000000p+10, -0x1.aaaaac0000000p+1, 0x1.0afccccccccc8p+13},
    {40000, 0, 30, 0x1.38e5900000000p+25f, 0x1.0053340000000p+10f, 0x1.28678e0000000p+10f, 0x1.0100000000000p+10f, -0x1.0000000000000p+10f, 0x1.7fe0000000000p+11f, -0x1.f680000000000p+9, -0x1.3600000000000p+9, 0x1.0100000000000p+10, 0x1.7d40000000000p+11},
    {65537, 1, 31, 0x1.8fa3ae0000000p+16f, 0x1.8fa21e0000000p+0f, 0x1.0c07d80000000p+11f, 0x1.5aa9920000000p+1f, -0x1.cfbb400000000p+11f, 0x1.cfba100000000p+11f, -0x1.cb3acf1eb851fp+11, -0x1.72d3d53333333p+11, 0x1.5aa9920000000p+1, 0x1.cac7a67ae147bp+11},
    {100000, 2, 32, 0x1.51efa60000000p+18f, 0x1.baf08c0000000p+1f, 0x1.bf40e00000000p+10f, 0x1.934b4c0000000p+1f, -0x1.3880000000000p+13f, 0x1.3868000000000p+13f, -0x1.03903d70a3d71p+13, -0x1.420b346666666p+10, 0x1.934b4b0000000p+1, 0x1.0638333333340p+13},
    {1100003, 0, 33, 0x1.0c7d320000000p+30f, 0x1.ffdf9a0000000p+9f, 0x1.27767a0000000p+10f, 0x1.0000000000000p+10f, -0x1.0000000000000p+10f, 0x1.7fe0000000000p+11f, -0x1.f600000000000p+9, -0x1.3380000000000p+9, 0x1.0000000000000p+10, 0x1.7d60000000000p+11},
};

struct F64Case {
  int64_t n;
  uint32_t seed;
  double median;
  double p[6];
};
const double kF64Q[6] = {0.0, 0.5, 10.0, 50.0, 99.5, 100.0};
// numpy 1.24.2: median and percentile(q) of float64 vectors.
const F64Case kF64Cases[] = {
    {1, 100, 0x1.daf0000000000p+4, {0x1.daf0000000000p+4, 0x1.daf0000000000p+4, 0x1.daf0000000000p+4, 0x1.daf0000000000p+4, 0x1.daf0000000000p+4, 0x1.daf0000000000p+4}},
    {2, 101, -0x1.25bd99999999ap+5, {-0x1.657e000000000p+5, -0x1.64dacbc6a7efap+5, -0x1.58bdeb851eb85p+5, -0x1.25bd99999999ap+5, -0x1.cd40ced916872p+4, -0x1.cbfa666666666p+4}},
    {3, 102, -0x1.14da666666666p+4, {-0x1.11ce666666666p+5, -0x1.1073d3f7ced91p+5, -0x1.ed75eb851eb84p+4, -0x1.14da666666666p+4, -0x1.dea72b020c49dp-1, -0x1.8a00000000000p-1}},
    {4, 103, 0x1.2940cccccccccp+3, {-0x1.5b84000000000p+4, -0x1.57786f9db22d1p+4, -0x1.0a9cb851eb852p+4, 0x1.2940cccccccccp+3, 0x1.08c4f1a9fbe77p+5, 0x1.09f2000000000p+5}},
    {5, 104, -0x1.4cc0000000000p+0, {-0x1.e46cccccccccdp+4, -0x1.e102e978d4fdfp+4, -0x1.a0270a3d70a3dp+4, -0x1.4cc0000000000p+0, 0x1.2f8ddf3b645a2p+4, 0x1.32f4000000000p+4}},
    {10, 105, 0x1.ce1c000000000p+3, {-0x1.daea666666666p+4, -0x1.d8e2fdf3b645ap+4, -0x1.b2563d70a3d71p+4, 0x1.ce1c000000000p+3, 0x1.757e99999999ap+5, 0x1.7762ccccccccdp+5}},
    {11, 106, -0x1.52d4ccccccccdp+4, {-0x1.5ef6000000000p+5, -0x1.5a231eb851eb8p+5, -0x1.fcf8ccccccccdp+4, -0x1.52d4ccccccccdp+4, -0x1.adb5c28f5c2c0p-2, -0x1.d800000000000p-3}},
    {12, 107, 0x1.3744000000000p+4, {-0x1.2edb333333333p+5, -0x1.2b56f5c28f5c2p+5, -0x1.ad8dc28f5c28ep+4, 0x1.3744000000000p+4, 0x1.60d104189374cp+5, 0x1.60f399999999ap+5}},
    {100, 108, -0x1.17b999999999ap+1, {-0x1.82cd333333333p+5, -0x1.7e29cb4395810p+5, -0x1.303bae147ae14p+5, -0x1.17b999999999ap+1, 0x1.7fc50d4fdf3b6p+5, 0x1.8548000000000p+5}},
    {101, 109, 0x1.7cb0000000000p+2, {-0x1.7f8a000000000p+5, -0x1.7e2099999999ap+5, -0x1.35a4000000000p+5, 0x1.7cb0000000000p+2, 0x1.7e17000000000p+5, 0x1.7e30000000000p+5}},
};

}  // namespace

TEST(NpReductions, SpecVectorStatistics) {  // §9.3
  const std::vector<float> v = {-1000.0f, -3.5f, 0.25f, 12.0f, 40.0f, 41.5f, 100.0f, 250.75f, 1300.0f, 3071.0f};
  const IntensityStats s = compute_intensity_stats(v);
  EXPECT_SAME_F32(s.median, 40.75f);
  EXPECT_SAME_F32(s.mean, 381.2f);
  EXPECT_SAME_F32(s.sd, 1036.5453f);
  EXPECT_SAME_F32(s.mn, -1000.0f);
  EXPECT_SAME_F32(s.mx, 3071.0f);
  EXPECT_SAME_F64(s.percentile_99_5, 2991.3050000000003);
  EXPECT_SAME_F64(s.percentile_00_5, -955.1575);
  EXPECT_SAME_F32(np_median_f32(v), 40.75f);
  EXPECT_SAME_F64(np_percentile_f32(v, 99.5), 2991.3050000000003);
}

TEST(NpReductions, SpecVectorChunkedSum) {  // §9.3: 8192-element chunks, not one pairwise tree
  const std::vector<float> v(24581, static_cast<float>(0.1));
  EXPECT_SAME_F32(np_sum_f32(v.data(), 24581), 2458.1003f);
  EXPECT_NE(bits(np_sum_f32(v.data(), 24581)), bits(2458.1006f));
}

TEST(NpReductions, SpecVectorArange) {  // §9.3
  std::vector<float> a(20000);
  for (int i = 0; i < 20000; ++i) a[i] = static_cast<float>(i) * static_cast<float>(0.1);
  EXPECT_SAME_F32(np_sum_f32(a.data(), 20000), 19999000.0f);
  EXPECT_SAME_F32(np_mean_f32(a.data(), 20000), 999.95f);
  EXPECT_SAME_F32(np_std_f32(a.data(), 20000), 577.3503f);
  float naive = 0.0f;
  for (float x : a) naive += x;
  EXPECT_SAME_F32(naive, 19998648.0f);  // what a sequential loop would give instead
}

TEST(NpReductions, RandomFloat32VectorsMatchNumpy) {
  for (const F32Case& c : kF32Cases) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " kind=" + std::to_string(c.kind));
    const std::vector<float> v = test_vector_f32(c.kind, c.n, c.seed);
    EXPECT_SAME_F32(np_sum_f32(v.data(), c.n), c.sum);
    EXPECT_SAME_F32(np_mean_f32(v.data(), c.n), c.mean);
    EXPECT_SAME_F32(np_std_f32(v.data(), c.n), c.sd);
    EXPECT_SAME_F32(np_median_f32(v), c.median);
    EXPECT_SAME_F64(np_percentile_f32(v, 0.5), c.p00_5);
    EXPECT_SAME_F64(np_percentile_f32(v, 10.0), c.p10);
    EXPECT_SAME_F64(np_percentile_f32(v, 50.0), c.p50);
    EXPECT_SAME_F64(np_percentile_f32(v, 99.5), c.p99_5);
    const IntensityStats s = compute_intensity_stats(v);
    EXPECT_SAME_F32(s.mean, c.mean);
    EXPECT_SAME_F32(s.sd, c.sd);
    EXPECT_SAME_F32(s.median, c.median);
    EXPECT_SAME_F32(s.mn, c.mn);
    EXPECT_SAME_F32(s.mx, c.mx);
    EXPECT_SAME_F64(s.percentile_00_5, c.p00_5);
    EXPECT_SAME_F64(s.percentile_99_5, c.p99_5);
  }
}

TEST(NpReductions, Float64MedianAndPercentilesMatchNumpy) {
  for (const F64Case& c : kF64Cases) {
    SCOPED_TRACE("n=" + std::to_string(c.n));
    const std::vector<double> v = test_vector_f64(c.n, c.seed);
    EXPECT_SAME_F64(np_median_f64(v), c.median);
    for (int q = 0; q < 6; ++q) EXPECT_SAME_F64(np_percentile_f64(v, kF64Q[q]), c.p[q]) << "q=" << kF64Q[q];
  }
}

TEST(NpReductions, EmptySampleGivesNaN) {
  const IntensityStats s = compute_intensity_stats({});
  EXPECT_TRUE(std::isnan(s.median) && std::isnan(s.mean) && std::isnan(s.sd) && std::isnan(s.mn) && std::isnan(s.mx));
  EXPECT_TRUE(std::isnan(s.percentile_99_5) && std::isnan(s.percentile_00_5));
  EXPECT_TRUE(std::isnan(np_median_f64({})));
  EXPECT_TRUE(std::isnan(np_percentile_f64({}, 50.0)));
}

TEST(NpReductions, SpacingMedianUsesLerpWhileMedianUsesMidpoint) {  // §7.3: P_50 and median differ in the last bit
  const std::vector<double> v = {3.532, 0.89};  // numpy: median 2.211, percentile(50) 2.2110000000000003
  EXPECT_SAME_F64(np_median_f64(v), 2.211);
  EXPECT_SAME_F64(np_percentile_f64(v, 50.0), 2.2110000000000003);
  EXPECT_NE(bits(np_median_f64(v)), bits(np_percentile_f64(v, 50.0)));
}

// The per-case statistics a cropping rank computes (summarize_intensities) travel with the summary and are what
// the merge would compute itself; the merged fingerprint is the same either way.
TEST(NpReductions, LocalStatisticsFromTheRanksEqualTheMergedOnes) {
  std::vector<CaseSummary> with, without;
  for (int c = 0; c < 3; ++c) {
    CaseSummary s;
    s.id = "amos_000" + std::to_string(3 - c);  // out of order: the merge sorts
    s.original_size = s.size_after_cropping = {10, 20, 30};
    s.original_spacing = {2.0, 0.7, 0.7};
    std::vector<float> v(5000 + 1000 * static_cast<size_t>(c));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<float>(static_cast<int>(mix(static_cast<uint32_t>(i), static_cast<uint32_t>(c)) % 2000) - 900) * 0.37f;
    s.foreground_samples = {v};
    without.push_back(s);
    summarize_intensities(s);
    ByteWriter w;  // as exchanged between ranks, without the samples
    write_summary(w, s, false);
    ByteReader r(w.bytes());
    CaseSummary back = read_summary(r);
    ASSERT_TRUE(r.done());
    ASSERT_EQ(back.local_stats.size(), 1u);
    back.foreground_samples = s.foreground_samples;
    with.push_back(back);
  }
  const DatasetFingerprint a = merge_fingerprint(with, {1, 2}, {"CT"});
  const DatasetFingerprint b = merge_fingerprint(without, {1, 2}, {"CT"});
  ASSERT_EQ(a.local_stats.size(), 1u);
  ASSERT_EQ(a.local_stats[0].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.local_stats[0][i].mean, b.local_stats[0][i].mean);
    EXPECT_EQ(a.local_stats[0][i].sd, b.local_stats[0][i].sd);
    EXPECT_EQ(a.local_stats[0][i].median, b.local_stats[0][i].median);
    EXPECT_EQ(a.local_stats[0][i].percentile_99_5, b.local_stats[0][i].percentile_99_5);
    EXPECT_EQ(a.local_stats[0][i].percentile_00_5, b.local_stats[0][i].percentile_00_5);
    EXPECT_EQ(a.local_stats[0][i].mn, b.local_stats[0][i].mn);
    EXPECT_EQ(a.local_stats[0][i].mx, b.local_stats[0][i].mx);
  }
  EXPECT_EQ(a.case_ids, (std::vector<std::string>{"amos_0001", "amos_0002", "amos_0003"}));
  // sorted order: amos_0001 is the third summary made (7000 samples)
  EXPECT_EQ(a.local_stats[0][0].mean, compute_intensity_stats(without[2].foreground_samples[0]).mean);
  EXPECT_EQ(a.global_stats[0].mean, b.global_stats[0].mean);
  // The merge takes the ranks' statistics as they come (it does not recompute them).
  with[0].local_stats[0].mean = 42.0f;
  EXPECT_EQ(merge_fingerprint(with, {1, 2}, {"CT"}).local_stats[0][2].mean, 42.0f);
}

// Integral samples in a narrow range (CT values) get their order statistics by counting: the same statistics as
// the selection, for odd and even sizes, duplicates, outliers across the int16 range, and samples that must fall
// back (fractions, -0.0, NaN, a range wider than the count table).
TEST(NpReductions, CountingSelectionEqualsSelection) {
  auto stats_both = [](const std::vector<float>& v) {
    np_reductions_detail::set_counting_selection(false);
    const IntensityStats a = compute_intensity_stats(v);
    np_reductions_detail::set_counting_selection(true);
    const IntensityStats b = compute_intensity_stats(v);
    return std::make_pair(a, b);
  };
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto bits64 = [](double f) {
    uint64_t u;
    std::memcpy(&u, &f, 8);
    return u;
  };
  std::vector<std::vector<float>> samples;
  for (size_t n : {1u, 2u, 3u, 10u, 201u, 1000u, 65537u, 200000u}) {
    std::vector<float> ct(n), wide(n), narrow(n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t r = mix(static_cast<uint32_t>(i), static_cast<uint32_t>(n));
      ct[i] = static_cast<float>(static_cast<int>(r % 1400) - 1000);                     // soft tissue and air
      wide[i] = static_cast<float>(static_cast<int>(r % 65536) - 32768);                // the whole int16 range
      narrow[i] = static_cast<float>(static_cast<int>(r % 7) + (r % 101 == 0 ? 3000 : 40));  // many ties, outliers
    }
    samples.push_back(ct);
    samples.push_back(wide);
    samples.push_back(narrow);
  }
  std::vector<float> frac = samples[6];
  frac[5] = 12.5f;
  std::vector<float> negzero = samples[6];
  negzero[3] = -0.0f;
  negzero[4] = 0.0f;
  std::vector<float> huge = samples[6];
  huge[0] = 1.0e7f;  // range far wider than the sample
  samples.push_back(frac);
  samples.push_back(negzero);
  samples.push_back(huge);
  for (size_t k = 0; k < samples.size(); ++k) {
    const auto [a, b] = stats_both(samples[k]);
    EXPECT_EQ(bits(a.median), bits(b.median)) << k;
    EXPECT_EQ(bits(a.mn), bits(b.mn)) << k;
    EXPECT_EQ(bits(a.mx), bits(b.mx)) << k;
    EXPECT_EQ(bits(a.mean), bits(b.mean)) << k;
    EXPECT_EQ(bits(a.sd), bits(b.sd)) << k;
    EXPECT_EQ(bits64(a.percentile_99_5), bits64(b.percentile_99_5)) << k;
    EXPECT_EQ(bits64(a.percentile_00_5), bits64(b.percentile_00_5)) << k;
  }
  // a known case: 0..9 -> median 4.5, 0.5th percentile 0.045, 99.5th 8.955
  std::vector<float> ten;
  for (int i = 9; i >= 0; --i) ten.push_back(static_cast<float>(i));
  const IntensityStats t = compute_intensity_stats(ten);
  EXPECT_EQ(t.median, 4.5f);
  EXPECT_DOUBLE_EQ(t.percentile_00_5, 0.045);
  EXPECT_DOUBLE_EQ(t.percentile_99_5, 8.955);
}

// The int8 foreground sample (skipping words without a positive label) picks the same voxels as the generic one.
TEST(NpReductions, Int8ForegroundSampleEqualsTheGenericOne) {
  for (const Shape3 s : {Shape3{3, 5, 7}, Shape3{4, 16, 33}, Shape3{2, 64, 64}}) {
    Array3<int16_t> ch16(s);
    Array3<int8_t> seg8(s);
    Array3<float> chf(s), segf(s);
    for (size_t i = 0; i < ch16.v.size(); ++i) {
      const uint32_t r = mix(static_cast<uint32_t>(i), 77);
      ch16.v[i] = static_cast<int16_t>(static_cast<int>(r % 4000) - 1024);
      // long background runs, -1 runs, and isolated or clustered organ voxels
      const uint32_t zone = (static_cast<uint32_t>(i) / 37) % 5;
      seg8.v[i] = static_cast<int8_t>(zone == 0 ? -1 : zone == 3 ? static_cast<int>(r % 3) : (r % 29 == 0 ? 5 : 0));
      if (r % 97 == 0) seg8.v[i] = 127;
      chf.v[i] = ch16.v[i];
      segf.v[i] = seg8.v[i];
    }
    const std::vector<float> got = foreground_sample(ch16, seg8), want = foreground_sample(chf, segf);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(got, want) << s[0] << "x" << s[1] << "x" << s[2];
  }
}
