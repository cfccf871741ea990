#include "bconv2d/zero_padding.h"

#include <algorithm>
#include <utility>

#include "bgemm/popcount.h"

namespace onebit {
namespace {

// For each output coordinate, the valid tap range [k0, k1) and a class index per distinct range.
std::vector<std::pair<int64_t, int64_t>> classify(int64_t out, int64_t stride, int64_t pad,
                                                  int64_t kernel, int64_t in,
                                                  std::vector<int32_t>& cls) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  cls.assign(static_cast<size_t>(out), 0);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t base = o * stride - pad;
    int64_t k0 = std::max<int64_t>(0, -base), k1 = std::min<int64_t>(kernel, in - base);
    if (k1 < k0) k1 = k0;
    const std::pair<int64_t, int64_t> r{k0, k1};
    auto it = std::find(ranges.begin(), ranges.end(), r);
    cls[o] = static_cast<int32_t>(it - ranges.begin());
    if (it == ranges.end()) ranges.push_back(r);
  }
  return ranges;
}

}  // namespace

std::vector<int32_t> ZeroPaddingCorrection::tap_sums(const uint32_t* w, int64_t out_channels,
                                                     int64_t taps, int64_t in_channels,
                                                     RowPopcounts row_popcounts) {
  const int64_t cw = words_for(in_channels);
  std::vector<int32_t> pops(static_cast<size_t>(out_channels * taps)), sums(pops.size());
  row_popcounts(w, out_channels * taps, cw, pops.data());
  for (int64_t co = 0; co < out_channels; ++co)
    for (int64_t t = 0; t < taps; ++t)
      sums[t * out_channels + co] = static_cast<int32_t>(in_channels) - 2 * pops[co * taps + t];
  return sums;
}

ZeroPaddingCorrection::ZeroPaddingCorrection(const BConv2DShape& s, const int32_t* tap_sum) {
  if (s.pad_value != PadValue::Zero) return;
  if (s.pad_top == 0 && s.pad_bottom == 0 && s.pad_left == 0 && s.pad_right == 0) return;
  const auto rows = classify(s.out_h(), s.stride_h, s.pad_top, s.kernel_h, s.in_h, row_class_);
  const auto cols = classify(s.out_w(), s.stride_w, s.pad_left, s.kernel_w, s.in_w, col_class_);
  num_col_classes_ = static_cast<int32_t>(cols.size());
  out_channels_ = s.out_channels;
  const int64_t cout = s.out_channels;
  bool any = false;
  table_.assign(rows.size() * cols.size() * static_cast<size_t>(s.out_channels), 0);
  for (size_t rc = 0; rc < rows.size(); ++rc)
    for (size_t cc = 0; cc < cols.size(); ++cc) {
      const auto [ky0, ky1] = rows[rc];
      const auto [kx0, kx1] = cols[cc];
      const int32_t idx = static_cast<int32_t>(rc * cols.size() + cc);
      if (ky0 == 0 && ky1 == s.kernel_h && kx0 == 0 && kx1 == s.kernel_w) {
        interior_ = idx;
        continue;
      }
      any = true;
      int32_t* out = table_.data() + idx * cout;
      for (int64_t ky = 0; ky < s.kernel_h; ++ky)
        for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
          if (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) continue;  // not a padded tap
          const int32_t* ts = tap_sum + (ky * s.kernel_w + kx) * cout;
          for (int64_t co = 0; co < cout; ++co) out[co] += ts[co];
        }
    }
  if (!any) table_.clear();
}

}  // namespace onebit
