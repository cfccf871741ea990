// AdderNet kernels (Chen et al., "AdderNet: Do We Really Need Multiplications in Deep Learning?",
// CVPR 2020), torch-free.
//
// Float training op (input NCHW float32, filters [Cout, C, KH, KW]):
//   forward   Y[n,t,oh,ow] = -sum_{c,i,j} |Xp[n,c,oh*sh+i,ow*sw+j] - F[t,c,i,j]|
//   backward  dF[t,c,i,j]  =  sum_{n,oh,ow} (Xp - F) * G[n,t,oh,ow]          (full precision)
//             dX[n,c,h,w]  =  sum_{t,i,j} clip(F - Xp, -1, 1) * G[n,t,oh,ow] (HardTanh), h,w valid
// where Xp is X zero-padded by (ph, pw): a padded position holds 0 and contributes |0 - F|.
// No C_out x (C*KH*KW) x (N*OH*OW) tensor is ever built: the optimized path im2cols a few output
// rows of one image at a time into a per-thread buffer.
//
// Int8 inference (input NHWC int8, filters [Cout, KH, KW, C] int8, one shared scale s):
//   sad[n,oh,ow,t] = sum_{i,j,c} |Xp_q - F_q|  (exact, int64), padded positions hold pad_value
//   Y[n,oh,ow,t]   = fma(-float(sad), multiplier[t], bias[t])
// so multiplier = s (times a folded BatchNorm scale) turns the SAD back into -sum |X - F|.
#pragma once
#include <cstdint>

namespace onebit::adder {

struct ConvGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input batch, channels, height, width
  int64_t cout = 0, kh = 0, kw = 0;    // filters
  int64_t sh = 1, sw = 1;              // stride
  int64_t ph = 0, pw = 0;              // padding (both sides)
  int64_t oh() const { return (h + 2 * ph - kh) / sh + 1; }
  int64_t ow() const { return (w + 2 * pw - kw) / sw + 1; }
};

// Throws std::invalid_argument naming the bad field (non-positive sizes, negative padding,
// a kernel larger than the padded input).
void check_geometry(const ConvGeometry& g);

// y: [n, cout, oh, ow]. num_threads <= 0: onebit's default.
void conv2d_forward(const float* x, const float* w, float* y, const ConvGeometry& g,
                    int num_threads);

// gy: [n, cout, oh, ow]. dx ([n, c, h, w]) and dw ([cout, c, kh, kw]) may be null (not wanted).
// Both are overwritten. dw is the raw gradient (no adaptive scaling).
void conv2d_backward(const float* x, const float* w, const float* gy, float* dx, float* dw,
                     const ConvGeometry& g, int num_threads);

// x: [n, h, w, c] int8 (NHWC), w: [cout, kh, kw, c] int8, multiplier/bias: [cout] float32,
// y: [n, oh, ow, cout] float32 (NHWC). Geometry fields as above.
void int8_conv2d(const int8_t* x, const int8_t* w, int8_t pad_value, const float* multiplier,
                 const float* bias, float* y, const ConvGeometry& g, int num_threads);

}  // namespace onebit::adder
