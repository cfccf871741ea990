// floatops: conv2d, maxpool2d and avgpool2d under every available ISA (and 1 or 3 threads) on
// random NHWC geometries, against references written here from floatops.h's contracts:
//
// conv2d  - a float64 loop over (n, oh, ow, o, i, j, c) with pad_value outside the input.
//           Random real inputs: |got - ref| <= (m + 2) u S, where m = kh kw C + 1 terms (the
//           bias included), S = |bias| + sum |x w| and u = 2^-24. That is the worst-case error
//           of a float32 sum of m terms in any order, with or without FMA (Higham's gamma_m),
//           plus the rounding of the float64 reference; an indexing slip costs a whole term
//           (~ S / m), orders of magnitude above it. Two float32 results that each meet it differ
//           by at most twice that, the bound used between an ISA and the reference path.
//           Dyadic inputs (multiples of 1/8 and 1/4, sums below 2^24 / 64) make every float32
//           sum exact, so there every ISA must equal the float64 reference bit for bit.
// maxpool - the documented fold: each window row left to right, then the row maxima top to
//           bottom, max(a, b) = isnan(a) ? a : (a > b ? a : b); inputs with ties, +-0, +-inf and
//           NaNs of distinct payloads; every ISA bit-identical to it and to the reference path.
// avgpool - the documented order (s = 0, s += x over in-bounds taps, rows top to bottom, each
//           left to right, y = s / divisor) in float32 with PyTorch's divisor rule written out
//           independently; inputs of mixed magnitudes so that another order shows in the bits;
//           every ISA bit-identical to it and to the reference path.
// Output sizes are checked against PyTorch's pooling_output_shape, 1 and 3 threads must agree bit
// for bit, outputs start as a sentinel NaN (an unwritten element fails), and invalid geometries
// must throw std::invalid_argument.
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "floatops/floatops.h"
#include "test_util.h"

using namespace onebit;
using namespace onebit::floatops;
using onebit_test::failures;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24, float32's unit roundoff
constexpr uint32_t kSentinel = 0x7fc0deadu;

uint32_t bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
float from_bits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}
std::vector<float> sentinel_vec(int64_t n) { return std::vector<float>(static_cast<size_t>(n), from_bits(kSentinel)); }

int64_t uni(std::mt19937& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
}
float unif(std::mt19937& rng, float lo, float hi) {
  return lo + (hi - lo) * static_cast<float>(rng() % (1u << 24)) / static_cast<float>(1u << 24);
}

// PyTorch's pooling_output_shape (floor division, ceil_mode's "last window starts inside").
int64_t torch_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t num = size + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= size + p) --out;
  return out;
}

std::string conv_str(const ConvGeometry& g, float pad, bool bias) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "n=%lld h=%lld w=%lld c=%lld cout=%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld d=%lldx%lld "
                "pad_value=%g bias=%d",
                (long long)g.n, (long long)g.h, (long long)g.w, (long long)g.c, (long long)g.cout, (long long)g.kh,
                (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.ph, (long long)g.pw, (long long)g.dh,
                (long long)g.dw, pad, bias ? 1 : 0);
  return buf;
}

std::string pool_str(const PoolGeometry& g) {
  char buf[320];
  std::snprintf(buf, sizeof buf, "n=%lld h=%lld w=%lld c=%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld d=%lldx%lld ceil=%d",
                (long long)g.n, (long long)g.h, (long long)g.w, (long long)g.c, (long long)g.kh, (long long)g.kw,
                (long long)g.sh, (long long)g.sw, (long long)g.ph, (long long)g.pw, (long long)g.dh, (long long)g.dw,
                g.ceil_mode ? 1 : 0);
  return buf;
}

// Padding 0 .. `max` with the ends (0 and the maximum) drawn often.
int64_t random_pad(std::mt19937& rng, int64_t max) {
  const int64_t r = uni(rng, 0, 3);
  return r == 0 ? 0 : r == 1 ? max : uni(rng, 0, max);
}

// ---- conv2d --------------------------------------------------------------------------------

