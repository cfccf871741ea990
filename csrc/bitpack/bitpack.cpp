// Run-time choice between the bit-packing variants (no AVX-512 variant: AVX2 serves there).
#include "bitpack/bitpack.h"

#include "dispatch.h"

namespace onebit {

void pack_bits(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out) {
  switch (active_isa()) {
#if defined(ONEBIT_X86)
    case Isa::Avx512:
    case Isa::Avx2: return bitpack::pack_avx2(x, outer, n, inner, out);
#endif
#if defined(ONEBIT_ARM64)
    case Isa::Neon: return bitpack::pack_neon(x, outer, n, inner, out);
#endif
    default: return bitpack::pack_reference(x, outer, n, inner, out);
  }
}

void unpack_bits(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out) {
  switch (active_isa()) {
#if defined(ONEBIT_X86)
    case Isa::Avx512:
    case Isa::Avx2: return bitpack::unpack_avx2(packed, outer, n, inner, out);
#endif
#if defined(ONEBIT_ARM64)
    case Isa::Neon: return bitpack::unpack_neon(packed, outer, n, inner, out);
#endif
    default: return bitpack::unpack_reference(packed, outer, n, inner, out);
  }
}

}  // namespace onebit
