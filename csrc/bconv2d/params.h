// The geometry of a binary 2-D convolution over packed NHWC activations.
//
// Input x: uint32 [batch, in_h, in_w, in_words] (channel c of a pixel in word c / 32, bit c % 32,
// bit 1 = -1, tail bits 0), in_words = words_for(in_channels).
// Weights w: uint32 [out_channels, kernel_h, kernel_w, in_words], the same bit layout.
// Output position (oy, ox) reads input pixel (oy * stride_h - pad_top + ky, ox * stride_w -
// pad_left + kx) for tap (ky, kx); a pixel outside the input is padding with value pad_value:
//   Zero      contributes 0 to the dot product (what F.conv2d gives on the zero-padded +/-1 tensor);
//   PlusOne   every padded channel is +1;  MinusOne  every padded channel is -1.
// The accumulator is acc[n, oy, ox, co] = sum over taps and channels of x * w in {+1, -1} (0 for
// Zero-padded taps); |acc| <= kernel_h * kernel_w * in_channels.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bitpack/bitpack.h"

namespace onebit {

enum class PadValue : int { Zero = 0, PlusOne = 1, MinusOne = 2 };

struct BConv2DShape {
  int64_t batch = 1, in_h = 1, in_w = 1, in_channels = 1;
  int64_t out_channels = 1, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  PadValue pad_value = PadValue::Zero;

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
  int64_t in_words() const { return words_for(in_channels); }
  int64_t taps() const { return kernel_h * kernel_w; }
  int64_t filter_words() const { return taps() * in_words(); }
  int64_t out_pixels() const { return batch * out_h() * out_w(); }

  // Throws std::invalid_argument naming the first bad field.
  void validate() const {
    auto need = [](bool ok, const std::string& what) {
      if (!ok) throw std::invalid_argument("bconv2d: " + what);
    };
    need(batch >= 1 && in_h >= 1 && in_w >= 1 && in_channels >= 1 && out_channels >= 1,
         "batch, height, width and channel counts must be >= 1");
    need(kernel_h >= 1 && kernel_w >= 1, "kernel size must be >= 1");
    need(stride_h >= 1 && stride_w >= 1, "stride must be >= 1");
    need(pad_top >= 0 && pad_bottom >= 0 && pad_left >= 0 && pad_right >= 0, "padding must be >= 0");
    need(in_h + pad_top + pad_bottom >= kernel_h && in_w + pad_left + pad_right >= kernel_w,
         "the kernel is larger than the padded input");
    need(taps() * in_channels < (int64_t{1} << 24), "kernel_h * kernel_w * in_channels must be < 2^24");
  }
};

}  // namespace onebit
