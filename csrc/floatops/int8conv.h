// Int8 direct convolution, NHWC, for a network's float stem (few input channels) and other convs
// whose float kernel is slower: activations quantized per tensor to unsigned integers with a zero
// point, weights int8 symmetric per output channel, int32 accumulation, float32 output.
//
//   q[n, h, w, c]  = clamp(rint(x * (1 / act_scale)) + zero_point, 0, act_max)   (float input)
//   acc[n, oh, ow, o] = sum_{i, j, c} q_pad[n, oh sh - ph + i dh, ow sw - pw + j dw, c]
//                                     * wq[o, c, i, j]
//   y = fma(float(acc - zero_point * sum_w[o]), out_scale[o], bias[o]),  then max(y, 0) if relu
//
// where q_pad reads zero_point outside the input (the quantized real 0: zero padding), sum_w[o] is
// the sum of channel o's weights and out_scale[o] = act_scale * w_scale[o] * multiplier[o] is
// folded by the caller. rint rounds half to even; the clamp is done in float before rounding
// (NaN becomes 0). acc is exact (int32; the size check keeps |acc| < 2^31).
//
// Every function runs the AVX-512 VNNI kernel when onebit's active ISA is AVX-512 and the CPU has
// VNNI, the AVX2 kernel when it is AVX2 or better, the plain reference loops otherwise
// (ONEBIT_KERNELS=reference / avx2 forces them); all give bit-identical results (exact integer
// sums, then the same float operations). Parallel over output rows on
// num_threads threads (<= 0: onebit's default). Invalid arguments throw std::invalid_argument.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "floatops/floatops.h"

namespace onebit::int8conv {

using floatops::ConvGeometry;
using floatops::ConvOptions;  // NCHW input, a fused max pool (floatops.h)

// The largest int16 the AVX2 kernel's intermediate may reach. vpmaddubsw adds two u8 x s8
// products into one int16 (saturating) and the kernel adds `pairs` such results before widening
// to int32 with vpmaddwd, so an int16 holds 2 * pairs products, each at most act_max * wmax in
// magnitude (wmax = the largest |wq|). No saturation iff 2 * pairs * act_max * wmax <= 32767.
// pairs_for() picks the largest pairs in {2, 1} that satisfies it (0: none does):
//   act_max 255 (8 bits), |w| <= 64 (7 bits):  2 * 1 * 255 * 64 = 32640 -> pairs = 1
//   act_max 127 (7 bits), |w| <= 64 (7 bits):  2 * 2 * 127 * 64 = 32512 -> pairs = 2 (faster)
//   act_max 255, |w| <= 127 (8 bits):          2 * 1 * 255 * 127 = 64770 -> rejected
constexpr int64_t kInt16Max = 32767;
inline int pairs_for(int64_t act_max, int64_t wmax) {
  if (4 * act_max * wmax <= kInt16Max) return 2;
  if (2 * act_max * wmax <= kInt16Max) return 1;
  return 0;
}

// Int8 filters and the output transform, prepared once; immutable, so one object can serve
// several threads. Holds [kh][kw][C][C_out] for the reference and, for the AVX2 kernel, blocks of
// kBlock output channels: block b is [groups][kBlock / 8][8 channels][4 taps] int8 over the taps
// in (i, j, c) order, zero past K = kh kw C and past C_out (groups = K rounded up to 4 * pairs,
// divided by 4).
class PreparedInt8Conv {
 public:
  // wq is [C_out, C, kh, kw] (PyTorch's layout); out_scale [C_out]; bias [C_out] or null.
  // act_max (1..255) is the largest quantized activation, zero_point in [0, act_max].
  PreparedInt8Conv(const int8_t* wq, int64_t cout, int64_t cin, int64_t kh, int64_t kw,
                   const float* out_scale, const float* bias, float act_scale, int zero_point,
                   int act_max);
  int64_t cout() const { return cout_; }
  int64_t cin() const { return cin_; }
  int64_t kh() const { return kh_; }
  int64_t kw() const { return kw_; }
  int64_t taps() const { return kh_ * kw_ * cin_; }
  int pairs() const { return pairs_; }
  int64_t groups() const { return groups_; }  // 4-tap groups per output (padded taps included)
  int64_t blocks() const { return (cout_ + kBlock - 1) / kBlock; }
  float act_scale() const { return act_scale_; }
  int zero_point() const { return zero_point_; }
  int act_max() const { return act_max_; }
  const int8_t* plain() const { return plain_.data(); }
  const int8_t* blocked() const { return blocked_.get(); }  // 64-byte aligned
  // Per output channel, padded to blocks() * kBlock (zeros past C_out): zero_point * sum_w,
  // out_scale and bias (0 where none).
  const int32_t* zero_sum() const { return zero_sum_.data(); }
  const float* out_scale() const { return out_scale_.data(); }
  const float* bias() const { return bias_.data(); }

  static constexpr int64_t kBlock = 16;  // output channels per register tile (2 AVX2 vectors)

 private:
  int64_t cout_, cin_, kh_, kw_, groups_;
  int pairs_;
  float act_scale_;
  int zero_point_, act_max_;
  std::vector<int8_t> plain_;  // [kh][kw][C][C_out]
  struct Free {
    void operator()(int8_t* p) const { std::free(p); }
  };
  std::unique_ptr<int8_t[], Free> blocked_;
  std::vector<int32_t> zero_sum_;
  std::vector<float> out_scale_, bias_;
};

// Throws unless the geometry is valid (floatops::check_geometry), matches w, and every size and
// |acc| bound fits (n * (h + 2 ph) * (w + 2 pw) * C and the output elements below 2^40,
// K * act_max * wmax + act_max * K * wmax below 2^31).
void check_conv(const PreparedInt8Conv& w, const ConvGeometry& g);

// Float input x [N, H, W, C] (or NCHW, see options): quantized (see the formula above) into a
// padded scratch copy, then convolved; y [N, Ho, Wo, C_out] float32.
void conv2d(const float* x, const PreparedInt8Conv& w, float* y, const ConvGeometry& g, bool relu,
            int num_threads, const ConvOptions& options = {});
// Already-quantized input xq [N, H, W, C] (values must be <= w.act_max(); throws otherwise).
void conv2d_u8(const uint8_t* xq, const PreparedInt8Conv& w, float* y, const ConvGeometry& g,
               bool relu, int num_threads, const ConvOptions& options = {});

// The quantizer of conv2d on its own, over count values: q = clamp(rint(x * (1 / scale)) +
// zero_point, 0, act_max), the clamp done in float before rounding (NaN -> 0). scale, zero_point
// and act_max obey PreparedInt8Conv's rules.
void quantize(const float* x, uint8_t* q, int64_t count, float scale, int zero_point, int act_max);

}  // namespace onebit::int8conv
