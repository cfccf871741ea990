// A max pool fused after an op that makes its output one row at a time (the direct float conv and
// the int8 conv): each thread takes a run of pool output rows and keeps the op's rows its windows
// read in a ring of `span` rows (the window's height), making each row when a window first needs
// it. Rows of one window are distinct modulo span, so a window never evicts its own rows. The
// pool row kernel then reads them exactly as maxpool2d reads the stored output, so the result is
// bit-identical to the op followed by maxpool2d, without the op's output ever being stored whole.
// Private to csrc/floatops.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/parallel.h"
#include "floatops/kernels.h"

namespace onebit::floatops {

// p: the pool over the op's output [p.n, p.h, p.w, p.c]; y: the pooled [p.n, p.oh(), p.ow(), p.c].
// make_row() is called once per thread chunk and returns that chunk's row maker,
// row(n, r, dst), which writes output row r of sample n (p.w * p.c floats) to dst. grain: the
// fewest pool rows worth a thread.
template <class MakeRow>
void maxpool_rows(const PoolGeometry& p, int num_threads, int64_t grain, float* y,
                  MakeRow make_row) {
  const int64_t oh = p.h, op_row = p.w * p.c, poh = p.oh(), pool_row = p.ow() * p.c;
  const int64_t span = (p.kh - 1) * p.dh + 1;
  const bool avx2 = avx2_or_better();
  parallel_for(p.n * poh, num_threads, grain, [&](int64_t b, int64_t e) {
    auto row = make_row();
    std::vector<float> ring(static_cast<size_t>(span * op_row));
    std::vector<int64_t> held(static_cast<size_t>(span), -1);  // the row (n * oh + r) held
    std::vector<const float*> rows(static_cast<size_t>(p.kh));
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / poh;
      int64_t nrows = 0;
      const int64_t window_rows = for_window_rows(p, (r % poh) * p.sh - p.ph, [&](int64_t ih) {
        const int64_t slot = ih % span;
        float* dst = ring.data() + slot * op_row;
        if (held[static_cast<size_t>(slot)] != n * oh + ih) {
          row(n, ih, dst);
          held[static_cast<size_t>(slot)] = n * oh + ih;
        }
        rows[static_cast<size_t>(nrows++)] = dst;
      });
      const PoolRow pr{rows.data(), nrows, window_rows, y + r * pool_row};
#if defined(ONEBIT_X86)
      if (avx2) {
        avx2::maxpool_row(pr, p);
        continue;
      }
#endif
      (void)avx2;
      ref::maxpool_row(pr, p);
    }
  });
}

}  // namespace onebit::floatops
