// AVX2 binary GEMM tile: popcount(a XOR b) with the pshufb nibble table (Mula, Kurz, Lemire 2018,
// "Faster population counts using AVX2 instructions").
//
// Panel format: every 8-word (256-bit) chunk of a row is stored as two 32-byte vectors, the low
// nibbles (v & 0x0f) and the high nibbles ((v >> 4) & 0x0f) of its bytes; kp is a multiple of 8
// words (a half chunk of zeros costs less than a separate 128-bit pass). Splitting once while
// packing takes the and/shift/and out of the inner loop: since (a ^ b) & 0x0f = a_lo ^ b_lo, a
// tile pair costs per chunk two vpxor, two vpshufb (table of nibble popcounts) and two vpaddb.
// Byte counts grow by at most 8 per chunk, so they are widened (vpsadbw) every 31 chunks, before
// they could pass 255. Rows of at most 4 words use a scalar POPCNT tile on plain panels instead
// (see popcount_kernel_avx2_short); rows of 8q + 1 or 8q + 2 words end in a one-word tail that
// four output pairs share a vector for (see tile_avx2_tail2), instead of a chunk mostly zeros.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "bgemm/microkernel.h"

namespace onebit {
namespace {

constexpr int kMR = 3;
constexpr int kNR = 4;
constexpr int64_t kFlush = 31;  // steps per flush of the byte counters: a byte gains at most 8
                                // per chunk (chunked tiles) or 64-bit word (broadcast tile)

void pack_row_avx2(const uint32_t* src, int64_t kp, uint8_t* dst) {
  const int64_t full = kp / 8;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int64_t c = 0; c < full; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 8 * c));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c), _mm256_and_si256(v, m4));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * c + 32),
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  }
}

// Widens the byte counters of one tile row (NR = 4 pairs) with vpsadbw and adds their four
// totals to sums[0..3] with one 128-bit add.
inline __m128i row_totals4(const __m256i* acc) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i s0 = _mm256_sad_epu8(acc[0], zero), s1 = _mm256_sad_epu8(acc[1], zero);
  const __m256i s2 = _mm256_sad_epu8(acc[2], zero), s3 = _mm256_sad_epu8(acc[3], zero);
  // lanes (64-bit): t01 = [s0a+s0b, s1a+s1b | s0c+s0d, s1c+s1d], t23 likewise
  const __m256i t01 = _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
  const __m256i t23 = _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
  const __m256i u = _mm256_add_epi64(_mm256_permute2x128_si256(t01, t23, 0x20),
                                     _mm256_permute2x128_si256(t01, t23, 0x31));  // [S0, S1, S2, S3]
  // each total fits 32 bits: keep the low halves
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
}

// acc[i] = popcount(A row i XOR B row j) for j < 4 over `chunks` 8-word chunks, added to sums[i]
// (int32 x 4); A row i starts at a + i * a_stride, B row j at b + j * b_stride.
template <int MR>
inline void accumulate_chunks(const uint8_t* a, int64_t a_stride, const uint8_t* b, int64_t b_stride,
                              int64_t chunks, __m128i* sums) {
  constexpr int NR = 4;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  for (int64_t k0 = 0; k0 < chunks; k0 += kFlush) {
    const int64_t k1 = k0 + kFlush < chunks ? k0 + kFlush : chunks;
    __m256i acc[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; ++k) {
      __m256i alo[MR], ahi[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        alo[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * a_stride + 64 * k));
        ahi[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * a_stride + 64 * k + 32));
      }
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m256i blo = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * b_stride + 64 * k));
        const __m256i bhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + j * b_stride + 64 * k + 32));
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm256_add_epi8(acc[i][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(alo[i], blo)));
          acc[i][j] = _mm256_add_epi8(acc[i][j], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ahi[i], bhi)));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) sums[i] = _mm_add_epi32(sums[i], row_totals4(acc[i]));
  }
}

template <int MR>
void tile_avx2(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  __m128i sums[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) sums[i] = _mm_setzero_si128();
  accumulate_chunks<MR>(a, kp * 8, b, kp * 8, kp / 8, sums);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i * ldc), sums[i]);
}


