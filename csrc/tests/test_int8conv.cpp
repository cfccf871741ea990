// int8conv: conv2d (float input) and conv2d_u8 (quantized input) under every available ISA and 1
// or 3 threads on random NHWC geometries, against a reference written here from int8conv.h's
// contract: an int64 loop over (n, oh, ow, o, i, j, c) reading zero_point outside the input,
// then y = fma(float(acc - zero_point * sum_w), out_scale, bias) and max(y, 0) with relu. The
// sums are integers, so every ISA must equal it bit for bit (outputs start as a sentinel NaN: an
// unwritten element fails). Cases cover C_in 1..4 (and some wider inputs and 1x1 convs),
// strides, dilations, padding up to whole windows of padding, channel counts around the
// 8 / 16-channel blocks, 7- and 8-bit activations (pairs 2 and 1), and the int16 extremes:
// activations at act_max against weights at -64 / 63 (per vpmaddubsw 2 * 255 * 64 = 32640 with
// 8-bit activations, per vpaddw 4 * 127 * 64 = 32512 with 7-bit ones). The quantizer must match
// its formula (ties, NaN, infinities), and invalid arguments must throw std::invalid_argument.
// The same cases run with NCHW input (ConvOptions::nchw) and with a random max pool fused
// after the conv, against the reference pooled here.
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "floatops/floatops.h"
#include "floatops/int8conv.h"
#include "test_util.h"

using namespace onebit;
using namespace onebit::int8conv;
using onebit_test::failures;

namespace {

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

int64_t uni(std::mt19937& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
}

int64_t out_size(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t num = size + 2 * p - d * (k - 1) - 1;
  return num < 0 ? 0 : num / s + 1;
}

std::string geom_str(const ConvGeometry& g, int act_max, int zp, bool relu) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "n=%lld h=%lld w=%lld c=%lld cout=%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld "
                "d=%lldx%lld act_max=%d zp=%d relu=%d",
                (long long)g.n, (long long)g.h, (long long)g.w, (long long)g.c, (long long)g.cout,
                (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.ph,
                (long long)g.pw, (long long)g.dh, (long long)g.dw, act_max, zp, relu ? 1 : 0);
  return buf;
}

// The quantizer's formula, written out: t = x * (1 / scale) in float, clamped to
// [-zp, act_max - zp] (NaN -> -zp), rounded half to even, plus zp.
uint8_t quantize_formula(float x, float scale, int zp, int act_max) {
  const float inv = 1.0f / scale;
  float t = x * inv;
  if (std::isnan(t) || t < static_cast<float>(-zp)) t = static_cast<float>(-zp);
  if (t > static_cast<float>(act_max - zp)) t = static_cast<float>(act_max - zp);
  float r = std::floor(t);
  const float frac = t - r;
  if (frac > 0.5f || (frac == 0.5f && std::fmod(r, 2.0f) != 0.0f)) r += 1.0f;
  return static_cast<uint8_t>(static_cast<int>(r) + zp);
}

struct Case {
  ConvGeometry g;
  int act_max = 255, zp = 0;
  bool relu = false, extremes = false, has_bias = false;
};

