#include "amosprep/isa.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace amosprep {
namespace {

bool v3_runs_here() {
#if defined(AMOSPREP_HAVE_ISA_V3)
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v3");
#else
  return false;
#endif
}

Isa detect() {
  const char* want = std::getenv("AMOSPREP_ISA");
  if (want && std::strcmp(want, "baseline") == 0) return Isa::baseline;
  return v3_runs_here() ? Isa::x86_64_v3 : Isa::baseline;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(detect())};
  return isa;
}

}  // namespace

Isa active_isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }

const char* isa_name(Isa isa) { return isa == Isa::x86_64_v3 ? "x86-64-v3" : "baseline"; }

Isa set_active_isa(Isa isa) {
  if (isa == Isa::x86_64_v3 && !v3_runs_here()) isa = Isa::baseline;
  current().store(static_cast<int>(isa));
  return isa;
}

}  // namespace amosprep
