// AVX2 + FMA row kernels of the float ops (compiled with -mavx2 -mfma; run only when the
// dispatcher selects AVX2 or better).
//
// Direct convolution: a register tile of R output pixels x V vectors of 8 output channels
// (R * V <= 12 accumulators). Per tap (i, j, c) it loads V filter vectors and broadcasts R input
// values: V + R loads for R * V FMAs. Measured on the 7x7/2, 3 -> 64 stem (1 core, Zen 3):
// 3x4, 4x3, 4x2 and 5x2 all run at 42-46 GMAC/s, 6x2 ~40, 8x1 ~12, 2x8 ~20; 3x4 tiles 32-channel
// blocks, which cover 64 output channels exactly, so it is the main tile.
#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "floatops/kernels.h"

namespace onebit::floatops::avx2 {

namespace {

constexpr int64_t kB = PreparedConv::kBlock;
static_assert(kB == 32, "the conv tiles assume 4 vectors per block");

inline __m256i lane_mask(int64_t n) {  // first n (0..8) lanes set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 load_part(const float* p, int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
}

inline void store_part(float* p, __m256 v, int64_t n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else if (n > 0)
    _mm256_maskstore_ps(p, lane_mask(n), v);
}

struct TileArgs {
  int64_t px_step;    // floats between the windows of neighbouring output pixels (sw * C)
  int64_t row_step;   // floats between the window's rows (dh * padded row)
  int64_t kh, kwn;    // window rows; column groups per row (1 when dw == 1)
  int64_t jstep, cn;  // floats between column groups; contiguous taps per group
  int64_t cout;
};

// The taps of one window row: R pixels x V vectors, cn contiguous input floats per column group.
template <int R, int V>
inline void tap_run(__m256 (&acc)[R][V], const float* x, const float* w, int64_t px_step,
                    int64_t cn) {
  for (int64_t t = 0; t < cn; ++t) {
    __m256 wv[V];
    for (int v = 0; v < V; ++v) wv[v] = _mm256_load_ps(w + t * kB + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + r * px_step + t);
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(xb, wv[v], acc[r][v]);
    }
  }
}

// y[r, 8 v + l] = bias + sum over taps, for r < R pixels, v < V vectors; `nvalid` channels
// stored. Contig: dw == 1, so a window row is one run of kw * C floats (two loop levels keep the
// loop state in registers; a third level made the compiler reload it from the stack).
template <int R, int V, bool Contig>
inline void conv_tile(const float* x0, const float* wb, const float* bias, int64_t nvalid,
                      float* y, const TileArgs& a) {
  __m256 acc[R][V];
  for (int v = 0; v < V; ++v) {
    const __m256 b0 = bias ? load_part(bias + 8 * v, nvalid - 8 * v) : _mm256_setzero_ps();
    for (int r = 0; r < R; ++r) acc[r][v] = b0;
  }
  const int64_t px_step = a.px_step, cn = a.cn, row_step = a.row_step, kh = a.kh;
  if (Contig) {
    for (int64_t i = 0; i < kh; ++i)
      tap_run<R, V>(acc, x0 + i * row_step, wb + i * cn * kB, px_step, cn);
  } else {
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < a.kwn; ++j)
        tap_run<R, V>(acc, x0 + i * row_step + j * a.jstep, wb + (i * a.kwn + j) * cn * kB,
                      px_step, cn);
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) store_part(y + r * a.cout + 8 * v, acc[r][v], nvalid - 8 * v);
}

// One block of output channels over a whole output row: R-pixel tiles, then single pixels.
template <int R, int V>
void conv_block_row(const float* x0, const float* wb, const float* bias, int64_t nvalid,
                    float* y, int64_t ow, const TileArgs& a) {
  const bool contig = a.kwn == 1;
  int64_t x = 0;
  for (; x + R <= ow; x += R) {
    if (contig)
      conv_tile<R, V, true>(x0 + x * a.px_step, wb, bias, nvalid, y + x * a.cout, a);
    else
      conv_tile<R, V, false>(x0 + x * a.px_step, wb, bias, nvalid, y + x * a.cout, a);
  }
  for (; x < ow; ++x) {
    if (contig)
      conv_tile<1, V, true>(x0 + x * a.px_step, wb, bias, nvalid, y + x * a.cout, a);
    else
      conv_tile<1, V, false>(x0 + x * a.px_step, wb, bias, nvalid, y + x * a.cout, a);
  }
}

}  // namespace

