// The Float output transform in one AVX-512 pass per row: per 16 channels, vcvtdq2ps, the
// products and sums of output_transform.h in the same order and without contraction, the store,
// and the sign bits straight from vcmpltps's mask (two masks make one packed word). The Int32 and
// Bits kinds run the AVX2 build.
//
// Absent terms are neutral values that change no bit of any result: a missing row scale or
// multiplier multiplies by 1 (exact for every float), a missing bias or residual adds -0.0
// (x + -0.0 = x for every x, +0 and -0 included), so the baseline's "skip the term" and these
// operations give the same floats (tests compare every ISA with the reference bit for bit).
#pragma GCC optimize("fp-contract=off")  // no FMA: the products and sums round one by one
// (The conversions use their zero-masking forms with a full mask: the plain ones warn under GCC 12
// about an uninitialised pass-through operand, see bgemm_avx512.cpp.)
#include <immintrin.h>

#include "bgemm/output_transform.h"

namespace onebit {

void apply_output_transform_avx2(const OutputTransform& t, const int32_t* acc, int64_t ld,
                                 int64_t row0, int64_t rows, int64_t col0, int64_t cols);

namespace {

// From raw popcounts (P): acc = k_total - 2 * pc - corr[i] (corr[i] null: 0), in registers.
struct Popcounts {
  int32_t k_total = 0;
  const int32_t* const* corr = nullptr;
};

template <bool P>
inline __m512i load_acc(const int32_t* a, __mmask16 k, int64_t i, int64_t jj, const Popcounts& pc) {
  const __m512i v = _mm512_maskz_loadu_epi32(k, a + jj);
  if (!P) return v;
  __m512i acc = _mm512_sub_epi32(_mm512_set1_epi32(pc.k_total), _mm512_add_epi32(v, v));
  if (const int32_t* c = pc.corr[i]) acc = _mm512_sub_epi32(acc, _mm512_maskz_loadu_epi32(k, c + jj));
  return acc;
}

template <bool P, bool M, bool B, bool R, bool S>
void float_rows(const OutputTransform& t, const int32_t* acc, int64_t ld, int64_t row0,
                int64_t rows, int64_t col0, int64_t cols, const Popcounts& pc) {
  const int64_t ch = t.channels, words = (ch + 31) / 32;
  float* out = static_cast<float*>(t.out);
  const __m512 one = _mm512_set1_ps(1.0f), neg_zero = _mm512_set1_ps(-0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t r = row0 + i;
    const __m512 rs = t.row_scale ? _mm512_set1_ps(t.row_scale[r]) : one;
    const int32_t* a = acc + i * ld;
    float* o = out + r * ch + col0;
    const float* res = R ? t.residual + r * ch + col0 : nullptr;
    uint32_t* sw = S ? t.sign_out + r * words + col0 / 32 : nullptr;
    for (int64_t j = 0; j < cols; j += 32) {
      uint32_t word = 0;
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int64_t jj = j + 16 * h;
        if (jj >= cols) break;
        const __mmask16 k = cols - jj >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - jj)) - 1u);
        __m512 x = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xffff, load_acc<P>(a, k, i, jj, pc)), rs);
        if (M) x = _mm512_mul_ps(x, _mm512_mask_loadu_ps(one, k, t.multiplier + col0 + jj));
        if (B) x = _mm512_add_ps(x, _mm512_mask_loadu_ps(neg_zero, k, t.bias + col0 + jj));
        if (R) x = _mm512_add_ps(x, _mm512_mask_loadu_ps(neg_zero, k, res + jj));
        _mm512_mask_storeu_ps(o + jj, k, x);
        if (S) word |= static_cast<uint32_t>(_mm512_mask_cmp_ps_mask(k, x, _mm512_setzero_ps(), _CMP_LT_OQ)) << (16 * h);
      }
      if (S) sw[j / 32] = word;
    }
  }
}

using FloatRows = void (*)(const OutputTransform&, const int32_t*, int64_t, int64_t, int64_t,
                           int64_t, int64_t, const Popcounts&);

template <bool P>
FloatRows pick(const OutputTransform& t) {
  static const FloatRows table[16] = {
      float_rows<P, false, false, false, false>, float_rows<P, false, false, false, true>,
      float_rows<P, false, false, true, false>,  float_rows<P, false, false, true, true>,
      float_rows<P, false, true, false, false>,  float_rows<P, false, true, false, true>,
      float_rows<P, false, true, true, false>,   float_rows<P, false, true, true, true>,
      float_rows<P, true, false, false, false>,  float_rows<P, true, false, false, true>,
      float_rows<P, true, false, true, false>,   float_rows<P, true, false, true, true>,
      float_rows<P, true, true, false, false>,   float_rows<P, true, true, false, true>,
      float_rows<P, true, true, true, false>,    float_rows<P, true, true, true, true>};
  return table[(t.multiplier ? 8 : 0) + (t.bias ? 4 : 0) + (t.residual ? 2 : 0) +
               (t.sign_out ? 1 : 0)];
}

}  // namespace

void apply_output_transform_avx512(const OutputTransform& t, const int32_t* acc, int64_t ld,
                                   int64_t row0, int64_t rows, int64_t col0, int64_t cols) {
  if (t.kind != OutputKind::Float)
    return apply_output_transform_avx2(t, acc, ld, row0, rows, col0, cols);
  pick<false>(t)(t, acc, ld, row0, rows, col0, cols, Popcounts{});
}

// The Float transform straight from popcounts (output_transform.h); false (nothing done) for the
// other kinds, which the caller runs the plain way.
bool apply_float_popcounts_avx512(const OutputTransform& t, const int32_t* pc, int64_t ld,
                                  int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                                  int32_t k_total, const int32_t* const* corr) {
  if (t.kind != OutputKind::Float) return false;
  pick<true>(t)(t, pc, ld, row0, rows, col0, cols, Popcounts{k_total, corr});
  return true;
}

}  // namespace onebit