Case random_case(std::mt19937& rng, int trial) {
  Case cc;
  ConvGeometry& g = cc.g;
  for (;;) {
    g.n = uni(rng, 1, 3);
    g.c = trial % 6 == 0 ? uni(rng, 5, 40) : uni(rng, 1, 4);
    const int64_t r = uni(rng, 0, 9);
    g.cout = r < 3 ? uni(rng, 1, 31) : r < 6 ? uni(rng, 33, 70) : r < 8 ? 16 * uni(rng, 1, 4) + uni(rng, -3, 3)
                                                                         : 8 * uni(rng, 1, 8) + 1;
    g.kh = trial % 8 == 0 ? 1 : uni(rng, 1, 7);
    g.kw = trial % 8 == 0 ? 1 : trial % 3 == 0 ? uni(rng, 1, 7) : g.kh;
    g.sh = uni(rng, 1, 3);
    g.sw = trial % 4 == 0 ? uni(rng, 1, 3) : g.sh;
    g.dh = uni(rng, 1, 2);
    g.dw = trial % 5 == 0 ? uni(rng, 1, 2) : g.dh;
    g.ph = uni(rng, 0, g.dh * (g.kh - 1) + 1);
    g.pw = trial % 4 == 1 ? uni(rng, 0, g.dw * (g.kw - 1) + 1) : std::min(g.ph, g.dw * (g.kw - 1) + 1);
    g.h = uni(rng, 1, 15);
    g.w = uni(rng, 1, 18);
    if (trial % 20 == 19) {  // a 7x7/2 stem: several output rows per thread
      g.n = 1, g.c = 3, g.cout = 64, g.kh = g.kw = 7, g.sh = g.sw = 2, g.dh = g.dw = 1, g.ph = g.pw = 3;
      g.h = g.w = 31;
    }
    if (out_size(g.h, g.kh, g.sh, g.ph, g.dh) >= 1 && out_size(g.w, g.kw, g.sw, g.pw, g.dw) >= 1) break;
  }
  cc.act_max = trial % 2 == 0 ? 255 : 127;
  cc.zp = trial % 7 == 0 ? 0 : trial % 7 == 1 ? cc.act_max : static_cast<int>(uni(rng, 0, cc.act_max));
  cc.relu = rng() % 2;
  cc.has_bias = rng() % 2;
  cc.extremes = trial % 5 == 2;
  return cc;
}

