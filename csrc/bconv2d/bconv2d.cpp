// The optimized binary conv2d: an im2col of packed words per block of output pixels (each patch
// row = kernel_h * kernel_w taps of in_words words, in the same order as a filter), the ISA's
// popcount tile against the packed filters, then acc = K - 2 * popcount, the zero-padding
// correction and the output transform, block by block. Padded taps are read as +1 (Zero, PlusOne)
// or -1 (MinusOne) words; Zero is then corrected exactly (zero_padding.h).
#include "bconv2d/bconv2d.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "bconv2d/prepared.h"
#include "bconv2d/reference.h"
#include "bconv2d/zero_padding.h"
#include "bgemm/panel.h"
#include "common/parallel.h"
#include "dispatch.h"

namespace onebit {
namespace {

// The output pixel (n, oy, ox) of a flat NHWC index, advanced one pixel at a time (no divisions
// in the loops).
struct PixelCursor {
  int64_t n, oy, ox, ho, wo;
  PixelCursor(int64_t p, int64_t ho_, int64_t wo_)
      : n(p / (ho_ * wo_)), oy((p / wo_) % ho_), ox(p % wo_), ho(ho_), wo(wo_) {}
  void next() {
    if (++ox == wo) {
      ox = 0;
      if (++oy == ho) {
        oy = 0;
        ++n;
      }
    }
  }
};

inline void copy_words(uint32_t* dst, const uint32_t* src, int64_t n) {
  std::memcpy(dst, src, sizeof(uint32_t) * static_cast<size_t>(n));
}

// Writes the packed patch of output pixel c (kernel_h * kernel_w * cw words) to dst.
void gather_patch(const uint32_t* x, const BConv2DShape& s, const PixelCursor& c,
                  const uint32_t* pad_tap, uint32_t* dst) {
  const int64_t cw = s.in_words();
  const int64_t iy0 = c.oy * s.stride_h - s.pad_top, ix0 = c.ox * s.stride_w - s.pad_left;
  for (int64_t ky = 0; ky < s.kernel_h; ++ky) {
    const int64_t iy = iy0 + ky;
    uint32_t* d = dst + ky * s.kernel_w * cw;
    if (iy < 0 || iy >= s.in_h) {
      for (int64_t kx = 0; kx < s.kernel_w; ++kx) copy_words(d + kx * cw, pad_tap, cw);
      continue;
    }
    const uint32_t* row = x + (c.n * s.in_h + iy) * s.in_w * cw;
    if (ix0 >= 0 && ix0 + s.kernel_w <= s.in_w) {  // the whole row of taps is inside
      copy_words(d, row + ix0 * cw, s.kernel_w * cw);
      continue;
    }
    for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
      const int64_t ix = ix0 + kx;
      copy_words(d + kx * cw, (ix >= 0 && ix < s.in_w) ? row + ix * cw : pad_tap, cw);
    }
  }
}

}  // namespace

