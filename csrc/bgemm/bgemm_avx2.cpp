// AVX2 binary GEMM tile: popcount(a XOR b) with the pshufb nibble table (Mula, Kurz, Lemire 2018,
// "Faster population counts using AVX2 instructions").
//
// Panel format: every 8-word (256-bit) chunk of a row is stored as two 32-byte vectors, the low
// nibbles (v & 0x0f) and the high nibbles ((v >> 4) & 0x0f) of its bytes; a trailing 4-word chunk
// likewise as two 16-byte vectors (kp is a multiple of 4 words). Splitting once while packing
// takes the and/shift/and out of the inner loop: since (a ^ b) & 0x0f = a_lo ^ b_lo, a tile pair
// costs per chunk two vpxor, two vpshufb (table of nibble popcounts) and two vpaddb. Byte counts
// grow by at most 8 per chunk, so they are widened (vpsadbw) every 31 chunks, before 255.
#include <immintrin.h>

#include <cstring>

#include "bgemm/microkernel.h"

namespace onebit {
namespace {

constexpr int kMR = 2;
constexpr int kNR = 4;
constexpr int64_t kFlush = 31;  // chunks before the byte counters could overflow (31 * 8 < 256)

void pack_row_avx2(const uint32_t* src, int64_t kp, uint8_t* dst) {
  const int64_t full = kp / 8;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int64_t c = 0; c < full; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 8 * c));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c), _mm256_and_si256(v, m4));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c + 32),
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  }
  if (kp % 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 8 * full));
    const __m128i n4 = _mm_set1_epi8(0x0f);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 64 * full), _mm_and_si128(v, n4));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 64 * full + 16),
                     _mm_and_si128(_mm_srli_epi16(v, 4), n4));
  }
}

inline int64_t hsum_sad256(__m256i bytes) {
  const __m256i s = _mm256_sad_epu8(bytes, _mm256_setzero_si256());
  const __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return _mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1);
}

inline int64_t hsum_sad128(__m128i bytes) {
  const __m128i s = _mm_sad_epu8(bytes, _mm_setzero_si128());
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

template <int MR, int NR>
void tile_avx2(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t rb = kp * 8;  // panel bytes per row
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  int64_t sums[MR][NR] = {};
  const int64_t full = kp / 8;
  for (int64_t k0 = 0; k0 < full; k0 += kFlush) {
    const int64_t k1 = k0 + kFlush < full ? k0 + kFlush : full;
    __m256i acc[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; ++k) {
      __m256i alo[MR], ahi[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        alo[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + i * rb + 64 * k));
        ahi[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + i * rb + 64 * k + 32));
      }
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m256i blo = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * rb + 64 * k));
        const __m256i bhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * rb + 64 * k + 32));
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm256_add_epi8(acc[i][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(alo[i], blo)));
          acc[i][j] = _mm256_add_epi8(acc[i][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ahi[i], bhi)));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) sums[i][j] += hsum_sad256(acc[i][j]);
  }
  if (kp % 8) {
    const int64_t off = 64 * full;
    const __m128i lut128 = _mm256_castsi256_si128(lut);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m128i alo = _mm_load_si128(reinterpret_cast<const __m128i*>(a + i * rb + off));
      const __m128i ahi = _mm_load_si128(reinterpret_cast<const __m128i*>(a + i * rb + off + 16));
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m128i blo = _mm_load_si128(reinterpret_cast<const __m128i*>(b + j * rb + off));
        const __m128i bhi = _mm_load_si128(reinterpret_cast<const __m128i*>(b + j * rb + off + 16));
        const __m128i cnt = _mm_add_epi8(_mm_shuffle_epi8(lut128, _mm_xor_si128(alo, blo)),
                                         _mm_shuffle_epi8(lut128, _mm_xor_si128(ahi, bhi)));
        sums[i][j] += hsum_sad128(cnt);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = static_cast<int32_t>(sums[i][j]);
}

const PopcountKernel kKernel = {"avx2-mula-2x4", kMR, kNR, 4, 8, pack_row_avx2, tile_avx2<kMR, kNR>};

}  // namespace

const PopcountKernel& popcount_kernel_avx2() { return kKernel; }

}  // namespace onebit
