// Driver of the AdderNet float training op: packs a few output rows of one image at a time
// (im2col rows k = (c*KH + i)*KW + j, zero padding as AdderNet's), runs the ISA's chunk kernels,
// scatters dX back (col2im) and reduces dF over threads in a fixed order. Memory: per thread O(K * 512) floats,
// never the C_out x K x (N*OH*OW) difference tensor.
//
// dF is computed as G X^T - F * sum(G): sum_q (x_q - f) g_q = sum_q x_q g_q - f sum_q g_q exactly,
// so its inner loop is one FMA per term; the rounding differs from the direct sum only by the
// extra product f * sum(G) (bounded by u * |f| * sum|g|).
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>
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

constexpr int64_t kChunkCols = 512;  // about this many output positions per packed chunk

int64_t round8(int64_t v) { return (v + 7) / 8 * 8; }

// Output columns ow whose tap j lands inside the input: [lo, hi).
void valid_cols(const ConvGeometry& g, int64_t j, int64_t* lo, int64_t* hi) {
  const int64_t OW = g.ow(), first = g.pw - j, last = g.w - 1 + g.pw - j;
  *lo = first <= 0 ? 0 : (first + g.sw - 1) / g.sw;
  *hi = last < 0 ? 0 : last / g.sw + 1;
  *lo = std::min(*lo, OW);
  *hi = std::clamp(*hi, *lo, OW);
}

// col[(r - k0) * ldc + (oh - oh0) * OW + ow] = Xp[c, oh*sh - ph + i, ow*sw - pw + j],
// rows r in [k0, k1) with r = (c*KH + i)*KW + j; columns past the chunk are zeroed.
void im2col(const float* xn, const ConvGeometry& g, int64_t k0, int64_t k1, int64_t oh0,
            int64_t oh1, float* col, int64_t ldc) {
  const int64_t OW = g.ow(), KK = g.kh * g.kw, ncols = (oh1 - oh0) * OW;
  for (int64_t r = k0; r < k1; ++r) {
    const int64_t c = r / KK, i = (r / g.kw) % g.kh, j = r % g.kw;
    int64_t lo, hi;
    valid_cols(g, j, &lo, &hi);
    const float* plane = xn + c * g.h * g.w;
    float* row = col + (r - k0) * ldc;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      float* dst = row + (oh - oh0) * OW;
      const int64_t h = oh * g.sh - g.ph + i;
      if (h < 0 || h >= g.h || lo >= hi) {
        std::fill(dst, dst + OW, 0.0f);
        continue;
      }
      const float* src = plane + h * g.w + (lo * g.sw - g.pw + j);
      std::fill(dst, dst + lo, 0.0f);
      if (g.sw == 1) {
        std::memcpy(dst + lo, src, static_cast<size_t>(hi - lo) * sizeof(float));
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[(ow - lo) * g.sw];
      }
      std::fill(dst + hi, dst + OW, 0.0f);
    }
    std::fill(row + ncols, row + ldc, 0.0f);
  }
}

// The transpose of im2col: dxn[c, h, w] += col[...] for the valid taps of rows [k0, k1).
void col2im_add(const float* col, int64_t ldc, const ConvGeometry& g, int64_t k0, int64_t k1,
                int64_t oh0, int64_t oh1, float* dxn) {
  const int64_t OW = g.ow(), KK = g.kh * g.kw;
  for (int64_t r = k0; r < k1; ++r) {
    const int64_t c = r / KK, i = (r / g.kw) % g.kh, j = r % g.kw;
    int64_t lo, hi;
    valid_cols(g, j, &lo, &hi);
    if (lo >= hi) continue;
    float* plane = dxn + c * g.h * g.w;
    const float* row = col + (r - k0) * ldc;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t h = oh * g.sh - g.ph + i;
      if (h < 0 || h >= g.h) continue;
      const float* src = row + (oh - oh0) * OW;
      float* dst = plane + h * g.w + (lo * g.sw - g.pw + j);
      if (g.sw == 1) {
        for (int64_t ow = lo; ow < hi; ++ow) dst[ow - lo] += src[ow];
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) dst[(ow - lo) * g.sw] += src[ow];
      }
    }
  }
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
  if (!use_avx2_kernels()) return ref::conv2d_forward(x, w, y, g, num_threads);
#if defined(ONEBIT_X86)
  const int nt = resolve_threads(num_threads);
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW, K = g.c * g.kh * g.kw;
  int64_t rows = std::clamp<int64_t>(kChunkCols / OW, 1, OH);
  if (g.n < nt) {  // split images into enough chunks for every thread
    const int64_t want = (nt + g.n - 1) / g.n;
    rows = std::min(rows, std::max<int64_t>(1, (OH + want - 1) / want));
  }
  const int64_t nchunks = (OH + rows - 1) / rows, ldc = round8(rows * OW);
  parallel_for(g.n * nchunks, nt, 1, [&](int64_t begin, int64_t end) {
    ScratchBuffer<float> col(static_cast<size_t>(K * ldc));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / nchunks, oh0 = (item % nchunks) * rows;
      const int64_t oh1 = std::min(OH, oh0 + rows);
      im2col(x + n * g.c * g.h * g.w, g, 0, K, oh0, oh1, col.data(), ldc);
      avx2::fwd_chunk(w, g.cout, K, col.data(), ldc, (oh1 - oh0) * OW,
                      y + n * g.cout * P + oh0 * OW, P);
    }
  });
