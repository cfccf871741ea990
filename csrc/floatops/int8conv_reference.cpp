// Plain reference kernels of the int8 convolution (no intrinsics): the ground truth the AVX2
// kernel is tested against, and the kernel that runs without AVX2.
#include <vector>

#include "floatops/int8conv_kernels.h"

namespace onebit::int8conv::ref {

void conv_row(const Int8Row& r, const PreparedInt8Conv& w, const ConvGeometry& g) {
  const int64_t ow = g.ow(), cout = g.cout, c = g.c;
  const int8_t* wp = w.plain();  // [kh][kw][C][C_out]
  std::vector<int32_t> acc(static_cast<size_t>(cout));
  for (int64_t x = 0; x < ow; ++x) {
    for (int64_t o = 0; o < cout; ++o) acc[o] = 0;
    const uint8_t* px = r.x0 + x * g.sw * c;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        for (int64_t ci = 0; ci < c; ++ci) {
          const int32_t v = px[i * g.dh * r.row_stride + j * g.dw * c + ci];
          const int8_t* wt = wp + ((i * g.kw + j) * c + ci) * cout;
          for (int64_t o = 0; o < cout; ++o) acc[o] += v * wt[o];
        }
    float* out = r.yrow + x * cout;
    for (int64_t o = 0; o < cout; ++o)
      out[o] = output_value(acc[o], w.zero_sum()[o], w.out_scale()[o], w.bias()[o], r.relu);
  }
}

void quantize(const float* x, uint8_t* q, int64_t count, float inv_scale, int zero_point,
              int act_max) {
  const float lo = static_cast<float>(-zero_point), hi = static_cast<float>(act_max - zero_point);
  for (int64_t k = 0; k < count; ++k) q[k] = quantize_value(x[k], inv_scale, lo, hi, zero_point);
}

}  // namespace onebit::int8conv::ref
