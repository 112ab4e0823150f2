#include "amosprep/np_random.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace amosprep {

namespace {
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu;
constexpr uint32_t kUpper = 0x80000000u;
constexpr uint32_t kLower = 0x7fffffffu;

inline uint32_t twist(uint32_t cur, uint32_t next, uint32_t far) {
  const uint32_t y = (cur & kUpper) | (next & kLower);
  return far ^ (y >> 1) ^ ((0u - (y & 1u)) & kMatrixA);
}

// Smallest 2^b - 1 that is >= v.
inline uint64_t smear_mask(uint64_t v) {
  v |= v >> 1;
  v |= v >> 2;
  v |= v >> 4;
  v |= v >> 8;
  v |= v >> 16;
  v |= v >> 32;
  return v;
}
}  // namespace

LegacyRandomState::LegacyRandomState(uint32_t seed) {
  state_[0] = seed;
  for (int i = 1; i < kN; ++i)
    state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  pos_ = kN;
}

// Regenerates the whole 624-word block, then tempers it in one vectorizable pass.
void LegacyRandomState::refill() {
  uint32_t* s = state_.data();
  int i = 0;
  for (; i < kN - kM; ++i) s[i] = twist(s[i], s[i + 1], s[i + kM]);
  for (; i < kN - 1; ++i) s[i] = twist(s[i], s[i + 1], s[i + kM - kN]);
  s[kN - 1] = twist(s[kN - 1], s[0], s[kM - 1]);
  uint32_t* o = out_.data();
  for (int t = 0; t < kN; ++t) {
    uint32_t y = s[t];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    o[t] = y;
  }
  pos_ = 0;
}

uint64_t LegacyRandomState::bounded(uint64_t max_inclusive) {
  if (max_inclusive == 0) return 0;
  const uint64_t mask = smear_mask(max_inclusive);
  uint64_t v;
  if (max_inclusive <= 0xffffffffull) {
    do {
      v = next_u32() & mask;
    } while (v > max_inclusive);
  } else {
    do {
      const uint64_t hi = next_u32();
      const uint64_t lo = next_u32();
      v = ((hi << 32) | lo) & mask;
    } while (v > max_inclusive);
  }
  return v;
}

// Fisher-Yates from the top with numpy's draw order. Draws do not depend on the array, so they are produced a block
// ahead and the random partner a[j] is prefetched a few swaps early (the swaps are cache-miss bound for large n).
template <class T>
void LegacyRandomState::shuffle_impl(T* a, int64_t n) {
  int64_t i = n - 1;
  for (; i > static_cast<int64_t>(0xffffffffll); --i) {  // 64-bit draws (n > 2^32 + 1 only)
    const auto j = static_cast<int64_t>(bounded(static_cast<uint64_t>(i)));
    std::swap(a[i], a[j]);
  }
  if (i < 1) return;
  constexpr int kBlock = 512;
  constexpr int kAhead = 32;
  uint32_t draws[kBlock];
  auto mask = static_cast<uint32_t>(smear_mask(static_cast<uint64_t>(i)));
  while (i >= 1) {
    const int count = static_cast<int>(std::min<int64_t>(kBlock, i));
    for (int s = 0; s < count; ++s) {
      const auto upper = static_cast<uint32_t>(i - s);
      while ((mask >> 1) >= upper) mask >>= 1;
      uint32_t v;
      do {
        v = next_u32() & mask;
      } while (v > upper);
      draws[s] = v;
    }
    for (int s = 0; s < std::min(kAhead, count); ++s) __builtin_prefetch(a + draws[s], 1);
    for (int s = 0; s < count; ++s) {
      if (s + kAhead < count) __builtin_prefetch(a + draws[s + kAhead], 1);
      std::swap(a[i - s], a[draws[s]]);
    }
    i -= count;
  }
}

void LegacyRandomState::shuffle_in_place(int64_t* a, int64_t n) { shuffle_impl(a, n); }

void LegacyRandomState::shuffle_in_place(uint32_t* a, int64_t n) {
  if (n > static_cast<int64_t>(0x100000000ll))
    throw std::invalid_argument("shuffle_in_place: more than 2^32 elements for a 32-bit array");
  shuffle_impl(a, n);
}

std::vector<int64_t> LegacyRandomState::choice_without_replacement(int64_t n, int64_t k) {
  if (n < 0 || k < 0) throw std::invalid_argument("choice: negative population or sample size");
  if (k > n) throw std::invalid_argument("choice: cannot take a larger sample than population when replace=False");
  std::vector<int64_t> result(static_cast<size_t>(k));
  if (n <= static_cast<int64_t>(0x100000000ll)) {
    std::vector<uint32_t> perm(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) perm[static_cast<size_t>(t)] = static_cast<uint32_t>(t);
    shuffle_impl(perm.data(), n);
    std::copy(perm.begin(), perm.begin() + k, result.begin());
  } else {
    std::vector<int64_t> perm(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) perm[static_cast<size_t>(t)] = t;
    shuffle_impl(perm.data(), n);
    std::copy(perm.begin(), perm.begin() + k, result.begin());
  }
  return result;
}

}  // namespace amosprep