struct ConvCase {
  ConvGeometry g;
  float pad_value = 0.0f;
  bool has_bias = false;
  bool dyadic = false;  // exact float32 sums
};

ConvCase random_conv(std::mt19937& rng, int trial) {
  ConvCase cc;
  ConvGeometry& g = cc.g;
  for (;;) {
    g.n = uni(rng, 1, 3);
    g.c = trial % 6 == 0 ? uni(rng, 5, 13) : uni(rng, 1, 4);  // stems have few input channels
    const int64_t r = uni(rng, 0, 9);
    g.cout = r < 3 ? uni(rng, 1, 31) : r < 6 ? uni(rng, 33, 70) : r < 8 ? 32 * uni(rng, 1, 2) + uni(rng, -7, 7)
                                                                         : 8 * uni(rng, 1, 8) + 1;
    g.kh = uni(rng, 1, 7);
    g.kw = trial % 3 == 0 ? uni(rng, 1, 7) : g.kh;
    g.sh = uni(rng, 1, 3);
    g.sw = trial % 4 == 0 ? uni(rng, 1, 3) : g.sh;
    g.dh = uni(rng, 1, 2);
    g.dw = trial % 5 == 0 ? uni(rng, 1, 2) : g.dh;
    // conv padding has no upper limit; up to the effective kernel, where whole windows are padding
    g.ph = random_pad(rng, g.dh * (g.kh - 1) + 1);
    g.pw = trial % 4 == 1 ? random_pad(rng, g.dw * (g.kw - 1) + 1) : std::min(g.ph, g.dw * (g.kw - 1) + 1);
    g.h = 2 * uni(rng, 0, 7) + 1;  // odd sizes mostly
    g.w = trial % 7 == 0 ? uni(rng, 1, 18) : 2 * uni(rng, 0, 8) + 1;
    if (trial % 20 == 19) {  // a 7x7/2 stem: enough work per output row to split rows over threads
      g.n = 1, g.c = 3, g.cout = 64, g.kh = g.kw = 7, g.sh = g.sw = 2, g.dh = g.dw = 1, g.ph = g.pw = 3;
      g.h = g.w = 31;
    }
    if (torch_out(g.h, g.kh, g.sh, g.ph, g.dh, false) >= 1 && torch_out(g.w, g.kw, g.sw, g.pw, g.dw, false) >= 1) break;
  }
  cc.has_bias = rng() % 2;
  cc.dyadic = trial % 2 == 1;
  const int64_t pv = uni(rng, 0, 3);
  cc.pad_value = pv == 0 ? 0.0f : cc.dyadic ? static_cast<float>(uni(rng, -8, 8)) / 4 : unif(rng, -2.0f, 2.0f);
  return cc;
}

// The float64 reference; s_abs[k] = |bias| + sum |x w| for output k (the error bound's scale).
void conv_reference(const std::vector<float>& x, const std::vector<float>& w, const float* bias, float pad,
                    const ConvGeometry& g, std::vector<double>& y, std::vector<double>& s_abs) {
  const int64_t oh = torch_out(g.h, g.kh, g.sh, g.ph, g.dh, false), ow = torch_out(g.w, g.kw, g.sw, g.pw, g.dw, false);
  y.assign(static_cast<size_t>(g.n * oh * ow * g.cout), 0.0);
  s_abs.assign(y.size(), 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox)
        for (int64_t o = 0; o < g.cout; ++o) {
          double acc = bias ? bias[o] : 0.0, mag = std::fabs(acc);
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t iy = oy * g.sh - g.ph + i * g.dh, ix = ox * g.sw - g.pw + j * g.dw;
              const bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
              for (int64_t c = 0; c < g.c; ++c) {
                const double v = in ? x[((n * g.h + iy) * g.w + ix) * g.c + c] : pad;
                const double t = v * w[((o * g.c + c) * g.kh + i) * g.kw + j];
                acc += t;
                mag += std::fabs(t);
              }
            }
          const size_t k = static_cast<size_t>(((n * oh + oy) * ow + ox) * g.cout + o);
          y[k] = acc;
          s_abs[k] = mag;
        }
}

