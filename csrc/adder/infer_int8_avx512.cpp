// AVX-512 SAD tiles of the int8 AdderNet kernel (see tiles.h), in the broadcast form of the
// binary tiles (bgemm_avx512.cpp): the 8-byte words of eight filters side by side in the lanes of
// one zmm, each output position's word broadcast against them. VPSADBW then sums each lane's
// eight byte distances into that lane, which belongs to one filter: per 8 bytes, position and
// group of eight filters one vpsadbw and one vpaddq, and no horizontal reduction (the AVX2 tile
// reduces every output across its vector). The tile is 8 positions x 16 filters (16
// accumulators); the output transform is fma(-float(sad), multiplier, bias) on eight filters at
// once, the same operations as the AVX2 and reference kernels (bit-identical results). Long rows
// are taken in slices that stay in L1 (see kSlice).
// (The conversions use their zero-masking forms with a full mask: the plain ones warn under GCC 12
// about an uninitialised pass-through operand, see bgemm_avx512.cpp.)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "adder/tiles.h"

namespace onebit::adder::avx512 {
namespace {

constexpr int kG = 2;           // groups of eight filters per tile
constexpr int kT = 8 * kG;      // filters per tile
constexpr int kMaxP = 8;        // positions per tile

// Rows longer than kSlice bytes are taken in slices of that many (8 positions' slices and 16
// filters' slices, 8 KiB + 16 KiB, stay in L1 while a tile row passes); partial sums go through
// an int32 buffer between slices (a SAD sum is below 255 * K < 2^31).
constexpr int64_t kSlice = 1024;

enum Pass { kOnly, kFirst, kMiddle, kLast };

// Words [q0, q1) of MP positions x 16 filters. kOnly / kLast finish with the output transform
// (kLast adding the partial sums in part); kFirst / kMiddle leave the sums in part, int32
// [p * ldp + t] (kMiddle adding to them).
template <int MP, Pass PASS>
void sad_tile(const uint8_t* X, const uint8_t* Wb, int64_t kp, int64_t q0, int64_t q1, int64_t nt,
              const float* mult, const float* bias, float* Y, int64_t ldy, int32_t* part,
              int64_t ldp) {
  const int64_t group = 8 * kp;  // a group of eight filters: 8 * kp bytes
  __m512i acc[MP][kG];
#pragma GCC unroll 8
  for (int i = 0; i < MP; ++i)
#pragma GCC unroll 2
    for (int g = 0; g < kG; ++g)
      acc[i][g] = (PASS == kMiddle || PASS == kLast)
                      ? _mm512_maskz_cvtepu32_epi64(0xff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(part + i * ldp + 8 * g)))
                      : _mm512_setzero_si512();
  for (int64_t q = q0; q < q1; ++q) {
    __m512i wv[kG];
#pragma GCC unroll 2
    for (int g = 0; g < kG; ++g) wv[g] = _mm512_load_si512(Wb + g * group + 64 * q);
#pragma GCC unroll 8
    for (int i = 0; i < MP; ++i) {
      long long v;
      std::memcpy(&v, X + i * kp + 8 * q, 8);
      const __m512i xv = _mm512_set1_epi64(v);
#pragma GCC unroll 2
      for (int g = 0; g < kG; ++g) acc[i][g] = _mm512_add_epi64(acc[i][g], _mm512_sad_epu8(xv, wv[g]));
    }
  }
  if (PASS == kFirst || PASS == kMiddle) {
#pragma GCC unroll 8
    for (int i = 0; i < MP; ++i)
#pragma GCC unroll 2
      for (int g = 0; g < kG; ++g)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(part + i * ldp + 8 * g), _mm512_maskz_cvtepi64_epi32(0xff, acc[i][g]));
    return;
  }
#pragma GCC unroll 2
  for (int g = 0; g < kG; ++g) {
    const int64_t n = std::min<int64_t>(8, nt - 8 * g);
    if (n <= 0) break;
    const __mmask8 k = static_cast<__mmask8>((1u << n) - 1u);
    const __m256 m = _mm256_maskz_loadu_ps(k, mult + 8 * g), b = _mm256_maskz_loadu_ps(k, bias + 8 * g);
#pragma GCC unroll 8
    for (int i = 0; i < MP; ++i) {
      // each sum < 2^31 converts with round-to-nearest-even, as static_cast<float>(int64_t)
      const __m256 sad = _mm512_maskz_cvtepi64_ps(0xff, acc[i][g]);
      const __m256 y = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_setzero_ps(), sad), m, b);
      _mm256_mask_storeu_ps(Y + i * ldy + 8 * g, k, y);
    }
  }
}

