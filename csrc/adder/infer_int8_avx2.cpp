// AVX2 SAD tiles of the int8 AdderNet kernel (see tiles.h): 2 positions x 4 filters, 32 byte
// differences per VPSADBW on offset-binary bytes, 64-bit lane sums, then the output transform
// fma(-sad, multiplier, bias). (3 x 4 runs out of the 16 ymm registers: about 30 % slower.)
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "adder/tiles.h"

namespace onebit::adder::avx2 {
namespace {

template <int MP, int MT>
void sad_tile(const uint8_t* X, const uint8_t* W, int64_t kp, const float* mult, const float* bias,
              float* Y, int64_t ldy) {
  __m256i acc[MP][MT];
#pragma GCC unroll 4
  for (int i = 0; i < MP; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < MT; ++t) acc[i][t] = _mm256_setzero_si256();
  for (int64_t b = 0; b < kp; b += 32) {
    __m256i xv[MP];
#pragma GCC unroll 4
    for (int i = 0; i < MP; ++i)
      xv[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(X + i * kp + b));
#pragma GCC unroll 4
    for (int t = 0; t < MT; ++t) {
      const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(W + t * kp + b));
#pragma GCC unroll 4
      for (int i = 0; i < MP; ++i)
        acc[i][t] = _mm256_add_epi64(acc[i][t], _mm256_sad_epu8(xv[i], wv));
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MP; ++i)
#pragma GCC unroll 4
    for (int t = 0; t < MT; ++t) {
      __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc[i][t]),
                                _mm256_extracti128_si256(acc[i][t], 1));
      s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
      const float sad = static_cast<float>(_mm_cvtsi128_si64(s));
      Y[i * ldy + t] = std::fma(-sad, mult[t], bias[t]);
    }
}

using SadTile = void (*)(const uint8_t*, const uint8_t*, int64_t, const float*, const float*,
                         float*, int64_t);

constexpr int kSadP = 2, kSadT = 4;  // SAD tile: positions x filters

const SadTile kSad[kSadP][kSadT] = {
    {sad_tile<1, 1>, sad_tile<1, 2>, sad_tile<1, 3>, sad_tile<1, 4>},
    {sad_tile<2, 1>, sad_tile<2, 2>, sad_tile<2, 3>, sad_tile<2, 4>}};

}  // namespace

void sad_chunk(const uint8_t* Xc, int64_t np, const uint8_t* Wc, int64_t M, int64_t kp,
               const float* mult, const float* bias, float* Y, int64_t ldy) {
  for (int64_t t0 = 0; t0 < M; t0 += kSadT) {
    const int64_t mt = std::min<int64_t>(kSadT, M - t0);
    for (int64_t p0 = 0; p0 < np; p0 += kSadP) {
      const int64_t mp = std::min<int64_t>(kSadP, np - p0);
      kSad[mp - 1][mt - 1](Xc + p0 * kp, Wc + t0 * kp, kp, mult + t0, bias + t0,
                           Y + p0 * ldy + t0, ldy);
    }
  }
}

}  // namespace onebit::adder::avx2
