#pragma once
// Page size of large buffers. First-touch page faults of fresh buffers cost as much CPU as the arithmetic on some
// VMs, and which page size is cheaper depends on the host: 2 MiB transparent huge pages cost 2.1 s/GiB and 4 KiB
// pages 0.38 s/GiB on one of our VM kinds, 1.5-2.4 against 3.1 s/GiB on another (docs/performance.md).
#include <cstddef>
#include <functional>
#include <string>

namespace amosprep {

/// Size of a transparent huge page (x86-64); large buffers are aligned to it.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

/// What the start-up probe measured and chose.
struct PageChoice {
  bool huge = false;
  double cpu_s_per_gib_small = -1.0;  ///< first touch of fresh 4 KiB pages (-1: not measured)
  std::string reason;                 ///< "probe", "AMOSPREP_HUGEPAGES=0", ...
};

/// Decides whether this run puts large buffers on huge pages: AMOSPREP_HUGEPAGES=1 / =0 (or the older
/// AMOSPREP_NO_HUGEPAGES=1) force it; otherwise `probe_bytes` of fresh 4 KiB pages are first-touched and huge
/// pages are used when that costs 1 CPU s/GiB or more (~12 ms where it does not).
PageChoice choose_page_size(size_t probe_bytes = size_t{32} << 20);

/// The probe's decision from successive readings of `probe` (CPU s/GiB to first-touch 4 KiB pages, < 0 if it
/// failed): huge pages only if `readings` readings are all at least 1 s/GiB, so that one reading slowed by the host
/// (a descheduled vCPU) does not switch a run to huge pages. Stops at the first cheap or failed reading; reports
/// the smallest reading.
PageChoice decide_page_size(const std::function<double()>& probe, int readings = 3);

/// The choice as text for the run log ("4 KiB pages (probe: first touch of 4 KiB pages 0.38 CPU s/GiB)").
std::string describe(const PageChoice& c);

/// Called first thing in main(): makes the choice once per run (a re-executed process finds it in
/// AMOSPREP_PAGE_CHOICE, which the run log reports) and, for huge pages, re-executes the program with
/// glibc.malloc.hugetlb=1 added to GLIBC_TUNABLES (glibc reads its tunables only at process start). Returns only
/// when no re-exec happened or it failed (then 4 KiB pages are used).
void apply_page_choice(char** argv);

/// Whether this process runs with huge pages: glibc.malloc.hugetlb=1 in GLIBC_TUNABLES (how main() hands the
/// choice to the process it re-executes).
bool huge_pages_enabled();

/// Asks for transparent huge pages on [p, p + bytes) when huge_pages_enabled(); otherwise nothing.
void advise_huge_pages(void* p, size_t bytes);

}  // namespace amosprep