void check_case(std::mt19937& rng, int trial) {
  const Case cc = random_case(rng, trial);
  const ConvGeometry& g = cc.g;
  const int64_t oh = out_size(g.h, g.kh, g.sh, g.ph, g.dh), ow = out_size(g.w, g.kw, g.sw, g.pw, g.dw);
  const std::string desc = geom_str(g, cc.act_max, cc.zp, cc.relu);
  const int64_t nx = g.n * g.h * g.w * g.c, k = g.kh * g.kw * g.c;
  std::vector<int8_t> wq(static_cast<size_t>(g.cout * k));
  std::vector<uint8_t> xq(static_cast<size_t>(nx));
  for (auto& v : wq) v = static_cast<int8_t>(cc.extremes ? (rng() % 2 ? -64 : 63) : uni(rng, -64, 63));
  for (auto& v : xq) v = static_cast<uint8_t>(cc.extremes ? (rng() % 4 ? cc.act_max : 0) : uni(rng, 0, cc.act_max));
  // out_scale a power of two (or not) and bias: the float transform is the same for all ISAs
  std::vector<float> scale(static_cast<size_t>(g.cout)), bias(static_cast<size_t>(g.cout));
  for (auto& v : scale) v = std::ldexp(static_cast<float>(uni(rng, -1000, 1000)) / 997.0f, -static_cast<int>(uni(rng, 0, 12)));
  for (auto& v : bias) v = static_cast<float>(uni(rng, -1000, 1000)) / 250.0f;
  const float act_scale = 0.03125f;  // a power of two: x = act_scale * (q - zp) quantizes back to q
  const PreparedInt8Conv prepared(wq.data(), g.cout, g.c, g.kh, g.kw, scale.data(),
                                  cc.has_bias ? bias.data() : nullptr, act_scale, cc.zp, cc.act_max);
  CHECK(prepared.pairs() == (cc.act_max == 127 ? 2 : 1), "trial %d: pairs %d for act_max %d", trial,
        prepared.pairs(), cc.act_max);

  // the reference from the contract
  std::vector<float> expect(static_cast<size_t>(g.n * oh * ow * g.cout));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox)
        for (int64_t o = 0; o < g.cout; ++o) {
          int64_t acc = 0, sum_w = 0;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iy = oy * g.sh - g.ph + i * g.dh, ix = ox * g.sw - g.pw + j * g.dw;
                const bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
                const int64_t v = in ? xq[((n * g.h + iy) * g.w + ix) * g.c + c] : cc.zp;
                const int64_t wv = wq[((o * g.c + c) * g.kh + i) * g.kw + j];
                acc += v * wv;
                sum_w += wv;
              }
          const float b = cc.has_bias ? bias[o] : 0.0f;
          float y = std::fma(static_cast<float>(acc - cc.zp * sum_w), scale[o], b);
          if (cc.relu) y = y > 0.0f ? y : 0.0f;
          expect[((n * oh + oy) * ow + ox) * g.cout + o] = y;
        }
  std::vector<float> xf(static_cast<size_t>(nx));
  for (int64_t t = 0; t < nx; ++t) xf[t] = act_scale * static_cast<float>(xq[t] - cc.zp);
  // the same inputs in NCHW order, for ConvOptions::nchw
  std::vector<uint8_t> xq_nchw(xq.size());
  std::vector<float> xf_nchw(xf.size());
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t y = 0; y < g.h; ++y)
      for (int64_t x = 0; x < g.w; ++x)
        for (int64_t c = 0; c < g.c; ++c) {
          const int64_t hwc = ((n * g.h + y) * g.w + x) * g.c + c;
          const int64_t chw = ((n * g.c + c) * g.h + y) * g.w + x;
          xq_nchw[chw] = xq[hwc];
          xf_nchw[chw] = xf[hwc];
        }
  // a max pool over the conv output (padding at most half its window), and the pooled
  // reference written from floatops.h's contract: np.maximum's rule (a > b ? a : b, no NaN
  // here) folded over each window row left to right, then over the rows, padding skipped
  floatops::PoolGeometry pool;
  pool.n = g.n, pool.h = oh, pool.w = ow, pool.c = g.cout;
  pool.kh = uni(rng, 1, std::min<int64_t>(3, oh)), pool.kw = uni(rng, 1, std::min<int64_t>(3, ow));
  pool.sh = uni(rng, 1, 3), pool.sw = uni(rng, 1, 3);
  pool.ph = uni(rng, 0, pool.kh / 2), pool.pw = uni(rng, 0, pool.kw / 2);
  pool.ceil_mode = rng() % 2;
  const int64_t poh = pool.oh(), pow_ = pool.ow();
  std::vector<float> pooled(static_cast<size_t>(g.n * poh * pow_ * g.cout));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t py = 0; py < poh; ++py)
      for (int64_t px = 0; px < pow_; ++px)
        for (int64_t o = 0; o < g.cout; ++o) {
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < pool.kh; ++i) {
            const int64_t y = py * pool.sh - pool.ph + i;
            if (y < 0 || y >= oh) continue;
            float row = -std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j < pool.kw; ++j) {
              const int64_t x = px * pool.sw - pool.pw + j;
              if (x < 0 || x >= ow) continue;
              const float v = expect[((n * oh + y) * ow + x) * g.cout + o];
              row = row > v ? row : v;
            }
            m = m > row ? m : row;
          }
          pooled[((n * poh + py) * pow_ + px) * g.cout + o] = m;
        }
  static const char* const kPaths[] = {"uint8 input", "float input", "uint8 NCHW input",
                                       "float NCHW input", "float input + max pool",
                                       "uint8 NCHW input + max pool"};

  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    for (int threads : {1, 3})
      for (int path = 0; path < 6; ++path) {
        const std::vector<float>& want = path < 4 ? expect : pooled;
        std::vector<float> y(want.size(), from_bits(kSentinel));
        ConvOptions opt;
        opt.nchw = path == 2 || path == 3 || path == 5;
        opt.maxpool = path >= 4 ? &pool : nullptr;
        if (path == 0 || path == 2 || path == 5)
          conv2d_u8((opt.nchw ? xq_nchw : xq).data(), prepared, y.data(), g, cc.relu, threads, opt);
        else
          conv2d((opt.nchw ? xf_nchw : xf).data(), prepared, y.data(), g, cc.relu, threads, opt);
        int reported = 0;
        for (size_t t = 0; t < y.size() && reported < 3; ++t) {
          const bool ok = bits(y[t]) == bits(want[t]);
          if (!ok) ++reported;
          CHECK(ok, "isa=%s trial %d threads %d %s (%s) element %zu: got %.9g, expected %.9g",
                isa_name(isa), trial, threads, kPaths[path], desc.c_str(), t, y[t], want[t]);
        }
      }
  }
  reset_isa();
}

