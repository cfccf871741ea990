// The zero-padding correction of the optimized binary conv (the approach of Larq Compute Engine's
// padding functor): the optimized kernels read a padded tap as an all-(+1) input, which adds
// sum_c w[co, ky, kx, c] = C_in - 2 * popcount(w[co, ky, kx, :]) per padded tap, where zero
// padding must add 0. This table holds, for every output position that has padded taps, the
// total of those terms per output channel; acc = acc_plus_one_padded - correction.
//
// The padded taps of position (oy, ox) are all taps outside the rectangle ky in [ky0(oy), ky1(oy)),
// kx in [kx0(ox), kx1(ox)); positions sharing (ky0, ky1) and (kx0, kx1) share one table row, so
// the table has at most a few rows per border side.
#pragma once
#include <cstdint>
#include <vector>

#include "bconv2d/params.h"
#include "bgemm/popcount.h"

namespace onebit {

class ZeroPaddingCorrection {
 public:
  // Builds the table from tap_sums [kernel_h * kernel_w, out_channels] (see tap_sums() below).
  // Empty (at() always nullptr) unless pad_value is Zero and some output position reads padding.
  ZeroPaddingCorrection(const BConv2DShape& s, const int32_t* tap_sums);

  // tap_sums[t * out_channels + co] = C_in - 2 * popcount(w[co, t, :]): the dot product of an
  // all-(+1) input with tap t of filter co, for packed weights w [out_channels, taps, in_words].
  // row_popcounts counts the set bits of each tap (the ISA's fastest way).
  static std::vector<int32_t> tap_sums(const uint32_t* w, int64_t out_channels, int64_t taps,
                                       int64_t in_channels,
                                       RowPopcounts row_popcounts = row_popcounts_portable);
  // The correction row [out_channels] of output position (oy, ox), or nullptr where none is due.
  const int32_t* at(int64_t oy, int64_t ox) const {
    if (table_.empty()) return nullptr;
    const int32_t idx = row_class_[oy] * num_col_classes_ + col_class_[ox];
    return idx == interior_ ? nullptr : table_.data() + idx * out_channels_;
  }

 private:
  std::vector<int32_t> row_class_, col_class_, table_;
  int32_t num_col_classes_ = 0, interior_ = -1;
  int64_t out_channels_ = 0;
};

}  // namespace onebit
