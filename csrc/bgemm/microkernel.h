// The interface between the blocked binary-GEMM driver (panel.h) and one ISA's register-blocked
// popcount tile. Operands are "panels": rows of kp packed words (kp a multiple of k_align, the
// words past the true length zero in both operands), stored in the kernel's own format at
// kp * bytes_per_word bytes per row (AVX2 keeps each byte's two nibbles apart, see
// bgemm_avx2.cpp; the others store the words as they are).
#pragma once
#include <cstdint>
#include <vector>

#include "dispatch.h"

namespace onebit {

struct PopcountKernel {
  const char* name;
  int mr;              // rows of A per tile
  int nr;              // rows of B per tile (1, 2, 4 or 8: divides 32)
  int k_align;         // kp is a multiple of this many words
  int bytes_per_word;  // panel bytes per packed word; 4: pack_row copies the words as they are
                       // (the conv gathers patches straight into A panels then)
  // Converts one row of kp plain words into the panel format at dst (kp * bytes_per_word bytes).
  void (*pack_row)(const uint32_t* src, int64_t kp, uint8_t* dst);
  // c[i * ldc + j] = popcount(A row i XOR B row j) over kp words, for i < mr, j < nr; A row i
  // starts at a + i * row_bytes, B row j at b + j * row_bytes, row_bytes = kp * bytes_per_word.
  void (*tile)(const uint8_t* a, const uint8_t* b, int64_t kp, int32_t* c, int64_t ldc);
  // out[r] = popcount of row r of a plain [rows, words_per_row] word matrix (the zero-padding
  // correction counts the bits of every weight tap with it).
  void (*row_popcounts)(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out);
  // Optional (nullptr where absent): c[i * ldc + j] = popcount(a row i XOR b row j) for i < m,
  // j < n, reading plain rows of kw words in place, without panels. For GEMMs with very few rows
  // of A, where packing B would cost more than the product.
  void (*direct)(const uint32_t* a, int64_t m, const uint32_t* b, int64_t n, int64_t kw, int32_t* c,
                 int64_t ldc);
  // Optional (nullptr: B panels are laid out like A panels, row by row): rearranges a panel of
  // `rows` rows (a multiple of nr) packed row by row with pack_row into the kernel's layout for
  // the B operand (see pack_b_panel in panel.h), in place.
  void (*finish_b)(uint8_t* panel, int64_t rows, int64_t kp);
};

// The kernel of an ISA for rows of kw words, or nullptr where that ISA has none here (the
// reference path is separate).
const PopcountKernel* popcount_kernel(Isa isa, int64_t kw);

// Every kernel that can run rows of kw words on a CPU whose best ISA is isa: the rule's choice
// (popcount_kernel) first, then the alternatives (on x86, the AVX2 family's kernels are
// candidates under AVX-512 too). Prepared filters choose among them by measurement
// (PreparedFilters::tune), so that no layer runs a slower family than another one available.
// Empty for the reference ISA.
std::vector<const PopcountKernel*> popcount_kernel_candidates(Isa isa, int64_t kw);

#if defined(ONEBIT_X86)
const PopcountKernel& popcount_kernel_avx2();
// For rows of at most 4 words (e.g. 1x1 convs over <= 128 channels): plain panels and scalar
// POPCNT, where a vector tile would spend most of its time on setup and reductions.
const PopcountKernel& popcount_kernel_avx2_short();
constexpr int64_t kAvx2ShortMaxWords = 4;
// The same for rows of at most 2 words (1x1 convs over <= 64 channels): one 64-bit word a row.
const PopcountKernel& popcount_kernel_avx2_short2();
// For rows of 8q + 1 or 8q + 2 words (q >= 1; e.g. 3x3 convs over 33..64 channels, 18 words):
// q full chunks, then the last one or two words of four B rows side by side in one vector, so
// that the tail costs a quarter of a padded chunk (see bgemm_avx2.cpp).
const PopcountKernel& popcount_kernel_avx2_tail2();
// The broadcast tile (3 rows of A x 8 rows of B): B rows side by side in the lanes, each A word
// broadcast; rows padded to 64 bits only and one vpsadbw per four outputs (see bgemm_avx2.cpp).
const PopcountKernel& popcount_kernel_avx2_bcast();
// The direct (panel-free) path of the AVX2 kernels, XOR + POPCNT on plain rows (also used by
// the AVX-512 kernel table: every AVX-512 CPU has POPCNT).
void direct_popcnt_x86(const uint32_t* a, int64_t m, const uint32_t* b, int64_t n, int64_t kw,
                       int32_t* c, int64_t ldc);
// Also shared by the AVX2 and AVX-512 tables: per-row POPCNT and the plain (copying) row packer.
void row_popcounts_popcnt(const uint32_t* p, int64_t rows, int64_t words_per_row, int32_t* out);
void pack_row_plain(const uint32_t* src, int64_t kp, uint8_t* dst);
const PopcountKernel& popcount_kernel_avx512();
// Broadcast tiles (MR rows of A x NR rows of B): B rows side by side in the zmm lanes, each A
// word broadcast; rows padded to 64 bits only, no horizontal reductions (see bgemm_avx512.cpp).
const PopcountKernel& popcount_kernel_avx512_bcast8x16();
const PopcountKernel& popcount_kernel_avx512_bcast4x32();
#endif
#if defined(ONEBIT_ARM64)
const PopcountKernel& popcount_kernel_neon();
#endif

}  // namespace onebit