using SadTile = void (*)(const uint8_t*, const uint8_t*, int64_t, int64_t, int64_t, int64_t,
                         const float*, const float*, float*, int64_t, int32_t*, int64_t);

template <Pass PASS>
struct Tiles {
  static constexpr SadTile at[kMaxP] = {sad_tile<1, PASS>, sad_tile<2, PASS>, sad_tile<3, PASS>,
                                        sad_tile<4, PASS>, sad_tile<5, PASS>, sad_tile<6, PASS>,
                                        sad_tile<7, PASS>, sad_tile<8, PASS>};
};

}  // namespace

int64_t filters_padded(int64_t M) { return (M + kT - 1) / kT * kT; }

void pack_filters(const int8_t* w, int64_t M, int64_t K, int64_t kp, uint8_t* Wb) {
  const int64_t mp = filters_padded(M), full = K / 8;
  constexpr uint64_t kFlip = 0x8080808080808080ull;  // offset binary: byte ^ 0x80
  if (mp > M) std::memset(Wb + M / 8 * 8 * kp, 0, static_cast<size_t>((mp - M / 8 * 8) * kp));
  for (int64_t t = 0; t < M; ++t) {
    uint8_t* grp = Wb + (t / 8) * 8 * kp + 8 * (t % 8);
    const int8_t* row = w + t * K;
    int64_t q = 0;
    for (; q < full; ++q) {
      uint64_t v;
      std::memcpy(&v, row + 8 * q, 8);
      v ^= kFlip;
      std::memcpy(grp + 64 * q, &v, 8);
    }
    for (; q < kp / 8; ++q) {  // the last bytes of the row, then zeros (|0 - 0| = 0)
      uint64_t v = 0;
      const int64_t n = std::max<int64_t>(0, std::min<int64_t>(8, K - 8 * q));
      std::memcpy(&v, row + 8 * q, static_cast<size_t>(n));
      v ^= kFlip & ((n == 8) ? ~0ull : ((1ull << (8 * n)) - 1ull));
      std::memcpy(grp + 64 * q, &v, 8);
    }
  }
}

void sad_chunk(const uint8_t* Xc, int64_t np, const uint8_t* Wb, int64_t M, int64_t kp,
               const float* mult, const float* bias, float* Y, int64_t ldy) {
  const int64_t words = kp / 8, slice = kSlice / 8;
  const int64_t mpad = filters_padded(M);
  std::vector<int32_t> part(words > slice ? static_cast<size_t>(np * mpad) : 0);
  for (int64_t q0 = 0; q0 < words; q0 += slice) {
    const int64_t q1 = std::min(words, q0 + slice);
    const SadTile* tiles = words <= slice      ? Tiles<kOnly>::at
                           : q0 == 0           ? Tiles<kFirst>::at
                           : q1 == words       ? Tiles<kLast>::at
                                               : Tiles<kMiddle>::at;
    for (int64_t t0 = 0; t0 < M; t0 += kT) {
      const int64_t nt = std::min<int64_t>(kT, M - t0);
      for (int64_t p0 = 0; p0 < np; p0 += kMaxP) {
        const int64_t mp = std::min<int64_t>(kMaxP, np - p0);
        tiles[mp - 1](Xc + p0 * kp, Wb + t0 * kp, kp, q0, q1, nt, mult + t0, bias + t0,
                      Y + p0 * ldy + t0, ldy, part.data() + p0 * mpad + t0, mpad);
      }
    }
  }
}

}  // namespace onebit::adder::avx512
