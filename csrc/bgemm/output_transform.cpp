#include "bgemm/output_transform.h"

#include <cstring>

namespace onebit {
namespace {

inline float affine(const OutputTransform& t, int32_t acc, int64_t r, int64_t c) {
  float v = static_cast<float>(acc);
  if (t.row_scale) v = v * t.row_scale[r];
  if (t.multiplier) v = v * t.multiplier[c];
  if (t.bias) v = v + t.bias[c];
  return v;
}

}  // namespace

void apply_output_transform(const OutputTransform& t, const int32_t* acc, int64_t ld, int64_t row0,
                            int64_t rows, int64_t col0, int64_t cols) {
  const int64_t ch = t.channels;
  switch (t.kind) {
    case OutputKind::Int32: {
      int32_t* out = static_cast<int32_t*>(t.out);
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(out + (row0 + i) * ch + col0, acc + i * ld, sizeof(int32_t) * cols);
      return;
    }
    case OutputKind::Float: {
      float* out = static_cast<float*>(t.out);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t r = row0 + i;
        float* o = out + r * ch + col0;
        const int32_t* a = acc + i * ld;
        for (int64_t j = 0; j < cols; ++j) o[j] = affine(t, a[j], r, col0 + j);
      }
      return;
    }
    case OutputKind::Bits: {
      uint32_t* out = static_cast<uint32_t*>(t.out);
      const int64_t words = (ch + 31) / 32;
      const bool plain = !t.row_scale && !t.multiplier && !t.bias;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t r = row0 + i;
        const int32_t* a = acc + i * ld;
        uint32_t* o = out + r * words + col0 / 32;
        for (int64_t j0 = 0; j0 < cols; j0 += 32) {
          const int64_t n = cols - j0 < 32 ? cols - j0 : 32;
          uint32_t word = 0;
          for (int64_t b = 0; b < n; ++b) {
            const int64_t c = col0 + j0 + b;
            const float v = plain ? static_cast<float>(a[j0 + b]) : affine(t, a[j0 + b], r, c);
            const float th = t.thresholds[c];
            const bool neg = (t.flip && t.flip[c]) ? (v > th) : (v < th);
            word |= static_cast<uint32_t>(neg) << b;
          }
          o[j0 / 32] = word;
        }
      }
      return;
    }
  }
}

}  // namespace onebit