std::vector<float> maxpool_documented(const std::vector<float>& x, const PoolGeometry& g, int64_t oh, int64_t ow);

void check_conv(std::mt19937& rng, int trial) {
  const ConvCase cc = random_conv(rng, trial);
  const ConvGeometry& g = cc.g;
  const int64_t oh = torch_out(g.h, g.kh, g.sh, g.ph, g.dh, false), ow = torch_out(g.w, g.kw, g.sw, g.pw, g.dw, false);
  const std::string desc = conv_str(g, cc.pad_value, cc.has_bias);
  CHECK(g.oh() == oh && g.ow() == ow, "conv trial %d (%s): output %lldx%lld, PyTorch's rule gives %lldx%lld", trial,
        desc.c_str(), (long long)g.oh(), (long long)g.ow(), (long long)oh, (long long)ow);
  auto value = [&](float scale) {
    return cc.dyadic ? static_cast<float>(uni(rng, -16, 16)) / 8 * scale : unif(rng, -scale, scale);
  };
  std::vector<float> x(static_cast<size_t>(g.n * g.h * g.w * g.c));
  std::vector<float> w(static_cast<size_t>(g.cout * g.c * g.kh * g.kw));
  std::vector<float> bias(static_cast<size_t>(g.cout));
  for (auto& v : x) v = value(1.0f);
  for (auto& v : w) v = value(0.5f);
  for (auto& v : bias) v = cc.dyadic ? static_cast<float>(uni(rng, -16, 16)) / 4 : unif(rng, -2.0f, 2.0f);
  const float* bp = cc.has_bias ? bias.data() : nullptr;
  std::vector<double> ref, s_abs;
  conv_reference(x, w, bp, cc.pad_value, g, ref, s_abs);
  const double m = static_cast<double>(g.kh * g.kw * g.c + 1);
  auto tol = [&](size_t k) { return (m + 2) * kU * s_abs[k]; };

  const PreparedConv prepared(w.data(), g.cout, g.c, g.kh, g.kw);
  // x in NCHW order (ConvOptions::nchw), and a max pool over the conv output (ConvOptions::maxpool)
  std::vector<float> x_nchw(x.size());
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t iy = 0; iy < g.h; ++iy)
      for (int64_t ix = 0; ix < g.w; ++ix)
        for (int64_t c = 0; c < g.c; ++c)
          x_nchw[static_cast<size_t>(((n * g.c + c) * g.h + iy) * g.w + ix)] =
              x[static_cast<size_t>(((n * g.h + iy) * g.w + ix) * g.c + c)];
  PoolGeometry pool;
  pool.n = g.n, pool.h = oh, pool.w = ow, pool.c = g.cout;
  pool.kh = uni(rng, 1, std::min<int64_t>(3, oh)), pool.kw = uni(rng, 1, std::min<int64_t>(3, ow));
  pool.sh = uni(rng, 1, 3), pool.sw = uni(rng, 1, 3);
  pool.ph = uni(rng, 0, pool.kh / 2), pool.pw = uni(rng, 0, pool.kw / 2);
  pool.ceil_mode = rng() % 2;
  std::vector<float> ref_path;  // the reference ISA's output (available_isas() lists it first)
  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    std::vector<float> first;
    for (int threads : {1, 3}) {
      std::vector<float> y = sentinel_vec(g.n * oh * ow * g.cout);
      conv2d(x.data(), prepared, bp, cc.pad_value, y.data(), g, threads);
      int reported = 0;
      for (size_t k = 0; k < y.size() && reported < 3; ++k) {
        const bool ok = cc.dyadic ? static_cast<double>(y[k]) == ref[k] : std::fabs(y[k] - ref[k]) <= tol(k);
        if (!ok) ++reported;
        CHECK(ok, "conv isa=%s trial %d threads %d (%s) %s at [n,oh,ow,o]=[%lld,%lld,%lld,%lld]: got %.9g, "
              "float64 reference %.9g (tolerance %.3g)",
              isa_name(isa), trial, threads, desc.c_str(), cc.dyadic ? "exact" : "random",
              (long long)(k / (oh * ow * g.cout)), (long long)(k / (ow * g.cout) % oh), (long long)(k / g.cout % ow),
              (long long)(k % g.cout), y[k], ref[k], cc.dyadic ? 0.0 : tol(k));
      }
      // NCHW input gives the same bits; a fused max pool gives the documented pool of them
      ConvOptions opt;
      opt.nchw = true;
      std::vector<float> y_nchw = sentinel_vec(g.n * oh * ow * g.cout);
      conv2d(x_nchw.data(), prepared, bp, cc.pad_value, y_nchw.data(), g, threads, opt);
      size_t diff_nchw = 0;
      for (size_t k = 0; k < y.size(); ++k) diff_nchw += bits(y[k]) != bits(y_nchw[k]);
      CHECK(diff_nchw == 0, "conv isa=%s trial %d threads %d (%s): NCHW input differs in %zu elements",
            isa_name(isa), trial, threads, desc.c_str(), diff_nchw);
      const std::vector<float> pooled = maxpool_documented(y, pool, pool.oh(), pool.ow());
      std::vector<float> z = sentinel_vec(static_cast<int64_t>(pooled.size()));
      opt.nchw = trial % 2 == 0;
      opt.maxpool = &pool;
      conv2d((opt.nchw ? x_nchw : x).data(), prepared, bp, cc.pad_value, z.data(), g, threads, opt);
      size_t diff_pool = 0;
      for (size_t k = 0; k < z.size(); ++k) diff_pool += bits(z[k]) != bits(pooled[k]);
      CHECK(diff_pool == 0, "conv isa=%s trial %d threads %d (%s): the fused max pool differs in %zu of %zu "
            "elements", isa_name(isa), trial, threads, desc.c_str(), diff_pool, z.size());
      if (first.empty()) {
        first = y;
      } else {
        size_t diff = 0;
        for (size_t k = 0; k < y.size(); ++k) diff += bits(y[k]) != bits(first[k]);
        CHECK(diff == 0, "conv isa=%s trial %d (%s): 3 threads differ from 1 thread in %zu elements", isa_name(isa),
              trial, desc.c_str(), diff);
      }
    }
    if (isa == Isa::Reference) {
      ref_path = first;
    } else if (!ref_path.empty()) {
      int reported = 0;
      for (size_t k = 0; k < first.size() && reported < 3; ++k) {
        const bool ok = cc.dyadic ? bits(first[k]) == bits(ref_path[k])
                                  : std::fabs(static_cast<double>(first[k]) - ref_path[k]) <= 2 * tol(k);
        if (!ok) ++reported;
        CHECK(ok, "conv isa=%s trial %d (%s) at %zu: got %.9g, reference path %.9g", isa_name(isa), trial,
              desc.c_str(), k, first[k], ref_path[k]);
      }
    }
  }
  reset_isa();
}

