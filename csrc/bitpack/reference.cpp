// Plain scalar bit packing: the definition every ISA variant is tested against.
#include <cstring>

#include "bitpack/reference.h"

#include "bitpack/bitpack.h"

namespace onebit {
namespace bitpack {

void pack_reference(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out) {
  const int64_t nw = words_for(n);
  std::memset(out, 0, sizeof(uint32_t) * static_cast<size_t>(outer * nw * inner));
  for (int64_t o = 0; o < outer; ++o) {
    const float* xo = x + o * n * inner;
    uint32_t* po = out + o * nw * inner;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bit = uint32_t{1} << (i % 32);
      uint32_t* w = po + (i / 32) * inner;
      for (int64_t j = 0; j < inner; ++j)
        if (xo[i * inner + j] < 0.0f) w[j] |= bit;
    }
  }
}

void unpack_reference(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner,
                      float* out) {
  const int64_t nw = words_for(n);
  for (int64_t o = 0; o < outer; ++o) {
    const uint32_t* po = packed + o * nw * inner;
    float* xo = out + o * n * inner;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t* w = po + (i / 32) * inner;
      const int s = static_cast<int>(i % 32);
      for (int64_t j = 0; j < inner; ++j) xo[i * inner + j] = ((w[j] >> s) & 1u) ? -1.0f : 1.0f;
    }
  }
}

}  // namespace bitpack
}  // namespace onebit
