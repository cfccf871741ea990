// AVX2 bit packing: a compare (x < 0, ordered: NaN and -0.0 give +1) and vmovmskps turn eight
// floats into eight bits at a time; unpacking broadcasts a word and tests one bit per lane.
#include <immintrin.h>

#include <cstring>

#include "bitpack/bitpack.h"

namespace onebit {
namespace bitpack {
namespace {

inline uint32_t neg_mask8(const float* p, __m256 zero) {
  return static_cast<uint32_t>(
      _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), zero, _CMP_LT_OQ)));
}

void pack_row(const float* x, int64_t n, uint32_t* out) {
  const __m256 zero = _mm256_setzero_ps();
  const int64_t full = n / 32;
  for (int64_t w = 0; w < full; ++w) {
    const float* p = x + w * 32;
    out[w] = neg_mask8(p, zero) | (neg_mask8(p + 8, zero) << 8) | (neg_mask8(p + 16, zero) << 16) |
             (neg_mask8(p + 24, zero) << 24);
  }
  if (full * 32 < n) {
    uint32_t word = 0;
    for (int64_t i = full * 32; i < n; ++i)
      if (x[i] < 0.0f) word |= uint32_t{1} << (i % 32);
    out[full] = word;
  }
}

void unpack_row(const uint32_t* packed, int64_t n, float* out) {
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
  const int64_t full = n / 32;
  for (int64_t w = 0; w < full; ++w) {
    const uint32_t word = packed[w];
    for (int g = 0; g < 4; ++g) {
      const __m256i v = _mm256_set1_epi32(static_cast<int>((word >> (8 * g)) & 0xffu));
      const __m256i is_set = _mm256_cmpeq_epi32(_mm256_and_si256(v, lane_bits), lane_bits);
      _mm256_storeu_ps(out + w * 32 + g * 8, _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(is_set)));
    }
  }
  for (int64_t i = full * 32; i < n; ++i) out[i] = ((packed[i / 32] >> (i % 32)) & 1u) ? -1.0f : 1.0f;
}

}  // namespace

void pack_avx2(const float* x, int64_t outer, int64_t n, int64_t inner, uint32_t* out) {
  const int64_t nw = words_for(n);
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o) pack_row(x + o * n, n, out + o * nw);
    return;
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t o = 0; o < outer; ++o) {
    const float* xo = x + o * n * inner;
    uint32_t* po = out + o * nw * inner;
    for (int64_t w = 0; w < nw; ++w) {
      const int64_t i0 = w * 32, bits = (n - i0 < 32) ? n - i0 : 32;
      int64_t j = 0;
      for (; j + 8 <= inner; j += 8) {
        __m256i acc = _mm256_setzero_si256();
        for (int64_t b = 0; b < bits; ++b) {
          const __m256 m = _mm256_cmp_ps(_mm256_loadu_ps(xo + (i0 + b) * inner + j), zero, _CMP_LT_OQ);
          acc = _mm256_or_si256(acc, _mm256_and_si256(_mm256_castps_si256(m),
                                                      _mm256_set1_epi32(static_cast<int>(1u << b))));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(po + w * inner + j), acc);
      }
      for (; j < inner; ++j) {
        uint32_t word = 0;
        for (int64_t b = 0; b < bits; ++b)
          if (xo[(i0 + b) * inner + j] < 0.0f) word |= uint32_t{1} << b;
        po[w * inner + j] = word;
      }
    }
  }
}

void unpack_avx2(const uint32_t* packed, int64_t outer, int64_t n, int64_t inner, float* out) {
  const int64_t nw = words_for(n);
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o) unpack_row(packed + o * nw, n, out + o * n);
    return;
  }
  const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
  for (int64_t o = 0; o < outer; ++o) {
    const uint32_t* po = packed + o * nw * inner;
    float* xo = out + o * n * inner;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t* w = po + (i / 32) * inner;
      const uint32_t bit = uint32_t{1} << (i % 32);
      const __m256i vbit = _mm256_set1_epi32(static_cast<int>(bit));
      int64_t j = 0;
      for (; j + 8 <= inner; j += 8) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j));
        const __m256i is_set = _mm256_cmpeq_epi32(_mm256_and_si256(v, vbit), vbit);
        _mm256_storeu_ps(xo + i * inner + j, _mm256_blendv_ps(plus, minus, _mm256_castsi256_ps(is_set)));
      }
      for (; j < inner; ++j) xo[i * inner + j] = (w[j] & bit) ? -1.0f : 1.0f;
    }
  }
}

}  // namespace bitpack
}  // namespace onebit