// ---- pools ---------------------------------------------------------------------------------

PoolGeometry random_pool(std::mt19937& rng, int trial, bool dilated) {
  PoolGeometry g;
  for (;;) {
    g.n = uni(rng, 1, 3);
    const int64_t r = uni(rng, 0, 5);
    g.c = r < 3 ? uni(rng, 1, 31) : r < 5 ? uni(rng, 33, 45) : 32 * uni(rng, 1, 2) + uni(rng, -3, 3);
    g.kh = uni(rng, 1, 7);
    g.kw = trial % 3 == 0 ? uni(rng, 1, 7) : g.kh;
    g.sh = uni(rng, 1, 3);
    g.sw = trial % 4 == 0 ? uni(rng, 1, 3) : g.sh;
    g.dh = dilated ? uni(rng, 1, 2) : 1;
    g.dw = dilated && trial % 5 == 0 ? uni(rng, 1, 2) : g.dh;
    g.ph = random_pad(rng, (g.dh * (g.kh - 1) + 1) / 2);  // the largest padding allowed
    g.pw = trial % 4 == 1 ? random_pad(rng, (g.dw * (g.kw - 1) + 1) / 2) : std::min(g.ph, (g.dw * (g.kw - 1) + 1) / 2);
    g.ceil_mode = rng() % 2;
    g.h = 2 * uni(rng, 0, 7) + 1;
    g.w = trial % 7 == 0 ? uni(rng, 1, 18) : 2 * uni(rng, 0, 8) + 1;
    // The effective kernel within the padded input: floatops rejects a larger one even where
    // PyTorch's ceil_mode rule gives an output (e.g. size 1, kernel 2, stride 3).
    if (g.h + 2 * g.ph >= g.dh * (g.kh - 1) + 1 && g.w + 2 * g.pw >= g.dw * (g.kw - 1) + 1 &&
        torch_out(g.h, g.kh, g.sh, g.ph, g.dh, g.ceil_mode) >= 1 &&
        torch_out(g.w, g.kw, g.sw, g.pw, g.dw, g.ceil_mode) >= 1)
      break;
  }
  return g;
}

