// The start-up choice of the page size for large buffers (amosprep/pages.hpp).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

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
