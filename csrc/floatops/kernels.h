// Row kernels of the float ops, one set per ISA; floatops.cpp pads, splits the output rows over
// threads and calls these. Private to csrc/floatops.
#pragma once
#include <algorithm>
#include <cstdint>

#include "floatops/floatops.h"

namespace onebit::floatops {

// One output row of the direct convolution: x0 points at the padded input element under the
// first tap of output column 0 (pixel stride g.sw * g.c, row stride `row_stride` floats, the
// padded input holds every tap), yrow at y[n, oh, 0, 0].
struct ConvRow {
  const float* x0;
  int64_t row_stride;
  const float* bias;  // may be null
  float* yrow;
};

// One output row of a pool: the in-bounds input rows of the window are rows[0 .. nrows).
struct PoolRow {
  const float* const* rows;  // pointers to x[n, ih, 0, 0] of the in-bounds taps, top to bottom
  int64_t nrows;
  int64_t window_rows;  // the row count the divisor uses (clipped to the padded or real input)
  float* yrow;
};

namespace ref {
void conv_row(const ConvRow& r, const PreparedConv& w, const ConvGeometry& g);
void maxpool_row(const PoolRow& r, const PoolGeometry& g);
void avgpool_row(const PoolRow& r, const PoolGeometry& g, bool count_include_pad,
                 int64_t divisor_override);
}  // namespace ref

#if defined(ONEBIT_X86)
namespace avx2 {
void conv_row(const ConvRow& r, const PreparedConv& w, const ConvGeometry& g);
void maxpool_row(const PoolRow& r, const PoolGeometry& g);
void avgpool_row(const PoolRow& r, const PoolGeometry& g, bool count_include_pad,
                 int64_t divisor_override);
}  // namespace avx2
#endif

// The rows of a pool window starting at input row `start` (output row * sh - ph): on_row(ih) for
// each in-bounds row ih, top to bottom; returns the row count the divisor uses (the window
// clipped to the padded input).
template <class OnRow>
int64_t for_window_rows(const PoolGeometry& g, int64_t start, OnRow on_row) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = start + i * g.dh;
    if (ih >= 0 && ih < g.h) on_row(ih);
  }
  const int64_t end = start + (g.kh - 1) * g.dh + 1;
  return std::min(end, g.h + g.ph) - start;
}

// The in-bounds columns of output column ow's window: taps j in [j0, j1), and the window width
// the divisor of count_include_pad uses (clipped to the padded input).
struct ColumnTaps {
  int64_t j0, j1, padded_width;
};
inline ColumnTaps column_taps(int64_t ow, const PoolGeometry& g) {
  const int64_t start = ow * g.sw - g.pw;
  int64_t j0 = 0, j1 = g.kw;
  while (j0 < j1 && start + j0 * g.dw < 0) ++j0;
  while (j1 > j0 && start + (j1 - 1) * g.dw >= g.w) --j1;
  const int64_t end = start + (g.kw - 1) * g.dw + 1;
  const int64_t padded_width = std::min(end, g.w + g.pw) - start;
  return {j0, j1, padded_width};
}

}  // namespace onebit::floatops
