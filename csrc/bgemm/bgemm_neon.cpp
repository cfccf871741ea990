// NEON binary GEMM tile (AArch64): per 128-bit chunk and tile pair one veor, one vcnt (bytewise
// popcount) and one vadd into byte counters, widened with vaddlv every 31 chunks (31 * 8 < 256).
// Panels hold the packed words as they are; kp is a multiple of 4 words.
#include <arm_neon.h>

#include <cstring>

#include "bgemm/microkernel.h"

namespace onebit {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 4;
constexpr int64_t kFlush = 31;

void pack_row_plain(const uint32_t* src, int64_t kp, uint8_t* dst) {
  std::memcpy(dst, src, sizeof(uint32_t) * static_cast<size_t>(kp));
}

template <int MR, int NR>
void tile_neon(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc) {
  const int64_t rb = kp * 4;
  const int64_t chunks = kp / 4;
  int64_t sums[MR][NR] = {};
  for (int64_t k0 = 0; k0 < chunks; k0 += kFlush) {
    const int64_t k1 = k0 + kFlush < chunks ? k0 + kFlush : chunks;
    uint8x16_t acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_u8(0);
    for (int64_t k = k0; k < k1; ++k) {
      uint8x16_t av[MR];
      for (int i = 0; i < MR; ++i) av[i] = vld1q_u8(a + i * rb + 16 * k);
      for (int j = 0; j < NR; ++j) {
        const uint8x16_t bv = vld1q_u8(b + j * rb + 16 * k);
        for (int i = 0; i < MR; ++i) acc[i][j] = vaddq_u8(acc[i][j], vcntq_u8(veorq_u8(av[i], bv)));
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) sums[i][j] += vaddlvq_u8(acc[i][j]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = static_cast<int32_t>(sums[i][j]);
}

void row_popcounts_cnt(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* q = p + r * words_per_row;
    int64_t total = 0, i = 0;
    for (; i + 4 <= words_per_row; i += 4)
      total += vaddlvq_u8(vcntq_u8(vld1q_u8(reinterpret_cast<const uint8_t*>(q + i))));
    for (; i < words_per_row; ++i) total += __builtin_popcount(q[i]);
    out[r] = static_cast<int32_t>(total);
  }
}

const PopcountKernel kKernel = {"neon-cnt-4x4", kMR, kNR, 4, 4, pack_row_plain, tile_neon<kMR, kNR>,
                                row_popcounts_cnt, nullptr, nullptr};

}  // namespace

const PopcountKernel& popcount_kernel_neon() { return kKernel; }

}  // namespace onebit
