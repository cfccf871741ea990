// CPU features -> which kernel family runs. Setting the environment variable
// ONEBIT_KERNELS=reference (read once, at first use) forces the plain reference kernels;
// ONEBIT_KERNELS=avx2 / avx512 / neon caps the choice at that ISA (if the CPU has it).
#pragma once
#include <string>

namespace onebit {

enum class Isa : int { Reference = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

struct CpuFeatures {
  bool avx2 = false;          // AVX2 + FMA + POPCNT + BMI2
  bool avx512_vpopcnt = false;  // AVX-512 F/BW/VL/DQ + VPOPCNTDQ + BITALG
  bool avx512_vnni = false;   // AVX-512 F/BW/VL/DQ + VNNI (vpdpbusd: the int8 kernels)
  bool neon = false;          // AArch64 Advanced SIMD
};

const CpuFeatures& cpu_features();
// The ISA the dispatcher uses now: the best the CPU has, capped by ONEBIT_KERNELS and by
// set_isa(). Kernels without a variant for that ISA fall back to the next lower one they have.
Isa active_isa();
// Forces an ISA (for tests and benchmarks). Throws std::invalid_argument if the CPU lacks it.
void set_isa(Isa isa);
// Back to automatic selection (respecting ONEBIT_KERNELS).
void reset_isa();
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument on an unknown name
bool isa_available(Isa isa);

// Whether kernels that have only an AVX2 variant and a reference run the AVX2 one (the active ISA
// is AVX2 or better).
inline bool avx2_or_better() {
#if defined(ONEBIT_X86)
  const Isa isa = active_isa();
  return isa == Isa::Avx2 || isa == Isa::Avx512;
#else
  return false;
#endif
}

// Whether the int8 kernels run their AVX-512 VNNI variant: the active ISA is AVX-512 and the CPU
// has VNNI too.
inline bool avx512_vnni_active() {
#if defined(ONEBIT_X86)
  return active_isa() == Isa::Avx512 && cpu_features().avx512_vnni;
#else
  return false;
#endif
}

}  // namespace onebit
