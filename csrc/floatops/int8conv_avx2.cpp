// AVX2 kernels of the int8 convolution (compiled with -mavx2 -mfma; run only when the dispatcher
// selects AVX2 or better).
//
// Per output row the taps of every output pixel are first copied into a small row buffer (an
// im2row of K = kh kw C bytes per pixel, padded to a multiple of 4 * pairs, which stays in L1),
// so every 4 taps of a pixel are one 32-bit word whatever the kernel, stride or channel count.
// The register tile is R pixels x V vectors of 8 output channels, int32 accumulators: 3 x 2 for
// full 16-channel blocks, 6 x 1 for a last block of at most 8 channels (on the 7x7/2, 3 -> 64
// stem, 1 core, Zen 3, 3 x 2 ran ~1.25x faster than 4 x 2, for which GCC spills accumulators).
// Per group of 4 taps: broadcast the pixel's 4 bytes (vpbroadcastd), vpmaddubsw with the
// 8 channels x 4 taps of int8 weights (u8 x s8 -> 16 int16 sums of 2 products), vpmaddwd with
// ones (-> 8 int32 sums of 4 products), vpaddd. With pairs = 2 two vpmaddubsw results are added
// in int16 (vpaddw) before one vpmaddwd: 3 multiply-port instructions per 64 MACs instead of 4
// (on the stem ~88 G MAC/s against ~74 with pairs = 1, both near what a bare register tile of
// the same instructions reaches on that CPU).
//
// No int16 saturation: an int16 holds 2 * pairs products of magnitude <= act_max * wmax, and the
// prepared filters guarantee 2 * pairs * act_max * wmax <= 32767 (int8conv.h, pairs_for), so
// every vpmaddubsw and vpaddw result is exact.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "floatops/int8conv_kernels.h"

namespace onebit::int8conv::avx2 {

namespace {

constexpr int64_t kB = PreparedInt8Conv::kBlock;
static_assert(kB == 16, "the tiles assume 2 vectors of 8 output channels per block");
constexpr int64_t kGroupBytes = kB * 4;  // one 4-tap group of a block: 16 channels x 4 taps

inline __m256i lane_mask(int64_t n) {  // first n (0..8) lanes set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline int32_t load32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Copies n bytes in 32-byte chunks; writes up to 31 bytes past dst + n and reads as far past
// src + n (both buffers have that slack).
inline void copy_run(uint8_t* dst, const uint8_t* src, int64_t n) {
  for (int64_t o = 0; o < n; o += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + o),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + o)));
}

struct TileArgs {
  int64_t kp;       // bytes per pixel in the row buffer (K padded)
  int64_t groups;   // 4-tap groups per pixel (kp / 4)
  int64_t cout;
  bool relu;
};

// y[r, 8 v + l] for r < R pixels, v < V vectors of the block at wb; nvalid channels stored.
template <int R, int V, int P>
inline void tile(const uint8_t* xr, const int8_t* wb, const int32_t* zs, const float* sc,
                 const float* bi, int64_t nvalid, float* y, const TileArgs& a) {
  __m256i acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t kp = a.kp, groups = a.groups;
  for (int64_t gi = 0; gi < groups; gi += P) {
    const uint8_t* xg = xr + 4 * gi;
    const int8_t* wg = wb + gi * kGroupBytes;
    for (int r = 0; r < R; ++r) {
      __m256i xb[P];
      for (int p = 0; p < P; ++p) xb[p] = _mm256_set1_epi32(load32(xg + r * kp + 4 * p));
      for (int v = 0; v < V; ++v) {
        __m256i t = _mm256_maddubs_epi16(
            xb[0], _mm256_load_si256(reinterpret_cast<const __m256i*>(wg + 32 * v)));
        for (int p = 1; p < P; ++p)
          t = _mm256_add_epi16(
              t, _mm256_maddubs_epi16(xb[p], _mm256_load_si256(reinterpret_cast<const __m256i*>(
                                                 wg + p * kGroupBytes + 32 * v))));
        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(t, ones));
      }
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int v = 0; v < V; ++v) {
    const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zs + 8 * v));
    const __m256 s = _mm256_loadu_ps(sc + 8 * v), b = _mm256_loadu_ps(bi + 8 * v);
    const int64_t n = nvalid - 8 * v;
    for (int r = 0; r < R; ++r) {
      __m256 o = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][v], z)), s, b);
      if (a.relu) o = _mm256_max_ps(o, zero);
      float* p = y + r * a.cout + 8 * v;
      if (n >= 8)
        _mm256_storeu_ps(p, o);
      else if (n > 0)
        _mm256_maskstore_ps(p, lane_mask(n), o);
    }
  }
}

