// Drivers of the int8 convolution: prepared filters, argument checks, ISA dispatch, the
// quantizing (or copying) pad pass, and the split of output rows over threads. The row kernels
// live in int8conv_reference.cpp, int8conv_avx2.cpp and int8conv_vnni.cpp.
#include "floatops/int8conv.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "common/parallel.h"
#include "floatops/int8conv_kernels.h"
#include "floatops/pool_fusion.h"

namespace onebit::int8conv {

namespace {

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

struct FreeBytes {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], FreeBytes>;

// count bytes (64-byte aligned, size rounded up to 64); the bytes from `zero_from` on are zeroed.
AlignedBytes aligned_bytes(int64_t count, int64_t zero_from = 0) {
  const size_t bytes = std::max<size_t>(64, ((static_cast<size_t>(count) + 63) / 64) * 64);
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p + zero_from, 0, bytes - static_cast<size_t>(zero_from));
  return AlignedBytes(p);
}

int64_t grain_for(int64_t row_work, int64_t min_work) {
  return std::max<int64_t>(1, min_work / std::max<int64_t>(1, row_work));
}

constexpr int64_t kMaxElements = int64_t{1} << 40;

// a * b, throwing when it exceeds kMaxElements (a, b >= 0).
int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  if (a != 0 && b > kMaxElements / a)
    throw std::invalid_argument(std::string("int8 conv2d: ") + what + " is too large");
  return a * b;
}

}  // namespace

PreparedInt8Conv::PreparedInt8Conv(const int8_t* wq, int64_t cout, int64_t cin, int64_t kh,
                                   int64_t kw, const float* out_scale, const float* bias,
                                   float act_scale, int zero_point, int act_max)
    : cout_(cout), cin_(cin), kh_(kh), kw_(kw), act_scale_(act_scale),
      zero_point_(zero_point), act_max_(act_max) {
  need(cout >= 1 && cin >= 1 && kh >= 1 && kw >= 1,
       "PreparedInt8Conv: out_channels, in_channels, kernel_h and kernel_w must be >= 1");
  need(cout <= (int64_t{1} << 24) && cin <= (int64_t{1} << 24) && kh <= 4096 && kw <= 4096,
       "PreparedInt8Conv: the filter is too large");
  need(act_max >= 1 && act_max <= 255, "PreparedInt8Conv: act_max must be in [1, 255]");
  need(zero_point >= 0 && zero_point <= act_max,
       "PreparedInt8Conv: zero_point must be in [0, act_max]");
  need(act_scale > 0.0f && act_scale <= 3.0e38f && 1.0f / act_scale <= 3.0e38f,
       "PreparedInt8Conv: act_scale must be a positive finite number with a finite inverse");
  const int64_t k = kh * kw * cin;
  int64_t wmax = 0;
  const int64_t nw = checked_mul(cout, k, "the filter");
  for (int64_t t = 0; t < nw; ++t) {
    wmax = std::max<int64_t>(wmax, wq[t] < 0 ? -int64_t{wq[t]} : int64_t{wq[t]});
  }
  pairs_ = pairs_for(act_max, std::max<int64_t>(wmax, 1));
  need(pairs_ >= 1, "PreparedInt8Conv: the weights reach |w| = " + std::to_string(wmax) +
                        " with activations up to " + std::to_string(act_max) +
                        "; the AVX2 kernel needs 2 * act_max * |w| <= 32767 (use weights of at "
                        "most 7 bits, |w| <= 64, or activations of at most 7 bits)");
  // |acc| <= K act_max wmax and |zero_point sum_w| <= the same: their difference fits int32.
  need(2 * k * act_max * std::max<int64_t>(wmax, 1) <= INT32_MAX,
       "PreparedInt8Conv: kernel_h * kernel_w * in_channels is too large for int32 sums");
  const int64_t step = 4 * pairs_;
  groups_ = (k + step - 1) / step * step / 4;
  const int64_t padded = blocks() * kBlock;
  plain_.assign(static_cast<size_t>(k * cout), 0);
  const int64_t nblocked = blocks() * groups_ * 4 * kBlock;
  blocked_.reset(static_cast<int8_t*>(std::aligned_alloc(64, static_cast<size_t>(nblocked))));
  if (!blocked_) throw std::bad_alloc();
  std::fill(blocked_.get(), blocked_.get() + nblocked, int8_t{0});
  zero_sum_.assign(static_cast<size_t>(padded), 0);
  out_scale_.assign(static_cast<size_t>(padded), 0.0f);
  bias_.assign(static_cast<size_t>(padded), 0.0f);
  for (int64_t o = 0; o < cout; ++o) {
    int64_t sum = 0;
    for (int64_t c = 0; c < cin; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const int8_t v = wq[((o * cin + c) * kh + i) * kw + j];
          const int64_t t = (i * kw + j) * cin + c;  // tap index in (i, j, c) order
          plain_[t * cout + o] = v;
          // block o / kB, group t / 4, vector (o % kB) / 8, channel o % 8, tap t % 4
          const int64_t ob = o % kBlock;
          blocked_[(((o / kBlock) * groups_ + t / 4) * (kBlock / 8) + ob / 8) * 32 + (ob % 8) * 4 +
                   t % 4] = v;
          sum += v;
        }
    zero_sum_[o] = static_cast<int32_t>(zero_point * sum);
    out_scale_[o] = out_scale[o];
    bias_[o] = bias ? bias[o] : 0.0f;
  }
}

