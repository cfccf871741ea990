// The optimized binary GEMM: B packed once into a panel; row blocks of A packed per task; the
// ISA's popcount tile over each (row block, column block); then acc = k - 2 * popcount and the
// output transform, block by block. With very few rows of A the kernel's direct path (if it has
// one) reads both operands in place instead.
#include "bgemm/bgemm.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "bgemm/panel.h"
#include "bitpack/bitpack.h"
#include "bgemm/reference.h"
#include "common/parallel.h"
#include "dispatch.h"

namespace onebit {

namespace {

// b: the plain rows; b_panel: the same packed by uk (nullptr: pack them here when needed).
void bgemm_impl(const PopcountKernel& uk, const uint32_t* a, const uint32_t* b, const uint8_t* b_panel,
                int64_t m, int64_t n, int64_t kw, int64_t k, const OutputTransform& t, int num_threads) {
  const int threads = num_threads > 0 ? num_threads : default_num_threads();
  const int32_t k32 = static_cast<int32_t>(k);
  // Up to 4 rows of A (batch-1 dense layers), reading B in place beats packing it (measured:
  // 1 x 4096 x 4096 bits 2.3x faster; equal at 8 rows).
  constexpr int64_t kDirectMaxRows = 4;
  if (uk.direct != nullptr && m <= kDirectMaxRows) {
    // Few rows of A: no panels, blocks of 128 columns (whole words of a bits output) in parallel.
    constexpr int64_t kCols = 128;
    parallel_for_dynamic(ceil_div(n, kCols), threads, 1, [&](int64_t begin, int64_t end) {
      std::vector<int32_t>& acc = thread_scratch().acc;
      acc.resize(static_cast<size_t>(m * kCols));
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t j0 = blk * kCols, cols = std::min(kCols, n - j0);
        uk.direct(a, m, b + j0 * kw, cols, kw, acc.data(), kCols);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < cols; ++j) acc[i * kCols + j] = k32 - 2 * acc[i * kCols + j];
        apply_output_transform(t, acc.data(), kCols, 0, m, j0, cols);
      }
    });
    return;
  }
  const int64_t kp = panel_kp(uk, kw), rb = panel_row_bytes(uk, kp);
  const int64_t m_pad = round_up(m, uk.mr), n_pad = round_up(n, uk.nr);
  if (b_panel == nullptr) {
    uint8_t* packed_b = thread_scratch().b_panel.get(static_cast<size_t>(n_pad * rb));
    pack_b_panel(uk, b, kw, kw, n, n_pad, kp, packed_b);
    b_panel = packed_b;
  }
  const Blocking bl = choose_blocking(uk, m, n, kp, threads);
  parallel_for_dynamic(bl.tiles_m * bl.tiles_n, threads, 1, [&](int64_t begin, int64_t end) {
    Scratch& sc = thread_scratch();
    uint8_t* a_panel = sc.a_panel.get(static_cast<size_t>(bl.mb * rb));
    sc.acc.resize(static_cast<size_t>(bl.mb * bl.nb));
    int32_t* acc = sc.acc.data();
    int64_t packed = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t tm = task / bl.tiles_n, tn = task % bl.tiles_n;
      const int64_t i0 = tm * bl.mb, rows = std::min(bl.mb, m_pad - i0);
      const int64_t valid_rows = std::min(rows, m - i0);
      if (packed != tm) {
        pack_panel(uk, a + i0 * kw, kw, kw, valid_rows, rows, kp, a_panel);
        packed = tm;
      }
      const int64_t j0 = tn * bl.nb, cols = std::min(bl.nb, n_pad - j0);
      const int64_t valid_cols = std::min(cols, n - j0);
      popcount_block(uk, a_panel, rows, b_panel + j0 * rb, cols, kp, acc, bl.nb);
      for (int64_t i = 0; i < valid_rows; ++i) {
        int32_t* r = acc + i * bl.nb;
        for (int64_t j = 0; j < valid_cols; ++j) r[j] = k32 - 2 * r[j];  // |k| < 2^31 / 2
      }
      apply_output_transform(t, acc, bl.nb, i0, valid_rows, j0, valid_cols);
    }
  });
}

}  // namespace

void bgemm(const uint32_t* a, const uint32_t* b, int64_t m, int64_t n, int64_t kw, int64_t k,
           const OutputTransform& t, int num_threads) {
  const PopcountKernel* uk = popcount_kernel(active_isa(), kw);
  if (uk == nullptr) return bgemm_reference(a, b, m, n, kw, k, t);
  bgemm_impl(*uk, a, b, nullptr, m, n, kw, k, t, num_threads);
}

PreparedRows::PreparedRows(const uint32_t* b, int64_t n, int64_t k)
    : isa_(active_isa()), n_(n), k_(k), kw_(words_for(k)) {
  if (n < 1 || k < 1) throw std::invalid_argument("PreparedRows: n and k must be >= 1");
  words_.assign(b, b + n * kw_);
  kernel_ = popcount_kernel(isa_, kw_);
  if (kernel_ == nullptr) return;
  const int64_t kp = panel_kp(*kernel_, kw_), n_pad = round_up(n, kernel_->nr);
  pack_b_panel(*kernel_, words_.data(), kw_, kw_, n, n_pad, kp,
             panel_.get(static_cast<size_t>(n_pad * panel_row_bytes(*kernel_, kp))));
}

void bgemm(const uint32_t* a, const PreparedRows& b, int64_t m, const OutputTransform& t,
           int num_threads) {
  if (b.isa() != active_isa() || b.kernel() == nullptr)
    return bgemm(a, b.words(), m, b.n(), b.kw(), b.k(), t, num_threads);
  bgemm_impl(*b.kernel(), a, b.words(), b.panel(), m, b.n(), b.kw(), b.k(), t, num_threads);
}

}  // namespace onebit
