#include "amosprep/pages.hpp"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace amosprep {
namespace {

// First-touch CPU seconds per GiB of 4 KiB pages from which huge pages are used instead (bare metal: ~0.25).
constexpr double kExpensiveSmallPages = 1.0;

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// CPU seconds per GiB to first-touch `bytes` of a fresh anonymous mapping of 4 KiB pages (-1 if mapping failed).
double small_page_first_touch(size_t bytes) {
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1.0;
  double cost = -1.0;
  if (::madvise(m, bytes, MADV_NOHUGEPAGE) == 0) {
    const double t0 = thread_cpu_seconds();
    for (size_t i = 0; i < bytes; i += 4096) static_cast<volatile char*>(m)[i] = 1;
    cost = (thread_cpu_seconds() - t0) * static_cast<double>(size_t{1} << 30) / static_cast<double>(bytes);
  }
  ::munmap(m, bytes);
  return cost;
}

}  // namespace

PageChoice choose_page_size(size_t probe_bytes) {
  PageChoice c;
  const char* want = std::getenv("AMOSPREP_HUGEPAGES");
  if (want && (std::strcmp(want, "0") == 0 || std::strcmp(want, "1") == 0)) {
    c.huge = want[0] == '1';
    c.reason = std::string("AMOSPREP_HUGEPAGES=") + want;
    return c;
  }
  if (const char* no = std::getenv("AMOSPREP_NO_HUGEPAGES"); no && std::strcmp(no, "1") == 0) {
    c.reason = "AMOSPREP_NO_HUGEPAGES=1";
    return c;
  }
  // Only 4 KiB pages are probed: a short probe of huge pages gets the kernel's recently freed blocks, which are
  // cheap where later ones are not (2.1 s/GiB past the first ~100 MiB on one VM kind), so it cannot predict them.
  // Huge pages pay off where 4 KiB faults are expensive (3.1 s/GiB on another VM kind, huge pages 1.5-2.4).
  int reading = 0;
  return decide_page_size([&] { return small_page_first_touch(reading++ == 0 ? probe_bytes : probe_bytes / 2); });
}

PageChoice decide_page_size(const std::function<double()>& probe, int readings) {
  PageChoice c;
  c.reason = "probe";
  for (int i = 0; i < std::max(1, readings); ++i) {
    const double cost = probe();
    if (i == 0 || cost < c.cpu_s_per_gib_small) c.cpu_s_per_gib_small = cost;  // a failure (< 0) ends it too
    if (c.cpu_s_per_gib_small < kExpensiveSmallPages) break;  // cheap (or failed): 4 KiB pages
  }
  c.huge = c.cpu_s_per_gib_small >= kExpensiveSmallPages;
  return c;
}

std::string describe(const PageChoice& c) {
  char buf[160];
  if (c.cpu_s_per_gib_small >= 0)
    std::snprintf(buf, sizeof buf, "%s pages (%s: first touch of 4 KiB pages %.2f CPU s/GiB)", c.huge ? "huge" : "4 KiB",
                  c.reason.c_str(), c.cpu_s_per_gib_small);
  else
    std::snprintf(buf, sizeof buf, "%s pages (%s)", c.huge ? "huge" : "4 KiB", c.reason.c_str());
  return buf;
}

void apply_page_choice(char** argv) {
  if (std::getenv("AMOSPREP_PAGE_CHOICE")) return;
  const PageChoice choice = choose_page_size();
  ::setenv("AMOSPREP_PAGE_CHOICE", describe(choice).c_str(), 1);
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (!choice.huge || (tunables && std::strstr(tunables, "glibc.malloc.hugetlb"))) return;
  const std::string value = tunables ? std::string(tunables) + ":glibc.malloc.hugetlb=1" : "glibc.malloc.hugetlb=1";
  if (::setenv("GLIBC_TUNABLES", value.c_str(), 1) == 0) ::execv("/proc/self/exe", argv);
}

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* t = std::getenv("GLIBC_TUNABLES");
    return t != nullptr && std::strstr(t, "glibc.malloc.hugetlb=1") != nullptr;
  }();
  return enabled;
}

void advise_huge_pages(void* p, size_t bytes) {
  if (!huge_pages_enabled()) return;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + 4095) & ~uintptr_t{4095};
  const uintptr_t e = reinterpret_cast<uintptr_t>(p) + bytes;
  if (bytes >= kHugePageBytes && e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
}

}  // namespace amosprep