void check_conv(const PreparedInt8Conv& w, const ConvGeometry& g) {
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  for (int64_t v : {g.n, g.h, g.w, g.c, g.cout, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw})
    need(v <= kMaxDim, "int8 conv2d: a size, stride, padding or dilation is too large");
  floatops::check_geometry(g);
  need(w.cin() == g.c && w.cout() == g.cout && w.kh() == g.kh && w.kw() == g.kw,
       "int8 conv2d: the prepared filters do not match the geometry (channels or kernel size)");
  const int64_t padded_row = checked_mul(g.w + 2 * g.pw, g.c, "the padded input");
  checked_mul(checked_mul(g.n, g.h + 2 * g.ph, "the padded input"), padded_row,
              "the padded input");
  checked_mul(checked_mul(checked_mul(g.n, g.oh(), "the output"), g.ow(), "the output"), g.cout,
              "the output");
  checked_mul(g.ow(), w.groups() * 4, "the row buffer");
}

void quantize(const float* x, uint8_t* q, int64_t count, float scale, int zero_point,
              int act_max) {
  need(act_max >= 1 && act_max <= 255 && zero_point >= 0 && zero_point <= act_max,
       "int8 quantize: need 1 <= act_max <= 255 and 0 <= zero_point <= act_max");
  need(scale > 0.0f && scale <= 3.0e38f && 1.0f / scale <= 3.0e38f,
       "int8 quantize: scale must be a positive finite number with a finite inverse");
#if defined(ONEBIT_X86)
  if (avx2_or_better()) return avx2::quantize(x, q, count, 1.0f / scale, zero_point, act_max);
#endif
  ref::quantize(x, q, count, 1.0f / scale, zero_point, act_max);
}

namespace {

// Fills the padded quantized input: fill(n, ih, dst) writes input row (n, ih)'s interior
// (g.w * g.c bytes, NHWC order); padding bytes hold zero_point. 64 zero bytes follow the buffer
// (the AVX2 im2row reads up to 31 bytes past a run). Every byte is written (rows in full), so none
// is read uninitialized.
template <class Fill>
AlignedBytes padded_input(const PreparedInt8Conv& w, const ConvGeometry& g, int num_threads,
                          Fill fill) {
  const int64_t hp = g.h + 2 * g.ph, row = (g.w + 2 * g.pw) * g.c;
  AlignedBytes buf = aligned_bytes(g.n * hp * row + 64, g.n * hp * row);
  uint8_t* dst = buf.get();
  const uint8_t zp = static_cast<uint8_t>(w.zero_point());
  parallel_for(g.n * hp, num_threads, grain_for(row, 1 << 15), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / hp, ih = r % hp - g.ph;
      uint8_t* d = dst + r * row;
      if (ih < 0 || ih >= g.h) {
        std::memset(d, zp, static_cast<size_t>(row));
        continue;
      }
      std::memset(d, zp, static_cast<size_t>(g.pw * g.c));
      fill(n, ih, d + g.pw * g.c);
      std::memset(d + (g.pw + g.w) * g.c, zp, static_cast<size_t>(g.pw * g.c));
    }
  });
  return buf;
}

// Input row (n, ih) of an NCHW array into NHWC order at d: each channel's run of g.w values is
// mapped by convert(src, dst, count) to bytes, a stack chunk at a time, and interleaved.
template <class T, class Convert>
void interleave_row(const T* x, const ConvGeometry& g, int64_t n, int64_t ih, uint8_t* d,
                    Convert convert) {
  constexpr int64_t kChunk = 512;
  uint8_t chunk[kChunk];
  for (int64_t c = 0; c < g.c; ++c) {
    const T* src = x + ((n * g.c + c) * g.h + ih) * g.w;
    for (int64_t j0 = 0; j0 < g.w; j0 += kChunk) {
      const int64_t len = std::min(kChunk, g.w - j0);
      convert(src + j0, chunk, len);
      for (int64_t j = 0; j < len; ++j) d[(j0 + j) * g.c + c] = chunk[j];
    }
  }
}

// One conv output row (n, oh) from the padded input into yrow, on the active ISA's row kernel.
struct RowKernel {
  const uint8_t* xp;
  const PreparedInt8Conv& w;
  const ConvGeometry& g;
  bool relu;
  bool avx2 = avx2_or_better(), vnni = avx512_vnni_active();