#endif
}

void conv2d_backward(const float* x, const float* w, const float* gy, float* dx, float* dw,
                     const ConvGeometry& g, int num_threads) {
  check_geometry(g);
  if (dx == nullptr && dw == nullptr) return;
  if (!use_avx2_kernels()) return ref::conv2d_backward(x, w, gy, dx, dw, g, num_threads);
#if defined(ONEBIT_X86)
  const int nt = resolve_threads(num_threads);
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW, KK = g.kh * g.kw, K = g.c * KK;
  const int64_t M = g.cout, HW = g.h * g.w;
  const int64_t rows = std::clamp<int64_t>(kChunkCols / OW, 1, OH), ldc = round8(rows * OW);
  // Work items are (image, channel block): blocks own disjoint dX planes and dF columns. Split
  // channels only when the images alone would leave threads idle or unevenly loaded.
  int64_t nblocks = 1;
  if (g.n % nt != 0 && g.n < 4 * nt) nblocks = nt / std::gcd<int64_t>(g.n, nt);
  nblocks = std::min(nblocks, g.c);
  const int64_t rows_max = ((g.c + nblocks - 1) / nblocks) * KK;

  std::vector<float> wt;  // F^T: [K, M]
  if (dx != nullptr) {
    wt.resize(static_cast<size_t>(K * M));
    for (int64_t t = 0; t < M; ++t)
      for (int64_t k = 0; k < K; ++k) wt[k * M + t] = w[t * K + k];
  }
  // Per-thread partial dF sums, kept by the first item of the thread's range and added up in
  // that order afterwards, so dF does not depend on thread timing (deterministic for a given
  // thread count).
  struct Partial {
    std::vector<float> dw;
    std::vector<double> sum_g;
  };
  const int64_t items = g.n * nblocks;
  std::vector<std::unique_ptr<Partial>> partials(dw != nullptr ? items : 0);

  parallel_for(items, nt, 1, [&](int64_t begin, int64_t end) {
    ScratchBuffer<float> col(static_cast<size_t>(rows_max * ldc));
    ScratchBuffer<float> gp(static_cast<size_t>(M * ldc));
    std::unique_ptr<ScratchBuffer<float>> dcol;
    if (dx != nullptr) dcol = std::make_unique<ScratchBuffer<float>>(rows_max * ldc);
    std::unique_ptr<Partial> part;
    if (dw != nullptr) {
      part = std::make_unique<Partial>();
      part->dw.assign(static_cast<size_t>(M * K), 0.0f);
      part->sum_g.assign(static_cast<size_t>(M), 0.0);
    }
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / nblocks, blk = item % nblocks;
      const int64_t c0 = blk * g.c / nblocks, c1 = (blk + 1) * g.c / nblocks;
      if (c1 == c0) continue;
      const int64_t k0 = c0 * KK, k1 = c1 * KK, nr = k1 - k0;
      const float* xn = x + n * g.c * HW;
      float* dxn = dx != nullptr ? dx + n * g.c * HW : nullptr;
      if (dxn != nullptr) std::fill(dxn + c0 * HW, dxn + c1 * HW, 0.0f);
      for (int64_t oh0 = 0; oh0 < OH; oh0 += rows) {
        const int64_t oh1 = std::min(OH, oh0 + rows), ncols = (oh1 - oh0) * OW;
        im2col(xn, g, k0, k1, oh0, oh1, col.data(), ldc);
        const float* gsrc = gy + n * M * P + oh0 * OW;
        for (int64_t t = 0; t < M; ++t) {
          float* dst = gp.data() + t * ldc;
          std::memcpy(dst, gsrc + t * P, static_cast<size_t>(ncols) * sizeof(float));
          std::fill(dst + ncols, dst + ldc, 0.0f);
          if (part && blk == 0) part->sum_g[t] += row_sum(dst, ncols);
        }
        if (dxn != nullptr) {
          avx2::dx_chunk(wt.data() + k0 * M, M, col.data(), ldc, gp.data(), ldc, nr, ncols,
                         dcol->data(), ldc);
          col2im_add(dcol->data(), ldc, g, k0, k1, oh0, oh1, dxn);
        }
        if (part)
          avx2::dw_chunk(gp.data(), ldc, M, col.data(), ldc, nr, ncols, part->dw.data() + k0, K);
      }
    }
    if (part) partials[begin] = std::move(part);
  });
  if (dw != nullptr) {
    std::fill(dw, dw + M * K, 0.0f);
    std::vector<double> sum_g(M, 0.0);
    for (const auto& part : partials) {
      if (!part) continue;
      for (int64_t q = 0; q < M * K; ++q) dw[q] += part->dw[q];
      for (int64_t t = 0; t < M; ++t) sum_g[t] += part->sum_g[t];
    }
    for (int64_t t = 0; t < M; ++t) {
      const float s = static_cast<float>(sum_g[t]);
      for (int64_t k = 0; k < K; ++k) dw[t * K + k] -= w[t * K + k] * s;
    }
  }
#endif
}

}  // namespace onebit::adder
