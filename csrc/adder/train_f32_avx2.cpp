// AVX2 + FMA inner kernels of the AdderNet float training op (see tiles.h for the contracts).
// Each kernel is a register-blocked "GEMM" whose multiply-add is replaced by AdderNet's term:
//   forward  acc[t][q] += |w - x|            4 filters x 24 positions, 3 ops per 8 terms
//   dX       acc[r][q] += clip(w - x) * g    4 rows x 16 positions, 4 ops per 8 terms
//   dW       acc[t][k] += g * x              4 filters x 24 taps over X^T (dF = G X - F sum G)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "adder/tiles.h"

namespace onebit::adder::avx2 {
namespace {

// Stores the first `n` (1..8) lanes of v to dst.
inline void store_partial(float* dst, __m256 v, int64_t n) {
  if (n >= 8) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  for (int64_t l = 0; l < n; ++l) dst[l] = tmp[l];
}

// Reads the first n (1..8) lanes of src (the rest zero).
inline __m256 load_partial(const float* src, int64_t n) {
  if (n >= 8) return _mm256_loadu_ps(src);
  alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t l = 0; l < n; ++l) tmp[l] = src[l];
  return _mm256_load_ps(tmp);
}

// Y = -sum_k |W - X| over a block of k (accumulate: Y -= that sum).
template <int MT, int NV>
void fwd_tile(const float* W, int64_t ldw, int64_t nk, const float* X, int64_t ldx, float* Y,
              int64_t ldy, int64_t ncols, bool accumulate) {
  __m256 acc[MT][NV];
#pragma GCC unroll 4
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) acc[t][j] = _mm256_setzero_ps();
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t k = 0; k < nk; ++k) {
    const float* xr = X + k * ldx;
    __m256 xv[NV];
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) xv[j] = _mm256_load_ps(xr + 8 * j);
#pragma GCC unroll 4
    for (int t = 0; t < MT; ++t) {
      const __m256 wv = _mm256_broadcast_ss(W + t * ldw + k);
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j)
        acc[t][j] = _mm256_add_ps(acc[t][j], _mm256_and_ps(_mm256_sub_ps(wv, xv[j]), absmask));
    }
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
#pragma GCC unroll 4
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) {
      float* y = Y + t * ldy + 8 * j;
      const __m256 v = accumulate ? _mm256_sub_ps(load_partial(y, ncols - 8 * j), acc[t][j])
                                  : _mm256_xor_ps(acc[t][j], sign);
      store_partial(y, v, ncols - 8 * j);
    }
}

template <int MK, int NV>
void dx_tile(const float* W, int64_t ldw, int64_t M, const float* X, int64_t ldx, const float* G,
             int64_t ldg, float* D, int64_t ldd, bool accumulate) {
  __m256 acc[MK][NV];
#pragma GCC unroll 4
  for (int r = 0; r < MK; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j)
      acc[r][j] = accumulate ? _mm256_load_ps(D + r * ldd + 8 * j) : _mm256_setzero_ps();
  const __m256 lo = _mm256_set1_ps(-1.0f), hi = _mm256_set1_ps(1.0f);
  for (int64_t t = 0; t < M; ++t) {
    __m256 gv[NV];
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) gv[j] = _mm256_load_ps(G + t * ldg + 8 * j);
#pragma GCC unroll 4
    for (int r = 0; r < MK; ++r) {
      const __m256 wv = _mm256_broadcast_ss(W + t * ldw + r);
#pragma GCC unroll 2
      for (int j = 0; j < NV; ++j) {
        // w * 1 - x rounds once, exactly like w - x, but runs on the FMA ports, leaving the
        // add ports to max/min (about 1.4x faster on Zen 3)
        __m256 d = _mm256_fmsub_ps(wv, hi, _mm256_load_ps(X + r * ldx + 8 * j));
        d = _mm256_min_ps(_mm256_max_ps(d, lo), hi);
        acc[r][j] = _mm256_fmadd_ps(d, gv[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < MK; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) _mm256_store_ps(D + r * ldd + 8 * j, acc[r][j]);
}

// Adds the first n (1..8) lanes of v to dst.
inline void add_partial(float* dst, __m256 v, int64_t n) {
  if (n >= 8) {
    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), v));
    return;
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  for (int64_t l = 0; l < n; ++l) dst[l] += tmp[l];
}

template <int MT, int NV>
void dw_tile(const float* G, int64_t ldg, const float* XT, int64_t ldxt, int64_t ncols, float* DW,
             int64_t lddw, int64_t nk) {
  __m256 acc[MT][NV];
#pragma GCC unroll 4
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[t][v] = _mm256_setzero_ps();
  for (int64_t q = 0; q < ncols; ++q) {
    __m256 xv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) xv[v] = _mm256_load_ps(XT + q * ldxt + 8 * v);
#pragma GCC unroll 4
    for (int t = 0; t < MT; ++t) {
      const __m256 gv = _mm256_broadcast_ss(G + t * ldg + q);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[t][v] = _mm256_fmadd_ps(gv, xv[v], acc[t][v]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < MT; ++t)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) add_partial(DW + t * lddw + 8 * v, acc[t][v], nk - 8 * v);
}

using FwdTile = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t,
                         int64_t, bool);
