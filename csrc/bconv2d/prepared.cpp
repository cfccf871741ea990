#include "bconv2d/prepared.h"

#include <stdexcept>

#include "bconv2d/zero_padding.h"
#include "bitpack/bitpack.h"

namespace onebit {

PreparedFilters::PreparedFilters(const uint32_t* w, int64_t out_channels, int64_t kernel_h,
                                 int64_t kernel_w, int64_t in_channels)
    : isa_(active_isa()),
      out_channels_(out_channels),
      kernel_h_(kernel_h),
      kernel_w_(kernel_w),
      in_channels_(in_channels) {
  if (out_channels < 1 || kernel_h < 1 || kernel_w < 1 || in_channels < 1)
    throw std::invalid_argument("PreparedFilters: every dimension must be >= 1");
  const int64_t taps = kernel_h * kernel_w, kwords = taps * words_for(in_channels);
  words_.assign(w, w + out_channels * kwords);
  kernel_ = popcount_kernel(isa_, kwords);
  if (kernel_ == nullptr) return;
  const int64_t kp = panel_kp(*kernel_, kwords), n_pad = round_up(out_channels, kernel_->nr);
  uint8_t* dst = panel_.get(static_cast<size_t>(n_pad * panel_row_bytes(*kernel_, kp)));
  pack_b_panel(*kernel_, words_.data(), kwords, kwords, out_channels, n_pad, kp, dst);
  tap_sums_ = ZeroPaddingCorrection::tap_sums(words_.data(), out_channels, taps, in_channels,
                                              kernel_->row_popcounts);
}

}  // namespace onebit
