// NEON bit packing (AArch64): vcltq_f32 (x < 0, false for NaN and -0.0) gives all-ones lanes;
// masking each lane with its bit weight and a horizontal add (vaddvq) forms four bits at a time.
#include <arm_neon.h>

#include "bitpack/bitpack.h"

namespace onebit {
namespace bitpack {
namespace {

inline uint32_t neg_bits4(const float* p, uint32x4_t weights) {
  const uint32x4_t m = vcltq_f32(vld1q_f32(p), vdupq_n_f32(0.0f));
  return vaddvq_u32(vandq_u32(m, weights));
}

}  // namespace

void pack_neon(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out) {
  if (inner != 1) {
    pack_reference(x, outer, n, inner, out);
    return;
  }
  const uint32_t w0[4] = {1u, 2u, 4u, 8u};
  const uint32x4_t weights = vld1q_u32(w0);
  const int64_t nw = words_for(n), full = n / 32;
  for (int64_t o = 0; o < outer; ++o) {
    const float* xr = x + o * n;
    uint32_t* pr = out + o * nw;
    for (int64_t w = 0; w < full; ++w) {
      uint32_t word = 0;
      for (int g = 0; g < 8; ++g) word |= neg_bits4(xr + w * 32 + g * 4, weights) << (4 * g);
      pr[w] = word;
    }
    if (full < nw) {
      uint32_t word = 0;
      for (int64_t i = full * 32; i < n; ++i)
        if (xr[i] < 0.0f) word |= uint32_t{1} << (i % 32);
      pr[full] = word;
    }
  }
}

void unpack_neon(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out) {
  if (inner != 1) {
    unpack_reference(packed, outer, n, inner, out);
    return;
  }
  const uint32_t w0[4] = {1u, 2u, 4u, 8u};
  const uint32x4_t weights = vld1q_u32(w0);
  const float32x4_t plus = vdupq_n_f32(1.0f), minus = vdupq_n_f32(-1.0f);
  const int64_t nw = words_for(n), full = n / 32;
  for (int64_t o = 0; o < outer; ++o) {
    const uint32_t* pr = packed + o * nw;
    float* xr = out + o * n;
    for (int64_t w = 0; w < full; ++w) {
      for (int g = 0; g < 8; ++g) {
        const uint32x4_t v = vdupq_n_u32((pr[w] >> (4 * g)) & 0xfu);
        const uint32x4_t is_set = vtstq_u32(v, weights);
        vst1q_f32(xr + w * 32 + g * 4, vbslq_f32(is_set, minus, plus));
      }
    }
    for (int64_t i = full * 32; i < n; ++i) xr[i] = ((pr[i / 32] >> (i % 32)) & 1u) ? -1.0f : 1.0f;
  }
}

}  // namespace bitpack
}  // namespace onebit
