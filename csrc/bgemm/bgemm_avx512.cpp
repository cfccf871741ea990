// AVX-512 binary GEMM tile with VPOPCNTDQ: per 512-bit chunk and tile pair one vpxorq, one
// vpopcntq and one vpaddq into 64-bit lanes (no overflow to manage). Panels hold the packed words
// as they are (rows 32-byte aligned, hence the unaligned loads); kp is a multiple of 8 words, a
// trailing 8-word chunk uses the 256-bit forms (VL).
#include <immintrin.h>

#include <cstring>

#include "bgemm/microkernel.h"

namespace onebit {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 4;


inline int64_t hsum256_epi64(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

inline int64_t hsum512_epi64(__m512i v) {
  // The zero-masking extracts (rather than the cast / plain extract) keep GCC 12's headers from
  // warning about an uninitialised pass-through operand.
  return hsum256_epi64(_mm256_add_epi64(_mm512_maskz_extracti64x4_epi64(0xff, v, 0),
                                        _mm512_maskz_extracti64x4_epi64(0xff, v, 1)));
}

template <int MR, int NR>
void tile_avx512(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t rb = kp * 4;
  const int64_t full = kp / 16;
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  for (int64_t k = 0; k < full; ++k) {
    __m512i av[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_si512(a + i * rb + 64 * k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const __m512i bv = _mm512_loadu_si512(b + j * rb + 64 * k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv)));
    }
  }
  int64_t sums[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) sums[i][j] = hsum512_epi64(acc[i][j]);
  if (kp % 16) {
    const int64_t off = 64 * full;
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * rb + off));
      for (int j = 0; j < NR; ++j) {
        const __m256i bv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * rb + off));
        sums[i][j] += hsum256_epi64(_mm256_popcnt_epi64(_mm256_xor_si256(av, bv)));
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = static_cast<int32_t>(sums[i][j]);
}


const PopcountKernel kKernel = {"avx512-vpopcntdq-4x4", kMR, kNR, 8, 4, pack_row_plain,
                                tile_avx512<kMR, kNR>, row_popcounts_popcnt,
                                direct_popcnt_x86, nullptr};

}  // namespace

const PopcountKernel& popcount_kernel_avx512() { return kKernel; }

}  // namespace onebit
