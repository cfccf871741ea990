// Drivers of the float ops: argument checks, ISA dispatch, padding, and the split of output rows
// over threads. The row kernels live in reference.cpp and floatops_avx2.cpp.
#include "floatops/floatops.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "common/parallel.h"
#include "floatops/kernels.h"
#include "floatops/pool_fusion.h"

namespace onebit::floatops {

namespace {

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], FreeDeleter>;

AlignedFloats aligned_floats(int64_t count) {
  const size_t bytes = ((static_cast<size_t>(count) * sizeof(float) + 63) / 64) * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (p == nullptr) throw std::bad_alloc();
  return AlignedFloats(p);
}

// Rows per thread chunk so that a chunk holds at least ~`min_work` units of work.
int64_t grain_for(int64_t row_work, int64_t min_work) {
  return std::max<int64_t>(1, min_work / std::max<int64_t>(1, row_work));
}

}  // namespace

int64_t window_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t num = size + 2 * p - (d * (k - 1) + 1);
  if (num < 0) return 0;
  int64_t out = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
  if (ceil_mode && (out - 1) * s >= size + p) --out;
  return out;
}

// ---- convolution --------------------------------------------------------------------------

PreparedConv::PreparedConv(const float* w, int64_t cout, int64_t cin, int64_t kh, int64_t kw)
    : cout_(cout), cin_(cin), kh_(kh), kw_(kw) {
  need(cout >= 1 && cin >= 1 && kh >= 1 && kw >= 1,
       "PreparedConv: out_channels, in_channels, kernel_h and kernel_w must be >= 1");
  const int64_t taps = kh * kw * cin;
  plain_.assign(static_cast<size_t>(taps * cout), 0.0f);
  const int64_t nblocked = blocks() * taps * kBlock;
  blocked_.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(nblocked) * 4)));
  if (!blocked_) throw std::bad_alloc();
  std::fill(blocked_.get(), blocked_.get() + nblocked, 0.0f);
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t c = 0; c < cin; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const float v = w[((o * cin + c) * kh + i) * kw + j];
          const int64_t t = (i * kw + j) * cin + c;  // tap index in (i, j, c) order
          plain_[t * cout + o] = v;
          blocked_[((o / kBlock) * taps + t) * kBlock + o % kBlock] = v;
        }
}

void check_geometry(const ConvGeometry& g) {
  need(g.n >= 1 && g.h >= 1 && g.w >= 1 && g.c >= 1 && g.cout >= 1,
       "conv2d: batch, height, width and channel counts must be >= 1");
  need(g.kh >= 1 && g.kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1,
       "conv2d: kernel, stride and dilation must be >= 1");
  need(g.ph >= 0 && g.pw >= 0, "conv2d: padding must be >= 0");
  need(g.oh() >= 1 && g.ow() >= 1,
       "conv2d: the kernel does not fit the padded input (output would be empty)");
}

void conv2d(const float* x, const PreparedConv& w, const float* bias, float pad_value, float* y,
            const ConvGeometry& g, int num_threads, const ConvOptions& options) {
  check_geometry(g);
  need(w.cin() == g.c && w.cout() == g.cout && w.kh() == g.kh && w.kw() == g.kw,
       "conv2d: the prepared filters do not match the geometry (channels or kernel size)");
  check_conv_options(g, options);
  const int64_t oh = g.oh(), ow = g.ow();
  const int64_t hp = g.h + 2 * g.ph, wp = g.w + 2 * g.pw, row = wp * g.c;
  const int64_t macs_per_row = ow * g.cout * g.kh * g.kw * g.c;
  // Zero-pad (or pad_value-pad) into a copy when there is padding, or NCHW input to lay out; the
  // row kernels then read every tap without bounds checks. Small C_in keeps the copy cheap next
  // to the MACs.
  AlignedFloats padded;
  const float* xp = x;
  if (g.ph > 0 || g.pw > 0 || options.nchw) {
    padded = aligned_floats(g.n * hp * row);
    float* dst = padded.get();
    parallel_for(g.n * hp, num_threads, grain_for(row, 1 << 15), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t n = r / hp, ih = r % hp - g.ph;
        float* d = dst + r * row;
        if (ih < 0 || ih >= g.h) {
          std::fill(d, d + row, pad_value);
          continue;
        }
        std::fill(d, d + g.pw * g.c, pad_value);
        if (options.nchw) {  // interleave the channels' rows
          for (int64_t c = 0; c < g.c; ++c) {
            const float* s = x + ((n * g.c + c) * g.h + ih) * g.w;
            float* dc = d + g.pw * g.c + c;
            for (int64_t j = 0; j < g.w; ++j) dc[j * g.c] = s[j];
          }
        } else {
          const float* s = x + (n * g.h + ih) * g.w * g.c;
          std::copy(s, s + g.w * g.c, d + g.pw * g.c);
        }
        std::fill(d + (g.pw + g.w) * g.c, d + row, pad_value);
      }
    });
    xp = dst;
  }
  const bool avx2 = avx2_or_better();
  auto conv_row = [&](int64_t n, int64_t o, float* yrow) {
    ConvRow cr{xp + (n * hp + o * g.sh) * row, row, bias, yrow};
#if defined(ONEBIT_X86)
    if (avx2) return avx2::conv_row(cr, w, g);
#endif
    (void)avx2;
    ref::conv_row(cr, w, g);
  };
  if (options.maxpool != nullptr) {
    const PoolGeometry& p = *options.maxpool;
    return maxpool_rows(p, num_threads, grain_for(macs_per_row * p.sh, 1 << 18), y, [&] {
      return [&](int64_t n, int64_t r, float* dst) { conv_row(n, r, dst); };
    });
  }
  parallel_for(g.n * oh, num_threads, grain_for(macs_per_row, 1 << 18), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) conv_row(r / oh, r % oh, y + r * ow * g.cout);
  });
}

