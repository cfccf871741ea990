#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace onebit {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(ONEBIT_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi2");
  f.avx512_vpopcnt = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                     __builtin_cpu_supports("avx512vpopcntdq") &&
                     __builtin_cpu_supports("avx512bitalg");
  f.avx512_vnni = f.avx512_vpopcnt && __builtin_cpu_supports("avx512vnni");
#endif
#if defined(ONEBIT_ARM64)
  f.neon = true;
#endif
  return f;
}

Isa best_available() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512_vpopcnt) return Isa::Avx512;
  if (f.avx2) return Isa::Avx2;
  if (f.neon) return Isa::Neon;
  return Isa::Reference;
}

Isa from_env() {
  Isa best = best_available();
  const char* env = std::getenv("ONEBIT_KERNELS");
  if (env == nullptr || *env == '\0') return best;
  Isa want;
  try {
    want = isa_from_name(env);
  } catch (const std::invalid_argument&) {
    return best;  // an unknown value is ignored (the Python side warns about it)
  }
  if (want == Isa::Reference) return want;
  return isa_available(want) ? want : best;
}

std::atomic<int> g_forced{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool isa_available(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Reference: return true;
    case Isa::Avx2: return f.avx2;
    case Isa::Avx512: return f.avx512_vpopcnt;
    case Isa::Neon: return f.neon;
  }
  return false;
}

Isa active_isa() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<Isa>(forced);
  static const Isa env_isa = from_env();
  return env_isa;
}

void set_isa(Isa isa) {
  if (!isa_available(isa))
    throw std::invalid_argument(std::string("this CPU does not support the '") + isa_name(isa) +
                                "' kernels");
  g_forced.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void reset_isa() { g_forced.store(-1, std::memory_order_relaxed); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Reference: return "reference";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  if (name == "reference" || name == "ref") return Isa::Reference;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  if (name == "neon") return Isa::Neon;
  throw std::invalid_argument("unknown kernel ISA '" + name +
                              "'; known: reference, avx2, avx512, neon");
}

}  // namespace onebit
