// AVX-512 VNNI kernels of the int8 convolution (compiled with AVX-512 F/BW/VL/DQ + VNNI; run only
// when the active ISA is AVX-512 and the CPU has VNNI, see avx512_vnni_active()).
//
// The row buffer (im2row) is the AVX2 kernel's: each output pixel's K taps in (i, j, c) order,
// padded to whole 4-tap groups. A prepared block's 4-tap group is 64 bytes, 16 output channels x
// 4 taps (int8conv.h), which is exactly one zmm of 16 int32 lanes: per group and pixel one
// vpbroadcastd of the pixel's 4 bytes and one vpdpbusd per block (u8 x s8, 4 products summed
// into each int32 lane). The register tile is R pixels x V blocks (6 x 4 on the 3 -> 64 stem: 24
// accumulators). vpdpbusd adds into int32 without saturation and each product fits int16 plus
// the 4-term sum fits int32, so the integer result is exact for every act_max and |w| <= 127
// (the prepared filters still enforce the AVX2 kernel's int16 bound, which this kernel does not
// need); the output transform is the same float
// operations as the other kernels, so the results are bit-identical to them.
// (The conversions use their zero-masking forms with a full mask: the plain ones warn under GCC 12
// about an uninitialised pass-through operand, see bgemm_avx512.cpp.)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "floatops/int8conv_kernels.h"

namespace onebit::int8conv::vnni {

namespace {

constexpr int64_t kB = PreparedInt8Conv::kBlock;
static_assert(kB == 16, "a block's 4-tap group is one zmm of 16 output channels");
constexpr int64_t kGroupBytes = kB * 4;

// acc += dot4(x (u8), w (s8)) per int32 lane, in place. Inline assembly rather than
// _mm512_dpbusd_epi32: GCC 12 copies every accumulator through the stack around the intrinsic
// (measured: half the speed on the stem), while the "+v" constraint keeps them in registers.
inline void dpbusd(__m512i& acc, __m512i x, __m512i w) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
}

inline int32_t load32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct TileArgs {
  int64_t kp;      // bytes per pixel in the row buffer
  int64_t groups;  // 4-tap groups per pixel
  int64_t cout;
  int64_t block_stride;  // bytes between consecutive blocks' filters (groups * 64)
  bool relu;
};

// y[r, 16 v + l] for r < R pixels, v < V blocks starting at block b0 (filters at wb, the
// per-channel terms at zs / sc / bi, already offset to b0).
template <int R, int V>
inline void tile(const uint8_t* xr, const int8_t* wb, const int32_t* zs, const float* sc,
                 const float* bi, int64_t nvalid, float* y, const TileArgs& a) {
  __m512i acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
  const int64_t kp = a.kp, groups = a.groups, bs = a.block_stride;
  for (int64_t gi = 0; gi < groups; ++gi) {
    __m512i wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) wv[v] = _mm512_load_si512(wb + v * bs + gi * kGroupBytes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i xb = _mm512_set1_epi32(load32(xr + r * kp + 4 * gi));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) dpbusd(acc[r][v], xb, wv[v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const __m512i z = _mm512_loadu_si512(zs + 16 * v);
    const __m512 s = _mm512_loadu_ps(sc + 16 * v), b = _mm512_loadu_ps(bi + 16 * v);
    const int64_t n = nvalid - 16 * v;  // channels of this block to store (may exceed 16)
    const __mmask16 m = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n > 0 ? n : 0)) - 1u);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      __m512 o = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, _mm512_sub_epi32(acc[r][v], z)), s, b);
      if (a.relu) o = _mm512_maskz_max_ps(0xffff, o, zero);
      _mm512_mask_storeu_ps(y + r * a.cout + 16 * v, m, o);
    }
  }
}

// Blocks [b0, b0 + V) over pixels [0, ow): R-pixel tiles, then one pixel at a time.
template <int R, int V>
void blocks_row(const uint8_t* buf, const PreparedInt8Conv& w, int64_t b0, float* yrow, int64_t ow,
                const TileArgs& a) {
  const int64_t nvalid = a.cout - b0 * kB;
  const int8_t* wb = w.blocked() + b0 * a.block_stride;
  const int32_t* zs = w.zero_sum() + b0 * kB;
  const float* sc = w.out_scale() + b0 * kB;
  const float* bi = w.bias() + b0 * kB;
  float* y = yrow + b0 * kB;
  int64_t x = 0;
  for (; x + R <= ow; x += R) tile<R, V>(buf + x * a.kp, wb, zs, sc, bi, nvalid, y + x * a.cout, a);
  for (; x < ow; ++x) tile<1, V>(buf + x * a.kp, wb, zs, sc, bi, nvalid, y + x * a.cout, a);
}

}  // namespace

void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g,
              uint8_t* scratch) {
  avx2::im2row(r, w, g, scratch);
  const int64_t ow = g.ow();
  const TileArgs a{w.groups() * 4, w.groups(), g.cout, w.groups() * kGroupBytes, r.relu};
  // blocks four at a time (6 x 4 tiles), then two (12 x 2), then one (12 x 1)
  int64_t b = 0;
  for (; b + 4 <= w.blocks(); b += 4) blocks_row<6, 4>(scratch, w, b, r.yrow, ow, a);
  for (; b + 2 <= w.blocks(); b += 2) blocks_row<12, 2>(scratch, w, b, r.yrow, ow, a);
  for (; b < w.blocks(); ++b) blocks_row<12, 1>(scratch, w, b, r.yrow, ow, a);
}

}  // namespace onebit::int8conv::vnni
