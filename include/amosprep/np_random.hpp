#pragma once
// numpy's legacy np.random.RandomState(seed), bit for bit (numpy 1.24): MT19937 with legacy integer seeding,
// bounded integers by masked rejection, permutation / shuffle and choice(n, k, replace=False).
// (spec: nnunet-v1-semantics.md §6.9, vectors §9.2)
#include <array>
#include <cstdint>
#include <vector>

namespace amosprep {

/// np.random.RandomState(seed) restricted to what nnU-Net's class_locations uses.
class LegacyRandomState {
 public:
  /// Same 32-bit output stream as std::mt19937(seed) and RandomState(seed).
  explicit LegacyRandomState(uint32_t seed);

  /// Next raw 32-bit MT19937 output.
  uint32_t next_u32() {
    if (pos_ == kN) refill();
    return out_[pos_++];
  }

  /// Uniform integer in [0, max_inclusive] (numpy legacy `random_interval`): masked rejection on 32-bit outputs,
  /// or on 64-bit words (high word drawn first) when max_inclusive > 0xFFFFFFFF. Never modulo or Lemire.
  uint64_t bounded(uint64_t max_inclusive);

  /// RandomState.shuffle of a 1-D array: for i = n-1 .. 1, swap a[i] with a[bounded(i)].
  void shuffle_in_place(int64_t* a, int64_t n);
  /// Same draws and swaps as shuffle_in_place, for 32-bit elements (n must fit in 32 bits).
  void shuffle_in_place(uint32_t* a, int64_t n);

  /// RandomState.permutation(n)[:k] == RandomState.choice(n, k, replace=False). Always runs the full shuffle of n
  /// elements, so the generator advances by the same amount for any k.
  std::vector<int64_t> choice_without_replacement(int64_t n, int64_t k);

 private:
  static constexpr int kN = 624;
  void refill();
  template <class T>
  void shuffle_impl(T* a, int64_t n);

  std::array<uint32_t, kN> state_{};
  std::array<uint32_t, kN> out_{};  // tempered outputs of the current block
  int pos_ = kN;
};

}  // namespace amosprep