void check_quantizer(std::mt19937& rng) {
  std::vector<float> x;
  for (int t = -600; t <= 600; ++t) x.push_back(static_cast<float>(t) * 0.125f);  // ties
  for (float v : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), -0.0f, 1e30f, -1e30f})
    x.push_back(v);
  for (int t = 0; t < 2000; ++t) x.push_back(static_cast<float>(uni(rng, -(1 << 20), 1 << 20)) / 4096.0f);
  for (int act_max : {255, 127, 1}) {
    for (int zp : {0, act_max / 3, act_max}) {
      for (float scale : {0.25f, 0.1f, 3.0f}) {
        for (Isa isa : onebit_test::available_isas()) {
          set_isa(isa);
          for (size_t len : {x.size(), size_t{31}, size_t{33}}) {  // vector body and scalar tail
            std::vector<uint8_t> q(len, 0xAB);
            quantize(x.data(), q.data(), static_cast<int64_t>(len), scale, zp, act_max);
            int reported = 0;
            for (size_t t = 0; t < len && reported < 3; ++t) {
              const uint8_t e = quantize_formula(x[t], scale, zp, act_max);
              if (q[t] != e) ++reported;
              CHECK(q[t] == e, "quantize isa=%s act_max=%d zp=%d scale=%g x=%.9g: got %d expected %d",
                    isa_name(isa), act_max, zp, scale, x[t], q[t], e);
            }
          }
        }
      }
    }
  }
  reset_isa();
}

template <class F>
void expect_throw(const char* what, F f) {
  bool threw = false;
  try {
    f();
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw, "%s did not throw std::invalid_argument", what);
}

void check_errors() {
  std::vector<int8_t> w(2 * 3 * 3 * 3, 1);
  std::vector<float> s(2, 1.0f);
  expect_throw("act_max 0", [&] { PreparedInt8Conv p(w.data(), 2, 3, 3, 3, s.data(), nullptr, 1.0f, 0, 0); });
  expect_throw("zero_point > act_max", [&] { PreparedInt8Conv p(w.data(), 2, 3, 3, 3, s.data(), nullptr, 1.0f, 128, 127); });
  expect_throw("scale 0", [&] { PreparedInt8Conv p(w.data(), 2, 3, 3, 3, s.data(), nullptr, 0.0f, 0, 255); });
  expect_throw("scale NaN", [&] {
    PreparedInt8Conv p(w.data(), 2, 3, 3, 3, s.data(), nullptr, std::numeric_limits<float>::quiet_NaN(), 0, 255);
  });
  std::vector<int8_t> big(w.size(), -128);
  expect_throw("|w| 128 with act_max 255", [&] { PreparedInt8Conv p(big.data(), 2, 3, 3, 3, s.data(), nullptr, 1.0f, 0, 255); });
  const PreparedInt8Conv p(w.data(), 2, 3, 3, 3, s.data(), nullptr, 1.0f, 1, 127);
  ConvGeometry g;
  g.n = 1, g.h = 5, g.w = 5, g.c = 3, g.cout = 2, g.kh = 3, g.kw = 3;
  std::vector<uint8_t> xq(75, 200);
  std::vector<float> y(18);
  expect_throw("quantized input above act_max", [&] { conv2d_u8(xq.data(), p, y.data(), g, false, 1); });
  ConvGeometry bad = g;
  bad.c = 4;
  expect_throw("channel mismatch", [&] { check_conv(p, bad); });
  bad = g;
  bad.ph = int64_t{1} << 40;
  expect_throw("huge padding", [&] { check_conv(p, bad); });
  bad = g;
  bad.n = int64_t{1} << 30, bad.h = bad.w = int64_t{1} << 20;
  expect_throw("huge input", [&] { check_conv(p, bad); });
  bad = g;
  bad.h = 1;
  expect_throw("kernel larger than the input", [&] { check_conv(p, bad); });
  std::vector<float> xf(75, 0.0f);
  floatops::PoolGeometry pool;
  pool.n = 1, pool.h = 3, pool.w = 3, pool.c = 2, pool.kh = pool.kw = 2, pool.sh = pool.sw = 1;
  ConvOptions opt;
  opt.maxpool = &pool;
  conv2d(xf.data(), p, y.data(), g, false, 1, opt);  // the valid pool runs
  pool.h = 4;
  expect_throw("pool input shape != conv output", [&] { conv2d(xf.data(), p, y.data(), g, false, 1, opt); });
  pool.h = 3, pool.ph = 2;
  expect_throw("pool padding over half its window", [&] { conv2d(xf.data(), p, y.data(), g, false, 1, opt); });
}

}  // namespace

int main() {
  std::mt19937 rng(8);
  for (int trial = 0; trial < 160; ++trial) check_case(rng, trial);
  check_quantizer(rng);
  check_errors();
  return onebit_test::finish("test_int8conv");
}