void conv_row(const ConvRow& r, const PreparedConv& w, const ConvGeometry& g) {
  TileArgs a;
  a.px_step = g.sw * g.c;
  a.row_step = g.dh * r.row_stride;
  a.kh = g.kh;
  if (g.dw == 1) {  // a window row is kw * C contiguous floats
    a.kwn = 1, a.jstep = 0, a.cn = g.kw * g.c;
  } else {
    a.kwn = g.kw, a.jstep = g.dw * g.c, a.cn = g.c;
  }
  a.cout = g.cout;
  const int64_t ow = g.ow(), taps = g.kh * g.kw * g.c;
  for (int64_t b = 0; b < w.blocks(); ++b) {
    const int64_t nvalid = std::min(kB, g.cout - b * kB);
    const float* wb = w.blocked() + b * taps * kB;
    const float* bias = r.bias ? r.bias + b * kB : nullptr;
    float* y = r.yrow + b * kB;
    switch ((nvalid + 7) / 8) {
      case 4: conv_block_row<3, 4>(r.x0, wb, bias, nvalid, y, ow, a); break;
      case 3: conv_block_row<4, 3>(r.x0, wb, bias, nvalid, y, ow, a); break;
      case 2: conv_block_row<4, 2>(r.x0, wb, bias, nvalid, y, ow, a); break;
      default: conv_block_row<6, 1>(r.x0, wb, bias, nvalid, y, ow, a); break;
    }
  }
}

// ---- pools ---------------------------------------------------------------------------------

namespace {

// np.maximum's rule on 8 lanes: a NaN in `a` wins, else vmaxps(a, b) = a > b ? a : b.
inline __m256 max_rule(__m256 a, __m256 b) {
  return _mm256_blendv_ps(a, _mm256_max_ps(a, b), _mm256_cmp_ps(a, a, _CMP_ORD_Q));
}

// NV vectors of channels starting at channel c0; the last one holds `last` (1..8) channels.
template <int NV>
void max_chunk(const PoolRow& r, const PoolGeometry& g, const ColumnTaps& ct, int64_t base,
               int64_t c0, int64_t last, float* out) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m[NV];
  for (int v = 0; v < NV; ++v) m[v] = ninf;  // max(-inf, v) == v bit for bit
  for (int64_t i = 0; i < r.nrows; ++i) {
    __m256 row_max[NV];
    for (int v = 0; v < NV; ++v) row_max[v] = ninf;
    for (int64_t j = ct.j0; j < ct.j1; ++j) {
      const float* p = r.rows[i] + (base + j * g.dw) * g.c + c0;
      for (int v = 0; v < NV; ++v)
        row_max[v] = max_rule(row_max[v], load_part(p + 8 * v, v == NV - 1 ? last : 8));
    }
    for (int v = 0; v < NV; ++v) m[v] = max_rule(m[v], row_max[v]);
  }
  for (int v = 0; v < NV; ++v) store_part(out + c0 + 8 * v, m[v], v == NV - 1 ? last : 8);
}

template <int NV>
void avg_chunk(const PoolRow& r, const PoolGeometry& g, const ColumnTaps& ct, int64_t base,
               int64_t c0, int64_t last, __m256 divisor, float* out) {
  __m256 s[NV];
  for (int v = 0; v < NV; ++v) s[v] = _mm256_setzero_ps();
  for (int64_t i = 0; i < r.nrows; ++i)
    for (int64_t j = ct.j0; j < ct.j1; ++j) {
      const float* p = r.rows[i] + (base + j) * g.c + c0;
      for (int v = 0; v < NV; ++v)
        s[v] = _mm256_add_ps(s[v], load_part(p + 8 * v, v == NV - 1 ? last : 8));
    }
  for (int v = 0; v < NV; ++v)
    store_part(out + c0 + 8 * v, _mm256_div_ps(s[v], divisor), v == NV - 1 ? last : 8);
}

// Calls chunk(NV tag, c0, last) over the channels: 4 vectors at a time, then one at a time.
template <class F>
void over_channels(int64_t c, F chunk) {
  int64_t c0 = 0;
  for (; c0 + 32 <= c; c0 += 32) chunk(std::integral_constant<int, 4>(), c0, int64_t{8});
  for (; c0 < c; c0 += 8) chunk(std::integral_constant<int, 1>(), c0, std::min<int64_t>(8, c - c0));
}

}  // namespace

void maxpool_row(const PoolRow& r, const PoolGeometry& g) {
  const int64_t ow = g.ow();
  for (int64_t x = 0; x < ow; ++x) {
    const ColumnTaps ct = column_taps(x, g);
    const int64_t base = x * g.sw - g.pw;
    float* out = r.yrow + x * g.c;
    over_channels(g.c, [&](auto nv, int64_t c0, int64_t last) {
      max_chunk<decltype(nv)::value>(r, g, ct, base, c0, last, out);
    });
  }
}

void avgpool_row(const PoolRow& r, const PoolGeometry& g, bool count_include_pad,
                 int64_t divisor_override) {
  const int64_t ow = g.ow();
  for (int64_t x = 0; x < ow; ++x) {
    const ColumnTaps ct = column_taps(x, g);
    const int64_t base = x * g.sw - g.pw;
    const __m256 divisor = _mm256_set1_ps(static_cast<float>(
        divisor_override > 0 ? divisor_override
        : count_include_pad  ? r.window_rows * ct.padded_width
                             : r.nrows * (ct.j1 - ct.j0)));
    float* out = r.yrow + x * g.c;
    over_channels(g.c, [&](auto nv, int64_t c0, int64_t last) {
      avg_chunk<decltype(nv)::value>(r, g, ct, base, c0, last, divisor, out);
    });
  }
}

}  // namespace onebit::floatops::avx2