using DxTile = void (*)(const float*, int64_t, int64_t, const float*, int64_t, const float*,
                        int64_t, float*, int64_t, bool);
using DwTile = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t,
                        int64_t);

constexpr int kFwdT = 4, kFwdV = 3;  // forward tile: filters x position vectors
constexpr int64_t kFwdKBlock = 512;  // fan-in block: the tile's filter rows stay in L1
constexpr int64_t kDxTBlock = 128;   // filter block of dX: its W and G lines stay in L1
constexpr int kDxR = 4, kDxV = 2;    // dX tile: rows x position vectors
constexpr int kDwT = 4, kDwV = 3;    // dW tile: filters x fan-in vectors

const FwdTile kFwd[kFwdT][kFwdV] = {
    {fwd_tile<1, 1>, fwd_tile<1, 2>, fwd_tile<1, 3>},
    {fwd_tile<2, 1>, fwd_tile<2, 2>, fwd_tile<2, 3>},
    {fwd_tile<3, 1>, fwd_tile<3, 2>, fwd_tile<3, 3>},
    {fwd_tile<4, 1>, fwd_tile<4, 2>, fwd_tile<4, 3>}};
const DxTile kDx[kDxR][kDxV] = {{dx_tile<1, 1>, dx_tile<1, 2>},
                                {dx_tile<2, 1>, dx_tile<2, 2>},
                                {dx_tile<3, 1>, dx_tile<3, 2>},
                                {dx_tile<4, 1>, dx_tile<4, 2>}};
const DwTile kDw[kDwT][kDwV] = {{dw_tile<1, 1>, dw_tile<1, 2>, dw_tile<1, 3>},
                                {dw_tile<2, 1>, dw_tile<2, 2>, dw_tile<2, 3>},
                                {dw_tile<3, 1>, dw_tile<3, 2>, dw_tile<3, 3>},
                                {dw_tile<4, 1>, dw_tile<4, 2>, dw_tile<4, 3>}};

// Transposes the 8x8 block src[i * lds + j] into dst[j * ldd + i].
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

}  // namespace

void transpose_cols(const float* X, int64_t ldx, int64_t nrows, int64_t ncols, float* XT,
                    int64_t ldxt) {
  for (int64_t r0 = 0; r0 < nrows; r0 += 8)
    for (int64_t q0 = 0; q0 < ncols; q0 += 8)
      transpose8x8(X + r0 * ldx + q0, ldx, XT + q0 * ldxt + r0, ldxt);
}

void fwd_chunk(const float* W, int64_t M, int64_t K, const float* X, int64_t ldx, int64_t ncols,
               float* Y, int64_t ldy) {
  for (int64_t k0 = 0; k0 < K; k0 += kFwdKBlock) {
    const int64_t nk = std::min(kFwdKBlock, K - k0);
    for (int64_t t0 = 0; t0 < M; t0 += kFwdT) {
      const int64_t mt = std::min<int64_t>(kFwdT, M - t0);
      for (int64_t q0 = 0; q0 < ncols; q0 += 8 * kFwdV) {
        const int64_t nv = std::min<int64_t>(kFwdV, (ncols - q0 + 7) / 8);
        kFwd[mt - 1][nv - 1](W + t0 * K + k0, K, nk, X + k0 * ldx + q0, ldx, Y + t0 * ldy + q0,
                             ldy, ncols - q0, k0 > 0);
      }
    }
  }
}

void dx_chunk(const float* W, int64_t ldw, int64_t M, const float* X, int64_t ldx, const float* G,
              int64_t ldg, int64_t nrows, int64_t ncols, float* D, int64_t ldd) {
  for (int64_t t0 = 0; t0 < M; t0 += kDxTBlock) {
    const int64_t mt = std::min(kDxTBlock, M - t0);
    for (int64_t r0 = 0; r0 < nrows; r0 += kDxR) {
      const int64_t mr = std::min<int64_t>(kDxR, nrows - r0);
      for (int64_t q0 = 0; q0 < ncols; q0 += 8 * kDxV) {
        const int64_t nv = std::min<int64_t>(kDxV, (ncols - q0 + 7) / 8);
        kDx[mr - 1][nv - 1](W + t0 * ldw + r0, ldw, mt, X + r0 * ldx + q0, ldx,
                            G + t0 * ldg + q0, ldg, D + r0 * ldd + q0, ldd, t0 > 0);
      }
    }
  }
}

void dw_chunk(const float* G, int64_t ldg, int64_t M, const float* XT, int64_t ldxt, int64_t nk,
              int64_t ncols, float* DW, int64_t lddw) {
  for (int64_t k0 = 0; k0 < nk; k0 += 8 * kDwV) {
    const int64_t nv = std::min<int64_t>(kDwV, (nk - k0 + 7) / 8);
    for (int64_t t0 = 0; t0 < M; t0 += kDwT) {
      const int64_t mt = std::min<int64_t>(kDwT, M - t0);
      kDw[mt - 1][nv - 1](G + t0 * ldg, ldg, XT + k0, ldxt, ncols, DW + t0 * lddw + k0, lddw,
                          nk - k0);
    }
  }
}

}  // namespace onebit::adder::avx2