  AlignedBytes scratch() const {
#if defined(ONEBIT_X86)
    if (avx2) return aligned_bytes(avx2::scratch_bytes(w, g));
#endif
    return nullptr;
  }
  void operator()(int64_t n, int64_t oh, float* yrow, uint8_t* scratch) const {
    const int64_t row = (g.w + 2 * g.pw) * g.c, hp = g.h + 2 * g.ph;
    const Int8Row ir{xp + (n * hp + oh * g.sh) * row, row, yrow, relu};
#if defined(ONEBIT_X86)
    if (vnni) return vnni::conv_row(ir, w, g, scratch);
    if (avx2) return avx2::conv_row(ir, w, g, scratch);
#endif
    (void)scratch;
    ref::conv_row(ir, w, g);
  }
};

void convolve(const uint8_t* xp, const PreparedInt8Conv& w, float* y, const ConvGeometry& g,
              bool relu, int num_threads) {
  const int64_t oh = g.oh();
  const int64_t macs_per_row = g.ow() * g.cout * w.taps();
  const RowKernel kernel{xp, w, g, relu};
  parallel_for(g.n * oh, num_threads, grain_for(macs_per_row, 1 << 18), [&](int64_t b, int64_t e) {
    AlignedBytes scratch = kernel.scratch();
    for (int64_t r = b; r < e; ++r) kernel(r / oh, r % oh, y + r * g.ow() * g.cout, scratch.get());
  });
}

// The conv followed by a max pool p (p.n, p.h, p.w, p.c = the conv's output shape), fused
// (pool_fusion.h).
void convolve_maxpool(const uint8_t* xp, const PreparedInt8Conv& w, float* y,
                      const ConvGeometry& g, bool relu, const floatops::PoolGeometry& p,
                      int num_threads) {
  const int64_t macs_per_row = g.ow() * g.cout * w.taps() * std::max<int64_t>(1, p.sh);
  const RowKernel kernel{xp, w, g, relu};
  floatops::maxpool_rows(p, num_threads, grain_for(macs_per_row, 1 << 18), y, [&] {
    // each thread chunk's row buffer, owned by its row maker
    return [&kernel, scratch = kernel.scratch()](int64_t n, int64_t r, float* dst) {
      kernel(n, r, dst, scratch.get());
    };
  });
}

void run(const uint8_t* xp, const PreparedInt8Conv& w, float* y, const ConvGeometry& g, bool relu,
         int num_threads, const ConvOptions& o) {
  if (o.maxpool != nullptr) return convolve_maxpool(xp, w, y, g, relu, *o.maxpool, num_threads);
  convolve(xp, w, y, g, relu, num_threads);
}

}  // namespace

void conv2d(const float* x, const PreparedInt8Conv& w, float* y, const ConvGeometry& g, bool relu,
            int num_threads, const ConvOptions& options) {
  check_conv(w, g);
  floatops::check_conv_options(g, options);
  const float inv = 1.0f / w.act_scale();
  const int zp = w.zero_point(), amax = w.act_max();
  const bool avx2 = avx2_or_better();
  auto quantize_run = [&](const float* src, uint8_t* d, int64_t count) {
#if defined(ONEBIT_X86)
    if (avx2) return avx2::quantize(src, d, count, inv, zp, amax);
#endif
    (void)avx2;
    ref::quantize(src, d, count, inv, zp, amax);
  };
  AlignedBytes xp;
  if (options.nchw) {
    xp = padded_input(w, g, num_threads, [&](int64_t n, int64_t ih, uint8_t* d) {
      interleave_row(x, g, n, ih, d, quantize_run);
    });
  } else {
    xp = padded_input(w, g, num_threads, [&](int64_t n, int64_t ih, uint8_t* d) {
      quantize_run(x + (n * g.h + ih) * g.w * g.c, d, g.w * g.c);
    });
  }
  run(xp.get(), w, y, g, relu, num_threads, options);
}

void conv2d_u8(const uint8_t* xq, const PreparedInt8Conv& w, float* y, const ConvGeometry& g,
               bool relu, int num_threads, const ConvOptions& options) {
  check_conv(w, g);
  floatops::check_conv_options(g, options);
  const int64_t total = g.n * g.h * g.w * g.c;
  const uint8_t amax = static_cast<uint8_t>(w.act_max());
  if (amax < 255) {
    uint8_t m = 0;
    for (int64_t k = 0; k < total; ++k) m = std::max(m, xq[k]);
    need(m <= amax, "int8 conv2d: the quantized input reaches " + std::to_string(m) +
                        " but the filters were prepared for activations up to " +
                        std::to_string(amax));
  }
  AlignedBytes xp;
  if (options.nchw) {
    xp = padded_input(w, g, num_threads, [&](int64_t n, int64_t ih, uint8_t* d) {
      interleave_row(xq, g, n, ih, d, [](const uint8_t* src, uint8_t* q, int64_t count) {
        std::memcpy(q, src, static_cast<size_t>(count));
      });
    });
  } else {
    xp = padded_input(w, g, num_threads, [&](int64_t n, int64_t ih, uint8_t* d) {
      std::memcpy(d, xq + (n * g.h + ih) * g.w * g.c, static_cast<size_t>(g.w * g.c));
    });
  }
  run(xp.get(), w, y, g, relu, num_threads, options);
}

}  // namespace onebit::int8conv
