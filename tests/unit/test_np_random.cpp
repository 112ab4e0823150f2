// numpy legacy RandomState: golden values from spec §9.2 and from numpy 1.24.2 (RandomState(1234) unless noted),
// computed once and embedded.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "amosprep/np_random.hpp"

using namespace amosprep;

namespace {
std::vector<int64_t> v64(std::initializer_list<int64_t> x) { return std::vector<int64_t>(x); }
}  // namespace

TEST(NpRandom, RawStreamMatchesSpecAndStdMt19937) {
  LegacyRandomState rs(1234);
  const uint32_t expect[] = {822569775u, 2137449171u, 2671936806u, 3512589365u, 1880026316u};
  for (uint32_t e : expect) EXPECT_EQ(rs.next_u32(), e);
  // Several blocks of 624 words, against the textbook generator.
  std::mt19937 ref(1234);
  for (int t = 0; t < 5; ++t) ref();
  for (int t = 0; t < 3000; ++t) ASSERT_EQ(rs.next_u32(), ref()) << "at output " << t + 5;
  LegacyRandomState rs0(0);
  std::mt19937 ref0(0);
  for (int t = 0; t < 1300; ++t) ASSERT_EQ(rs0.next_u32(), ref0());
}

TEST(NpRandom, ChoiceVectorsFromSpec) {
  EXPECT_EQ(LegacyRandomState(1234).choice_without_replacement(20, 5), v64({3, 13, 2, 16, 14}));
  EXPECT_EQ(LegacyRandomState(1234).choice_without_replacement(10, 10), v64({7, 2, 9, 1, 0, 8, 4, 5, 6, 3}));
  auto c = LegacyRandomState(1234).choice_without_replacement(1000, 37);
  ASSERT_EQ(c.size(), 37u);
  EXPECT_EQ(std::vector<int64_t>(c.begin(), c.begin() + 12),
            v64({681, 990, 155, 768, 438, 363, 688, 555, 620, 99, 756, 428}));
  EXPECT_EQ(LegacyRandomState(1234).choice_without_replacement(100000, 3), v64({13504, 72599, 42217}));
}

TEST(NpRandom, ConsecutiveChoicesShareTheGenerator) {
  LegacyRandomState rs(1234);
  EXPECT_EQ(rs.choice_without_replacement(5, 5), v64({4, 0, 1, 2, 3}));
  EXPECT_EQ(rs.choice_without_replacement(8, 3), v64({2, 6, 7}));
  EXPECT_EQ(rs.choice_without_replacement(300, 4), v64({7, 40, 211, 185}));
}

TEST(NpRandom, LargeChoiceThenSmallChoiceThenRawOutputs) {
  // numpy: rs.choice(2100000, 25, replace=False); rs.choice(70000, 10, replace=False); 3 raw 32-bit outputs.
  LegacyRandomState rs(1234);
  EXPECT_EQ(rs.choice_without_replacement(2100000, 25),
            v64({2042974, 500916, 82665, 1128659, 150316, 1016165, 454794, 856681, 611165, 1166535, 1769409,
                 1384559, 1473155, 464936, 1848658, 1272649, 1221050, 485177, 1168622, 1646533, 1155818, 1479002,
                 701437, 2085634, 1270233}));
  EXPECT_EQ(rs.choice_without_replacement(70000, 10),
            v64({29200, 20468, 6813, 24370, 27072, 61561, 23773, 50477, 36785, 63868}));
  EXPECT_EQ(rs.next_u32(), 2094946908u);
  EXPECT_EQ(rs.next_u32(), 823775915u);
  EXPECT_EQ(rs.next_u32(), 2234267596u);
}

TEST(NpRandom, FullPermutationChecksumBothElementWidths) {
  // numpy: p = RandomState(1234).permutation(100000); sum((t+1) * p[t]) as uint64, and p[-5:].
  const uint64_t expect_checksum = 249814377431287ull;
  const std::vector<int64_t> expect_tail = {89460, 60620, 34086, 58067, 92975};
  {
    std::vector<int64_t> a(100000);
    std::iota(a.begin(), a.end(), 0);
    LegacyRandomState(1234).shuffle_in_place(a.data(), static_cast<int64_t>(a.size()));
    uint64_t sum = 0;
    for (size_t t = 0; t < a.size(); ++t) sum += (t + 1) * static_cast<uint64_t>(a[t]);
    EXPECT_EQ(sum, expect_checksum);
    EXPECT_EQ(std::vector<int64_t>(a.end() - 5, a.end()), expect_tail);
  }
  {
    std::vector<uint32_t> a(100000);
    std::iota(a.begin(), a.end(), 0u);
    LegacyRandomState(1234).shuffle_in_place(a.data(), static_cast<int64_t>(a.size()));
    uint64_t sum = 0;
    for (size_t t = 0; t < a.size(); ++t) sum += (t + 1) * static_cast<uint64_t>(a[t]);
    EXPECT_EQ(sum, expect_checksum);
  }
}

TEST(NpRandom, OtherSeed) {
  EXPECT_EQ(LegacyRandomState(99).choice_without_replacement(1000, 6), v64({890, 983, 107, 609, 113, 350}));
}

TEST(NpRandom, BoundedSmallAnd32BitEdge) {
  {
    LegacyRandomState rs(1234);
    EXPECT_EQ(rs.bounded(0), 0u);  // consumes nothing
    const uint64_t expect[] = {3, 5, 4, 4};
    for (uint64_t e : expect) EXPECT_EQ(rs.bounded(5), e);
  }
  {
    LegacyRandomState rs(1234);  // u = 2^32 - 1: 32-bit path, every raw output accepted
    const uint64_t expect[] = {822569775u, 2137449171u, 2671936806u, 3512589365u};
    for (uint64_t e : expect) EXPECT_EQ(rs.bounded(0xFFFFFFFFull), e);
  }
}

TEST(NpRandom, Bounded64BitPathHighWordFirst) {
  // numpy: RandomState(1234).randint(0, u + 1, dtype=int64/uint64), 4 draws each (same masked rejection).
  struct Case {
    uint64_t u;
    uint64_t expect[4];
  };
  const Case cases[] = {
      {0x100000000ull, {3512589365ull, 2629000564ull, 3312965625ull, 852631582ull}},
      {0x1FFFFFFFFull, {6432416467ull, 3512589365ull, 2629000564ull, 3312965625ull}},
      {0x123456789ABCull, {12298628817619ull, 5664279485493ull, 14072941862260ull, 2855171250169ull}},
      {0x7FFFFFFFFFFFFFFFull,
       {3532910284440527571ull, 2252509165406510133ull, 8074651545468362100ull, 5263936763381405689ull}},
  };
  for (const Case& c : cases) {
    LegacyRandomState rs(1234);
    for (uint64_t e : c.expect) EXPECT_EQ(rs.bounded(c.u), e) << "u = " << c.u;
  }
}

TEST(NpRandom, ChoiceRejectsImpossibleSamples) {
  LegacyRandomState rs(1234);
  EXPECT_THROW(rs.choice_without_replacement(3, 4), std::invalid_argument);
  EXPECT_TRUE(rs.choice_without_replacement(0, 0).empty());
  EXPECT_EQ(rs.next_u32(), 822569775u);  // nothing was consumed
}