// One block of output channels over pixels [0, ow): R-pixel tiles, then the remainder.
template <int R, int V, int P>
void block_row(const uint8_t* buf, const int8_t* wb, const int32_t* zs, const float* sc,
               const float* bi, int64_t nvalid, float* y, int64_t ow, const TileArgs& a) {
  int64_t x = 0;
  for (; x + R <= ow; x += R)
    tile<R, V, P>(buf + x * a.kp, wb, zs, sc, bi, nvalid, y + x * a.cout, a);
  for (; x < ow; ++x) tile<1, V, P>(buf + x * a.kp, wb, zs, sc, bi, nvalid, y + x * a.cout, a);
}

template <int P>
void blocks_row(const uint8_t* buf, const PreparedInt8Conv& w, float* yrow, int64_t ow,
                const TileArgs& a) {
  for (int64_t b = 0; b < w.blocks(); ++b) {
    const int64_t nvalid = std::min(kB, a.cout - b * kB);
    const int8_t* wb = w.blocked() + b * a.groups * kGroupBytes;
    const int32_t* zs = w.zero_sum() + b * kB;
    const float* sc = w.out_scale() + b * kB;
    const float* bi = w.bias() + b * kB;
    if (nvalid > 8)
      block_row<3, 2, P>(buf, wb, zs, sc, bi, nvalid, yrow + b * kB, ow, a);
    else
      block_row<6, 1, P>(buf, wb, zs, sc, bi, nvalid, yrow + b * kB, ow, a);
  }
}

}  // namespace

int64_t scratch_bytes(const PreparedInt8Conv& w, const ConvGeometry& g) {
  return g.ow() * w.groups() * 4 + 64;
}

void im2row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g, uint8_t* scratch) {
  const int64_t ow = g.ow(), c = g.c, kp = w.groups() * 4;
  // im2row: pixel x's taps in (i, j, c) order at scratch + x kp. Runs are copied in increasing
  // order, so each run's overshoot is overwritten by the next; the bytes past K of a pixel hold
  // whatever the overshoot left there (finite input bytes), which meet zero weights.
  const int64_t px_step = g.sw * c, row_step = g.dh * r.row_stride;
  for (int64_t x = 0; x < ow; ++x) {
    uint8_t* dst = scratch + x * kp;
    const uint8_t* src = r.x0 + x * px_step;
    if (g.dw == 1) {
      const int64_t run = g.kw * c;
      for (int64_t i = 0; i < g.kh; ++i) copy_run(dst + i * run, src + i * row_step, run);
    } else {
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          copy_run(dst + (i * g.kw + j) * c, src + i * row_step + j * g.dw * c, c);
    }
  }
}

void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g,
              uint8_t* scratch) {
  im2row(r, w, g, scratch);
  const int64_t ow = g.ow(), kp = w.groups() * 4;
  TileArgs a{kp, w.groups(), g.cout, r.relu};
  if (w.pairs() == 2)
    blocks_row<2>(scratch, w, r.yrow, ow, a);
  else
    blocks_row<1>(scratch, w, r.yrow, ow, a);
}

void quantize(const float* x, uint8_t* q, int64_t count, float inv_scale, int zero_point,
              int act_max) {
  const float lo = static_cast<float>(-zero_point), hi = static_cast<float>(act_max - zero_point);
  const __m256 vinv = _mm256_set1_ps(inv_scale), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256i vzp = _mm256_set1_epi32(zero_point);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto one = [&](const float* p) {
    __m256 t = _mm256_mul_ps(_mm256_loadu_ps(p), vinv);
    t = _mm256_min_ps(_mm256_max_ps(t, vlo), vhi);  // max(NaN, lo) = lo
    return _mm256_add_epi32(_mm256_cvtps_epi32(t), vzp);  // rounds half to even
  };
  int64_t k = 0;
  for (; k + 32 <= count; k += 32) {
    const __m256i a = _mm256_packs_epi32(one(x + k), one(x + k + 8));
    const __m256i b = _mm256_packs_epi32(one(x + k + 16), one(x + k + 24));
    const __m256i u = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), u);
  }
  for (; k < count; ++k) q[k] = quantize_value(x[k], inv_scale, lo, hi, zero_point);
}

}  // namespace onebit::int8conv::avx2
