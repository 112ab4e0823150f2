#pragma once
// Instruction-set variants of the hot kernels. Sources listed in CMake's AMOSPREP_ISA_SOURCES are compiled twice:
// once for baseline x86-64 (namespace isa_base) and once for x86-64-v3 = AVX2/FMA/BMI2 (namespace isa_v3, built
// with AMOSPREP_ISA_V3 defined). Their public functions pick a variant at run time, so one binary runs everywhere
// and uses the wider vectors where the CPU has them. FMA contraction stays off in both: results are identical.

#if defined(AMOSPREP_ISA_V3)
#define AMOSPREP_ISA_NS isa_v3
#else
#define AMOSPREP_ISA_NS isa_base
#endif

namespace amosprep {

enum class Isa { baseline, x86_64_v3 };

/// The variant in use, decided once per process: x86-64-v3 when the binary has it and the CPU supports it, unless
/// the environment variable AMOSPREP_ISA is `baseline`.
Isa active_isa();

/// "baseline" or "x86-64-v3".
const char* isa_name(Isa isa);

/// For tests: switch the variant (v3 only where it can run); returns the variant now active.
Isa set_active_isa(Isa isa);

}  // namespace amosprep

/// Calls `fn` of the active variant, e.g. AMOSPREP_ISA_DISPATCH(resize_data, in, shape, 3, out).
#if defined(AMOSPREP_HAVE_ISA_V3)
#define AMOSPREP_ISA_DISPATCH(fn, ...)                                                                     \
  (::amosprep::active_isa() == ::amosprep::Isa::x86_64_v3 ? ::amosprep::isa_v3::fn(__VA_ARGS__) \
                                                            : ::amosprep::isa_base::fn(__VA_ARGS__))
#else
#define AMOSPREP_ISA_DISPATCH(fn, ...) ::amosprep::isa_base::fn(__VA_ARGS__)
#endif