float max_rule(float a, float b) { return std::isnan(a) ? a : (a > b ? a : b); }

// floatops.h's maxpool contract: in-bounds taps, rows folded left to right, then top to bottom.
std::vector<float> maxpool_documented(const std::vector<float>& x, const PoolGeometry& g, int64_t oh, int64_t ow) {
  std::vector<float> y(static_cast<size_t>(g.n * oh * ow * g.c));
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox)
        for (int64_t c = 0; c < g.c; ++c) {
          float m = ninf;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t iy = oy * g.sh - g.ph + i * g.dh;
            if (iy < 0 || iy >= g.h) continue;
            float row = ninf;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t ix = ox * g.sw - g.pw + j * g.dw;
              if (ix >= 0 && ix < g.w) row = max_rule(row, x[((n * g.h + iy) * g.w + ix) * g.c + c]);
            }
            m = max_rule(m, row);
          }
          y[((n * oh + oy) * ow + ox) * g.c + c] = m;
        }
  return y;
}

// floatops.h's avgpool contract, with PyTorch's divisor (avg_pool2d's CPU kernel) written out.
std::vector<float> avgpool_documented(const std::vector<float>& x, const PoolGeometry& g, int64_t oh, int64_t ow,
                                      bool count_include_pad, int64_t divisor_override) {
  std::vector<float> y(static_cast<size_t>(g.n * oh * ow * g.c));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t hs = oy * g.sh - g.ph, ws = ox * g.sw - g.pw;
        int64_t he = std::min(hs + g.kh, g.h + g.ph), we = std::min(ws + g.kw, g.w + g.pw);
        const int64_t pool_size = (he - hs) * (we - ws);
        hs = std::max<int64_t>(hs, 0), ws = std::max<int64_t>(ws, 0);
        he = std::min(he, g.h), we = std::min(we, g.w);
        const int64_t div = divisor_override > 0 ? divisor_override : count_include_pad ? pool_size : (he - hs) * (we - ws);
        for (int64_t c = 0; c < g.c; ++c) {
          float s = 0.0f;
          for (int64_t iy = hs; iy < he; ++iy)
            for (int64_t ix = ws; ix < we; ++ix) s += x[((n * g.h + iy) * g.w + ix) * g.c + c];
          y[((n * oh + oy) * ow + ox) * g.c + c] = s / static_cast<float>(div);
        }
      }
  return y;
}

// Runs op under every ISA (the reference path first) and 1 / 3 threads; every result must match
// `expected` bit for bit, hence also each other.
void check_pool_bits(const char* what, int trial, const std::string& desc, const std::vector<float>& expected,
                     const std::function<void(float*, int)>& op) {
  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    for (int threads : {1, 3}) {
      std::vector<float> y = sentinel_vec(static_cast<int64_t>(expected.size()));
      op(y.data(), threads);
      int reported = 0;
      for (size_t k = 0; k < y.size() && reported < 3; ++k) {
        const bool ok = bits(y[k]) == bits(expected[k]);
        if (!ok) ++reported;
        CHECK(ok, "%s isa=%s trial %d threads %d (%s) at element %zu: got %.9g (0x%08x), expected %.9g (0x%08x)",
              what, isa_name(isa), trial, threads, desc.c_str(), k, y[k], bits(y[k]), expected[k], bits(expected[k]));
      }
    }
  }
  reset_isa();
}