void check_conv_options(const ConvGeometry& g, const ConvOptions& o) {
  if (o.maxpool == nullptr) return;
  const PoolGeometry& p = *o.maxpool;
  check_pool_geometry(p);
  need(p.n == g.n && p.h == g.oh() && p.w == g.ow() && p.c == g.cout,
       "conv2d: the fused max pool's input shape must be the conv's output shape");
}

// ---- pooling ------------------------------------------------------------------------------

void check_pool_geometry(const PoolGeometry& g) {
  need(g.n >= 1 && g.h >= 1 && g.w >= 1 && g.c >= 1,
       "pool2d: batch, height, width and channels must be >= 1");
  need(g.kh >= 1 && g.kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1,
       "pool2d: kernel, stride and dilation must be >= 1");
  need(g.ph >= 0 && g.pw >= 0, "pool2d: padding must be >= 0");
  need(2 * g.ph <= g.dh * (g.kh - 1) + 1 && 2 * g.pw <= g.dw * (g.kw - 1) + 1,
       "pool2d: padding must be at most half the (effective) kernel size");
  need(g.oh() >= 1 && g.ow() >= 1, "pool2d: the window does not fit the padded input");
}

namespace {

// Runs row_fn(PoolRow) for every output row, with the in-bounds input rows of its window.
template <class F>
void for_pool_rows(const float* x, float* y, const PoolGeometry& g, int num_threads, F row_fn) {
  const int64_t oh = g.oh(), ow = g.ow();
  parallel_for(g.n * oh, num_threads, grain_for(ow * g.c * g.kh * g.kw, 1 << 16),
               [&](int64_t b, int64_t e) {
                 std::vector<const float*> rows(static_cast<size_t>(g.kh));
                 for (int64_t r = b; r < e; ++r) {
                   const int64_t n = r / oh;
                   int64_t nrows = 0;
                   const int64_t window_rows =
                       for_window_rows(g, (r % oh) * g.sh - g.ph, [&](int64_t ih) {
                         rows[nrows++] = x + (n * g.h + ih) * g.w * g.c;
                       });
                   row_fn(PoolRow{rows.data(), nrows, window_rows, y + r * ow * g.c});
                 }
               });
}

}  // namespace

void maxpool2d(const float* x, float* y, const PoolGeometry& g, int num_threads) {
  check_pool_geometry(g);
  const bool avx2 = avx2_or_better();
  for_pool_rows(x, y, g, num_threads, [&](const PoolRow& r) {
#if defined(ONEBIT_X86)
    if (avx2) return avx2::maxpool_row(r, g);
#endif
    (void)avx2;
    ref::maxpool_row(r, g);
  });
}

void avgpool2d(const float* x, float* y, const PoolGeometry& g, bool count_include_pad,
               int64_t divisor_override, int num_threads) {
  check_pool_geometry(g);
  need(g.dh == 1 && g.dw == 1, "avgpool2d: dilation must be 1");
  need(divisor_override >= 0, "avgpool2d: divisor_override must be > 0 (or 0 for none)");
  const bool avx2 = avx2_or_better();
  for_pool_rows(x, y, g, num_threads, [&](const PoolRow& r) {
#if defined(ONEBIT_X86)
    if (avx2) return avx2::avgpool_row(r, g, count_include_pad, divisor_override);
#endif
    (void)avx2;
    ref::avgpool_row(r, g, count_include_pad, divisor_override);
  });
}

}  // namespace onebit::floatops
