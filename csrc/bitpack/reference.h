// The plain scalar bit packing that defines the result of every ISA variant (see bitpack.h for the
// layout and the bit convention).
#pragma once
#include <cstdint>

namespace onebit {
namespace bitpack {

// out[o, i / 32, j] bit (i % 32) = (x[o, i, j] < 0); out is [outer, words_for(n), inner].
void pack_reference(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out);
// out[o, i, j] = bit ? -1.0f : +1.0f; out is [outer, n, inner].
void unpack_reference(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out);

}  // namespace bitpack
}  // namespace onebit
