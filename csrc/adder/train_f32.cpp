// Driver of the AdderNet float training op: packs a chunk of output positions at a time (a few
// output rows of one image, or several whole small images; at most 512) as im2col rows
// k = (c*KH + i)*KW + j (zero padding as AdderNet's), runs the ISA's chunk kernels and scatters
// dX back (col2im).
// The forward splits output positions among threads, the backward input channels (each thread
// owns its dX planes and dF columns: no reduction across threads). Memory: a few packed chunks
// per thread, sized from the layer (chunk_cols), never the C_out x K x (N*OH*OW) tensor.
//
// dF is computed as G X^T - F * sum(G): sum_q (x_q - f) g_q = sum_q x_q g_q - f sum_q g_q exactly,
// so its inner loop is one FMA per term; the rounding differs from the direct sum only by the
// extra product f * sum(G) (bounded by u * |f| * sum|g|).
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "adder/adder.h"
#include "adder/buffer.h"
#include "adder/reference.h"
#include "adder/tiles.h"
#include "common/parallel.h"

namespace onebit::adder {

void check_geometry(const ConvGeometry& g) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("adder conv2d: " + what);
  };
  need(g.n >= 1 && g.c >= 1 && g.h >= 1 && g.w >= 1, "input sizes must be positive");
  need(g.cout >= 1 && g.kh >= 1 && g.kw >= 1, "filter sizes must be positive");
  need(g.sh >= 1 && g.sw >= 1, "stride must be >= 1");
  need(g.ph >= 0 && g.pw >= 0, "padding must be >= 0");
  need(g.h + 2 * g.ph >= g.kh && g.w + 2 * g.pw >= g.kw,
       "the kernel (" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
           ") is larger than the padded input (" + std::to_string(g.h + 2 * g.ph) + "x" +
           std::to_string(g.w + 2 * g.pw) + "); use a smaller kernel or more padding");
}

