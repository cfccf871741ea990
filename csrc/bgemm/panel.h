// The blocked driver of the optimized binary GEMM and conv: panels, blocking, popcount blocks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "bgemm/microkernel.h"

namespace onebit {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// A 64-byte-aligned scratch buffer that only grows: get(bytes) returns at least that many bytes
// with unspecified contents. The kernels keep one per thread (thread_local), so that repeated
// calls neither allocate nor page-fault.
class AlignedBuffer {
 public:
  uint8_t* get(size_t bytes);
  const uint8_t* get(size_t) const { return data_.get(); }  // the current contents

 private:
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<uint8_t[], Free> data_;
  size_t size_ = 0;
};

// Thread-local scratch of the kernels (one set per thread).
struct Scratch {
  AlignedBuffer b_panel, a_panel;
  std::vector<uint32_t> patch;
  std::vector<int32_t> acc;
  std::vector<const int32_t*> corr_rows;  // the conv's padding-correction row of each acc row
};
Scratch& thread_scratch();

inline int64_t panel_kp(const PopcountKernel& uk, int64_t kw) { return round_up(kw, uk.k_align); }
inline int64_t panel_row_bytes(const PopcountKernel& uk, int64_t kp) { return kp * uk.bytes_per_word; }

// Packs rows [0, rows) of src (row r at src + r * src_stride, kw words each) into a panel of
// padded_rows rows of kp words (rows >= rows and words >= kw are zero). dst has
// padded_rows * panel_row_bytes(kp) bytes.
void pack_panel(const PopcountKernel& uk, const uint32_t* src, int64_t src_stride, int64_t kw,
                int64_t rows, int64_t padded_rows, int64_t kp, uint8_t* dst);

// pack_panel for the B operand of uk's tiles: the same, then uk.finish_b where the kernel has one
// (padded_rows must be a multiple of uk.nr).
void pack_b_panel(const PopcountKernel& uk, const uint32_t* src, int64_t src_stride, int64_t kw,
                  int64_t rows, int64_t padded_rows, int64_t kp, uint8_t* dst);

// c[i * ldc + j] = popcount(A row i XOR B row j) for i < m_rows, j < n_rows (multiples of mr and
// nr). Loops over nr-wide column tiles outside and mr-high row tiles inside, so the B tile stays
// in L1 while the A block (sized by choose_blocking) streams from L1/L2.
void popcount_block(const PopcountKernel& uk, const uint8_t* a, int64_t m_rows, const uint8_t* b,
                    int64_t n_rows, int64_t kp, int32_t* c, int64_t ldc);

// How a GEMM of m x n outputs (kp words deep) is cut into tasks for num_threads threads: row
// blocks of mb rows (a multiple of mr, the A block about 20 KiB) and column blocks of nb columns
// (a multiple of 32 and nr, or all of n), tasks = tiles_m * tiles_n, row-block major.
struct Blocking {
  int64_t mb, nb, tiles_m, tiles_n;
};
Blocking choose_blocking(const PopcountKernel& uk, int64_t m, int64_t n, int64_t kp, int num_threads);

}  // namespace onebit