void check_maxpool(std::mt19937& rng, int trial) {
  const PoolGeometry g = random_pool(rng, trial, true);
  const int64_t oh = torch_out(g.h, g.kh, g.sh, g.ph, g.dh, g.ceil_mode);
  const int64_t ow = torch_out(g.w, g.kw, g.sw, g.pw, g.dw, g.ceil_mode);
  const std::string desc = pool_str(g);
  CHECK(g.oh() == oh && g.ow() == ow, "maxpool trial %d (%s): output %lldx%lld, PyTorch's rule gives %lldx%lld", trial,
        desc.c_str(), (long long)g.oh(), (long long)g.ow(), (long long)oh, (long long)ow);
  std::vector<float> x(static_cast<size_t>(g.n * g.h * g.w * g.c));
  const float inf = std::numeric_limits<float>::infinity();
  for (auto& v : x) {
    const uint32_t r = rng() % 100;
    if (r < 4)  // NaN, random sign and payload (quiet, so the payload survives every path)
      v = from_bits((rng() & 0x80000000u) | 0x7fc00000u | (rng() & 0x003fffffu));
    else if (r < 6)
      v = r == 4 ? inf : -inf;
    else if (r < 16)
      v = r % 2 ? 0.0f : -0.0f;  // ties between +0 and -0 show the fold's order
    else if (r < 60)
      v = static_cast<float>(uni(rng, -4, 4)) / 4;  // many ties
    else
      v = unif(rng, -3.0f, 3.0f);
  }
  const std::vector<float> expected = maxpool_documented(x, g, oh, ow);
  check_pool_bits("maxpool", trial, desc, expected, [&](float* y, int t) { maxpool2d(x.data(), y, g, t); });
}

void check_avgpool(std::mt19937& rng, int trial) {
  const PoolGeometry g = random_pool(rng, trial, false);
  const int64_t oh = torch_out(g.h, g.kh, g.sh, g.ph, 1, g.ceil_mode);
  const int64_t ow = torch_out(g.w, g.kw, g.sw, g.pw, 1, g.ceil_mode);
  const bool cip = rng() % 2;
  const int64_t dov = rng() % 3 == 0 ? uni(rng, 1, 50) : 0;
  char extra[64];
  std::snprintf(extra, sizeof extra, " count_include_pad=%d divisor_override=%lld", cip ? 1 : 0, (long long)dov);
  const std::string desc = pool_str(g) + extra;
  CHECK(g.oh() == oh && g.ow() == ow, "avgpool trial %d (%s): output %lldx%lld, PyTorch's rule gives %lldx%lld", trial,
        desc.c_str(), (long long)g.oh(), (long long)g.ow(), (long long)oh, (long long)ow);
  std::vector<float> x(static_cast<size_t>(g.n * g.h * g.w * g.c));
  // mixed magnitudes: a different summation order changes the rounded sum
  for (auto& v : x) v = std::ldexp(unif(rng, -1.0f, 1.0f), static_cast<int>(uni(rng, -12, 12)));
  const std::vector<float> expected = avgpool_documented(x, g, oh, ow, cip, dov);
  check_pool_bits("avgpool", trial, desc, expected,
                  [&](float* y, int t) { avgpool2d(x.data(), y, g, cip, dov, t); });
}

// ---- invalid arguments ---------------------------------------------------------------------

void expect_invalid(const char* what, const std::function<void()>& f) {
  bool threw = false;
  try {
    f();
  } catch (const std::invalid_argument&) {
    threw = true;
  } catch (const std::exception& e) {
    CHECK(false, "%s: threw a %s-derived exception other than std::invalid_argument: %s", what, typeid(e).name(),
          e.what());
    return;
  }
  CHECK(threw, "%s: no std::invalid_argument", what);
}