namespace {

constexpr int64_t kMaxChunkCols = 512;  // output positions per packed chunk, at most

int64_t round8(int64_t v) { return (v + 7) / 8 * 8; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Columns per packed chunk for `bytes_per_col` bytes of scratch per column. The scratch budget
// (all threads together) is a third of the layer's own tensors (input, output, filters), within
// [256 KB, 8 MB]: a small layer gets short chunks, so that a training step's peak memory stays
// close to what conv2d's takes; a large one long chunks (fewer passes over the filters).
int64_t chunk_cols(const ConvGeometry& g, int64_t bytes_per_col) {
  const int64_t tensor_bytes = 4 * (g.n * (g.c * g.h * g.w + g.cout * g.oh() * g.ow()) +
                                    g.cout * g.c * g.kh * g.kw);
  const int64_t budget =
      std::clamp<int64_t>(tensor_bytes / 3, int64_t{256} << 10, int64_t{8} << 20);
  return std::clamp<int64_t>(budget / bytes_per_col, 8, kMaxChunkCols);
}

// How output positions are cut into packed chunks: `group` whole images per chunk when an image
// has few positions, else one image cut into chunks of `rows` output rows.
struct Plan {
  int64_t group = 1, rows = 1;   // images per chunk, output rows per chunk
  int64_t ngroups = 1, nrow = 1;  // chunks: ngroups x nrow
  int64_t ldc = 8;                // packed row stride (columns, multiple of 8)
};

Plan make_plan(const ConvGeometry& g, int64_t min_chunks, int64_t max_cols) {
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW;
  Plan pl;
  if (P >= max_cols) {  // equal chunks of at most max_cols columns (whole rows)
    pl.rows = std::clamp<int64_t>(max_cols / OW, 1, OH);
    pl.rows = ceil_div(OH, ceil_div(OH, pl.rows));
  } else {
    pl.group = std::clamp<int64_t>(max_cols / P, 1, g.n);
    pl.rows = OH;
  }
  pl.ngroups = ceil_div(g.n, pl.group);
  pl.nrow = ceil_div(OH, pl.rows);
  if (pl.ngroups * pl.nrow < min_chunks) {  // keep every thread busy
    pl.group = std::max<int64_t>(1, g.n / min_chunks);
    pl.ngroups = ceil_div(g.n, pl.group);
    if (pl.ngroups * pl.nrow < min_chunks) {
      const int64_t want = ceil_div(min_chunks, pl.ngroups);
      pl.rows = std::min(pl.rows, std::max<int64_t>(1, ceil_div(OH, want)));
      pl.nrow = ceil_div(OH, pl.rows);
    }
  }
  pl.ldc = round8(pl.group * pl.rows * OW);
  return pl;
}

// The taps of one im2col row r = (c*KH + i)*KW + j over output rows [oh0, oh1): output rows
// [a, b) and columns [lo, hi) read inside the input; `same` when the packed row is one shifted
// copy of the input plane (stride 1 and OW == W: column q <-> plane index q + offset).
struct RowTaps {
  int64_t c, i, j, a, b, lo, hi, offset;
  bool same;
};

RowTaps row_taps(const ConvGeometry& g, int64_t r, int64_t oh0, int64_t oh1) {
  const int64_t OW = g.ow(), KK = g.kh * g.kw;
  RowTaps rt;
  rt.c = r / KK;
  const int64_t i = (r / g.kw) % g.kh, j = r % g.kw;
  rt.i = i, rt.j = j;
  auto range = [](int64_t first, int64_t last, int64_t s, int64_t n, int64_t* lo, int64_t* hi) {
    // outputs o with first <= o*s <= last, clamped to [0, n)
    *lo = first <= 0 ? 0 : ceil_div(first, s);
    *hi = last < 0 ? 0 : last / s + 1;
    *lo = std::min(*lo, n);
    *hi = std::clamp(*hi, *lo, n);
  };
  range(g.pw - j, g.w - 1 + g.pw - j, g.sw, OW, &rt.lo, &rt.hi);
  range(g.ph - i, g.h - 1 + g.ph - i, g.sh, g.oh(), &rt.a, &rt.b);
  rt.a = std::clamp(rt.a, oh0, oh1);
  rt.b = std::clamp(rt.b, rt.a, oh1);
  rt.same = g.sh == 1 && g.sw == 1 && OW == g.w;
  rt.offset = (oh0 - g.ph + i) * g.w - g.pw + j;  // plane index of column 0 (same case)
  return rt;
}

// The taps of rows [k0, k1) for output rows [oh0, oh1), computed once per chunk.
void row_taps(const ConvGeometry& g, int64_t k0, int64_t k1, int64_t oh0, int64_t oh1,
              std::vector<RowTaps>* taps) {
  taps->resize(static_cast<size_t>(k1 - k0));
  for (int64_t r = k0; r < k1; ++r) (*taps)[r - k0] = row_taps(g, r, oh0, oh1);
}

// Sets the columns [0, lo) and [hi, OW) of output rows [a, b) of one packed row (row 0 = oh0)
// to zero: the taps that read the left/right padding, 0-2 columns wide, so column by column.
void zero_side_columns(float* row, const RowTaps& rt, int64_t oh0, int64_t OW) {
  auto zero_column = [&](int64_t ow) {
    for (int64_t oh = rt.a; oh < rt.b; ++oh) row[(oh - oh0) * OW + ow] = 0.0f;
  };
  for (int64_t ow = 0; ow < rt.lo; ++ow) zero_column(ow);
  for (int64_t ow = rt.hi; ow < OW; ++ow) zero_column(ow);
}

// col[(r - k0) * ldc + (oh - oh0) * OW + ow] = Xp[c, oh*sh - ph + i, ow*sw - pw + j] for rows
// r in [k0, k1) (zero where the tap reads padding); columns [0, (oh1 - oh0) * OW) only.
// `taps` holds row_taps(g, k0, k1, oh0, oh1).
void im2col(const float* xn, const ConvGeometry& g, const std::vector<RowTaps>& taps,
            int64_t oh0, int64_t oh1, float* col, int64_t ldc) {
  const int64_t OW = g.ow(), ncols = (oh1 - oh0) * OW;
  for (size_t rr = 0; rr < taps.size(); ++rr) {
    const RowTaps& rt = taps[rr];
    const float* plane = xn + rt.c * g.h * g.w;
    float* row = col + static_cast<int64_t>(rr) * ldc;
    if (rt.a >= rt.b || rt.lo >= rt.hi) {
      std::fill(row, row + ncols, 0.0f);
      continue;
    }
    std::fill(row, row + (rt.a - oh0) * OW, 0.0f);
    std::fill(row + (rt.b - oh0) * OW, row + ncols, 0.0f);
    if (rt.same) {
      // one copy of the valid span, then zero the columns whose tap falls in the side padding
      const int64_t q0 = (rt.a - oh0) * OW + rt.lo, q1 = (rt.b - 1 - oh0) * OW + rt.hi;
      std::memcpy(row + q0, plane + q0 + rt.offset, static_cast<size_t>(q1 - q0) * sizeof(float));
      zero_side_columns(row, rt, oh0, OW);
      continue;
    }
    for (int64_t oh = rt.a; oh < rt.b; ++oh) {
      float* dst = row + (oh - oh0) * OW;
      const float* src = plane + (oh * g.sh - g.ph + rt.i) * g.w + (rt.lo * g.sw - g.pw + rt.j);
      for (int64_t ow = rt.lo; ow < rt.hi; ++ow) dst[ow] = src[(ow - rt.lo) * g.sw];
    }
    zero_side_columns(row, rt, oh0, OW);
  }
}

// The transpose of im2col: dxn[c, h, w] += col[...] over the taps of rows [k0, k1) that read
// inside the input. May zero entries of `col` (those reading padding).
void col2im_add(float* col, int64_t ldc, const ConvGeometry& g, const std::vector<RowTaps>& taps,
                int64_t oh0, float* dxn) {
  const int64_t OW = g.ow();
  for (size_t rr = 0; rr < taps.size(); ++rr) {
    const RowTaps& rt = taps[rr];
    if (rt.a >= rt.b || rt.lo >= rt.hi) continue;
    float* plane = dxn + rt.c * g.h * g.w;
    float* row = col + static_cast<int64_t>(rr) * ldc;
    if (rt.same) {
      // zero the padding taps, then one contiguous add of the valid span
      zero_side_columns(row, rt, oh0, OW);
      const int64_t q0 = (rt.a - oh0) * OW + rt.lo, q1 = (rt.b - 1 - oh0) * OW + rt.hi;
      float* dst = plane + rt.offset;
      for (int64_t q = q0; q < q1; ++q) dst[q] += row[q];
      continue;
    }
    for (int64_t oh = rt.a; oh < rt.b; ++oh) {
      const float* src = row + (oh - oh0) * OW;
      float* dst = plane + (oh * g.sh - g.ph + rt.i) * g.w + (rt.lo * g.sw - g.pw + rt.j);
      for (int64_t ow = rt.lo; ow < rt.hi; ++ow) dst[(ow - rt.lo) * g.sw] += src[ow];
    }
  }
}

// Zeroes columns [ncols, round8(ncols)) of `nrows` packed rows (the kernels read whole vectors).
void zero_tail(float* col, int64_t ldc, int64_t nrows, int64_t ncols) {
  const int64_t end = round8(ncols);
  for (int64_t r = 0; r < nrows; ++r) std::fill(col + r * ldc + ncols, col + r * ldc + end, 0.0f);
}

// Sum of n floats with 8 independent partial sums (vectorizable), returned in double.
double row_sum(const float* v, int64_t n) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t q = 0;
  for (; q + 8 <= n; q += 8)
    for (int l = 0; l < 8; ++l) part[l] += v[q + l];
  double s = 0.0;
  for (int l = 0; l < 8; ++l) s += part[l];
  for (; q < n; ++q) s += v[q];
  return s;
}

int resolve_threads(int num_threads) {
  return num_threads > 0 ? num_threads : default_num_threads();
}

}  // namespace

