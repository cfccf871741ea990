// The output transform's loops, included by output_transform.cpp (baseline ISA) and by
// output_transform_avx2.cpp (the same source compiled for AVX2, without FMA contraction so that
// both give the same floats bit for bit). ONEBIT_OT_NAME names the entry point.
#pragma once
#include <cstring>

#include "bgemm/output_transform.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace onebit {

namespace {

constexpr int64_t kChunk = 256;  // channels per pass of the Bits transform (stack buffers)

// v[j] = ((float(a[j]) * rs) * m[j]) + b[j], each term only where present.
template <bool RS, bool M, bool B>
void affine_row(const int32_t* a, int64_t n, float rs, const float* m, const float* b, float* v) {
  for (int64_t j = 0; j < n; ++j) {
    float x = static_cast<float>(a[j]);
    if (RS) x = x * rs;
    if (M) x = x * m[j];
    if (B) x = x + b[j];
    v[j] = x;
  }
}

using AffineRow = void (*)(const int32_t*, int64_t, float, const float*, const float*, float*);

AffineRow pick_affine(bool rs, bool m, bool b) {
  static const AffineRow table[8] = {
      affine_row<false, false, false>, affine_row<false, false, true>, affine_row<false, true, false>,
      affine_row<false, true, true>,   affine_row<true, false, false>, affine_row<true, false, true>,
      affine_row<true, true, false>,   affine_row<true, true, true>};
  return table[(rs ? 4 : 0) + (m ? 2 : 0) + (b ? 1 : 0)];
}

// Packs n <= 32 flags (bytes 0 / 1) into a word, flag j -> bit j.
inline uint32_t pack_flags(const uint8_t* f, int64_t n) {
  uint8_t padded[32] = {};
  std::memcpy(padded, f, static_cast<size_t>(n));
  uint32_t word = 0;
  for (int g = 0; g < 4; ++g) {
    uint64_t v;
    std::memcpy(&v, padded + 8 * g, 8);
    // bytes b0..b7 in {0, 1}: the product gathers b_i into bit 56 + i (no carries: the partial
    // products are distinct powers of two)
    word |= static_cast<uint32_t>((v * 0x0102040810204080ull) >> 56) << (8 * g);
  }
  return word;
}

// Bit j of the result = v[j] < th[j] (GT: v[j] > th[j]) for j < len <= 32; the rest 0.
template <bool GT>
inline uint32_t compare_word(const float* v, const float* th, int64_t len) {
  uint32_t word = 0;
  int64_t j = 0;
#if defined(__SSE2__)
  for (; j + 4 <= len; j += 4) {
    const __m128 a = _mm_loadu_ps(v + j), c = _mm_loadu_ps(th + j);
    word |= static_cast<uint32_t>(_mm_movemask_ps(GT ? _mm_cmpgt_ps(a, c) : _mm_cmplt_ps(a, c))) << j;
  }
#endif
  for (; j < len; ++j) word |= static_cast<uint32_t>(GT ? v[j] > th[j] : v[j] < th[j]) << j;
  return word;
}

// words[w] bit j = (v[32 w + j] < 0) for the n values (the tail of the last word 0).
void pack_negative(const float* v, int64_t n, uint32_t* words) {
  int64_t j = 0;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  for (; j + 32 <= n; j += 32) {
    uint32_t word = 0;
    for (int q = 0; q < 8; ++q)
      word |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(v + j + 4 * q), zero)))
              << (4 * q);
    words[j / 32] = word;
  }
#endif
  for (; j < n; j += 32) {
    uint32_t word = 0;
    const int64_t end = n - j < 32 ? n - j : 32;
    for (int64_t b = 0; b < end; ++b) word |= static_cast<uint32_t>(v[j + b] < 0.0f) << b;
    words[j / 32] = word;
  }
}

}  // namespace

void ONEBIT_OT_NAME(const OutputTransform& t, const int32_t* acc, int64_t ld, int64_t row0,
                            int64_t rows, int64_t col0, int64_t cols) {
  const int64_t ch = t.channels;
  const float* m = t.multiplier ? t.multiplier + col0 : nullptr;
  const float* b = t.bias ? t.bias + col0 : nullptr;
  switch (t.kind) {
    case OutputKind::Int32: {
      int32_t* out = static_cast<int32_t*>(t.out);
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(out + (row0 + i) * ch + col0, acc + i * ld, sizeof(int32_t) * cols);
      return;
    }
    case OutputKind::Float: {
      float* out = static_cast<float*>(t.out);
      const AffineRow row_fn = pick_affine(t.row_scale != nullptr, m != nullptr, b != nullptr);
      const int64_t words = (ch + 31) / 32;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t r = row0 + i;
        float* o = out + r * ch + col0;
        row_fn(acc + i * ld, cols, t.row_scale ? t.row_scale[r] : 1.0f, m, b, o);
        if (t.residual) {
          const float* q = t.residual + r * ch + col0;
          for (int64_t j = 0; j < cols; ++j) o[j] = o[j] + q[j];
        }
        if (t.sign_out) pack_negative(o, cols, t.sign_out + r * words + col0 / 32);
      }
      return;
    }
    case OutputKind::Bits: {
      uint32_t* out = static_cast<uint32_t*>(t.out);
      const int64_t words = (ch + 31) / 32;
      const AffineRow row_fn = pick_affine(t.row_scale != nullptr, m != nullptr, b != nullptr);
      const float* th = t.thresholds + col0;
      // the flip flags of these columns as bit words, once per call
      uint32_t flip_words[kChunk / 32];
      float v[kChunk];
      for (int64_t j0 = 0; j0 < cols; j0 += kChunk) {
        const int64_t n = cols - j0 < kChunk ? cols - j0 : kChunk;
        if (t.flip)
          for (int64_t w = 0; w < n; w += 32)
            flip_words[w / 32] = pack_flags(t.flip + col0 + j0 + w, n - w < 32 ? n - w : 32);
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t r = row0 + i;
          uint32_t* o = out + r * words + (col0 + j0) / 32;
          row_fn(acc + i * ld + j0, n, t.row_scale ? t.row_scale[r] : 1.0f, m ? m + j0 : nullptr,
                 b ? b + j0 : nullptr, v);
          // bit = v < th, or v > th where flip is set: lt ^ (flip & (lt ^ gt))
          for (int64_t w = 0; w < n; w += 32) {
            const int64_t len = n - w < 32 ? n - w : 32;
            const uint32_t lt = compare_word<false>(v + w, th + j0 + w, len);
            if (t.flip) {
              const uint32_t gt = compare_word<true>(v + w, th + j0 + w, len);
              o[w / 32] = lt ^ (flip_words[w / 32] & (lt ^ gt));
            } else {
              o[w / 32] = lt;
            }
          }
        }
      }
      return;
    }
  }
}

}  // namespace onebit