void bconv2d_optimized(const PopcountKernel& uk, const uint32_t* x, const uint8_t* w_panel,
                       const int32_t* tap_sums, const BConv2DShape& s, const OutputTransform& t,
                       int num_threads) {
  const int threads = num_threads > 0 ? num_threads : default_num_threads();
  const int64_t cw = s.in_words(), kwords = s.filter_words(), cout = s.out_channels;
  const int64_t pixels = s.out_pixels(), wo = s.out_w(), ho = s.out_h();
  const int64_t kp = panel_kp(uk, kwords), rb = panel_row_bytes(uk, kp);
  const int64_t p_pad = round_up(pixels, uk.mr), n_pad = round_up(cout, uk.nr);
  const int32_t k_total = static_cast<int32_t>(s.taps() * s.in_channels);  // < 2^24 (validated)

  const ZeroPaddingCorrection correction(s, tap_sums);
  std::vector<uint32_t> pad_tap(static_cast<size_t>(cw), 0u);
  if (s.pad_value == PadValue::MinusOne) {
    std::fill(pad_tap.begin(), pad_tap.end(), ~0u);
    if (s.in_channels % 32) pad_tap.back() = (uint32_t{1} << (s.in_channels % 32)) - 1u;
  }

  // panels of 4 bytes per word hold the words as they are (microkernel.h): patches go straight in
  const bool plain_rows = uk.bytes_per_word == 4;
  const Blocking bl = choose_blocking(uk, pixels, cout, kp, threads);
  parallel_for_dynamic(bl.tiles_m * bl.tiles_n, threads, 1, [&](int64_t begin, int64_t end) {
    Scratch& sc = thread_scratch();
    uint8_t* a_panel = sc.a_panel.get(static_cast<size_t>(bl.mb * rb));
    sc.patch.assign(static_cast<size_t>(kp), 0u);  // words past the filter stay 0
    uint32_t* patch = sc.patch.data();
    sc.acc.resize(static_cast<size_t>(bl.mb * bl.nb));
    int32_t* acc = sc.acc.data();
    sc.corr_rows.resize(static_cast<size_t>(bl.mb));
    const int32_t** corr_rows = sc.corr_rows.data();
    int64_t packed = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t tm = task / bl.tiles_n, tn = task % bl.tiles_n;
      const int64_t p0 = tm * bl.mb, rows = std::min(bl.mb, p_pad - p0);
      const int64_t valid_rows = std::min(rows, pixels - p0);
      if (packed != tm) {
        PixelCursor cur(p0, ho, wo);
        if (plain_rows) {  // the panel row is the patch: gather into it (words past it stay 0)
          for (int64_t r = 0; r < valid_rows; ++r, cur.next()) {
            uint32_t* row = reinterpret_cast<uint32_t*>(a_panel + r * rb);
            gather_patch(x, s, cur, pad_tap.data(), row);
            for (int64_t k = kwords; k < kp; ++k) row[k] = 0u;
          }
        } else {
          for (int64_t r = 0; r < valid_rows; ++r, cur.next()) {
            gather_patch(x, s, cur, pad_tap.data(), patch);
            uk.pack_row(patch, kp, a_panel + r * rb);
          }
        }
        std::memset(a_panel + valid_rows * rb, 0, static_cast<size_t>((rows - valid_rows) * rb));
        packed = tm;
      }
      const int64_t j0 = tn * bl.nb, cols = std::min(bl.nb, n_pad - j0);
      const int64_t valid_cols = std::min(cols, cout - j0);
      popcount_block(uk, a_panel, rows, w_panel + j0 * rb, cols, kp, acc, bl.nb);
      PixelCursor cur(p0, ho, wo);
      for (int64_t r = 0; r < valid_rows; ++r, cur.next()) {
        const int32_t* corr = correction.at(cur.oy, cur.ox);
        corr_rows[r] = corr ? corr + j0 : nullptr;
      }
      // acc = K - 2 * popcount - correction, formed inside the transform's pass
      apply_output_transform_popcounts(t, acc, bl.nb, p0, valid_rows, j0, valid_cols, k_total,
                                       corr_rows);
    }
  });
}


void bconv2d(const uint32_t* x, const uint32_t* w, const BConv2DShape& s, const OutputTransform& t,
             int num_threads) {
  s.validate();
  const int64_t kwords = s.filter_words();
  const PopcountKernel* uk = popcount_kernel(active_isa(), kwords);
  if (uk == nullptr) return bconv2d_reference(x, w, s, t);
  const int64_t kp = panel_kp(*uk, kwords), n_pad = round_up(s.out_channels, uk->nr);
  uint8_t* w_panel = thread_scratch().b_panel.get(static_cast<size_t>(n_pad * panel_row_bytes(*uk, kp)));
  pack_b_panel(*uk, w, kwords, kwords, s.out_channels, n_pad, kp, w_panel);
  std::vector<int32_t> tap_sums;  // only zero padding needs them
  if (s.pad_value == PadValue::Zero && (s.pad_top || s.pad_bottom || s.pad_left || s.pad_right))
    tap_sums = ZeroPaddingCorrection::tap_sums(w, s.out_channels, s.taps(), s.in_channels, uk->row_popcounts);
  bconv2d_optimized(*uk, x, w_panel, tap_sums.data(), s, t, num_threads);
}

void bconv2d(const uint32_t* x, const PreparedFilters& w, const BConv2DShape& s,
             const OutputTransform& t, int num_threads) {
  s.validate();
  if (w.out_channels() != s.out_channels || w.kernel_h() != s.kernel_h || w.kernel_w() != s.kernel_w ||
      w.in_channels() != s.in_channels)
    throw std::invalid_argument("bconv2d: the prepared filters do not match the convolution's shape");
  if (w.isa() != active_isa() || w.kernel() == nullptr) return bconv2d(x, w.words(), s, t, num_threads);
  bconv2d_optimized(*w.kernel(), x, w.panel(), w.tap_sums(), s, t, num_threads);
}

}  // namespace onebit
