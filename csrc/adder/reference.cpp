#include "adder/reference.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "common/parallel.h"

namespace onebit::adder::ref {

void conv2d_forward(const float* x, const float* w, float* y, const ConvGeometry& g,
                    int num_threads) {
  const int64_t OH = g.oh(), OW = g.ow(), K = g.c * g.kh * g.kw;
  parallel_for(g.n * g.cout, num_threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / g.cout, t = item % g.cout;
      const float* xn = x + n * g.c * g.h * g.w;
      const float* ft = w + t * K;
      float* yt = y + item * OH * OW;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = 0.0;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t h = oh * g.sh - g.ph + i, v = ow * g.sw - g.pw + j;
                const bool inside = h >= 0 && h < g.h && v >= 0 && v < g.w;
                const double xv = inside ? xn[(c * g.h + h) * g.w + v] : 0.0;
                acc += std::fabs(xv - static_cast<double>(ft[(c * g.kh + i) * g.kw + j]));
              }
          yt[oh * OW + ow] = static_cast<float>(-acc);
        }
    }
  });
}

void conv2d_backward(const float* x, const float* w, const float* gy, float* dx, float* dw,
                     const ConvGeometry& g, int num_threads) {
  const int64_t OH = g.oh(), OW = g.ow(), K = g.c * g.kh * g.kw, HW = g.h * g.w;
  if (dx != nullptr) {
    // dX[n,c,h,w] = sum_{t,i,j} clip(F[t,c,i,j] - X[n,c,h,w], -1, 1) * G[n,t,oh,ow]
    parallel_for(g.n * g.c, num_threads, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> plane(HW);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t n = item / g.c, c = item % g.c;
        const float* xp = x + item * HW;
        std::fill(plane.begin(), plane.end(), 0.0);
        for (int64_t t = 0; t < g.cout; ++t) {
          const float* gt = gy + (n * g.cout + t) * OH * OW;
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const double f = w[((t * g.c + c) * g.kh + i) * g.kw + j];
              for (int64_t oh = 0; oh < OH; ++oh) {
                const int64_t h = oh * g.sh - g.ph + i;
                if (h < 0 || h >= g.h) continue;
                for (int64_t ow = 0; ow < OW; ++ow) {
                  const int64_t v = ow * g.sw - g.pw + j;
                  if (v < 0 || v >= g.w) continue;
                  const double d = std::fmin(std::fmax(f - xp[h * g.w + v], -1.0), 1.0);
                  plane[h * g.w + v] += d * gt[oh * OW + ow];
                }
              }
            }
        }
        for (int64_t q = 0; q < HW; ++q) dx[item * HW + q] = static_cast<float>(plane[q]);
      }
    });
  }
  if (dw != nullptr) {
    // dF[t,c,i,j] = sum_{n,oh,ow} (Xp[n,c,oh*sh+i,ow*sw+j] - F[t,c,i,j]) * G[n,t,oh,ow]
    parallel_for(g.cout * K, num_threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t t = item / K, k = item % K;
        const int64_t c = k / (g.kh * g.kw), i = (k / g.kw) % g.kh, j = k % g.kw;
        const double f = w[item];
        double acc = 0.0;
        for (int64_t n = 0; n < g.n; ++n) {
          const float* xp = x + (n * g.c + c) * HW;
          const float* gt = gy + (n * g.cout + t) * OH * OW;
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t h = oh * g.sh - g.ph + i, v = ow * g.sw - g.pw + j;
              const bool inside = h >= 0 && h < g.h && v >= 0 && v < g.w;
              const double xv = inside ? xp[h * g.w + v] : 0.0;
              acc += (xv - f) * gt[oh * OW + ow];
            }
        }
        dw[item] = static_cast<float>(acc);
      }
    });
  }
}

void int8_conv2d(const int8_t* x, const int8_t* w, int8_t pad_value, const float* multiplier,
                 const float* bias, float* y, const ConvGeometry& g, int num_threads) {
  const int64_t OH = g.oh(), OW = g.ow();
  parallel_for(g.n * OH, num_threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / OH, oh = row % OH;
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t t = 0; t < g.cout; ++t) {
          int64_t sad = 0;
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t h = oh * g.sh - g.ph + i, v = ow * g.sw - g.pw + j;
              const bool inside = h >= 0 && h < g.h && v >= 0 && v < g.w;
              const int8_t* xs = x + ((n * g.h + h) * g.w + v) * g.c;
              const int8_t* fs = w + ((t * g.kh + i) * g.kw + j) * g.c;
              for (int64_t c = 0; c < g.c; ++c) {
                const int xv = inside ? xs[c] : pad_value;
                sad += std::abs(xv - static_cast<int>(fs[c]));
              }
            }
          y[(row * OW + ow) * g.cout + t] =
              std::fma(-static_cast<float>(sad), multiplier[t], bias[t]);
        }
    }
  });
}

}  // namespace onebit::adder::ref
