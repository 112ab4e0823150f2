// The start-up choice of the page size for large buffers (amosprep/pages.hpp).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "amosprep/pages.hpp"

using namespace amosprep;

namespace {

// Sets or clears environment variables for one test and restores them afterwards.
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) had_ = true, old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~EnvGuard() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace

TEST(Pages, EnvironmentForcesEitherPageSizeWithoutProbing) {
  {
    EnvGuard on("AMOSPREP_HUGEPAGES", "1");
    const PageChoice c = choose_page_size();
    EXPECT_TRUE(c.huge);
    EXPECT_EQ(c.reason, "AMOSPREP_HUGEPAGES=1");
    EXPECT_LT(c.cpu_s_per_gib_small, 0.0);
    EXPECT_EQ(describe(c), "huge pages (AMOSPREP_HUGEPAGES=1)");
  }
  {
    EnvGuard off("AMOSPREP_HUGEPAGES", "0");
    EXPECT_FALSE(choose_page_size().huge);
  }
  {
    EnvGuard unset("AMOSPREP_HUGEPAGES", nullptr);
    EnvGuard old_name("AMOSPREP_NO_HUGEPAGES", "1");
    const PageChoice c = choose_page_size();
    EXPECT_FALSE(c.huge);
    EXPECT_EQ(c.reason, "AMOSPREP_NO_HUGEPAGES=1");
  }
}

TEST(Pages, ProbeMeasuresFirstTouchAndChoosesHugePagesOnlyWhereSmallOnesAreExpensive) {
  EnvGuard unset("AMOSPREP_HUGEPAGES", nullptr);
  EnvGuard unset_old("AMOSPREP_NO_HUGEPAGES", nullptr);
  const PageChoice c = choose_page_size(size_t{8} << 20);
  EXPECT_EQ(c.reason, "probe");
  ASSERT_GE(c.cpu_s_per_gib_small, 0.0);
  EXPECT_LT(c.cpu_s_per_gib_small, 100.0) << "8 MiB cannot take seconds to touch";
  EXPECT_EQ(c.huge, c.cpu_s_per_gib_small >= 1.0);
  const std::string text = describe(c);
  EXPECT_NE(text.find("probe: first touch of 4 KiB pages"), std::string::npos) << text;
  EXPECT_EQ(text.rfind(c.huge ? "huge pages" : "4 KiB pages", 0), 0u) << text;
}

TEST(Pages, OneSlowReadingDoesNotChooseHugePages) {
  auto scripted = [](std::vector<double> values, int& calls) {
    return [values, &calls] { return values[static_cast<size_t>(calls++)]; };
  };
  int calls = 0;
  PageChoice c = decide_page_size(scripted({0.4}, calls));
  EXPECT_FALSE(c.huge);
  EXPECT_EQ(calls, 1) << "a cheap first reading is the answer";
  EXPECT_DOUBLE_EQ(c.cpu_s_per_gib_small, 0.4);

  calls = 0;
  c = decide_page_size(scripted({2.5, 0.5}, calls));
  EXPECT_FALSE(c.huge) << "a host stall during the first reading must not switch to huge pages";
  EXPECT_EQ(calls, 2);
  EXPECT_DOUBLE_EQ(c.cpu_s_per_gib_small, 0.5);

  calls = 0;
  c = decide_page_size(scripted({3.1, 2.9, 3.3}, calls));
  EXPECT_TRUE(c.huge) << "consistently expensive 4 KiB pages";
  EXPECT_EQ(calls, 3);
  EXPECT_DOUBLE_EQ(c.cpu_s_per_gib_small, 2.9);

  calls = 0;
  c = decide_page_size(scripted({1.8, -1.0}, calls));
  EXPECT_FALSE(c.huge) << "a failed probe keeps 4 KiB pages";
  EXPECT_EQ(calls, 2);
}
