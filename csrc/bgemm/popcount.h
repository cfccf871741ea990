// Portable popcount of one 32-bit word: the compiler's builtin where it becomes one instruction
// (x86 with POPCNT enabled for this file, AArch64), else the branch-free SWAR sum (a call to
// libgcc's table-driven __popcountdi2 would be several times slower).
#pragma once
#include <cstdint>

namespace onebit {

inline int popcount32(uint32_t x) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__POPCNT__) || defined(__aarch64__))
  return __builtin_popcount(x);
#else
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  return static_cast<int>((((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24);
#endif
}

// out[r] = popcount of row r (words_per_row words) for r < rows (portable; the kernels'
// row_popcounts use the ISA's instruction).
inline void row_popcounts_portable(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    int32_t total = 0;
    for (int64_t i = 0; i < words_per_row; ++i) total += popcount32(p[r * words_per_row + i]);
    out[r] = total;
  }
}

using RowPopcounts = void (*)(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out);

}  // namespace onebit
