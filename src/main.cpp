#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "amosprep/cli.hpp"

int main(int argc, char** argv) {
  // Put large malloc'ed buffers on transparent huge pages (glibc >= 2.35 tunable; read only at process start,
  // hence the re-exec). First-touch page faults of fresh multi-hundred-MB buffers otherwise cost about as much
  // CPU as the arithmetic (bench/, docs/performance.md). AMOSPREP_NO_HUGEPAGES=1 turns this off.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (!std::getenv("AMOSPREP_NO_HUGEPAGES") && (!tunables || !std::strstr(tunables, "glibc.malloc.hugetlb"))) {
    const std::string value = tunables ? std::string(tunables) + ":glibc.malloc.hugetlb=1" : "glibc.malloc.hugetlb=1";
    if (::setenv("GLIBC_TUNABLES", value.c_str(), 1) == 0) ::execv("/proc/self/exe", argv);
    // exec failed: carry on without huge pages
  }
  return amosprep::cli_main(argc, argv);
}
