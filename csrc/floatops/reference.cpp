// Plain reference row kernels of the float ops (no intrinsics): the ground truth the AVX2
// kernels are tested against, and the kernels that run without AVX2.
#include <cmath>
#include <limits>
#include <vector>

#include "floatops/kernels.h"

namespace onebit::floatops::ref {

void conv_row(const ConvRow& r, const PreparedConv& w, const ConvGeometry& g) {
  const int64_t ow = g.ow(), cout = g.cout, c = g.c;
  const float* wp = w.plain();  // [kh][kw][C][C_out]
  std::vector<float> acc(static_cast<size_t>(cout));
  for (int64_t x = 0; x < ow; ++x) {
    // bias first, then the taps in (i, j, c) order
    for (int64_t o = 0; o < cout; ++o) acc[o] = r.bias ? r.bias[o] : 0.0f;
    const float* px = r.x0 + x * g.sw * c;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        for (int64_t ci = 0; ci < c; ++ci) {
          const float v = px[i * g.dh * r.row_stride + j * g.dw * c + ci];
          const float* wt = wp + ((i * g.kw + j) * c + ci) * cout;
          for (int64_t o = 0; o < cout; ++o) acc[o] += v * wt[o];
        }
    float* out = r.yrow + x * cout;
    for (int64_t o = 0; o < cout; ++o) out[o] = acc[o];
  }
}

namespace {
// np.maximum's rule: a NaN first operand wins, then a > b ? a : b (a tie gives b).
inline float max_rule(float a, float b) { return std::isnan(a) ? a : (a > b ? a : b); }
}  // namespace

void maxpool_row(const PoolRow& r, const PoolGeometry& g) {
  const int64_t ow = g.ow(), c = g.c;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t x = 0; x < ow; ++x) {
    const ColumnTaps ct = column_taps(x, g);
    const int64_t base = x * g.sw - g.pw;
    float* out = r.yrow + x * c;
    for (int64_t ci = 0; ci < c; ++ci) {
      float m = ninf;  // max(-inf, v) == v bit for bit, so padded taps can be skipped
      for (int64_t i = 0; i < r.nrows; ++i) {
        float row_max = ninf;
        for (int64_t j = ct.j0; j < ct.j1; ++j)
          row_max = max_rule(row_max, r.rows[i][(base + j * g.dw) * c + ci]);
        m = max_rule(m, row_max);
      }
      out[ci] = m;
    }
  }
}

void avgpool_row(const PoolRow& r, const PoolGeometry& g, bool count_include_pad,
                 int64_t divisor_override) {
  const int64_t ow = g.ow(), c = g.c;
  for (int64_t x = 0; x < ow; ++x) {
    const ColumnTaps ct = column_taps(x, g);
    const int64_t base = x * g.sw - g.pw;
    const float divisor = static_cast<float>(
        divisor_override > 0 ? divisor_override
        : count_include_pad  ? r.window_rows * ct.padded_width
                             : r.nrows * (ct.j1 - ct.j0));
    float* out = r.yrow + x * c;
    for (int64_t ci = 0; ci < c; ++ci) {
      float s = 0.0f;
      for (int64_t i = 0; i < r.nrows; ++i)
        for (int64_t j = ct.j0; j < ct.j1; ++j) s += r.rows[i][(base + j) * c + ci];
      out[ci] = s / divisor;
    }
  }
}

}  // namespace onebit::floatops::ref