// Rows of 8q + 2 words (kp % 8 == 2; rows of 8q + 1 words get a zero word): q chunks as above,
// then a tail of one 64-bit word. Padding the tail to a whole chunk would spend 12 of every 18
// words' work on zeros (3x3 convs over 64 channels: 18 words a row); instead the tails of four
// B rows sit side by side in one vector, and each A row's tail is broadcast against it: one
// vector step covers the tails of four output pairs.
//
// A rows (pack_row_tail2): q nibble-split chunks, then the tail's low nibbles (8 bytes) and high
// nibbles (8 bytes): kp * 8 bytes. B panels (finish_b_tail2), per group of four rows: the four
// rows' q chunks one after the other (q * 64 bytes each), then a 64-byte tail block: the four
// low-nibble tails (32 bytes, row r at byte 8r), then the four high-nibble tails. A group takes
// 4 * kp * 8 bytes, as four rows do in the plain layout.

void pack_row_tail2(const uint32_t* src, int64_t kp, uint8_t* dst) {
  const int64_t full = kp / 8;
  pack_row_avx2(src, full * 8, dst);
  const uint64_t v = static_cast<uint64_t>(src[kp - 2]) | (static_cast<uint64_t>(src[kp - 1]) << 32);
  const uint64_t lo = v & 0x0f0f0f0f0f0f0f0full, hi = (v >> 4) & 0x0f0f0f0f0f0f0f0full;
  std::memcpy(dst + 64 * full, &lo, 8);
  std::memcpy(dst + 64 * full + 8, &hi, 8);
}

void finish_b_tail2(uint8_t* panel, int64_t rows, int64_t kp) {
  const int64_t rb = kp * 8, main = (kp / 8) * 64;
  std::vector<uint8_t> group(static_cast<size_t>(4 * rb));
  for (int64_t g = 0; g < rows; g += 4) {
    uint8_t* p = panel + g * rb;
    std::memcpy(group.data(), p, group.size());
    for (int r = 0; r < 4; ++r) {
      const uint8_t* row = group.data() + r * rb;
      std::memcpy(p + r * main, row, static_cast<size_t>(main));
      std::memcpy(p + 4 * main + 8 * r, row + main, 8);            // low nibbles
      std::memcpy(p + 4 * main + 32 + 8 * r, row + main + 8, 8);  // high nibbles
    }
  }
}

template <int MR>
void tile_avx2_tail2(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t chunks = kp / 8, ra = kp * 8, main = chunks * 64;
  __m128i sums[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) sums[i] = _mm_setzero_si128();
  accumulate_chunks<MR>(a, ra, b, main, chunks, sums);
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i tlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 4 * main));
  const __m256i thi = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 4 * main + 32));
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    long long lo, hi;
    std::memcpy(&lo, a + i * ra + main, 8);
    std::memcpy(&hi, a + i * ra + main + 8, 8);
    const __m256i x = _mm256_add_epi8(
        _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_set1_epi64x(lo), tlo)),
        _mm256_shuffle_epi8(lut, _mm256_xor_si256(_mm256_set1_epi64x(hi), thi)));
    const __m256i t = _mm256_sad_epu8(x, _mm256_setzero_si256());  // [t0, t1, t2, t3] (64-bit)
    sums[i] = _mm_add_epi32(sums[i], _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(t, even)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i * ldc), sums[i]);
  }
}


// Broadcast tiles: the filters of a tile side by side in the vector lanes, the pixel's word
// broadcast against them. Per 64-bit word of the row, four B rows' words fill one vector, each
// A row's word is broadcast (vpbroadcastq from memory, a load) and one vpxor / vpshufb / vpaddb
// per nibble half counts that word for four output pairs at once. The byte counters of a lane
// then belong to one output pair, so the reduction is one vpsadbw per four outputs, with no
// horizontal shuffles, and rows need no padding to whole 8-word chunks (only to 64 bits): short
// and uneven rows (3x3 convs over 64 or 128 channels: 18 or 36 words) do no work on zeros and
// spend little on reductions, which the chunked tile above pays per output pair.
//
// A rows (pack_row_bcast): per 64-bit word q, its low nibbles (8 bytes), then its high nibbles
// (8 bytes): kp * 8 bytes. B panels (finish_b_bcast), per group of four rows, per word q a
// 64-byte block: the four rows' low-nibble words (row r at byte 8r), then their high-nibble
// words. A group takes 4 * kp * 8 bytes, as four rows do row by row.

void pack_row_bcast(const uint32_t* src, int64_t kp, uint8_t* dst) {
  for (int64_t q = 0; q < kp / 2; ++q) {
    const uint64_t v = static_cast<uint64_t>(src[2 * q]) | (static_cast<uint64_t>(src[2 * q + 1]) << 32);
    const uint64_t lo = v & 0x0f0f0f0f0f0f0f0full, hi = (v >> 4) & 0x0f0f0f0f0f0f0f0full;
    std::memcpy(dst + 16 * q, &lo, 8);
    std::memcpy(dst + 16 * q + 8, &hi, 8);
  }
}

