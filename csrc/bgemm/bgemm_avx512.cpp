// AVX-512 binary GEMM tile with VPOPCNTDQ: per 512-bit chunk and tile pair one vpxorq, one
// vpopcntq and one vpaddq into 64-bit lanes (no overflow to manage). Panels hold the packed words
// as they are (rows 32-byte aligned, hence the unaligned loads); kp is a multiple of 8 words, a
// trailing 8-word chunk uses the 256-bit forms (VL).
#include <immintrin.h>

#include <cstring>
#include <vector>

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


// Broadcast tile: the 64-bit words of eight B rows (filters) side by side in the lanes of one zmm,
// each A row's word (a pixel's patch) broadcast against them. Per 64-bit word of the row and
// tile, one vpbroadcastq per A row, one load per group of eight B rows, then one vpxorq /
// vpopcntq / vpaddq per group and A row: each lane's total belongs to one output, so the result
// needs no horizontal reduction (vpmovqd narrows a group's eight totals to int32), and rows are
// padded to 64 bits only. The chunked tile above pads rows to 256 bits and reduces every output
// horizontally, which costs as much as the popcounts on short rows (3x3 convs over 64 or 128
// channels: 9 or 18 words of 64 bits).
//
// A rows: plain words (pack_row_plain), kp a multiple of 2. B panels (finish_b_bcast8), per group
// of eight rows: per 64-bit word q a 64-byte block, row r's word q at byte 8r. A group takes
// 8 * kp * 4 bytes, as eight rows do row by row.

void finish_b_bcast8(uint8_t* panel, int64_t rows, int64_t kp) {
  const int64_t rb = kp * 4, words = kp / 2;
  std::vector<uint8_t> group(static_cast<size_t>(8 * rb));
  for (int64_t g = 0; g < rows; g += 8) {
    uint8_t* p = panel + g * rb;
    std::memcpy(group.data(), p, group.size());
    for (int64_t q = 0; q < words; ++q)
      for (int r = 0; r < 8; ++r) std::memcpy(p + 64 * q + 8 * r, group.data() + r * rb + 8 * q, 8);
  }
}

// MR rows of A against G groups of eight B rows (NR = 8 * G): MR * G accumulators. On Zen 4
// (1 thread, ResNet-18's binary convs) 8 x 16 and 4 x 32 are the fastest, within 5% of each other
// on every layer (8 x 16 ahead on 56x56x64, 4 x 32 on the deeper ones); 6 x 32 ties them and
// 12 x 16 is 5-15% slower.
template <int MR, int G>
void tile_bcast8(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t words = kp / 2, rb = kp * 4;
  __m512i acc[MR][G];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) acc[i][g] = _mm512_setzero_si512();
  for (int64_t q = 0; q < words; ++q) {
    __m512i bv[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) bv[g] = _mm512_loadu_si512(b + g * 8 * rb + 64 * q);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      long long w;
      std::memcpy(&w, a + i * rb + 8 * q, 8);
      const __m512i av = _mm512_set1_epi64(w);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g)
        acc[i][g] = _mm512_add_epi64(acc[i][g], _mm512_popcnt_epi64(_mm512_xor_si512(av, bv[g])));
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g)  // every total fits 32 bits
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * ldc + 8 * g), _mm512_maskz_cvtepi64_epi32(0xff, acc[i][g]));
}


const PopcountKernel kKernel = {"avx512-vpopcntdq-4x4", kMR, kNR, 8, 4, pack_row_plain,
                                tile_avx512<kMR, kNR>, row_popcounts_popcnt,
                                direct_popcnt_x86, nullptr};

// k_align 2: rows padded to whole 64-bit words only; B panels 64-byte aligned per group.
const PopcountKernel kBcast8x16 = {"avx512-bcast-8x16", 8, 16, 2, 4, pack_row_plain,
                                   tile_bcast8<8, 2>, row_popcounts_popcnt, direct_popcnt_x86,
                                   finish_b_bcast8};
const PopcountKernel kBcast4x32 = {"avx512-bcast-4x32", 4, 32, 2, 4, pack_row_plain,
                                   tile_bcast8<4, 4>, row_popcounts_popcnt, direct_popcnt_x86,
                                   finish_b_bcast8};

}  // namespace

const PopcountKernel& popcount_kernel_avx512() { return kKernel; }
const PopcountKernel& popcount_kernel_avx512_bcast8x16() { return kBcast8x16; }
const PopcountKernel& popcount_kernel_avx512_bcast4x32() { return kBcast4x32; }

}  // namespace onebit
