#include "bconv2d/reference.h"

#include <vector>

#include "bgemm/popcount.h"

namespace onebit {

void bconv2d_reference(const uint32_t* x, const uint32_t* w, const BConv2DShape& s,
                       const OutputTransform& t) {
  const int64_t cw = s.in_words(), ho = s.out_h(), wo = s.out_w();
  const int64_t cin = s.in_channels;
  std::vector<int32_t> row(static_cast<size_t>(s.out_channels));
  int64_t p = 0;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox, ++p) {
        for (int64_t co = 0; co < s.out_channels; ++co) {
          int64_t acc = 0;
          for (int64_t ky = 0; ky < s.kernel_h; ++ky)
            for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
              const uint32_t* wt = w + ((co * s.kernel_h + ky) * s.kernel_w + kx) * cw;
              const int64_t iy = oy * s.stride_h - s.pad_top + ky;
              const int64_t ix = ox * s.stride_w - s.pad_left + kx;
              int64_t pop = 0;
              if (iy >= 0 && iy < s.in_h && ix >= 0 && ix < s.in_w) {
                const uint32_t* xt = x + ((n * s.in_h + iy) * s.in_w + ix) * cw;
                for (int64_t c = 0; c < cw; ++c) pop += popcount32(xt[c] ^ wt[c]);
                acc += cin - 2 * pop;
              } else {
                for (int64_t c = 0; c < cw; ++c) pop += popcount32(wt[c]);
                const int64_t sum_w = cin - 2 * pop;  // dot of an all-(+1) input with this tap
                if (s.pad_value == PadValue::PlusOne) acc += sum_w;
                if (s.pad_value == PadValue::MinusOne) acc -= sum_w;
              }
            }
          row[co] = static_cast<int32_t>(acc);
        }
        apply_output_transform(t, row.data(), s.out_channels, p, 1, 0, s.out_channels);
      }
}

}  // namespace onebit
