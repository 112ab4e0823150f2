// Intensity normalization: float32 results from numpy 1.24.2 (nnU-Net's expressions run on the same inputs),
// embedded as bit patterns. The CT case contains voxels whose result differs if computed in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "amosprep/normalize.hpp"

using namespace amosprep;

namespace {

// x[i] = f32(((i * 7919) % 2001) - 1000 + (i % 7) * 0.1234567), shape (4, 5, 6), as in the numpy script.
Array3<float> input_volume() {
  Array3<float> x({4, 5, 6});
  for (int64_t i = 0; i < 120; ++i) {
    const double v = static_cast<double>((i * 7919) % 2001) - 1000.0 + static_cast<double>(i % 7) * 0.1234567;
    x.v[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return x;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void expect_bits(const Array3<float>& x, const std::vector<uint32_t>& expect) {
  ASSERT_EQ(x.size(), expect.size());
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(bits(x.v[i]), expect[i]) << "voxel " << i;
}

}  // namespace

TEST(Normalize, CtMatchesNumpyFloat32AndNotDouble) {
  IntensityStats s;
  s.mean = 37.123456f;
  s.sd = 217.7777f;
  s.percentile_00_5 = -958.12345678901;
  s.percentile_99_5 = 812.98765432109;
  Array3<float> x = input_volume();
  const Array3<float> original = x;
  normalize_ct(x, s);
  const std::vector<uint32_t> expect = {
      0xc0923d8c, 0x40640258, 0x40640258, 0x40506e8c, 0x40377d0f, 0x401e8b91, 0x40059a14, 0x3fd8cf25,
      0x3fa6ec2a, 0x3f6a125e, 0x3f064c68, 0x3e0a19ca, 0xbe827f07, 0xbf250579, 0xbf84e7c0, 0xbfb6caba,
      0xbfe8adb5, 0xc00d4858, 0xc02639d6, 0xc03f2b53, 0xc0581cd1, 0xc0714f52, 0xc0852068, 0xc0919927,
      0x40640258, 0x40640258, 0x405e05d4, 0x40451456, 0x402be1d4, 0x4012f058, 0x3ff3fdb4, 0x3fc21ab9,
      0x3f9037be, 0x3f3ca986, 0x3eb1c720, 0xbd3e6757, 0xbedf58d7, 0xbf537261, 0xbf9b9c2b, 0xbfcd7f25,
      0xbfff6221, 0xc018a28d, 0xc031d510, 0xc04ac68d, 0xc063b80b, 0xc07ca988, 0xc08acd83, 0xc0923d8c,
      0x40640258, 0x40640258, 0x40526a9a, 0x4039791b, 0x4020879e, 0x40079622, 0x3fdd4948, 0x3fab664e,
      0x3f720294, 0x3f0e3c9e, 0x3e29daa1, 0xbe653d35, 0xbf1d1542, 0xbf806d9d, 0xbfb25096, 0xbfe4b59a,
      0xc00b4c4b, 0xc0243dc9, 0xc03d2f46, 0xc05620c3, 0xc06f1240, 0xc08401df, 0xc0909b20, 0x40640258,
      0x40640258, 0x406001e1, 0x40471064, 0x402e1ee6, 0x40152d69, 0x3ff7f5cf, 0x3fc612d4, 0x3f942fd9,
      0x3f4499bd, 0x3ec1a78e, 0xbc3c8bca, 0xbecd7049, 0xbf4b822b, 0xbf97a410, 0xbfc9870b, 0xbffb6a06,
      0xc016a681, 0xc02f97fe, 0xc048897c, 0xc061bbfd, 0xc07aad7a, 0xc089cf7c, 0xc0923d8c, 0x40640258,
      0x40640258, 0x4054a7ab, 0x403b7529, 0x402283ac, 0x4009922f, 0x3fe14163, 0x3faf5e69, 0x3f7af6da,
      0x3f1730e4, 0x3e499b7b, 0xbe457c5d, 0xbf15250d, 0xbf78eb02, 0xbfae587b, 0xbfe03b77, 0xc0090f38,
      0xc02241bb, 0xc03b3338, 0xc05424b6, 0xc06d1633, 0xc08303d8, 0xc08f7c97, 0x40640258, 0x40640258,
  };
  expect_bits(x, expect);
  // These voxels get another float32 if clip/subtract/divide are done in double and rounded once.
  const std::vector<int> double_differs = {5, 8, 10, 14, 15, 18, 19, 22, 28, 34, 39, 41, 42, 51, 52, 60, 61, 62, 65, 75, 78, 81, 88, 89, 98, 99, 102, 106, 109, 111, 112};
  for (int i : double_differs) {
    const double lo = static_cast<float>(s.percentile_00_5), hi = static_cast<float>(s.percentile_99_5);
    const double c = std::min(std::max(static_cast<double>(original.v[i]), lo), hi);
    const auto in_double = static_cast<float>((c - static_cast<double>(s.mean)) / static_cast<double>(s.sd));
    EXPECT_NE(bits(in_double), expect[static_cast<size_t>(i)]) << "voxel " << i;
  }
}

TEST(Normalize, CtClipKeepsNumpySignOfZero) {
  IntensityStats s;
  s.mean = 0.0f;
  s.sd = 1.0f;
  s.percentile_00_5 = 0.0;
  s.percentile_99_5 = 10.0;
  Array3<float> x({1, 1, 3});
  x.v = {-0.0f, 0.0f, -3.0f};
  normalize_ct(x, s);
  for (float v : x.v) {
    EXPECT_EQ(v, 0.0f);
    EXPECT_FALSE(std::signbit(v));  // numpy: max(-0.0, 0.0) -> 0.0
  }
}

TEST(Normalize, Ct2MaskUsesFloat32Comparisons) {
  // lb = -500.00000001 rounds to -500.0f: voxel 5 (= -500.0f) is outside the mask in float32 (63 mask voxels;
  // a double comparison would give 64). numpy: mn 41.20968, sd 311.9132.
  IntensityStats s;
  s.percentile_00_5 = -500.00000001;
  s.percentile_99_5 = 600.5;
  Array3<float> x = input_volume();
  x.v[5] = -500.0f;
  x.v[6] = 600.5f;
  normalize_ct2(x, s);
  const std::vector<uint32_t> expect = {
      0xbfde18b5, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0xbfde18b5, 0x3fe5842c, 0x3f95b2ff,
      0x3f65bc9b, 0x3f201338, 0x3eb4d3ab, 0x3da60391, 0xbe43a3c5, 0xbeed24a8, 0xbf3cf14c, 0xbf814d58,
      0xbfa42209, 0xbfc6f6bb, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5,
      0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fcb8228, 0x3fa8ad76, 0x3f85d8c4,
      0x3f460826, 0x3f005ec2, 0x3e6ad57c, 0xbd3a9978, 0xbea2a5f6, 0xbf16fc5e, 0xbf5ca5c0, 0xbf912792,
      0xbfb3fc44, 0xbfd6d0f5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5,
      0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fde7c9f, 0x3fbba7ed, 0x3f98d33b, 0x3f6bfd13,
      0x3f259e1c, 0x3ebfe972, 0x3dd25aac, 0xbe2d7836, 0xbee20ee1, 0xbf36b0d5, 0xbf7c5a37, 0xbfa15c97,
      0xbfc43149, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0x3fe5842c,
      0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fcea263, 0x3fab72e8, 0x3f889e36, 0x3f4b9309,
      0x3f05e9a7, 0x3e808086, 0xbcad240c, 0xbe962507, 0xbf11717b, 0xbf571add, 0xbf8e6220, 0xbfb136d2,
      0xbfd40b83, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0x3fe5842c,
      0x3fe5842c, 0x3fe5842c, 0x3fe5842c, 0x3fe14211, 0x3fbe6d5e, 0x3f9b98ac, 0x3f7187f7, 0x3f2bde93,
      0x3ecc6a60, 0x3dfeb1cb, 0xbe174ca8, 0xbed6f91b, 0xbf3125f0, 0xbf76cf54, 0xbf9e3c5c, 0xbfc1110d,
      0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0xbfde18b5, 0x3fe5842c, 0x3fe5842c,
  };
  expect_bits(x, expect);
}

TEST(Normalize, NonCtWithoutMaskAddsEpsilonInDouble) {
  // x * 1e-5 so that sd (0.005867819) + 1e-8 changes the float32 divisor: every voxel depends on it.
  Array3<float> x = input_volume();
  for (float& v : x.v) v = v * 1e-5f;
  normalize_nonct(x, nullptr);
  const std::vector<uint32_t> expect = {
      0xbfd93e19, 0x3fc8bcea, 0x3fb6391c, 0x3fa3b550, 0x3f913183, 0x3f7d5b6b, 0x3f5853d0, 0x3f32ebb0,
      0x3f0de415, 0x3ed1b8f6, 0x3e87a9c1, 0x3df66a2d, 0xbcc74a9d, 0xbe2d07be, 0xbea1541e, 0xbeeb6354,
      0xbf1ab944, 0xbf3fc0df, 0xbf64c878, 0xbf84e809, 0xbf976bd7, 0xbfaa1fe7, 0xbfbca3b4, 0xbfcf2782,
      0x3fd2d381, 0x3fc04fb3, 0x3fadcbe6, 0x3f9b4819, 0x3f88940a, 0x3f6c2078, 0x3f4718de, 0x3f221142,
      0x3efa1352, 0x3eb0041b, 0x3e4be9cc, 0x3d59253a, 0xbdbbaa38, 0xbe71f386, 0xbec308f8, 0xbf068c16,
      0xbf2b93b1, 0xbf509b4a, 0xbf76036b, 0xbf8d8582, 0xbfa00950, 0xbfb28d1e, 0xbfc510eb, 0xbfd794b8,
      0x3fca6649, 0x3fb7b23a, 0x3fa52e6e, 0x3f92aaa0, 0x3f8026d3, 0x3f5b460b, 0x3f363e70, 0x3f1136d6,
      0x3ed79d6c, 0x3e8d8e37, 0x3e06fe04, 0xbc520662, 0xbe213ed1, 0xbe9aae9e, 0xbee4bdd1, 0xbf17c708,
      0xbf3ccea3, 0xbf61d63d, 0xbf836eec, 0xbf95f2b9, 0xbfa87686, 0xbfbafa55, 0xbfcdae64, 0x3fd44c9f,
      0x3fc1c8d0, 0x3faf4504, 0x3f9cc137, 0x3f8a3d6a, 0x3f6f7339, 0x3f4a0b1a, 0x3f25037e, 0x3efff7c7,
      0x3eb5e893, 0x3e57b2b9, 0x3d87289f, 0xbda11436, 0xbe662a99, 0xbebd2482, 0xbf0399dc, 0xbf28a176,
      0xbf4da910, 0xbf72b0a9, 0xbf8bdc23, 0xbf9e9032, 0xbfb11400, 0xbfc397ce, 0xbfd61b9a, 0x3fcbdf67,
      0x3fb95b9a, 0x3fa6d7cd, 0x3f9423be, 0x3f819ff1, 0x3f5e3847, 0x3f3930ad, 0x3f142911, 0x3ede42ed,
      0x3e9433b8, 0x3e12c6f1, 0xbaabbc67, 0xbe1575e4, 0xbe94ca26, 0xbeded95c, 0xbf147449, 0xbf397be2,
      0xbf5ee403, 0xbf81f5ce, 0xbf94799c, 0xbfa6fd69, 0xbfb98137, 0xbfcc0504, 0x3fd5f5fe, 0x3fc341ee,
  };
  expect_bits(x, expect);
}

TEST(Normalize, NonCtWithSegMaskZeroesOutside) {
  Array3<float> x = input_volume();
  for (float& v : x.v) v = v * 1e-5f;
  Array3<float> seg({4, 5, 6});
  for (int64_t i = 0; i < 120; ++i) seg.v[static_cast<size_t>(i)] = (i % 3 != 0) ? static_cast<float>(i % 4) : -1.0f;
  normalize_nonct(x, &seg);
  const std::vector<uint32_t> expect = {
      0x00000000, 0x3fc73df0, 0x3fb4b6af, 0x00000000, 0x3f8fa831, 0x3f7a41e2, 0x00000000, 0x3f2fc44b,
      0x3f0ab5cb, 0x00000000, 0x3e813198, 0x3ddc5261, 0x00000000, 0xbe3a4ace, 0xbea80394, 0x00000000,
      0xbf1e1eca, 0xbf432d49, 0x00000000, 0xbf86a524, 0xbf992c64, 0x00000000, 0xbfbe6b2f, 0xbfd0f270,
      0x00000000, 0x3fbecf27, 0x3fac47e7, 0x00000000, 0x3f87091d, 0x3f6903ba, 0x00000000, 0x3f1ee6ba,
      0x3ef3b076, 0x00000000, 0x3e3eeced, 0x3d24c249, 0x00000000, 0xbe7f436b, 0xbec9beb6, 0x00000000,
      0xbf2efc5a, 0xbf540ad9, 0x00000000, 0xbf8f4437, 0xbfa1cb78, 0x00000000, 0xbfc6d9f8, 0xbfd96138,
      0x00000000, 0x3fb63013, 0x3fa3a8d5, 0x00000000, 0x3f7d34aa, 0x3f58262a, 0x00000000, 0x3f0e092a,
      0x3ed13426, 0x00000000, 0x3df3e89e, 0xbcd22d7c, 0x00000000, 0xbea15cd7, 0xbeeb79d6, 0x00000000,
      0xbf403a81, 0xbf654901, 0x00000000, 0xbf97b300, 0xbfaa3a40, 0x00000000, 0xbfcf790c, 0x3fd2cfcc,
      0x00000000, 0x3fadc14c, 0x3f9b3a0c, 0x00000000, 0x3f6c5719, 0x3f46e803, 0x00000000, 0x3ef99604,
      0x3eaf7906, 0x00000000, 0x3d59f836, 0xbdbb77e3, 0x00000000, 0xbec3d926, 0xbf06fb13, 0x00000000,
      0xbf511811, 0xbf762690, 0x00000000, 0xbfa05214, 0xbfb2d954, 0x00000000, 0xbfd7e7d4, 0x3fca6103,
      0x00000000, 0x3fa55283, 0x3f929af8, 0x00000000, 0x3f5b18f2, 0x3f360a72, 0x00000000, 0x3ed7dae3,
      0x3e8dbde5, 0x00000000, 0xbc67a907, 0xbe22b48f, 0x00000000, 0xbee59447, 0xbf17d8a3, 0x00000000,
      0xbf62563a, 0xbf83b25c, 0x00000000, 0xbfa8c0dc, 0xbfbb481d, 0x00000000, 0x3fd4797a, 0x3fc1c1ef,
  };
  expect_bits(x, expect);
}

TEST(Normalize, ResultsDoNotDependOnThreadCount) {
  // Large enough to run the OpenMP loops in parallel; element-wise, so equal to a one-voxel-at-a-time run.
  Array3<float> big({8, 100, 100});
  for (size_t i = 0; i < big.size(); ++i) big.v[i] = static_cast<float>(static_cast<int64_t>(i * 2654435761u % 3001) - 1500);
  IntensityStats s;
  s.mean = 12.5f;
  s.sd = 300.25f;
  s.percentile_00_5 = -1000.3;
  s.percentile_99_5 = 1200.7;
  Array3<float> par = big;
  normalize_ct(par, s);
  for (size_t i = 0; i < big.size(); i += 997) {
    Array3<float> one({1, 1, 1}, big.v[i]);
    normalize_ct(one, s);
    ASSERT_EQ(bits(one.v[0]), bits(par.v[i])) << "voxel " << i;
  }
}
