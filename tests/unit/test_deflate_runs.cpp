#include <gtest/gtest.h>
#include <omp.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <random>

#include "amosprep/deflate_runs.hpp"
#include "amosprep/isa.hpp"

using namespace amosprep;

namespace {

// Inflates a raw deflate stream with zlib (what numpy's zipfile uses); fails the test on any zlib error or when
// the stream does not end exactly at the end of the input.
std::vector<unsigned char> inflate_raw(const std::vector<unsigned char>& in, size_t expected_size) {
  std::vector<unsigned char> out(expected_size + 1);
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, -15), Z_OK);
  z.next_in = const_cast<unsigned char*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  EXPECT_EQ(rc, Z_STREAM_END) << (z.msg ? z.msg : "");
  EXPECT_EQ(z.avail_in, 0u) << "trailing bytes after the final block";
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

std::vector<unsigned char> bytes_of(const std::vector<float>& v) {
  std::vector<unsigned char> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A CT-like float32 volume: constant background, smooth interior with noise, a few label-like plateaus.
std::vector<float> volume_like(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.05f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t x = i % 512;
    if (x < 100 || x > 420) v[i] = -1.25f;
    else if (x % 97 < 20) v[i] = 3.f;
    else v[i] = std::sin(static_cast<float>(i) * 1e-4f) + noise(rng);
  }
  return v;
}

void expect_round_trip(const std::vector<unsigned char>& in) {
  const auto packed = deflate_runs(in.data(), in.size());
  const auto back = inflate_raw(packed, in.size());
  ASSERT_EQ(back.size(), in.size());
  EXPECT_TRUE(back == in);
}

}  // namespace

TEST(DeflateRunsTest, RoundTripsEdgeSizes) {
  for (size_t n : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(5), size_t(7), size_t(258), size_t(263),
                   size_t(65535), size_t(65536), size_t(70001)}) {
    SCOPED_TRACE(n);
    std::vector<unsigned char> zeros(n, 0), ramp(n);
    for (size_t i = 0; i < n; ++i) ramp[i] = static_cast<unsigned char>(i * 7 / 3);
    expect_round_trip(zeros);
    expect_round_trip(ramp);
  }
}

TEST(DeflateRunsTest, RoundTripsVolumesAcrossSegments) {
  // 3.2 M floats = 12.8 MB: many 1 MiB segments, runs crossing segment boundaries, a length not a multiple of 4.
  auto bytes = bytes_of(volume_like(3'200'003, 1));
  bytes.push_back(0x7f);
  expect_round_trip(bytes);
}

TEST(DeflateRunsTest, IncompressibleDataFallsBackToStoredBlocks) {
  std::mt19937 rng(7);
  std::vector<unsigned char> noise(3 << 20);
  for (auto& b : noise) b = static_cast<unsigned char>(rng());
  const auto packed = deflate_runs(noise.data(), noise.size());
  // Stored blocks cost 5 bytes per 64 KiB, plus the per-segment sync markers and the final block.
  EXPECT_LE(packed.size(), noise.size() + 5 * (noise.size() / 65535 + 4) + 16);
  EXPECT_TRUE(inflate_raw(packed, noise.size()) == noise);
}

TEST(DeflateRunsTest, ConstantRunsCompressHard) {
  const auto bytes = bytes_of(std::vector<float>(4 << 20, -0.8125f));
  const auto packed = deflate_runs(bytes.data(), bytes.size());
  EXPECT_LT(packed.size() * 200, bytes.size()) << packed.size();
  EXPECT_TRUE(inflate_raw(packed, bytes.size()) == bytes);
}

TEST(DeflateRunsTest, SizeComparableToZlibLevel1OnVolumes) {
  const auto bytes = bytes_of(volume_like(1'000'000, 2));
  const auto packed = deflate_runs(bytes.data(), bytes.size());
  uLongf zlen = compressBound(static_cast<uLong>(bytes.size()));
  std::vector<unsigned char> z(zlen);
  ASSERT_EQ(compress2(z.data(), &zlen, bytes.data(), static_cast<uLong>(bytes.size()), 1), Z_OK);
  EXPECT_LT(static_cast<double>(packed.size()), 1.15 * static_cast<double>(zlen))
      << "runs " << packed.size() << " vs zlib-1 " << zlen;
}

TEST(DeflateRunsTest, OutputDoesNotDependOnThreadCount) {
  const auto bytes = bytes_of(volume_like(2'500'000, 3));
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = deflate_runs(bytes.data(), bytes.size());
  omp_set_num_threads(3);
  const auto three = deflate_runs(bytes.data(), bytes.size());
  omp_set_num_threads(before);
  EXPECT_TRUE(one == three);
}

TEST(DeflateRunsTest, ReusedCompressorGivesTheSameStream) {
  DeflateRuns compressor;
  const auto big = bytes_of(volume_like(1'500'000, 4)), small = bytes_of(volume_like(10'000, 5));
  auto join = [](std::span<const DeflateBuffer> parts) {
    std::vector<unsigned char> out;
    for (const auto& p : parts) out.insert(out.end(), p.data.get(), p.data.get() + p.size);
    return out;
  };
  const auto first = join(compressor.compress(big.data(), big.size()));
  const auto second = join(compressor.compress(small.data(), small.size()));
  EXPECT_TRUE(first == deflate_runs(big.data(), big.size()));
  EXPECT_TRUE(second == deflate_runs(small.data(), small.size()));
  EXPECT_TRUE(inflate_raw(second, small.size()) == small);
}

TEST(DeflateRunsTest, BaselineAndV3VariantsGiveTheSameStream) {
  const Isa before = active_isa();
  if (set_active_isa(Isa::x86_64_v3) != Isa::x86_64_v3) {
    set_active_isa(before);
    GTEST_SKIP() << "this binary or CPU has no x86-64-v3 variant";
  }
  const auto bytes = bytes_of(volume_like(2'300'000, 6));
  const auto v3 = deflate_runs(bytes.data(), bytes.size());
  set_active_isa(Isa::baseline);
  const auto base = deflate_runs(bytes.data(), bytes.size());
  set_active_isa(before);
  EXPECT_TRUE(v3 == base);
  EXPECT_TRUE(inflate_raw(v3, bytes.size()) == bytes);
}