void finish_b_bcast(uint8_t* panel, int64_t rows, int64_t kp) {
  const int64_t rb = kp * 8, words = kp / 2;
  std::vector<uint8_t> group(static_cast<size_t>(4 * rb));
  for (int64_t g = 0; g < rows; g += 4) {
    uint8_t* p = panel + g * rb;
    std::memcpy(group.data(), p, group.size());
    for (int64_t q = 0; q < words; ++q)
      for (int r = 0; r < 4; ++r) {
        std::memcpy(p + 64 * q + 8 * r, group.data() + r * rb + 16 * q, 8);            // low
        std::memcpy(p + 64 * q + 32 + 8 * r, group.data() + r * rb + 16 * q + 8, 8);   // high
      }
  }
}

// MR rows of A against G groups of four B rows (NR = 4 * G). 3 x 8 measured fastest on Zen 3
// (2 x 8 ties; 4 x 8, 6 x 4 and 4 x 4 are 2-8% slower: 4 x 8 needs one register too many).
template <int MR, int G>
void tile_bcast(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t words = kp / 2, rb = kp * 8;
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i zero = _mm256_setzero_si256();
  __m256i tot[MR][G];  // four 64-bit totals per group: B rows 4g .. 4g + 3
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) tot[i][g] = zero;
  for (int64_t q0 = 0; q0 < words; q0 += kFlush) {  // a byte gains at most 8 per word
    const int64_t q1 = q0 + kFlush < words ? q0 + kFlush : words;
    __m256i acc[MR][G];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[i][g] = zero;
    for (int64_t q = q0; q < q1; ++q) {
      __m256i blo[G], bhi[G];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        blo[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * 4 * rb + 64 * q));
        bhi[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * 4 * rb + 64 * q + 32));
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        long long lo, hi;
        std::memcpy(&lo, a + i * rb + 16 * q, 8);
        std::memcpy(&hi, a + i * rb + 16 * q + 8, 8);
        const __m256i alo = _mm256_set1_epi64x(lo), ahi = _mm256_set1_epi64x(hi);
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) {
          acc[i][g] = _mm256_add_epi8(acc[i][g], _mm256_shuffle_epi8(lut, _mm256_xor_si256(alo, blo[g])));
          acc[i][g] = _mm256_add_epi8(acc[i][g], _mm256_shuffle_epi8(lut, _mm256_xor_si256(ahi, bhi[g])));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) tot[i][g] = _mm256_add_epi64(tot[i][g], _mm256_sad_epu8(acc[i][g], zero));
  }
  // every total fits 32 bits: the low halves of the 64-bit lanes, in B row order
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if constexpr (G == 2) {
      const __m256i both = _mm256_or_si256(tot[i][0], _mm256_slli_epi64(tot[i][1], 32));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * ldc),
                          _mm256_permutevar8x32_epi32(both, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
    } else {
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i * ldc + 4 * g),
                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
                             tot[i][g], _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6))));
    }
  }
}


// Short rows: plain words, kp = 2 * Q words (Q 64-bit halves: 1 for rows of 1-2 words, 2 for
// 3-4), scalar XOR + POPCNT per pair.

template <int MR, int NR, int Q>
void tile_short(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  (void)kp;  // always 2 * Q words: rows of 8 * Q bytes
  uint64_t av[MR][Q];
  for (int i = 0; i < MR; ++i)
    for (int q = 0; q < Q; ++q) std::memcpy(&av[i][q], a + 8 * (Q * i + q), 8);
  for (int j = 0; j < NR; ++j) {
    uint64_t bv[Q];
    for (int q = 0; q < Q; ++q) std::memcpy(&bv[q], b + 8 * (Q * j + q), 8);
    for (int i = 0; i < MR; ++i) {
      uint64_t n = 0;
      for (int q = 0; q < Q; ++q) n += _mm_popcnt_u64(av[i][q] ^ bv[q]);
      c[i * ldc + j] = static_cast<int32_t>(n);
    }
  }
}

const PopcountKernel kShortKernel = {"avx2-popcnt-short-3x4", 3, 4, 4, 4, pack_row_plain,
                                     tile_short<3, 4, 2>, row_popcounts_popcnt, direct_popcnt_x86,
                                     nullptr};

