// Row kernels of the int8 convolution, one set per ISA; int8conv.cpp quantizes and pads the
// input, splits the output rows over threads and calls these. Private to csrc/floatops.
#pragma once
#include <cmath>
#include <cstdint>

#include "floatops/int8conv.h"

namespace onebit::int8conv {

// One output row: x0 points at the padded quantized input under the first tap of output column 0
// (pixel stride g.sw * g.c bytes, row stride `row_stride` bytes; the padded input holds every
// tap and 64 readable bytes past its end), yrow at y[n, oh, 0, 0].
struct Int8Row {
  const uint8_t* x0;
  int64_t row_stride;
  float* yrow;
  bool relu;
};

// The quantizer, written once for both ISAs: t = x * inv_scale, clamped in float to
// [-zero_point, act_max - zero_point] with vmaxps / vminps semantics (a NaN t gives the lower
// end), rounded half to even, shifted by zero_point.
inline uint8_t quantize_value(float x, float inv_scale, float lo, float hi, int zero_point) {
  float t = x * inv_scale;
  t = t > lo ? t : lo;
  t = t < hi ? t : hi;
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(t)) + zero_point);
}

// The output transform, written once for both ISAs: fma(float(acc - zero_sum), scale, bias),
// then max(y, 0) with vmaxps semantics (y > 0 ? y : +0) when relu.
inline float output_value(int32_t acc, int32_t zero_sum, float scale, float bias, bool relu) {
  const float y = std::fma(static_cast<float>(acc - zero_sum), scale, bias);
  return relu ? (y > 0.0f ? y : 0.0f) : y;
}

namespace ref {
void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g);
void quantize(const float* x, uint8_t* q, int64_t count, float inv_scale, int zero_point,
              int act_max);
}  // namespace ref

#if defined(ONEBIT_X86)
namespace avx2 {
// scratch: scratch_bytes(w, g) bytes, 32-byte aligned, zero-filled once by the caller.
int64_t scratch_bytes(const PreparedInt8Conv& w, const ConvGeometry& g);
void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g,
              uint8_t* scratch);
// The row buffer alone (shared with the VNNI kernel): pixel x's taps at scratch + x * groups * 4.
void im2row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g, uint8_t* scratch);
void quantize(const float* x, uint8_t* q, int64_t count, float inv_scale, int zero_point,
              int act_max);
}  // namespace avx2
namespace vnni {
// The AVX-512 VNNI row kernel (int8conv_vnni.cpp); scratch as for avx2::conv_row.
void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g,
              uint8_t* scratch);
}  // namespace vnni
#endif

}  // namespace onebit::int8conv