void check_invalid() {
  const std::vector<float> w(2 * 3 * 3 * 3, 0.5f), x(2 * 9 * 9 * 8, 1.0f), bias(8, 0.0f);
  std::vector<float> y(4096, 0.0f);
  const PreparedConv pc(w.data(), 2, 3, 3, 3);
  ConvGeometry base;
  base.n = 1, base.h = 5, base.w = 5, base.c = 3, base.cout = 2, base.kh = 3, base.kw = 3;
  PoolGeometry pbase;
  pbase.n = 1, pbase.h = 5, pbase.w = 5, pbase.c = 3, pbase.kh = 3, pbase.kw = 3;

  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    for (int64_t d : {int64_t{0}, int64_t{-1}}) {
      expect_invalid("PreparedConv cout <= 0", [&] { PreparedConv(w.data(), d, 3, 3, 3); });
      expect_invalid("PreparedConv cin <= 0", [&] { PreparedConv(w.data(), 2, d, 3, 3); });
      expect_invalid("PreparedConv kh <= 0", [&] { PreparedConv(w.data(), 2, 3, d, 3); });
      expect_invalid("PreparedConv kw <= 0", [&] { PreparedConv(w.data(), 2, 3, 3, d); });
    }
    auto conv_bad = [&](const char* what, std::function<void(ConvGeometry&)> edit) {
      ConvGeometry g = base;
      edit(g);
      expect_invalid(what, [&] { check_geometry(g); });
      expect_invalid(what, [&] { conv2d(x.data(), pc, bias.data(), 0.0f, y.data(), g, 1); });
    };
    conv_bad("conv n=0", [](ConvGeometry& g) { g.n = 0; });
    conv_bad("conv h=0", [](ConvGeometry& g) { g.h = 0; });
    conv_bad("conv w=-1", [](ConvGeometry& g) { g.w = -1; });
    conv_bad("conv c=0", [](ConvGeometry& g) { g.c = 0; });
    conv_bad("conv cout=0", [](ConvGeometry& g) { g.cout = 0; });
    conv_bad("conv kh=0", [](ConvGeometry& g) { g.kh = 0; });
    conv_bad("conv sh=0", [](ConvGeometry& g) { g.sh = 0; });
    conv_bad("conv sw=0", [](ConvGeometry& g) { g.sw = 0; });
    conv_bad("conv dh=0", [](ConvGeometry& g) { g.dh = 0; });
    conv_bad("conv dw=0", [](ConvGeometry& g) { g.dw = 0; });
    conv_bad("conv ph=-1", [](ConvGeometry& g) { g.ph = -1; });
    conv_bad("conv pw=-1", [](ConvGeometry& g) { g.pw = -1; });
    conv_bad("conv kernel larger than the padded input", [](ConvGeometry& g) { g.h = 2; });
    conv_bad("conv dilated kernel larger than the input", [](ConvGeometry& g) { g.dw = 3; });
    // filters that do not match the geometry
    auto conv_mismatch = [&](const char* what, std::function<void(ConvGeometry&)> edit) {
      ConvGeometry g = base;
      edit(g);
      check_geometry(g);  // the geometry alone is fine
      expect_invalid(what, [&] { conv2d(x.data(), pc, nullptr, 0.0f, y.data(), g, 1); });
    };
    conv_mismatch("conv C differs from the filters", [](ConvGeometry& g) { g.c = 4; });
    conv_mismatch("conv C_out differs from the filters", [](ConvGeometry& g) { g.cout = 3; });
    // a fused max pool over another shape than the conv's output, or with too much padding
    PoolGeometry fp;
    fp.n = 1, fp.h = 3, fp.w = 3, fp.c = 2, fp.kh = fp.kw = 2;
    ConvOptions fo;
    fo.maxpool = &fp;
    conv2d(x.data(), pc, nullptr, 0.0f, y.data(), base, 1, fo);  // the valid pool runs
    fp.c = 3;
    expect_invalid("fused pool channels != conv C_out", [&] { conv2d(x.data(), pc, nullptr, 0.0f, y.data(), base, 1, fo); });
    fp.c = 2, fp.pw = 2;
    expect_invalid("fused pool padding over half its window", [&] { conv2d(x.data(), pc, nullptr, 0.0f, y.data(), base, 1, fo); });
    conv_mismatch("conv kh differs from the filters", [](ConvGeometry& g) { g.kh = 2; });
    conv_mismatch("conv kw differs from the filters", [](ConvGeometry& g) { g.kw = 1; });

    auto pool_bad = [&](const char* what, std::function<void(PoolGeometry&)> edit) {
      PoolGeometry g = pbase;
      edit(g);
      expect_invalid(what, [&] { check_pool_geometry(g); });
      expect_invalid(what, [&] { maxpool2d(x.data(), y.data(), g, 1); });
      expect_invalid(what, [&] { avgpool2d(x.data(), y.data(), g, false, 0, 1); });
    };
    pool_bad("pool n=0", [](PoolGeometry& g) { g.n = 0; });
    pool_bad("pool h=0", [](PoolGeometry& g) { g.h = 0; });
    pool_bad("pool c=0", [](PoolGeometry& g) { g.c = 0; });
    pool_bad("pool kw=0", [](PoolGeometry& g) { g.kw = 0; });
    pool_bad("pool sh=0", [](PoolGeometry& g) { g.sh = 0; });
    pool_bad("pool dw=0", [](PoolGeometry& g) { g.dw = 0; });
    pool_bad("pool ph=-1", [](PoolGeometry& g) { g.ph = -1; });
    pool_bad("pool ph over half the kernel", [](PoolGeometry& g) { g.ph = 2; });  // 2 > 3 / 2
    pool_bad("pool pw over half the kernel", [](PoolGeometry& g) { g.kw = 4, g.pw = 3; });  // 3 > 4 / 2
    pool_bad("pool window larger than the input", [](PoolGeometry& g) { g.kh = 6; });
    pool_bad("pool window larger than the input (ceil)", [](PoolGeometry& g) { g.kw = 6, g.ceil_mode = true; });
    // the largest padding is accepted: p = (d (k - 1) + 1) / 2
    for (int64_t k = 1; k <= 7; ++k)
      for (int64_t d = 1; d <= 2; ++d) {
        PoolGeometry g = pbase;
        g.h = g.w = 9, g.kh = g.kw = k, g.dh = g.dw = d, g.ph = g.pw = (d * (k - 1) + 1) / 2;
        bool ok = true;
        try {
          check_pool_geometry(g);
        } catch (const std::invalid_argument&) {
          ok = false;
        }
        CHECK(ok, "pool k=%lld d=%lld with the largest padding %lld rejected", (long long)k, (long long)d,
              (long long)g.ph);
        g.ph += 1;
        expect_invalid("pool padding one over the largest", [&] { check_pool_geometry(g); });
      }
    // avgpool only
    PoolGeometry g = pbase;
    g.dh = 2;
    expect_invalid("avgpool dilation 2 (rows)", [&] { avgpool2d(x.data(), y.data(), g, false, 0, 1); });
    g = pbase;
    g.dw = 2;
    expect_invalid("avgpool dilation 2 (columns)", [&] { avgpool2d(x.data(), y.data(), g, true, 0, 1); });
    g = pbase;
    expect_invalid("avgpool divisor_override < 0", [&] { avgpool2d(x.data(), y.data(), g, false, -1, 1); });
  }
  reset_isa();
}

// Runs one trial; an exception (a valid geometry rejected, say) is a failure, not an abort.
void run_trial(const char* what, int trial, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    CHECK(false, "%s trial %d threw: %s", what, trial, e.what());
    reset_isa();
  }
}

}  // namespace

int main() {
  std::mt19937 rng(20240611);
  run_trial("invalid-argument checks", 0, check_invalid);
  for (int t = 0; t < 120; ++t) run_trial("conv", t, [&] { check_conv(rng, t); });
  for (int t = 0; t < 150; ++t) run_trial("maxpool", t, [&] { check_maxpool(rng, t); });
  for (int t = 0; t < 150; ++t) run_trial("avgpool", t, [&] { check_avgpool(rng, t); });
  return onebit_test::finish("test_floatops");
}
