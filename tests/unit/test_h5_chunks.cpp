// Chunk extents of the HDF5 store (amosprep/h5_store.hpp): at least half a patch, and little edge padding.
#include <gtest/gtest.h>

#include <cstdint>

#include "amosprep/h5_store.hpp"

using namespace amosprep;

namespace {

int64_t chunks_along(int64_t n, int64_t extent) { return (n + extent - 1) / extent; }

// The most chunks a window of `len` voxels can overlap, over all its start positions.
int64_t most_chunks_touched(int64_t n, int64_t extent, int64_t len) {
  int64_t most = 0;
  for (int64_t s = 0; s + len <= n; ++s) most = std::max(most, (s + len - 1) / extent - s / extent + 1);
  return most;
}

}  // namespace

TEST(H5Chunks, AtLeastHalfAPatchAndPadsFewerVoxelsThanChunks) {
  for (int64_t n = 1; n <= 700; n += 3) {
    for (int64_t half : {1, 14, 24, 40, 56, 96, 112, 128, 800}) {
      const int64_t e = chunk_extent(n, half);
      const int64_t k = chunks_along(n, e);
      ASSERT_GE(e, std::min(n, half)) << n << " " << half;
      ASSERT_LE(e, n);
      ASSERT_LT(k * e - n, k) << "n=" << n << " half=" << half << " extent=" << e;
      if (2 * half <= n) ASSERT_LE(most_chunks_touched(n, e, 2 * half), 3) << n << " " << half;
    }
  }
}

TEST(H5Chunks, SplitsTheRealisticSetWithLittlePadding) {
  // Axes of the realistic phantom set's stages with their half patches: half a patch as the extent padded the
  // v21 store by 28 % (e.g. 437 slices in chunks of 24 store 456).
  EXPECT_EQ(chunk_extent(437, 24), 26);  // 17 chunks: 442 stored
  EXPECT_EQ(chunk_extent(549, 96), 110);  // 5 chunks: 550
  EXPECT_EQ(chunk_extent(412, 96), 103);  // 4 chunks: 412
  EXPECT_EQ(chunk_extent(5, 24), 5);
  EXPECT_EQ(chunk_extent(0, 24), 1);
}
