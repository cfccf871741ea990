// Float32 NHWC ops for onebit's torch-free runtime: a direct convolution for few input channels
// (a network's stem), max pooling and average pooling. Torch-free and Python-free.
//
// Layouts: x [N, H, W, C] and y [N, Ho, Wo, C_out] (or C for the pools), C-contiguous float32.
// Every function runs the AVX2 + FMA kernels when onebit's active ISA is AVX2 or better, the plain
// reference loops otherwise (ONEBIT_KERNELS=reference forces them), on num_threads threads
// (<= 0: onebit's default), parallel over output rows. Invalid arguments throw
// std::invalid_argument.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "dispatch.h"

namespace onebit::floatops {

// Output length of a window along one axis, PyTorch's rule:
// floor_or_ceil((size + 2 p - (d (k - 1) + 1)) / s) + 1, and with ceil_mode the last window must
// start inside the input or the left padding. May be <= 0 (then the op rejects the geometry).
int64_t window_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode);

// y[n, oh, ow, o] = bias[o] + sum_{i, j, c} x_pad[n, oh sh - ph + i dh, ow sw - pw + j dw, c]
//                                         * w[o, c, i, j]
// where x_pad reads pad_value outside the input (0 = zero padding).
struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0, cout = 0, kh = 0, kw = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t oh() const { return window_out(h, kh, sh, ph, dh, false); }
  int64_t ow() const { return window_out(w, kw, sw, pw, dw, false); }
};
void check_geometry(const ConvGeometry& g);  // throws std::invalid_argument

// Conv filters prepared once. Holds them as [kh][kw][C][C_out] for the reference and, for the
// AVX2 kernel, as blocks of kBlock output channels (zero-filled past C_out): block b holds
// [kh][kw][C][kBlock] for channels b kBlock .. b kBlock + kBlock - 1. Immutable after
// construction, so one object can serve several threads.
class PreparedConv {
 public:
  // w is [C_out, C, kh, kw] (PyTorch's layout).
  PreparedConv(const float* w, int64_t cout, int64_t cin, int64_t kh, int64_t kw);
  int64_t cout() const { return cout_; }
  int64_t cin() const { return cin_; }
  int64_t kh() const { return kh_; }
  int64_t kw() const { return kw_; }
  int64_t blocks() const { return (cout_ + kBlock - 1) / kBlock; }
  const float* plain() const { return plain_.data(); }
  const float* blocked() const { return blocked_.get(); }  // 64-byte aligned

  static constexpr int64_t kBlock = 32;  // output channels per register tile (4 AVX2 vectors)

 private:
  int64_t cout_, cin_, kh_, kw_;
  std::vector<float> plain_;    // [kh][kw][C][C_out]
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  // [blocks][kh][kw][C][kBlock], 64-byte aligned: a filter vector never straddles cache lines
  std::unique_ptr<float[], Free> blocked_;
};


// Window geometry of the pools. Output sizes use window_out with ceil_mode.
struct PoolGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0, kh = 0, kw = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  bool ceil_mode = false;
  int64_t oh() const { return window_out(h, kh, sh, ph, dh, ceil_mode); }
  int64_t ow() const { return window_out(w, kw, sw, pw, dw, ceil_mode); }
};
// Throws unless every size is >= 1, padding >= 0, the output non-empty and (as PyTorch requires)
// padding <= half the effective kernel: p <= (d (k - 1) + 1) / 2.
void check_pool_geometry(const PoolGeometry& g);

// What a conv does around the convolution itself (the direct float conv here and the int8 conv,
// int8conv.h). nchw: x is [N, C, H, W] (a model's input, read without a transposed copy) instead
// of [N, H, W, C]. maxpool: the output goes through maxpool2d before it is stored, fused (each
// thread keeps the few conv rows its pool windows read, so the conv output is never stored whole);
// maxpool->n, h, w, c must be the conv's output shape and y is then the pool's
// [N, Ho', Wo', C_out]. Identical bits to the conv followed by maxpool2d.
struct ConvOptions {
  bool nchw = false;
  const PoolGeometry* maxpool = nullptr;
};
// Throws unless options.maxpool (if any) is a valid pool over the conv's output shape.
void check_conv_options(const ConvGeometry& g, const ConvOptions& options);

// Direct convolution (see ConvGeometry); bias may be null. g.c, g.cout, g.kh, g.kw must match w.
void conv2d(const float* x, const PreparedConv& w, const float* bias, float pad_value, float* y,
            const ConvGeometry& g, int num_threads, const ConvOptions& options = {});

// torch.nn.MaxPool2d: y = max over the window's in-bounds taps (padding is -inf, so it never
// wins). The maximum folds taps row by row, each row left to right, with
// max(a, b) = isnan(a) ? a : (a > b ? a : b), then the row maxima top to bottom: bit-identical to
// NumPy's np.maximum folded over columns, then rows (ties and NaN payloads included).
void maxpool2d(const float* x, float* y, const PoolGeometry& g, int num_threads);

// torch.nn.AvgPool2d (dilation must be 1). Summation order, as PyTorch's CPU kernel: s = 0, then
// s += x over the in-bounds taps, rows top to bottom, each row left to right; y = s / divisor with
// divisor = divisor_override if > 0, else the window size clipped to the padded input
// (count_include_pad) or to the input (otherwise).
void avgpool2d(const float* x, float* y, const PoolGeometry& g, bool count_include_pad,
               int64_t divisor_override, int num_threads);

}  // namespace onebit::floatops