void conv2d_forward(const float* x, const float* w, float* y, const ConvGeometry& g,
                    int num_threads) {
  check_geometry(g);
  if (!avx2_or_better()) return ref::conv2d_forward(x, w, y, g, num_threads);
#if defined(ONEBIT_X86)
  const int nt = resolve_threads(num_threads);
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW, K = g.c * g.kh * g.kw, M = g.cout;
  const int64_t CHW = g.c * g.h * g.w;
  const Plan pl = make_plan(g, nt, chunk_cols(g, 4 * (K + M) * nt));
  parallel_for(pl.ngroups * pl.nrow, nt, 1, [&](int64_t begin, int64_t end) {
    ScratchBuffer<float> col(static_cast<size_t>(K * pl.ldc));
    std::unique_ptr<ScratchBuffer<float>> ybuf;  // output staging when a chunk spans images
    if (pl.group > 1) ybuf = std::make_unique<ScratchBuffer<float>>(M * pl.ldc);
    std::vector<RowTaps> taps;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n0 = (item / pl.nrow) * pl.group, ng = std::min(pl.group, g.n - n0);
      const int64_t oh0 = (item % pl.nrow) * pl.rows, oh1 = std::min(OH, oh0 + pl.rows);
      const int64_t pc = (oh1 - oh0) * OW, ncols = ng * pc;
      row_taps(g, 0, K, oh0, oh1, &taps);
      for (int64_t i = 0; i < ng; ++i)
        im2col(x + (n0 + i) * CHW, g, taps, oh0, oh1, col.data() + i * pc, pl.ldc);
      zero_tail(col.data(), pl.ldc, K, ncols);
      if (ng == 1) {
        avx2::fwd_chunk(w, M, K, col.data(), pl.ldc, ncols, y + n0 * M * P + oh0 * OW, P);
        continue;
      }
      avx2::fwd_chunk(w, M, K, col.data(), pl.ldc, ncols, ybuf->data(), pl.ldc);
      for (int64_t i = 0; i < ng; ++i)
        for (int64_t t = 0; t < M; ++t)
          std::memcpy(y + ((n0 + i) * M + t) * P + oh0 * OW, ybuf->data() + t * pl.ldc + i * pc,
                      static_cast<size_t>(pc) * sizeof(float));
    }
  });