const PopcountKernel kShort2Kernel = {"avx2-popcnt-short2-3x4", 3, 4, 2, 4, pack_row_plain,
                                      tile_short<3, 4, 1>, row_popcounts_popcnt, direct_popcnt_x86,
                                      nullptr};

const PopcountKernel kKernel = {"avx2-mula-3x4", kMR, kNR, 8, 8, pack_row_avx2, tile_avx2<kMR>,
                                row_popcounts_popcnt, direct_popcnt_x86, nullptr};

// k_align 2: kp = kw rounded up to even, and the kernel is chosen only for kw % 8 in {1, 2}.
const PopcountKernel kTail2Kernel = {"avx2-mula-3x4-tail2", kMR, kNR, 2, 8, pack_row_tail2,
                                     tile_avx2_tail2<kMR>, row_popcounts_popcnt, direct_popcnt_x86,
                                     finish_b_tail2};

// k_align 2: rows padded to whole 64-bit words only.
const PopcountKernel kBcast3x8Kernel = {"avx2-bcast-3x8", 3, 8, 2, 8, pack_row_bcast,
                                        tile_bcast<3, 2>, row_popcounts_popcnt, direct_popcnt_x86,
                                        finish_b_bcast};

}  // namespace

// Shared with the AVX-512 kernel table (POPCNT only; every AVX-512 CPU has it).
void row_popcounts_popcnt(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* q = p + r * words_per_row;
    int64_t total = 0, i = 0;
    for (; i + 2 <= words_per_row; i += 2) {
      uint64_t v;
      std::memcpy(&v, q + i, sizeof v);
      total += static_cast<int64_t>(_mm_popcnt_u64(v));
    }
    if (i < words_per_row) total += _mm_popcnt_u32(q[i]);
    out[r] = static_cast<int32_t>(total);
  }
}

void pack_row_plain(const uint32_t* src, int64_t kp, uint8_t* dst) {
  std::memcpy(dst, src, sizeof(uint32_t) * static_cast<size_t>(kp));
}

// Plain rows read in place: four rows of B at a time (they stay in L1 while every row of A passes
// over them), XOR + POPCNT per 64 bits.
void direct_popcnt_x86(const uint32_t* a, int64_t m, const uint32_t* b, int64_t n, int64_t kw,
                       int32_t* c, int64_t ldc) {
  const int64_t q = kw / 2;  // whole 64-bit words; an odd last 32-bit word follows
  for (int64_t j0 = 0; j0 < n; j0 += 4) {
    const int64_t nj = n - j0 < 4 ? n - j0 : 4;
    const uint32_t* bj[4];
    for (int64_t j = 0; j < 4; ++j) bj[j] = b + (j0 + (j < nj ? j : 0)) * kw;
    for (int64_t i = 0; i < m; ++i) {
      const uint32_t* ai = a + i * kw;
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t w = 0; w < q; ++w) {
        uint64_t av, v0, v1, v2, v3;
        std::memcpy(&av, ai + 2 * w, 8);
        std::memcpy(&v0, bj[0] + 2 * w, 8);
        std::memcpy(&v1, bj[1] + 2 * w, 8);
        std::memcpy(&v2, bj[2] + 2 * w, 8);
        std::memcpy(&v3, bj[3] + 2 * w, 8);
        s0 += _mm_popcnt_u64(av ^ v0);
        s1 += _mm_popcnt_u64(av ^ v1);
        s2 += _mm_popcnt_u64(av ^ v2);
        s3 += _mm_popcnt_u64(av ^ v3);
      }
      if (kw % 2) {
        const uint32_t av = ai[kw - 1];
        s0 += _mm_popcnt_u32(av ^ bj[0][kw - 1]);
        s1 += _mm_popcnt_u32(av ^ bj[1][kw - 1]);
        s2 += _mm_popcnt_u32(av ^ bj[2][kw - 1]);
        s3 += _mm_popcnt_u32(av ^ bj[3][kw - 1]);
      }
      const uint64_t s[4] = {s0, s1, s2, s3};
      for (int64_t j = 0; j < nj; ++j) c[i * ldc + j0 + j] = static_cast<int32_t>(s[j]);
    }
  }
}

const PopcountKernel& popcount_kernel_avx2() { return kKernel; }
const PopcountKernel& popcount_kernel_avx2_short() { return kShortKernel; }
const PopcountKernel& popcount_kernel_avx2_short2() { return kShort2Kernel; }
const PopcountKernel& popcount_kernel_avx2_tail2() { return kTail2Kernel; }
const PopcountKernel& popcount_kernel_avx2_bcast() { return kBcast3x8Kernel; }

}  // namespace onebit
