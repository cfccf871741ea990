// Packing float32 values into sign bits and back (onebit's bit convention).
//
// A packed bit is 1 for a negative value (x < 0, i.e. -1) and 0 otherwise (+1, so sign(0) = +1;
// -0.0 and NaN also give 0). Element i of the packed axis goes to word i / 32, bit i % 32 (LSB
// first), in uint32 words; the tail bits of the last word are 0.
//
// The arrays are viewed as [outer, n, inner] (row-major, contiguous): packing turns the middle
// axis of length n into words_for(n) words, so out is [outer, words_for(n), inner]. inner == 1 is
// the common case (packing the last axis); inner > 1 packs an axis that is not the last one.
#pragma once
#include <cstdint>

#include "bitpack/reference.h"

namespace onebit {

constexpr int64_t words_for(int64_t n) { return (n + 31) / 32; }

// out[o, i / 32, j] bit (i % 32) = (x[o, i, j] < 0). Dispatches on the active ISA.
void pack_bits(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out);

// out[o, i, j] = bit ? -1.0f : +1.0f for i < n. Dispatches on the active ISA.
void unpack_bits(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out);

namespace bitpack {
// The ISA variants, declared on the architectures that build them (reference.h has the reference).
#if defined(ONEBIT_X86)
void pack_avx2(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out);
void unpack_avx2(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out);
#endif
#if defined(ONEBIT_ARM64)
void pack_neon(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out);
void unpack_neon(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out);
#endif
}  // namespace bitpack

}  // namespace onebit