#endif
}

void conv2d_backward(const float* x, const float* w, const float* gy, float* dx, float* dw,
                     const ConvGeometry& g, int num_threads) {
  check_geometry(g);
  if (dx == nullptr && dw == nullptr) return;
  if (!avx2_or_better()) return ref::conv2d_backward(x, w, gy, dx, dw, g, num_threads);
#if defined(ONEBIT_X86)
  const int nt = resolve_threads(num_threads);
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW, KK = g.kh * g.kw, K = g.c * KK;
  const int64_t M = g.cout, HW = g.h * g.w;
  // Each thread owns a block of input channels: the dX planes and the dF columns
  // k = (c*KH + i)*KW + j of those channels, for every image, so no two threads write the same
  // value and every sum runs in the same order whatever the thread count (the chunk plan does
  // not depend on it either).
  const int64_t nblocks = std::min<int64_t>(nt, g.c);
  const int64_t rows_max = ceil_div(g.c, nblocks) * KK;
  const Plan pl = make_plan(g, 1, chunk_cols(g, 4 * (2 * round8(K) + M)));
  std::vector<double> sum_g(dw != nullptr ? M : 0, 0.0);  // written by block 0 only

  parallel_for(nblocks, nt, 1, [&](int64_t begin, int64_t end) {
    ScratchBuffer<float> col(static_cast<size_t>(round8(rows_max) * pl.ldc));
    ScratchBuffer<float> gp(static_cast<size_t>(M * pl.ldc));
    // dX columns, then (for dF) the packed columns transposed
    ScratchBuffer<float> aux(static_cast<size_t>(round8(rows_max) * pl.ldc));
    std::vector<RowTaps> taps;
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * g.c / nblocks, c1 = (blk + 1) * g.c / nblocks;
      const int64_t k0 = c0 * KK, k1 = c1 * KK, nr = k1 - k0, ldxt = round8(nr);
      if (dx != nullptr)
        for (int64_t n = 0; n < g.n; ++n)
          std::fill(dx + (n * g.c + c0) * HW, dx + (n * g.c + c1) * HW, 0.0f);
      if (dw != nullptr)
        for (int64_t t = 0; t < M; ++t) std::fill(dw + t * K + k0, dw + t * K + k1, 0.0f);
      for (int64_t n0 = 0; n0 < g.n; n0 += pl.group) {
        const int64_t ng = std::min(pl.group, g.n - n0);
        for (int64_t oh0 = 0; oh0 < OH; oh0 += pl.rows) {
          const int64_t oh1 = std::min(OH, oh0 + pl.rows), pc = (oh1 - oh0) * OW;
          const int64_t ncols = ng * pc;
          row_taps(g, k0, k1, oh0, oh1, &taps);
          for (int64_t i = 0; i < ng; ++i)
            im2col(x + (n0 + i) * g.c * HW, g, taps, oh0, oh1, col.data() + i * pc, pl.ldc);
          zero_tail(col.data(), pl.ldc, nr, ncols);
          for (int64_t t = 0; t < M; ++t) {
            float* dst = gp.data() + t * pl.ldc;
            for (int64_t i = 0; i < ng; ++i)
              std::memcpy(dst + i * pc, gy + ((n0 + i) * M + t) * P + oh0 * OW,
                          static_cast<size_t>(pc) * sizeof(float));
            if (dw != nullptr && blk == 0) sum_g[t] += row_sum(dst, ncols);
          }
          zero_tail(gp.data(), pl.ldc, M, ncols);
          if (dx != nullptr) {
            avx2::dx_chunk(w + k0, K, M, col.data(), pl.ldc, gp.data(), pl.ldc, nr, ncols,
                           aux.data(), pl.ldc);
            for (int64_t i = 0; i < ng; ++i)
              col2im_add(aux.data() + i * pc, pl.ldc, g, taps, oh0, dx + (n0 + i) * g.c * HW);
          }
          if (dw != nullptr) {
            std::fill(col.data() + nr * pl.ldc, col.data() + ldxt * pl.ldc, 0.0f);
            avx2::transpose_cols(col.data(), pl.ldc, nr, ncols, aux.data(), ldxt);
            avx2::dw_chunk(gp.data(), pl.ldc, M, aux.data(), ldxt, nr, ncols, dw + k0, K);
          }
        }
      }
    }
  });
  if (dw != nullptr) {
    for (int64_t t = 0; t < M; ++t) {
      const float s = static_cast<float>(sum_g[t]);
      for (int64_t k = 0; k < K; ++k) dw[t * K + k] -= w[t * K + k] * s;
    }
  }
#endif
}

}  // namespace onebit::adder
